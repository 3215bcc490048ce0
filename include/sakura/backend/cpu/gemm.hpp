// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Row-major GEMM for the CPU backend: C = alpha * op(A) * op(B) + beta * C.
/// Eigen's own GEMM serves every scalar type; a faster provider (oneDNN or OpenBLAS) may be
/// selected for float at configure time (CMake option SAKURA_GEMM; gemm_provider() below names it).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <vector>

#include "sakura/backend/cpu/small_gemm.hpp"
#include "sakura/tensor/tensor.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(SAKURA_WITH_DNNL)
#include <dnnl.h>
#elif defined(SAKURA_WITH_CBLAS)
#include <cblas.h>
#endif

namespace sakura::cpu {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using MutMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

/// Below this much work (m n k) a product is computed on one thread.
inline constexpr Index kParallelMinWork = Index(1) << 20;

/// Eigen reference path (always available, used for double and as the fallback).
template <class T>
void gemm_eigen(bool ta, bool tb, Index m, Index n, Index k, T alpha, const T* a, Index lda, const T* b, Index ldb,
                T beta, T* c, Index ldc) {
  if (m == 0 || n == 0) return;
  MutMap<T> C(c, m, n, Eigen::OuterStride<>(ldc));
  if (k == 0) {
    if (beta == T(0)) C.setZero(); else C *= beta;
    return;
  }
  ConstMap<T> A(a, ta ? k : m, ta ? m : k, Eigen::OuterStride<>(lda));
  ConstMap<T> B(b, tb ? n : k, tb ? k : n, Eigen::OuterStride<>(ldb));
  auto run = [&](const auto& opA, const auto& opB) {
    if (beta == T(0)) {
      C.noalias() = alpha * (opA * opB);
    } else {
      if (beta != T(1)) C *= beta;
      C.noalias() += alpha * (opA * opB);
    }
  };
  // Small products run on one thread: forking a team costs more than their arithmetic.
  const bool serial = m * n * k < kParallelMinWork;
  if (serial) Eigen::setNbThreads(1);
  if (!ta && !tb) run(A, B);
  else if (!ta && tb) run(A, B.transpose());
  else if (ta && !tb) run(A.transpose(), B);
  else run(A.transpose(), B.transpose());
  if (serial) Eigen::setNbThreads(0);  // back to the default (OpenMP's thread count)
}

/// Products smaller than this (m n k) stay with Eigen when small_gemm_f32 declines: a library
/// call costs microseconds, more than the arithmetic of the small layers (heads, tiny models).
/// Measured on AVX-512: oneDNN wins from about 32 x 32 x 128 up (4-6 µs against Eigen's 6-7.6 µs
/// at 32 x 32 x 200).
inline constexpr Index kProviderMinWork = Index(1) << 17;

#if defined(SAKURA_GEMM_STATS)
/// Benchmarks only (compiled in when SAKURA_GEMM_STATS is defined): every GEMM's shape, to count
/// FLOPs (2 m n k each) and to replay a step's GEMMs back to back as the "GEMM floor".
struct GemmCall {
  bool ta, tb;
  Index m, n, k, lda, ldb, ldc;
  bool accumulate;
};
inline std::vector<GemmCall>*& gemm_recorder() {
  static std::vector<GemmCall>* r = nullptr;
  return r;
}
#endif

#if defined(SAKURA_WITH_DNNL)
/// A product split over threads gives each at least this many rows (or columns) of C: a thinner
/// piece is not worth a thread, and one row would take oneDNN's GEMV path.
inline constexpr Index kMinSplitPerThread = 8;

/// oneDNN's sgemm, threaded here rather than by oneDNN: oneDNN's own parallel region wraps its
/// work in a std::function, a heap allocation on every threaded product (a training step would
/// allocate every tick). Each thread takes a contiguous block of C's rows (of its columns when
/// there are too few rows) in one serial oneDNN call (oneDNN does not fork inside a parallel
/// region). Below kParallelMinWork the fork costs more than it saves (as for Eigen above): such
/// products run on the calling thread.
inline void dnnl_gemm_f32(bool ta, bool tb, Index m, Index n, Index k, float alpha, const float* a, Index lda,
                          const float* b, Index ldb, float beta, float* c, Index ldc) {
  const char op_a = ta ? 'T' : 'N', op_b = tb ? 'T' : 'N';
#if defined(_OPENMP)
  const int threads = omp_get_max_threads();
  const bool by_rows = m >= 2 * kMinSplitPerThread;
  const Index split = std::min<Index>(threads, (by_rows ? m : n) / kMinSplitPerThread);
  if (split > 1 && m * n * k >= kParallelMinWork && !omp_in_parallel()) {
#pragma omp parallel num_threads(int(split))
    {
      const Index t = omp_get_thread_num(), size = omp_get_num_threads(), len = by_rows ? m : n;
      const Index lo = len * t / size, hi = len * (t + 1) / size;
      if (by_rows)
        dnnl_sgemm(op_a, op_b, hi - lo, n, k, alpha, a + (ta ? lo : lo * lda), lda, b, ldb, beta, c + lo * ldc, ldc);
      else
        dnnl_sgemm(op_a, op_b, m, hi - lo, k, alpha, a, lda, b + (tb ? lo * ldb : lo), ldb, beta, c + lo, ldc);
    }
    return;
  }
  if (threads > 1) omp_set_num_threads(1);  // oneDNN would fork (and allocate) on its own
  dnnl_sgemm(op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (threads > 1) omp_set_num_threads(threads);
#else
  dnnl_sgemm(op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}
#endif

/// The dispatching entry point used by every kernel and rule.
template <class T>
void gemm(bool ta, bool tb, Index m, Index n, Index k, T alpha, const T* a, Index lda, const T* b, Index ldb, T beta,
          T* c, Index ldc) {
#if defined(SAKURA_GEMM_STATS)
  if (gemm_recorder()) gemm_recorder()->push_back({ta, tb, m, n, k, lda, ldb, ldc, beta != T(0)});
#endif
  if constexpr (std::is_same_v<T, float>) {
    // Serial-sized products: the register-tile kernel (no library set-up: 0.05-0.5 µs where
    // oneDNN and Eigen take 0.3-1 µs; on a par with oneDNN at 32 x 32 x 200).
    if (m * n * k < kParallelMinWork && small_gemm_f32(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
  }
#if defined(SAKURA_WITH_DNNL)
  if constexpr (std::is_same_v<T, float>) {
    if (m > 0 && n > 0 && k > 0 && m * n * k >= kProviderMinWork) {
      dnnl_gemm_f32(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
  }
#elif defined(SAKURA_WITH_CBLAS)
  if constexpr (std::is_same_v<T, float>) {
    if (m > 0 && n > 0 && k > 0 && m * n * k >= kProviderMinWork) {
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n),
                  int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
      return;
    }
  }
#endif
  gemm_eigen(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// Name of the float GEMM provider compiled in (benchmarks print it).
inline const char* gemm_provider() {
#if defined(SAKURA_WITH_DNNL)
  return "oneDNN";
#elif defined(SAKURA_WITH_CBLAS)
  return "OpenBLAS";
#else
  return "Eigen";
#endif
}

}  // namespace sakura::cpu
