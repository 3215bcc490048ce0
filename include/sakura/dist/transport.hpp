// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The engine under a dist::Comm: moves bytes between ranks (single process, MPI, NCCL); the
/// arithmetic of every reduction is the Comm's, summed in rank order, so results never depend on
/// the engine's own reduction order.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <span>
#include <type_traits>

#include "sakura/tensor/tensor.hpp"

namespace sakura::dist::detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;
/// out[i] = part(0)[i] + part(1)[i] + ... + part(ranks - 1)[i], added left to right: the one
/// summation order of every reduction (the NCCL kernel adds in the same order). `out` may be one
/// of the parts: each block is read from every part before it is written.
template <class T, class Part>
void sum_in_rank_order(const Part& part, int ranks, Index n, T* out) {
  constexpr Index kBlock = 512;
  T acc[kBlock];
  for (Index b = 0; b < n; b += kBlock) {
    const Index m = std::min(kBlock, n - b);
    const T* p0 = part(0) + b;
    for (Index i = 0; i < m; ++i) acc[i] = p0[i];
    for (int r = 1; r < ranks; ++r) {
      const T* p = part(r) + b;
      for (Index i = 0; i < m; ++i) acc[i] += p[i];
    }
    std::copy_n(acc, m, out + b);
  }
}
}  // namespace sakura::dist::detail

namespace sakura::dist {

/// Where the buffers of the data collectives (allgather_rows, sums) live.
enum class Memory { Host, Device };

/// Element types of the data collectives.
enum class DType { F32, F64 };
template <class T>
constexpr DType dtype_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "dist: data collectives take float or double");
  return std::is_same_v<T, float> ? DType::F32 : DType::F64;
}
constexpr std::size_t dtype_size(DType d) { return d == DType::F32 ? 4 : 8; }

/// One planned in-place sum over ranks of n elements (a gradient bucket), reusable step after step
/// (its scratch is allocated once). Every element ends as x_0 + x_1 + ... + x_{N-1}, added left to
/// right in rank order, on every rank.
class SumSlot {
 public:
  virtual ~SumSlot() = default;
  /// Begins the sum of data[0, n); data must stay untouched until wait().
  virtual void start(void* data) = 0;
  /// Advances the sum without blocking; true once it is complete (or was never started).
  virtual bool test() = 0;
  /// Completes the sum: host memory holds the result; device memory is ready for the library
  /// stream's later work.
  virtual void wait() = 0;
};

/// The engine interface. Host collectives take host memory; data collectives take memory().
/// Every rank calls the same collectives in the same order (MPI's rule).
class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// "single process", "MPI", "NCCL": for logs and messages.
  virtual const char* name() const = 0;
  virtual Memory memory() const = 0;

  /// all[r * n, (r + 1) * n) = rank r's `mine` (n bytes on every rank), on every rank.
  virtual void allgather_bytes(const void* mine, std::size_t n, void* all) = 0;
  /// Root's n bytes to every rank.
  virtual void broadcast_bytes(void* data, std::size_t n, int root) = 0;
  /// Ends every rank of the job with exit code `code` (the message is already written).
  [[noreturn]] virtual void abort(int code) = 0;

  /// Rows of width `cols` (elements), rank r's at rows [row_offsets[r], row_offsets[r + 1]) of
  /// `all`, gathered on every rank; `mine` may be the rank's own rows inside `all`.
  virtual void allgather_rows(DType type, const void* mine, std::span<const Index> row_offsets, Index cols,
                              void* all) = 0;
  /// allgather_rows to one rank: `all` (row_offsets.back() rows) is written on `root` only and
  /// may be null elsewhere. For outputs that one rank writes: 1/N of the allgather's traffic and
  /// memory. An engine without its own throws (the step never needs it).
  virtual void gather_rows(DType type, const void* mine, std::span<const Index> row_offsets, Index cols, void* all,
                           int root) {
    (void)type, (void)mine, (void)row_offsets, (void)cols, (void)all, (void)root;
    detail::fail("dist::Comm::gather_rows: the ", name(), " engine has none; use allgather_rows");
  }
  /// A reusable in-place sum over ranks of n elements.
  virtual std::unique_ptr<SumSlot> plan_sum(DType type, Index n) = 0;
  /// plan_sum's first half (reduce-scatter): after wait(), this rank's chunk
  /// (balanced_range(n, size(), rank()), dist/split.hpp) holds the sum, added in rank order; the
  /// other elements are unspecified. For a sharded optimizer, which then gathers parameters
  /// instead of gradients. An engine without its own does the whole sum (a valid result too).
  virtual std::unique_ptr<SumSlot> plan_reduce_scatter(DType type, Index n) { return plan_sum(type, n); }
};

}  // namespace sakura::dist
