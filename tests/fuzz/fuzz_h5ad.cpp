// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Fuzz harness: the AnnData reader (io/h5ad.hpp) on any bytes, written as input.h5ad (libhdf5
// opens files by name).
#include "sakura/io/h5ad.hpp"

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = sakura::fuzz::write_file("input.h5ad", data, size);
  sakura::fuzz::expect_named_errors("read_h5ad", [&] { (void)sakura::io::read_h5ad<float>(path); });
  return 0;
}
