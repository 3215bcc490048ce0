// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// NLL: mean over rows of -logp[r, label_r] for a classifier head (log-softmax output). SPEC §2.
/// Upstream's `weighted` NLL is a TODO there; it is rejected when the config loads (SPEC §9).
#pragma once

#include <array>

#include "sakura/losses/concepts.hpp"

namespace sakura {

struct Nll : UnweightedLoss<Nll> {
  static constexpr std::array<std::string_view, 1> names{"NLL"};
  static constexpr Slots slots = Slot::Head;
  static constexpr bool needs_target = false, needs_labels = true;
  static auto formula(const LossInputs& in, const Options&) { return nll(in.pred, in.labels); }
};

}  // namespace sakura
