// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// sakura::cuda kernels that make a step's inputs on the device: the random arrays of
/// tensor/draw.hpp (the same formulas the CPU evaluates) and the gather of a batch's rows from a
/// matrix already in device memory. Both read their per-step arguments (Philox counters, source
/// pointer, row indices) from device memory, so a replayed CUDA graph sees new ones.
#include "common.cuh"

namespace sakura::cuda {
namespace {

using impl::kThreads;

#define SAKURA_GRID_STRIDE(i, n) \
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += Index(gridDim.x) * blockDim.x)

/// One thread per column pair (every form but UnitProjections).
template <class T>
__global__ void draw_pairs_k(T* out, const DrawSpec* spec, const std::int64_t* labels, const T* offsets, Index pairs) {
  const DrawSpec s = *spec;
  const Index P = s.pairs_per_row();
  SAKURA_GRID_STRIDE(i, pairs) {
    const Index r = i / P, p = i - r * P;
    double v0, v1;
    draw_pair_values(s, r, p, draw_label(s, r, labels), offsets, v0, v1);
    out[r * s.cols + 2 * p] = static_cast<T>(v0);
    if (2 * p + 1 < s.cols) out[r * s.cols + 2 * p + 1] = static_cast<T>(v1);
  }
}

/// UnitProjections: a block per row draws it into shared memory, thread 0 sums the squares in
/// column order (the CPU's order), then the row is written divided by its norm.
template <class T>
__global__ void draw_unit_rows_k(T* out, const DrawSpec* spec) {
  extern __shared__ double row[];
  __shared__ double norm;
  const DrawSpec s = *spec;
  const Index P = s.pairs_per_row();
  for (Index r = blockIdx.x; r < s.rows; r += gridDim.x) {
    for (Index p = threadIdx.x; p < P; p += blockDim.x) {
      double v0, v1;
      draw_raw_pair(s, r, p, v0, v1);
      row[2 * p] = v0;
      if (2 * p + 1 < s.cols) row[2 * p + 1] = v1;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      double ss = 0;
      for (Index c = 0; c < s.cols; ++c) ss = mul_add(row[c], row[c], ss);  // as the host sums
      norm = sqrt(ss);
    }
    __syncthreads();
    for (Index c = threadIdx.x; c < s.cols; c += blockDim.x) out[r * s.cols + c] = static_cast<T>(row[c] / norm);
    __syncthreads();  // row[] is reused by the next row
  }
}

/// args: the source pointer in the first 16 bytes, then n int32 row indices.
template <class T>
__global__ void gather_rows_k(T* out, const void* args, Index n, Index cols) {
  const T* src = *static_cast<const T* const*>(args);
  const auto* idx = reinterpret_cast<const std::int32_t*>(static_cast<const char*>(args) + kGatherHeader);
  SAKURA_GRID_STRIDE(i, n * cols) {
    const Index r = i / cols, c = i - r * cols;
    out[i] = src[static_cast<Index>(idx[r]) * cols + c];
  }
}

constexpr Index kMaxUnitCols = 6144;  // 48 KiB of shared doubles per row

}  // namespace

template <class T>
void draw(T* out, const DrawSpec& s, const DrawSpec* dev, const std::int64_t* labels, const T* offsets) {
  if (s.rows <= 0 || s.cols <= 0) return;
  if (s.form == DrawSpec::UnitProjections) {
    if (s.cols > kMaxUnitCols)
      detail::fail("cuda::draw: projections of width ", s.cols, " exceed the GPU limit of ", kMaxUnitCols);
    const unsigned blocks = static_cast<unsigned>(std::min<Index>(s.rows, 65535));
    SAKURA_LAUNCH(draw_unit_rows_k<T>, blocks, 64, static_cast<std::size_t>(s.cols) * sizeof(double), out, dev);
    return;
  }
  const Index pairs = s.rows * s.pairs_per_row();
  SAKURA_LAUNCH(draw_pairs_k<T>, impl::grid_for(pairs), kThreads, 0, out, dev, labels, offsets, pairs);
}

template <class T>
void gather_rows(T* out, const void* args, Index n, Index cols) {
  if (n > 0 && cols > 0) SAKURA_LAUNCH(gather_rows_k<T>, impl::grid_for(n * cols), kThreads, 0, out, args, n, cols);
}

#define SAKURA_INST(T)                                                                                  \
  template void draw<T>(T*, const DrawSpec&, const DrawSpec*, const std::int64_t*, const T*);          \
  template void gather_rows<T>(T*, const void*, Index, Index);
SAKURA_INST(float)
SAKURA_INST(double)
#undef SAKURA_INST

}  // namespace sakura::cuda
