// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// L1_regularization / L2_regularization: mean over rows of the latent row's L1 / L2 norm, the
/// formula of the reconstruction's L1_norm / L2_norm (losses/norms.hpp) on a latent block.
#pragma once

#include <array>

#include "sakura/autograd/expr.hpp"
#include "sakura/regularizers/concepts.hpp"

namespace sakura {

template <int Ord>
struct LatentNorm {
  static constexpr std::array<std::string_view, 1> names{Ord == 1 ? "L1_regularization" : "L2_regularization"};
  struct Options {};
  static constexpr std::tuple<> fields{};
  template <class T, class Dev>
  static Var apply(RegArgs<T, Dev>& a, const Options&) {
    return evaluate(a.tape, mean(expr::row_norm<Ord>(expr::Leaf{a.z})));
  }
};
using L1Regularization = LatentNorm<1>;
using L2Regularization = LatentNorm<2>;

}  // namespace sakura
