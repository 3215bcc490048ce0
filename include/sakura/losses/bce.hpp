// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// BCE: mean of -(y log p + (1 - y) log(1 - p)), each log clamped at -100 (PyTorch). SPEC §2.
/// Fixes upstream, which computes a phenotype BCE and then drops it (SPEC §9).
#pragma once

#include <array>

#include "sakura/losses/concepts.hpp"

namespace sakura {

struct Bce {
  static constexpr std::array<std::string_view, 1> names{"BCE"};
  static constexpr unsigned slots = Head;
  static constexpr bool needs_target = true, needs_labels = false;
  struct Options {
    bool weighted = false;
  };
  static constexpr std::tuple fields{detail::field("weighted", &Options::weighted)};
  static const char* invalid(const Options& o) {
    return o.weighted ? "weighted BCE is not implemented (an upstream TODO); remove \"weighted\"" : nullptr;
  }
  template <class T, class Dev>
  static Var apply(LossArgs<T, Dev>& a, const Options&) {
    return a.tape.bce(a.pred, a.target);
  }
};

}  // namespace sakura
