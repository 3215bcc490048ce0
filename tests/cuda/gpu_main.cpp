// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Catch2's main for the GPU tests: without a CUDA device a run exits 77, which ctest reports as
// skipped (SKIP_RETURN_CODE), so a summary shows what ran; listing works anywhere (the build
// discovers the tests on machines without a GPU).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <iostream>

#include "sakura/backend/cuda/ops.hpp"

int main(int argc, char* argv[]) {
  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv)) return rc;
  const Catch::ConfigData& c = session.configData();
  const bool listing = c.listTests || c.listTestNamesOnly || c.listTags || c.listReporters || c.showHelp;
  if (!listing && sakura::cuda::device_count() == 0) {
    std::cout << "skipped: no CUDA device\n";
    return 77;  // tests/cuda/CMakeLists.txt: SKIP_RETURN_CODE
  }
  return session.run();
}
