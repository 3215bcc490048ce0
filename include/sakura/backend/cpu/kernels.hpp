// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// CPU kernels: every loop over tensor memory that the autograd primitives need, on raw
/// row-major buffers. The rules in autograd/rules.hpp call only these and gemm(); a GPU backend
/// provides the same set. Gradient kernels take `acc`: false overwrites the destination
/// (first contribution, no zero-fill pass), true adds to it.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <type_traits>
#include <utility>

#include <Eigen/Core>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "sakura/backend/cpu/gemm.hpp"
#include "sakura/backend/pointwise.hpp"
#include "sakura/backend/cpu/register_sort.hpp"
#include "sakura/backend/cpu/rmsprop_update.hpp"
#include "sakura/tensor/tensor.hpp"

#if defined(_OPENMP)
#include <omp.h>
#define SAKURA_PRAGMA(x) _Pragma(#x)
#else
#define SAKURA_PRAGMA(x)
#endif
#define SAKURA_SIMD SAKURA_PRAGMA(omp simd)
#define SAKURA_SIMD_SUM(v) SAKURA_PRAGMA(omp simd reduction(+ : v))

namespace sakura::cpu {

/// This thread's index in the current OpenMP team and the team's size ({0, 1} outside one).
inline std::pair<int, int> team() {
#if defined(_OPENMP)
  return {omp_get_thread_num(), omp_get_num_threads()};
#else
  return {0, 1};
#endif
}
/// Threads an OpenMP region may use (1 without OpenMP).
inline int max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Loops over more elements than this are worth a fork (the default threshold of the kernels).
inline constexpr Index kParallelMinElems = Index(1) << 15;

/// body(i) for i in [0, n): split statically over the threads when `parallel`, else on this
/// thread outside any OpenMP region. (A region costs a futex syscall, ~0.3 µs, even when its
/// if() clause is false; the tiny step entered ~18 of them, ~8% of its time.)
template <class F>
inline void parallel_for(Index n, [[maybe_unused]] bool parallel, F&& body) {
#if defined(_OPENMP)
  if (parallel) {
    SAKURA_PRAGMA(omp parallel for schedule(static))
    for (Index i = 0; i < n; ++i) body(i);
    return;
  }
#endif
  for (Index i = 0; i < n; ++i) body(i);
}
/// parallel_for for a vectorisable elementwise body, parallel above kParallelMinElems.
template <class F>
inline void parallel_for_simd(Index n, F&& body) {
#if defined(_OPENMP)
  if (n > kParallelMinElems) {
    SAKURA_PRAGMA(omp parallel for simd schedule(static))
    for (Index i = 0; i < n; ++i) body(i);
    return;
  }
#endif
  SAKURA_SIMD
  for (Index i = 0; i < n; ++i) body(i);
}
/// body() once per thread of a team when `parallel` (team() tells which), else once here.
template <class F>
inline void parallel_region([[maybe_unused]] bool parallel, F&& body) {
#if defined(_OPENMP)
  if (parallel) {
    SAKURA_PRAGMA(omp parallel)
    body();
    return;
  }
#endif
  body();
}

template <class T>
using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using CArrMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

/// Runs f(offset, count) over [0, n) in chunks, in parallel when n is large. The elementwise
/// kernels are Eigen array expressions inside f, so they are vectorised (exp, expm1 too).
template <class F>
void chunked(Index n, F&& f) {
  constexpr Index kChunk = Index(1) << 14;
  if (n <= 2 * kChunk) {
    if (n > 0) f(Index(0), n);
    return;
  }
  const Index nc = (n + kChunk - 1) / kChunk;
  SAKURA_PRAGMA(omp parallel for schedule(static))
  for (Index c = 0; c < nc; ++c) f(c * kChunk, std::min(kChunk, n - c * kChunk));
}

/// Elementwise dst = (acc ? dst : 0) + expr(offset, count), vectorised and chunked.
template <class T, class Expr>
void write_or_add(T* dst, Index n, bool acc, Expr&& expr) {
  chunked(n, [&](Index o, Index m) {
    ArrMap<T> d(dst + o, m);
    if (acc) d += expr(o, m);
    else d = expr(o, m);
  });
}

/// Two sums taken in one pass (blocked_reduce adds them member by member).
struct Sums2 {
  double first = 0, second = 0;
  Sums2& operator+=(const Sums2& o) {
    first += o.first;
    second += o.second;
    return *this;
  }
};
/// Sum over [0, n) in double of g(offset, count) (a vectorised partial sum), over blocks whose
/// size depends only on n, summed in order: the result does not depend on the thread count
/// (bit-identical resume across OMP_NUM_THREADS), and nothing is allocated.
/// g returns a double, or a Sums2 for two sums taken in one pass (each summed as alone).
template <class G>
auto blocked_reduce(Index n, G g) {
  using R = decltype(g(Index(0), Index(0)));
  constexpr Index kMaxBlocks = 1024;
  const Index block = std::max<Index>(4096, (n + kMaxBlocks - 1) / kMaxBlocks);
  const Index nb = (n + block - 1) / block;
  if (nb <= 1) return n > 0 ? g(Index(0), n) : R{};
  R partial[kMaxBlocks];
  parallel_for(nb, n > kParallelMinElems, [&](Index b) { partial[b] = g(b * block, std::min(block, n - b * block)); });
  R s{};
  for (Index b = 0; b < nb; ++b) s += partial[b];
  return s;
}

/// Scalar form of blocked_reduce: sum of f(i) in double.
template <class F>
double blocked_sum(Index n, F f) {
  constexpr Index kMaxBlocks = 1024;
  const Index block = std::max<Index>(4096, (n + kMaxBlocks - 1) / kMaxBlocks);
  const Index nb = (n + block - 1) / block;
  if (nb <= 1) {
    double s = 0;
    for (Index i = 0; i < n; ++i) s += f(i);
    return s;
  }
  double partial[kMaxBlocks];
  parallel_for(nb, n > kParallelMinElems, [&](Index b) {
    double s = 0;
    const Index hi = std::min(n, (b + 1) * block);
    for (Index i = b * block; i < hi; ++i) s += f(i);
    partial[b] = s;
  });
  double s = 0;
  for (Index b = 0; b < nb; ++b) s += partial[b];
  return s;
}

template <class T>
inline T sign(T v) {
  return static_cast<T>((v > T(0)) - (v < T(0)));
}

// ---------------------------------------------------------------- copies and blocks
template <class T>
void fill(T* x, Index n, T v) {
  parallel_for_simd(n, [=](Index i) { x[i] = v; });
}
/// y = (acc ? y : 0) + alpha * x
template <class T>
void axpy(T* y, const T* x, Index n, T alpha, bool acc) {
  if (acc) parallel_for_simd(n, [=](Index i) { y[i] += alpha * x[i]; });
  else parallel_for_simd(n, [=](Index i) { y[i] = alpha * x[i]; });
}
/// dst = (acc ? dst : 0) + src, on (possibly strided) blocks of the same shape.
template <class T>
void add_block(MatrixRef<T> dst, MatrixRef<const T> src, bool acc) {
  for (Index r = 0; r < src.rows; ++r) {
    T* d = dst.data + r * dst.ld;
    const T* s = src.data + r * src.ld;
    if (acc)
      for (Index c = 0; c < src.cols; ++c) d[c] += s[c];
    else
      for (Index c = 0; c < src.cols; ++c) d[c] = s[c];
  }
}

// ---------------------------------------------------------------- linear layer pieces
template <class T>
void add_bias(MatrixRef<T> y, const T* b) {
  parallel_for(y.rows, y.size() > kParallelMinElems, [&](Index r) {
    T* row = y.data + r * y.ld;
    for (Index c = 0; c < y.cols; ++c) row[c] += b[c];
  });
}
/// y = max(y + b, 0) in one pass (b may be null): a Linear layer's bias with the ReLU after it,
/// bitwise add_bias then relu_fwd.
template <class T>
void bias_relu(MatrixRef<T> y, const T* b) {
  parallel_for(y.rows, y.size() > kParallelMinElems, [&](Index r) {
    T* __restrict row = y.data + r * y.ld;
    if (b) {
      for (Index c = 0; c < y.cols; ++c) {
        const T v = row[c] + b[c];
        row[c] = v > T(0) ? v : T(0);
      }
    } else {
      for (Index c = 0; c < y.cols; ++c) row[c] = row[c] > T(0) ? row[c] : T(0);
    }
  });
}
/// The backward of bias_relu's layer in one pass: dx = dy where the output y > 0, else 0, and
/// db = (acc_db ? db : 0) + column sums of dx (db may be null). Threads split the columns, so
/// each column is still summed in row order: bitwise relu_bwd then col_sum.
template <class T>
void relu_bwd_col_sum(T* dx, T* db, bool acc_db, const T* dy, const T* y, Index rows, Index cols) {
  parallel_region(rows * cols > kParallelMinElems, [&] {
    const auto [t, nt] = team();
    const Index c0 = cols * t / nt, c1 = cols * (t + 1) / nt;
    if (db && !acc_db) std::fill(db + c0, db + c1, T(0));
    for (Index r = 0; r < rows; ++r) {
      const T* __restrict g = dy + r * cols;
      const T* __restrict v = y + r * cols;
      T* __restrict d = dx + r * cols;
      for (Index c = c0; c < c1; ++c) d[c] = v[c] > T(0) ? g[c] : T(0);
      if (db)
        for (Index c = c0; c < c1; ++c) db[c] += d[c];
    }
  });
}
/// db = (acc ? db : 0) + column sums of dy. Columns are independent, rows summed in order.
template <class T>
void col_sum(T* db, MatrixRef<const T> dy, bool acc) {
  if (!acc) std::fill(db, db + dy.cols, T(0));
  for (Index r = 0; r < dy.rows; ++r) {
    const T* row = dy.data + r * dy.ld;
    for (Index c = 0; c < dy.cols; ++c) db[c] += row[c];
  }
}

// ---------------------------------------------------------------- sparse input (first layer)
/// The CSR input re-sorted by column (gene), built once per step: it lets the sparse products
/// read each weight row once and write each gradient row once.
template <class T>
struct Csc {
  Index rows = 0, cols = 0;
  std::int64_t* colptr = nullptr;  // cols + 1
  std::int32_t* rowidx = nullptr;  // nnz
  T* vals = nullptr;               // nnz
};
/// Counting sort of a CSR matrix into CSC (rows stay ascending within a column). Threads own
/// contiguous gene ranges and find them in each row by binary search (CSR rows are sorted), so
/// each writes only its own columns and the result does not depend on the thread count. The
/// scatter goes block of genes by block, each block's output (~32 KB) staying in L1 while every
/// row adds its entries: unblocked, each entry was a store to a random line of the whole output
/// (100 x 10,000 at 10%: 0.53 -> 0.34 ms on one thread).
template <class T>
void csr_to_csc(Csc<T>& out, CsrRef<T> x) {
  const Index nnz = x.nnz();
  const bool parallel = nnz >= kParallelMinElems && max_threads() > 1;
  const Index per_col = std::max<Index>(1, nnz / std::max<Index>(1, x.cols));
  const Index block = std::max<Index>(64, (Index(32) << 10) / (per_col * Index(sizeof(T) + sizeof(std::int32_t))));
  out.colptr[0] = 0;
  // row r's entries in genes [lo, hi): [k0, k1)
  auto range = [&](Index r, Index lo, Index hi, std::int64_t& k0, std::int64_t& k1) {
    const std::int32_t* first = x.indices + x.indptr[r];
    const std::int32_t* last = x.indices + x.indptr[r + 1];
    const std::int32_t* a = lo == 0 ? first : std::lower_bound(first, last, static_cast<std::int32_t>(lo));
    k0 = a - x.indices;
    k1 = (hi == x.cols ? last : std::lower_bound(a, last, static_cast<std::int32_t>(hi))) - x.indices;
  };
  parallel_region(parallel, [&] {
    const auto [t, nt] = team();
    const Index lo = x.cols * t / nt, hi = x.cols * (t + 1) / nt;
    std::fill(out.colptr + lo + 1, out.colptr + hi + 1, std::int64_t(0));
    for (Index r = 0; r < x.rows; ++r) {
      std::int64_t k0, k1;
      range(r, lo, hi, k0, k1);
      for (std::int64_t k = k0; k < k1; ++k) ++out.colptr[x.indices[k] + 1];
    }
    SAKURA_PRAGMA(omp barrier)
    SAKURA_PRAGMA(omp single)
    for (Index c = 0; c < x.cols; ++c) out.colptr[c + 1] += out.colptr[c];
    // fill with colptr[c] as column c's moving cursor; afterwards it points at column c + 1
    for (Index b0 = lo; b0 < hi; b0 += block) {
      const Index b1 = std::min(hi, b0 + block);
      for (Index r = 0; r < x.rows; ++r) {
        std::int64_t k0, k1;
        range(r, b0, b1, k0, k1);
        for (std::int64_t k = k0; k < k1; ++k) {
          const std::int64_t dst = out.colptr[x.indices[k]]++;
          out.rowidx[dst] = static_cast<std::int32_t>(r);
          out.vals[dst] = x.values[k];
        }
      }
    }
  });
  for (Index c = x.cols; c > 0; --c) out.colptr[c] = out.colptr[c - 1];
  out.colptr[0] = 0;
}
/// out[0, w) (+)= sum over q of val[q] * rows[q][0, w): the tile sum the sparse products are
/// built from. For float, tiles of 64, 72 and 80 keep 16- (and one 8-) lane accumulators as
/// explicit vector variables (GCC/Clang vector extensions) in registers across the sum; other
/// widths take the scalar loop. tile_width() cuts a row into such tiles (200 = 64 + 64 + 72).
inline Index tile_width(Index remaining) {
  return remaining > 64 && remaining <= 80 && remaining % 8 == 0 ? remaining : std::min<Index>(64, remaining);
}
template <int N16, int N8, class RowAt>
inline void tile_sum_f32(float* out, bool acc, std::int64_t q0, std::int64_t q1, const float* vals, RowAt row_at) {
  typedef float v16 __attribute__((vector_size(64)));
  typedef float v8 __attribute__((vector_size(32)));
  constexpr int W = 16 * N16 + 8 * N8;
  v16 a[N16] = {};
  v8 t8{};
  for (std::int64_t q = q0; q < q1; ++q) {
    const float* r = row_at(q);
    const float v = vals[q];
    for (int k = 0; k < N16; ++k) {
      v16 x;
      __builtin_memcpy(&x, r + 16 * k, 64);
      a[k] += v * x;
    }
    if constexpr (N8 > 0) {
      v8 x;
      __builtin_memcpy(&x, r + 16 * N16, 32);
      t8 += v * x;
    }
  }
  alignas(64) float t[W];
  for (int k = 0; k < N16; ++k) __builtin_memcpy(t + 16 * k, &a[k], 64);
  if constexpr (N8 > 0) __builtin_memcpy(t + 16 * N16, &t8, 32);
  for (int i = 0; i < W; ++i) out[i] = acc ? out[i] + t[i] : t[i];
}
template <class T, class RowAt>
inline void tile_sum(T* out, bool acc, Index w, std::int64_t q0, std::int64_t q1, const T* vals, RowAt row_at) {
  if constexpr (std::is_same_v<T, float>) {
    if (w == 64) return tile_sum_f32<4, 0>(out, acc, q0, q1, vals, row_at);
    if (w == 72) return tile_sum_f32<4, 1>(out, acc, q0, q1, vals, row_at);
    if (w == 80) return tile_sum_f32<5, 0>(out, acc, q0, q1, vals, row_at);
  }
  T t[80] = {};
  for (std::int64_t q = q0; q < q1; ++q) {
    const T* r = row_at(q);
    for (Index i = 0; i < w; ++i) t[i] += vals[q] * r[i];
  }
  for (Index i = 0; i < w; ++i) out[i] = acc ? out[i] + t[i] : t[i];
}
/// y (rows x out) += x W' for W' stored input-major [in, out], from the CSR rows. Genes are taken
/// in L2-sized chunks; within a chunk every cell sums the weight rows of its expressed genes in
/// registers, per output tile (tile_width), and adds the tile to y once. So W' is read from memory
/// once per step and y is written once per chunk. Threads split the cells.
template <class T>
void csr_linear_fwd_inmajor(T* y, CsrRef<T> x, const T* w, Index out) {
  const Index chunk = std::max<Index>(256, (Index(1) << 20) / std::max<Index>(1, out * Index(sizeof(T))));
  for (Index g0 = 0; g0 < x.cols; g0 += chunk) {
    const auto lo = static_cast<std::int32_t>(g0), hi = static_cast<std::int32_t>(std::min(x.cols, g0 + chunk));
    parallel_for(x.rows, x.rows * out > (1 << 12), [&](Index r) {
      const std::int32_t* first = x.indices + x.indptr[r];
      const std::int32_t* last = x.indices + x.indptr[r + 1];
      const std::int64_t k0 = std::lower_bound(first, last, lo) - x.indices;
      const std::int64_t k1 = std::lower_bound(first, last, hi) - x.indices;
      if (k0 == k1) return;
      T* yr = y + r * out;
      for (Index o = 0, tw; o < out; o += tw) {
        tw = tile_width(out - o);
        tile_sum(yr + o, true, tw, k0, k1, x.values, [&](std::int64_t q) { return w + Index(x.indices[q]) * out + o; });
      }
    });
  }
}
/// dW'[j, :] (+)= sum over the cells expressing gene j of x_ij dY[i, :], per gene from the CSC
/// copy, accumulated in registers per tile (tile_width) and written once. Genes go in chunks
/// (<= 256 KB of dW') and within a chunk tile by tile, so the dY columns of one tile (rows x 64)
/// are what the sums read for a whole chunk: L1 instead of all of dY from L2 (~15% faster).
/// Each element's sum is the same as gene by gene. Threads split the chunks.
template <class T>
void csc_weight_grad_inmajor(T* dw, const Csc<T>& x, const T* dy, Index out, bool acc) {
  // ~256 KB of dW', and at least 4 chunks per thread so that static scheduling balances
  const Index chunk = std::max<Index>(64, std::min<Index>((Index(256) << 10) / std::max<Index>(1, out * Index(sizeof(T))),
                                                          x.cols / (4 * max_threads())));
  const Index chunks = (x.cols + chunk - 1) / chunk;
  parallel_for(chunks, x.cols * out > kParallelMinElems, [&](Index c) {
    const Index j0 = c * chunk, j1 = std::min(x.cols, j0 + chunk);
    for (Index o = 0, tw; o < out; o += tw) {
      tw = tile_width(out - o);
      for (Index j = j0; j < j1; ++j)
        tile_sum(dw + j * out + o, acc, tw, x.colptr[j], x.colptr[j + 1], x.vals,
                 [&](std::int64_t k) { return dy + Index(x.rowidx[k]) * out + o; });
    }
  });
}
/// y += x W^T for W stored [out, in] (PyTorch layout): a strided gather per entry. Correct but
/// slow; store the first layer input-major for sparse input.
template <class T>
void csr_linear_fwd_outmajor(T* y, CsrRef<T> x, const T* w, Index out) {
  for (Index r = 0; r < x.rows; ++r)
    for (Index o = 0; o < out; ++o) {
      T s = 0;
      for (std::int64_t k = x.indptr[r]; k < x.indptr[r + 1]; ++k) s += x.values[k] * w[o * x.cols + x.indices[k]];
      y[r * out + o] += s;
    }
}
/// Weight gradient of the sparse first layer: dW'[j, :] = sum over cells of x_ij dY[i, :]
/// (input-major), or the same into column j of dW (PyTorch layout). Genes no cell expresses get
/// a zero row (or keep theirs when accumulating).
template <class T>
void csc_weight_grad(T* dw, const Csc<T>& x, const T* dy, Index out, bool in_major, bool acc) {
  if (in_major) return csc_weight_grad_inmajor(dw, x, dy, out, acc);
  parallel_for(x.cols, x.cols * out > kParallelMinElems, [&](Index j) {
    {
      for (Index o = 0; o < out; ++o) {
        T s = acc ? dw[o * x.cols + j] : T(0);
        for (std::int64_t k = x.colptr[j]; k < x.colptr[j + 1]; ++k) s += x.vals[k] * dy[Index(x.rowidx[k]) * out + o];
        dw[o * x.cols + j] = s;
      }
    }
  });
}
/// Dense copy of a CSR matrix (the reconstruction target of a sparse batch).
template <class T>
void csr_densify(T* out, CsrRef<T> x) {
  parallel_for(x.rows, x.rows * x.cols > (1 << 18), [&](Index r) {
    T* row = out + r * x.cols;
    std::fill(row, row + x.cols, T(0));
    for (std::int64_t k = x.indptr[r]; k < x.indptr[r + 1]; ++k) row[x.indices[k]] = x.values[k];
  });
}

// ---------------------------------------------------------------- activations
/// CELU of one float, max(x, 0) + expm1(min(x, 0)), correctly rounded (checked against double
/// expm1): expm1(x) = 2^k expm1(r) + (2^k - 1) with x = k ln 2 + r, |r| <= 0.35, in double.
/// Written with integer masks only: GCC does not if-convert float compares or conversions
/// (they could trap) and moves a conversion under a branch when one of its inputs is a constant
/// select, and either stops the loop in celu_fwd from vectorising. 40% faster than Eigen's
/// expm1, which is 1 ulp off for 6% of inputs.
inline float celu_f32(float xf) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(xf), mag = bits & 0x7fffffffu;
  const std::uint32_t neg = std::uint32_t(std::int32_t(bits) >> 31);      // all ones when the sign is set
  const std::uint32_t keep = neg & (std::uint32_t(mag > 0x7f800000u) - 1u);  // ... and not NaN
  // x < 0: at least -103 (below, expm1 rounds to -1 in float); x >= 0 or NaN: +0
  const double x = double(std::bit_cast<float>(std::min(bits, 0xc2ce0000u) & keep));
  const double kd = double(std::int64_t(-x * 1.4426950408889634 + 0.5));  // -k = round(|x| / ln 2)
  const double r = x + kd * 0.6931471805599453;
  // expm1(r) by Taylor to r^11 / 11!: relative error < 3e-13
  const double p =
      r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (1.0 / 720 + r * (1.0 / 5040 +
      r * (1.0 / 40320 + r * (1.0 / 362880 + r * (1.0 / 3628800 + r * (1.0 / 39916800)))))))))));
  const double scale = std::bit_cast<double>(std::uint64_t(1023 - std::int64_t(kd)) << 52);  // 2^k
  const float e = static_cast<float>(scale * p + (scale - 1.0));
  return std::bit_cast<float>(bits & ~keep) + e;  // max(x, 0) (+0 for -0), or the NaN itself
}
#if defined(__AVX512F__)
/// celu_f32 on x[0, n) with the expm1 done only for the negative inputs: they are compressed
/// into a buffer, computed densely, and expanded back into y (positive inputs, NaN and ±0 take
/// x + 0, celu_f32's value for them). A layer whose pre-activations are half positive costs
/// about half: the double-precision expm1 is ~35 vector instructions per 8 inputs, the
/// compress and expand ~12 per 16.
inline void celu_fwd_compressed(float* y, const float* x, Index n) {
  constexpr Index kRun = 1024;
  alignas(64) float buf[kRun + 16];  // a compressed vector is stored whole
  const __m512 zero = _mm512_setzero_ps();
  for (Index o = 0; o < n; o += kRun) {
    const Index m = std::min(kRun, n - o), full = m / 16 * 16;
    const __mmask16 tail = static_cast<__mmask16>((1u << (m - full)) - 1u);
    float* count = buf;
    auto gather = [&](__m512 v, __mmask16 neg) {
      _mm512_storeu_ps(count, _mm512_maskz_compress_ps(neg, v));
      count += std::popcount(static_cast<unsigned>(neg));
    };
    for (Index i = 0; i < full; i += 16) {
      const __m512 v = _mm512_loadu_ps(x + o + i);
      gather(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ));
    }
    if (tail) {
      const __m512 v = _mm512_maskz_loadu_ps(tail, x + o + full);
      gather(v, _mm512_mask_cmp_ps_mask(tail, v, zero, _CMP_LT_OQ));
    }
    const Index negatives = count - buf;
    SAKURA_SIMD
    for (Index i = 0; i < negatives; ++i) buf[i] = celu_f32(buf[i]);
    const float* used = buf;
    auto scatter = [&](__m512 v, __mmask16 neg) {
      const __m512 r = _mm512_mask_expand_ps(_mm512_add_ps(v, zero), neg, _mm512_loadu_ps(used));
      used += std::popcount(static_cast<unsigned>(neg));
      return r;
    };
    for (Index i = 0; i < full; i += 16) {
      const __m512 v = _mm512_loadu_ps(x + o + i);
      _mm512_storeu_ps(y + o + i, scatter(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ)));
    }
    if (tail) {
      const __m512 v = _mm512_maskz_loadu_ps(tail, x + o + full);
      _mm512_mask_storeu_ps(y + o + full, tail, scatter(v, _mm512_mask_cmp_ps_mask(tail, v, zero, _CMP_LT_OQ)));
    }
  }
}
#endif
/// CELU as max(x, 0) + expm1(min(x, 0)): the same values as the branchy form (expm1(0) = 0
/// exactly), select-free so that it vectorises (float: celu_f32; double: Eigen's expm1).
template <class T>
void celu_fwd(T* y, const T* x, Index n) {
  chunked(n, [&](Index o, Index m) {
    if constexpr (std::is_same_v<T, float>) {
#if defined(__AVX512F__)
      celu_fwd_compressed(y + o, x + o, m);
#else
      float* __restrict yy = y + o;
      const float* __restrict xx = x + o;
      SAKURA_SIMD
      for (Index i = 0; i < m; ++i) yy[i] = celu_f32(xx[i]);
#endif
    } else {
      CArrMap<T> a(x + o, m);
      ArrMap<T>(y + o, m) = a.max(T(0)) + a.min(T(0)).expm1();
    }
  });
}
/// d CELU / dx = 1 for x > 0, exp(x) otherwise = exp(min(x, 0)).
template <class T>
void celu_bwd(T* dx, const T* dy, const T* x, Index n, bool acc) {
  write_or_add(dx, n, acc,
               [&](Index o, Index m) { return CArrMap<T>(dy + o, m) * CArrMap<T>(x + o, m).min(T(0)).exp(); });
}
template <class T>
void relu_fwd(T* y, const T* x, Index n) {
  chunked(n, [=](Index o, Index m) {
    T* __restrict yy = y + o;
    const T* __restrict xx = x + o;
    for (Index i = 0; i < m; ++i) yy[i] = xx[i] > T(0) ? xx[i] : T(0);
  });
}
/// Uses the output: exact zeros stay exact (they decide RMSProp's first-step sign).
template <class T>
void relu_bwd(T* dx, const T* dy, const T* y, Index n, bool acc) {
  chunked(n, [=](Index o, Index m) {
    T* __restrict d = dx + o;
    const T* __restrict g = dy + o;
    const T* __restrict v = y + o;
    if (acc)
      for (Index i = 0; i < m; ++i) d[i] += v[i] > T(0) ? g[i] : T(0);
    else
      for (Index i = 0; i < m; ++i) d[i] = v[i] > T(0) ? g[i] : T(0);
  });
}
template <class T>
void sigmoid_fwd(T* y, const T* x, Index n) {
  chunked(n, [&](Index o, Index m) { ArrMap<T>(y + o, m) = T(1) / (T(1) + (-CArrMap<T>(x + o, m)).exp()); });
}
template <class T>
void sigmoid_bwd(T* dx, const T* dy, const T* y, Index n, bool acc) {
  write_or_add(dx, n, acc, [&](Index o, Index m) {
    CArrMap<T> v(y + o, m);
    return CArrMap<T>(dy + o, m) * (T(1) - v) * v;
  });
}
template <class T>
void softmax_rows_fwd(T* y, const T* x, Index rows, Index cols, bool log) {
  parallel_for(rows, rows * cols > kParallelMinElems, [&](Index r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T m = -std::numeric_limits<T>::infinity();
    for (Index c = 0; c < cols; ++c) m = std::max(m, xr[c]);
    double s = 0;
    for (Index c = 0; c < cols; ++c) s += std::exp(double(xr[c] - m));
    if (log) {
      const T ls = static_cast<T>(std::log(s));
      for (Index c = 0; c < cols; ++c) yr[c] = xr[c] - m - ls;
    } else {
      for (Index c = 0; c < cols; ++c) yr[c] = static_cast<T>(std::exp(double(xr[c] - m)) / s);
    }
  });
}
/// softmax: dx = y * (dy - sum(dy * y)); log-softmax: dx = dy - exp(y) * sum(dy).
template <class T>
void softmax_rows_bwd(T* dx, const T* dy, const T* y, Index rows, Index cols, bool log, bool acc) {
  parallel_for(rows, rows * cols > kParallelMinElems, [&](Index r) {
    const T* dyr = dy + r * cols;
    const T* yr = y + r * cols;
    T* dxr = dx + r * cols;
    double s = 0;
    for (Index c = 0; c < cols; ++c) s += log ? double(dyr[c]) : double(dyr[c]) * yr[c];
    for (Index c = 0; c < cols; ++c) {
      T g = log ? dyr[c] - std::exp(yr[c]) * T(s) : yr[c] * (dyr[c] - T(s));
      dxr[c] = acc ? dxr[c] + g : g;
    }
  });
}

// ---------------------------------------------------------------- the open elementwise set
/// y = f(x) elementwise (backend/pointwise.hpp), vectorised, threaded above kParallelMinElems.
template <class T>
void pointwise_fwd(Pointwise f, T* y, const T* x, Index n, T c0, T c1) {
  pointwise::dispatch(f, [&]<Pointwise F>() {
    parallel_for_simd(n, [=](Index i) { y[i] = pointwise::value<F>(x[i], c0, c1); });
  });
}
/// dx (+)= dy f'(x), with x the input and y the output of pointwise_fwd.
template <class T>
void pointwise_bwd(Pointwise f, T* dx, const T* dy, const T* x, const T* y, Index n, T c0, bool acc) {
  pointwise::dispatch(f, [&]<Pointwise F>() {
    if (acc) parallel_for_simd(n, [=](Index i) { dx[i] += pointwise::grad<F>(dy[i], x[i], y[i], c0); });
    else parallel_for_simd(n, [=](Index i) { dx[i] = pointwise::grad<F>(dy[i], x[i], y[i], c0); });
  });
}
/// y = a f b elementwise (dropout: x * mask, the mask holding 0 or 1/(1-p)).
template <class T>
void binary_fwd(Binary f, T* y, const T* a, const T* b, Index n) {
  pointwise::dispatch(f, [&]<Binary F>() {
    parallel_for_simd(n, [=](Index i) { y[i] = pointwise::value<F>(a[i], b[i]); });
  });
}
/// d (+)= the gradient of a f b with respect to a, or b when `wrt_b`.
template <class T>
void binary_bwd(Binary f, bool wrt_b, T* d, const T* dy, const T* a, const T* b, Index n, bool acc) {
  pointwise::dispatch(f, [&]<Binary F>() {
    if (acc) parallel_for_simd(n, [=](Index i) { d[i] += pointwise::grad<F>(wrt_b, dy[i], a[i], b[i]); });
    else parallel_for_simd(n, [=](Index i) { d[i] = pointwise::grad<F>(wrt_b, dy[i], a[i], b[i]); });
  });
}
/// y = mask != 0 ? a : b elementwise.
template <class T>
void where_fwd(T* y, const T* mask, const T* a, const T* b, Index n) {
  parallel_for_simd(n, [=](Index i) { y[i] = mask[i] != T(0) ? a[i] : b[i]; });
}
/// where()'s gradient for a (selected) or b (!selected): d (+)= dy where the mask picks that side.
template <class T>
void where_bwd(T* d, const T* dy, const T* mask, bool selected, Index n, bool acc) {
  parallel_for_simd(n, [=](Index i) {
    const T g = (mask[i] != T(0)) == selected ? dy[i] : T(0);
    d[i] = acc ? d[i] + g : g;
  });
}
/// dx (+)= v everywhere: the gradient of a mean (v = g / n).
template <class T>
void fill_or_add(T* dx, Index n, T v, bool acc) {
  if (acc) parallel_for_simd(n, [=](Index i) { dx[i] += v; });
  else fill(dx, n, v);
}
/// y[r] = the sum of row r (in double, rounded once).
template <class T>
void row_sums(T* y, const T* x, Index rows, Index cols) {
  parallel_for(rows, rows * cols > kParallelMinElems, [=](Index r) {
    const T* xr = x + r * cols;
    double s = 0;
    for (Index c = 0; c < cols; ++c) s += xr[c];
    y[r] = static_cast<T>(s);
  });
}
/// dx[r, c] (+)= dy[r]: row_sums' gradient.
template <class T>
void row_sums_bwd(T* dx, const T* dy, Index rows, Index cols, bool acc) {
  parallel_for(rows, rows * cols > kParallelMinElems, [=](Index r) {
    T* d = dx + r * cols;
    const T g = dy[r];
    if (acc)
      for (Index c = 0; c < cols; ++c) d[c] += g;
    else
      for (Index c = 0; c < cols; ++c) d[c] = g;
  });
}

// ---------------------------------------------------------------- elementwise losses (means)
/// Sum over [0, m) of f(i), accumulated in T over runs of 256 (vectorised) and in double
/// across runs: the error stays at a few ulps of the result.
template <class T, class F>
double run_sum(Index m, F f) {
  double acc = 0;
  for (Index r = 0; r < m; r += 256) {
    const Index hi = std::min(m, r + 256);
    T s = 0;
    SAKURA_SIMD_SUM(s)
    for (Index i = r; i < hi; ++i) s += f(i);
    acc += double(s);
  }
  return acc;
}
/// Sum of x[0, n): the blocks and runs of the fused losses' sums, so that mean(square(a - b))
/// and mean(abs(a - b)) sum their terms as MSE's and L1's kernels do.
template <class T>
double sum(const T* x, Index n) {
  return blocked_reduce(n, [=](Index o, Index m) {
    const T* __restrict xx = x + o;
    return run_sum<T>(m, [=](Index i) { return xx[i]; });
  });
}
template <class T>
double sq_diff_sum(const T* a, const T* b, Index n) {
  return blocked_reduce(n, [=](Index o, Index m) {
    const T* __restrict aa = a + o;
    const T* __restrict bb = b + o;
    return run_sum<T>(m, [=](Index i) {
      const T d = aa[i] - bb[i];
      return d * d;
    });
  });
}
/// sq_diff_sum and abs_diff_sum in one pass over a and b (the reconstruction's MSE and L1 read
/// prediction and target once): the same blocks and runs, each sum reduced as in its own kernel
/// (tested bitwise against the two).
template <class T>
Sums2 sq_abs_diff_sums(const T* a, const T* b, Index n) {
  return blocked_reduce(n, [=](Index o, Index m) {
    const T* __restrict aa = a + o;
    const T* __restrict bb = b + o;
    Sums2 acc;
    for (Index r = 0; r < m; r += 256) {
      const Index hi = std::min(m, r + 256);
      T sq = 0, ab = 0;
      SAKURA_PRAGMA(omp simd reduction(+ : sq, ab))
      for (Index i = r; i < hi; ++i) {
        const T d = aa[i] - bb[i];
        sq += d * d;
        ab += std::abs(d);
      }
      acc.first += double(sq);
      acc.second += double(ab);
    }
    return acc;
  });
}
/// The per-block bodies of MSE's and L1's gradients, shared by the single kernels and the fused
/// one (the same code, so the same rounding and FMA contraction).
template <class T>
inline void sq_diff_bwd_block(T* __restrict d, T g_scale, const T* __restrict aa, const T* __restrict bb, Index m,
                              bool acc) {
  if (acc)
    for (Index i = 0; i < m; ++i) d[i] += g_scale * (aa[i] - bb[i]);
  else
    for (Index i = 0; i < m; ++i) d[i] = g_scale * (aa[i] - bb[i]);
}
template <class T>
inline void abs_diff_bwd_block(T* __restrict d, T g_scale, const T* __restrict aa, const T* __restrict bb, Index m,
                               bool acc) {
  if (acc)
    for (Index i = 0; i < m; ++i) d[i] += g_scale * (T(aa[i] > bb[i]) - T(aa[i] < bb[i]));
  else
    for (Index i = 0; i < m; ++i) d[i] = g_scale * (T(aa[i] > bb[i]) - T(aa[i] < bb[i]));
}
/// da = acc + scale * (a - b): MSE's gradient with scale = 2 g / n (and the roles swapped for b).
template <class T>
void sq_diff_bwd(T* da, T g_scale, const T* a, const T* b, Index n, bool acc) {
  chunked(n, [=](Index o, Index m) { sq_diff_bwd_block(da + o, g_scale, a + o, b + o, m, acc); });
}
/// One block of MSE's then L1's gradient (or L1's then MSE's): sq_abs_diff_bwd's and
/// sq_abs_diff_relu_bwd's common body.
template <class T>
inline void sq_abs_diff_bwd_block(T* da, T s_sq, T s_abs, bool sq_first, const T* a, const T* b, Index m, bool acc) {
  if (sq_first) {
    sq_diff_bwd_block(da, s_sq, a, b, m, acc);
    abs_diff_bwd_block(da, s_abs, a, b, m, true);
  } else {
    abs_diff_bwd_block(da, s_abs, a, b, m, acc);
    sq_diff_bwd_block(da, s_sq, a, b, m, true);
  }
}
/// MSE's and L1's gradients on the same pair, in the order the two rules would run, block by
/// block: the second reads the first's output from L1 cache instead of memory, so the
/// reconstruction's MSE + L1 cost one pass over batch x genes. Values: the two kernels' (tested).
template <class T>
void sq_abs_diff_bwd(T* da, T s_sq, T s_abs, bool sq_first, const T* a, const T* b, Index n, bool acc) {
  chunked(n, [=](Index o0, Index m0) {
    for (Index o = o0; o < o0 + m0; o += 2048)
      sq_abs_diff_bwd_block(da + o, s_sq, s_abs, sq_first, a + o, b + o, std::min<Index>(2048, o0 + m0 - o), acc);
  });
}
/// sq_abs_diff_bwd carried through the ReLU that produced `a` (rows x cols), with that layer's
/// bias gradient: da = a > 0 ? d : 0 for the two terms' gradient d, db (+)= column sums of da.
/// One pass where sq_abs_diff_bwd and relu_bwd_col_sum took two (12 B per element saved: the
/// unmasked gradient is neither written out nor read back), and the same values: each piece
/// runs sq_abs_diff_bwd's block code, then relu_bwd_col_sum's mask and its column split, so every
/// column is summed in row order whatever the thread count (tested bitwise against the two).
template <class T>
void sq_abs_diff_relu_bwd(T* da, T* db, bool acc_db, T s_sq, T s_abs, bool sq_first, const T* a, const T* b,
                          Index rows, Index cols, bool acc) {
  parallel_region(rows * cols > kParallelMinElems, [&] {
    const auto [t, nt] = team();
    const Index c0 = cols * t / nt, c1 = cols * (t + 1) / nt;
    if (db && !acc_db) std::fill(db + c0, db + c1, T(0));
    for (Index r = 0; r < rows; ++r)
      for (Index p0 = c0; p0 < c1; p0 += 1024) {  // 12 KB of da, a and b stay in L1 for the mask
        const Index o = r * cols + p0, m = std::min<Index>(1024, c1 - p0);
        sq_abs_diff_bwd_block(da + o, s_sq, s_abs, sq_first, a + o, b + o, m, acc);
        T* __restrict d = da + o;
        const T* __restrict v = a + o;
        for (Index c = 0; c < m; ++c) d[c] = v[c] > T(0) ? d[c] : T(0);
        if (db)
          for (Index c = 0; c < m; ++c) db[p0 + c] += d[c];
      }
  });
}
template <class T>
double abs_diff_sum(const T* a, const T* b, Index n) {
  return blocked_reduce(n, [=](Index o, Index m) {
    const T* __restrict aa = a + o;
    const T* __restrict bb = b + o;
    return run_sum<T>(m, [=](Index i) { return std::abs(aa[i] - bb[i]); });
  });
}
/// L1's gradient: scale * sign(a - b) with sign(0) = 0, exactly as PyTorch.
template <class T>
void abs_diff_bwd(T* da, T g_scale, const T* a, const T* b, Index n, bool acc) {
  chunked(n, [=](Index o, Index m) { abs_diff_bwd_block(da + o, g_scale, a + o, b + o, m, acc); });
}

// ---------------------------------------------------------------- row-wise reductions
/// Row norms (ord 1 or 2) into norms[rows]; returns their sum.
template <class T>
double row_norms(T* norms, const T* x, Index rows, Index cols, int ord) {
  double total = 0;
  for (Index r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    double s = 0;
    if (ord == 1)
      for (Index c = 0; c < cols; ++c) s += std::abs(double(xr[c]));
    else
      for (Index c = 0; c < cols; ++c) s += double(xr[c]) * xr[c];
    if (ord != 1) s = std::sqrt(s);
    norms[r] = static_cast<T>(s);
    total += static_cast<T>(s);
  }
  return total;
}
/// Gradient of g * mean_r ||x_r||: L1 -> sign(x) g/rows; L2 -> x/||x_r|| g/rows (0 when the norm is 0).
template <class T>
void row_norms_bwd(T* dx, T g_over_rows, const T* x, const T* norms, Index rows, Index cols, int ord, bool acc) {
  for (Index r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* dr = dx + r * cols;
    const T k = ord == 1 ? g_over_rows : (norms[r] == T(0) ? T(0) : g_over_rows / norms[r]);
    for (Index c = 0; c < cols; ++c) {
      T v = ord == 1 ? k * sign(xr[c]) : k * xr[c];
      dr[c] = acc ? dr[c] + v : v;
    }
  }
}
/// Row cosines with PyTorch 1.13's guard: cos = sum (a/max(|a|,eps)) (b/max(|b|,eps)).
/// Saves the raw norms and dots for the backward; returns sum over rows of (1 - cos).
template <class T>
double cosine_rows(T* na, T* nb, T* dot, const T* a, const T* b, Index rows, Index cols) {
  double total = 0;
  for (Index r = 0; r < rows; ++r) {
    const T* ar = a + r * cols;
    const T* br = b + r * cols;
    double sa = 0, sb = 0, sab = 0;
    for (Index c = 0; c < cols; ++c) {
      sa += double(ar[c]) * ar[c];
      sb += double(br[c]) * br[c];
      sab += double(ar[c]) * br[c];
    }
    na[r] = static_cast<T>(std::sqrt(sa));
    nb[r] = static_cast<T>(std::sqrt(sb));
    dot[r] = static_cast<T>(sab);
    const double ca = std::max(std::sqrt(sa), 1e-8), cb = std::max(std::sqrt(sb), 1e-8);
    total += 1.0 - sab / (ca * cb);
  }
  return total;
}
/// Gradient of g * mean(1 - cos) with respect to `a` (call with the roles swapped for `b`).
template <class T>
void cosine_rows_bwd(T* da, T g, const T* a, const T* b, const T* na, const T* nb, const T* dot, Index rows,
                     Index cols, bool acc) {
  const double k = -double(g) / double(rows);
  for (Index r = 0; r < rows; ++r) {
    const T* ar = a + r * cols;
    const T* br = b + r * cols;
    T* dr = da + r * cols;
    const double ca = std::max(double(na[r]), 1e-8), cb = std::max(double(nb[r]), 1e-8);
    const double c1 = k / (ca * cb);
    // the norm term exists only where |a| is not clamped (PyTorch masks a zero norm's gradient)
    const double c2 = double(na[r]) > 1e-8 ? -k * double(dot[r]) / (ca * ca * ca * cb) : 0.0;
    for (Index c = 0; c < cols; ++c) {
      T v = static_cast<T>(c1 * br[c] + c2 * ar[c]);
      dr[c] = acc ? dr[c] + v : v;
    }
  }
}

// ---------------------------------------------------------------- classification
/// Sum over rows of -logp[r, label_r].
template <class T>
double nll_sum(const T* logp, const std::int64_t* labels, Index rows, Index cols) {
  double s = 0;
  for (Index r = 0; r < rows; ++r) s -= logp[r * cols + labels[r]];
  return s;
}
template <class T>
void nll_bwd(T* dlogp, T g_over_rows, const std::int64_t* labels, Index rows, Index cols, bool acc) {
  if (!acc) std::fill(dlogp, dlogp + rows * cols, T(0));
  for (Index r = 0; r < rows; ++r) dlogp[r * cols + labels[r]] -= g_over_rows;
}
/// Binary cross-entropy with PyTorch's log clamp at -100.
template <class T>
double bce_sum(const T* p, const T* y, Index n) {
  return blocked_sum(n, [&](Index i) {
    double lp = std::max(std::log(double(p[i])), -100.0), l1p = std::max(std::log1p(-double(p[i])), -100.0);
    return -(double(y[i]) * lp + (1.0 - y[i]) * l1p);
  });
}
template <class T>
void bce_bwd(T* dp, T g_over_n, const T* p, const T* y, Index n, bool acc) {
  parallel_for_simd(n, [=](Index i) {
    T v = g_over_n * (p[i] - y[i]) / std::max((T(1) - p[i]) * p[i], T(1e-12));
    dp[i] = acc ? dp[i] + v : v;
  });
}

// ---------------------------------------------------------------- sliced Wasserstein sort
/// Bits needed for a row index; the value key takes the rest of the 64 bits.
inline int row_bits(Index rows) {
  int b = 1;
  while ((Index(1) << b) < rows) ++b;
  return b;
}
/// Monotone map float -> unsigned (NaN canonicalised above +inf, -0 as +0: PyTorch compares
/// them equal, so they keep row order), shifted above the row index (rb bits). Floats keep all their bits; doubles keep their top 64 - rb bits, so doubles closer
/// than that are ordered by row.
template <class T>
inline std::uint64_t sort_key(T v, std::uint64_t row, int rb) {
  // branch-free, so the loops that build keys vectorise
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  using S = std::make_signed_t<U>;
  constexpr U sign = U(1) << (8 * sizeof(T) - 1);
  U u;
  std::memcpy(&u, &v, sizeof(T));
  u = v == T(0) ? U(0) : u;
  u = v != v ? U(sizeof(T) == 4 ? 0x7fc00000u : 0x7ff8000000000000ull) : u;  // quiet NaN, as numeric_limits
  u ^= U(S(u) >> (8 * sizeof(T) - 1)) | sign;  // negatives: ~u; the rest: u | sign
  if constexpr (sizeof(T) == 4) return (std::uint64_t(u) << 32) | row;
  else return ((u >> rb) << rb) | row;
}

/// Columns of up to this many rows are sorted together by a sorting network (below); taller
/// ones one by one with std::sort.
inline constexpr Index kNetworkSortRows = 256;
inline Index pow2_at_least(Index n) {
  Index p = 1;
  while (p < n) p *= 2;
  return p;
}
/// Key scratch sort_columns needs: a power-of-two number of rows (network) times the columns
/// rounded up to 8, or one key per element.
inline std::size_t sort_scratch_keys(Index rows, Index cols) {
  if (rows <= kNetworkSortRows) return static_cast<std::size_t>(pow2_at_least(rows) * ((cols + 7) / 8 * 8));
  return static_cast<std::size_t>(rows * cols);
}
/// Batcher's odd-even merge sort of n (a power of two) rows of keys, every column at once: each
/// compare-exchange of rows i < j leaves the elementwise min in row i and the max in row j, a
/// loop over columns [c0, c1) of one vector instruction per 8 keys. The network makes the same
/// comparisons whatever the data, so all columns share its control flow (191 exchanges for 32
/// rows, against 32 x 32 comparisons per column for a rank sort).
inline void network_sort_rows(std::uint64_t* keys, Index n, Index ld, Index c0, Index c1) {
  odd_even_merge_exchanges(n, [&](Index i, Index j) {
    std::uint64_t* __restrict a = keys + i * ld;
    std::uint64_t* __restrict b = keys + j * ld;
    for (Index c = c0; c < c1; c += 8)  // c1 - c0 is a multiple of 8: one vector each
      for (Index l = c; l < c + 8; ++l) {
        const std::uint64_t x = a[l], y = b[l];
        a[l] = x < y ? x : y;
        b[l] = x < y ? y : x;
      }
  });
}

/// Sorts every column ascending and records the source row: ties keep row order (a stable
/// sort) and NaN sorts last, as PyTorch. Each float becomes an order-preserving integer key
/// packed above its row index, so one integer sort gives both order and tie-breaking (keys are
/// distinct, so any correct sort gives the same result). `scratch` holds sort_scratch_keys(),
/// so nothing is allocated.
template <class T>
void sort_columns(T* sorted, std::int32_t* perm, const T* x, Index rows, Index cols, std::uint64_t* scratch) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  if constexpr (std::is_same_v<T, float>)
    if (register_sort_columns(sorted, perm, x, rows, cols)) return;  // <= 32 rows, same keys
  const int rb = row_bits(rows);
  const std::uint64_t mask = (std::uint64_t(1) << rb) - 1;
  // the key at sorted position r of column c names its source row in its low bits
  auto write = [&](Index r, Index c, std::uint64_t key) {
    const Index row = static_cast<Index>(key & mask);
    perm[r * cols + c] = static_cast<std::int32_t>(row);
    sorted[r * cols + c] = x[row * cols + c];
  };
  if (rows <= kNetworkSortRows) {
    const Index n = pow2_at_least(rows), ld = (cols + 7) / 8 * 8;
    // real keys are below ~0 (a NaN's key is 0xFFC00000... or 0xFFF8...), so padding sorts last
    for (Index r = 0; r < n; ++r) {
      std::uint64_t* k = scratch + r * ld;
      const T* xr = x + r * cols;
      const Index real = r < rows ? cols : 0;
      for (Index c = 0; c < real; ++c) k[c] = sort_key(xr[c], static_cast<std::uint64_t>(r), rb);
      std::fill(k + real, k + ld, ~std::uint64_t(0));
    }
    const Index blocks = (ld + 63) / 64;  // 64 columns per task when the work is worth threads
    parallel_for(blocks, blocks > 1 && rows * cols > (1 << 14),
                 [&](Index b) { network_sort_rows(scratch, n, ld, b * 64, std::min(ld, b * 64 + 64)); });
    for (Index r = 0; r < rows; ++r)
      for (Index c = 0; c < cols; ++c) write(r, c, scratch[r * ld + c]);
    return;
  }
  SAKURA_PRAGMA(omp parallel for schedule(static))
  for (Index c = 0; c < cols; ++c) {
    std::uint64_t* keys = scratch + c * rows;
    for (Index r = 0; r < rows; ++r) keys[r] = sort_key(x[r * cols + c], static_cast<std::uint64_t>(r), rb);
    std::sort(keys, keys + rows);
    for (Index r = 0; r < rows; ++r) write(r, c, keys[r]);
  }
}
/// sort_columns' values without its permutation (a constant input: nothing flows back), perm
/// then only scratch: for float and <= 32 rows half the work (register_sort_columns, values only).
template <class T>
void sort_column_values(T* sorted, std::int32_t* perm, const T* x, Index rows, Index cols, std::uint64_t* scratch) {
  if constexpr (std::is_same_v<T, float>)
    if (register_sort_columns(sorted, perm, x, rows, cols, true)) return;
  sort_columns(sorted, perm, x, rows, cols, scratch);
}
/// The sort's gradient: dx[perm[r, c], c] (+)= dsorted[r, c]. Each column of perm is a
/// permutation, so without `acc` every element of dx is assigned exactly once (PyTorch's
/// scatter_ into zeros, -0 included) and within a row the targets are distinct columns: a
/// vector scatter (0.8 µs instead of 1.7 for 32 x 50).
template <class T>
void unsort_columns(T* dx, const T* dsorted, const std::int32_t* perm, Index rows, Index cols, bool acc) {
  for (Index r = 0; r < rows; ++r) {
    const std::int32_t* p = perm + r * cols;
    const T* g = dsorted + r * cols;
    if (acc)
      for (Index c = 0; c < cols; ++c) dx[Index(p[c]) * cols + c] += g[c];
    else {
      SAKURA_SIMD
      for (Index c = 0; c < cols; ++c) dx[Index(p[c]) * cols + c] = g[c];
    }
  }
}

// ---------------------------------------------------------------- Gaussian moments (KL)
/// Column means and biased variances (+ eps) of x.
template <class T>
void col_moments(T* mean, T* var, const T* x, Index rows, Index cols, double eps) {
  for (Index c = 0; c < cols; ++c) {
    double m = 0;
    for (Index r = 0; r < rows; ++r) m += x[r * cols + c];
    m /= double(rows);
    double v = 0;
    for (Index r = 0; r < rows; ++r) {
      double d = x[r * cols + c] - m;
      v += d * d;
    }
    mean[c] = static_cast<T>(m);
    var[c] = static_cast<T>(v / double(rows) + eps);
  }
}
/// sum_c 0.5 (log vq - log vp + (vp + (mp - mq)^2) / vq - 1)
template <class T>
double kl_gauss(const T* mp, const T* vp, const T* mq, const T* vq, Index cols) {
  double s = 0;
  for (Index c = 0; c < cols; ++c) {
    double d = double(mp[c]) - mq[c];
    s += 0.5 * (std::log(double(vq[c])) - std::log(double(vp[c])) + (double(vp[c]) + d * d) / vq[c] - 1.0);
  }
  return s;
}
template <class T>
void kl_gauss_bwd(T* dx, T g, const T* x, const T* mp, const T* vp, const T* mq, const T* vq, Index rows, Index cols,
                  bool acc) {
  for (Index r = 0; r < rows; ++r)
    for (Index c = 0; c < cols; ++c) {
      double dm = (double(mp[c]) - mq[c]) / vq[c];
      double dv = 0.5 * (1.0 / vq[c] - 1.0 / vp[c]);
      T v = static_cast<T>(double(g) * (dm + dv * 2.0 * (double(x[r * cols + c]) - mp[c])) / double(rows));
      dx[r * cols + c] = acc ? dx[r * cols + c] + v : v;
    }
}

// ---------------------------------------------------------------- optimizer
/// One RMSProp pass over a parameter, rounded exactly as PyTorch 1.13 rounds it (eps outside the
/// sqrt, not centred; rmsprop_update.hpp gives the operations). Chunked over the threads: a large
/// parameter's update waits on memory, a small one on the divider (sqrt and division).
/// Square averages that decay below the smallest normal number are stored as 0 (both backends):
/// a unit whose gradient stays 0 (a dead ReLU) otherwise decays its v into subnormals, and every
/// operation on a subnormal costs a ~100-cycle microcode assist on x86 (a long run slowed down
/// 40%). The parameters are unchanged: sqrt(v) < 1.1e-19 vanishes next to eps (> 2e-12) in
/// sqrt(v) + eps, exactly as PyTorch rounds it.
/// hyper: {-lr, alpha, 1 - alpha, eps, weight_decay, momentum}, each rounded from double.
template <class T>
void rmsprop_step(T* p, const T* grad, T* square_avg, T* momentum_buf, Index n, const T* hyper) {
  const detail::Hyper<T> h{hyper[0], hyper[1], hyper[2], hyper[3], hyper[4], hyper[5]};
  auto run = [&]<bool WeightDecay, bool Momentum>() {
    chunked(n, [&](Index o, Index m) {
      detail::update_span<T, WeightDecay, Momentum>(p + o, grad + o, square_avg + o,
                                                            Momentum ? momentum_buf + o : nullptr, m, h);
    });
  };
  const bool wd = h.weight_decay != T(0), mom = h.momentum > T(0);
  if (wd && mom) run.template operator()<true, true>();
  else if (wd) run.template operator()<true, false>();
  else if (mom) run.template operator()<false, true>();
  else run.template operator()<false, false>();
}

/// True when every value is finite (batch validation): per block, the largest magnitude's bits
/// are below infinity's (NaN and Inf are not) — an integer max, which waits one cycle per
/// vector where a floating-point sum waits four; blocked_reduce counts the blocks that fail.
template <class T>
bool all_finite(const T* x, Index n) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  constexpr U abs_mask = ~U(0) >> 1, inf_bits = std::bit_cast<U>(std::numeric_limits<T>::infinity());
  return blocked_reduce(n, [=](Index o, Index m) {
           const T* __restrict xx = x + o;  // a local pointer: read from the closure, the loop does not vectorise
           U top = 0;
           SAKURA_PRAGMA(omp simd reduction(max : top))
           for (Index i = 0; i < m; ++i) {
             const U b = std::bit_cast<U>(xx[i]) & abs_mask;
             top = top > b ? top : b;
           }
           return top < inf_bits ? 0.0 : 1.0;
         }) == 0.0;
}

}  // namespace sakura::cpu
