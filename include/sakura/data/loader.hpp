// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// TrainingData: a data set prepared once for training (input genes without the excluded
/// signature genes, signature targets, fitted phenotypes); Loader: fills preallocated batches
/// from its rows in place, so the training loop allocates nothing.
#pragma once

#include <algorithm>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sakura/controller/batch.hpp"
#include "sakura/data/backed.hpp"
#include "sakura/data/dataset.hpp"
#include "sakura/data/pheno.hpp"
#include "sakura/error.hpp"

namespace sakura::data {

/// A signature's target: the expression of its marker genes, optionally binarised (upstream's
/// ToBinary post_procedure; stateless, so applying it per batch is exact).
struct SignatureTarget {
  std::string name;
  std::vector<std::string> genes;
  std::vector<Index> columns;  ///< into TrainingData::signature_expr
  bool binarize = false;
  double threshold = 1e-6, scale = 1.0;
  bool inverse = false;
};

/// What a signature contributes to data preparation (from signature_config).
struct SignatureRequest {
  std::string name;
  std::vector<std::string> genes;
  bool exclude_from_input = false;
  bool binarize = false;
  double threshold = 1e-6, scale = 1.0;
  bool inverse = false;
};

template <class T = float>
struct TrainingData {
  std::vector<std::string> cells;
  std::vector<std::string> genes;          ///< input genes (the model's input columns)
  CsrMatrix<T> input;                      ///< cells x genes
  CsrMatrix<T> signature_expr;             ///< cells x (union of every signature's genes)
  std::vector<SignatureTarget> signatures;
  std::vector<PhenoTable> phenos;
  std::vector<PhenoColumn> columns;        ///< the raw phenotype columns, kept for reports
  /// Set when X stays on disk (data/backed.hpp): `input` and `signature_expr` then hold no cells,
  /// `cells` and `columns` are empty, and batches and names are read through it.
  std::shared_ptr<BackedInput<T>> backed;
  Index n_cells() const { return backed ? backed->source->rows() : static_cast<Index>(cells.size()); }
  Index n_genes() const { return static_cast<Index>(genes.size()); }
};

/// Prepares a data set: resolves every signature gene (throwing once, naming every absent gene
/// and its signature), keeps the union of signature genes as a small CSR, and drops the genes of
/// signatures with exclude_from_input from the input (upstream's 'all' gene set with '-').
/// A signature gene whose name the data repeats (now, or in the file before make_unique renamed
/// the repeats) is ambiguous and always an error.
template <class T>
TrainingData<T> prepare_training_data(Dataset<T>&& ds, const std::vector<SignatureRequest>& sigs,
                                      std::vector<PhenoTable> phenos) {
  TrainingData<T> d;
  std::unordered_map<std::string, const RepeatedName*> repeated;
  const auto now = detail::repeated_names(ds.genes);
  for (const auto& r : ds.repeated_genes) repeated.emplace(r.name, &r);
  for (const auto& r : now) repeated.emplace(r.name, &r);
  std::unordered_map<std::string_view, Index> pos;
  for (Index g = ds.n_genes() - 1; g >= 0; --g) pos[ds.genes[static_cast<std::size_t>(g)]] = g;
  std::vector<std::vector<Index>> idx(sigs.size());
  std::string missing;
  for (std::size_t s = 0; s < sigs.size(); ++s) {
    for (const auto& g : sigs[s].genes) {
      if (auto r = repeated.find(g); r != repeated.end())
        detail::fail("signature '", sigs[s].name, "' lists gene '", g, "', which the data set's gene names repeat (",
                     r->second->rows.size(), " times: rows ", r->second->rows[0] + 1, " and ", r->second->rows[1] + 1,
                     " of the gene list as read), so it is ambiguous, even with make_names_unique; remove the "
                     "repeat from the data's gene names or the gene from the signature");
      const auto it = pos.find(g);
      if (it == pos.end()) missing += (missing.empty() ? "'" : ", '") + g + "' (signature '" + sigs[s].name + "')";
      idx[s].push_back(it == pos.end() ? -1 : it->second);
    }
  }
  detail::require(missing.empty(), "signature gene(s) ", missing, " not among the data set's ", ds.genes.size(),
                  " genes");
  // union of signature genes, ascending
  std::vector<Index> uni;
  for (auto& v : idx) uni.insert(uni.end(), v.begin(), v.end());
  std::sort(uni.begin(), uni.end());
  uni.erase(std::unique(uni.begin(), uni.end()), uni.end());
  std::vector<char> keep(static_cast<std::size_t>(ds.n_genes()), 0);
  for (Index g : uni) keep[static_cast<std::size_t>(g)] = 1;
  std::vector<Index> not_sig;
  for (Index g = 0; g < ds.n_genes(); ++g)
    if (!keep[static_cast<std::size_t>(g)]) not_sig.push_back(g);
  d.signature_expr = ds.expr.drop_columns(not_sig).matrix;
  for (std::size_t s = 0; s < sigs.size(); ++s) {
    SignatureTarget t;
    t.name = sigs[s].name;
    t.genes = sigs[s].genes;
    for (Index g : idx[s]) t.columns.push_back(std::lower_bound(uni.begin(), uni.end(), g) - uni.begin());
    t.binarize = sigs[s].binarize;
    t.threshold = sigs[s].threshold;
    t.scale = sigs[s].scale;
    t.inverse = sigs[s].inverse;
    d.signatures.push_back(std::move(t));
  }
  // input genes
  std::vector<Index> drop;
  for (std::size_t s = 0; s < sigs.size(); ++s)
    if (sigs[s].exclude_from_input) drop.insert(drop.end(), idx[s].begin(), idx[s].end());
  if (drop.empty()) {
    d.input = std::move(ds.expr);
    d.genes = std::move(ds.genes);
  } else {
    auto cd = ds.expr.drop_columns(drop);
    d.input = std::move(cd.matrix);
    for (Index g : cd.kept) d.genes.push_back(ds.genes[static_cast<std::size_t>(g)]);
    ds.expr = CsrMatrix<T>{};
  }
  detail::require(d.genes.size() > 0, "no input genes left after exclude_from_input");
  d.cells = std::move(ds.cells);
  d.phenos = std::move(phenos);
  d.columns = std::move(ds.pheno);
  return d;
}

/// Fills batches from a TrainingData's rows. Example:
///   Loader<float> loader(data);
///   auto batch = loader.make_batch(100);   // every slot allocated once
///   loader.fill(rows, batch);              // in place, no allocation for rows.size() <= 100
template <class T = float>
class Loader {
 public:
  explicit Loader(const TrainingData<T>& d) : d_(&d) {}

  /// A batch with every signature and phenotype slot, sized for `capacity` cells.
  Batch<T> make_batch(Index capacity) const {
    Batch<T> b(Tensor<T>(capacity, d_->n_genes()));
    for (const auto& s : d_->signatures) b.signature_values(s.name) = Tensor<T>(capacity, static_cast<Index>(s.columns.size()));
    for (const auto& p : d_->phenos) {
      if (p.has_labels()) b.labels(p.name).assign(static_cast<std::size_t>(capacity), 0);
      if (p.has_values()) b.pheno_values(p.name) = Tensor<T>(capacity, p.width);
    }
    return b;
  }

  /// Writes rows (<= the batch's capacity) into the batch: dense expression of the input genes,
  /// signature targets, phenotype labels and values.
  void fill(std::span<const Index> rows, Batch<T>& b) const {
    const Index n = static_cast<Index>(rows.size());
    b.expr.resize(n, d_->n_genes());
    d_->input.gather_dense(rows, b.expr.data());
    for (const auto& s : d_->signatures) {
      Tensor<T>& y = b.signature_values(s.name);
      y.resize(n, static_cast<Index>(s.columns.size()));
      d_->signature_expr.gather_columns(rows, s.columns, y.data());
      if (s.binarize)
        for (T& v : y) {
          double x = v > s.threshold ? 1.0 : 0.0;
          if (s.inverse) x = 1.0 - x;
          v = static_cast<T>(x * s.scale);
        }
    }
    for (const auto& p : d_->phenos) {
      if (p.has_labels()) {
        auto& l = b.labels(p.name);
        l.resize(rows.size());
        for (std::size_t i = 0; i < rows.size(); ++i) l[i] = p.labels[static_cast<std::size_t>(rows[i])];
      }
      if (p.has_values()) {
        Tensor<T>& v = b.pheno_values(p.name);
        v.resize(n, p.width);
        for (Index i = 0; i < n; ++i)
          for (Index j = 0; j < p.width; ++j)
            v(i, j) = static_cast<T>(p.values[static_cast<std::size_t>(rows[i] * p.width + j)]);
      }
    }
  }

  const TrainingData<T>& data() const { return *d_; }

 private:
  const TrainingData<T>* d_;
};

}  // namespace sakura::data
