// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Cosine: mean over rows of 1 - cos(pred_r, target_r), with PyTorch 1.13's 1e-8 norm guard:
/// an all-zero target row adds 1 to the loss and nothing to the gradient. SPEC §2.
#pragma once

#include <array>

#include "sakura/losses/concepts.hpp"

namespace sakura {

struct Cosine : Loss<Cosine> {
  static constexpr std::array<std::string_view, 1> names{"Cosine"};
  static constexpr Slots slots = Slot::Reconstruction | Slot::Head;
  static auto formula(const LossInputs& in, const Options&) {
    auto norm = [](auto x) { return clamp_min(row_norm<2>(x), 1e-8); };
    return mean(1.0 - row_sum(in.target * in.pred) / (norm(in.target) * norm(in.pred)));
  }
};

}  // namespace sakura
