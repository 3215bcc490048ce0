// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// mul_add(a, b, c): a * b + c with a rounding that no compiler flag changes, for arithmetic that
/// another loop, another backend or a test must reproduce bit for bit.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define SAKURA_HD __host__ __device__
#else
#define SAKURA_HD
#endif

namespace sakura {

/// Whether mul_add rounds once (a fused multiply-add instruction) or twice. FP_FAST_FMA is GCC's
/// (glibc's) word that fma is an instruction (also with AVX-512 alone); clang says __FMA__.
#if defined(__CUDA_ARCH__) || defined(FP_FAST_FMA) || defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define SAKURA_FUSED_MUL_ADD 1
inline constexpr bool kFusedMulAdd = true;
#else
inline constexpr bool kFusedMulAdd = false;
#endif

/// a * b + c. A plain `a * b + c` is rounded once or twice as the compiler likes
/// (-ffp-contract, and GCC's choice depends on the surrounding loop: its AMD tunings keep FMAs
/// out of loop-carried sums), so the same expression in two loops can differ in the last bit.
/// Here: an explicit fma where the target has one (still vectorised, never a library call), else
/// a product and a sum, which nothing can fuse without an FMA instruction.
SAKURA_HD inline double mul_add(double a, double b, double c) {
#if defined(SAKURA_FUSED_MUL_ADD)
  return fma(a, b, c);
#else
  return a * b + c;
#endif
}

}  // namespace sakura
