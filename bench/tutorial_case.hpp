// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The benchmarked step, shared by sakura_bench (CPU) and sakura_bench_gpu so both time the same
// network, terms, weights and data as bench/reference_torch.py: the pbmc5k tutorial configs
// (examples/configs, unmodified) at a case's sizes, and four synthetic batches with cd8 targets.
#pragma once

#include <sakura/sakura.hpp>
#include <sakura/data/synthetic.hpp>

#include <utility>
#include <vector>

namespace sakura::bench {

/// Layer sizes of one benchmark case.
struct Shape {
  Index genes, hidden, latent, batch;
};

/// The tutorial configs with the sizes of `s`; the signature terms get weight 1 as in the
/// benchmark definition (the tutorial config already has MSE + L1 + SW2_uniform).
inline std::pair<config::Json, config::Json> tutorial_configs(const Shape& s) {
  config::Json cfg = config::read_json_file(SAKURA_SOURCE_DIR "/examples/configs/pbmc5k_config.json");
  config::Json sig = config::read_json_file(SAKURA_SOURCE_DIR "/examples/configs/pbmc5k_signature_config.json");
  cfg["main_latent"]["encoder_neurons"] = s.hidden;
  cfg["main_latent"]["decoder_neurons"] = s.hidden;
  cfg["main_latent"]["latent_dim"] = s.latent;
  sig["cd8"]["signature_lat_dim"] = s.latent;
  for (auto& [k, t] : sig["cd8"]["loss"].items()) t["init_weight"] = 1.0;
  return {cfg, sig};
}
inline ExperimentSpec tutorial_spec(const Shape& s) {
  auto [cfg, sig] = tutorial_configs(s);
  return config::experiment_from_json(cfg, config::Json::object(), sig, s.genes);
}

/// Four batches of realistic log-normalised data (dense) and their CD8A/CD8B targets. zeros >= 0
/// replaces the expression by exactly that fraction of zeros (uniform(0.5, 3) elsewhere).
inline std::vector<Batch<float>> tutorial_batches(const Shape& s, double zeros = -1) {
  auto data = data::make_synthetic({.cells = 4 * s.batch, .genes = s.genes, .cell_types = 4, .seed = 11});
  if (zeros >= 0) {
    Rng rng(5);
    for (Index r = 0; r < data.expr.rows(); ++r)
      for (Index g = 0; g < s.genes; ++g)
        data.expr(r, g) = rng.uniform() < 1.0 - zeros ? static_cast<float>(rng.uniform(0.5, 3.0)) : 0.0f;
  }
  std::vector<Batch<float>> out;
  for (Index b = 0; b < 4; ++b) {
    Batch<float> batch(Tensor<float>(s.batch, s.genes));
    Tensor<float> cd8(s.batch, 2);
    for (Index r = 0; r < s.batch; ++r) {
      for (Index g = 0; g < s.genes; ++g) batch.expr(r, g) = data.expr(b * s.batch + r, g);
      cd8(r, 0) = batch.expr(r, 0);
      cd8(r, 1) = batch.expr(r, 1);
    }
    batch.set_signature("cd8", std::move(cd8));
    out.push_back(std::move(batch));
  }
  return out;
}

/// The tutorial's structure as compile-time policies (the latent width is part of the type).
template <Index L>
using TutorialModel =
    Model<Terms<Mse, L1>, Terms<Sw2Uniform>, Blocks<Block<"cd8", FCRegressorHead, L, OnMain, Terms<Mse, L1, Cosine>>>>;

}  // namespace sakura::bench
