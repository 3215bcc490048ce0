// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// BatchSampler: upstream's BatchSampler(SubsetRandomSampler(split), batch_size, drop_last) as an
/// object with an explicit, checkpointable state (own generator, permutation, position).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "sakura/error.hpp"
#include "sakura/tensor/rng.hpp"
#include "sakura/tensor/tensor.hpp"

namespace sakura::data {

/// Each pass ("epoch") visits the split's rows in a fresh random order, in batches of
/// `batch_size` (the last one smaller unless drop_last). A story calls begin_epoch() when
/// exhausted() and advances the weight schedules there (upstream's "epoch_end").
/// Example:
///   BatchSampler s(split_rows, 100, seed);
///   s.begin_epoch();
///   while (!s.exhausted()) fill(s.take(), batch);
class BatchSampler {
 public:
  /// Everything needed to continue exactly where a run stopped.
  struct State {
    Rng::State rng;
    std::vector<Index> order;  ///< this pass's permutation of the split's rows
    Index position = 0;        ///< batches already taken in this pass
    std::int64_t epochs = 0;   ///< passes begun
  };

  BatchSampler() = default;
  BatchSampler(std::vector<Index> rows, Index batch_size, std::uint64_t seed, bool drop_last = false)
      : rows_(std::move(rows)), batch_(batch_size), drop_last_(drop_last), rng_(seed) {
    detail::require(batch_size > 0, "batch_size must be positive (got ", batch_size, ")");
    detail::require(!rows_.empty(), "cannot sample batches from an empty split");
    detail::require(!drop_last || static_cast<Index>(rows_.size()) >= batch_size, "split has ", rows_.size(),
                    " cells, fewer than one batch of ", batch_size, " (drop_last)");
    st_.order.reserve(rows_.size());
  }

  /// Batches per pass.
  Index batches() const {
    const Index n = static_cast<Index>(rows_.size());
    return drop_last_ ? n / batch_ : (n + batch_ - 1) / batch_;
  }
  Index batch_size() const { return batch_; }
  Index size() const { return static_cast<Index>(rows_.size()); }
  bool exhausted() const { return st_.order.empty() || st_.position >= batches(); }

  /// Draws a new permutation and starts a pass (no allocation after the first).
  void begin_epoch() {
    detail::require(st_.epochs < std::numeric_limits<std::int64_t>::max(), "sampler: pass counter overflow");
    st_.order.assign(rows_.begin(), rows_.end());
    for (std::size_t i = st_.order.size(); i > 1; --i) std::swap(st_.order[i - 1], st_.order[rng_.below(i)]);
    st_.position = 0;
    ++st_.epochs;
  }
  /// The next batch's rows (valid until begin_epoch()).
  std::span<const Index> take() {
    detail::require(!exhausted(), "sampler exhausted: call begin_epoch() first");
    const Index b = st_.position++ * batch_;
    const Index e = std::min<Index>(b + batch_, static_cast<Index>(st_.order.size()));
    return {st_.order.data() + b, static_cast<std::size_t>(e - b)};
  }

  State state() const {
    State s = st_;
    s.rng = rng_.state();
    return s;
  }
  /// Restores a state, or throws and changes nothing: the saved pass must be a permutation of this
  /// sampler's rows (or empty: no pass begun), its position within [0, batches()] (0 before a pass),
  /// its pass count >= 1 exactly when a pass began, and the generator's lane within [0, 4].
  /// `what` names where the state comes from (e.g. a checkpoint record); `fix` ends each message.
  void set_state(const State& s, const std::string& what = "sampler", const std::string& fix = "") {
    const std::string end = fix.empty() ? "" : "; " + fix;
    if (!s.order.empty()) {
      detail::require(s.order.size() == rows_.size(), what, ", field order: the saved pass has ", s.order.size(),
                      " cells but the split has ", rows_.size(), end);
      std::vector<Index> a(s.order), b(rows_);
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      detail::require(a == b, what, ", field order: the saved pass is not a permutation of the split's cells", end);
    }
    detail::require(s.position >= 0 && s.position <= (s.order.empty() ? 0 : batches()), what,
                    ", field position: saved position ", s.position, " outside [0, ", s.order.empty() ? 0 : batches(),
                    "] (", batches(), " batches of ", batch_, " per pass", s.order.empty() ? ", no pass begun" : "",
                    ")", end);
    detail::require(s.epochs >= 0 && s.epochs < std::numeric_limits<std::int64_t>::max() &&
                        (s.epochs == 0) == s.order.empty(),
                    what, ", field epochs: ", s.epochs, " passes begun does not fit a pass order of ", s.order.size(),
                    " cells", end);
    detail::require(s.rng.lane <= 4, what, ", field rng.lane: ", s.rng.lane, " is outside [0, 4]", end);
    st_ = s;
    st_.order.reserve(rows_.size());
    rng_.set_state(s.rng);
  }

 private:
  std::vector<Index> rows_;
  Index batch_ = 1;
  bool drop_last_ = false;
  Rng rng_;
  State st_;
};

}  // namespace sakura::data
