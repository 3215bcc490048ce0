// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The MPI transport of dist::Comm (link sakura::mpi): host buffers, MPI's nonblocking collectives
/// for the data moves, the sums done by the Comm in rank order (never MPI_Allreduce, whose order
/// is unspecified). MpiSession initialises MPI for programs that do not already.
///
/// Example:
///   int main(int argc, char** argv) {
///     sakura::dist::MpiSession mpi(&argc, &argv);               // MPI_Init_thread(FUNNELED)
///     sakura::dist::Comm comm = sakura::dist::mpi_comm();       // a duplicate of MPI_COMM_WORLD
#pragma once

#if !defined(SAKURA_WITH_MPI) || !SAKURA_WITH_MPI
#error "sakura/dist/mpi.hpp needs MPI: link sakura::mpi (built when CMake finds MPI; Debian: libopenmpi-dev openmpi-bin)"
#endif

// the C API only: the deprecated C++ bindings (Open MPI's, MPICH's) are neither needed nor wanted
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "sakura/dist/comm.hpp"

namespace sakura::dist::detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;
inline void mpi_check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  fail("MPI call ", call, " failed: ", std::string(text, static_cast<std::size_t>(len)),
       " (a rank that died or aborted makes the others' calls fail: see its message)");
}
/// MPI counts are int: larger ones are an error naming the limit, never a silent wrap.
inline int mpi_count(Index n, const char* what) {
  require(n >= 0 && n <= INT_MAX, what, ": ", n, " elements exceed MPI's 32-bit counts (at most ", INT_MAX,
          "); split the data (smaller buckets or batches)");
  return static_cast<int>(n);
}
inline MPI_Datatype mpi_type(dist::DType d) { return d == dist::DType::F32 ? MPI_FLOAT : MPI_DOUBLE; }
}  // namespace sakura::dist::detail

#define SAKURA_MPI_CHECK(call) ::sakura::dist::detail::mpi_check((call), #call)

namespace sakura::dist {

/// Initialises MPI (MPI_THREAD_FUNNELED: only the thread that made it calls MPI; OpenMP teams
/// inside a rank are fine) unless it already is, and finalises it at scope exit if it did.
class MpiSession {
 public:
  MpiSession() : MpiSession(nullptr, nullptr) {}
  MpiSession(int* argc, char*** argv) {
    int init = 0;
    MPI_Initialized(&init);
    if (init) return;
    int provided = 0;
    SAKURA_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    owns_ = true;
    detail::require(provided >= MPI_THREAD_FUNNELED, "MpiSession: the MPI library provides thread level ", provided,
                    ", below MPI_THREAD_FUNNELED (OpenMP threads inside a rank need it)");
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  ~MpiSession() {
    int done = 0;
    MPI_Finalized(&done);
    if (owns_ && !done) MPI_Finalize();
  }

 private:
  bool owns_ = false;
};

/// A sum in flight, as the transport's queue sees it (MpiSum<T> without its element type).
class MpiSumBase : public SumSlot {
 protected:
  friend class GatherQueue;
  /// The exchange is complete: sum the own chunk, post the gather.
  virtual void sum_and_gather() = 0;
  MPI_Request exchange_ = MPI_REQUEST_NULL;
};

/// MPI matches collectives on a communicator by the order in which ranks post them, so the
/// gathers (posted when an exchange completes, at moments that differ between ranks) go on a
/// communicator of their own, in the order the sums were started: a sum's gather is posted only
/// after those of every sum started before it.
class GatherQueue {
 public:
  void push(MpiSumBase* s) { queue_.push_back(s); }  // capacity is kept: no allocation per step
  bool queued(const MpiSumBase* s) const { return std::find(queue_.begin(), queue_.end(), s) != queue_.end(); }
  void remove(const MpiSumBase* s) { queue_.erase(std::remove(queue_.begin(), queue_.end(), s), queue_.end()); }
  /// Posts the gathers whose exchanges have completed, in order, up to the first still running.
  void advance() {
    while (!queue_.empty()) {
      int done = 0;
      SAKURA_MPI_CHECK(MPI_Test(&queue_.front()->exchange_, &done, MPI_STATUS_IGNORE));
      if (!done) return;
      pop();
    }
  }
  /// Posts the gathers in order up to and including s's, waiting for the exchanges.
  void flush_through(const MpiSumBase* s) {
    while (queued(s)) {
      SAKURA_MPI_CHECK(MPI_Wait(&queue_.front()->exchange_, MPI_STATUS_IGNORE));
      pop();
    }
  }

 private:
  void pop() {
    MpiSumBase* s = queue_.front();
    queue_.erase(queue_.begin());
    s->sum_and_gather();
  }
  std::vector<MpiSumBase*> queue_;  // started, gather not posted yet, in start order
};

/// Reduce-scatter by rank-ordered summation, then allgather, both nonblocking: rank r receives
/// chunk r (balanced_range) of every other rank (MPI_Ialltoallv; its own stays in place), adds
/// the N copies in rank order, and the summed chunks are gathered back in place
/// (MPI_Iallgatherv). Bytes sent per rank: 2 (N - 1) / N of the buffer, as a ring allreduce.
/// With `gather` false it stops after the own chunk's sum (a reduce-scatter, half the bytes).
template <class T>
class MpiSum final : public MpiSumBase {
 public:
  MpiSum(MPI_Comm exchange_comm, MPI_Comm gather_comm, GatherQueue& queue, int rank, int size, Index n, bool gather)
      : exchange_comm_(exchange_comm), gather_comm_(gather_comm), queue_(queue), rank_(rank), size_(size),
        gather_after_sum_(gather), counts_(size), displs_(size), recv_counts_(size), recv_displs_(size) {
    detail::mpi_count(n, "GradientSum: one bucket");
    mine_ = balanced_range(n, size, rank).second;
    for (int r = 0; r < size; ++r) {
      const auto [begin, count] = balanced_range(n, size, r);
      counts_[r] = int(count);
      displs_[r] = int(begin);
      recv_counts_[r] = r == rank ? 0 : int(mine_);
      recv_displs_[r] = int(slot(r) * mine_);
    }
    send_counts_ = counts_;
    send_counts_[rank] = 0;  // the own chunk is summed where it is
    scratch_.reset(static_cast<std::size_t>((size - 1) * mine_));
  }
  MpiSum(const MpiSum&) = delete;
  MpiSum& operator=(const MpiSum&) = delete;
  /// Never blocks: destroyed in flight (unwinding after an error, the job about to abort), it
  /// leaves the scratch MPI may still write into allocated rather than wait for ranks that may
  /// never come.
  ~MpiSum() override {
    if (phase_ == Phase::Idle) return;
    queue_.remove(this);
    scratch_.ptr = nullptr;
    scratch_.n = 0;
  }

  void start(void* data) override {
    detail::require(phase_ == Phase::Idle, "GradientSum: a bucket started again before wait()");
    data_ = static_cast<T*>(data);
    if (size_ == 1) return;  // the sum over one rank is its value
    SAKURA_MPI_CHECK(MPI_Ialltoallv(data_, send_counts_.data(), displs_.data(), type(), scratch_.ptr,
                                    recv_counts_.data(), recv_displs_.data(), type(), exchange_comm_, &exchange_));
    phase_ = Phase::Exchange;
    queue_.push(this);
  }
  bool test() override {
    queue_.advance();
    if (phase_ == Phase::Gather) {
      int done = 0;
      SAKURA_MPI_CHECK(MPI_Test(&gather_, &done, MPI_STATUS_IGNORE));
      if (done) phase_ = Phase::Idle;
    }
    return phase_ == Phase::Idle;
  }
  void wait() override {
    if (phase_ == Phase::Exchange) queue_.flush_through(this);
    if (phase_ == Phase::Gather) {
      SAKURA_MPI_CHECK(MPI_Wait(&gather_, MPI_STATUS_IGNORE));
      phase_ = Phase::Idle;
    }
  }

 private:
  enum class Phase { Idle, Exchange, Gather };
  static MPI_Datatype type() { return detail::mpi_type(dtype_of<T>()); }
  /// Where rank r's copy of the own chunk is in the scratch (the own rank has none there).
  Index slot(int r) const { return r < rank_ ? r : r - 1; }
  void sum_and_gather() override {
    T* own = data_ + displs_[rank_];
    detail::sum_in_rank_order([&](int r) -> const T* { return r == rank_ ? own : scratch_.ptr + slot(r) * mine_; },
                              size_, mine_, own);
    if (!gather_after_sum_) {
      phase_ = Phase::Idle;
      return;
    }
    SAKURA_MPI_CHECK(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data_, counts_.data(), displs_.data(), type(),
                                     gather_comm_, &gather_));
    phase_ = Phase::Gather;
  }
  MPI_Comm exchange_comm_, gather_comm_;
  GatherQueue& queue_;
  int rank_, size_;
  bool gather_after_sum_;
  Index mine_ = 0;
  std::vector<int> counts_, displs_, send_counts_, recv_counts_, recv_displs_;
  sakura::detail::AlignedBuffer<T> scratch_;
  T* data_ = nullptr;
  MPI_Request gather_ = MPI_REQUEST_NULL;
  Phase phase_ = Phase::Idle;
};

class MpiTransport final : public Transport {
 public:
  /// Works on duplicates of `comm`, so its messages never match the caller's, with errors
  /// returned (and thrown as sakura::Error) instead of MPI's default abort.
  explicit MpiTransport(MPI_Comm comm) {
    int init = 0;
    MPI_Initialized(&init);
    detail::require(init, "dist::mpi_comm: MPI is not initialised; create a dist::MpiSession (or call MPI_Init) first");
    SAKURA_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
    SAKURA_MPI_CHECK(MPI_Comm_dup(comm, &gather_comm_));
    for (MPI_Comm c : {comm_, gather_comm_}) SAKURA_MPI_CHECK(MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN));
    SAKURA_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    SAKURA_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    counts_.resize(static_cast<std::size_t>(size_));
    displs_.resize(static_cast<std::size_t>(size_));
  }
  MpiTransport(const MpiTransport&) = delete;
  MpiTransport& operator=(const MpiTransport&) = delete;
  ~MpiTransport() override {
    int done = 0;
    MPI_Finalized(&done);
    if (done) return;
    MPI_Comm_free(&gather_comm_);
    MPI_Comm_free(&comm_);
  }
  MPI_Comm handle() const { return comm_; }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "MPI"; }
  Memory memory() const override { return Memory::Host; }

  void allgather_bytes(const void* mine, std::size_t n, void* all) override {
    const int count = detail::mpi_count(static_cast<Index>(n), "dist::Comm::allgather");
    SAKURA_MPI_CHECK(MPI_Allgather(mine, count, MPI_BYTE, all, count, MPI_BYTE, comm_));
  }
  void broadcast_bytes(void* data, std::size_t n, int root) override {
    constexpr std::size_t kPiece = std::size_t(1) << 30;  // MPI counts are int
    for (std::size_t at = 0; at < n; at += kPiece)
      SAKURA_MPI_CHECK(MPI_Bcast(static_cast<char*>(data) + at, int(std::min(kPiece, n - at)), MPI_BYTE, root, comm_));
  }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(comm_, code);
    std::_Exit(code);  // MPI_Abort does not return; should an implementation, end this rank anyway
  }
  void allgather_rows(DType type, const void* mine, std::span<const Index> row_offsets, Index cols,
                      void* all) override {
    detail::mpi_count(row_offsets[static_cast<std::size_t>(size_)] * cols, "dist::Comm::allgather_rows");
    for (std::size_t r = 0; r < counts_.size(); ++r) {
      counts_[r] = int((row_offsets[r + 1] - row_offsets[r]) * cols);
      displs_[r] = int(row_offsets[r] * cols);
    }
    const void* own = static_cast<const char*>(all) + std::size_t(displs_[std::size_t(rank_)]) * dtype_size(type);
    const void* send = mine == own ? MPI_IN_PLACE : mine;
    SAKURA_MPI_CHECK(MPI_Allgatherv(send, counts_[std::size_t(rank_)], detail::mpi_type(type), all, counts_.data(),
                                    displs_.data(), detail::mpi_type(type), comm_));
  }
  void gather_rows(DType type, const void* mine, std::span<const Index> row_offsets, Index cols, void* all,
                   int root) override {
    detail::mpi_count(row_offsets[static_cast<std::size_t>(size_)] * cols, "dist::Comm::gather_rows");
    for (std::size_t r = 0; r < counts_.size(); ++r) {
      counts_[r] = int((row_offsets[r + 1] - row_offsets[r]) * cols);
      displs_[r] = int(row_offsets[r] * cols);
    }
    const std::size_t own = std::size_t(displs_[std::size_t(rank_)]) * dtype_size(type);
    const void* send = rank_ == root && mine == static_cast<const char*>(all) + own ? MPI_IN_PLACE : mine;
    SAKURA_MPI_CHECK(MPI_Gatherv(send, counts_[std::size_t(rank_)], detail::mpi_type(type), all, counts_.data(),
                                 displs_.data(), detail::mpi_type(type), root, comm_));
  }
  std::unique_ptr<SumSlot> plan_sum(DType type, Index n) override { return plan(type, n, true); }
  std::unique_ptr<SumSlot> plan_reduce_scatter(DType type, Index n) override { return plan(type, n, false); }

 private:
  std::unique_ptr<SumSlot> plan(DType type, Index n, bool gather) {
    if (type == DType::F32) return std::make_unique<MpiSum<float>>(comm_, gather_comm_, gathers_, rank_, size_, n, gather);
    return std::make_unique<MpiSum<double>>(comm_, gather_comm_, gathers_, rank_, size_, n, gather);
  }
  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm gather_comm_ = MPI_COMM_NULL;  // the sums' second phase only (GatherQueue)
  GatherQueue gathers_;
  int rank_ = 0, size_ = 1;
  std::vector<int> counts_, displs_;  // allgather_rows' per-rank counts, allocated once
};

/// A Comm over MPI communicator `comm` (MPI must be initialised: MpiSession).
inline Comm mpi_comm(MPI_Comm comm = MPI_COMM_WORLD) { return Comm(std::make_shared<MpiTransport>(comm)); }

}  // namespace sakura::dist
