// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The compile-time face: the model's terms and blocks as a type and each step's selection as a
// policy, so ctl.train<Model, Selection> compiles only what that step runs; here the tutorial's
// interleaved "reconstruct" and "cd8_focused" steps.
#include <sakura/sakura.hpp>
#include <sakura/config/experiment.hpp>
#include <sakura/controller/policy.hpp>
#include <sakura/data/synthetic.hpp>

#include <cstdio>

#include "cells.hpp"

using Tutorial = sakura::Model<sakura::Terms<sakura::Mse>, sakura::Terms<sakura::Sw2Uniform>,
                               sakura::Blocks<sakura::Block<"cd8", sakura::FCRegressorHead, 8, sakura::OnMain,
                                                            sakura::Terms<sakura::Mse, sakura::Cosine>>>>;

int main() {
  const auto data = examples::with_cd8_target(sakura::data::to_dataset(sakura::data::make_synthetic({.cells = 600, .genes = 200})));
  // the same model as a spec; the first policy step checks that the two agree
  sakura::Controller<float> ctl(
      sakura::Experiment({.genes = data.n_genes(), .encoder_neurons = 32, .decoder_neurons = 32, .latent_dim = 8})
          .loss<sakura::Mse>("L2")
          .regularizer<sakura::Sw2Uniform>("uniform", {.schedule = {.init_weight = 0.01}})
          .signature(sakura::SignatureBlock("cd8", {.lat_dim = 8, .genes = examples::kCd8})
                         .head(sakura::HeadType::FCRegressor, {.width = 5})
                         .attach_to_main()
                         .loss<sakura::Mse>("mse")
                         .loss<sakura::Cosine>("cosine", {.schedule = {.init_weight = 0.1}}))
          .optimizer({.lr = 2e-3, .alpha = 0.9})
          .build());

  examples::Batches batches(data, 50, /*seed=*/3);
  double first = 0, cd8 = 0;  // the cd8 head's MSE, summed over an epoch
  for (int epoch = 1; epoch <= 15; ++epoch) {
    cd8 = 0;
    bool reconstruct = true;
    batches.epoch([&](const sakura::Batch<float>& batch) {
      if (reconstruct) ctl.train<Tutorial, sakura::MainOnly>(batch);  // main latent only
      else cd8 += ctl.train<Tutorial, sakura::SignatureOnly<"cd8">>(batch).signature_block("cd8").loss.at("mse");
      reconstruct = !reconstruct;
      ctl.tick();
    });
    ctl.next_epoch();
    if (epoch == 1) first = cd8;
    if (epoch % 5 == 0) std::printf("epoch %2d  cd8 head MSE (epoch sum) %.4f\n", epoch, cd8);
  }
  return cd8 < first ? 0 : 1;  // as a test: the cd8 head must learn
}
