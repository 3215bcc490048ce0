// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Fuzz harness: the MatrixMarket reader (io/matrix_market.hpp) on any bytes. Input starting with
// gzip's magic (1f 8b) is written as input.mtx.gz, so gzip seeds exercise a reader that inflates
// by name; anything else as input.mtx. The input's length picks the orientation (transposed
// or not), so both CSR builds are reached.
#include "sakura/io/matrix_market.hpp"

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const bool gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  const std::string path = sakura::fuzz::write_file(gz ? "input.mtx.gz" : "input.mtx", data, size);
  sakura::fuzz::expect_named_errors("read_mtx", [&] { (void)sakura::io::read_mtx<float>(path, size % 2 == 1); });
  return 0;
}
