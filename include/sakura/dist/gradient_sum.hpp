// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// GradientSum<T>: the gradient reduction of data-parallel training, in buckets that can be started
/// while the rest of backward runs. Each bucket is summed over ranks in rank order (reduce-scatter
/// by rank-ordered summation, then allgather), so the result does not depend on the bucketing,
/// the engine or the timing: every element is x_0 + x_1 + ... + x_{N-1}, on every rank.
///
/// Example (one flat gradient buffer, buckets ready from the last layer back):
///   dist::GradientSum<float> sum(comm, dist::GradientSum<float>::even_buckets(n, 1 << 20));
///   for (Index b = sum.buckets() - 1; b >= 0; --b) { /* backward fills bucket b */ sum.start(b, grad); sum.progress(); }
///   sum.wait_all();                                             // grad holds the global sum
///
/// A sharded optimizer (ZeRO stage 1) plans it with Result::OwnChunk: each bucket is only
/// reduce-scattered, the rank updates its chunk(b) of the parameters, and gather_chunks() brings
/// every rank the others' chunks: the same bytes as the gradients' allgather, 1/N of the update.
#pragma once

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "sakura/dist/comm.hpp"

namespace sakura::dist {

/// What a waited bucket holds: the sum everywhere, or only in this rank's chunk(b).
enum class Result { EveryElement, OwnChunk };

template <class T = float>
class GradientSum {
 public:
  /// Buckets of the given sizes, back to back from element 0; their scratch is allocated here,
  /// once (steps then allocate nothing). Wait for every started bucket before destroying it:
  /// destroyed with sums in flight (unwinding to an abort) it never blocks, and leaks their scratch.
  GradientSum(const Comm& comm, const std::vector<Index>& bucket_sizes, Result result = Result::EveryElement)
      : comm_(comm) {
    Index offset = 0;
    for (std::size_t b = 0; b < bucket_sizes.size(); ++b) {
      const Index n = bucket_sizes[b];
      detail::require(n >= 0, "GradientSum: bucket ", b, " has negative size ", n);
      Transport& t = comm_.transport();
      buckets_.push_back({offset, n,
                          result == Result::OwnChunk ? t.plan_reduce_scatter(dtype_of<T>(), n) : t.plan_sum(dtype_of<T>(), n),
                          false, RowSplit::balanced(n, comm_.size())});
      offset += n;
    }
    total_ = offset;
  }
  /// Sizes of consecutive buckets of at most `max_elems` elements covering n, as equal as possible.
  static std::vector<Index> even_buckets(Index n, Index max_elems) {
    detail::require(n >= 0 && max_elems > 0, "GradientSum::even_buckets: ", n, " elements in buckets of ", max_elems);
    const Index count = std::max<Index>(1, (n + max_elems - 1) / max_elems);
    std::vector<Index> sizes(static_cast<std::size_t>(count));
    for (Index b = 0; b < count; ++b) sizes[static_cast<std::size_t>(b)] = balanced_range(n, int(count), int(b)).second;
    return sizes;
  }

  Index buckets() const { return static_cast<Index>(buckets_.size()); }
  Index offset(Index b) const { return at(b).offset; }
  Index size(Index b) const { return at(b).size; }
  Index total() const { return total_; }
  /// This rank's chunk of bucket b: {first element, count} (balanced_range over the ranks).
  std::pair<Index, Index> chunk(Index b) const {
    const RowSplit& c = at(b).chunks;
    return {c.begin(comm_.rank()), c.count(comm_.rank())};
  }
  /// Every rank's chunk(b) of `bucket` (size(b) elements, e.g. parameter values each rank updated
  /// in its chunk) to every rank, in place. Blocking; a collective like start().
  void gather_chunks(Index b, T* bucket) {
    const Bucket& k = at(b);
    const Index first = k.chunks.begin(comm_.rank());
    comm_.allgather_rows<T>(MatrixRef<const T>(bucket + first, k.chunks.count(comm_.rank()), 1), k.chunks,
                            MatrixRef<T>(bucket, k.size, 1));
  }

  /// Starts the sum of bucket b of the flat buffer `data` (total() elements): elements
  /// [offset(b), offset(b) + size(b)) must stay untouched until the bucket is waited for.
  /// Every rank starts the buckets in the same order.
  void start(Index b, T* data) { start_bucket(b, data + at(b).offset); }
  /// start() for a bucket that is not part of one flat buffer: its size(b) elements at `bucket`
  /// (e.g. one parameter's gradient tensor, when each parameter is a bucket).
  void start_bucket(Index b, T* bucket) {
    Bucket& k = at(b);
    detail::require(!k.in_flight, "GradientSum: bucket ", b, " started again before wait()");
    k.slot->start(bucket);
    k.in_flight = true;
  }
  /// Lets the engine move data for every bucket in flight (call between pieces of backward).
  void progress() {
    for (Bucket& k : buckets_)
      if (k.in_flight) k.slot->test();
  }
  void wait(Index b) {
    Bucket& k = at(b);
    if (!k.in_flight) return;
    k.slot->wait();
    k.in_flight = false;
  }
  void wait_all() {
    for (Index b = 0; b < buckets(); ++b) wait(b);
  }
  /// Every bucket, started in order and waited for: blocking.
  void run(T* data) {
    for (Index b = 0; b < buckets(); ++b) start(b, data);
    wait_all();
  }

 private:
  struct Bucket {
    Index offset, size;
    std::unique_ptr<SumSlot> slot;
    bool in_flight;
    RowSplit chunks;  // each rank's chunk, as rows of width 1 (for allgather_rows)
  };
  Bucket& at(Index b) {
    detail::require(b >= 0 && b < buckets(), "GradientSum: bucket ", b, " outside [0, ", buckets(), ")");
    return buckets_[static_cast<std::size_t>(b)];
  }
  const Bucket& at(Index b) const { return const_cast<GradientSum*>(this)->at(b); }
  Comm comm_;
  std::vector<Bucket> buckets_;
  Index total_ = 0;
};

}  // namespace sakura::dist
