// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Progressive: a term's loss weight schedule over epochs (SPEC §4).
#pragma once

#include <algorithm>
#include <optional>

namespace sakura {

/// Starts at `init_weight`. Each epoch that advances the term increments its counter; from
/// counter >= `start_epoch` on, the weight is multiplied by (or incremented by) `constant`;
/// then, changed or not, it is clamped to `max_weight` and then to `min_weight`.
/// All in double precision, as upstream keeps Python floats.
///
/// Example: Progressive{.init_weight = 1e-4, .constant = 1.01, .start_epoch = 1, .max_weight = 1.0}
struct Progressive {
  enum class Mode { Multiply, Increment };
  double init_weight = 1.0;
  double constant = 1.0;
  int start_epoch = 1;
  Mode mode = Mode::Multiply;
  std::optional<double> max_weight{};
  std::optional<double> min_weight{};

  /// The weight after one more epoch; `epoch` is the term's counter after incrementing.
  double advance(double weight, int epoch) const {
    if (epoch >= start_epoch) weight = mode == Mode::Multiply ? weight * constant : weight + constant;
    if (max_weight) weight = std::min(weight, *max_weight);
    if (min_weight) weight = std::max(weight, *min_weight);
    return weight;
  }
};

}  // namespace sakura
