// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The training step on the GPU: every golden case replayed within 1e-4, the GPU controller
// against the CPU one step by step, and CUDA-graph replay bit-identical to eager launches.
// Without a CUDA device the binary exits 77 (gpu_main.cpp) and ctest reports every case as skipped.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "support/fixtures.hpp"
#include "support/golden_replay.hpp"

using namespace sakura;
using namespace sakura::test;

namespace {

template <class Dev>
std::vector<float> params(Controller<float, Dev>& c) {
  c.sync_to_host();
  std::vector<float> v;
  for (auto& p : c.model().parameters().all()) v.insert(v.end(), p.value.begin(), p.value.end());
  return v;
}

template <class DevA, class DevB>
void copy_parameters(Controller<float, DevA>& from, Controller<float, DevB>& to) {
  from.sync_to_host();
  auto& a = from.model().parameters().all();
  auto& b = to.model().parameters().all();
  for (std::size_t i = 0; i < a.size(); ++i) std::copy(a[i].value.begin(), a[i].value.end(), b[i].value.begin());
  to.sync_to_device();
}

}  // namespace

TEST_CASE("gpu: every golden case is reproduced on the GPU within 1e-4", "[cuda][golden]") {
  const char* env = std::getenv("SAKURA_GOLDEN_DIR");
  const std::filesystem::path dir = env && *env ? env : SAKURA_DEFAULT_GOLDEN_DIR;
  std::vector<std::filesystem::path> files;
  for (auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  REQUIRE(!files.empty());
  std::printf("gpu: %s\n", cuda::device_name());
  for (const auto& f : files) {
    Worst w;
    try {
      w = replay<float, Cuda>(f, 1e-4);
    } catch (const std::exception& e) {
      w.fail(std::string("threw: ") + e.what());
    }
    std::printf("golden[cuda] %-38s worst rel err: loss %.1e grad %.1e param %.1e weight %.1e  %s\n",
                f.filename().string().c_str(), w.loss, w.grad, w.param, w.weight, w.failures.empty() ? "ok" : "FAIL");
    for (auto& s : w.failures) std::printf("    %s\n", s.c_str());
    CHECK(w.failures.empty());
  }
}

TEST_CASE("gpu: the GPU controller follows the CPU controller step by step", "[cuda]") {
  Controller<float, Cpu> cpu(spec_of(base_config(), base_pheno(), base_signature()));
  Controller<float, Cuda> gpu(spec_of(base_config(), base_pheno(), base_signature()));
  copy_parameters(cpu, gpu);
  const auto sel = config::selection_from_json(cpu.model_spec(), BlockKind::Signature,
                                           Json::parse(R"({"a": {"loss": "*", "regularization": "*"}})"), "sel");
  for (int step = 0; step < 6; ++step) {
    const auto batch = base_batch(20 + step);
    TrainOptions o;
    o.step.save_raw_loss = true;
    if (step % 2) {
      o.scope.reconstruction = o.scope.main_regularization = false;
      o.scope.phenos = Selection::none();
      o.scope.signatures = sel;
    }
    gpu.rng().set_state(cpu.rng().state());  // the same random draws
    const double tc = cpu.train(batch, o).total;
    const double tg = gpu.train(batch, o).total;
    INFO("step " << step);
    CHECK(tg == Approx(tc).epsilon(1e-4));
    const auto pc = params(cpu), pg = params(gpu);
    for (std::size_t i = 0; i < pc.size(); ++i) REQUIRE(pg[i] == Approx(pc[i]).epsilon(1e-4).margin(1e-5));
    cpu.next_epoch();
    gpu.next_epoch();
  }
}

TEST_CASE("gpu: a replayed CUDA graph gives the eager step's results bit for bit", "[cuda][graph]") {
  Controller<float, Cuda> eager(spec_of(base_config(), base_pheno(), base_signature()));
  Controller<float, Cuda> graph(spec_of(base_config(), base_pheno(), base_signature()));
  graph.enable_graphs(true);
  const auto sel = config::selection_from_json(eager.model_spec(), BlockKind::Signature,
                                           Json::parse(R"({"a": {"loss": "*", "regularization": "*"}})"), "sel");
  TrainOptions all, sig;
  sig.scope.reconstruction = sig.scope.main_regularization = false;
  sig.scope.phenos = Selection::none();
  sig.scope.signatures = sel;
  for (int step = 0; step < 10; ++step) {  // interleaved: each selection warms, captures, then replays
    const auto batch = base_batch(40 + step);
    const TrainOptions& o = step % 2 ? sig : all;
    const LossRecord a = eager.train(batch, o);
    const LossRecord& b = graph.train(batch, o);
    INFO("step " << step);
    REQUIRE(a.total == b.total);
    REQUIRE(a.main.loss.values == b.main.loss.values);
    REQUIRE(params(eager) == params(graph));
    if (step == 5) {  // a weight change reaches the replayed graph without a recapture
      eager.next_epoch();
      graph.next_epoch();
      eager.term(BlockKind::Main, "", TermGroup::Loss, "mse").weight = 0.5;
      graph.term(BlockKind::Main, "", TermGroup::Loss, "mse").weight = 0.5;
    }
  }
  // and the compile-time path replays too
  for (int step = 0; step < 4; ++step) {
    const auto batch = base_batch(60 + step);
    REQUIRE(eager.train<Fixture, All>(batch).total == graph.train<Fixture, All>(batch).total);
  }
  REQUIRE(params(eager) == params(graph));
}

TEST_CASE("gpu: batches gathered from a DeviceMatrix train exactly like the same batches from the host",
          "[cuda][batch]") {
  // 4 batches' worth of cells on the device; each step picks scattered rows
  const Index cells = 4 * kCells;
  Tensor<float> all = random_tensor<float>(cells, kGenes, 77);
  for (Index i = 0; i < all.size(); i += 3) all[i] = 0.0f;
  const data::DeviceMatrix<float> on_gpu(all);
  REQUIRE(on_gpu.download(0, cells).size() == all.size());
  const data::DeviceMatrix<float> from_csr(CsrMatrix<float>::from_dense(all.ref()));
  const Tensor<float> back = from_csr.download(0, cells);
  REQUIRE(std::equal(back.begin(), back.end(), all.begin()));

  Controller<float, Cuda> host(spec_of(base_config(), base_pheno(), base_signature()));
  Controller<float, Cuda> dev(spec_of(base_config(), base_pheno(), base_signature()));
  dev.enable_graphs(true);  // eager, captured, then replayed with other rows each step
  REQUIRE(params(host) == params(dev));
  Batch<float> hb = base_batch(5), db = base_batch(5);
  db.expr = Tensor<float>();
  std::vector<std::int32_t> idx(static_cast<std::size_t>(kCells));
  for (int step = 0; step < 8; ++step) {
    for (Index i = 0; i < kCells; ++i) idx[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * 5 + step * 3) % cells);
    for (Index i = 0; i < kCells; ++i)
      std::copy_n(&all(idx[static_cast<std::size_t>(i)], 0), kGenes, &hb.expr(i, 0));
    on_gpu.select(db, idx);
    INFO("step " << step);
    const double th = host.train(hb).total;
    const double td = dev.train(db).total;
    REQUIRE(th == td);
    REQUIRE(params(host) == params(dev));
  }
  // a bad row index is named, and nothing changes
  const auto before = params(dev);
  idx[3] = static_cast<std::int32_t>(cells);
  on_gpu.select(db, idx);
  REQUIRE_THROWS_WITH(dev.train(db), Catch::Contains("row index 32 of cell 3 is outside"));
  REQUIRE(params(dev) == before);
  // NaN is caught when the matrix is uploaded, with its position
  all(2, 5) = std::numeric_limits<float>::quiet_NaN();
  REQUIRE_THROWS_WITH(data::DeviceMatrix<float>(all), Catch::Contains("NaN at [2, 5]"));
}
