// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// sakura::cuda losses and regularizers: the scalar forward reductions and their backward kernels.
///
/// Reductions are deterministic: a first pass of a block count fixed by the problem size sums in
/// double (for float too) into impl::partials() with fixed-shape tree sums, and one warp adds the
/// partials in a fixed order and writes T(sum / count) to out[0], as the CPU does. No
/// floating-point atomics, so a step gives the same bits every time (and in a graph replay).
/// Backward kernels read the upstream gradient from g[0] in device memory.
#include "common.cuh"

namespace sakura::cuda {
namespace {

using impl::kMaxPartials;
using impl::kThreads;

#define SAKURA_GRID_STRIDE(i, n) \
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += Index(gridDim.x) * blockDim.x)

template <class T>
__device__ inline void put(T* dst, T v, bool acc) {
  *dst = acc ? *dst + v : v;
}

// ------------------------------------------------------------------ generic two-pass reductions
/// First pass over items: partial[block] = sum of f(i) over the block's grid-stride share.
template <class F>
__global__ void sum_items_k(double* partial, Index n, F f) {
  __shared__ double sh[32];
  double s = 0;
  SAKURA_GRID_STRIDE(i, n) s += f(i);
  s = impl::block_sum(s, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
/// First pass over rows, one warp per row: block b owns rows [b chunk, (b + 1) chunk); f(r, lane)
/// returns the row's term in every lane (and may write per-row outputs).
template <class F>
__global__ void sum_rows_k(double* partial, Index rows, Index chunk, F f) {
  __shared__ double sh[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const Index r0 = Index(blockIdx.x) * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
  double s = 0;
  for (Index r = r0 + warp; r < r1; r += nw) s += f(r, lane);
  if (lane == 0) sh[warp] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (int w = 0; w < nw; ++w) t += sh[w];
    partial[blockIdx.x] = t;
  }
}
/// Second pass, one warp: out[0] = T(sum of partials / denom).
template <class T>
__global__ void finish_k(T* out, const double* partial, int nb, double denom) {
  double s = 0;
  for (int i = threadIdx.x; i < nb; i += 32) s += partial[i];
  s = impl::warp_sum(s);
  if (threadIdx.x == 0) out[0] = static_cast<T>(s / denom);
}

/// out[0] = T(sum_{i < n} f(i) / denom). The block count depends on n only.
template <class T, class F>
void reduce_items(T* out, Index n, double denom, F f) {
  const int nb = static_cast<int>(std::clamp<Index>((n + 4095) / 4096, 1, kMaxPartials));
  double* partial = impl::partials();
  SAKURA_LAUNCH(sum_items_k<F>, nb, kThreads, 0, partial, n, f);
  SAKURA_LAUNCH(finish_k<T>, 1, 32, 0, out, partial, nb, denom);
}
/// out[0] = T(sum over rows of f(r, lane) / denom), one warp per row.
template <class T, class F>
void reduce_rows(T* out, Index rows, double denom, F f) {
  const Index per_block = kThreads / 32;
  const Index chunk = std::max<Index>(per_block, (rows + kMaxPartials - 1) / kMaxPartials);
  const int nb = static_cast<int>(std::max<Index>(1, (rows + chunk - 1) / chunk));
  double* partial = impl::partials();
  SAKURA_LAUNCH(sum_rows_k<F>, nb, kThreads, 0, partial, rows, chunk, f);
  SAKURA_LAUNCH(finish_k<T>, 1, 32, 0, out, partial, nb, denom);
}

// ------------------------------------------------------------------ item functors
template <class T>
struct Item {  // x[i] (the mean of the open set)
  const T* x;
  __device__ double operator()(Index i) const { return double(x[i]); }
};
template <class T>
struct SqDiff {  // (a - b)^2 with the difference and square in T, as cpu::sq_diff_sum
  const T *a, *b;
  __device__ double operator()(Index i) const {
    const T d = a[i] - b[i];
    return double(d * d);
  }
};
template <class T>
struct AbsDiff {
  const T *a, *b;
  __device__ double operator()(Index i) const { return double(impl::d_abs(a[i] - b[i])); }
};
template <class T>
struct NllTerm {  // -logp[r, label_r]; an out-of-range label gives NaN instead of a wild read
  const T* logp;
  const std::int64_t* labels;
  Index cols;
  __device__ double operator()(Index r) const {
    const std::int64_t l = labels[r];
    return (l >= 0 && l < cols) ? -double(logp[r * cols + l]) : NAN;
  }
};
template <class T>
struct BceTerm {  // PyTorch's log clamp at -100
  const T *p, *y;
  __device__ double operator()(Index i) const {
    const double lp = impl::smax(::log(double(p[i])), -100.0), l1p = impl::smax(::log1p(-double(p[i])), -100.0);
    return -(double(y[i]) * lp + (1.0 - y[i]) * l1p);
  }
};

// ------------------------------------------------------------------ row functors (one warp per row)
template <class T>
struct RowNorm {  // norms[r] = ||x_r||_ord; the term is T(norm), as the CPU sums rounded norms
  T* norms;
  const T* x;
  Index cols;
  int ord;
  __device__ double operator()(Index r, int lane) const {
    const T* xr = x + r * cols;
    double s = 0;
    if (ord == 1)
      for (Index c = lane; c < cols; c += 32) s += fabs(double(xr[c]));
    else
      for (Index c = lane; c < cols; c += 32) s += double(xr[c]) * xr[c];
    s = impl::warp_sum(s);
    if (ord != 1) s = sqrt(s);
    const T n = static_cast<T>(s);
    if (lane == 0) norms[r] = n;
    return double(n);
  }
};
template <class T>
struct CosineRow {  // saves raw norms and dot; the term is 1 - cos with PyTorch 1.13's 1e-8 guard
  T *na, *nb, *dot;
  const T *a, *b;
  Index cols;
  __device__ double operator()(Index r, int lane) const {
    const T* ar = a + r * cols;
    const T* br = b + r * cols;
    double sa = 0, sb = 0, sab = 0;
    for (Index c = lane; c < cols; c += 32) {
      sa += double(ar[c]) * ar[c];
      sb += double(br[c]) * br[c];
      sab += double(ar[c]) * br[c];
    }
    sa = impl::warp_sum(sa);
    sb = impl::warp_sum(sb);
    sab = impl::warp_sum(sab);
    if (lane == 0) {
      na[r] = static_cast<T>(sqrt(sa));
      nb[r] = static_cast<T>(sqrt(sb));
      dot[r] = static_cast<T>(sab);
    }
    const double ca = impl::smax(sqrt(sa), 1e-8), cb = impl::smax(sqrt(sb), 1e-8);
    return 1.0 - sab / (ca * cb);
  }
};

// ------------------------------------------------------------------ backward kernels
template <class T>
__global__ void mse_bwd_k(T* da, const T* g, const T* a, const T* b, Index n, bool acc) {
  const T scale = T(2) * g[0] / T(n);
  SAKURA_GRID_STRIDE(i, n) put(da + i, scale * (a[i] - b[i]), acc);
}
template <class T>
__global__ void l1_bwd_k(T* da, const T* g, const T* a, const T* b, Index n, bool acc) {
  const T scale = T(1) * g[0] / T(n);
  SAKURA_GRID_STRIDE(i, n) put(da + i, scale * (T(a[i] > b[i]) - T(a[i] < b[i])), acc);
}
template <class T>
__global__ void row_norm_bwd_k(T* dx, const T* g, const T* x, const T* norms, Index rows, Index cols, int ord,
                               bool acc) {
  const T gr = g[0] / T(rows);
  SAKURA_GRID_STRIDE(i, rows * cols) {
    const Index r = i / cols;
    const T k = ord == 1 ? gr : (norms[r] == T(0) ? T(0) : gr / norms[r]);
    put(dx + i, ord == 1 ? k * impl::sign(x[i]) : k * x[i], acc);
  }
}
/// d/da of g mean(1 - cos): c1 b + c2 a per row; the norm term only where |a| > 1e-8.
template <class T>
__global__ void cosine_bwd_k(T* da, const T* g, const T* a, const T* b, const T* na, const T* nb, const T* dot,
                             Index rows, Index cols, bool acc) {
  const double k = -double(g[0]) / double(rows);
  SAKURA_GRID_STRIDE(i, rows * cols) {
    const Index r = i / cols;
    const double ca = impl::smax(double(na[r]), 1e-8), cb = impl::smax(double(nb[r]), 1e-8);
    const double c1 = k / (ca * cb);
    const double c2 = double(na[r]) > 1e-8 ? -k * double(dot[r]) / (ca * ca * ca * cb) : 0.0;
    put(da + i, static_cast<T>(c1 * b[i] + c2 * a[i]), acc);
  }
}
/// dlogp = (acc ? dlogp : 0) - g/rows at each row's label (the CPU's zero fill, then -=).
template <class T>
__global__ void nll_bwd_k(T* d, const T* g, const std::int64_t* labels, Index rows, Index cols, bool acc) {
  const T gr = g[0] / T(rows);
  SAKURA_GRID_STRIDE(i, rows * cols) {
    const Index r = i / cols, c = i - r * cols;
    const T base = acc ? d[i] : T(0);
    d[i] = labels[r] == c ? base - gr : base;
  }
}
template <class T>
__global__ void bce_bwd_k(T* dp, const T* g, const T* p, const T* y, Index n, bool acc) {
  const T gn = g[0] / T(n);
  SAKURA_GRID_STRIDE(i, n) put(dp + i, gn * (p[i] - y[i]) / impl::smax((T(1) - p[i]) * p[i], T(1e-12)), acc);
}

// ------------------------------------------------------------------ KL between fitted diagonal Gaussians
/// Blocks [0, cols) fit x's columns, [cols, 2 cols) the prior's: mean, then biased var + eps,
/// both summed in double.
template <class T>
__global__ void col_moments_k(T* moments, const T* x, Index rows, const T* prior, Index prior_rows, Index cols,
                              double eps) {
  __shared__ double sh[32];
  const bool is_prior = blockIdx.x >= cols;
  const Index c = is_prior ? blockIdx.x - cols : blockIdx.x;
  const T* src = is_prior ? prior : x;
  const Index n = is_prior ? prior_rows : rows;
  T* mean = moments + (is_prior ? 2 * cols : 0);
  T* var = mean + cols;
  double m = 0;
  for (Index r = threadIdx.x; r < n; r += blockDim.x) m += src[r * cols + c];
  m = impl::block_sum(m, sh) / double(n);
  double v = 0;
  for (Index r = threadIdx.x; r < n; r += blockDim.x) {
    const double d = src[r * cols + c] - m;
    v += d * d;
  }
  v = impl::block_sum(v, sh);
  if (threadIdx.x == 0) {
    mean[c] = static_cast<T>(m);
    var[c] = static_cast<T>(v / double(n) + eps);
  }
}
/// One warp: out = sum_c 0.5 (log vq - log vp + (vp + (mp - mq)^2) / vq - 1).
template <class T>
__global__ void kl_sum_k(T* out, const T* m, Index cols) {
  const T *mp = m, *vp = m + cols, *mq = m + 2 * cols, *vq = m + 3 * cols;
  double s = 0;
  for (Index c = threadIdx.x; c < cols; c += 32) {
    const double d = double(mp[c]) - mq[c];
    s += 0.5 * (::log(double(vq[c])) - ::log(double(vp[c])) + (double(vp[c]) + d * d) / vq[c] - 1.0);
  }
  s = impl::warp_sum(s);
  if (threadIdx.x == 0) out[0] = static_cast<T>(s);
}
template <class T>
__global__ void kl_bwd_k(T* dx, const T* g, const T* x, const T* m, Index rows, Index cols, bool acc) {
  const T *mp = m, *vp = m + cols, *mq = m + 2 * cols, *vq = m + 3 * cols;
  const double gd = double(g[0]);
  SAKURA_GRID_STRIDE(i, rows * cols) {
    const Index c = i % cols;
    const double dm = (double(mp[c]) - mq[c]) / vq[c];
    const double dv = 0.5 * (1.0 / vq[c] - 1.0 / vp[c]);
    put(dx + i, static_cast<T>(gd * (dm + dv * 2.0 * (double(x[i]) - mp[c])) / double(rows)), acc);
  }
}

}  // namespace

using impl::grid_for;

template <class T>
void mean_fwd(T* out, const T* x, Index n) {
  reduce_items(out, n, double(n), Item<T>{x});
}
template <class T>
void mse_fwd(T* out, const T* a, const T* b, Index n) {
  reduce_items(out, n, double(n), SqDiff<T>{a, b});
}
template <class T>
void mse_bwd(T* da, const T* g, const T* a, const T* b, Index n, bool acc) {
  if (n > 0) SAKURA_LAUNCH(mse_bwd_k<T>, grid_for(n), kThreads, 0, da, g, a, b, n, acc);
}
template <class T>
void l1_fwd(T* out, const T* a, const T* b, Index n) {
  reduce_items(out, n, double(n), AbsDiff<T>{a, b});
}
template <class T>
void l1_bwd(T* da, const T* g, const T* a, const T* b, Index n, bool acc) {
  if (n > 0) SAKURA_LAUNCH(l1_bwd_k<T>, grid_for(n), kThreads, 0, da, g, a, b, n, acc);
}
template <class T>
void row_norm_fwd(T* out, T* norms, const T* x, Index rows, Index cols, int ord) {
  reduce_rows(out, rows, double(rows), RowNorm<T>{norms, x, cols, ord});
}
template <class T>
void row_norm_bwd(T* dx, const T* g, const T* x, const T* norms, Index rows, Index cols, int ord, bool acc) {
  if (rows * cols > 0)
    SAKURA_LAUNCH(row_norm_bwd_k<T>, grid_for(rows * cols), kThreads, 0, dx, g, x, norms, rows, cols, ord, acc);
}
template <class T>
void cosine_fwd(T* out, T* na, T* nb, T* dot, const T* a, const T* b, Index rows, Index cols) {
  reduce_rows(out, rows, double(rows), CosineRow<T>{na, nb, dot, a, b, cols});
}
template <class T>
void cosine_bwd(T* da, const T* g, const T* a, const T* b, const T* na, const T* nb, const T* dot, Index rows,
                Index cols, bool acc) {
  if (rows * cols > 0)
    SAKURA_LAUNCH(cosine_bwd_k<T>, grid_for(rows * cols), kThreads, 0, da, g, a, b, na, nb, dot, rows, cols, acc);
}
template <class T>
void nll_fwd(T* out, const T* logp, const std::int64_t* labels, Index rows, Index cols) {
  reduce_items(out, rows, double(rows), NllTerm<T>{logp, labels, cols});
}
template <class T>
void nll_bwd(T* dlogp, const T* g, const std::int64_t* labels, Index rows, Index cols, bool acc) {
  if (rows * cols > 0)
    SAKURA_LAUNCH(nll_bwd_k<T>, grid_for(rows * cols), kThreads, 0, dlogp, g, labels, rows, cols, acc);
}
template <class T>
void bce_fwd(T* out, const T* p, const T* y, Index n) {
  reduce_items(out, n, double(n), BceTerm<T>{p, y});
}
template <class T>
void bce_bwd(T* dp, const T* g, const T* p, const T* y, Index n, bool acc) {
  if (n > 0) SAKURA_LAUNCH(bce_bwd_k<T>, grid_for(n), kThreads, 0, dp, g, p, y, n, acc);
}
template <class T>
void kl_fwd(T* out, T* moments, const T* x, Index rows, const T* prior, Index prior_rows, Index cols, double eps) {
  if (cols > 0) {
    if (2 * cols > 0x7fffffff) detail::fail("kl_fwd: ", cols, " columns are too many for one block each");
    SAKURA_LAUNCH(col_moments_k<T>, static_cast<unsigned>(2 * cols), kThreads, 0, moments, x, rows, prior, prior_rows,
                  cols, eps);
  }
  SAKURA_LAUNCH(kl_sum_k<T>, 1, 32, 0, out, moments, cols);
}
template <class T>
void kl_bwd(T* dx, const T* g, const T* x, const T* moments, Index rows, Index cols, bool acc) {
  if (rows * cols > 0)
    SAKURA_LAUNCH(kl_bwd_k<T>, grid_for(rows * cols), kThreads, 0, dx, g, x, moments, rows, cols, acc);
}

#define SAKURA_INST(T)                                                                                 \
  template void mean_fwd<T>(T*, const T*, Index);                                                      \
  template void mse_fwd<T>(T*, const T*, const T*, Index);                                             \
  template void mse_bwd<T>(T*, const T*, const T*, const T*, Index, bool);                             \
  template void l1_fwd<T>(T*, const T*, const T*, Index);                                              \
  template void l1_bwd<T>(T*, const T*, const T*, const T*, Index, bool);                              \
  template void row_norm_fwd<T>(T*, T*, const T*, Index, Index, int);                                  \
  template void row_norm_bwd<T>(T*, const T*, const T*, const T*, Index, Index, int, bool);            \
  template void cosine_fwd<T>(T*, T*, T*, T*, const T*, const T*, Index, Index);                       \
  template void cosine_bwd<T>(T*, const T*, const T*, const T*, const T*, const T*, const T*, Index,   \
                              Index, bool);                                                            \
  template void nll_fwd<T>(T*, const T*, const std::int64_t*, Index, Index);                           \
  template void nll_bwd<T>(T*, const T*, const std::int64_t*, Index, Index, bool);                     \
  template void bce_fwd<T>(T*, const T*, const T*, Index);                                             \
  template void bce_bwd<T>(T*, const T*, const T*, const T*, Index, bool);                             \
  template void kl_fwd<T>(T*, T*, const T*, Index, const T*, Index, Index, double);                    \
  template void kl_bwd<T>(T*, const T*, const T*, const T*, Index, Index, bool);
SAKURA_INST(float)
SAKURA_INST(double)
#undef SAKURA_INST

}  // namespace sakura::cuda
