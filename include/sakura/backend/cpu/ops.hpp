// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Ops<T, Cpu>: the device interface (backend/device.hpp) on host memory, over the CPU kernels.
#pragma once

#include <cstdlib>
#include <cstring>
#include <new>

#include "sakura/backend/cpu/kernels.hpp"
#include "sakura/backend/device.hpp"
#include "sakura/tensor/arena.hpp"
#include "sakura/tensor/draw.hpp"

namespace sakura {

template <class T>
struct Ops<T, Cpu> {
  using HostAlloc = sakura::HostAlloc;
  using Alloc = sakura::HostAlloc;
  static constexpr bool host_memory = true;
  static void upload(void* dst, const void* src, std::size_t bytes) { std::memcpy(dst, src, bytes); }
  static void download(void* dst, const void* src, std::size_t bytes) { std::memcpy(dst, src, bytes); }
  static void synchronize() {}  // host work is done when a call returns

  // ---- sparse input (CPU only: a GPU trains on the densified batch)
  /// The sparse first layer's input as backward reads it (a column-major copy in the step's arena).
  using SparseInput = cpu::Csc<T>;
  /// y = x W^T + b (transposed: x W + b) for a CSR input x; returns x as kept for the weight gradient.
  template <class Arena>
  static const SparseInput* sparse_linear(Arena& arena, T* y, CsrRef<T> x, const T* w, const T* bias, Index out,
                                          bool transposed) {
    auto* csc = arena.template alloc<SparseInput>(1);
    *csc = SparseInput{x.rows, x.cols, arena.template alloc<std::int64_t>(x.cols + 1),
                       arena.template alloc<std::int32_t>(x.nnz()), arena.template alloc<T>(x.nnz())};
    cpu::csr_to_csc(*csc, x);
    for (Index r = 0; r < x.rows; ++r)
      for (Index o = 0; o < out; ++o) y[r * out + o] = bias ? bias[o] : T(0);
    if (transposed) cpu::csr_linear_fwd_inmajor(y, x, w, out);
    else cpu::csr_linear_fwd_outmajor(y, x, w, out);
    return csc;
  }
  static void sparse_linear_weight_grad(T* dw, const SparseInput& x, const T* dy, Index out, bool transposed,
                                        bool acc) {
    cpu::csc_weight_grad(dw, x, dy, out, transposed, acc);
  }
  // ---- host batches (a batch arrives in host memory whatever device trains on it)
  static bool all_finite(const T* x, Index n) { return cpu::all_finite(x, n); }
  static void csr_densify(T* out, CsrRef<T> x) { cpu::csr_densify(out, x); }

  // ---- dense algebra and blocks
  static void gemm(bool ta, bool tb, Index m, Index n, Index k, T alpha, const T* a, Index lda, const T* b, Index ldb,
                   T beta, T* c, Index ldc) {
    cpu::gemm<T>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  static void fill(T* x, Index n, T v) { cpu::fill(x, n, v); }
  static void axpy(T* y, const T* x, Index n, T alpha, bool acc) { cpu::axpy(y, x, n, alpha, acc); }
  static void add_block(MatrixRef<T> dst, MatrixRef<const T> src, bool acc) { cpu::add_block(dst, src, acc); }
  static void add_bias(MatrixRef<T> y, const T* b) { cpu::add_bias(y, b); }
  static void col_sum(T* db, MatrixRef<const T> dy, bool acc) { cpu::col_sum(db, dy, acc); }
  static void bias_relu(MatrixRef<T> y, const T* b) { cpu::bias_relu(y, b); }
  static void relu_bwd_col_sum(T* dx, T* db, bool acc_db, const T* dy, const T* y, Index rows, Index cols) {
    cpu::relu_bwd_col_sum(dx, db, acc_db, dy, y, rows, cols);
  }

  /// A random array (tensor/draw.hpp); `dev` is the spec where kernels read it (here: &s).
  static void draw(T* out, const DrawSpec& s, const DrawSpec* /*dev*/, const std::int64_t* labels, const T* offsets) {
    draw_fill_host(out, s, labels, offsets);
  }

  // ---- activations and dropout
  static void celu_fwd(T* y, const T* x, Index n) { cpu::celu_fwd(y, x, n); }
  static void celu_bwd(T* dx, const T* dy, const T* x, Index n, bool acc) { cpu::celu_bwd(dx, dy, x, n, acc); }
  static void relu_fwd(T* y, const T* x, Index n) { cpu::relu_fwd(y, x, n); }
  static void relu_bwd(T* dx, const T* dy, const T* y, Index n, bool acc) { cpu::relu_bwd(dx, dy, y, n, acc); }
  static void sigmoid_fwd(T* y, const T* x, Index n) { cpu::sigmoid_fwd(y, x, n); }
  static void sigmoid_bwd(T* dx, const T* dy, const T* y, Index n, bool acc) { cpu::sigmoid_bwd(dx, dy, y, n, acc); }
  static void softmax_rows_fwd(T* y, const T* x, Index rows, Index cols, bool log) {
    cpu::softmax_rows_fwd(y, x, rows, cols, log);
  }
  static void softmax_rows_bwd(T* dx, const T* dy, const T* y, Index rows, Index cols, bool log, bool acc) {
    cpu::softmax_rows_bwd(dx, dy, y, rows, cols, log, acc);
  }

  // ---- the open elementwise set (backend/pointwise.hpp) and its reductions
  static void pointwise(Pointwise f, T* y, const T* x, Index n, T c0, T c1) { cpu::pointwise_fwd(f, y, x, n, c0, c1); }
  static void pointwise_bwd(Pointwise f, T* dx, const T* dy, const T* x, const T* y, Index n, T c0, bool acc) {
    cpu::pointwise_bwd(f, dx, dy, x, y, n, c0, acc);
  }
  static void binary(Binary f, T* y, const T* a, const T* b, Index n) { cpu::binary_fwd(f, y, a, b, n); }
  static void binary_bwd(Binary f, bool wrt_b, T* d, const T* dy, const T* a, const T* b, Index n, bool acc) {
    cpu::binary_bwd(f, wrt_b, d, dy, a, b, n, acc);
  }
  static void where(T* y, const T* mask, const T* a, const T* b, Index n) { cpu::where_fwd(y, mask, a, b, n); }
  static void where_bwd(T* d, const T* dy, const T* mask, bool selected, Index n, bool acc) {
    cpu::where_bwd(d, dy, mask, selected, n, acc);
  }
  /// out[0] = the mean of x[0, n); its backward dx (+)= g[0] / n.
  static void mean_fwd(T* out, const T* x, Index n) { out[0] = mean(cpu::sum(x, n), n); }
  static void mean_bwd(T* dx, const T* g, Index n, bool acc) { cpu::fill_or_add(dx, n, g[0] / T(n), acc); }
  /// y[r] = the sum of row r of x (rows x cols); its backward dx[r, :] (+)= dy[r].
  static void row_sum_fwd(T* y, const T* x, Index rows, Index cols) { cpu::row_sums(y, x, rows, cols); }
  static void row_sum_bwd(T* dx, const T* dy, Index rows, Index cols, bool acc) {
    cpu::row_sums_bwd(dx, dy, rows, cols, acc);
  }

  // ---- losses: forward writes the mean into out[0]; backward reads the upstream gradient g[0]
  static T mean(double sum, Index n) { return static_cast<T>(sum / double(n)); }
  static void mse_fwd(T* out, const T* a, const T* b, Index n) { out[0] = mean(cpu::sq_diff_sum(a, b, n), n); }
  /// mse_fwd's and l1_fwd's results from one pass over the pair. CPU only.
  static void mse_l1_fwd(T* mse, T* l1, const T* a, const T* b, Index n) {
    const cpu::Sums2 s = cpu::sq_abs_diff_sums(a, b, n);
    mse[0] = mean(s.first, n);
    l1[0] = mean(s.second, n);
  }
  /// The scales of MSE's and L1's gradients, 2 g / n and g / n, rounded as PyTorch does.
  static T mse_scale(const T* g, Index n) { return T(2) * g[0] / T(n); }
  static T l1_scale(const T* g, Index n) { return T(1) * g[0] / T(n); }
  static void mse_bwd(T* da, const T* g, const T* a, const T* b, Index n, bool acc) {
    cpu::sq_diff_bwd(da, mse_scale(g, n), a, b, n, acc);
  }
  static void l1_fwd(T* out, const T* a, const T* b, Index n) { out[0] = mean(cpu::abs_diff_sum(a, b, n), n); }
  static void l1_bwd(T* da, const T* g, const T* a, const T* b, Index n, bool acc) {
    cpu::abs_diff_bwd(da, l1_scale(g, n), a, b, n, acc);
  }
  /// mse_bwd and l1_bwd on the same pair (g_mse, g_l1: their output gradients), in that order
  /// when mse_first, in one pass.
  static void mse_l1_bwd(T* da, const T* g_mse, const T* g_l1, bool mse_first, const T* a, const T* b, Index n,
                         bool acc) {
    cpu::sq_abs_diff_bwd(da, mse_scale(g_mse, n), l1_scale(g_l1, n), mse_first, a, b, n, acc);
  }
  /// mse_l1_bwd through the ReLU that made `a` (rows x cols), with that layer's bias gradient db
  /// (null: none): relu_bwd_col_sum's result, in the same pass. CPU only.
  static void mse_l1_relu_bwd(T* da, T* db, bool acc_db, const T* g_mse, const T* g_l1, bool mse_first, const T* a,
                              const T* b, Index rows, Index cols, bool acc) {
    cpu::sq_abs_diff_relu_bwd(da, db, acc_db, mse_scale(g_mse, rows * cols), l1_scale(g_l1, rows * cols), mse_first,
                              a, b, rows, cols, acc);
  }
  static void row_norm_fwd(T* out, T* norms, const T* x, Index rows, Index cols, int ord) {
    out[0] = static_cast<T>(cpu::row_norms(norms, x, rows, cols, ord) / double(rows));
  }
  static void row_norm_bwd(T* dx, const T* g, const T* x, const T* norms, Index rows, Index cols, int ord, bool acc) {
    cpu::row_norms_bwd(dx, g[0] / T(rows), x, norms, rows, cols, ord, acc);
  }
  static void cosine_fwd(T* out, T* na, T* nb, T* dot, const T* a, const T* b, Index rows, Index cols) {
    out[0] = static_cast<T>(cpu::cosine_rows(na, nb, dot, a, b, rows, cols) / double(rows));
  }
  static void cosine_bwd(T* da, const T* g, const T* a, const T* b, const T* na, const T* nb, const T* dot,
                         Index rows, Index cols, bool acc) {
    cpu::cosine_rows_bwd(da, g[0], a, b, na, nb, dot, rows, cols, acc);
  }
  static void nll_fwd(T* out, const T* logp, const std::int64_t* labels, Index rows, Index cols) {
    out[0] = static_cast<T>(cpu::nll_sum(logp, labels, rows, cols) / double(rows));
  }
  static void nll_bwd(T* dlogp, const T* g, const std::int64_t* labels, Index rows, Index cols, bool acc) {
    cpu::nll_bwd(dlogp, g[0] / T(rows), labels, rows, cols, acc);
  }
  static void bce_fwd(T* out, const T* p, const T* y, Index n) {
    out[0] = static_cast<T>(cpu::bce_sum(p, y, n) / double(n));
  }
  static void bce_bwd(T* dp, const T* g, const T* p, const T* y, Index n, bool acc) {
    cpu::bce_bwd(dp, g[0] / T(n), p, y, n, acc);
  }
  /// moments: 4 * cols values (mean_x, var_x, mean_prior, var_prior).
  static void kl_fwd(T* out, T* m, const T* x, Index rows, const T* prior, Index prior_rows, Index cols, double eps) {
    cpu::col_moments(m, m + cols, x, rows, cols, eps);
    cpu::col_moments(m + 2 * cols, m + 3 * cols, prior, prior_rows, cols, eps);
    out[0] = static_cast<T>(cpu::kl_gauss(m, m + cols, m + 2 * cols, m + 3 * cols, cols));
  }
  static void kl_bwd(T* dx, const T* g, const T* x, const T* m, Index rows, Index cols, bool acc) {
    cpu::kl_gauss_bwd(dx, g[0], x, m, m + cols, m + 2 * cols, m + 3 * cols, rows, cols, acc);
  }

  // ---- sliced Wasserstein sort
  static std::size_t sort_scratch_bytes(Index rows, Index cols) {
    return cpu::sort_scratch_keys(rows, cols) * sizeof(std::uint64_t);
  }
  static void sort_columns(T* sorted, std::int32_t* perm, const T* x, Index rows, Index cols, void* scratch) {
    cpu::sort_columns(sorted, perm, x, rows, cols, static_cast<std::uint64_t*>(scratch));
  }
  static void sort_column_values(T* sorted, std::int32_t* perm, const T* x, Index rows, Index cols, void* scratch) {
    cpu::sort_column_values(sorted, perm, x, rows, cols, static_cast<std::uint64_t*>(scratch));
  }
  static void unsort_columns(T* dx, const T* dsorted, const std::int32_t* perm, Index rows, Index cols, bool acc) {
    cpu::unsort_columns(dx, dsorted, perm, rows, cols, acc);
  }

  // ---- a scalar times a weight read at run time (the weighted terms)
  static void scale_fwd(T* out, const T* s, const T* w) { out[0] = s[0] * w[0]; }
  static void scale_bwd(T* ds, const T* g, const T* w, bool acc) { ds[0] = acc ? ds[0] + g[0] * w[0] : g[0] * w[0]; }

  // ---- optimizer
  /// hyper: kRmsHyper values {-lr, alpha, 1 - alpha, eps, weight_decay, momentum}.
  static void rmsprop_step(T* p, const T* grad, T* v, T* buf, Index n, const T* hyper) {
    cpu::rmsprop_step(p, grad, v, buf, n, hyper);
  }
};

}  // namespace sakura
