// Train SAKURA's tutorial model (main latent + a CD8 signature head) on built-in synthetic data.
#include <sakura/sakura.hpp>
#include <sakura/data/synthetic.hpp>

#include <cstdio>

int main() {
  const auto data = sakura::data::make_synthetic({.cells = 800, .genes = 300, .cell_types = 4});
  const auto config = sakura::config::Json::parse(R"({
    "main_latent": {"encoder_neurons": 64, "decoder_neurons": 64, "latent_dim": 8,
      "loss": {"L2": {"type": "MSE", "init_weight": 1.0, "progressive_const": 1.0, "progressive_start_epoch": 100}},
      "regularization": {"uniform": {"type": "SW2_uniform", "init_weight": 0.01, "progressive_const": 1.01,
        "progressive_start_epoch": 1, "max_weight": 1.0, "uniform_low": -10, "uniform_high": 10}}},
    "optimizer": {"type": "RMSProp", "RMSProp_lr": 0.001, "RMSProp_alpha": 0.9}})");
  const auto signature = sakura::config::Json::parse(R"({"cd8": {"signature_list": ["CD8A", "CD8B"],
    "signature_lat_dim": 8, "signature_out_dim": 2,
    "model": {"type": "FCRegressor", "hidden_neurons": 5, "attach": "True", "attach_to": "main_lat"},
    "loss": {"mse": {"type": "MSE", "init_weight": 1.0, "progressive_const": 1.0, "progressive_start_epoch": 1}}}})");
  sakura::Controller<float> ctl(
      sakura::config::experiment_from_json(config, {}, signature, static_cast<sakura::Index>(data.genes.size())));

  const sakura::Index batch_size = 100, genes = data.expr.cols();
  sakura::Batch<float> batch(sakura::Tensor<float>(batch_size, genes));
  auto& cd8 = batch.signature_values("cd8");
  cd8 = sakura::Tensor<float>(batch_size, 2);
  sakura::Rng sampler(1);
  for (int tick = 1; tick <= 1600; ++tick) {
    for (sakura::Index r = 0; r < batch_size; ++r) {  // a random mini-batch of cells
      const auto cell = static_cast<sakura::Index>(sampler.below(static_cast<std::uint64_t>(data.expr.rows())));
      for (sakura::Index g = 0; g < genes; ++g) batch.expr(r, g) = data.expr(cell, g);
      cd8(r, 0) = data.expr(cell, 0);  // CD8A
      cd8(r, 1) = data.expr(cell, 1);  // CD8B
    }
    const auto& rec = ctl.train(batch);
    ctl.tick();
    if (tick % 8 == 0) ctl.next_epoch();  // 8 batches of 100 = one pass over 800 cells
    if (tick % 200 == 0)
      std::printf("tick %4d  total %.4f  reconstruction %.4f  cd8 %.4f\n", tick, rec.total,
                  rec.main.loss.at("L2"), rec.signature_block("cd8").loss.at("mse"));
  }
  return 0;
}
