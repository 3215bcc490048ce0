// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// sakura::cuda runtime: error reporting, the library stream and cuBLAS handle, memory, copies,
/// CUDA graphs, and the cuBLAS GEMM.
#include <atomic>
#include <climits>
#include <cstdio>
#include <mutex>
#include <sstream>
#include <string>

#include "common.cuh"

namespace sakura::cuda::impl {

void throw_cuda(cudaError_t e, const char* call, const char* file, int line) {
  (void)cudaGetLastError();  // a failed call also sets the last error: clear it for the next check
  std::ostringstream os;
  os << "CUDA error in " << call << " at " << file << ':' << line << ": " << cudaGetErrorString(e) << " ("
     << cudaGetErrorName(e) << ')';
  throw Error(os.str());
}

void throw_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  std::ostringstream os;
  os << "cuBLAS error in " << call << " at " << file << ':' << line << ": " << cublasGetStatusString(s) << " ("
     << cublasGetStatusName(s) << ')';
  throw Error(os.str());
}

namespace {

/// Stream-side state, created on first use and never destroyed: tearing CUDA objects down from
/// static destructors races the runtime's own shutdown.
struct StreamState {
  cudaStream_t stream = nullptr;
  double* partials = nullptr;
};

StreamState& stream_state() {
  static StreamState* s = [] {
    auto* st = new StreamState;
    // non-blocking: work that other code puts on the legacy default stream neither waits for
    // ours nor breaks a capture in progress
    SAKURA_CUDA_CHECK(cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking));
    SAKURA_CUDA_CHECK(cudaMalloc(&st->partials, sizeof(double) * kMaxPartials));
    return st;
  }();
  return *s;
}

std::mutex blas_mutex;
cublasHandle_t blas_handle = nullptr;
bool tf32_on = false;

cublasMath_t math_mode() { return tf32_on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH; }

}  // namespace

cudaStream_t stream() { return stream_state().stream; }
double* partials() { return stream_state().partials; }

cublasHandle_t blas() {
  std::lock_guard<std::mutex> lock(blas_mutex);
  if (!blas_handle) {
    cudaStream_t s = stream();
    cublasHandle_t h = nullptr;
    SAKURA_CUDA_CHECK(cublasCreate(&h));
    // A workspace of our own (32 MiB, NVIDIA's advice for Hopper): cuBLAS then never allocates
    // inside a graph capture, and results do not depend on a shared pool.
    constexpr std::size_t kWorkspace = std::size_t(32) << 20;
    void* ws = nullptr;
    SAKURA_CUDA_CHECK(cudaMalloc(&ws, kWorkspace));
    SAKURA_CUDA_CHECK(cublasSetStream(h, s));
    SAKURA_CUDA_CHECK(cublasSetWorkspace(h, ws, kWorkspace));
    SAKURA_CUDA_CHECK(cublasSetMathMode(h, math_mode()));
    SAKURA_CUDA_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
    blas_handle = h;
  }
  return blas_handle;
}

}  // namespace sakura::cuda::impl

namespace sakura::cuda {

using impl::stream;

// ------------------------------------------------------------------ devices
int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

const char* device_name() {
  static std::once_flag once;
  static std::string name;
  std::call_once(once, [] {
    int dev = 0;
    cudaDeviceProp p{};
    if (device_count() == 0 || cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      name = "no CUDA device";
      return;
    }
    char buf[512];
    std::snprintf(buf, sizeof buf, "%s, sm_%d%d, %.1f GiB", p.name, p.major, p.minor,
                  double(p.totalGlobalMem) / double(1 << 30));
    name = buf;
  });
  return name.c_str();
}

void synchronize() { SAKURA_CUDA_CHECK(cudaStreamSynchronize(stream())); }

// ------------------------------------------------------------------ memory
void* malloc_device(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    std::ostringstream os;
    os << "cudaMalloc of " << bytes << " bytes (" << double(bytes) / double(1 << 20)
       << " MiB) failed: " << cudaGetErrorString(e);
    throw Error(os.str());
  }
  return p;
}

void free_device(void* p) noexcept {
  if (p) (void)cudaFree(p);  // errors at exit (runtime already unloaded) are ignored
}

void* malloc_host(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  const cudaError_t e = cudaMallocHost(&p, bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    std::ostringstream os;
    os << "cudaMallocHost of " << bytes << " bytes (pinned host memory) failed: " << cudaGetErrorString(e);
    throw Error(os.str());
  }
  return p;
}

void free_host(void* p) noexcept {
  if (p) (void)cudaFreeHost(p);
}

void copy_h2d(void* dst, const void* src, std::size_t bytes) {
  if (bytes) SAKURA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
}

void copy_d2h(void* dst, const void* src, std::size_t bytes) {
  if (!bytes) return;
  SAKURA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  SAKURA_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void copy_d2d(void* dst, const void* src, std::size_t bytes) {
  if (bytes) SAKURA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}

void set_tf32(bool on) {
  std::lock_guard<std::mutex> lock(impl::blas_mutex);
  impl::tf32_on = on;
  if (impl::blas_handle) SAKURA_CUDA_CHECK(cublasSetMathMode(impl::blas_handle, impl::math_mode()));
}

// ------------------------------------------------------------------ graphs
void begin_capture() {
  // create everything that allocates before capturing: allocation is illegal while capturing
  (void)impl::blas();
  SAKURA_CUDA_CHECK(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal));
}

void* end_capture() {
  cudaGraph_t graph = nullptr;
  SAKURA_CUDA_CHECK(cudaStreamEndCapture(stream(), &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  (void)cudaGraphDestroy(graph);
  impl::check(e, "cudaGraphInstantiate(&exec, graph, 0)", __FILE__, __LINE__);
  return exec;
}

void launch_graph(void* exec) {
  SAKURA_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), stream()));
}

void destroy_graph(void* exec) noexcept {
  if (exec) (void)cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));
}

// ------------------------------------------------------------------ GEMM
/// cuBLAS is column-major and our matrices are row-major. A row-major m x n matrix with leading
/// dimension ld has the same bytes as its column-major transpose (n x m, same ld). So row-major
///   C = alpha op(A) op(B) + beta C
/// is computed as the column-major product
///   C^T = alpha op(B)^T op(A)^T + beta C^T,
/// i.e. one cuBLAS GEMM with the operands swapped (B first), the dimensions swapped (n, m, k),
/// and each operand's transpose flag kept as is: the stored bytes of B already read as B^T.
template <class T>
void gemm(bool ta, bool tb, Index m, Index n, Index k, T alpha, const T* a, Index lda, const T* b, Index ldb, T beta,
          T* c, Index ldc) {
  if (m == 0 || n == 0) return;
  for (Index v : {m, n, k, lda, ldb, ldc})
    if (v > INT_MAX) detail::fail("gemm: dimension ", v, " exceeds cuBLAS's 32-bit limit");
  const cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int M = int(n), N = int(m), K = int(k);
  // cuBLAS requires ld >= 1 even when an operand is empty (k == 0)
  const int LDB = int(std::max<Index>(ldb, 1)), LDA = int(std::max<Index>(lda, 1)), LDC = int(ldc);
  if constexpr (std::is_same_v<T, float>)
    SAKURA_CUDA_CHECK(cublasSgemm(impl::blas(), opb, opa, M, N, K, &alpha, b, LDB, a, LDA, &beta, c, LDC));
  else
    SAKURA_CUDA_CHECK(cublasDgemm(impl::blas(), opb, opa, M, N, K, &alpha, b, LDB, a, LDA, &beta, c, LDC));
}

template void gemm<float>(bool, bool, Index, Index, Index, float, const float*, Index, const float*, Index, float,
                          float*, Index);
template void gemm<double>(bool, bool, Index, Index, Index, double, const double*, Index, const double*, Index,
                           double, double*, Index);

}  // namespace sakura::cuda
