// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// L1: mean over all elements of |pred - target|; gradient sign(0) = 0 as PyTorch. SPEC §2.
#pragma once

#include <array>

#include "sakura/losses/concepts.hpp"

namespace sakura {

struct L1 : Loss<L1> {
  static constexpr std::array<std::string_view, 1> names{"L1"};
  static constexpr Slots slots = Slot::Reconstruction | Slot::Head;
  static auto formula(const LossInputs& in, const Options&) { return mean(abs(in.pred - in.target)); }
};

}  // namespace sakura
