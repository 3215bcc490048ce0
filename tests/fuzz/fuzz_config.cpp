// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Fuzz harness: what reads a user's config (story::load_setup: the config, the signature and
// phenotype JSON it names, config/json.hpp's experiment_from_json, the story, the model built on
// one gene). Input: the config JSON, then optionally a NUL byte and the signature config, then a
// NUL byte and the phenotype config (JSON has no raw NUL), written as config.json,
// signature.json and pheno.json in one directory that relative paths resolve against.
#include "sakura/story/session.hpp"

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sakura;
  const char* names[3] = {"config.json", "signature.json", "pheno.json"};
  const char* p = reinterpret_cast<const char*>(data);
  const char* end = p + size;
  std::string config_path;
  for (int part = 0; part < 3; ++part) {
    const char* stop = part < 2 ? std::find(p, end, '\0') : end;
    const std::string path = fuzz::write_file(names[part], p, static_cast<std::size_t>(stop - p));
    if (part == 0) config_path = path;
    p = stop == end ? end : stop + 1;
  }
  story::SessionOptions o;
  o.base_dir = fuzz::scratch_dir().string();
  fuzz::expect_named_errors("load_setup", [&] { (void)story::load_setup(config_path, o); });
  return 0;
}
