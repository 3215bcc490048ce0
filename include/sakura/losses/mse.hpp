// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// MSE (alias L2): mean over all elements of (pred - target)^2. SPEC §2.
#pragma once

#include <array>

#include "sakura/losses/concepts.hpp"

namespace sakura {

/// Example: "L2": {"type": "MSE", "init_weight": 1.0, ...}
struct Mse : Loss<Mse> {
  static constexpr std::array<std::string_view, 2> names{"MSE", "L2"};
  static constexpr Slots slots = Slot::Reconstruction | Slot::Head;
  static auto formula(const LossInputs& in, const Options&) { return mean(square(in.pred - in.target)); }
};

}  // namespace sakura
