// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Feed: the batches a Runner trains and evaluates on. In memory it fills them on the calling
/// thread (data::Loader). For backed data (X on disk) a background thread reads and fills the
/// next batch of each split while the step runs (two batch buffers per split), and the next
/// evaluation chunk while one is evaluated; the step still allocates nothing once warm.
/// On N ranks every rank draws the same global batches and fills (and reads from disk) only its
/// own rows of each (story/ranks.hpp's own_rows), as the controller's distributed step expects.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "sakura/data/backed.hpp"
#include "sakura/data/loader.hpp"
#include "sakura/data/row_set.hpp"
#include "sakura/data/sampling.hpp"
#include "sakura/story/ranks.hpp"

namespace sakura::story {

/// Example:
///   Feed feed(session.data());                            // or Feed(data, rank, ranks)
///   feed.reset(std::vector<Index>{100});                  // one split, batches of 100
///   Batch<float>& b = feed.next(0, sampler);              // sampler.take() (this rank's rows), filled
///   feed.chunks(rows, 2048, [&](std::span<const Index> cells, Batch<float>& b) { ... });  // b: own rows of cells
/// Errors of the background thread (a damaged or changed file) are rethrown by the call that
/// needs the batch, as the sakura::Error they were.
class Feed {
 public:
  explicit Feed(const data::TrainingData<float>& d, int rank = 0, int ranks = 1)
      : d_(&d), loader_(d), rank_(rank), ranks_(ranks) {
    detail::require(ranks >= 1 && rank >= 0 && rank < ranks, "Feed: rank ", rank, " of ", ranks);
  }
  Feed(const Feed&) = delete;
  Feed& operator=(const Feed&) = delete;
  ~Feed() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    work_.notify_all();
    if (worker_.joinable()) worker_.join();  // finishes the read in progress: buffers outlive it
  }

  bool backed() const { return d_->backed != nullptr; }
  Batch<float> make_batch(Index capacity) const { return loader_.make_batch(capacity); }

  /// Streams for an item's splits, one per sampler (batches of its batch_size). Whatever was
  /// being read is waited for and dropped.
  void reset(std::span<const data::Sampler> samplers) {
    for (auto& s : train_) idle(s);
    idle(eval_);
    train_.resize(samplers.size());
    for (std::size_t k = 0; k < samplers.size(); ++k) size(train_[k], samplers[k].batch_size(), &samplers[k]);
    queue_.assign(2 * (train_.size() + 1), Job{});
    head_ = 0;
  }

  /// The next batch of split k: this rank's rows of s.take(), filled. Backed: the batch read ahead
  /// for it when it is the one taken (it always is in a story), and the one after it is started.
  Batch<float>& next(std::size_t k, data::Sampler& s) {
    Stream& st = train_.at(k);
    const Index position = s.position();
    const std::span<const Index> rows = s.take();
    if (!backed()) {
      loader_.fill(own(rows), st.buf[0].batch);
      return st.buf[0].batch;
    }
    Buffer& b = st.buf[st.cur];
    collect(b);
    if (b.state != Buffer::State::Done || b.pass != s.pass() || b.position != position ||
        !std::equal(rows.begin(), rows.end(), b.rows.begin(), b.rows.end())) {
      queue(st, b, &s, position);
      collect(b);
    }
    b.state = Buffer::State::Idle;
    st.cur ^= 1;
    if (position + 1 < s.batches()) queue(st, st.buf[st.cur], &s, position + 1);
    return b.batch;
  }

  /// Evaluation: f(cells, batch) for `rows` in chunks of up to `capacity` cells, in order; `cells`
  /// is the whole chunk, the batch holds this rank's rows of it. Rows are a RowSet (ascending) or
  /// any span.
  template <class Rows, class F>
  void chunks(const Rows& rows, Index capacity, F&& f) {
    const Index total = count(rows);
    if (total == 0) return;
    idle(eval_);
    size(eval_, capacity, nullptr);
    if (!backed()) {
      for (Index first = 0; first < total; first += capacity) {
        Buffer& b = eval_.buf[0];
        chunk_rows(rows, first, std::min(capacity, total - first), b.rows);
        loader_.fill(own(b.rows), b.batch);
        f(std::span<const Index>(b.rows), b.batch);
      }
      return;
    }
    auto start = [&](Buffer& b, Index first) {
      chunk_rows(rows, first, std::min(capacity, total - first), b.rows);
      queue(eval_, b, nullptr, first);
    };
    start(eval_.buf[0], 0);
    for (Index first = 0, i = 0; first < total; first += capacity, ++i) {
      Buffer& b = eval_.buf[i & 1];
      collect(b);
      b.state = Buffer::State::Idle;
      if (first + capacity < total) start(eval_.buf[(i + 1) & 1], first + capacity);
      f(std::span<const Index>(b.rows), b.batch);
    }
  }

  /// Cell names (dumps): from memory, or read from the file.
  void names(std::span<const Index> rows, std::vector<std::string>& out) const {
    if (backed()) return d_->backed->source->names(rows, out);
    out.resize(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) out[i] = d_->cells[static_cast<std::size_t>(rows[i])];
  }

 private:
  /// One batch and the read that fills it. The main thread sets the job and queues it; the worker
  /// fills the batch and marks it done (state and error under mu_).
  struct Buffer {
    enum class State { Idle, Queued, Done };
    Batch<float> batch;
    std::vector<Index> rows;  ///< the batch's cells, in batch order
    const data::Sampler* sampler = nullptr;  ///< blocks mode: where its fetches' cells come from
    std::int64_t pass = -1;
    Index position = -1, first_fetch = 0, last_fetch = -1;
    State state = State::Idle;
    std::exception_ptr error;
  };
  /// A split's (or the evaluation's) two buffers, and what only the worker touches: the rows read
  /// (a blocks-mode fetch serves several batches) and the staging area.
  struct Stream {
    Buffer buf[2];
    int cur = 0;
    Index capacity = 0, fetch = 0;
    std::vector<data::FetchedRows<float>> fetched;
    std::vector<const data::FetchedRows<float>*> from;
    std::unique_ptr<data::BackedStage<float>> stage;
  };

  static Index count(const data::RowSet& r) { return r.size(); }
  static Index count(std::span<const Index> r) { return static_cast<Index>(r.size()); }
  static void chunk_rows(const data::RowSet& r, Index first, Index n, std::vector<Index>& out) {
    out.resize(static_cast<std::size_t>(n));
    r.copy(first, out);
  }
  static void chunk_rows(std::span<const Index> r, Index first, Index n, std::vector<Index>& out) {
    out.assign(r.begin() + first, r.begin() + first + n);
  }

  /// This rank's rows of a batch or chunk (all of them on one rank).
  std::span<const Index> own(std::span<const Index> rows) const { return own_rows(rows, rank_, ranks_); }
  /// Blocks mode reads whole fetches for the batches after them: one rank only. On N ranks each
  /// reads its rows of each batch alone (ascending, from the batch's few blocks).
  bool blocks(const data::Sampler* s) const {
    return ranks_ == 1 && s && s->mode() == data::SamplingOptions::Mode::Blocks;
  }

  /// Buffers for this rank's rows of batches of `batch_cells` cells (the second, and room for the
  /// rows read, only when backed), kept when large enough. Blocks mode keeps each fetch read for
  /// the batches after it (room for one fetch more than a batch can span); otherwise a batch's
  /// cells are read alone.
  void size(Stream& s, Index batch_cells, const data::Sampler* sampler) {
    const Index capacity = own_capacity(batch_cells, ranks_);
    const bool blocks = this->blocks(sampler);
    const Index fetch = blocks ? sampler->fetch_capacity() : capacity;
    const std::size_t fetches = blocks ? static_cast<std::size_t>((capacity + fetch - 1) / fetch + 3) : 1;
    if (s.capacity >= capacity && s.fetch >= fetch && (!backed() || s.fetched.size() >= fetches)) return;
    s = Stream{};
    s.capacity = capacity;
    s.fetch = fetch;
    for (int i = 0; i < (backed() ? 2 : 1); ++i) {
      s.buf[i].batch = loader_.make_batch(capacity);
      s.buf[i].rows.reserve(static_cast<std::size_t>(batch_cells));
    }
    if (!backed()) return;
    const auto max_row = static_cast<std::size_t>(d_->backed->source->max_row_entries());
    d_->backed->source->reserve(fetch);
    s.fetched.resize(fetches);
    for (auto& f : s.fetched) {
      f.rows.reserve(static_cast<std::size_t>(fetch));
      f.x.indptr.reserve(static_cast<std::size_t>(fetch) + 1);
      f.x.indices.reserve(static_cast<std::size_t>(fetch) * max_row);
      f.x.values.reserve(static_cast<std::size_t>(fetch) * max_row);
    }
    s.from.reserve(fetches);
  }

  /// Waits until neither buffer of s is being read (and forgets their results).
  void idle(Stream& s) {
    for (Buffer& b : s.buf) {
      std::unique_lock lock(mu_);
      done_.wait(lock, [&] { return b.state != Buffer::State::Queued; });
      b.state = Buffer::State::Idle;
      b.error = nullptr;
    }
  }

  /// Queues the read of batch `position` of sampler s (training), or of b.rows (s == nullptr).
  void queue(Stream& st, Buffer& b, const data::Sampler* s, Index position) {
    if (s) {
      s->batch_rows(position, b.rows);
      b.pass = s->pass();
      const auto [f0, f1] = s->batch_fetches(position);
      b.first_fetch = f0;
      b.last_fetch = f1;
      b.sampler = blocks(s) ? s : nullptr;
    } else {
      b.pass = -1;
      b.sampler = nullptr;
    }
    b.position = position;
    {
      std::lock_guard lock(mu_);
      b.state = Buffer::State::Queued;
      b.error = nullptr;
      queue_[(head_ + queued_++) % queue_.size()] = {&st, &b};
      if (!worker_.joinable()) worker_ = std::thread([this] { run(); });
    }
    work_.notify_one();
  }

  /// Waits for b's read; rethrows its error.
  void collect(Buffer& b) {
    std::unique_lock lock(mu_);
    done_.wait(lock, [&] { return b.state != Buffer::State::Queued; });
    if (b.error) {
      const std::exception_ptr e = b.error;
      b.error = nullptr;
      b.state = Buffer::State::Idle;
      lock.unlock();
      std::rethrow_exception(e);
    }
  }

  /// The worker: reads and fills queued buffers in order. SIGINT/SIGTERM stay with the main thread.
  void run() {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, nullptr);
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mu_);
        work_.wait(lock, [&] { return stop_ || queued_ > 0; });
        if (stop_) return;
        job = queue_[head_];
        head_ = (head_ + 1) % queue_.size();
        --queued_;
      }
      std::exception_ptr error;
      try {
        fill(*job.stream, *job.buffer);
      } catch (...) {
        error = std::current_exception();
      }
      {
        std::lock_guard lock(mu_);
        job.buffer->error = error;
        job.buffer->state = Buffer::State::Done;
      }
      done_.notify_all();
    }
  }

  /// Worker: reads what b's batch needs (or finds it read) and fills the batch.
  void fill(Stream& st, Buffer& b) {
    if (!st.stage) st.stage = std::make_unique<data::BackedStage<float>>(*d_, st.capacity);
    st.from.clear();
    if (b.sampler) {
      for (Index f = b.first_fetch; f <= b.last_fetch; ++f) st.from.push_back(&fetched(st, b, f));
    } else {  // the batch's own cells (this rank's), ascending and distinct
      data::FetchedRows<float>& f = st.fetched[0];
      const std::span<const Index> mine = own(b.rows);
      f.rows.assign(mine.begin(), mine.end());
      std::sort(f.rows.begin(), f.rows.end());
      f.rows.erase(std::unique(f.rows.begin(), f.rows.end()), f.rows.end());
      f.pass = -1;
      d_->backed->source->read(f.rows, f.x);
      st.from.push_back(&f);
    }
    st.stage->fill(own(b.rows), st.from, b.batch);
  }

  /// Fetch f of b's pass, read now unless an earlier batch read it (the least recently read
  /// entry not needed by b is replaced).
  const data::FetchedRows<float>& fetched(Stream& st, const Buffer& b, Index f) {
    for (auto& e : st.fetched)
      if (e.pass == b.pass && e.fetch == f) return e;
    data::FetchedRows<float>* victim = nullptr;
    for (auto& e : st.fetched) {
      const bool needed = e.pass == b.pass && e.fetch >= b.first_fetch && e.fetch <= b.last_fetch;
      if (!needed && (!victim || e.stamp < victim->stamp)) victim = &e;
    }
    detail::require(victim != nullptr, "backed data: a batch spans more fetches than are kept");
    victim->pass = -1;  // until the read succeeds
    b.sampler->fetch_rows(f, victim->rows);
    d_->backed->source->read(victim->rows, victim->x);
    victim->pass = b.pass;
    victim->fetch = f;
    victim->stamp = ++stamp_;
    return *victim;
  }

  struct Job {
    Stream* stream = nullptr;
    Buffer* buffer = nullptr;
  };

  const data::TrainingData<float>* d_;
  data::Loader<float> loader_;
  std::vector<Stream> train_;
  Stream eval_;
  // the queue of buffers to read (each is queued at most once at a time: two per stream)
  std::mutex mu_;
  std::condition_variable work_, done_;
  std::vector<Job> queue_ = std::vector<Job>(2);
  std::size_t head_ = 0, queued_ = 0;
  bool stop_ = false;
  std::uint64_t stamp_ = 0;
  std::thread worker_;
  int rank_ = 0, ranks_ = 1;
};

}  // namespace sakura::story
