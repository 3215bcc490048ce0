// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Cosine: mean over rows of 1 - cos(pred_r, target_r), with PyTorch 1.13's 1e-8 norm guard:
/// an all-zero target row adds 1 to the loss and nothing to the gradient. SPEC §2.
#pragma once

#include <array>

#include "sakura/losses/concepts.hpp"

namespace sakura {

struct Cosine {
  static constexpr std::array<std::string_view, 1> names{"Cosine"};
  static constexpr unsigned slots = Reconstruction | Head;
  static constexpr bool needs_target = true, needs_labels = false;
  struct Options {};
  static constexpr std::tuple<> fields{};
  template <class T, class Dev>
  static Var apply(LossArgs<T, Dev>& a, const Options&) {
    return a.tape.cosine(a.target, a.pred);
  }
};

}  // namespace sakura
