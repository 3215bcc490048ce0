// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// BCE: mean of -(y log p + (1 - y) log(1 - p)), each log clamped at -100 (PyTorch). SPEC §2.
/// Fixes upstream, which computes a phenotype BCE and then drops it (SPEC §9). Upstream's
/// `weighted` BCE is a TODO there; it is rejected when the config loads.
#pragma once

#include <array>

#include "sakura/losses/concepts.hpp"

namespace sakura {

struct Bce : UnweightedLoss<Bce> {
  static constexpr std::array<std::string_view, 1> names{"BCE"};
  static constexpr Slots slots = Slot::Head;
  static auto formula(const LossInputs& in, const Options&) { return bce(in.pred, in.target); }
};

}  // namespace sakura
