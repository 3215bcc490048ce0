// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// L1_norm / L2_norm: mean over rows of the reconstruction's row L1 / L2 norm. SPEC §2.
#pragma once

#include <array>

#include "sakura/losses/concepts.hpp"

namespace sakura {

template <int Ord>
struct ReconNorm : Loss<ReconNorm<Ord>> {
  static constexpr std::array<std::string_view, 1> names{Ord == 1 ? "L1_norm" : "L2_norm"};
  static constexpr Slots slots = Slot::Reconstruction;
  static constexpr bool needs_target = false;
  static auto formula(const LossInputs& in, const typename Loss<ReconNorm>::Options&) {
    return mean(row_norm<Ord>(in.pred));
  }
};
using L1Norm = ReconNorm<1>;
using L2Norm = ReconNorm<2>;

}  // namespace sakura
