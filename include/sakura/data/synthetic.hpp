// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// A synthetic single-cell dataset shaped like the pbmc5k tutorial's: cell types with their own
/// marker genes, CD8A/CD8B high in the CD8 T cells, ~90% zeros, Seurat-style log-normalised.
/// Used by the demo, the examples and the tests; no files needed.
#pragma once

#include <cmath>
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "sakura/data/dataset.hpp"
#include "sakura/tensor/rng.hpp"
#include "sakura/tensor/tensor.hpp"

namespace sakura::data {

struct SyntheticOptions {
  Index cells = 1000;
  Index genes = 500;          ///< at least 2 + 8 * cell_types
  int cell_types = 4;         ///< type 0 is "CD8 T" (CD8A, CD8B high)
  double mean_count = 0.12;   ///< background Poisson rate: ~89% zeros
  std::uint64_t seed = 3407;
};

struct SyntheticData {
  Tensor<float> expr;                    ///< cells x genes, log1p(count / total * 1e4)
  std::vector<std::string> genes;        ///< "CD8A", "CD8B", then "G2", "G3", ...
  std::vector<std::string> cells;        ///< "cell0", ...
  std::vector<std::int64_t> cell_type;   ///< 0 .. cell_types-1
  std::vector<std::string> type_names;   ///< "CD8 T", "type1", ...
};

// Not `detail`: a sakura::data::detail would hide sakura::detail from the data headers included after this one.
namespace detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;
/// Poisson sample (Knuth for small rates, normal approximation above 30).
inline int poisson(Rng& rng, double lambda) {
  if (lambda > 30) return std::max(0, static_cast<int>(std::lround(rng.normal(lambda, std::sqrt(lambda)))));
  const double l = std::exp(-lambda);
  int k = 0;
  double p = 1.0;
  do {
    ++k;
    p *= rng.uniform();
  } while (p > l);
  return k - 1;
}
}  // namespace detail

/// The generative model: a heavy-tailed background rate per gene, 8 marker genes per cell type at
/// 20x (CD8A/CD8B for type 0), a log-normal library size per cell, Poisson counts. The data sets
/// of make_synthetic and of the large-atlas generator (io/synthetic_h5ad.hpp) are draws from it.
class SyntheticModel {
 public:
  /// Draws the per-gene rates from rng.
  SyntheticModel(const SyntheticOptions& o, Rng& rng) : o_(o), base_(static_cast<std::size_t>(o.genes)) {
    sakura::detail::require(o.cell_types >= 2 && o.genes >= 2 + 8 * o.cell_types && o.cells > 0,
                            "synthetic data needs >= 2 cell types, >= 2 + 8 * types genes and some cells");
    for (auto& b : base_) b = o.mean_count * std::exp(rng.normal(0.0, 0.8)) / std::exp(0.32);
  }
  const SyntheticOptions& options() const { return o_; }

  std::string gene_name(Index g) const { return g == 0 ? "CD8A" : g == 1 ? "CD8B" : "G" + std::to_string(g); }
  std::string type_name(int t) const { return t == 0 ? "CD8 T" : "type" + std::to_string(t); }
  bool is_marker(Index g, int t) const {
    if (t == 0 && g < 2) return true;
    return g >= 2 + 8 * t && g < 2 + 8 * (t + 1);
  }

  /// One cell: its type, and its counts per gene in `counts` (o.genes entries); returns the type.
  int sample_cell(Rng& rng, std::vector<int>& counts, double& total) const {
    const int t = static_cast<int>(rng.below(static_cast<std::uint64_t>(o_.cell_types)));
    const double depth = std::exp(rng.normal(0.0, 0.3));  // library size variation
    counts.resize(base_.size());
    total = 0;
    for (Index g = 0; g < o_.genes; ++g) {
      const double rate = base_[static_cast<std::size_t>(g)] * depth * (is_marker(g, t) ? 20.0 : 1.0);
      counts[static_cast<std::size_t>(g)] = detail::poisson(rng, rate);
      total += counts[static_cast<std::size_t>(g)];
    }
    return t;
  }
  /// Seurat's LogNormalize of one count: log1p(count / total * 1e4).
  static float normalised(int count, double total) {
    return static_cast<float>(std::log1p(static_cast<float>(count) / std::max(total, 1.0) * 1e4));
  }

 private:
  SyntheticOptions o_;
  std::vector<double> base_;
};

inline SyntheticData make_synthetic(const SyntheticOptions& o = {}) {
  Rng rng(o.seed);
  const SyntheticModel model(o, rng);
  SyntheticData d;
  d.expr = Tensor<float>(o.cells, o.genes);
  for (Index g = 0; g < o.genes; ++g) d.genes.push_back(model.gene_name(g));
  for (int t = 0; t < o.cell_types; ++t) d.type_names.push_back(model.type_name(t));
  std::vector<int> counts;
  for (Index c = 0; c < o.cells; ++c) {
    double total = 0;
    d.cell_type.push_back(model.sample_cell(rng, counts, total));
    d.cells.push_back("cell" + std::to_string(c));
    for (Index g = 0; g < o.genes; ++g) {
      const int k = counts[static_cast<std::size_t>(g)];
      d.expr(c, g) = k > 0 ? SyntheticModel::normalised(k, total) : 0.0f;
    }
  }
  return d;
}

/// The same data as a Dataset (sparse expression, phenotype column "cell_type" with the type
/// names), the form the readers produce; e.g. to write it with io::write_mtx_dataset.
inline Dataset<float> to_dataset(const SyntheticData& d) {
  Dataset<float> ds;
  ds.genes = d.genes;
  ds.cells = d.cells;
  CsrMatrix<float>& m = ds.expr;
  m.rows = d.expr.rows();
  m.cols = d.expr.cols();
  for (Index r = 0; r < m.rows; ++r) {
    for (Index c = 0; c < m.cols; ++c)
      if (d.expr(r, c) != 0.0f) {
        m.indices.push_back(static_cast<std::int32_t>(c));
        m.values.push_back(d.expr(r, c));
      }
    m.indptr.push_back(m.nnz());
  }
  PhenoColumn type{"cell_type", {}};
  for (auto t : d.cell_type) type.values.push_back(d.type_names[static_cast<std::size_t>(t)]);
  ds.pheno.push_back(std::move(type));
  ds.validate("synthetic data");
  return ds;
}

}  // namespace sakura::data
