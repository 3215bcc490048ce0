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
#include <utility>

#include "sakura/tensor/tensor.hpp"

#if defined(__AVX512F__) && defined(__AVX512VL__)
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
namespace register_sort_detail {

[[gnu::always_inline]] inline void exchange(__m512i& x, __m512i& y) {
  const __m512i lo = _mm512_min_epu64(x, y);
  y = _mm512_max_epu64(x, y);
  x = lo;
}
template <int N, std::size_t... I>
[[gnu::always_inline]] inline void run_network(__m512i* r, std::index_sequence<I...>) {
  constexpr auto P = OddEvenMerge<N>::pairs();
  (exchange(r[P[I].first], r[P[I].second]), ...);
}

/// Columns [c0, c0 + 8) (the lanes in `lanes`) of x [rows, cols], rows <= N.
template <int N>
inline void sort_group(float* sorted, std::int32_t* perm, const float* x, Index rows, Index cols, Index c0,
                       __mmask8 lanes) {
  __m512i r[N];
  const __m256i sign = _mm256_set1_epi32(std::int32_t(0x80000000u)), abs = _mm256_set1_epi32(0x7fffffff);
  const __m256i inf = _mm256_set1_epi32(0x7f800000), qnan = _mm256_set1_epi32(0x7fc00000);
#pragma GCC unroll 32
  for (int i = 0; i < N; ++i) {
    if (i >= rows) {  // padding rows sort last
      r[i] = _mm512_set1_epi64(-1);
      continue;
    }
    // sort_key, 8 lanes: ±0 -> 0, NaN -> quiet NaN, then negatives ~u and the rest u | sign
    __m256i u = _mm256_castps_si256(_mm256_maskz_loadu_ps(lanes, x + i * cols + c0));
    const __m256i mag = _mm256_and_si256(u, abs);
    u = _mm256_mask_mov_epi32(u, _mm256_cmpeq_epi32_mask(mag, _mm256_setzero_si256()), _mm256_setzero_si256());
    u = _mm256_mask_mov_epi32(u, _mm256_cmpgt_epi32_mask(mag, inf), qnan);
    u = _mm256_xor_si256(u, _mm256_or_si256(_mm256_srai_epi32(u, 31), sign));
    r[i] = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu32_epi64(u), 32), _mm512_set1_epi64(i));
  }
  run_network<N>(r, std::make_index_sequence<OddEvenMerge<N>::size()>{});
  const __m512i low = _mm512_set1_epi64(0xffffffff);
  for (Index i = 0; i < rows; ++i) {
    const __m256i row = _mm512_cvtepi64_epi32(_mm512_and_si512(r[i], low));
    __m256i u = _mm512_cvtepi64_epi32(_mm512_srli_epi64(r[i], 32));
    // ±0 keys decode to 0x80000000 (the key of +0) and NaN keys to 0xffc00000: take x's bits
    const __mmask8 exact = _mm256_cmpeq_epi32_mask(u, sign) | _mm256_cmpeq_epi32_mask(u, _mm256_set1_epi32(-4194304));
    const __mmask8 nonneg = _mm256_cmplt_epi32_mask(u, _mm256_setzero_si256());  // top bit set
    u = _mm256_mask_mov_epi32(_mm256_xor_si256(u, _mm256_set1_epi32(-1)), nonneg, _mm256_and_si256(u, abs));
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

template <int N>
inline void sort_all(float* sorted, std::int32_t* perm, const float* x, Index rows, Index cols) {
  for (Index c0 = 0; c0 < cols; c0 += 8) {
    const Index w = cols - c0 < 8 ? cols - c0 : 8;
    sort_group<N>(sorted, perm, x, rows, cols, c0, static_cast<__mmask8>((1u << w) - 1u));
  }
}

}  // namespace register_sort_detail
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

/// sort_columns for float and 1 < rows <= 32 in registers; false (nothing done) elsewhere.
inline bool register_sort_columns(float* sorted, std::int32_t* perm, const float* x, Index rows, Index cols) {
#if defined(SAKURA_REGISTER_SORT)
  namespace d = register_sort_detail;
  if (rows <= 1 || rows > 32 || cols <= 0) return false;
  if (rows <= 2) d::sort_all<2>(sorted, perm, x, rows, cols);
  else if (rows <= 4) d::sort_all<4>(sorted, perm, x, rows, cols);
  else if (rows <= 8) d::sort_all<8>(sorted, perm, x, rows, cols);
  else if (rows <= 16) d::sort_all<16>(sorted, perm, x, rows, cols);
  else d::sort_all<32>(sorted, perm, x, rows, cols);
  return true;
#else
  (void)sorted, (void)perm, (void)x, (void)rows, (void)cols;
  return false;
#endif
}

}  // namespace sakura::cpu
