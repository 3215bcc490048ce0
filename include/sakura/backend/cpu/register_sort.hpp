// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Column sort of a float matrix of at most 32 rows in AVX-512 registers (the sliced Wasserstein
/// sort of small batches): 8 columns at a time, each row one vector of 64-bit keys (the
/// order-preserving value key above the row index, as cpu::sort_key builds them), sorted by
/// Batcher's odd-even merge network unrolled at compile time into one vpminuq and one vpmaxuq
/// per exchange, then written back: the row from a key's low bits, the value decoded from its
/// high bits (taken from x where the key cannot tell: ±0 and NaN are canonical in keys).
/// The keys are those of the memory network in kernels.hpp, so results are identical; this
/// path only skips the key buffer (32 x 50: 5.5 -> ~2 µs).
#pragma once

#include <array>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "sakura/tensor/tensor.hpp"

#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define SAKURA_REGISTER_SORT 1
#endif

namespace sakura::cpu {

/// Calls f(i, j) for each compare-exchange (rows i < j) of Batcher's odd-even merge sort of n
/// keys (n a power of two), in network order: both the memory network (network_sort_rows) and
/// the register one below are built from it.
template <class F>
constexpr void odd_even_merge_exchanges(Index n, F&& f) {
  for (Index p = 1, lp = 1; p < n; p += p, ++lp)  // lp = log2(2p): the merge blocks' size
    for (Index k = p; k > 0; k /= 2)
      for (Index j = k % p; j + k < n; j += k + k)
        for (Index i = 0; i < k && i < n - j - k; ++i)
          if (((i + j) >> lp) == ((i + j + k) >> lp)) f(i + j, i + j + k);  // same merge block
}
/// The exchanges of an N-key network as a compile-time table.
template <int N>
struct OddEvenMerge {
  static constexpr int size() {
    int n = 0;
    odd_even_merge_exchanges(N, [&](Index, Index) { ++n; });
    return n;
  }
  static constexpr std::array<std::pair<int, int>, size()> pairs() {
    std::array<std::pair<int, int>, size()> a{};
    int n = 0;
    odd_even_merge_exchanges(N, [&](Index i, Index j) { a[n++] = {int(i), int(j)}; });
    return a;
  }
};

#if defined(SAKURA_REGISTER_SORT)
// GCC 12's conversion intrinsics start from _mm256_undefined_si256(), which -Wall reports as
// uninitialized once inlined here (a false positive in the compiler's header).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
namespace detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;

// sort_key's sign transform as one ternary-logic op on (bits, bits >> 31 arithmetic, sign bit):
// to the key bits ^ (negative ? ~0 : sign), and back from the key key ^ (top bit set ? sign : ~0)
inline constexpr int kToKey = 0x1E, kFromKey = 0x4B;

/// One compare-exchange of 64-bit (value key, row) lanes, or of 32-bit value keys.
template <int Bits>
[[gnu::always_inline]] inline void exchange(__m512i& x, __m512i& y) {
  if constexpr (Bits == 64) {
    const __m512i lo = _mm512_min_epu64(x, y);
    y = _mm512_max_epu64(x, y);
    x = lo;
  } else {
    const __m512i lo = _mm512_min_epu32(x, y);
    y = _mm512_max_epu32(x, y);
    x = lo;
  }
}
template <int N, int Bits = 64, std::size_t... I>
[[gnu::always_inline]] inline void run_network(__m512i* r, std::index_sequence<I...>) {
  constexpr auto P = OddEvenMerge<N>::pairs();
  (exchange<Bits>(r[P[I].first], r[P[I].second]), ...);
}

/// Columns [c0, c0 + 8) (the lanes in `lanes`) of x [rows, cols], rows <= N.
template <int N>
inline void sort_group(float* sorted, std::int32_t* perm, const float* x, Index rows, Index cols, Index c0,
                       __mmask8 lanes) {
  __m512i r[N];
  const __m256i sign = _mm256_set1_epi32(std::int32_t(0x80000000u)), qnan = _mm256_set1_epi32(0x7fc00000);
  // a row's eight 32-bit keys go to the high halves of the 64-bit lanes, its index to the low
  const __m512i widen = _mm512_set_epi32(7, 0, 6, 0, 5, 0, 4, 0, 3, 0, 2, 0, 1, 0, 0, 0);
#pragma GCC unroll 32
  for (int i = 0; i < N; ++i) {
    if (i >= rows) {  // padding rows sort last
      r[i] = _mm512_set1_epi64(-1);
      continue;
    }
    // sort_key, 8 lanes: ±0 -> 0, NaN -> quiet NaN, then negatives ~u and the rest u ^ sign
    const __m256 v = _mm256_maskz_loadu_ps(lanes, x + i * cols + c0);
    __m256i u = _mm256_mask_mov_epi32(_mm256_castps_si256(v), _mm256_fpclass_ps_mask(v, 0x06), _mm256_setzero_si256());
    u = _mm256_mask_mov_epi32(u, _mm256_fpclass_ps_mask(v, 0x81), qnan);  // 0x06: ±0, 0x81: NaN
    u = _mm256_ternarylogic_epi32(u, _mm256_srai_epi32(u, 31), sign, kToKey);
    r[i] = _mm512_mask_permutexvar_epi32(_mm512_set1_epi64(i), 0xAAAA, widen, _mm512_castsi256_si512(u));
  }
  run_network<N>(r, std::make_index_sequence<OddEvenMerge<N>::size()>{});
  // the low halves (rows) to the lower 256 bits, the high halves (keys) to the upper
  const __m512i split = _mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 14, 12, 10, 8, 6, 4, 2, 0);
  for (Index i = 0; i < rows; ++i) {
    const __m512i both = _mm512_permutexvar_epi32(split, r[i]);
    const __m256i row = _mm512_castsi512_si256(both), key = _mm512_extracti32x8_epi32(both, 1);
    // ±0 keys decode to 0x80000000 (the key of +0) and NaN keys to 0xffc00000: take x's bits
    const __mmask8 exact = _mm256_cmpeq_epi32_mask(key, sign) | _mm256_cmpeq_epi32_mask(key, _mm256_set1_epi32(-4194304));
    const __m256i u = _mm256_ternarylogic_epi32(key, _mm256_srai_epi32(key, 31), sign, kFromKey);
    _mm256_mask_storeu_epi32(perm + i * cols + c0, lanes, row);
    _mm256_mask_storeu_ps(sorted + i * cols + c0, lanes, _mm256_castsi256_ps(u));
    if (const unsigned fix = exact & lanes) {
      alignas(32) std::int32_t rw[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(rw), row);
      for (int l = 0; l < 8; ++l)
        if (fix >> l & 1u) sorted[i * cols + c0 + l] = x[Index(rw[l]) * cols + c0 + l];
    }
  }
}

/// Columns [c_begin, c_end) of x [rows, cols], eight at a time.
template <int N>
inline void sort_all(float* sorted, std::int32_t* perm, const float* x, Index rows, Index cols, Index c_begin,
                     Index c_end) {
  for (Index c0 = c_begin; c0 < c_end; c0 += 8) {
    const Index w = c_end - c0 < 8 ? c_end - c0 : 8;
    sort_group<N>(sorted, perm, x, rows, cols, c0, static_cast<__mmask8>((1u << w) - 1u));
  }
}

/// f(integral_constant<int, N>) for the smallest network height N (2, 4, 8, 16, 32) >= rows.
template <class F>
inline void at_height(Index rows, F&& f) {
  if (rows <= 2) f(std::integral_constant<int, 2>{});
  else if (rows <= 4) f(std::integral_constant<int, 4>{});
  else if (rows <= 8) f(std::integral_constant<int, 8>{});
  else if (rows <= 16) f(std::integral_constant<int, 16>{});
  else f(std::integral_constant<int, 32>{});
}

/// The sorted values alone (no permutation: a constant input, such as SW2's prior samples):
/// 16 columns at a time with 32-bit value keys, half the exchanges per column of sort_group.
/// Without row indices the keys cannot give ±0 or NaN their own bits back, so a group holding
/// one is sorted by sort_group (perm is its scratch): the values are sort_group's either way.
template <int N>
inline void sort_values_all(float* sorted, std::int32_t* perm, const float* x, Index rows, Index cols) {
  const __m512i sign = _mm512_set1_epi32(std::int32_t(0x80000000u));
  for (Index c0 = 0; c0 < cols; c0 += 16) {
    const Index w = cols - c0 < 16 ? cols - c0 : 16;
    const __mmask16 lanes = static_cast<__mmask16>((1u << w) - 1u);
    __m512i r[N];
    __mmask16 special = 0;
#pragma GCC unroll 32
    for (int i = 0; i < N; ++i) {
      if (i >= rows) {  // padding rows sort last
        r[i] = _mm512_set1_epi32(-1);
        continue;
      }
      const __m512 v = _mm512_maskz_loadu_ps(lanes, x + i * cols + c0);
      special |= _mm512_mask_fpclass_ps_mask(lanes, v, 0x87);  // ±0 (0x06), NaN (0x81)
      const __m512i u = _mm512_castps_si512(v);
      r[i] = _mm512_ternarylogic_epi32(u, _mm512_srai_epi32(u, 31), sign, kToKey);
    }
    if (special) {
      sort_all<N>(sorted, perm, x, rows, cols, c0, c0 + w);
      continue;
    }
    run_network<N, 32>(r, std::make_index_sequence<OddEvenMerge<N>::size()>{});
    for (Index i = 0; i < rows; ++i)
      _mm512_mask_storeu_ps(sorted + i * cols + c0, lanes,
                            _mm512_castsi512_ps(_mm512_ternarylogic_epi32(r[i], _mm512_srai_epi32(r[i], 31), sign, kFromKey)));
  }
}

}  // namespace detail
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

/// sort_columns for float and 1 < rows <= 32 in registers; false (nothing done) elsewhere. With
/// `values_only` the permutation is not produced (perm is then scratch, for groups holding ±0
/// or NaN) and the values take half the work.
inline bool register_sort_columns(float* sorted, std::int32_t* perm, const float* x, Index rows, Index cols,
                                  bool values_only = false) {
#if defined(SAKURA_REGISTER_SORT)
  namespace d = detail;
  if (rows <= 1 || rows > 32 || cols <= 0) return false;
  d::at_height(rows, [&]<int N>(std::integral_constant<int, N>) {
    if (values_only) d::sort_values_all<N>(sorted, perm, x, rows, cols);
    else d::sort_all<N>(sorted, perm, x, rows, cols, 0, cols);
  });
  return true;
#else
  (void)sorted, (void)perm, (void)x, (void)rows, (void)cols, (void)values_only;
  return false;
#endif
}

}  // namespace sakura::cpu
