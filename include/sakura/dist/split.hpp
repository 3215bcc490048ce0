// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// How n items (a batch's rows, a gradient bucket's elements) are split over ranks: contiguous
/// ranges, the first n % parts ranges one item longer, so every rank can compute every range.
#pragma once

#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "sakura/error.hpp"
#include "sakura/tensor/tensor.hpp"

namespace sakura::dist {

/// Range i of n items split into `parts` balanced contiguous ranges: {begin, count}.
/// Example: 10 items over 3 parts -> {0, 4}, {4, 3}, {7, 3}.
inline std::pair<Index, Index> balanced_range(Index n, int parts, int i) {
  const Index base = n / parts, extra = n % parts;
  return {i * base + std::min<Index>(i, extra), base + (i < extra ? 1 : 0)};
}

/// The rows of a global batch held by each rank, in rank order: rank r holds rows
/// [begin(r), begin(r) + count(r)). Uneven splits are allowed; a rank may hold none.
class RowSplit {
 public:
  RowSplit() = default;
  /// Explicit rows per rank (e.g. the rows each rank read).
  explicit RowSplit(const std::vector<Index>& counts) { assign(counts); }
  /// `rows` split as balanced_range does.
  static RowSplit balanced(Index rows, int ranks) {
    RowSplit s;
    s.assign_balanced(rows, ranks);
    return s;
  }
  /// Re-splits in place (the offsets' storage is kept: no allocation once sized, for per-step use).
  void assign(std::span<const Index> counts) {
    detail::require(!counts.empty(), "RowSplit: no ranks");
    offsets_.resize(counts.size() + 1);
    offsets_[0] = 0;
    for (std::size_t r = 0; r < counts.size(); ++r) {
      detail::require(counts[r] >= 0, "RowSplit: rank ", r, " has a negative row count ", counts[r]);
      offsets_[r + 1] = offsets_[r] + counts[r];
    }
  }
  void assign_balanced(Index rows, int ranks) {
    detail::require(rows >= 0 && ranks > 0, "RowSplit::balanced: ", rows, " rows over ", ranks, " ranks");
    offsets_.resize(static_cast<std::size_t>(ranks) + 1);
    for (int r = 0; r <= ranks; ++r)
      offsets_[static_cast<std::size_t>(r)] = r < ranks ? balanced_range(rows, ranks, r).first : rows;
  }

  int ranks() const { return offsets_.empty() ? 0 : static_cast<int>(offsets_.size()) - 1; }
  Index begin(int r) const { return offsets_[static_cast<std::size_t>(r)]; }
  Index count(int r) const { return begin(r + 1) - begin(r); }
  Index total() const { return offsets_.empty() ? 0 : offsets_.back(); }
  /// ranks() + 1 row offsets, the last one total().
  const std::vector<Index>& offsets() const { return offsets_; }

 private:
  std::vector<Index> offsets_;
};

}  // namespace sakura::dist
