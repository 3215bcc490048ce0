// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// What a loss term is: a type with a JSON name, an Options aggregate, the slots it may fill,
/// and its value as a formula of autograd/expr.hpp (no kernel and no backward of its own).
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>

#include "sakura/autograd/expr.hpp"
#include "sakura/autograd/tape.hpp"
#include "sakura/detail/fields.hpp"

namespace sakura {

/// Where a loss may appear: on the reconstruction (x vs x_hat) or on a phenotype/signature head.
enum class Slot : unsigned { Reconstruction = 1u, Head = 2u };

/// The slots a loss type allows: `static constexpr Slots slots = Slot::Reconstruction | Slot::Head;`
struct Slots {
  unsigned bits = 0;
  constexpr Slots(Slot s) : bits(static_cast<unsigned>(s)) {}
  constexpr bool has(Slot s) const { return (bits & static_cast<unsigned>(s)) != 0; }
};
constexpr Slots operator|(Slots a, Slot b) {
  a.bits |= static_cast<unsigned>(b);
  return a;
}
constexpr Slots operator|(Slot a, Slot b) { return Slots(a) | b; }

/// The tensors a loss sees. For reconstruction, pred = x_hat and target = x.
template <class T, class Dev = Cpu>
struct LossArgs {
  Tape<T, Dev>& tape;
  Var pred;
  Var target;                            // empty for L1_norm / L2_norm
  const std::int64_t* labels = nullptr;  // class indices (NLL)
};

/// A loss's operands in its formula (autograd/expr.hpp).
struct LossInputs {
  expr::Leaf pred, target;               // target: empty for L1_norm / L2_norm
  const std::int64_t* labels = nullptr;  // class indices (NLL)
};

/// Every loss type derives from Loss<itself> and declares `names`, `slots` and its value:
///   static auto formula(const LossInputs& in, const Options& o) { return mean(square(in.pred - in.target)); }
/// Loss<> gives the defaults (a target, no labels, no options; a loss with options declares its
/// own Options, `fields` for the JSON keys and, if some values are invalid, `invalid(o)`), and
/// apply(), which puts the formula on the tape: through the tape's fused primitives where the
/// formula has one, primitive by primitive otherwise (E = Evaluation::Generic forces the latter).
template <class L>
struct Loss {
  static constexpr bool needs_target = true, needs_labels = false;
  struct Options {};
  static constexpr std::tuple<> fields{};
  template <Evaluation E = Evaluation::Fused, class T, class Dev, class O>
  static Var apply(LossArgs<T, Dev>& a, const O& o) {
    return evaluate<E>(a.tape, L::formula(LossInputs{{a.pred}, {a.target}, a.labels}, o));
  }
};

/// Loss<L> for NLL and BCE, with upstream's `weighted` option: a TODO there, refused when set.
template <class L>
struct UnweightedLoss : Loss<L> {
  struct Options {
    bool weighted = false;
  };
  static constexpr std::tuple fields{detail::field("weighted", &Options::weighted)};
  static const char* invalid(const Options& o) {
    static const std::string why =
        "weighted " + std::string(L::names[0]) + " is not implemented (an upstream TODO); remove \"weighted\"";
    return o.weighted ? why.c_str() : nullptr;
  }
};

template <class L, class T = float>
concept LossFn = requires(LossArgs<T>& a, const typename L::Options& o) {
  { L::names } -> std::convertible_to<decltype(L::names)>;
  { L::slots } -> std::convertible_to<Slots>;
  { L::needs_target } -> std::convertible_to<bool>;
  { L::needs_labels } -> std::convertible_to<bool>;
  { L::fields };
  { L::apply(a, o) } -> std::same_as<Var>;
};

}  // namespace sakura
