// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// CPU kernels: every loop over tensor memory that the autograd primitives need, on raw
/// row-major buffers. The rules in autograd/rules.hpp call only these and gemm(); a GPU backend
/// provides the same set. Gradient kernels take `acc`: false overwrites the destination
/// (first contribution, no zero-fill pass), true adds to it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>

#include <Eigen/Core>

#include "sakura/backend/cpu/gemm.hpp"
#include "sakura/tensor/tensor.hpp"

#if defined(_OPENMP)
#include <omp.h>
#define SAKURA_PRAGMA(x) _Pragma(#x)
#else
#define SAKURA_PRAGMA(x)
#endif
// Elementwise loops run in parallel only when they are large enough to pay for the fork.
#define SAKURA_PARALLEL_FOR(n) SAKURA_PRAGMA(omp parallel for simd schedule(static) if ((n) > (1 << 15)))

namespace sakura::cpu {

template <class T>
using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using CArrMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

/// Runs f(offset, count) over [0, n) in chunks, in parallel when n is large. The elementwise
/// kernels are Eigen array expressions inside f, so they are vectorised (exp, expm1, sqrt too).
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

/// Sum over [0, n) in double of g(offset, count) (a vectorised partial sum), over blocks whose
/// size depends only on n, summed in order: the result does not depend on the thread count
/// (bit-identical resume across OMP_NUM_THREADS), and nothing is allocated.
template <class G>
double blocked_reduce(Index n, G g) {
  constexpr Index kMaxBlocks = 1024;
  const Index block = std::max<Index>(4096, (n + kMaxBlocks - 1) / kMaxBlocks);
  const Index nb = (n + block - 1) / block;
  if (nb <= 1) return n > 0 ? g(Index(0), n) : 0.0;
  double partial[kMaxBlocks];
  SAKURA_PRAGMA(omp parallel for schedule(static) if (n > (1 << 15)))
  for (Index b = 0; b < nb; ++b) partial[b] = g(b * block, std::min(block, n - b * block));
  double s = 0;
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
  SAKURA_PRAGMA(omp parallel for schedule(static) if (n > (1 << 15)))
  for (Index b = 0; b < nb; ++b) {
    double s = 0;
    const Index hi = std::min(n, (b + 1) * block);
    for (Index i = b * block; i < hi; ++i) s += f(i);
    partial[b] = s;
  }
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
  SAKURA_PARALLEL_FOR(n)
  for (Index i = 0; i < n; ++i) x[i] = v;
}
/// y = (acc ? y : 0) + alpha * x
template <class T>
void axpy(T* y, const T* x, Index n, T alpha, bool acc) {
  if (acc) {
    SAKURA_PARALLEL_FOR(n)
    for (Index i = 0; i < n; ++i) y[i] += alpha * x[i];
  } else {
    SAKURA_PARALLEL_FOR(n)
    for (Index i = 0; i < n; ++i) y[i] = alpha * x[i];
  }
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
  SAKURA_PRAGMA(omp parallel for schedule(static) if (y.size() > (1 << 15)))
  for (Index r = 0; r < y.rows; ++r) {
    T* row = y.data + r * y.ld;
    for (Index c = 0; c < y.cols; ++c) row[c] += b[c];
  }
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

// ---------------------------------------------------------------- activations
template <class T>
void celu_fwd(T* y, const T* x, Index n) {
  chunked(n, [&](Index o, Index m) {
    CArrMap<T> a(x + o, m);
    ArrMap<T>(y + o, m) = (a > T(0)).select(a, a.expm1());
  });
}
template <class T>
void celu_bwd(T* dx, const T* dy, const T* x, Index n, bool acc) {
  write_or_add(dx, n, acc, [&](Index o, Index m) {
    CArrMap<T> a(x + o, m), g(dy + o, m);
    return (a > T(0)).select(g, g * a.exp());
  });
}
template <class T>
void relu_fwd(T* y, const T* x, Index n) {
  chunked(n, [&](Index o, Index m) { ArrMap<T>(y + o, m) = CArrMap<T>(x + o, m).max(T(0)); });
}
/// Uses the output: exact zeros stay exact (they decide RMSProp's first-step sign).
template <class T>
void relu_bwd(T* dx, const T* dy, const T* y, Index n, bool acc) {
  write_or_add(dx, n, acc, [&](Index o, Index m) {
    return (CArrMap<T>(y + o, m) > T(0)).select(CArrMap<T>(dy + o, m), T(0));
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
  SAKURA_PRAGMA(omp parallel for schedule(static) if (rows * cols > (1 << 15)))
  for (Index r = 0; r < rows; ++r) {
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
  }
}
/// softmax: dx = y * (dy - sum(dy * y)); log-softmax: dx = dy - exp(y) * sum(dy).
template <class T>
void softmax_rows_bwd(T* dx, const T* dy, const T* y, Index rows, Index cols, bool log, bool acc) {
  SAKURA_PRAGMA(omp parallel for schedule(static) if (rows * cols > (1 << 15)))
  for (Index r = 0; r < rows; ++r) {
    const T* dyr = dy + r * cols;
    const T* yr = y + r * cols;
    T* dxr = dx + r * cols;
    double s = 0;
    for (Index c = 0; c < cols; ++c) s += log ? double(dyr[c]) : double(dyr[c]) * yr[c];
    for (Index c = 0; c < cols; ++c) {
      T g = log ? dyr[c] - std::exp(yr[c]) * T(s) : yr[c] * (dyr[c] - T(s));
      dxr[c] = acc ? dxr[c] + g : g;
    }
  }
}

// ---------------------------------------------------------------- dropout
/// out = x * mask (mask already holds 0 or 1/(1-p)); also the backward (dx = dy * mask).
template <class T>
void mul(T* out, const T* x, const T* mask, Index n, bool acc) {
  SAKURA_PARALLEL_FOR(n)
  for (Index i = 0; i < n; ++i) out[i] = acc ? out[i] + x[i] * mask[i] : x[i] * mask[i];
}

// ---------------------------------------------------------------- elementwise losses (means)
template <class T>
double sq_diff_sum(const T* a, const T* b, Index n) {
  return blocked_reduce(n, [&](Index o, Index m) {
    return (CArrMap<T>(a + o, m).template cast<double>() - CArrMap<T>(b + o, m).template cast<double>())
        .square()
        .sum();
  });
}
/// da = acc + scale * g * (a - b): MSE's gradient with scale = 2/n (and -2/n for b).
template <class T>
void sq_diff_bwd(T* da, T g_scale, const T* a, const T* b, Index n, bool acc) {
  write_or_add(da, n, acc,
               [&](Index o, Index m) { return g_scale * (CArrMap<T>(a + o, m) - CArrMap<T>(b + o, m)); });
}
template <class T>
double abs_diff_sum(const T* a, const T* b, Index n) {
  return blocked_reduce(n, [&](Index o, Index m) {
    return (CArrMap<T>(a + o, m).template cast<double>() - CArrMap<T>(b + o, m).template cast<double>()).abs().sum();
  });
}
/// L1's gradient: sign(a - b) with sign(0) = 0, exactly as PyTorch.
template <class T>
void abs_diff_bwd(T* da, T g_scale, const T* a, const T* b, Index n, bool acc) {
  write_or_add(da, n, acc,
               [&](Index o, Index m) { return g_scale * (CArrMap<T>(a + o, m) - CArrMap<T>(b + o, m)).sign(); });
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
  SAKURA_PARALLEL_FOR(n)
  for (Index i = 0; i < n; ++i) {
    T v = g_over_n * (p[i] - y[i]) / std::max((T(1) - p[i]) * p[i], T(1e-12));
    dp[i] = acc ? dp[i] + v : v;
  }
}

// ---------------------------------------------------------------- sliced Wasserstein sort
/// Sorts every column ascending and records the source row: ties keep row order (a stable
/// sort) and NaN sorts last, as PyTorch. `scratch` holds rows * cols (value, row) pairs, so
/// nothing is allocated.
template <class T>
struct SortKey {
  T value;
  std::int32_t row;
};
template <class T>
void sort_columns(T* sorted, std::int32_t* perm, const T* x, Index rows, Index cols, SortKey<T>* scratch) {
  SAKURA_PRAGMA(omp parallel for schedule(static) if (rows * cols > (1 << 14)))
  for (Index c = 0; c < cols; ++c) {
    SortKey<T>* keys = scratch + c * rows;
    for (Index r = 0; r < rows; ++r) keys[r] = {x[r * cols + c], static_cast<std::int32_t>(r)};
    std::sort(keys, keys + rows, [](const SortKey<T>& a, const SortKey<T>& b) {
      const bool an = std::isnan(a.value), bn = std::isnan(b.value);
      if (an || bn) return !an && bn ? true : (an && bn ? a.row < b.row : false);
      return a.value < b.value || (a.value == b.value && a.row < b.row);
    });
    for (Index r = 0; r < rows; ++r) {
      sorted[r * cols + c] = keys[r].value;
      perm[r * cols + c] = keys[r].row;
    }
  }
}
/// The sort's gradient: dx[perm[r, c], c] += dsorted[r, c].
template <class T>
void unsort_columns(T* dx, const T* dsorted, const std::int32_t* perm, Index rows, Index cols, bool acc) {
  if (!acc) std::fill(dx, dx + rows * cols, T(0));
  for (Index r = 0; r < rows; ++r)
    for (Index c = 0; c < cols; ++c) dx[Index(perm[r * cols + c]) * cols + c] += dsorted[r * cols + c];
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
/// One fused RMSProp pass in PyTorch's operation order (eps outside the sqrt, not centred):
/// g += wd p; v = alpha v + (1 - alpha) g^2; p -= lr g / (sqrt(v) + eps), or with momentum
/// b = m b + g / (sqrt(v) + eps), p -= lr b. Vectorised and chunked: it is memory-bound.
template <class T>
void rmsprop_step(T* p, const T* grad, T* square_avg, T* momentum_buf, Index n, double lr, double alpha, double eps,
                  double weight_decay, double momentum) {
  const T a = T(alpha), one_minus_a = T(1.0 - alpha), e = T(eps), neg_lr = T(-lr), wd = T(weight_decay),
          mom = T(momentum);
  const bool use_wd = weight_decay != 0.0, use_mom = momentum > 0.0;
  chunked(n, [&](Index o, Index m) {
    ArrMap<T> P(p + o, m), V(square_avg + o, m);
    CArrMap<T> G0(grad + o, m);
    auto update = [&](const auto& G) {
      V = V * a + one_minus_a * G * G;
      if (use_mom) {
        ArrMap<T> B(momentum_buf + o, m);
        B = B * mom + G / (V.sqrt() + e);
        P = P + neg_lr * B;
      } else {
        P = P + neg_lr * (G / (V.sqrt() + e));
      }
    };
    if (use_wd) update(G0 + wd * P);  // lazy: read before P is written, element by element
    else update(G0);
  });
}

/// True when every value is finite (batch validation).
template <class T>
bool all_finite(const T* x, Index n) {
  for (Index i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return false;
  return true;
}

}  // namespace sakura::cpu
