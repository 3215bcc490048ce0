// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Row-major float GEMM for small products (the tiny models, the heads, the latent layers):
/// C = alpha op(A) op(B) + beta C with everything in L1/L2, on the calling thread, in AVX-512
/// registers. A library call (oneDNN, Eigen) spends 0.3-1 µs of set-up on such products, more
/// than their arithmetic: this kernel does 32 x 8 x 32 in ~0.3 µs (oneDNN 0.6) and is on a par
/// with oneDNN at 32 x 32 x 200 (~130 GFLOP/s on the development VM).
///
/// One register tile: up to 8 rows x 48 or 6 rows x 64 columns of C in at most 24 accumulators;
/// each step over k loads up to 4 vectors of a row of op(B) and broadcasts one value of op(A)
/// per row (either layout of A).
/// op(B) = B^T is first transposed on the stack (16 x 16 blocks in registers, ~0.1 ns per
/// element); a B^T too big for that buffer is declined. (Dot-product tiles over k, which need no
/// transpose, were 1.5-3x slower than transpose + this tile at every shape of the benchmarks.)
/// Each C entry is summed over k in order, so results do not depend on the thread count.
/// Without AVX-512 small_gemm_f32 declines and the caller uses its library.
#pragma once

#include <cstdint>

#include "sakura/tensor/tensor.hpp"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace sakura::cpu {

#if defined(__AVX512F__)
// GCC 12's unpack and broadcast intrinsics start from _mm512_undefined_ps(), which -Wall
// reports as maybe-uninitialized once inlined here (a false positive in the compiler's header).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
namespace detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;

/// Mask of the first `n` (0..16) lanes.
inline __mmask16 lanes(Index n) { return static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1u); }

/// c[0, 16) within `mask` = alpha v + beta c (c is not read when beta == 0: BLAS convention).
inline void store(float* c, __mmask16 mask, __m512 v, float alpha, float beta) {
  if (alpha != 1.0f) v = _mm512_mul_ps(_mm512_set1_ps(alpha), v);
  if (beta != 0.0f) v = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mask, c), v);
  _mm512_mask_storeu_ps(c, mask, v);
}

/// C[MR x cols] for op(A)(i, p) = a[i * ars + p * acs] and op(B)(p, j) = b[p * ldb + j],
/// cols <= 16 NB (the last vector masked by `last`).
template <int MR, int NB>
inline void outer_tile(Index k, const float* a, Index ars, Index acs, const float* b, Index ldb, __mmask16 last,
                       float* c, Index ldc, float alpha, float beta) {
  __m512 acc[MR][NB];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_ps();
  for (Index p = 0; p < k; ++p) {
    const float* bp = b + p * ldb;
    __m512 bv[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB - 1; ++j) bv[j] = _mm512_loadu_ps(bp + 16 * j);
    bv[NB - 1] = _mm512_maskz_loadu_ps(last, bp + 16 * (NB - 1));
    const float* ap = a + p * acs;
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(ap[i * ars]);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) store(c + i * ldc + 16 * j, j == NB - 1 ? last : __mmask16(0xFFFF), acc[i][j], alpha, beta);
}

/// Rows per register tile for NB vectors of columns: 8 x NB accumulators up to NB = 3, 6 x 4
/// at NB = 4 (24 accumulators + 4 B vectors + 1 broadcast of the 32 registers).
template <int NB>
inline constexpr int kTileRows = NB == 4 ? 6 : 8;

/// The last rows (fewer than a tile): a tile of exactly that height.
template <int NB, int R>
inline void outer_tail(Index rows, Index k, const float* a, Index ars, Index acs, const float* b, Index ldb,
                       __mmask16 last, float* c, Index ldc, float alpha, float beta) {
  if constexpr (R > 0) {
    if (rows == R) return outer_tile<R, NB>(k, a, ars, acs, b, ldb, last, c, ldc, alpha, beta);
    outer_tail<NB, R - 1>(rows, k, a, ars, acs, b, ldb, last, c, ldc, alpha, beta);
  }
}

template <int NB>
inline void outer_rows(Index m, Index k, const float* a, Index ars, Index acs, const float* b, Index ldb,
                       __mmask16 last, float* c, Index ldc, float alpha, float beta) {
  constexpr int MR = kTileRows<NB>;
  Index i = 0;
  for (; i + MR <= m; i += MR) outer_tile<MR, NB>(k, a + i * ars, ars, acs, b, ldb, last, c + i * ldc, ldc, alpha, beta);
  outer_tail<NB, MR - 1>(m - i, k, a + i * ars, ars, acs, b, ldb, last, c + i * ldc, ldc, alpha, beta);
}

/// C = alpha op(A) B + beta C, B row-major [k, n] with row stride ldb.
inline void outer(Index m, Index n, Index k, const float* a, Index ars, Index acs, const float* b, Index ldb,
                  float* c, Index ldc, float alpha, float beta) {
  for (Index j = 0; j < n; j += 64) {
    const Index w = n - j < 64 ? n - j : 64;
    const __mmask16 last = lanes(w - 16 * ((w - 1) / 16));
    switch ((w + 15) / 16) {
      case 4: outer_rows<4>(m, k, a, ars, acs, b + j, ldb, last, c + j, ldc, alpha, beta); break;
      case 3: outer_rows<3>(m, k, a, ars, acs, b + j, ldb, last, c + j, ldc, alpha, beta); break;
      case 2: outer_rows<2>(m, k, a, ars, acs, b + j, ldb, last, c + j, ldc, alpha, beta); break;
      default: outer_rows<1>(m, k, a, ars, acs, b + j, ldb, last, c + j, ldc, alpha, beta); break;
    }
  }
}

/// dst[p * ldd + j] = b[j * ldb + p] for j < n, p < k (B^T packed for the outer kernel): 16 x 16
/// blocks transposed in registers (4 rounds of interleaves), edges by masked loads and stores.
inline void transpose(Index n, Index k, const float* b, Index ldb, float* dst, Index ldd) {
  for (Index j0 = 0; j0 < n; j0 += 16)
    for (Index p0 = 0; p0 < k; p0 += 16) {
      const Index nj = n - j0 < 16 ? n - j0 : 16;
      const __mmask16 mp = lanes(k - p0);
      __m512 r[16], t[16];
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j)
        r[j] = j < nj ? _mm512_maskz_loadu_ps(mp, b + (j0 + j) * ldb + p0) : _mm512_setzero_ps();
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q) {  // t[2q] = rows 2q, 2q+1 interleaved by element
        t[2 * q] = _mm512_unpacklo_ps(r[2 * q], r[2 * q + 1]);
        t[2 * q + 1] = _mm512_unpackhi_ps(r[2 * q], r[2 * q + 1]);
      }
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q)  // then by pairs of elements: 4 rows per 128-bit lane
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const __m512d x = _mm512_castps_pd(t[4 * q + h]), y = _mm512_castps_pd(t[4 * q + 2 + h]);
          r[4 * q + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(x, y));
          r[4 * q + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x, y));
        }
      // r[4q + c] lane L now holds element 4L + c of rows 4q..4q+3: gather the four groups
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        const __m512 a01lo = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), a01hi = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
        const __m512 a23lo = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44),
                     a23hi = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
        t[c] = _mm512_shuffle_f32x4(a01lo, a23lo, 0x88);       // element c of lane 0
        t[4 + c] = _mm512_shuffle_f32x4(a01lo, a23lo, 0xDD);   // lane 1
        t[8 + c] = _mm512_shuffle_f32x4(a01hi, a23hi, 0x88);   // lane 2
        t[12 + c] = _mm512_shuffle_f32x4(a01hi, a23hi, 0xDD);  // lane 3
      }
      const __mmask16 mj = lanes(nj);
      const Index np = k - p0 < 16 ? k - p0 : 16;
      for (Index p = 0; p < np; ++p) _mm512_mask_storeu_ps(dst + (p0 + p) * ldd + j0, mj, t[p]);
    }
}

}  // namespace detail
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

/// B^T of at most this many elements (rows padded to 16) is transposed on the stack (32 KiB).
inline constexpr Index kSmallPack = 8192;

/// C = alpha op(A) op(B) + beta C in float on the calling thread, for small products. Returns
/// false (and touches nothing) when it does not apply: no AVX-512, empty shapes, both operands
/// transposed, or a B^T bigger than kSmallPack; the caller then uses its general GEMM.
inline bool small_gemm_f32(bool ta, bool tb, Index m, Index n, Index k, float alpha, const float* a, Index lda,
                           const float* b, Index ldb, float beta, float* c, Index ldc) {
#if defined(__AVX512F__)
  namespace d = detail;
  if (m <= 0 || n <= 0 || k <= 0 || (ta && tb)) return false;
  // op(A)(i, p) = a[i * ars + p * acs]
  const Index ars = ta ? 1 : lda, acs = ta ? lda : 1;
  if (!tb) {
    d::outer(m, n, k, a, ars, acs, b, ldb, c, ldc, alpha, beta);
    return true;
  }
  const Index np = (n + 15) / 16 * 16;
  if (k * np > kSmallPack) return false;
  alignas(64) float bt[kSmallPack];  // op(B) = B^T as [k, np]
  d::transpose(n, k, b, ldb, bt, np);
  d::outer(m, n, k, a, ars, acs, bt, np, c, ldc, alpha, beta);
  return true;
#else
  (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb, (void)beta,
      (void)c, (void)ldc;
  return false;
#endif
}

}  // namespace sakura::cpu
