// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Writes a data set in upstream's sparse input layout: an .mtx as Seurat's writeMM writes it
/// (genes x cells) and R write.csv-style gene, cell and phenotype CSVs; read_mtx_dataset reads it
/// back exactly (values are written as the shortest text that parses to the same float).
#pragma once

#include <charconv>
#include <cstdio>
#include <string>
#include <vector>

#include "sakura/data/dataset.hpp"
#include "sakura/error.hpp"

namespace sakura::io {

namespace detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;
class OutFile {
 public:
  explicit OutFile(const std::string& path) : path_(path), f_(std::fopen(path.c_str(), "wb")) {
    sakura::detail::require(f_ != nullptr, "cannot write '", path, "'");
  }
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;
  ~OutFile() {
    if (f_) std::fclose(f_);
  }
  std::FILE* get() { return f_; }
  void close() {
    const bool ok = std::fflush(f_) == 0;
    std::fclose(f_);
    f_ = nullptr;
    sakura::detail::require(ok, "error while writing '", path_, "'");
  }

 private:
  std::string path_;
  std::FILE* f_;
};

inline void quoted(std::FILE* f, const std::string& s) {
  std::fputc('"', f);
  for (char c : s) {
    if (c == '"') std::fputc('"', f);
    std::fputc(c, f);
  }
  std::fputc('"', f);
}
}  // namespace detail

/// An .mtx coordinate file of `m`, or of its transpose (`genes_by_cells` for a cells x genes m).
template <class T>
void write_mtx(const std::string& path, const CsrMatrix<T>& m, bool transpose) {
  detail::OutFile out(path);
  std::FILE* f = out.get();
  std::fprintf(f, "%%%%MatrixMarket matrix coordinate real general\n");
  std::fprintf(f, "%lld %lld %lld\n", static_cast<long long>(transpose ? m.cols : m.rows),
               static_cast<long long>(transpose ? m.rows : m.cols), static_cast<long long>(m.nnz()));
  char buf[64];
  for (Index r = 0; r < m.rows; ++r)
    for (std::int64_t k = m.indptr[r]; k < m.indptr[r + 1]; ++k) {
      const auto e = std::to_chars(buf, buf + sizeof buf, m.values[k]);
      *e.ptr = 0;
      const long long i = r + 1, j = m.indices[k] + 1;
      std::fprintf(f, "%lld %lld %s\n", transpose ? j : i, transpose ? i : j, buf);
    }
  out.close();
}

/// A name list as R's write.csv writes it: `"","x"` then `"1","name"`.
inline void write_name_csv(const std::string& path, const std::vector<std::string>& names) {
  detail::OutFile out(path);
  std::FILE* f = out.get();
  std::fputs("\"\",\"x\"\n", f);
  for (std::size_t i = 0; i < names.size(); ++i) {
    std::fprintf(f, "\"%zu\",", i + 1);
    detail::quoted(f, names[i]);
    std::fputc('\n', f);
  }
  out.close();
}

/// A phenotype table: cell names in the first column, one column per PhenoColumn ("" = NA).
inline void write_pheno_csv(const std::string& path, const std::vector<std::string>& cells,
                            const std::vector<data::PhenoColumn>& cols) {
  detail::OutFile out(path);
  std::FILE* f = out.get();
  std::fputs("\"\"", f);
  for (const auto& c : cols) {
    std::fputc(',', f);
    detail::quoted(f, c.name);
  }
  std::fputc('\n', f);
  for (std::size_t i = 0; i < cells.size(); ++i) {
    detail::quoted(f, cells[i]);
    for (const auto& c : cols) {
      std::fputc(',', f);
      if (c.values[i].empty()) std::fputs("NA", f);
      else detail::quoted(f, c.values[i]);
    }
    std::fputc('\n', f);
  }
  out.close();
}

/// Writes `dir`/matrix.mtx (genes x cells), genes.csv, cells.csv and pheno.csv.
template <class T>
void write_mtx_dataset(const data::Dataset<T>& ds, const std::string& dir) {
  write_mtx(dir + "/matrix.mtx", ds.expr, true);
  write_name_csv(dir + "/genes.csv", ds.genes);
  write_name_csv(dir + "/cells.csv", ds.cells);
  write_pheno_csv(dir + "/pheno.csv", ds.cells, ds.pheno);
}

}  // namespace sakura::io
