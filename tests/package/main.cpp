// Built against the installed package by tests/package/check.sh: one include, one step.
#include <sakura/sakura.hpp>

#include <cmath>
#include <cstdio>

int main() {
  const auto config = sakura::config::Json::parse(R"({"main_latent": {"encoder_neurons": 8, "decoder_neurons": 8,
    "latent_dim": 2, "loss": {"mse": {"type": "MSE", "init_weight": 1.0}}},
    "optimizer": {"type": "RMSProp", "RMSProp_lr": 0.01, "RMSProp_alpha": 0.9}})");
  sakura::Controller<float> ctl(sakura::config::experiment_from_json(config, {}, {}, 5));
  sakura::Batch<float> batch(sakura::Tensor<float>(4, 5, {1, 0, 2, 0, 1, 0, 1, 0, 3, 0, 2, 2, 0, 0, 1,
                                                         0, 0, 1, 1, 0}));
  const double total = ctl.train(batch).total;
  std::printf("sakura %s consumer: one step, total %.5f\n", sakura::version, total);
  return std::isfinite(total) ? 0 : 1;
}
