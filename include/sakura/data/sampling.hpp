// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Sampler: the batches a story draws from a split, in one of two modes. `exact` draws what
/// BatchSampler draws (the same permutation, state and checkpoints) with 4 bytes per cell;
/// `blocks` shuffles blocks of consecutive cells and then the cells of a few blocks together,
/// so a reader on disk reads long runs of cells (what the fast AnnData loaders do).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "sakura/data/row_set.hpp"
#include "sakura/data/sampler.hpp"
#include "sakura/error.hpp"
#include "sakura/tensor/rng.hpp"

namespace sakura::data {

/// How batches are drawn (config: dataset.sampling, dataset.block_cells, dataset.blocks_per_fetch).
struct SamplingOptions {
  enum class Mode { Exact, Blocks };
  Mode mode = Mode::Exact;
  /// blocks: consecutive cells of the split per block; blocks_per_fetch blocks are read and
  /// shuffled together, and batches are cut from the shuffled cells in turn.
  Index block_cells = 64, blocks_per_fetch = 16;
};

/// A pass is a sequence of the split's cells cut into batches of batch_size (the last one shorter
/// unless drop_last), so both modes have BatchSampler's batch count per pass.
///   exact:  the sequence is a Fisher-Yates permutation of the cells, drawn as BatchSampler draws it.
///   blocks: the split's cells (ascending) form blocks of block_cells; a pass permutes the blocks
///           (Fisher-Yates, the sampler's generator), takes them blocks_per_fetch at a time (a
///           "fetch", the unit a reader reads: a few runs of consecutive cells) and shuffles each
///           fetch's cells with a generator keyed by (seed, pass, fetch), so a checkpoint holds only
///           the block order and the position.
/// Example:
///   Sampler s(splits.rows("overall_train"), 100, seed, false, {.mode = SamplingOptions::Mode::Blocks});
///   s.begin_epoch();
///   while (!s.exhausted()) loader.fill(s.take(), batch);
class Sampler {
 public:
  using State = BatchSampler::State;
  using Mode = SamplingOptions::Mode;

  Sampler() = default;
  /// `rows` must outlive the sampler (a Session's splits do).
  Sampler(const RowSet& rows, Index batch_size, std::uint64_t seed, bool drop_last = false, SamplingOptions o = {})
      : rows_(&rows), batch_(batch_size), drop_last_(drop_last), seed_(seed), opt_(o), rng_(seed) {
    detail::require(batch_size > 0, "batch_size must be positive (got ", batch_size, ")");
    detail::require(!rows.empty(), "cannot sample batches from an empty split");
    detail::require(!drop_last || rows.size() >= batch_size, "split has ", rows.size(),
                    " cells, fewer than one batch of ", batch_size, " (drop_last)");
    if (o.mode == Mode::Blocks)
      detail::require(o.block_cells > 0 && o.blocks_per_fetch > 0 && o.block_cells <= (Index{1} << 24) &&
                          o.blocks_per_fetch <= (Index{1} << 24),
                      "dataset.block_cells and dataset.blocks_per_fetch must be in [1, 2^24] (got ", o.block_cells,
                      " and ", o.blocks_per_fetch, ")");
    take_.reserve(static_cast<std::size_t>(batch_size));
  }

  Mode mode() const { return opt_.mode; }
  /// Batches per pass.
  Index batches() const { return drop_last_ ? size() / batch_ : (size() + batch_ - 1) / batch_; }
  Index batch_size() const { return batch_; }
  Index size() const { return rows_->size(); }
  /// Passes begun; with a fetch index, names a fetch uniquely (readers cache by it).
  std::int64_t pass() const { return epochs_; }
  bool exhausted() const { return epochs_ == 0 || position_ >= batches(); }
  /// Batches taken in this pass.
  Index position() const { return position_; }

  /// Draws the next pass (no allocation after the first).
  void begin_epoch() {
    detail::require(epochs_ < std::numeric_limits<std::int64_t>::max(), "sampler: pass counter overflow");
    const Index n = units();
    order_.resize(static_cast<std::size_t>(n));
    if (opt_.mode == Mode::Exact) {
      auto at = order_.begin();
      for (Index r : *rows_) *at++ = static_cast<std::uint32_t>(r);  // ascending, as BatchSampler's rows
    } else {
      for (Index b = 0; b < n; ++b) order_[static_cast<std::size_t>(b)] = static_cast<std::uint32_t>(b);
    }
    for (std::size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng_.below(i)]);
    position_ = 0;
    ++epochs_;
    on_new_order();
  }

  /// The next batch's rows (valid until the next take() or begin_epoch()).
  std::span<const Index> take() {
    detail::require(!exhausted(), "sampler exhausted: call begin_epoch() first");
    batch_rows(position_++, take_);
    return take_;
  }

  /// Rows of the batch at `position` of this pass, into out (no allocation once out holds a batch).
  void batch_rows(Index position, std::vector<Index>& out) const {
    const auto [s0, s1] = batch_span(position);
    out.resize(static_cast<std::size_t>(s1 - s0));
    if (opt_.mode == Mode::Exact) {
      std::copy(order_.begin() + s0, order_.begin() + s1, out.begin());
      return;
    }
    for (Index s = s0; s < s1;) {  // the pass's sequence, fetch by fetch
      const Index f = fetch_at(s);
      const std::vector<Index>& cells = shuffled_fetch(f);
      const Index from = s - fetch_start(f), n = std::min<Index>(s1 - s, static_cast<Index>(cells.size()) - from);
      std::copy(cells.begin() + from, cells.begin() + from + n, out.begin() + (s - s0));
      s += n;
    }
  }

  /// The fetches (reading units) the batch at `position` draws its cells from: [first, last].
  /// In exact mode a fetch is the batch itself.
  std::pair<Index, Index> batch_fetches(Index position) const {
    if (opt_.mode == Mode::Exact) return {position, position};
    const auto [s0, s1] = batch_span(position);
    return {fetch_at(s0), fetch_at(s1 - 1)};
  }
  /// The cells of fetch f of this pass, ascending (what a reader reads at once).
  void fetch_rows(Index f, std::vector<Index>& out) const {
    if (opt_.mode == Mode::Exact) {
      batch_rows(f, out);
      std::sort(out.begin(), out.end());
      return;
    }
    out.clear();
    for (Index b : fetch_blocks(f)) append_block(b, out);
    std::sort(out.begin(), out.end());  // blocks come in shuffled order; each is ascending
  }
  /// Most cells a fetch holds.
  Index fetch_capacity() const { return opt_.mode == Mode::Exact ? batch_ : opt_.block_cells * opt_.blocks_per_fetch; }

  State state() const {
    State s;
    s.rng = rng_.state();
    s.order.assign(order_.begin(), order_.end());
    s.position = position_;
    s.epochs = epochs_;
    return s;
  }

  /// Restores a state, or throws and changes nothing: the saved pass must be a permutation of this
  /// sampler's cells (exact) or blocks (blocks), or empty (no pass begun), its position within
  /// [0, batches()] (0 before a pass), its pass count >= 1 exactly when a pass began, and the
  /// generator's lane within [0, 4]. `what` names where the state comes from; `fix` ends each message.
  void set_state(const State& s, const std::string& what = "sampler", const std::string& fix = "") {
    const std::string end = fix.empty() ? "" : "; " + fix;
    const bool exact = opt_.mode == Mode::Exact;
    if (!s.order.empty()) {
      const char* unit = exact ? " cells" : " blocks";
      detail::require(static_cast<Index>(s.order.size()) == units(), what, ", field order: the saved pass has ",
                      s.order.size(), unit, " but the split has ", units(), unit,
                      exact ? "" : " of dataset.block_cells cells (was it saved with another dataset.sampling?)", end);
      std::vector<bool> seen(static_cast<std::size_t>(exact ? rows_->universe() : units()), false);
      for (Index r : s.order) {
        const bool ok = exact ? rows_->contains(r) : (r >= 0 && r < units());
        detail::require(ok && !seen[static_cast<std::size_t>(r)], what,
                        ", field order: the saved pass is not a permutation of the split's", unit, end);
        seen[static_cast<std::size_t>(r)] = true;
      }
    }
    const Index last = s.order.empty() ? 0 : batches();
    detail::require(s.position >= 0 && s.position <= last, what, ", field position: saved position ", s.position,
                    " outside [0, ", last, "] (", batches(), " batches of ", batch_, " per pass",
                    s.order.empty() ? ", no pass begun" : "", ")", end);
    detail::require(s.epochs >= 0 && s.epochs < std::numeric_limits<std::int64_t>::max() &&
                        (s.epochs == 0) == s.order.empty(),
                    what, ", field epochs: ", s.epochs, " passes begun does not fit a pass order of ", s.order.size(),
                    exact ? " cells" : " blocks", end);
    detail::require(s.rng.lane <= 4, what, ", field rng.lane: ", s.rng.lane, " is outside [0, 4]", end);
    order_.assign(s.order.begin(), s.order.end());
    position_ = s.position;
    epochs_ = s.epochs;
    rng_.set_state(s.rng);
    on_new_order();
  }

 private:
  /// What a pass permutes: cells (exact) or blocks.
  Index units() const {
    return opt_.mode == Mode::Exact ? size() : (size() + opt_.block_cells - 1) / opt_.block_cells;
  }
  void on_new_order() {
    if (opt_.mode == Mode::Exact) return;
    cached_[0].fetch = cached_[1].fetch = -1;
    short_fetch_ = -1;
    const Index last = units() - 1;
    for (std::size_t i = 0; i < order_.size(); ++i)
      if (static_cast<Index>(order_[i]) == last) short_fetch_ = static_cast<Index>(i) / opt_.blocks_per_fetch;
  }

  std::pair<Index, Index> batch_span(Index position) const {
    detail::require(epochs_ > 0 && position >= 0 && position < batches(), "sampler: batch ", position,
                    " outside the pass (", batches(), " batches)");
    const Index s0 = position * batch_;
    return {s0, std::min(s0 + batch_, size())};
  }

  // ---- blocks mode: the pass's sequence of cells is fetch 0's shuffled cells, then fetch 1's, ...
  Index block_len(Index b) const { return std::min(opt_.block_cells, size() - b * opt_.block_cells); }
  /// Cells the last block lacks (it alone may be short).
  Index short_by() const { return opt_.block_cells - block_len(units() - 1); }
  Index fetch_count() const { return (units() + opt_.blocks_per_fetch - 1) / opt_.blocks_per_fetch; }
  Index fetch_start(Index f) const {
    return f * opt_.blocks_per_fetch * opt_.block_cells - (short_fetch_ >= 0 && short_fetch_ < f ? short_by() : 0);
  }
  /// The fetch holding position s of the sequence.
  Index fetch_at(Index s) const {
    Index f = std::min(s / (opt_.blocks_per_fetch * opt_.block_cells), fetch_count() - 1);
    if (f + 1 < fetch_count() && fetch_start(f + 1) <= s) ++f;
    return f;
  }
  std::span<const std::uint32_t> fetch_blocks(Index f) const {
    const Index b0 = f * opt_.blocks_per_fetch, b1 = std::min(b0 + opt_.blocks_per_fetch, units());
    return {order_.data() + b0, static_cast<std::size_t>(b1 - b0)};
  }
  void append_block(Index b, std::vector<Index>& out) const {
    const std::size_t at = out.size();
    out.resize(at + static_cast<std::size_t>(block_len(b)));
    rows_->copy(b * opt_.block_cells, std::span<Index>(out).subspan(at));
  }
  /// Fetch f's cells in the order batches take them (kept for the two latest fetches).
  const std::vector<Index>& shuffled_fetch(Index f) const {
    for (auto& c : cached_)
      if (c.fetch == f) return c.cells;
    Cached& c = cached_[next_cache_];
    next_cache_ ^= 1;
    c.fetch = f;
    c.cells.clear();
    c.cells.reserve(static_cast<std::size_t>(fetch_capacity()));
    for (Index b : fetch_blocks(f)) append_block(b, c.cells);
    Rng shuffle(fetch_key(f));
    for (std::size_t i = c.cells.size(); i > 1; --i) std::swap(c.cells[i - 1], c.cells[shuffle.below(i)]);
    return c.cells;
  }
  /// splitmix64 of (seed, pass, fetch): the generator of one fetch's shuffle.
  std::uint64_t fetch_key(Index f) const {
    std::uint64_t z = seed_ ^ (0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(epochs_)) ^
                      (0xD1B54A32D192ED03ull * static_cast<std::uint64_t>(f + 1));
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  const RowSet* rows_ = nullptr;
  Index batch_ = 1;
  bool drop_last_ = false;
  std::uint64_t seed_ = 0;
  SamplingOptions opt_;
  Rng rng_;
  std::vector<std::uint32_t> order_;  ///< this pass: cells (exact) or blocks (blocks)
  Index position_ = 0;
  std::int64_t epochs_ = 0;
  std::vector<Index> take_;
  Index short_fetch_ = -1;  ///< blocks: the fetch holding the (possibly short) last block
  struct Cached {
    Index fetch = -1;
    std::vector<Index> cells;
  };
  mutable Cached cached_[2];
  mutable int next_cache_ = 0;
};

}  // namespace sakura::data
