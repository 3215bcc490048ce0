// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Fuzz harness: the CSV readers (io/csv.hpp) on any bytes: as a gene/cell name list, and as a
// phenotype table whose expected cells are the file's own first column (so the fuzzer gets past
// the cell check to the values).
#include "sakura/io/csv.hpp"

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sakura;
  const std::string path = fuzz::write_file("input.csv", data, size);
  fuzz::expect_named_errors("read_name_csv", [&] { (void)io::read_name_csv(path); });
  fuzz::expect_named_errors("read_pheno_csv", [&] {
    const io::CsvTable t = io::read_csv(path);
    std::vector<std::string> cells;
    for (const auto& row : t.rows) cells.push_back(row.empty() ? std::string() : row[0]);
    (void)io::read_pheno_csv(path, cells);
  });
  return 0;
}
