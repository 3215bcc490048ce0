// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// sakura::cuda kernels without a reduction to a scalar: the open elementwise set, activations,
/// blocks and bias, row and column sums, row softmax, the 1x1 scalar ops, the RMSProp step and the
/// column sort.
/// Each mirrors its twin in backend/cpu/kernels.hpp operation for operation.
#include "common.cuh"

namespace sakura::cuda {
namespace {

using impl::kThreads;
namespace pw = sakura::pointwise;  // the functions of the open elementwise set

/// dst = acc ? dst + v : v, written once.
template <class T>
__device__ inline void put(T* dst, T v, bool acc) {
  *dst = acc ? *dst + v : v;
}

#define SAKURA_GRID_STRIDE(i, n) \
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += Index(gridDim.x) * blockDim.x)

// ------------------------------------------------------------------ copies, blocks, bias
template <class T>
__global__ void fill_k(T* x, Index n, T v) {
  SAKURA_GRID_STRIDE(i, n) x[i] = v;
}
template <class T>
__global__ void axpy_k(T* y, const T* x, Index n, T alpha, bool acc) {
  SAKURA_GRID_STRIDE(i, n) put(y + i, alpha * x[i], acc);
}
template <class T>
__global__ void add_block_k(T* dst, Index dld, const T* src, Index sld, Index rows, Index cols, bool acc) {
  SAKURA_GRID_STRIDE(i, rows * cols) {
    const Index r = i / cols, c = i - r * cols;
    put(dst + r * dld + c, src[r * sld + c], acc);
  }
}
template <class T>
__global__ void add_bias_k(T* y, Index ld, Index rows, Index cols, const T* b) {
  SAKURA_GRID_STRIDE(i, rows * cols) {
    const Index r = i / cols, c = i - r * cols;
    y[r * ld + c] += b[c];
  }
}
/// One thread per column, rows added in order in T: the CPU's exact sum.
template <class T>
__global__ void col_sum_k(T* db, const T* dy, Index ld, Index rows, Index cols, bool acc) {
  SAKURA_GRID_STRIDE(c, cols) {
    T s = acc ? db[c] : T(0);
#pragma unroll 8
    for (Index r = 0; r < rows; ++r) s += dy[r * ld + c];
    db[c] = s;
  }
}

// ------------------------------------------------------------------ activations, dropout
template <class T>
__global__ void celu_fwd_k(T* y, const T* x, Index n) {
  SAKURA_GRID_STRIDE(i, n) {
    const T v = x[i];
    y[i] = impl::smax(v, T(0)) + impl::d_expm1(impl::smin(v, T(0)));
  }
}
template <class T>
__global__ void celu_bwd_k(T* dx, const T* dy, const T* x, Index n, bool acc) {
  SAKURA_GRID_STRIDE(i, n) put(dx + i, dy[i] * impl::d_exp(impl::smin(x[i], T(0))), acc);
}
template <class T>
__global__ void relu_fwd_k(T* y, const T* x, Index n) {
  SAKURA_GRID_STRIDE(i, n) y[i] = x[i] > T(0) ? x[i] : T(0);
}
template <class T>
__global__ void relu_bwd_k(T* dx, const T* dy, const T* y, Index n, bool acc) {
  SAKURA_GRID_STRIDE(i, n) put(dx + i, y[i] > T(0) ? dy[i] : T(0), acc);
}
template <class T>
__global__ void sigmoid_fwd_k(T* y, const T* x, Index n) {
  SAKURA_GRID_STRIDE(i, n) y[i] = T(1) / (T(1) + impl::d_exp(-x[i]));
}
template <class T>
__global__ void sigmoid_bwd_k(T* dx, const T* dy, const T* y, Index n, bool acc) {
  SAKURA_GRID_STRIDE(i, n) put(dx + i, dy[i] * (T(1) - y[i]) * y[i], acc);
}

// ------------------------------------------------------------------ the open elementwise set
// The functions and derivatives are backend/pointwise.hpp's, shared with the CPU.
template <Pointwise F, class T>
__global__ void pointwise_k(T* y, const T* x, Index n, T c0, T c1) {
  SAKURA_GRID_STRIDE(i, n) y[i] = pw::value<F>(x[i], c0, c1);
}
template <Pointwise F, class T>
__global__ void pointwise_bwd_k(T* dx, const T* dy, const T* x, const T* y, Index n, T c0, bool acc) {
  SAKURA_GRID_STRIDE(i, n) put(dx + i, pw::grad<F>(dy[i], x[i], y[i], c0), acc);
}
template <Binary F, class T>
__global__ void binary_k(T* y, const T* a, const T* b, Index n) {
  SAKURA_GRID_STRIDE(i, n) y[i] = pw::value<F>(a[i], b[i]);
}
template <Binary F, class T>
__global__ void binary_bwd_k(bool wrt_b, T* d, const T* dy, const T* a, const T* b, Index n, bool acc) {
  SAKURA_GRID_STRIDE(i, n) put(d + i, pw::grad<F>(wrt_b, dy[i], a[i], b[i]), acc);
}
template <class T>
__global__ void where_k(T* y, const T* mask, const T* a, const T* b, Index n) {
  SAKURA_GRID_STRIDE(i, n) y[i] = mask[i] != T(0) ? a[i] : b[i];
}
template <class T>
__global__ void where_bwd_k(T* d, const T* dy, const T* mask, bool selected, Index n, bool acc) {
  SAKURA_GRID_STRIDE(i, n) put(d + i, (mask[i] != T(0)) == selected ? dy[i] : T(0), acc);
}
template <class T>
__global__ void mean_bwd_k(T* dx, const T* g, Index n, bool acc) {
  const T v = g[0] / T(n);
  SAKURA_GRID_STRIDE(i, n) put(dx + i, v, acc);
}
/// One warp per row, summed in double and rounded once (as cpu::row_sums).
template <class T>
__global__ void row_sum_k(T* y, const T* x, Index rows, Index cols) {
  const int lane = threadIdx.x & 31;
  const Index warps = Index(gridDim.x) * (blockDim.x >> 5);
  for (Index r = Index(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    double s = 0;
    for (Index c = lane; c < cols; c += 32) s += x[r * cols + c];
    s = impl::warp_sum(s);
    if (lane == 0) y[r] = static_cast<T>(s);
  }
}
template <class T>
__global__ void row_sum_bwd_k(T* dx, const T* dy, Index rows, Index cols, bool acc) {
  SAKURA_GRID_STRIDE(i, rows * cols) put(dx + i, dy[i / cols], acc);
}

// ------------------------------------------------------------------ row softmax: one warp per row
template <class T>
__global__ void softmax_fwd_k(T* y, const T* x, Index rows, Index cols, bool log) {
  const int lane = threadIdx.x & 31;
  const Index warps = Index(gridDim.x) * (blockDim.x >> 5);
  for (Index r = Index(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T m = -INFINITY;
    for (Index c = lane; c < cols; c += 32) m = impl::smax(m, xr[c]);
    for (int o = 16; o > 0; o >>= 1) m = impl::smax(m, __shfl_xor_sync(0xffffffffu, m, o));
    double s = 0;
    for (Index c = lane; c < cols; c += 32) s += exp(double(xr[c] - m));
    s = impl::warp_sum(s);
    if (log) {
      const T ls = static_cast<T>(::log(s));
      for (Index c = lane; c < cols; c += 32) yr[c] = xr[c] - m - ls;
    } else {
      for (Index c = lane; c < cols; c += 32) yr[c] = static_cast<T>(exp(double(xr[c] - m)) / s);
    }
  }
}
/// softmax: dx = y (dy - sum(dy y)); log-softmax: dx = dy - exp(y) sum(dy).
template <class T>
__global__ void softmax_bwd_k(T* dx, const T* dy, const T* y, Index rows, Index cols, bool log, bool acc) {
  const int lane = threadIdx.x & 31;
  const Index warps = Index(gridDim.x) * (blockDim.x >> 5);
  for (Index r = Index(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    const T* dyr = dy + r * cols;
    const T* yr = y + r * cols;
    T* dxr = dx + r * cols;
    double s = 0;
    for (Index c = lane; c < cols; c += 32) s += log ? double(dyr[c]) : double(dyr[c]) * yr[c];
    const T st = static_cast<T>(impl::warp_sum(s));
    for (Index c = lane; c < cols; c += 32)
      put(dxr + c, log ? dyr[c] - impl::d_exp(yr[c]) * st : yr[c] * (dyr[c] - st), acc);
  }
}

// ------------------------------------------------------------------ 1x1 scalars (read at run time)
template <class T>
__global__ void scale_fwd_k(T* out, const T* s, const T* w) {
  out[0] = s[0] * w[0];
}
template <class T>
__global__ void scale_bwd_k(T* ds, const T* g, const T* w, bool acc) {
  put(ds, g[0] * w[0], acc);
}

// ------------------------------------------------------------------ RMSProp
/// PyTorch 1.13's rounding, operation by operation (cpu/rmsprop_update.hpp): g = fma(p, wd, grad);
/// v = fma((1 - alpha) g, g, alpha v); d = sqrt(v) + eps; p += (-lr g) / d, or b = m b + g / d,
/// p = fma(b, -lr, p). This file compiles with --fmad=false, so only the explicit fma are fused.
template <class T>
__global__ void rmsprop_k(T* p, const T* grad, T* sq, T* buf, Index n, const T* hyper) {
  const T neg_lr = hyper[0], a = hyper[1], one_minus_a = hyper[2], e = hyper[3], wd = hyper[4], mom = hyper[5];
  const bool use_wd = wd != T(0), use_mom = mom > T(0);
  SAKURA_GRID_STRIDE(i, n) {
    const T pv = p[i];
    const T g = use_wd ? impl::d_fma(pv, wd, grad[i]) : grad[i];
    T v = impl::d_fma(one_minus_a * g, g, a * sq[i]);
    if (v < impl::smallest_normal<T>()) v = T(0);  // as cpu::rmsprop_step: no subnormal state (NaN kept)
    sq[i] = v;
    const T d = impl::d_sqrt(v) + e;
    if (use_mom) {
      const T b = buf[i] * mom + g / d;
      buf[i] = b;
      p[i] = impl::d_fma(b, neg_lr, pv);
    } else {
      p[i] = pv + (neg_lr * g) / d;
    }
  }
}

// ------------------------------------------------------------------ column sort (sliced Wasserstein)
// Every value becomes cpu::sort_key's 64-bit key: the order-preserving unsigned image of the
// value (NaN canonicalised above +inf, -0 as +0) above the row index. Keys are distinct, so any correct
// sort yields the CPU's stable order; we use a bitonic network over the keys padded to a power
// of two with ~0 (larger than every key). Up to kSharedRows rows a column is sorted by one block
// in shared memory; above, in a global scratch buffer, one launch per network stage.
constexpr Index kSharedRows = 4096;  // 32 KiB of keys: within the default shared-memory limit
constexpr int kSortThreads = 512;

__host__ __device__ inline int row_bits(Index rows) {
  int b = 1;
  while ((Index(1) << b) < rows) ++b;
  return b;
}
inline Index pow2_at_least(Index n) {
  Index p = 1;
  while (p < n) p <<= 1;
  return p;
}

__device__ inline std::uint64_t sort_key(float v, std::uint64_t row, int) {
  std::uint32_t u = v == v ? (v == 0 ? 0u : __float_as_uint(v)) : 0x7fc00000u;  // quiet NaN, as std::numeric_limits
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (std::uint64_t(u) << 32) | row;
}
__device__ inline std::uint64_t sort_key(double v, std::uint64_t row, int rb) {
  std::uint64_t u = v == v ? (v == 0 ? 0ull : static_cast<std::uint64_t>(__double_as_longlong(v))) : 0x7ff8000000000000ull;
  u = (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
  return ((u >> rb) << rb) | row;
}

template <class T>
__device__ inline std::uint64_t key_at(const T* x, Index r, Index c, Index rows, Index cols, int rb) {
  return r < rows ? sort_key(x[r * cols + c], static_cast<std::uint64_t>(r), rb) : ~std::uint64_t(0);
}

/// One block per column: load keys, bitonic sort in shared memory, write values and rows.
template <class T>
__global__ void sort_shared_k(T* sorted, std::int32_t* perm, const T* x, Index rows, Index cols, Index P) {
  extern __shared__ std::uint64_t keys[];
  const int rb = row_bits(rows);
  const std::uint64_t mask = (std::uint64_t(1) << rb) - 1;
  for (Index c = blockIdx.x; c < cols; c += gridDim.x) {
    for (Index r = threadIdx.x; r < P; r += blockDim.x) keys[r] = key_at(x, r, c, rows, cols, rb);
    __syncthreads();
    for (Index k = 2; k <= P; k <<= 1)
      for (Index j = k >> 1; j > 0; j >>= 1) {
        for (Index i = threadIdx.x; i < P; i += blockDim.x) {
          const Index l = i ^ j;
          if (l > i) {
            const std::uint64_t ki = keys[i], kl = keys[l];
            if (((i & k) == 0) == (ki > kl)) {  // ascending half: swap if out of order; descending: the opposite
              keys[i] = kl;
              keys[l] = ki;
            }
          }
        }
        __syncthreads();
      }
    for (Index r = threadIdx.x; r < rows; r += blockDim.x) {
      const Index row = static_cast<Index>(keys[r] & mask);
      perm[r * cols + c] = static_cast<std::int32_t>(row);
      sorted[r * cols + c] = x[row * cols + c];
    }
    __syncthreads();  // keys are reused by the next column
  }
}

template <class T>
__global__ void sort_keys_init_k(std::uint64_t* keys, const T* x, Index rows, Index cols, Index P) {
  const int rb = row_bits(rows);
  SAKURA_GRID_STRIDE(i, cols * P) {
    const Index c = i / P, r = i - c * P;
    keys[i] = key_at(x, r, c, rows, cols, rb);
  }
}
/// One compare-exchange stage (k, j) of the bitonic network over every column (P keys each).
__global__ void sort_keys_stage_k(std::uint64_t* keys, Index cols, Index P, Index k, Index j) {
  SAKURA_GRID_STRIDE(t, cols * P) {
    const Index c = t / P, i = t - c * P, l = i ^ j;
    if (l > i) {
      std::uint64_t* col = keys + c * P;
      const std::uint64_t ki = col[i], kl = col[l];
      if (((i & k) == 0) == (ki > kl)) {
        col[i] = kl;
        col[l] = ki;
      }
    }
  }
}
template <class T>
__global__ void sort_keys_write_k(T* sorted, std::int32_t* perm, const T* x, const std::uint64_t* keys, Index rows,
                                  Index cols, Index P) {
  const std::uint64_t mask = (std::uint64_t(1) << row_bits(rows)) - 1;
  SAKURA_GRID_STRIDE(i, rows * cols) {
    const Index r = i / cols, c = i - r * cols;
    const Index row = static_cast<Index>(keys[c * P + r] & mask);
    perm[i] = static_cast<std::int32_t>(row);
    sorted[i] = x[row * cols + c];
  }
}
/// dx[perm[r, c], c] (+)= dsorted[r, c]: perm is a permutation of each column, so every element
/// of dx is written exactly once (0 + v when overwriting, as the CPU's zero fill then add).
template <class T>
__global__ void unsort_k(T* dx, const T* ds, const std::int32_t* perm, Index rows, Index cols, bool acc) {
  SAKURA_GRID_STRIDE(i, rows * cols) {
    const Index c = i % cols;
    T* d = dx + Index(perm[i]) * cols + c;
    *d = (acc ? *d : T(0)) + ds[i];
  }
}

}  // namespace

using impl::grid_for;

template <class T>
void fill(T* x, Index n, T v) {
  if (n > 0) SAKURA_LAUNCH(fill_k<T>, grid_for(n), kThreads, 0, x, n, v);
}
template <class T>
void axpy(T* y, const T* x, Index n, T alpha, bool acc) {
  if (n > 0) SAKURA_LAUNCH(axpy_k<T>, grid_for(n), kThreads, 0, y, x, n, alpha, acc);
}
template <class T>
void add_block(MatrixRef<T> dst, MatrixRef<const T> src, bool acc) {
  if (src.empty()) return;
  SAKURA_LAUNCH(add_block_k<T>, grid_for(src.size()), kThreads, 0, dst.data, dst.ld, src.data, src.ld, src.rows,
                src.cols, acc);
}
template <class T>
void add_bias(MatrixRef<T> y, const T* b) {
  if (!y.empty()) SAKURA_LAUNCH(add_bias_k<T>, grid_for(y.size()), kThreads, 0, y.data, y.ld, y.rows, y.cols, b);
}
template <class T>
void col_sum(T* db, MatrixRef<const T> dy, bool acc) {
  if (dy.cols > 0)
    SAKURA_LAUNCH(col_sum_k<T>, grid_for(dy.cols, 128), 128, 0, db, dy.data, dy.ld, dy.rows, dy.cols, acc);
}
template <class T>
void celu_fwd(T* y, const T* x, Index n) {
  if (n > 0) SAKURA_LAUNCH(celu_fwd_k<T>, grid_for(n), kThreads, 0, y, x, n);
}
template <class T>
void celu_bwd(T* dx, const T* dy, const T* x, Index n, bool acc) {
  if (n > 0) SAKURA_LAUNCH(celu_bwd_k<T>, grid_for(n), kThreads, 0, dx, dy, x, n, acc);
}
template <class T>
void relu_fwd(T* y, const T* x, Index n) {
  if (n > 0) SAKURA_LAUNCH(relu_fwd_k<T>, grid_for(n), kThreads, 0, y, x, n);
}
template <class T>
void relu_bwd(T* dx, const T* dy, const T* y, Index n, bool acc) {
  if (n > 0) SAKURA_LAUNCH(relu_bwd_k<T>, grid_for(n), kThreads, 0, dx, dy, y, n, acc);
}
template <class T>
void sigmoid_fwd(T* y, const T* x, Index n) {
  if (n > 0) SAKURA_LAUNCH(sigmoid_fwd_k<T>, grid_for(n), kThreads, 0, y, x, n);
}
template <class T>
void sigmoid_bwd(T* dx, const T* dy, const T* y, Index n, bool acc) {
  if (n > 0) SAKURA_LAUNCH(sigmoid_bwd_k<T>, grid_for(n), kThreads, 0, dx, dy, y, n, acc);
}
template <class T>
void softmax_rows_fwd(T* y, const T* x, Index rows, Index cols, bool log) {
  if (rows > 0 && cols > 0)
    SAKURA_LAUNCH(softmax_fwd_k<T>, grid_for(rows, kThreads / 32), kThreads, 0, y, x, rows, cols, log);
}
template <class T>
void softmax_rows_bwd(T* dx, const T* dy, const T* y, Index rows, Index cols, bool log, bool acc) {
  if (rows > 0 && cols > 0)
    SAKURA_LAUNCH(softmax_bwd_k<T>, grid_for(rows, kThreads / 32), kThreads, 0, dx, dy, y, rows, cols, log, acc);
}
template <class T>
void pointwise(Pointwise f, T* y, const T* x, Index n, T c0, T c1) {
  if (n > 0)
    pw::dispatch(f, [&]<Pointwise F>() {
      auto* kernel = &pointwise_k<F, T>;
      SAKURA_LAUNCH(kernel, grid_for(n), kThreads, 0, y, x, n, c0, c1);
    });
}
template <class T>
void pointwise_bwd(Pointwise f, T* dx, const T* dy, const T* x, const T* y, Index n, T c0, bool acc) {
  if (n > 0)
    pw::dispatch(f, [&]<Pointwise F>() {
      auto* kernel = &pointwise_bwd_k<F, T>;
      SAKURA_LAUNCH(kernel, grid_for(n), kThreads, 0, dx, dy, x, y, n, c0, acc);
    });
}
template <class T>
void binary(Binary f, T* y, const T* a, const T* b, Index n) {
  if (n > 0)
    pw::dispatch(f, [&]<Binary F>() {
      auto* kernel = &binary_k<F, T>;
      SAKURA_LAUNCH(kernel, grid_for(n), kThreads, 0, y, a, b, n);
    });
}
template <class T>
void binary_bwd(Binary f, bool wrt_b, T* d, const T* dy, const T* a, const T* b, Index n, bool acc) {
  if (n > 0)
    pw::dispatch(f, [&]<Binary F>() {
      auto* kernel = &binary_bwd_k<F, T>;
      SAKURA_LAUNCH(kernel, grid_for(n), kThreads, 0, wrt_b, d, dy, a, b, n, acc);
    });
}
template <class T>
void where(T* y, const T* mask, const T* a, const T* b, Index n) {
  if (n > 0) SAKURA_LAUNCH(where_k<T>, grid_for(n), kThreads, 0, y, mask, a, b, n);
}
template <class T>
void where_bwd(T* d, const T* dy, const T* mask, bool selected, Index n, bool acc) {
  if (n > 0) SAKURA_LAUNCH(where_bwd_k<T>, grid_for(n), kThreads, 0, d, dy, mask, selected, n, acc);
}
template <class T>
void mean_bwd(T* dx, const T* g, Index n, bool acc) {
  if (n > 0) SAKURA_LAUNCH(mean_bwd_k<T>, grid_for(n), kThreads, 0, dx, g, n, acc);
}
template <class T>
void row_sum_fwd(T* y, const T* x, Index rows, Index cols) {
  if (rows > 0) SAKURA_LAUNCH(row_sum_k<T>, grid_for(rows, kThreads / 32), kThreads, 0, y, x, rows, cols);
}
template <class T>
void row_sum_bwd(T* dx, const T* dy, Index rows, Index cols, bool acc) {
  if (rows * cols > 0) SAKURA_LAUNCH(row_sum_bwd_k<T>, grid_for(rows * cols), kThreads, 0, dx, dy, rows, cols, acc);
}
template <class T>
void scale_fwd(T* out, const T* s, const T* w) {
  SAKURA_LAUNCH(scale_fwd_k<T>, 1, 1, 0, out, s, w);
}
template <class T>
void scale_bwd(T* ds, const T* g, const T* w, bool acc) {
  SAKURA_LAUNCH(scale_bwd_k<T>, 1, 1, 0, ds, g, w, acc);
}
template <class T>
void rmsprop_step(T* p, const T* grad, T* v, T* buf, Index n, const T* hyper) {
  if (n > 0) SAKURA_LAUNCH(rmsprop_k<T>, grid_for(n), kThreads, 0, p, grad, v, buf, n, hyper);
}

std::size_t sort_scratch_bytes(Index rows, Index cols) {
  if (rows <= kSharedRows) return 0;
  return static_cast<std::size_t>(cols * pow2_at_least(rows)) * sizeof(std::uint64_t);
}
template <class T>
void sort_columns(T* sorted, std::int32_t* perm, const T* x, Index rows, Index cols, void* scratch) {
  if (rows <= 0 || cols <= 0) return;
  if (rows > (Index(1) << 31) - 1) detail::fail("sort_columns: ", rows, " rows exceed the int32 permutation");
  const Index P = pow2_at_least(rows);
  if (rows <= kSharedRows) {
    const unsigned blocks = static_cast<unsigned>(std::min<Index>(cols, 65535));
    SAKURA_LAUNCH(sort_shared_k<T>, blocks, kSortThreads, static_cast<std::size_t>(P) * sizeof(std::uint64_t),
                  sorted, perm, x, rows, cols, P);
    return;
  }
  auto* keys = static_cast<std::uint64_t*>(scratch);
  SAKURA_LAUNCH(sort_keys_init_k<T>, grid_for(cols * P), kThreads, 0, keys, x, rows, cols, P);
  for (Index k = 2; k <= P; k <<= 1)
    for (Index j = k >> 1; j > 0; j >>= 1)
      SAKURA_LAUNCH(sort_keys_stage_k, grid_for(cols * P), kThreads, 0, keys, cols, P, k, j);
  SAKURA_LAUNCH(sort_keys_write_k<T>, grid_for(rows * cols), kThreads, 0, sorted, perm, x, keys, rows, cols, P);
}
template <class T>
void unsort_columns(T* dx, const T* dsorted, const std::int32_t* perm, Index rows, Index cols, bool acc) {
  if (rows > 0 && cols > 0)
    SAKURA_LAUNCH(unsort_k<T>, grid_for(rows * cols), kThreads, 0, dx, dsorted, perm, rows, cols, acc);
}

#define SAKURA_INST(T)                                                                                       \
  template void fill<T>(T*, Index, T);                                                                       \
  template void axpy<T>(T*, const T*, Index, T, bool);                                                       \
  template void add_block<T>(MatrixRef<T>, MatrixRef<const T>, bool);                                        \
  template void add_bias<T>(MatrixRef<T>, const T*);                                                         \
  template void col_sum<T>(T*, MatrixRef<const T>, bool);                                                    \
  template void celu_fwd<T>(T*, const T*, Index);                                                            \
  template void celu_bwd<T>(T*, const T*, const T*, Index, bool);                                            \
  template void relu_fwd<T>(T*, const T*, Index);                                                            \
  template void relu_bwd<T>(T*, const T*, const T*, Index, bool);                                            \
  template void sigmoid_fwd<T>(T*, const T*, Index);                                                         \
  template void sigmoid_bwd<T>(T*, const T*, const T*, Index, bool);                                         \
  template void softmax_rows_fwd<T>(T*, const T*, Index, Index, bool);                                       \
  template void softmax_rows_bwd<T>(T*, const T*, const T*, Index, Index, bool, bool);                       \
  template void pointwise<T>(Pointwise, T*, const T*, Index, T, T);                                          \
  template void pointwise_bwd<T>(Pointwise, T*, const T*, const T*, const T*, Index, T, bool);               \
  template void binary<T>(Binary, T*, const T*, const T*, Index);                                            \
  template void binary_bwd<T>(Binary, bool, T*, const T*, const T*, const T*, Index, bool);                  \
  template void where<T>(T*, const T*, const T*, const T*, Index);                                           \
  template void where_bwd<T>(T*, const T*, const T*, bool, Index, bool);                                     \
  template void mean_bwd<T>(T*, const T*, Index, bool);                                                      \
  template void row_sum_fwd<T>(T*, const T*, Index, Index);                                                  \
  template void row_sum_bwd<T>(T*, const T*, Index, Index, bool);                                            \
  template void scale_fwd<T>(T*, const T*, const T*);                                                        \
  template void scale_bwd<T>(T*, const T*, const T*, bool);                                                  \
  template void rmsprop_step<T>(T*, const T*, T*, T*, Index, const T*);                                      \
  template void sort_columns<T>(T*, std::int32_t*, const T*, Index, Index, void*);                           \
  template void unsort_columns<T>(T*, const T*, const std::int32_t*, Index, Index, bool);
SAKURA_INST(float)
SAKURA_INST(double)
#undef SAKURA_INST

}  // namespace sakura::cuda
