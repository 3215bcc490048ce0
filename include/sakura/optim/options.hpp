// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// OptimizerSpec: RMSProp's hyper-parameters and the frozen modules (SPEC §6), as the config
/// names them; the optimizer reads it without seeing the model or the terms.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace sakura {

struct OptimizerSpec {
  double lr = 1e-3, alpha = 0.99, weight_decay = 0.0, momentum = 0.0, eps = 1e-8;
  /// Frozen modules: {pre_encoder | main_latent_compressor | decoder} or {<group>, <block>}.
  std::vector<std::pair<std::string, std::string>> excludes;
};

}  // namespace sakura
