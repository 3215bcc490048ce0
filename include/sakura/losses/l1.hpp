// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// L1: mean over all elements of |pred - target|; gradient sign(0) = 0 as PyTorch. SPEC §2.
#pragma once

#include <array>

#include "sakura/losses/concepts.hpp"

namespace sakura {

struct L1 {
  static constexpr std::array<std::string_view, 1> names{"L1"};
  static constexpr unsigned slots = Reconstruction | Head;
  static constexpr bool needs_target = true, needs_labels = false;
  struct Options {};
  static constexpr std::tuple<> fields{};
  template <class T, class Dev>
  static Var apply(LossArgs<T, Dev>& a, const Options&) {
    return a.tape.l1(a.pred, a.target);
  }
};

}  // namespace sakura
