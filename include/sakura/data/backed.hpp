// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Backed data: the expression matrix stays on disk (a RowSource reads rows on demand) and each
/// batch's rows are staged as a small in-memory TrainingData, so the in-memory Loader fills the
/// batch exactly as it fills it from a whole matrix: a backed run is bit-identical to one in memory.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "sakura/controller/batch.hpp"
#include "sakura/data/dataset.hpp"
#include "sakura/data/pheno.hpp"
#include "sakura/error.hpp"

namespace sakura::data {

template <class T>
struct TrainingData;
template <class T>
class Loader;

/// Rows of a cells x genes matrix kept on disk, read on demand. Implementations serialise their
/// own reads (a Feed reads on a background thread while the main thread asks for names).
template <class T>
class RowSource {
 public:
  virtual ~RowSource() = default;
  virtual Index rows() const = 0;
  virtual Index cols() const = 0;
  /// The most entries one row stores (bounds every read buffer).
  virtual std::int64_t max_row_entries() const = 0;
  /// Reads `rows` (strictly ascending) into out: out.rows = rows.size(), out.cols = cols(), each row
  /// sorted by column with repeated columns summed in file order (what the in-memory reader keeps).
  /// out's vectors only grow. Throws a sakura::Error naming the file and the HDF5 path.
  virtual void read(std::span<const Index> rows, CsrMatrix<T>& out) = 0;
  /// Makes room for reads of up to `rows` rows, so that later reads allocate nothing.
  virtual void reserve(Index rows) = 0;
  /// The names of `rows` (any order), into out (resized to rows.size()).
  virtual void names(std::span<const Index> rows, std::vector<std::string>& out) = 0;
  /// The file, for messages.
  virtual const std::string& path() const = 0;
};

/// How a RowSource's columns (the file's genes) map onto a TrainingData's input and signature
/// columns (prepare_training_data's choice: excluded signature genes leave the input).
template <class T>
struct BackedInput {
  std::shared_ptr<RowSource<T>> source;
  std::vector<std::int32_t> to_input;      ///< file gene -> input column, -1 when excluded
  std::vector<std::int32_t> to_signature;  ///< file gene -> column of signature_expr, -1 when no marker
  Index input_cols = 0, signature_cols = 0;
};

/// Rows a reader read at once (a fetch), ascending, with their entries in file columns.
template <class T>
struct FetchedRows {
  std::vector<Index> rows;
  CsrMatrix<T> x;
  std::int64_t pass = -1;  ///< which fetch of which pass it holds (a sampler's key), -1: none
  Index fetch = -1;
  std::uint64_t stamp = 0;  ///< when it was read (the oldest is replaced first)
};

/// One thread's staging area: copies a batch's rows out of fetched rows into a TrainingData of
/// just those cells (columns selected per batch), then lets the in-memory Loader fill the batch.
/// Every buffer is sized at construction for `capacity` cells, so filling allocates nothing.
template <class T>
class BackedStage {
 public:
  BackedStage(const TrainingData<T>& d, Index capacity) : d_(&d) {
    const auto& in = *d.backed;
    const auto max_row = static_cast<std::size_t>(in.source->max_row_entries());
    const auto cap = static_cast<std::size_t>(capacity);
    local_.genes = d.genes;  // n_genes() sizes the dense input
    local_.signatures = d.signatures;
    local_.input.cols = in.input_cols;
    local_.signature_expr.cols = in.signature_cols;
    for (CsrMatrix<T>* m : {&local_.input, &local_.signature_expr}) {
      m->indptr.reserve(cap + 1);
      m->indices.reserve(cap * std::min<std::size_t>(max_row, static_cast<std::size_t>(m->cols)));
      m->values.reserve(m->indices.capacity());
    }
    for (const auto& p : d.phenos) {
      PhenoTable t;
      t.name = p.name;
      t.width = p.width;
      local_.phenos.push_back(std::move(t));
      if (p.has_labels()) local_.phenos.back().labels.reserve(cap);
      if (p.has_values()) local_.phenos.back().values.reserve(cap * static_cast<std::size_t>(p.width));
    }
    local_rows_.resize(cap);
    std::iota(local_rows_.begin(), local_rows_.end(), Index{0});
    identity_ = true;  // no gene excluded nor moved: rows are copied as they are
    for (std::size_t g = 0; g < in.to_input.size(); ++g) identity_ = identity_ && in.to_input[g] == std::int32_t(g);
    for (std::size_t g = 0; g < in.to_signature.size(); ++g)
      if (in.to_signature[g] >= 0) markers_.emplace_back(static_cast<std::int32_t>(g), in.to_signature[g]);
  }

  /// Fills b with `rows` (batch order); every row must be in one of `fetched`.
  void fill(std::span<const Index> rows, std::span<const FetchedRows<T>* const> fetched, Batch<T>& b) {
    const auto& in = *d_->backed;
    CsrMatrix<T>& x = local_.input;
    CsrMatrix<T>& s = local_.signature_expr;
    const auto n = rows.size();
    for (CsrMatrix<T>* m : {&x, &s}) {
      m->rows = static_cast<Index>(n);
      m->indptr.assign(1, 0);
      m->indices.clear();
      m->values.clear();
    }
    for (Index r : rows) {
      const auto [f, i] = locate(r, fetched);
      const CsrMatrix<T>& src = f->x;
      const std::int32_t *g0 = src.indices.data() + src.indptr[i], *g1 = src.indices.data() + src.indptr[i + 1];
      const T* v0 = src.values.data() + src.indptr[i];
      if (identity_) {
        x.indices.insert(x.indices.end(), g0, g1);
        x.values.insert(x.values.end(), v0, v0 + (g1 - g0));
      } else {
        for (const std::int32_t* g = g0; g != g1; ++g)
          if (const std::int32_t c = in.to_input[*g]; c >= 0) {  // monotone maps keep each row sorted
            x.indices.push_back(c);
            x.values.push_back(v0[g - g0]);
          }
      }
      for (const std::int32_t* g = g0; const auto& [gene, c] : markers_) {  // a row's columns ascend, once each
        g = std::lower_bound(g, g1, gene);
        if (g == g1) break;
        if (*g == gene) {
          s.indices.push_back(c);
          s.values.push_back(v0[g - g0]);
        }
      }
      x.indptr.push_back(x.nnz());
      s.indptr.push_back(s.nnz());
    }
    for (std::size_t p = 0; p < d_->phenos.size(); ++p) {  // the batch's phenotype rows
      const auto& from = d_->phenos[p];
      auto& to = local_.phenos[p];
      to.labels.resize(from.has_labels() ? n : 0);
      to.values.resize(from.has_values() ? n * static_cast<std::size_t>(from.width) : 0);
      for (std::size_t j = 0; j < n; ++j) {
        const auto r = static_cast<std::size_t>(rows[j]);
        if (from.has_labels()) to.labels[j] = from.labels[r];
        if (from.has_values())
          std::copy_n(from.values.begin() + static_cast<std::ptrdiff_t>(r * to.width), to.width,
                      to.values.begin() + static_cast<std::ptrdiff_t>(j * to.width));
      }
    }
    Loader<T>(local_).fill(std::span<const Index>(local_rows_.data(), n), b);
  }

 private:
  /// The fetch holding row r and r's index in it.
  static std::pair<const FetchedRows<T>*, Index> locate(Index r, std::span<const FetchedRows<T>* const> fetched) {
    for (const FetchedRows<T>* f : fetched) {
      const auto it = std::lower_bound(f->rows.begin(), f->rows.end(), r);
      if (it != f->rows.end() && *it == r) return {f, static_cast<Index>(it - f->rows.begin())};
    }
    detail::fail("backed data: row ", r, " was not read before its batch was filled");
  }

  const TrainingData<T>* d_;
  TrainingData<T> local_;
  std::vector<Index> local_rows_;
  bool identity_ = false;                                   ///< file genes are the input columns
  std::vector<std::pair<std::int32_t, std::int32_t>> markers_;  ///< (file gene, signature column), ascending
};

}  // namespace sakura::data
