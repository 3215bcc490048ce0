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
#pragma once

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "sakura/dist/comm.hpp"

namespace sakura::dist {

template <class T = float>
class GradientSum {
 public:
  /// Buckets of the given sizes, back to back from element 0; their scratch is allocated here,
  /// once (steps then allocate nothing). Wait for every started bucket before destroying it:
  /// destroyed with sums in flight (unwinding to an abort) it never blocks, and leaks their scratch.
  GradientSum(const Comm& comm, const std::vector<Index>& bucket_sizes) : comm_(comm) {
    Index offset = 0;
    for (std::size_t b = 0; b < bucket_sizes.size(); ++b) {
      detail::require(bucket_sizes[b] >= 0, "GradientSum: bucket ", b, " has negative size ", bucket_sizes[b]);
      buckets_.push_back({offset, bucket_sizes[b], comm_.transport().plan_sum(dtype_of<T>(), bucket_sizes[b]), false});
      offset += bucket_sizes[b];
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
