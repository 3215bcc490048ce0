// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Ops<T, Cuda>: the device interface (backend/device.hpp) on a GPU. This header declares host
/// functions on device pointers only — no CUDA header — so every .cpp builds with a plain C++
/// compiler; the definitions are in cuda/ (library sakura::cuda, built when a CUDA compiler is
/// found). Each kernel has the semantics of its Ops<T, Cpu> twin (backend/cpu/ops.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "sakura/backend/device.hpp"
#include "sakura/backend/pointwise.hpp"
#include "sakura/tensor/draw.hpp"
#include "sakura/tensor/tensor.hpp"

#if !defined(SAKURA_WITH_CUDA)
#define SAKURA_WITH_CUDA 0
#endif

namespace sakura::cuda {

// ---- devices, memory, streams: all work runs on one library stream, in order
/// Number of usable CUDA devices; 0 (never an exception) when there is no driver or device.
int device_count();
/// "name, compute capability, memory" of the current device, for logs and benchmarks.
const char* device_name();
void synchronize();
void* malloc_device(std::size_t bytes);   ///< throws sakura::Error naming the size
void free_device(void* p) noexcept;
void* malloc_host(std::size_t bytes);     ///< pinned host memory (staging, graph-capturable copies)
void free_host(void* p) noexcept;
void copy_h2d(void* dst, const void* src, std::size_t bytes);  ///< stream-ordered (src pinned for capture)
void copy_d2h(void* dst, const void* src, std::size_t bytes);  ///< synchronous
void copy_d2d(void* dst, const void* src, std::size_t bytes);  ///< stream-ordered
/// TF32 tensor-core math in cuBLAS float GEMMs (off by default: float32 results like the CPU).
void set_tf32(bool on);

// ---- CUDA graphs over the library stream
void begin_capture();
void* end_capture();  ///< an instantiated graph (cudaGraphExec_t)
void launch_graph(void* exec);
void destroy_graph(void* exec) noexcept;

/// While set, Ops<T, Cuda> launches and copies nothing: the controller re-runs a step's host
/// logic (staging fills, bookkeeping) before replaying the graph that holds its device work.
inline bool& dry_run() {
  static bool on = false;
  return on;
}

// ---- kernels (T = float or double), semantics as Ops<T, Cpu>
template <class T>
void gemm(bool ta, bool tb, Index m, Index n, Index k, T alpha, const T* a, Index lda, const T* b, Index ldb, T beta,
          T* c, Index ldc);
template <class T>
void fill(T* x, Index n, T v);
template <class T>
void axpy(T* y, const T* x, Index n, T alpha, bool acc);
template <class T>
void add_block(MatrixRef<T> dst, MatrixRef<const T> src, bool acc);
template <class T>
void add_bias(MatrixRef<T> y, const T* b);
template <class T>
void col_sum(T* db, MatrixRef<const T> dy, bool acc);
template <class T>
void celu_fwd(T* y, const T* x, Index n);
template <class T>
void celu_bwd(T* dx, const T* dy, const T* x, Index n, bool acc);
template <class T>
void relu_fwd(T* y, const T* x, Index n);
template <class T>
void relu_bwd(T* dx, const T* dy, const T* y, Index n, bool acc);
template <class T>
void sigmoid_fwd(T* y, const T* x, Index n);
template <class T>
void sigmoid_bwd(T* dx, const T* dy, const T* y, Index n, bool acc);
template <class T>
void softmax_rows_fwd(T* y, const T* x, Index rows, Index cols, bool log);
template <class T>
void softmax_rows_bwd(T* dx, const T* dy, const T* y, Index rows, Index cols, bool log, bool acc);
template <class T>
void pointwise(Pointwise f, T* y, const T* x, Index n, T c0, T c1);
template <class T>
void pointwise_bwd(Pointwise f, T* dx, const T* dy, const T* x, const T* y, Index n, T c0, bool acc);
template <class T>
void binary(Binary f, T* y, const T* a, const T* b, Index n);
template <class T>
void binary_bwd(Binary f, bool wrt_b, T* d, const T* dy, const T* a, const T* b, Index n, bool acc);
template <class T>
void where(T* y, const T* mask, const T* a, const T* b, Index n);
template <class T>
void where_bwd(T* d, const T* dy, const T* mask, bool selected, Index n, bool acc);
template <class T>
void mean_fwd(T* out, const T* x, Index n);
template <class T>
void mean_bwd(T* dx, const T* g, Index n, bool acc);
template <class T>
void row_sum_fwd(T* y, const T* x, Index rows, Index cols);
template <class T>
void row_sum_bwd(T* dx, const T* dy, Index rows, Index cols, bool acc);
template <class T>
void mse_fwd(T* out, const T* a, const T* b, Index n);
template <class T>
void mse_bwd(T* da, const T* g, const T* a, const T* b, Index n, bool acc);
template <class T>
void l1_fwd(T* out, const T* a, const T* b, Index n);
template <class T>
void l1_bwd(T* da, const T* g, const T* a, const T* b, Index n, bool acc);
template <class T>
void row_norm_fwd(T* out, T* norms, const T* x, Index rows, Index cols, int ord);
template <class T>
void row_norm_bwd(T* dx, const T* g, const T* x, const T* norms, Index rows, Index cols, int ord, bool acc);
template <class T>
void cosine_fwd(T* out, T* na, T* nb, T* dot, const T* a, const T* b, Index rows, Index cols);
template <class T>
void cosine_bwd(T* da, const T* g, const T* a, const T* b, const T* na, const T* nb, const T* dot, Index rows,
                Index cols, bool acc);
template <class T>
void nll_fwd(T* out, const T* logp, const std::int64_t* labels, Index rows, Index cols);
template <class T>
void nll_bwd(T* dlogp, const T* g, const std::int64_t* labels, Index rows, Index cols, bool acc);
template <class T>
void bce_fwd(T* out, const T* p, const T* y, Index n);
template <class T>
void bce_bwd(T* dp, const T* g, const T* p, const T* y, Index n, bool acc);
template <class T>
void kl_fwd(T* out, T* moments, const T* x, Index rows, const T* prior, Index prior_rows, Index cols, double eps);
template <class T>
void kl_bwd(T* dx, const T* g, const T* x, const T* moments, Index rows, Index cols, bool acc);
std::size_t sort_scratch_bytes(Index rows, Index cols);
template <class T>
void sort_columns(T* sorted, std::int32_t* perm, const T* x, Index rows, Index cols, void* scratch);
template <class T>
void unsort_columns(T* dx, const T* dsorted, const std::int32_t* perm, Index rows, Index cols, bool acc);
template <class T>
void scale_fwd(T* out, const T* s, const T* w);
template <class T>
void scale_bwd(T* ds, const T* g, const T* w, bool acc);
template <class T>
void rmsprop_step(T* p, const T* grad, T* v, T* buf, Index n, const T* hyper);
/// A random array (tensor/draw.hpp): launch shape from `s`, key and counters read from `dev`
/// (device memory, so a replayed graph draws new numbers). Rows of UnitProjections up to 6144 wide.
template <class T>
void draw(T* out, const DrawSpec& s, const DrawSpec* dev, const std::int64_t* labels, const T* offsets);
/// out[i, :] = src[index[i], :] for i < n. `args` (device memory, so a replayed graph gathers
/// whatever batch the host staged): the source pointer, padded to kGatherHeader bytes, then n
/// int32 row indices.
inline constexpr std::size_t kGatherHeader = 16;
template <class T>
void gather_rows(T* out, const void* args, Index n, Index cols);

}  // namespace sakura::cuda

namespace sakura {

template <class T>
struct Ops<T, Cuda> {
  static_assert(SAKURA_WITH_CUDA || sizeof(T) == 0,  // dependent: fires only when used
                "sakura::Cuda needs the GPU backend: configure with -DSAKURA_CUDA=ON (a CUDA compiler must be "
                "found) and link sakura::cuda");
  struct Alloc {
    static void* allocate(std::size_t bytes) { return cuda::malloc_device(bytes); }
    static void deallocate(void* p) { cuda::free_device(p); }
  };
  /// Pinned host memory for staging uploads (copies from it can be captured in a graph).
  struct HostAlloc {
    static void* allocate(std::size_t bytes) { return cuda::malloc_host(bytes); }
    static void deallocate(void* p) { cuda::free_host(p); }
  };
  static constexpr bool host_memory = false;
  static void upload(void* dst, const void* src, std::size_t bytes) { launch<&cuda::copy_h2d>(dst, src, bytes); }
  static void download(void* dst, const void* src, std::size_t bytes) { cuda::copy_d2h(dst, src, bytes); }
  // ---- sparse input: a CPU feature (the controller densifies a sparse batch for a GPU)
  struct SparseInput {};
  template <class Arena>
  static const SparseInput* sparse_linear(Arena&, T*, CsrRef<T>, const T*, const T*, Index, bool) {
    static_assert(sizeof(T) == 0, "sparse input is a CPU feature: densify the batch for a GPU");
    return nullptr;
  }
  static void sparse_linear_weight_grad(T*, const SparseInput&, const T*, Index, bool, bool) {
    static_assert(sizeof(T) == 0, "sparse input is a CPU feature: densify the batch for a GPU");
  }
  /// Waits for every queued copy and kernel (a host buffer handed to upload() may then be reused).
  static void synchronize() { cuda::synchronize(); }

  static void gemm(bool ta, bool tb, Index m, Index n, Index k, T alpha, const T* a, Index lda, const T* b, Index ldb,
                   T beta, T* c, Index ldc) {
    launch<&cuda::gemm<T>>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  static void fill(T* x, Index n, T v) { launch<&cuda::fill<T>>(x, n, v); }
  static void axpy(T* y, const T* x, Index n, T alpha, bool acc) { launch<&cuda::axpy<T>>(y, x, n, alpha, acc); }
  static void add_block(MatrixRef<T> dst, MatrixRef<const T> src, bool acc) {
    launch<&cuda::add_block<T>>(dst, src, acc);
  }
  static void add_bias(MatrixRef<T> y, const T* b) { launch<&cuda::add_bias<T>>(y, b); }
  static void col_sum(T* db, MatrixRef<const T> dy, bool acc) { launch<&cuda::col_sum<T>>(db, dy, acc); }
  // Linear + ReLU: two kernels each here (the CPU fuses them to save passes over memory)
  static void bias_relu(MatrixRef<T> y, const T* b) {
    if (b) add_bias(y, b);
    relu_fwd(y.data, y.data, y.rows * y.cols);
  }
  static void relu_bwd_col_sum(T* dx, T* db, bool acc_db, const T* dy, const T* y, Index rows, Index cols) {
    relu_bwd(dx, dy, y, rows * cols, false);
    if (db) col_sum(db, MatrixRef<const T>(dx, rows, cols), acc_db);
  }
  static void celu_fwd(T* y, const T* x, Index n) { launch<&cuda::celu_fwd<T>>(y, x, n); }
  static void celu_bwd(T* dx, const T* dy, const T* x, Index n, bool acc) {
    launch<&cuda::celu_bwd<T>>(dx, dy, x, n, acc);
  }
  static void relu_fwd(T* y, const T* x, Index n) { launch<&cuda::relu_fwd<T>>(y, x, n); }
  static void relu_bwd(T* dx, const T* dy, const T* y, Index n, bool acc) {
    launch<&cuda::relu_bwd<T>>(dx, dy, y, n, acc);
  }
  static void sigmoid_fwd(T* y, const T* x, Index n) { launch<&cuda::sigmoid_fwd<T>>(y, x, n); }
  static void sigmoid_bwd(T* dx, const T* dy, const T* y, Index n, bool acc) {
    launch<&cuda::sigmoid_bwd<T>>(dx, dy, y, n, acc);
  }
  static void softmax_rows_fwd(T* y, const T* x, Index rows, Index cols, bool log) {
    launch<&cuda::softmax_rows_fwd<T>>(y, x, rows, cols, log);
  }
  static void softmax_rows_bwd(T* dx, const T* dy, const T* y, Index rows, Index cols, bool log, bool acc) {
    launch<&cuda::softmax_rows_bwd<T>>(dx, dy, y, rows, cols, log, acc);
  }
  static void pointwise(Pointwise f, T* y, const T* x, Index n, T c0, T c1) {
    launch<&cuda::pointwise<T>>(f, y, x, n, c0, c1);
  }
  static void pointwise_bwd(Pointwise f, T* dx, const T* dy, const T* x, const T* y, Index n, T c0, bool acc) {
    launch<&cuda::pointwise_bwd<T>>(f, dx, dy, x, y, n, c0, acc);
  }
  static void binary(Binary f, T* y, const T* a, const T* b, Index n) { launch<&cuda::binary<T>>(f, y, a, b, n); }
  static void binary_bwd(Binary f, bool wrt_b, T* d, const T* dy, const T* a, const T* b, Index n, bool acc) {
    launch<&cuda::binary_bwd<T>>(f, wrt_b, d, dy, a, b, n, acc);
  }
  static void where(T* y, const T* mask, const T* a, const T* b, Index n) { launch<&cuda::where<T>>(y, mask, a, b, n); }
  static void where_bwd(T* d, const T* dy, const T* mask, bool selected, Index n, bool acc) {
    launch<&cuda::where_bwd<T>>(d, dy, mask, selected, n, acc);
  }
  static void mean_fwd(T* out, const T* x, Index n) { launch<&cuda::mean_fwd<T>>(out, x, n); }
  static void mean_bwd(T* dx, const T* g, Index n, bool acc) { launch<&cuda::mean_bwd<T>>(dx, g, n, acc); }
  static void row_sum_fwd(T* y, const T* x, Index rows, Index cols) { launch<&cuda::row_sum_fwd<T>>(y, x, rows, cols); }
  static void row_sum_bwd(T* dx, const T* dy, Index rows, Index cols, bool acc) {
    launch<&cuda::row_sum_bwd<T>>(dx, dy, rows, cols, acc);
  }
  static void mse_fwd(T* out, const T* a, const T* b, Index n) { launch<&cuda::mse_fwd<T>>(out, a, b, n); }
  static void mse_bwd(T* da, const T* g, const T* a, const T* b, Index n, bool acc) {
    launch<&cuda::mse_bwd<T>>(da, g, a, b, n, acc);
  }
  static void l1_fwd(T* out, const T* a, const T* b, Index n) { launch<&cuda::l1_fwd<T>>(out, a, b, n); }
  static void l1_bwd(T* da, const T* g, const T* a, const T* b, Index n, bool acc) {
    launch<&cuda::l1_bwd<T>>(da, g, a, b, n, acc);
  }
  /// The two kernels in the rules' order (the CPU fuses them into one pass).
  static void mse_l1_bwd(T* da, const T* g_mse, const T* g_l1, bool mse_first, const T* a, const T* b, Index n,
                         bool acc) {
    if (mse_first) mse_bwd(da, g_mse, a, b, n, acc), l1_bwd(da, g_l1, a, b, n, true);
    else l1_bwd(da, g_l1, a, b, n, acc), mse_bwd(da, g_mse, a, b, n, true);
  }
  static void row_norm_fwd(T* out, T* norms, const T* x, Index rows, Index cols, int ord) {
    launch<&cuda::row_norm_fwd<T>>(out, norms, x, rows, cols, ord);
  }
  static void row_norm_bwd(T* dx, const T* g, const T* x, const T* norms, Index rows, Index cols, int ord, bool acc) {
    launch<&cuda::row_norm_bwd<T>>(dx, g, x, norms, rows, cols, ord, acc);
  }
  static void cosine_fwd(T* out, T* na, T* nb, T* dot, const T* a, const T* b, Index rows, Index cols) {
    launch<&cuda::cosine_fwd<T>>(out, na, nb, dot, a, b, rows, cols);
  }
  static void cosine_bwd(T* da, const T* g, const T* a, const T* b, const T* na, const T* nb, const T* dot,
                         Index rows, Index cols, bool acc) {
    launch<&cuda::cosine_bwd<T>>(da, g, a, b, na, nb, dot, rows, cols, acc);
  }
  static void nll_fwd(T* out, const T* logp, const std::int64_t* labels, Index rows, Index cols) {
    launch<&cuda::nll_fwd<T>>(out, logp, labels, rows, cols);
  }
  static void nll_bwd(T* dlogp, const T* g, const std::int64_t* labels, Index rows, Index cols, bool acc) {
    launch<&cuda::nll_bwd<T>>(dlogp, g, labels, rows, cols, acc);
  }
  static void bce_fwd(T* out, const T* p, const T* y, Index n) { launch<&cuda::bce_fwd<T>>(out, p, y, n); }
  static void bce_bwd(T* dp, const T* g, const T* p, const T* y, Index n, bool acc) {
    launch<&cuda::bce_bwd<T>>(dp, g, p, y, n, acc);
  }
  static void kl_fwd(T* out, T* m, const T* x, Index rows, const T* prior, Index prior_rows, Index cols, double eps) {
    launch<&cuda::kl_fwd<T>>(out, m, x, rows, prior, prior_rows, cols, eps);
  }
  static void kl_bwd(T* dx, const T* g, const T* x, const T* m, Index rows, Index cols, bool acc) {
    launch<&cuda::kl_bwd<T>>(dx, g, x, m, rows, cols, acc);
  }
  static std::size_t sort_scratch_bytes(Index rows, Index cols) { return cuda::sort_scratch_bytes(rows, cols); }
  static void sort_columns(T* sorted, std::int32_t* perm, const T* x, Index rows, Index cols, void* scratch) {
    launch<&cuda::sort_columns<T>>(sorted, perm, x, rows, cols, scratch);
  }
  /// The values only: the same kernel, perm as scratch.
  static void sort_column_values(T* sorted, std::int32_t* perm, const T* x, Index rows, Index cols, void* scratch) {
    sort_columns(sorted, perm, x, rows, cols, scratch);
  }
  static void unsort_columns(T* dx, const T* dsorted, const std::int32_t* perm, Index rows, Index cols, bool acc) {
    launch<&cuda::unsort_columns<T>>(dx, dsorted, perm, rows, cols, acc);
  }
  static void scale_fwd(T* out, const T* s, const T* w) { launch<&cuda::scale_fwd<T>>(out, s, w); }
  static void scale_bwd(T* ds, const T* g, const T* w, bool acc) { launch<&cuda::scale_bwd<T>>(ds, g, w, acc); }
  static constexpr std::size_t gather_header = cuda::kGatherHeader;
  static void gather_rows(T* out, const void* args, Index n, Index cols) {
    launch<&cuda::gather_rows<T>>(out, args, n, cols);
  }
  static void draw(T* out, const DrawSpec& s, const DrawSpec* dev, const std::int64_t* labels, const T* offsets) {
    launch<&cuda::draw<T>>(out, s, dev, labels, offsets);
  }
  static void rmsprop_step(T* p, const T* grad, T* v, T* buf, Index n, const T* hyper) {
    launch<&cuda::rmsprop_step<T>>(p, grad, v, buf, n, hyper);
  }

 private:
  /// Every launch and upload goes through here: while dry_run() is set (the controller re-runs a
  /// step's host logic before replaying the graph that holds its device work) nothing is issued.
  template <auto Kernel, class... Args>
  static void launch(Args&&... args) {
    if (!cuda::dry_run()) Kernel(std::forward<Args>(args)...);
  }
};

}  // namespace sakura
