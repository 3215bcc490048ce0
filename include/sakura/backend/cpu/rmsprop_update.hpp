// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// RMSProp's update of one parameter span, rounded exactly as PyTorch 1.13's torch.optim.RMSprop
/// rounds it. PyTorch runs one kernel per operation and rounds each result to T:
///   g = grad.add(param, alpha=wd)                       fma(p, wd, g)       (its add is an fma)
///   v = v.mul_(alpha).addcmul_(g, g, value=1 - alpha)   fma((1 - a) g, g, a v)
///   d = v.sqrt().add_(eps)                              sqrt(v) + eps        (sqrt correctly rounded)
///   p.addcdiv_(g, d, value=-lr)                         p + ((-lr) g) / d
/// or with momentum  b.mul_(m).addcdiv_(g, d); p.add_(b, alpha=-lr):  b = m b + g / d, p = fma(b, -lr, p).
/// Bit for bit against PyTorch on 4 settings x 4096 random elements (tests/data/rmsprop_torch113.bin).
/// Two things break that silently, so neither is left to chance here: Eigen's float sqrt (under
/// its default EIGEN_FAST_MATH an rsqrt estimate and one Newton step, off by one ulp in ~1% of
/// updates) and the compiler contracting m b + g / d into one fma (GCC does, across statements,
/// in GNU mode). The vector loops are intrinsics; `rounded()` pins the product PyTorch rounds.
/// Square averages below the smallest normal number are stored as 0: see cpu::rmsprop_step.
#pragma once

#include <cmath>
#include <limits>
#include <type_traits>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#include "sakura/tensor/tensor.hpp"

namespace sakura::cpu::detail {

template <class T>
struct Hyper {
  T neg_lr, alpha, one_minus_alpha, eps, weight_decay, momentum;
};

/// x as rounded, opaque to the optimiser: a product passed through here is never fused with the
/// addition that follows it.
template <class V>
inline V rounded(V x) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+v"(x));
#elif defined(__GNUC__) && defined(__aarch64__)
  __asm__("" : "+w"(x));
#else
  volatile V y = x;
  x = y;
#endif
  return x;
}

/// The rule for one element (any T; the vector loops below compute the same operations).
template <class T, bool WeightDecay, bool Momentum>
inline void update(T& p, T g, T& v, T* b, const Hyper<T>& h) {
  if constexpr (WeightDecay) g = std::fma(p, h.weight_decay, g);
  T s = std::fma(h.one_minus_alpha * g, g, h.alpha * v);
  s = s < std::numeric_limits<T>::min() ? T(0) : s;  // NaN stays
  v = s;
  const T d = std::sqrt(s) + h.eps;
  if constexpr (Momentum) {
    *b = rounded(*b * h.momentum) + g / d;
    p = std::fma(*b, h.neg_lr, p);
  } else {
    p = p + (h.neg_lr * g) / d;
  }
}

#if defined(__AVX512F__)
struct Simd {
  using V = __m512;
  static constexpr Index width = 16;
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* x) { return _mm512_loadu_ps(x); }
  static void store(float* x, V v) { _mm512_storeu_ps(x, v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V sqrt(V a) { return _mm512_sqrt_ps(a); }
  static V zero_below(V a, V lo) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, lo, _CMP_NLT_UQ), a); }
};
#elif defined(__AVX2__) && defined(__FMA__)
struct Simd {
  using V = __m256;
  static constexpr Index width = 8;
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* x) { return _mm256_loadu_ps(x); }
  static void store(float* x, V v) { _mm256_storeu_ps(x, v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V sqrt(V a) { return _mm256_sqrt_ps(a); }
  static V zero_below(V a, V lo) { return _mm256_and_ps(a, _mm256_cmp_ps(a, lo, _CMP_NLT_UQ)); }
};
#endif

/// update() over [0, n): whole vectors of float when the target has AVX2 + FMA or AVX-512,
/// the element rule for the rest and for other types.
template <class T, bool WeightDecay, bool Momentum>
void update_span(T* p, const T* grad, T* v, T* b, Index n, const Hyper<T>& h) {
  Index i = 0;
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
  if constexpr (std::is_same_v<T, float>) {
    using S = Simd;
    const auto neg_lr = S::set1(h.neg_lr), alpha = S::set1(h.alpha), one_minus_alpha = S::set1(h.one_minus_alpha),
               eps = S::set1(h.eps), wd = S::set1(h.weight_decay), mom = S::set1(h.momentum),
               tiny = S::set1(std::numeric_limits<float>::min());
    for (; i + S::width <= n; i += S::width) {
      auto P = S::load(p + i), g = S::load(grad + i);
      if constexpr (WeightDecay) g = S::fma(P, wd, g);
      const auto s = S::zero_below(S::fma(S::mul(one_minus_alpha, g), g, S::mul(alpha, S::load(v + i))), tiny);
      S::store(v + i, s);
      const auto d = S::add(S::sqrt(s), eps);
      if constexpr (Momentum) {
        const auto B = S::add(rounded(S::mul(S::load(b + i), mom)), S::div(g, d));
        S::store(b + i, B);
        P = S::fma(B, neg_lr, P);
      } else {
        P = S::add(P, S::div(S::mul(neg_lr, g), d));
      }
      S::store(p + i, P);
    }
  }
#endif
  for (; i < n; ++i) update<T, WeightDecay, Momentum>(p[i], grad[i], v[i], Momentum ? b + i : nullptr, h);
}

}  // namespace sakura::cpu::detail
