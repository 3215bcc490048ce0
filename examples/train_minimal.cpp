// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// SAKURA's tutorial model (main latent + a CD8 signature head) written in C++ with
// sakura::Experiment, trained on the built-in synthetic cells.
#include <sakura/sakura.hpp>
#include <sakura/config/experiment.hpp>
#include <sakura/data/synthetic.hpp>

#include <cstdio>

#include "cells.hpp"

int main() {
  const auto data = examples::with_cd8_target(sakura::data::to_dataset(sakura::data::make_synthetic({.cells = 800, .genes = 300})));

  sakura::Controller<float> ctl(
      sakura::Experiment({.genes = data.n_genes(), .encoder_neurons = 64, .decoder_neurons = 64, .latent_dim = 8})
          .loss<sakura::Mse>("L2")
          .regularizer<sakura::Sw2Uniform>("uniform", {.schedule = {.init_weight = 0.01, .constant = 1.01, .max_weight = 1.0},
                                                       .options = {.low = -10, .high = 10}})
          .signature(sakura::SignatureBlock("cd8", {.lat_dim = 8, .genes = examples::kCd8})
                         .head(sakura::HeadType::FCRegressor, {.width = 5})
                         .attach_to_main()
                         .loss<sakura::Mse>("mse"))
          .optimizer({.lr = 1e-3, .alpha = 0.9})
          .build());

  examples::Batches batches(data, 100, /*seed=*/1);
  double first = 0, recon = 0;
  for (int epoch = 1; epoch <= 20; ++epoch) {
    recon = 0;
    batches.epoch([&](const sakura::Batch<float>& batch) {
      recon += ctl.train(batch).main.loss.at("L2") / static_cast<double>(batches.per_epoch());
      ctl.tick();
    });
    ctl.next_epoch();  // advances the weight schedules (SW2's weight grows 1% an epoch)
    if (epoch == 1) first = recon;
    if (epoch % 5 == 0) std::printf("epoch %2d  mean reconstruction MSE %.4f\n", epoch, recon);
  }
  return recon < first ? 0 : 1;  // as a test: the reconstruction must improve
}
