// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The runtime face: the model comes from upstream's JSON config files (the pbmc5k tutorial's),
// read when the program runs. (For a GPU: sakura::Controller<float, sakura::Cuda>, linking sakura::cuda.)
#include <sakura/sakura.hpp>
#include <sakura/data/synthetic.hpp>

#include <cmath>
#include <cstdio>

#include "cells.hpp"

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "examples/configs";
  const auto config = sakura::config::read_json_file(dir + "/pbmc5k_config.json");
  const auto signatures = sakura::config::read_json_file(dir + "/pbmc5k_signature_config.json");

  std::vector<sakura::data::SignatureRequest> targets;  // each signature's genes, as the config lists them
  for (const auto& [name, s] : signatures.items())
    targets.push_back({.name = name, .genes = s["signature_list"].get<std::vector<std::string>>()});
  const auto data = sakura::data::prepare_training_data(
      sakura::data::to_dataset(sakura::data::make_synthetic({.cells = 400, .genes = 300})), targets, {});
  sakura::Controller<float> ctl(sakura::config::experiment_from_json(config, {}, signatures, data.n_genes()));

  examples::Batches batches(data, 100, /*seed=*/7);
  bool finite = true;
  double first = 0, last = 0;  // the reconstruction L1 of the first and the last epoch
  for (int epoch = 1; epoch <= 10; ++epoch) {
    last = 0;
    batches.epoch([&](const sakura::Batch<float>& batch) {
      const auto& rec = ctl.train(batch);
      finite = finite && std::isfinite(rec.total);
      last += rec.main.loss.at("L1");
      ctl.tick();
    });
    ctl.next_epoch();
    if (epoch == 1) first = last;
    std::printf("epoch %2d  reconstruction L1 %.4f\n", epoch, last / batches.per_epoch());
  }
  return finite && last < first ? 0 : 1;  // as a test: finite throughout, and the fit improves
}
