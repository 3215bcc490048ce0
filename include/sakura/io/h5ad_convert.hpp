// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Out-of-core conversion to a CSR .h5ad (what a streaming reader reads row by row): from upstream's
/// layout (genes x cells .mtx + name CSVs + phenotype CSV) and from an .h5ad whose X is CSC, dense
/// or CSR. Memory: one block of entries within a budget plus 8 bytes per cell, never the matrix.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sakura/data/dataset.hpp"
#include "sakura/error.hpp"
#include "sakura/io/csv.hpp"
#include "sakura/io/h5ad.hpp"
#include "sakura/io/h5ad_writer.hpp"
#include "sakura/io/matrix_market.hpp"

namespace sakura::io {

struct ConvertOptions {
  /// Bytes for the entries gathered at once (each costs 24: a triplet, then its CSR copy).
  std::size_t memory_bytes = std::size_t{1} << 30;
  H5adLayout layout{};
  std::function<void(const std::string&)> note{};  ///< progress messages, when set
};

struct ConvertReport {
  Index cells = 0, genes = 0, nnz = 0;
  bool rows_in_order = false;  ///< the input listed cells in order: one streaming pass, no counting pass
  int passes = 0;              ///< reads of the input's entries
};

namespace detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;

/// A chunk of entries in the output's coordinates (row = cell, column = gene), in input order.
template <class T>
struct Entries {
  std::vector<std::int32_t> r, c;
  std::vector<T> v;
  std::size_t size() const { return v.size(); }
  void clear() {
    r.clear();
    c.clear();
    v.clear();
  }
  void add(Index i, Index j, T x) {
    r.push_back(static_cast<std::int32_t>(i));
    c.push_back(static_cast<std::int32_t>(j));
    v.push_back(x);
  }
};
constexpr std::size_t kChunk = std::size_t{1} << 16;

/// The entries of an .mtx file, coordinate or array, as cells x genes (transposed when the file is
/// genes x cells). Every scan re-reads the file; checks are those of read_mtx.
template <class T>
class MtxSource {
 public:
  MtxSource(std::string path, bool transpose) : path_(std::move(path)), h_(read_mtx_header(path_)), t_(transpose) {}
  Index rows() const { return t_ ? h_.cols : h_.rows; }
  Index cols() const { return t_ ? h_.rows : h_.cols; }
  static constexpr bool kRowsInOrder = false;  // unknown until counted

  template <class F>
  void scan(F&& f) const {
    detail::MtxLines src(path_);
    detail::parse_header(src);
    Entries<T> e;
    detail::for_each_entry<T>(src, h_, MtxAxes{}, [&](Index i, Index j, T x) {
      e.add(t_ ? j : i, t_ ? i : j, x);
      if (e.size() == kChunk) {
        f(e);
        e.clear();
      }
    });
    f(e);
  }

 private:
  std::string path_;
  MtxHeader h_;
  bool t_;
};

/// X of an .h5ad in any layout anndata writes (csr_matrix, csc_matrix, dense), read in chunks.
template <class T>
class H5adXSource {
 public:
  explicit H5adXSource(const h5::Node& root) : x_(h5::open(root, "X")) {
    const detail::XLayout l = detail::x_layout(x_);  // the reader's checks, before any array is read
    rows_ = l.rows;
    cols_ = l.cols;
    kind_ = l.kind;
    if (kind_ == Kind::Dense) return;
    detail::SparseArrays a = detail::sparse_arrays(x_, kind_ == Kind::Csr ? rows_ : cols_);
    ptr_ = std::move(a.indptr);  // 8 bytes per cell (CSR) or gene (CSC)
    nnz_ = a.nnz;
  }
  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  bool rows_in_order() const { return kind_ != Kind::Csc; }

  template <class F>
  void scan(F&& f) const {
    Entries<T> e;
    if (kind_ == Kind::Dense) return scan_dense(e, f);
    const h5::Node data = h5::open(x_, "data"), idx = h5::open(x_, "indices");
    const Index minor = kind_ == Kind::Csr ? cols_ : rows_;
    std::vector<std::int32_t> ix;
    std::vector<T> v;
    Index major = 0;
    for (Index off = 0; off < nnz_; off += static_cast<Index>(kChunk)) {
      const auto n = static_cast<std::size_t>(std::min<Index>(kChunk, nnz_ - off));
      ix.resize(n);
      v.resize(n);
      h5::read_block(idx, H5T_NATIVE_INT32, {hsize_t(off)}, {n}, ix.data());
      h5::read_block(data, h5::native<T>(), {hsize_t(off)}, {n}, v.data());
      detail::check_minor(x_, ix.data(), ix.size(), minor, off);
      e.clear();
      for (std::size_t k = 0; k < n; ++k) {
        while (ptr_[major + 1] <= off + static_cast<Index>(k)) ++major;
        if (kind_ == Kind::Csr) e.add(major, ix[k], v[k]);
        else e.add(ix[k], major, v[k]);
      }
      f(e);
    }
  }

 private:
  using Kind = detail::XLayout::Kind;
  template <class F>
  void scan_dense(Entries<T>& e, F& f) const {
    const auto cols = static_cast<std::size_t>(cols_);
    const hsize_t block = std::max<std::size_t>(1, kChunk * 16 / std::max<std::size_t>(1, cols));
    std::vector<T> buf;
    for (hsize_t r0 = 0; r0 < hsize_t(rows_); r0 += block) {
      const hsize_t nr = std::min<hsize_t>(block, rows_ - r0);
      buf.resize(nr * cols);
      if (!buf.empty()) h5::read_block(x_, h5::native<T>(), {r0, 0}, {nr, cols}, buf.data());
      e.clear();
      for (std::size_t k = 0; k < buf.size(); ++k)
        if (buf[k] != T(0)) e.add(static_cast<Index>(r0 + k / cols), static_cast<Index>(k % cols), buf[k]);
      f(e);
    }
  }
  h5::Node x_;
  Kind kind_ = Kind::Dense;
  Index rows_ = 0, cols_ = 0, nnz_ = 0;
  std::vector<std::int64_t> ptr_;
};

/// Entries gathered for rows [lo, hi), turned into CSR rows (sorted, duplicates summed in input
/// order, as the readers do) and appended.
template <class T>
void flush(Entries<T>& buf, Index lo, Index hi, Index cols, CsrAppender& out) {
  for (auto& r : buf.r) r -= static_cast<std::int32_t>(lo);
  out.append(data::detail::csr_from_triplets(hi - lo, cols, buf.r, buf.c, buf.v));
  buf.clear();
}

/// Writes the source's entries as `name` (a CSR matrix) under root. Inputs listing cells in order
/// stream in one pass; others are counted per cell first, then read once per block of cells whose
/// entries fit the budget.
template <class T, class Source>
ConvertReport write_csr_x(const Source& src, bool rows_in_order, const h5::Node& root, const std::string& name,
                          const ConvertOptions& o) {
  const auto say = [&](const std::string& m) {
    if (o.note) o.note(m);
  };
  const std::size_t budget = std::max<std::size_t>(1, o.memory_bytes / 24);
  ConvertReport rep;
  rep.cells = src.rows();
  rep.genes = src.cols();
  std::vector<std::int64_t> counts;
  if (!rows_in_order) {
    say("counting entries per cell");
    counts.assign(static_cast<std::size_t>(rep.cells), 0);
    rows_in_order = true;
    std::int32_t last = 0;
    src.scan([&](const Entries<T>& e) {
      for (std::int32_t r : e.r) {
        ++counts[r];
        rows_in_order = rows_in_order && r >= last;
        last = r;
      }
    });
    ++rep.passes;
  }
  rep.rows_in_order = rows_in_order;
  CsrAppender out(root, name, rep.genes, o.layout);
  Entries<T> buf;
  if (rows_in_order) {
    say("writing cells in one pass (the input lists them in order)");
    Index lo = 0;
    src.scan([&](const Entries<T>& e) {
      for (std::size_t k = 0; k < e.size(); ++k) {
        if (buf.size() >= budget && e.r[k] != buf.r.back()) {  // a full buffer ends at a cell's end
          flush(buf, lo, e.r[k], rep.genes, out);
          lo = e.r[k];
        }
        buf.add(e.r[k], e.c[k], e.v[k]);
      }
    });
    ++rep.passes;
    flush(buf, lo, rep.cells, rep.genes, out);
  } else {
    Index lo = 0;
    do {  // at least once: an empty matrix still gets its (empty) rows
      Index hi = lo;
      for (std::size_t n = 0; hi < rep.cells && (hi == lo || n + counts[hi] <= budget); ++hi) n += counts[hi];
      say("gathering cells " + std::to_string(lo) + " to " + std::to_string(hi) + " of " + std::to_string(rep.cells));
      src.scan([&](const Entries<T>& e) {
        for (std::size_t k = 0; k < e.size(); ++k)
          if (e.r[k] >= lo && e.r[k] < hi) buf.add(e.r[k], e.c[k], e.v[k]);
      });
      ++rep.passes;
      flush(buf, lo, hi, rep.genes, out);
      lo = hi;
    } while (lo < rep.cells);
  }
  rep.nnz = out.nnz();
  out.finish();
  return rep;
}

}  // namespace detail

/// obs (cell names, phenotype columns typed as pandas would read them) and var (gene names).
inline void write_obs_var(const h5::Node& root, const std::vector<std::string>& cells,
                          const std::vector<std::string>& genes, const std::vector<data::PhenoColumn>& pheno,
                          const H5adLayout& layout = {}) {
  DataFrameWriter obs(root, "obs", layout);
  obs.index(cells);
  for (const auto& c : pheno) obs.column(c);
  obs.finish();
  DataFrameWriter var(root, "var", layout);
  var.index(genes);
  var.finish();
}

/// An anndata < 0.8 dataframe (columns with codes in __categories, no encoding attributes) in
/// today's layout, column types guessed from their text as for a CSV.
inline void rewrite_dataframe(const h5::Node& df, const h5::Node& root, const std::string& name,
                              const H5adLayout& layout) {
  DataFrameWriter out(root, name, layout);
  const h5::Node index = h5::index_node(df);
  out.index(h5::read_strings(index));
  const Index n = h5::length_1d(index);
  for (const auto& c : h5::column_names(df)) out.column({c, h5::column_values(df, c, n)});
  out.finish();
}

/// Upstream's sparse input (see read_mtx_dataset: orientation from the name lists) as a CSR .h5ad
/// with the phenotype columns in obs. Example:
///   io::convert_mtx_to_h5ad("counts.mtx", "genes.csv", "cells.csv", "pheno.csv", "data.h5ad");
template <class T = float>
ConvertReport convert_mtx_to_h5ad(const std::string& mtx, const std::string& genes_csv, const std::string& cells_csv,
                                  const std::string& pheno_csv, const std::string& out,
                                  const ConvertOptions& o = {}) {
  const auto genes = read_name_csv(genes_csv), cells = read_name_csv(cells_csv);
  const MtxHeader h = read_mtx_header(mtx);
  const Index ng = static_cast<Index>(genes.size()), nc = static_cast<Index>(cells.size());
  const bool genes_by_cells = h.rows == ng && h.cols == nc;
  sakura::detail::require(genes_by_cells || (h.rows == nc && h.cols == ng), mtx, ": matrix is ",
                          shape_str(h.rows, h.cols), " but '", genes_csv, "' lists ", ng, " genes and '", cells_csv,
                          "' lists ", nc, " cells; expected genes x cells or cells x genes");
  const auto pheno = pheno_csv.empty() ? std::vector<data::PhenoColumn>{} : read_pheno_csv(pheno_csv, cells);
  H5adFile f(out);
  write_obs_var(f.root(), cells, genes, pheno, o.layout);
  const detail::MtxSource<T> src(mtx, genes_by_cells);
  const ConvertReport rep = detail::write_csr_x<T>(src, false, f.root(), "X", o);
  f.commit();
  return rep;
}

/// An .h5ad with X in any layout (CSC, dense or CSR) rewritten with a CSR X (chunked, compressed
/// if asked); every other member (obs, var, obsm, uns, layers, raw, ...) is copied unchanged.
template <class T = float>
ConvertReport convert_h5ad_to_csr(const std::string& in, const std::string& out, const ConvertOptions& o = {}) {
  h5::QuietErrors quiet;
  const h5::InputFile input(in);
  const h5::Node& root = input.root();
  detail::skip_x_arrays(root);  // the heap scan needs no pass over X's numbers
  const detail::H5adXSource<T> src(root);
  H5adFile f(out);
  H5G_info_t info;
  H5Gget_info(root.id(), &info);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    char buf[1024];
    H5Lget_name_by_idx(root.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, buf, sizeof buf, H5P_DEFAULT);
    const std::string name = buf;
    if (name == "X") continue;
    if ((name == "obs" || name == "var") && !h5::has_attr(h5::open(root, name), "encoding-type"))
      rewrite_dataframe(h5::open_dataframe(root, name), f.root(), name, o.layout);
    else
      h5w::copy(root, name, f.root(), name);
  }
  const ConvertReport rep = detail::write_csr_x<T>(src, src.rows_in_order(), f.root(), "X", o);
  f.commit();
  return rep;
}

}  // namespace sakura::io
