// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Internal to sakura::cuda: error checks, the library stream and scratch, launch geometry and
/// the small device helpers (deterministic sums, math overloads) the kernels share.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "sakura/backend/cuda/ops.hpp"
#include "sakura/error.hpp"

namespace sakura::cuda::impl {

[[noreturn]] void throw_cuda(cudaError_t e, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas(cublasStatus_t s, const char* call, const char* file, int line);

inline void check(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) throw_cuda(e, call, file, line);
}
inline void check(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) throw_cublas(s, call, file, line);
}

/// The library stream (created on first use); every kernel and copy runs on it, in order.
cudaStream_t stream();
/// The cuBLAS handle bound to stream(), with its own workspace (so capture never allocates).
cublasHandle_t blas();
/// kMaxPartials doubles of device scratch for the two-pass reductions. One stream runs the
/// passes in order, so every reduction reuses it (the library serves one host thread at a time).
double* partials();

inline constexpr int kThreads = 256;       // block size of every kernel but the sort
inline constexpr int kMaxPartials = 1024;  // most blocks of a reduction's first pass
inline constexpr Index kMaxGrid = 4096;    // grid-stride loops cover the rest

/// Blocks for a grid-stride loop over n items.
inline unsigned grid_for(Index n, Index per_block = kThreads) {
  return static_cast<unsigned>(std::clamp<Index>((n + per_block - 1) / per_block, 1, kMaxGrid));
}

}  // namespace sakura::cuda::impl

#define SAKURA_CUDA_CHECK(call) ::sakura::cuda::impl::check((call), #call, __FILE__, __LINE__)
/// Launches kernel<<<grid, block, smem, library stream>>>(args...) and checks the launch.
#define SAKURA_LAUNCH(kernel, grid, block, smem, ...)                                      \
  do {                                                                                     \
    kernel<<<(grid), (block), (smem), ::sakura::cuda::impl::stream()>>>(__VA_ARGS__);      \
    ::sakura::cuda::impl::check(cudaGetLastError(), "launch of " #kernel, __FILE__, __LINE__); \
  } while (0)

namespace sakura::cuda::impl {

// ---- math overloads (device code calls the float function for float)
__device__ inline float d_exp(float x) { return expf(x); }
__device__ inline double d_exp(double x) { return exp(x); }
__device__ inline float d_expm1(float x) { return expm1f(x); }
__device__ inline double d_expm1(double x) { return expm1(x); }
__device__ inline float d_sqrt(float x) { return sqrtf(x); }
template <class T>
__device__ inline T smallest_normal() { return sizeof(T) == 4 ? T(1.17549435e-38f) : T(2.2250738585072014e-308); }
__device__ inline double d_sqrt(double x) { return sqrt(x); }
__device__ inline float d_fma(float a, float b, float c) { return fmaf(a, b, c); }
__device__ inline double d_fma(double a, double b, double c) { return fma(a, b, c); }
__device__ inline float d_abs(float x) { return fabsf(x); }
__device__ inline double d_abs(double x) { return fabs(x); }
/// std::max's exact semantics ((a < b) ? b : a: a NaN second argument is dropped), unlike fmax.
template <class T>
__device__ inline T smax(T a, T b) {
  return (a < b) ? b : a;
}
template <class T>
__device__ inline T smin(T a, T b) {
  return (b < a) ? b : a;
}
/// sign with sign(0) = 0 (and 0 for NaN), as cpu::sign.
template <class T>
__device__ inline T sign(T v) {
  return static_cast<T>((v > T(0)) - (v < T(0)));
}

// ---- deterministic sums: fixed shapes, fixed order, no floating-point atomics
/// Butterfly sum over a full warp; every lane ends with the same bits (each step adds a pair in
/// both orders, and IEEE addition commutes).
__device__ inline double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
/// Sum over a block (blockDim.x a multiple of 32); the result is returned in every thread.
/// `sh` is 32 doubles of shared memory; safe to call repeatedly with the same `sh`.
__device__ inline double block_sum(double v, double* sh) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();  // earlier readers of sh are done
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  double s = 0;
  for (int w = 0; w < nw; ++w) s += sh[w];
  return s;
}

}  // namespace sakura::cuda::impl
