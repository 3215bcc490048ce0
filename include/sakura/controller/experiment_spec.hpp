// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// ExperimentSpec: everything a Controller is built from (model shape, terms, optimizer), the spec
/// both the JSON loader (config/json.hpp) and the C++ builder produce (SPEC §1-§3, §6, §7).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sakura/losses/registry.hpp"
#include "sakura/nn/model_spec.hpp"
#include "sakura/optim/options.hpp"
#include "sakura/regularizers/registry.hpp"

namespace sakura {

/// A block's shape with its terms.
struct BlockSpec : BlockShape {
  std::vector<LossSpec> losses;
  std::vector<RegularizerSpec> regularizations;
};
using ModelSpec = ModelOf<BlockSpec>;

/// Deliberate deviations from our fixes, to replay upstream numbers bit for bit.
struct UpstreamCompat {
  /// Upstream ignores SW2_num_projections and always draws 50 (SPEC §9); 0 honours the config.
  int sw2_fixed_projections = 0;
};

/// Everything the controller needs: model, terms, optimizer.
struct ExperimentSpec {
  ModelSpec model;
  std::vector<LossSpec> main_losses;
  std::vector<RegularizerSpec> main_regularizations;
  OptimizerSpec optimizer;
  std::string device = "cpu";
  std::uint64_t seed = 3407;
};

}  // namespace sakura
