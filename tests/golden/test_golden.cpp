// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Golden parity: replays every recorded upstream call of every *.json in SAKURA_GOLDEN_DIR
// (default tests/golden) and compares every loss, gradient, parameter and weight within the
// tolerances the golden README suggests. Prints one line per case with its worst error.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <type_traits>
#include <sakura/sakura.hpp>

#include "support/golden_replay.hpp"

namespace fs = std::filesystem;
using sakura::config::Json;
using namespace sakura::test;

namespace {

std::string golden_dir() {
  const char* env = std::getenv("SAKURA_GOLDEN_DIR");
  return env && *env ? env : SAKURA_DEFAULT_GOLDEN_DIR;
}

}  // namespace

TEST_CASE("golden: every recorded upstream call is reproduced", "[golden]") {
  const fs::path dir = golden_dir();
  INFO("golden directory " << dir);
  REQUIRE(fs::is_directory(dir));
  std::vector<fs::path> files;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  REQUIRE(!files.empty());
  auto run = [](const fs::path& f, auto tag) {
    using T = decltype(tag);
    Worst w;
    try {
      w = replay<T>(f);
    } catch (const std::exception& e) {
      w.fail(std::string("threw: ") + e.what());
    }
    return w;
  };
  for (const auto& f : files) {
    const Worst w32 = run(f, float{}), w64 = run(f, double{});
    const bool ok = w32.failures.empty() && w64.failures.empty();
    std::printf("golden %-38s worst rel err float32: loss %.1e grad %.1e param %.1e | float64: loss %.1e grad %.1e "
                "param %.1e | weights %.1e  %s\n",
                f.filename().string().c_str(), w32.loss, w32.grad, w32.param, w64.loss, w64.grad, w64.param,
                std::max(w32.weight, w64.weight), ok ? "ok" : "FAIL");
    for (auto& s : w32.failures) std::printf("    float32: %s\n", s.c_str());
    for (auto& s : w64.failures) std::printf("    float64: %s\n", s.c_str());
    CHECK(ok);
  }
}
