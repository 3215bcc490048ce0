// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// What a loss term is: a type with a JSON name, an Options aggregate, the slots it may fill,
/// and an apply() built only from autograd primitives (no backward of its own).
#pragma once

#include <concepts>
#include <cstdint>
#include <string_view>
#include <tuple>

#include "sakura/autograd/tape.hpp"
#include "sakura/detail/fields.hpp"

namespace sakura {

/// Where a loss may appear: on the reconstruction (x vs x_hat) or on a phenotype/signature head.
enum Slot : unsigned { Reconstruction = 1u, Head = 2u };

/// The tensors a loss sees. For reconstruction, pred = x_hat and target = x.
template <class T, class Dev = Cpu>
struct LossArgs {
  Tape<T, Dev>& tape;
  Var pred;
  Var target;                            // empty for L1_norm / L2_norm
  const std::int64_t* labels = nullptr;  // class indices (NLL)
};

template <class L, class T = float>
concept LossFn = requires(LossArgs<T>& a, const typename L::Options& o) {
  { L::names } -> std::convertible_to<decltype(L::names)>;
  { L::slots } -> std::convertible_to<unsigned>;
  { L::needs_target } -> std::convertible_to<bool>;
  { L::needs_labels } -> std::convertible_to<bool>;
  { L::fields };
  { L::apply(a, o) } -> std::same_as<Var>;
};

}  // namespace sakura
