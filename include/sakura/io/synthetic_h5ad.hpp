// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// A large synthetic atlas written straight to .h5ad (CSR X, cell types in obs, marker genes in
/// var) a block of cells at a time, so 2,000,000 cells x 2,000 genes need the memory of one block.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sakura/backend/cpu/kernels.hpp"
#include "sakura/data/synthetic.hpp"
#include "sakura/io/h5ad_writer.hpp"

namespace sakura::io {

struct SyntheticAtlasOptions {
  data::SyntheticOptions model{};  ///< cells, genes, cell types, background rate, seed
  bool counts = false;           ///< X holds raw counts instead of log-normalised values
  Index block_cells = 8192;      ///< cells generated (in parallel) and appended at once
  H5adLayout layout{};
  std::function<void(Index cells_done)> progress{};  ///< called after each block, when set
};

/// Writes N cells x G genes drawn from data::SyntheticModel: obs "cell_type" (categorical) and
/// "total_counts", var "marker_of" (the type a gene marks, missing for background genes), X CSR
/// float32 (~90% zeros). Cell c draws from its own Philox stream (seed, c), so the file does not
/// depend on the block size or the number of threads.
/// Example: `io::write_synthetic_h5ad("atlas.h5ad", {.model = {.cells = 2'000'000, .genes = 2000}});`
inline void write_synthetic_h5ad(const std::string& path, const SyntheticAtlasOptions& o) {
  Rng rates(o.model.seed);
  const data::SyntheticModel model(o.model, rates);
  const Index n = o.model.cells, g_count = o.model.genes;
  sakura::detail::require(o.block_cells > 0, "synthetic atlas: block_cells must be positive");
  H5adFile f(path);
  std::vector<std::string> types, genes;
  for (int t = 0; t < o.model.cell_types; ++t) types.push_back(model.type_name(t));
  {
    DataFrameWriter var(f.root(), "var", o.layout);
    std::vector<std::int32_t> marker;
    for (Index g = 0; g < g_count; ++g) {
      genes.push_back(model.gene_name(g));
      int m = -1;
      for (int t = 0; t < o.model.cell_types && m < 0; ++t)
        if (model.is_marker(g, t)) m = t;
      marker.push_back(m);
    }
    var.index(genes);
    var.categorical("marker_of", marker, types);
    var.finish();
  }
  DataFrameWriter obs(f.root(), "obs", o.layout);
  h5w::Appender names = obs.index_appender(), type_codes = obs.categorical_appender("cell_type", types),
                totals = obs.numbers_appender<double>("total_counts");
  CsrAppender x(f.root(), "X", g_count, o.layout);

  struct Cell {
    std::vector<std::int32_t> genes;
    std::vector<float> values;
    std::int32_t type = 0;
    double total = 0;
  };
  std::vector<Cell> cells(static_cast<std::size_t>(std::min(o.block_cells, n)));
  std::vector<std::string> block_names;
  std::vector<std::int32_t> block_types;
  std::vector<double> block_totals;
  CsrMatrix<float> block;
  block.cols = g_count;
  for (Index c0 = 0; c0 < n; c0 += o.block_cells) {
    const Index nb = std::min(o.block_cells, n - c0);
    cpu::parallel_for(nb, nb > 1, [&](Index i) {
      thread_local std::vector<int> counts;
      std::uint64_t key = o.model.seed + 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(c0 + i + 1);
      key = (key ^ (key >> 31)) * 0xBF58476D1CE4E5B9ull;
      Rng rng(key ^ (key >> 29));
      Cell& cell = cells[static_cast<std::size_t>(i)];
      cell.type = model.sample_cell(rng, counts, cell.total);
      cell.genes.clear();
      cell.values.clear();
      for (Index g = 0; g < g_count; ++g)
        if (const int k = counts[static_cast<std::size_t>(g)]; k > 0) {
          cell.genes.push_back(static_cast<std::int32_t>(g));
          cell.values.push_back(o.counts ? static_cast<float>(k) : data::SyntheticModel::normalised(k, cell.total));
        }
    });
    block.rows = nb;
    block.indptr.assign(1, 0);
    block.indices.clear();
    block.values.clear();
    block_names.clear();
    block_types.clear();
    block_totals.clear();
    for (Index i = 0; i < nb; ++i) {
      const Cell& cell = cells[static_cast<std::size_t>(i)];
      block.indices.insert(block.indices.end(), cell.genes.begin(), cell.genes.end());
      block.values.insert(block.values.end(), cell.values.begin(), cell.values.end());
      block.indptr.push_back(block.nnz());
      block_names.push_back("cell" + std::to_string(c0 + i));
      block_types.push_back(cell.type);
      block_totals.push_back(cell.total);
    }
    x.append(block);
    names.append_strings(block_names);
    type_codes.append(std::span<const std::int32_t>(block_types));
    totals.append(std::span<const double>(block_totals));
    if (o.progress) o.progress(c0 + nb);
  }
  x.finish();
  names.close();
  type_codes.close();
  totals.close();
  obs.finish();
  f.commit();
}

}  // namespace sakura::io
