// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// MSE (alias L2): mean over all elements of (pred - target)^2. SPEC §2.
#pragma once

#include <array>

#include "sakura/losses/concepts.hpp"

namespace sakura {

/// Example: "L2": {"type": "MSE", "init_weight": 1.0, ...}
struct Mse {
  static constexpr std::array<std::string_view, 2> names{"MSE", "L2"};
  static constexpr unsigned slots = Reconstruction | Head;
  static constexpr bool needs_target = true, needs_labels = false;
  struct Options {};
  static constexpr std::tuple<> fields{};
  template <class T, class Dev>
  static Var apply(LossArgs<T, Dev>& a, const Options&) {
    return a.tape.mse(a.pred, a.target);
  }
};

}  // namespace sakura
