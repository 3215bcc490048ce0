// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// TermSpec: a loss or regularization as configured (function and options, weight schedule,
/// gradient flow), the shared lower home of losses/ and regularizers/ term specs (SPEC §3, §4).
#pragma once

#include <string>

#include "sakura/schedule/progressive.hpp"

namespace sakura {

/// A term type with its options (Configured<Mse>): the runtime form of a compile-time term.
template <class Fn>
struct Configured {
  using type = Fn;
  typename Fn::Options options{};
};

/// How gradients pass from a term back into its block's latent (SPEC §3).
enum class GradFlow { Normal, Reverse /* enable_GRL */, Neutralize /* enable_GNL: no gradient */ };

/// A configured term: which function with which options (a variant of Configured<...>), its weight
/// schedule and how its gradients flow; losses/ and regularizers/ name their own variants.
template <class Variant>
struct TermSpec {
  std::string name;  ///< the key in the config, e.g. "regression_MSE"
  Variant configured;  ///< the term type with its options, a Configured<Fn>
  Progressive schedule;
  GradFlow flow = GradFlow::Normal;
  std::string site;  ///< where its random draws are recorded, e.g. "signature.cd8.regularization.sw2"
};

}  // namespace sakura
