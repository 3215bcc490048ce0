// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Fuzz harness: a checkpoint resumed (io/checkpoint.hpp read_checkpoint and restore, then the
// story runner's resume: sampler and story positions, a few training ticks) into a small demo
// session built once, whose story also ran once for the loss log a resume needs. Record checksums are recomputed before the file is read, so mutations
// reach the fields' meaning instead of stopping at "checksum mismatch" (truncation and bit flips
// are caught by the checksums: tested in tests/story). With SAKURA_FUZZ_WRITE_SEEDS=DIR the
// program writes the demo's own checkpoints (valid inputs for this build's format) into DIR and exits.
#include "sakura/story/demo.hpp"  // first: it brings config/json.hpp before the io headers

#include <fstream>
#include <memory>

#include "harness.hpp"

namespace {

using namespace sakura;

/// The demo's files (200 cells, 60 genes, checkpoints every 4 ticks of 8) with the model shrunk
/// to a few hundred parameters (checkpoints of ~20 KB: fast to mutate), its session, and its
/// story run once: the checkpoints (seeds) and the loss log a resume needs next to them.
struct Demo {
  std::unique_ptr<story::Session> session;
  std::string log_path, log;  ///< losses.tsv as the whole run left it
};

const Demo& demo() {
  static const Demo d = [] {
    story::DemoOptions o;
    o.cells = 200, o.genes = 60, o.ticks = 8, o.segment = 4;
    o.out_dir = (fuzz::scratch_dir() / "demo").string();
    const std::string config = story::write_demo_files(o);
    config::Json c = config::read_json_file(config);
    c["main_latent"]["encoder_neurons"] = 8;
    c["main_latent"]["decoder_neurons"] = 8;
    c["main_latent"]["latent_dim"] = 4;
    const std::string sig_path = c["dataset"]["signature_config_path"].get<std::string>();
    config::Json sig = config::read_json_file(sig_path);
    sig["cd8"]["signature_lat_dim"] = 4;  // attached to the main latent: its width
    sig["cd8"]["model"]["hidden_neurons"] = 3;
    std::ofstream(config) << c.dump(1);
    std::ofstream(sig_path) << sig.dump(1);
    Demo out;
    out.session = std::make_unique<story::Session>(config);
    story::Runner r(*out.session, story::RunnerOptions{});
    r.run();
    out.log_path = r.loss_log_path();
    std::ifstream in(out.log_path, std::ios::binary);
    out.log.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return out;
  }();
  return d;
}

/// Recomputes the FNV-1a checksum of every record whose frame fits in the bytes.
void reseal(std::vector<std::uint8_t>& b) {
  auto u64 = [&](std::size_t at) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | b[at + static_cast<std::size_t>(i)];
    return v;
  };
  for (std::size_t pos = 16; pos + 12 <= b.size();) {
    const std::uint64_t n = u64(pos + 4);
    if (n > b.size() - pos - 12 || b.size() - pos - 12 - n < 8) break;
    const std::uint64_t sum = io::detail::fnv1a(&b[pos + 12], static_cast<std::size_t>(n));
    for (int i = 0; i < 8; ++i) b[pos + 12 + n + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(sum >> (8 * i));
    pos += 12 + static_cast<std::size_t>(n) + 8;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const Demo& d = demo();
  if (const char* dir = std::getenv("SAKURA_FUZZ_WRITE_SEEDS")) {
    std::filesystem::create_directories(dir);
    for (const auto& e : std::filesystem::directory_iterator(d.session->setup().log_path))
      if (e.path().extension() == ".ckpt")
        std::filesystem::copy_file(e.path(), std::filesystem::path(dir) / e.path().filename(),
                                   std::filesystem::copy_options::overwrite_existing);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const Demo& d = demo();
  std::vector<std::uint8_t> bytes(data, data + size);
  reseal(bytes);
  const std::string path = fuzz::write_file("input.ckpt", bytes.data(), bytes.size());
  (void)fuzz::write_file(d.log_path, d.log.data(), d.log.size());  // as the run left it: resume truncates it
  fuzz::expect_named_errors("resume", [&] {
    story::RunnerOptions ro;
    ro.max_ticks = 2;
    story::Runner r(*d.session, ro);
    r.resume(path);
  });
  return 0;
}
