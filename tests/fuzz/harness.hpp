// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// What every fuzz harness shares: the input written as a file (the readers take paths), and the
// rule each checks: a bad input ends in sakura::Error; any other exception is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <typeinfo>

#include "sakura/error.hpp"

// The libFuzzer entry points (replay_main.cpp calls them too; LLVMFuzzerInitialize is optional).
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace sakura::fuzz {

/// This process's scratch directory, in /dev/shm where there is one (no disk write per input),
/// removed at exit (a crash leaves it: its files are the crashing input as the reader saw it).
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    namespace fs = std::filesystem;
    const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    const fs::path d = base / ("sakura-fuzz-" + std::to_string(getpid()));
    fs::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return d;
  }();
  return dir;
}

/// Writes the bytes to scratch_dir() / name (name may be an absolute path) and returns the path.
inline std::string write_file(const std::string& name, const void* data, std::size_t size) {
  const std::string path = (scratch_dir() / name).string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz harness: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

/// Runs f(): a sakura::Error is the expected end of a bad input (printed when SAKURA_FUZZ_VERBOSE
/// is set, to see what a replayed input gets). Any other exception is a finding: reported with its
/// type and message, then abort(), so libFuzzer saves the input (a crash, a hang past -timeout or
/// memory past -rss_limit_mb are findings by libFuzzer itself).
template <class F>
void expect_named_errors(const char* what, F&& f) {
  static const bool verbose = std::getenv("SAKURA_FUZZ_VERBOSE") != nullptr;
  try {
    f();
    if (verbose) std::fprintf(stderr, "%s: accepted\n", what);
  } catch (const sakura::Error& e) {
    if (verbose) std::fprintf(stderr, "%s: %s\n", what, e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FINDING: %s threw %s, not sakura::Error: %s\n", what, typeid(e).name(), e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "FINDING: %s threw something that is not a std::exception\n", what);
    std::abort();
  }
}

}  // namespace sakura::fuzz
