// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// SmoothL1 (Huber), as PyTorch's torch.nn.SmoothL1Loss(beta): mean over all elements of
/// 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta, with d = pred - target; beta = 0 is L1,
/// with L1's gradient 0 where d = 0 (PyTorch's SmoothL1Loss(beta = 0) gives -1/n there).
#pragma once

#include <array>

#include "sakura/losses/concepts.hpp"

namespace sakura {

/// Example: "robust": {"type": "SmoothL1", "beta": 0.5, "init_weight": 1.0}
struct SmoothL1 : Loss<SmoothL1> {
  static constexpr std::array<std::string_view, 1> names{"SmoothL1"};
  static constexpr Slots slots = Slot::Reconstruction | Slot::Head;
  struct Options {
    double beta = 1.0;
  };
  static constexpr std::tuple fields{detail::field("beta", &Options::beta)};
  static const char* invalid(const Options& o) {
    return o.beta >= 0 ? nullptr : "beta must be at least 0 (PyTorch's SmoothL1Loss rejects a negative beta)";
  }
  static auto formula(const LossInputs& in, const Options& o) {
    // beta = 0 selects no element (|d| < 0 never holds): the quadratic side's factor need only be finite
    const double beta = o.beta, half_over_beta = beta > 0 ? 0.5 / beta : 0.0;
    return let(abs(in.pred - in.target),
               [=](auto d) { return mean(where(d < beta, square(d) * half_over_beta, d - 0.5 * beta)); });
  }
};

}  // namespace sakura
