// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// CsrMatrix<T>: compressed sparse rows (cells x genes), the sparse input of a batch and the
/// expression of a data set; below the controller, which reads it, and the data layer, which fills it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "sakura/error.hpp"
#include "sakura/tensor/tensor.hpp"

namespace sakura {
template <class T>
struct ColumnDrop;

/// Compressed sparse rows. Invariant (checked by validate(), established by every reader): indptr has
/// rows + 1 non-decreasing entries from 0 to nnz, and each row's column indices are strictly
/// increasing and inside [0, cols). Sorted rows let gather_columns() binary-search without scratch
/// memory, so a per-batch call allocates nothing.
/// Example:
///   std::vector<Index> rows{4, 0, 7};
///   m.gather_dense(rows, out);   // out: 3 x m.cols, row-major, zeros where nothing is stored
template <class T = float>
struct CsrMatrix {
  Index rows = 0, cols = 0;
  std::vector<std::int64_t> indptr{0};
  std::vector<std::int32_t> indices;
  std::vector<T> values;

  Index nnz() const { return static_cast<Index>(values.size()); }
  CsrRef<T> ref() const { return {rows, cols, indptr.data(), indices.data(), values.data()}; }

  /// The non-zeros of a dense row-major matrix.
  static CsrMatrix from_dense(MatrixRef<const T> d) {
    CsrMatrix m;
    m.rows = d.rows;
    m.cols = d.cols;
    for (Index r = 0; r < d.rows; ++r) {
      for (Index c = 0; c < d.cols; ++c)
        if (d(r, c) != T(0)) {
          m.indices.push_back(static_cast<std::int32_t>(c));
          m.values.push_back(d(r, c));
        }
      m.indptr.push_back(static_cast<std::int64_t>(m.values.size()));
    }
    return m;
  }
  Index row_nnz(Index r) const { return indptr[r + 1] - indptr[r]; }
  std::string shape_str() const { return sakura::shape_str(rows, cols); }

  /// Throws naming `what` and the first broken invariant; readers call it on what they built.
  void validate(std::string_view what = "CSR matrix") const {
    detail::require(rows >= 0 && cols >= 0 && cols <= std::numeric_limits<std::int32_t>::max(), what,
                    ": bad shape ", shape_str());
    detail::require(static_cast<Index>(indptr.size()) == rows + 1, what, ": indptr has ", indptr.size(),
                    " entries for ", rows, " rows (expected ", rows + 1, ")");
    detail::require(indptr.front() == 0 && indptr.back() == nnz() && indices.size() == values.size(), what,
                    ": indptr runs from ", indptr.front(), " to ", indptr.back(), " but there are ", values.size(),
                    " values and ", indices.size(), " indices");
    for (Index r = 0; r < rows; ++r) validate_row(r, what);
  }

  /// Copies the listed rows into out (rows.size() x cols, row-major), zero where nothing is stored.
  void gather_dense(std::span<const Index> sel, T* out) const {
    for (std::size_t i = 0; i < sel.size(); ++i) {
      check_row(sel[i]);
      T* dst = out + static_cast<Index>(i) * cols;
      std::fill(dst, dst + cols, T(0));
      for (std::int64_t k = indptr[sel[i]]; k < indptr[sel[i] + 1]; ++k) dst[indices[k]] = values[k];
    }
  }

  /// Copies columns `cset` of the listed rows into out (rows.size() x cset.size(), row-major): the
  /// signature targets. Binary search per entry, so the cost does not grow with the number of genes.
  void gather_columns(std::span<const Index> sel, std::span<const Index> cset, T* out) const {
    for (Index c : cset)
      if (c < 0 || c >= cols) detail::fail("gather_columns: column ", c, " outside a ", shape_str(), " matrix");
    for (std::size_t i = 0; i < sel.size(); ++i) {
      check_row(sel[i]);
      const auto first = indices.begin() + indptr[sel[i]], last = indices.begin() + indptr[sel[i] + 1];
      for (std::size_t j = 0; j < cset.size(); ++j) {
        auto it = std::lower_bound(first, last, static_cast<std::int32_t>(cset[j]));
        out[i * cset.size() + j] = (it != last && *it == cset[j]) ? values[it - indices.begin()] : T(0);
      }
    }
  }

  /// A new matrix without the listed columns (exclude_from_input), plus kept[new column] = old column.
  /// Repeated entries in `drop` are allowed; out-of-range ones throw.
  ColumnDrop<T> drop_columns(std::span<const Index> drop) const;

  /// Sorts each row by column and sums entries stored twice at the same place (scipy's
  /// sum_duplicates, what upstream's coo -> csc conversion does), restoring the invariant.
  void sort_and_sum_duplicates() {
    std::vector<std::pair<std::int32_t, T>> scratch;
    std::int64_t write = 0;
    for (Index r = 0; r < rows; ++r) {
      const std::int64_t begin = indptr[r], end = indptr[r + 1];
      if (!std::is_sorted(indices.begin() + begin, indices.begin() + end)) sort_row(begin, end, scratch);
      indptr[r] = write;
      for (std::int64_t k = begin; k < end; ++k) {
        if (write > indptr[r] && indices[write - 1] == indices[k]) {
          values[write - 1] += values[k];
        } else {
          indices[write] = indices[k];
          values[write++] = values[k];
        }
      }
    }
    indptr[rows] = write;
    indices.resize(write);
    values.resize(write);
  }

 private:
  // Per-row checks use `if` + fail, not require(), whose arguments (shape_str()) would be built every call.
  void check_row(Index r) const {
    if (r < 0 || r >= rows) detail::fail("row ", r, " outside a ", shape_str(), " matrix");
  }
  void validate_row(Index r, std::string_view what) const {
    detail::require(indptr[r] <= indptr[r + 1], what, ": indptr decreases at row ", r);
    for (std::int64_t k = indptr[r]; k < indptr[r + 1]; ++k) {
      detail::require(indices[k] >= 0 && indices[k] < cols, what, ": row ", r, " has column ", indices[k],
                      " outside [0, ", cols, ")");
      detail::require(k == indptr[r] || indices[k - 1] < indices[k], what, ": row ", r,
                      " has unsorted or repeated column ", indices[k]);
    }
  }
  void sort_row(std::int64_t begin, std::int64_t end, std::vector<std::pair<std::int32_t, T>>& scratch) {
    scratch.clear();
    for (std::int64_t k = begin; k < end; ++k) scratch.emplace_back(indices[k], values[k]);
    // Stable, so duplicates are summed in file order: the same float rounding as a sequential reader.
    std::stable_sort(scratch.begin(), scratch.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::int64_t k = begin; k < end; ++k) std::tie(indices[k], values[k]) = scratch[k - begin];
  }
};

/// What CsrMatrix::drop_columns returns.
template <class T>
struct ColumnDrop {
  CsrMatrix<T> matrix;
  std::vector<Index> kept;  ///< kept[new column] = old column
};

template <class T>
ColumnDrop<T> CsrMatrix<T>::drop_columns(std::span<const Index> drop) const {
  std::vector<std::int32_t> remap(static_cast<std::size_t>(cols), 0);  // old column -> new, -1 dropped
  for (Index c : drop) {
    if (c < 0 || c >= cols) detail::fail("drop_columns: column ", c, " outside a ", shape_str(), " matrix");
    remap[c] = -1;
  }
  ColumnDrop<T> res;
  for (Index c = 0; c < cols; ++c)
    if (remap[c] >= 0) {
      remap[c] = static_cast<std::int32_t>(res.kept.size());
      res.kept.push_back(c);
    }
  CsrMatrix<T>& m = res.matrix;
  m.rows = rows;
  m.cols = static_cast<Index>(res.kept.size());
  m.indptr.assign(1, 0);
  for (Index r = 0; r < rows; ++r) {
    for (std::int64_t k = indptr[r]; k < indptr[r + 1]; ++k)
      if (remap[indices[k]] >= 0) {
        m.indices.push_back(remap[indices[k]]);  // monotone remap keeps rows sorted
        m.values.push_back(values[k]);
      }
    m.indptr.push_back(m.nnz());
  }
  return res;
}

}  // namespace sakura
