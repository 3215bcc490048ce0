// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The sparse face: cells read from a Matrix Market file (upstream's sparse input; written here from
// the synthetic cells) and given to the model as sparse rows, so the first layer skips the zeros.
#include <sakura/sakura.hpp>
#include <sakura/config/experiment.hpp>
#include <sakura/data/synthetic.hpp>
#include <sakura/io/matrix_market.hpp>
#include <sakura/io/mtx_writer.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "cells.hpp"

int main() {
  const auto dir = std::filesystem::temp_directory_path() / "sakura_example_sparse";
  std::filesystem::create_directories(dir);
  sakura::io::write_mtx_dataset(sakura::data::to_dataset(sakura::data::make_synthetic({.cells = 500, .genes = 400})),
                                dir.string());  // matrix.mtx, genes.csv, cells.csv (~89% zeros)
  const auto data = examples::with_cd8_target(sakura::io::read_mtx_dataset(
      (dir / "matrix.mtx").string(), (dir / "genes.csv").string(), (dir / "cells.csv").string()));

  sakura::Controller<float> ctl(
      sakura::Experiment({.genes = data.n_genes(), .encoder_neurons = 64, .decoder_neurons = 64, .latent_dim = 4})
          .sparse_input_layout()  // first-layer weight stored gene-major: sparse rows stream it
          .loss<sakura::Mse>("L2")
          .regularizer<sakura::Sw2GaussianMixture>("gm", {.schedule = {.init_weight = 0.01}, .options = {.n_labels = 4}})
          .signature(sakura::SignatureBlock("cd8", {.lat_dim = 4, .genes = examples::kCd8}).attach_to_main().loss<sakura::Mse>("mse"))
          .build());

  examples::Batches batches(data, 100, /*seed=*/5);
  double first = 0, recon = 0;
  for (int epoch = 1; epoch <= 15; ++epoch) {
    recon = 0;
    batches.epoch([&](sakura::Batch<float>& batch) {
      batch.set_sparse(sakura::CsrMatrix<float>::from_dense(batch.expr));  // expr stays: the reconstruction target
      recon += ctl.train(batch).main.loss.at("L2");
      ctl.tick();
    });
    ctl.next_epoch();
    if (epoch == 1) first = recon;
    if (epoch % 5 == 0) std::printf("epoch %2d  reconstruction MSE (epoch sum) %.4f\n", epoch, recon);
  }
  std::filesystem::remove_all(dir);
  return std::isfinite(recon) && recon < first ? 0 : 1;  // as a test: finite, and the fit improves
}
