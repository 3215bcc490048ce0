// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// LogCosh: mean over all elements of log(cosh(d)), d = pred - target: quadratic near 0 and
/// linear far out, like Huber without a threshold to choose. Its gradient is tanh(d).
#pragma once

#include <array>
#include <numbers>

#include "sakura/losses/concepts.hpp"

namespace sakura {

/// Example: "recon": {"type": "LogCosh", "init_weight": 1.0}
struct LogCosh : Loss<LogCosh> {
  static constexpr std::array<std::string_view, 1> names{"LogCosh"};
  static constexpr Slots slots = Slot::Reconstruction | Slot::Head;
  // log cosh d = |d| + log(1 + e^(-2|d|)) - log 2: no overflow where cosh would (|d| > 710 in double)
  static auto formula(const LossInputs& in, const Options&) {
    return let(abs(in.pred - in.target), [](auto d) { return mean(d + log1p(exp(-2.0 * d)) - std::numbers::ln2); });
  }
};

}  // namespace sakura
