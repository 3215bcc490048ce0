// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// TrainingState: everything a controller's training changes (counters, generator, parameters in
/// PyTorch layout with their gradients and optimizer state, term weights), as Controller::capture()
/// returns it and Controller::restore() takes it; io/checkpoint.hpp writes it to a file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sakura/tensor/rng.hpp"

namespace sakura {

/// One parameter in PyTorch layout ([out, in] for weights), with its optimizer state.
struct ParamRecord {
  std::string name;
  std::int64_t rows = 0, cols = 0;
  std::vector<double> value, grad;  // kept in double here; written in the controller's precision
  bool has_grad = false;
  bool opt_initialised = false;
  std::vector<double> square_avg, momentum;  // empty when absent
  int record = -1;                           ///< index of its record when read from a file
};

/// One term's schedule state, named as a checkpoint names it.
struct TermRecord {
  std::uint8_t kind = 0;  // BlockKind
  std::string block, group, name;
  double weight = 0;
  std::int32_t epoch = 0;
};

struct TrainingState {
  std::uint32_t scalar_bytes = 4;  ///< 4: float, 8: double
  std::int32_t epoch = 0, tick = 0;
  Rng::State rng;
  std::vector<ParamRecord> params;
  std::vector<TermRecord> terms;
};

}  // namespace sakura
