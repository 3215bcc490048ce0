// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// sakura-train --write-h5ad: the run's results as an .h5ad that scanpy/anndata open (see results_h5ad.cpp).
#pragma once

#include <string>

#include <sakura/story/runner.hpp>

namespace sakura::tools {

struct ResultsH5ad {
  std::string path;
  bool with_x = false;        ///< also copy the expression matrix (X) of the input
  bool results_only = false;  ///< obs holds only the cell names, var nothing
};

/// Evaluates the trained model on every cell (in eval_chunk blocks, appended as they come) and
/// writes obsm["X_sakura_main"], obsm["X_sakura_<block>"] per phenotype / signature latent and
/// obsm["X_sakura_<block>_out"] per head output (the values of the CSV dumps' <block>.out.*
/// columns), uns["sakura"] (config, losses as a dataframe of losses.tsv, class names of the
/// phenotype heads), and obs/var of the input (or only the cell names when results_only).
void write_results_h5ad(story::Session& s, story::Runner& r, const ResultsH5ad& o);

}  // namespace sakura::tools
