// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Formulas over tape values: a loss writes its value as `mean(square(pred - target))`, an object
/// whose type is the formula, and evaluate() puts it on the tape.
///
/// Where the tape has a fused primitive for a whole formula (MSE, L1, cosine distance, row norms:
/// the Fused<> table below) the formula's type selects it at compile time, and that primitive runs
/// (the same values within rounding, in fewer passes over memory). Any other formula runs
/// primitive by primitive, each with its one backward rule (autograd/rules.hpp), so a formula needs
/// no kernel and no backward of its own.
///
/// Example:
///   using namespace sakura::expr;
///   Leaf p{pred}, t{target};
///   Var l1 = evaluate(tape, mean(abs(p - t)));                          // the fused L1 primitive
///   Var l4 = evaluate(tape, mean(square(square(p - t))));               // primitive by primitive
///   Var hl = evaluate(tape, let(abs(p - t), [](auto d) { return mean(where(d < 1.0, d, 2.0 * d)); }));
#pragma once

#include <concepts>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "sakura/autograd/tape.hpp"

namespace sakura {

/// How evaluate() runs a formula: Fused takes the tape's fused primitives where they apply;
/// Generic runs every formula primitive by primitive (tests compare the two).
enum class Evaluation { Fused, Generic };

namespace expr {

// ------------------------------------------------------------------ nodes
/// A value on the tape.
struct Leaf {
  Var var;
  bool operator==(const Leaf& o) const { return var.id == o.var.id; }
};
/// f(a) elementwise, f from backend/pointwise.hpp with its constants.
template <Pointwise F, class A>
struct Map {
  A a;
  double c0 = 0, c1 = 0;
  bool operator==(const Map&) const = default;
};
/// a f b elementwise, same shapes.
template <Binary F, class A, class B>
struct Zip {
  A a;
  B b;
  bool operator==(const Zip&) const = default;
};
/// mask ? a : b elementwise; the mask is constant (a comparison).
template <class M, class A, class B>
struct Select {
  M mask;
  A a;
  B b;
  bool operator==(const Select&) const = default;
};
/// The mean of every element (1 x 1).
template <class A>
struct Mean {
  A a;
  bool operator==(const Mean&) const = default;
};
/// The sum of each row (rows x 1).
template <class A>
struct RowSum {
  A a;
  bool operator==(const RowSum&) const = default;
};
/// The tape's NLL and BCE primitives (they have no formula of the set above).
template <class A>
struct NllOf {
  A logp;
  const std::int64_t* labels;
  bool operator==(const NllOf&) const = default;
};
template <class A, class B>
struct BceOf {
  A p;
  B y;
  bool operator==(const BceOf&) const = default;
};
/// `body(v)` with v the value of `value` computed once: a formula that reads one sub-formula in
/// several places (let(abs(p - t), [](auto d) { ... d ... d ... })).
template <class V, class F>
struct Let {
  V value;
  F body;
};

template <class X>
inline constexpr bool is_node = false;
template <>
inline constexpr bool is_node<Leaf> = true;
template <Pointwise F, class A>
inline constexpr bool is_node<Map<F, A>> = true;
template <Binary F, class A, class B>
inline constexpr bool is_node<Zip<F, A, B>> = true;
template <class M, class A, class B>
inline constexpr bool is_node<Select<M, A, B>> = true;
template <class A>
inline constexpr bool is_node<Mean<A>> = true;
template <class A>
inline constexpr bool is_node<RowSum<A>> = true;
template <class A>
inline constexpr bool is_node<NllOf<A>> = true;
template <class A, class B>
inline constexpr bool is_node<BceOf<A, B>> = true;
template <class V, class F>
inline constexpr bool is_node<Let<V, F>> = true;

/// A formula: a Leaf or a node over formulas.
template <class X>
concept Formula = is_node<std::remove_cvref_t<X>>;

// names for the patterns of the Fused<> table
template <class A>
using Abs = Map<Pointwise::Abs, A>;
template <class A>
using Square = Map<Pointwise::Square, A>;
template <class A>
using Sqrt = Map<Pointwise::Sqrt, A>;
template <class A>
using Affine = Map<Pointwise::Affine, A>;
template <class A>
using ClampMin = Map<Pointwise::ClampMin, A>;
template <class A, class B>
using Sub = Zip<Binary::Sub, A, B>;
template <class A, class B>
using Mul = Zip<Binary::Mul, A, B>;
template <class A, class B>
using Div = Zip<Binary::Div, A, B>;

// ------------------------------------------------------------------ building formulas
template <Formula A>
Abs<A> abs(A a) { return {a}; }
template <Formula A>
Square<A> square(A a) { return {a}; }
/// Its gradient is taken as 0 where the root is 0 (a norm's subgradient at 0).
template <Formula A>
Sqrt<A> sqrt(A a) { return {a}; }
template <Formula A>
Map<Pointwise::Exp, A> exp(A a) { return {a}; }
template <Formula A>
Map<Pointwise::Log1p, A> log1p(A a) { return {a}; }
/// max(a, lo); the gradient passes where a >= lo (PyTorch's clamp_min).
template <Formula A>
ClampMin<A> clamp_min(A a, double lo) { return {a, lo}; }
/// 1 where a < bound, else 0: a mask for where(), without a gradient.
template <Formula A>
Map<Pointwise::Less, A> operator<(A a, double bound) { return {a, bound}; }
/// mask ? a : b elementwise.
template <Formula M, Formula A, Formula B>
Select<M, A, B> where(M mask, A a, B b) { return {mask, a, b}; }
template <Formula A>
Mean<A> mean(A a) { return {a}; }
template <Formula A>
RowSum<A> row_sum(A a) { return {a}; }
template <Formula A>
NllOf<A> nll(A logp, const std::int64_t* labels) { return {logp, labels}; }
/// Binary cross-entropy of probabilities p against targets y (y gets no gradient).
template <Formula A, Formula B>
BceOf<A, B> bce(A p, B y) { return {p, y}; }
template <Formula V, class F>
Let<V, F> let(V value, F body) { return {value, body}; }

template <Formula A, Formula B>
Zip<Binary::Add, A, B> operator+(A a, B b) { return {a, b}; }
template <Formula A, Formula B>
Sub<A, B> operator-(A a, B b) { return {a, b}; }
template <Formula A, Formula B>
Mul<A, B> operator*(A a, B b) { return {a, b}; }
template <Formula A, Formula B>
Div<A, B> operator/(A a, B b) { return {a, b}; }
// with a constant: a * scale + shift
template <Formula A>
Affine<A> operator*(A a, double k) { return {a, k, 0.0}; }
template <Formula A>
Affine<A> operator*(double k, A a) { return {a, k, 0.0}; }
template <Formula A>
Affine<A> operator+(A a, double k) { return {a, 1.0, k}; }
template <Formula A>
Affine<A> operator+(double k, A a) { return {a, 1.0, k}; }
template <Formula A>
Affine<A> operator-(A a, double k) { return {a, 1.0, -k}; }
template <Formula A>
Affine<A> operator-(double k, A a) { return {a, -1.0, k}; }
template <Formula A>
Affine<A> operator-(A a) { return {a, -1.0, 0.0}; }

/// ||x_r||_1 (Ord 1) or ||x_r||_2 (Ord 2) of every row (rows x 1).
template <int Ord, Formula A>
auto row_norm(A x) {
  static_assert(Ord == 1 || Ord == 2, "row_norm: order 1 or 2");
  if constexpr (Ord == 1) return row_sum(abs(x));
  else return sqrt(row_sum(square(x)));
}

// ------------------------------------------------------------------ the fused primitives
/// Puts formula x on tape t; its value is a tape value (1 x 1 for a loss).
template <Evaluation E = Evaluation::Fused, class T, class Dev, Formula X>
Var evaluate(Tape<T, Dev>& t, const X& x);

/// Fused<X>: the tape primitive that computes formula X in one kernel. exists says whether there
/// is one; matches(x) checks what the type cannot (constants, one operand read twice); apply()
/// runs it, evaluating its operands with mode E.
template <class X>
struct Fused {
  static constexpr bool exists = false;
};

/// Operands a formula reads twice must be the same values.
template <class X>
bool same(const X& a, const X& b) {
  if constexpr (std::equality_comparable<X>) return a == b;
  else return false;
}

/// MSE: mean(square(a - b)); L1: mean(abs(a - b)).
template <Pointwise F, class A, class B>
  requires(F == Pointwise::Square || F == Pointwise::Abs)
struct Fused<Mean<Map<F, Sub<A, B>>>> {
  static constexpr bool exists = true;
  static bool matches(const Mean<Map<F, Sub<A, B>>>&) { return true; }
  template <Evaluation E, class Tp>
  static Var apply(Tp& t, const Mean<Map<F, Sub<A, B>>>& x) {
    Var a = evaluate<E>(t, x.a.a.a);
    Var b = evaluate<E>(t, x.a.a.b);
    return F == Pointwise::Square ? t.mse(a, b) : t.l1(a, b);
  }
};
template <int Ord, class A>
struct FusedRowNormMean {  // the mean over rows of row_norm<Ord>
  using Pattern = Mean<decltype(row_norm<Ord>(std::declval<A>()))>;
  static constexpr bool exists = true;
  static bool matches(const Pattern&) { return true; }
  template <Evaluation E, class Tp>
  static Var apply(Tp& t, const Pattern& x) {
    if constexpr (Ord == 1) return t.row_norm_mean(evaluate<E>(t, x.a.a.a), 1);
    else return t.row_norm_mean(evaluate<E>(t, x.a.a.a.a), 2);
  }
};
template <class A>
struct Fused<Mean<RowSum<Abs<A>>>> : FusedRowNormMean<1, A> {};
template <class A>
struct Fused<Mean<Sqrt<RowSum<Square<A>>>>> : FusedRowNormMean<2, A> {};

/// mean over rows of 1 - cos(a_r, b_r), with PyTorch 1.13's guard: each norm at least 1e-8.
template <class A, class B>
using CosineDistance = Mean<Affine<Div<RowSum<Mul<A, B>>, Mul<ClampMin<Sqrt<RowSum<Square<A>>>>,
                                                              ClampMin<Sqrt<RowSum<Square<B>>>>>>>>;
inline constexpr double kCosineEps = 1e-8;
template <class A, class B>
struct Fused<CosineDistance<A, B>> {
  static constexpr bool exists = true;
  static bool matches(const CosineDistance<A, B>& x) {
    const auto& one_minus = x.a;
    const auto& dot = one_minus.a.a.a;
    const auto& norm_a = one_minus.a.b.a;
    const auto& norm_b = one_minus.a.b.b;
    return one_minus.c0 == -1.0 && one_minus.c1 == 1.0 && norm_a.c0 == kCosineEps && norm_b.c0 == kCosineEps &&
           same(dot.a, norm_a.a.a.a.a) && same(dot.b, norm_b.a.a.a.a);
  }
  template <Evaluation E, class Tp>
  static Var apply(Tp& t, const CosineDistance<A, B>& x) {
    const auto& dot = x.a.a.a.a;
    Var a = evaluate<E>(t, dot.a);
    return t.cosine(a, evaluate<E>(t, dot.b));
  }
};

// ------------------------------------------------------------------ evaluation
/// Each node's primitive, its operands evaluated first (left to right).
template <Evaluation E, class Tp>
Var primitive(Tp&, const Leaf& x) {
  return x.var;
}
template <Evaluation E, class Tp, Pointwise F, class A>
Var primitive(Tp& t, const Map<F, A>& x) {
  return t.pointwise(F, evaluate<E>(t, x.a), x.c0, x.c1);
}
template <Evaluation E, class Tp, Binary F, class A, class B>
Var primitive(Tp& t, const Zip<F, A, B>& x) {
  Var a = evaluate<E>(t, x.a);
  return t.binary(F, a, evaluate<E>(t, x.b));
}
template <Evaluation E, class Tp, class M, class A, class B>
Var primitive(Tp& t, const Select<M, A, B>& x) {
  Var mask = evaluate<E>(t, x.mask);
  Var a = evaluate<E>(t, x.a);
  return t.where(mask, a, evaluate<E>(t, x.b));
}
template <Evaluation E, class Tp, class A>
Var primitive(Tp& t, const Mean<A>& x) {
  return t.mean(evaluate<E>(t, x.a));
}
template <Evaluation E, class Tp, class A>
Var primitive(Tp& t, const RowSum<A>& x) {
  return t.row_sum(evaluate<E>(t, x.a));
}
template <Evaluation E, class Tp, class A>
Var primitive(Tp& t, const NllOf<A>& x) {
  return t.nll(evaluate<E>(t, x.logp), x.labels);
}
template <Evaluation E, class Tp, class A, class B>
Var primitive(Tp& t, const BceOf<A, B>& x) {
  Var p = evaluate<E>(t, x.p);
  return t.bce(p, evaluate<E>(t, x.y));
}
template <Evaluation E, class Tp, class V, class F>
Var primitive(Tp& t, const Let<V, F>& x) {
  return evaluate<E>(t, x.body(Leaf{evaluate<E>(t, x.value)}));
}

template <Evaluation E, class T, class Dev, Formula X>
Var evaluate(Tape<T, Dev>& t, const X& x) {
  if constexpr (E == Evaluation::Fused && Fused<X>::exists)
    if (Fused<X>::matches(x)) return Fused<X>::template apply<E>(t, x);
  return primitive<E>(t, x);
}

}  // namespace expr

using expr::evaluate;

}  // namespace sakura
