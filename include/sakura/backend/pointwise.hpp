// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The tape's open elementwise set: each function and its derivative written once, for the CPU
/// kernels and the CUDA kernels alike (host and device code).
///
/// A new pointwise function is one enumerator and one case in value() and in grad() here; the
/// tape, its backward rule and both backends take it from there.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SAKURA_HOST_DEVICE __host__ __device__
#else
#define SAKURA_HOST_DEVICE
#endif

namespace sakura {

/// y = f(x, c0, c1) elementwise; c0 and c1 are the function's constants.
enum class Pointwise : std::uint8_t {
  Abs,       // |x|
  Square,    // x^2
  Sqrt,      // sqrt(x)
  Exp,       // e^x
  Log1p,     // log(1 + x)
  Affine,    // x c0 + c1 (multiply by a constant, add a constant)
  ClampMin,  // max(x, c0); a NaN stays NaN
  Less,      // 1 where x < c0, else 0: a mask, without a gradient
};
/// y = a f b elementwise.
enum class Binary : std::uint8_t { Add, Sub, Mul, Div };

namespace pointwise {

#if defined(__CUDA_ARCH__)
#define SAKURA_MATH(f) ::f  // CUDA's float and double overloads
#else
#define SAKURA_MATH(f) std::f
#endif

template <Pointwise F, class T>
SAKURA_HOST_DEVICE inline T value(T x, T c0, T c1) {
  if constexpr (F == Pointwise::Abs) return SAKURA_MATH(fabs)(x);
  else if constexpr (F == Pointwise::Square) return x * x;
  else if constexpr (F == Pointwise::Sqrt) return SAKURA_MATH(sqrt)(x);
  else if constexpr (F == Pointwise::Exp) return SAKURA_MATH(exp)(x);
  else if constexpr (F == Pointwise::Log1p) return SAKURA_MATH(log1p)(x);
  else if constexpr (F == Pointwise::Affine) return x * c0 + c1;
  else if constexpr (F == Pointwise::ClampMin) return x < c0 ? c0 : x;
  else return x < c0 ? T(1) : T(0);
}

/// dy f'(x), from the input x or the output y (whichever the derivative reads), rounded as
/// PyTorch 1.13's backward formulas.
template <Pointwise F, class T>
SAKURA_HOST_DEVICE inline T grad(T dy, T x, T y, T c0) {
  if constexpr (F == Pointwise::Abs) return dy * static_cast<T>((x > T(0)) - (x < T(0)));  // sign(0) = 0
  else if constexpr (F == Pointwise::Square) return dy * (T(2) * x);
  // 0 where y = 0: the subgradient a norm takes at 0 (PyTorch's norm backward), not inf or NaN
  else if constexpr (F == Pointwise::Sqrt) return y > T(0) ? dy / (T(2) * y) : T(0);
  else if constexpr (F == Pointwise::Exp) return dy * y;
  else if constexpr (F == Pointwise::Log1p) return dy / (x + T(1));
  else if constexpr (F == Pointwise::Affine) return dy * c0;
  else if constexpr (F == Pointwise::ClampMin) return x >= c0 ? dy : T(0);
  else return T(0);  // Less: no gradient (the tape records no node for it)
}

template <Binary F, class T>
SAKURA_HOST_DEVICE inline T value(T a, T b) {
  if constexpr (F == Binary::Add) return a + b;
  else if constexpr (F == Binary::Sub) return a - b;
  else if constexpr (F == Binary::Mul) return a * b;
  else return a / b;
}

/// dy d(a f b)/da, or d/db when `wrt_b`, as PyTorch 1.13 rounds them.
template <Binary F, class T>
SAKURA_HOST_DEVICE inline T grad(bool wrt_b, T dy, T a, T b) {
  if constexpr (F == Binary::Add) return dy;
  else if constexpr (F == Binary::Sub) return wrt_b ? -dy : dy;
  else if constexpr (F == Binary::Mul) return wrt_b ? dy * a : dy * b;
  else return wrt_b ? -dy * ((a / b) / b) : dy / b;
}

#undef SAKURA_MATH

/// fn.template operator()<F>() for the runtime choice f: turns an enumerator into a template
/// argument, so each kernel loop is compiled for one function.
template <class Fn>
decltype(auto) dispatch(Pointwise f, Fn&& fn) {
  switch (f) {
    case Pointwise::Abs: return fn.template operator()<Pointwise::Abs>();
    case Pointwise::Square: return fn.template operator()<Pointwise::Square>();
    case Pointwise::Sqrt: return fn.template operator()<Pointwise::Sqrt>();
    case Pointwise::Exp: return fn.template operator()<Pointwise::Exp>();
    case Pointwise::Log1p: return fn.template operator()<Pointwise::Log1p>();
    case Pointwise::Affine: return fn.template operator()<Pointwise::Affine>();
    case Pointwise::ClampMin: return fn.template operator()<Pointwise::ClampMin>();
    case Pointwise::Less: break;
  }
  return fn.template operator()<Pointwise::Less>();
}
template <class Fn>
decltype(auto) dispatch(Binary f, Fn&& fn) {
  switch (f) {
    case Binary::Add: return fn.template operator()<Binary::Add>();
    case Binary::Sub: return fn.template operator()<Binary::Sub>();
    case Binary::Mul: return fn.template operator()<Binary::Mul>();
    case Binary::Div: break;
  }
  return fn.template operator()<Binary::Div>();
}

}  // namespace pointwise
}  // namespace sakura
