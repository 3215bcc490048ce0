// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// RowSet: a subset of a data set's cells (a split) kept as one bit per cell, or as nothing at all
/// when it holds every cell, so an atlas's splits cost a few bits per cell instead of 8 bytes.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <iterator>
#include <span>
#include <vector>

#include "sakura/error.hpp"
#include "sakura/tensor/tensor.hpp"

namespace sakura::data {

/// Members are visited in ascending order; the k-th member is found in O(log n) through a count
/// of members before every 512 cells (4 bytes per 512 cells).
/// Example:
///   auto s = RowSet::from_mask(mask);   // mask: one char per cell
///   for (Index r : s) ...;              // ascending
///   Index third = s.select(2);
class RowSet {
 public:
  RowSet() = default;

  /// Every cell of a data set of n cells.
  static RowSet all(Index n) {
    detail::require(n >= 0, "RowSet: negative size ", n);
    RowSet s;
    s.universe_ = s.size_ = n;
    s.full_ = true;
    return s;
  }
  /// The cells whose mask entry is not 0.
  static RowSet from_mask(std::span<const char> mask) {
    RowSet s;
    s.universe_ = static_cast<Index>(mask.size());
    s.words_.assign((mask.size() + 63) / 64, 0);
    for (std::size_t i = 0; i < mask.size(); ++i)
      if (mask[i]) s.words_[i / 64] |= std::uint64_t{1} << (i % 64);
    s.index();
    return s;
  }

  Index size() const { return size_; }
  bool empty() const { return size_ == 0; }
  /// Cells of the data set the set is part of.
  Index universe() const { return universe_; }
  bool contains(Index r) const {
    if (r < 0 || r >= universe_) return false;
    return full_ || ((words_[static_cast<std::size_t>(r / 64)] >> (r % 64)) & 1u);
  }

  /// The k-th member (0-based, ascending).
  Index select(Index k) const {
    if (k < 0 || k >= size_) detail::fail("RowSet: member ", k, " of a set of ", size_);
    if (full_) return k;
    // the last 512-cell group with fewer than k + 1 members before it
    const auto g = static_cast<std::size_t>(
        std::upper_bound(before_.begin(), before_.end(), static_cast<std::uint32_t>(k)) - before_.begin() - 1);
    auto left = static_cast<std::uint64_t>(k) - before_[g];
    for (std::size_t w = g * kWordsPerGroup;; ++w) {
      const auto n = static_cast<std::uint64_t>(std::popcount(words_[w]));
      if (left < n) return static_cast<Index>(w * 64 + select_in_word(words_[w], static_cast<unsigned>(left)));
      left -= n;
    }
  }

  /// Ascending members; `from_member(k)` starts at the k-th.
  class Iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Index;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = Index;
    Iterator() = default;
    Index operator*() const { return row_; }
    Iterator& operator++() {
      row_ = set_->next_from(row_ + 1);
      return *this;
    }
    Iterator operator++(int) {
      Iterator was = *this;
      ++*this;
      return was;
    }
    bool operator==(const Iterator& o) const { return row_ == o.row_; }

   private:
    friend class RowSet;
    Iterator(const RowSet* s, Index row) : set_(s), row_(row) {}
    const RowSet* set_ = nullptr;
    Index row_ = 0;
  };
  Iterator begin() const { return {this, next_from(0)}; }
  Iterator end() const { return {this, universe_}; }
  Iterator from_member(Index k) const { return k >= size_ ? end() : Iterator(this, select(k)); }

  /// Writes members [k, k + out.size()) into out (fewer at the end); returns how many.
  std::size_t copy(Index k, std::span<Index> out) const {
    std::size_t n = 0;
    for (auto it = from_member(k); n < out.size() && it != end(); ++it) out[n++] = *it;
    return n;
  }

  bool operator==(const RowSet& o) const {
    if (universe_ != o.universe_ || size_ != o.size_) return false;
    if (full_ || o.full_) return size_ == universe_;
    return words_ == o.words_;
  }

 private:
  static constexpr std::size_t kWordsPerGroup = 8;  // 512 cells

  /// Smallest member >= r, or universe_.
  Index next_from(Index r) const {
    if (r >= universe_) return universe_;
    if (full_) return r;
    auto w = static_cast<std::size_t>(r / 64);
    std::uint64_t bits = words_[w] & (~std::uint64_t{0} << (r % 64));
    while (bits == 0) {
      if (++w == words_.size()) return universe_;
      bits = words_[w];
    }
    return static_cast<Index>(w * 64 + static_cast<std::size_t>(std::countr_zero(bits)));
  }
  static unsigned select_in_word(std::uint64_t w, unsigned k) {
    for (; k > 0; --k) w &= w - 1;  // drop the k lowest set bits
    return static_cast<unsigned>(std::countr_zero(w));
  }
  void index() {
    detail::require(universe_ <= (Index{1} << 32) - 1, "RowSet: ", universe_, " cells are more than 2^32 - 1");
    before_.clear();
    std::uint32_t count = 0;
    for (std::size_t w = 0; w < words_.size(); ++w) {
      if (w % kWordsPerGroup == 0) before_.push_back(count);
      count += static_cast<std::uint32_t>(std::popcount(words_[w]));
    }
    size_ = count;
    full_ = size_ == universe_;
    if (full_) {  // no bits needed
      words_ = {};
      before_ = {};
    }
  }

  Index universe_ = 0, size_ = 0;
  bool full_ = false;
  std::vector<std::uint64_t> words_;
  std::vector<std::uint32_t> before_;  ///< members before each group of kWordsPerGroup words
};

}  // namespace sakura::data
