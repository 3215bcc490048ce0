// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// dist::Comm: the communicator handle of data-parallel training: rank, size, and the collectives
/// the exact distributed step needs, each with a fixed summation order (rank order), so a run on N
/// ranks is bit-identical from run to run whatever the engine (single process, MPI, NCCL) does.
///
/// Every rank calls the same collectives in the same order. Host collectives (allgather,
/// allreduce_sum, broadcast, check_same) take host memory; the data collectives (allgather_rows,
/// sum, GradientSum) take memory(): the host for the single-process and MPI engines, the GPU for
/// NCCL. A Comm is a cheap shared handle; one thread uses it at a time (MPI_THREAD_FUNNELED).
///
/// Example:
///   dist::Comm comm = dist::mpi_comm();                        // or dist::Comm{}: one process
///   comm.check_same(config_text, "the config");                // every rank, same bytes
///   comm.allgather_rows<float>(my_latents, split, all_latents);
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "sakura/dist/hash.hpp"
#include "sakura/dist/self.hpp"
#include "sakura/dist/split.hpp"
#include "sakura/dist/transport.hpp"
#include "sakura/error.hpp"

namespace sakura::dist {

/// An error that every rank throws at the same point, having learnt it through a collective (a
/// check_same difference, a rank's invalid rows): one rank, `speaker()`, reports it for all, so
/// a job of N ranks prints it once instead of N times (Comm::abort's `speaker`).
class AgreedError : public Error {
 public:
  AgreedError(const std::string& what, int speaker) : Error(what), speaker_(speaker) {}
  int speaker() const { return speaker_; }

 private:
  int speaker_;
};
/// The rank that reports `e` (AgreedError::speaker()), or -1: every rank reports its own error.
inline int speaker_of(const std::exception& e) {
  const auto* a = dynamic_cast<const AgreedError*>(&e);
  return a ? a->speaker() : -1;
}
namespace detail {
template <class... Args>
[[noreturn]] void fail_agreed(int speaker, Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  throw AgreedError(os.str(), speaker);
}
}  // namespace detail

class Comm {
 public:
  /// One process: rank 0 of 1, no MPI needed.
  Comm() : Comm(std::make_shared<SelfTransport>()) {}
  explicit Comm(std::shared_ptr<Transport> transport) : state_(std::make_shared<State>()) {
    detail::require(transport != nullptr, "dist::Comm: null transport");
    state_->transport = std::move(transport);
  }

  int rank() const { return transport().rank(); }
  int size() const { return transport().size(); }
  const char* name() const { return transport().name(); }
  Memory memory() const { return transport().memory(); }
  Transport& transport() const { return *state_->transport; }

  // ---- host collectives
  /// all = every rank's `mine`, in rank order (all.size() == size() * mine.size()).
  template <class T>
  void allgather(std::span<const T> mine, std::span<T> all) const {
    static_assert(std::is_trivially_copyable_v<T>);
    detail::require(all.size() == mine.size() * static_cast<std::size_t>(size()), "dist::Comm::allgather: ",
                            all.size(), " slots for ", size(), " ranks of ", mine.size(), " values");
    transport().allgather_bytes(mine.data(), mine.size_bytes(), all.data());
  }
  /// values[j] = sum over ranks of values[j], added in rank order (rank 0's + rank 1's + ...), so
  /// the same bits on every rank and in every run (MPI_Allreduce's order is unspecified).
  template <class T>
  void allreduce_sum(std::span<T> values) const {
    static_assert(std::is_arithmetic_v<T>);
    if (size() == 1 || values.empty()) return;
    const std::size_t n = values.size();
    T* parts = scratch<T>(n * static_cast<std::size_t>(size()));
    transport().allgather_bytes(values.data(), values.size_bytes(), parts);
    detail::sum_in_rank_order([&](int r) { return parts + static_cast<std::size_t>(r) * n; }, size(),
                              static_cast<Index>(n), values.data());
  }
  template <class T>
  T allreduce_sum(T value) const {
    allreduce_sum(std::span<T>(&value, 1));
    return value;
  }
  /// Root's bytes to every rank (same size everywhere).
  void broadcast(std::span<std::byte> bytes, int root = 0) const {
    check_root(root, "broadcast");
    transport().broadcast_bytes(bytes.data(), bytes.size(), root);
  }
  /// Root's text to every rank (only the root needs to know its length).
  void broadcast(std::string& text, int root = 0) const {
    check_root(root, "broadcast");
    std::uint64_t n = text.size();
    transport().broadcast_bytes(&n, sizeof n, root);
    text.resize(static_cast<std::size_t>(n));
    transport().broadcast_bytes(text.data(), text.size(), root);
  }
  /// Checks that every rank holds the same bytes (length and a 64-bit digest); otherwise throws the
  /// same sakura::Error on every rank, naming `what` and the ranks that differ from rank 0.
  void check_same(std::span<const std::byte> bytes, std::string_view what) const {
    if (size() == 1) return;
    const std::uint64_t mine[2] = {bytes.size(), hash_bytes(bytes)};
    const std::span<std::uint64_t> all(scratch<std::uint64_t>(2 * static_cast<std::size_t>(size())),
                                       2 * static_cast<std::size_t>(size()));  // no allocation when they agree
    allgather(std::span<const std::uint64_t>(mine), all);
    const auto differs = [&](int r) {
      const std::size_t i = 2 * static_cast<std::size_t>(r);
      return all[i] != all[0] || all[i + 1] != all[1];
    };
    int r = 1;
    while (r < size() && !differs(r)) ++r;
    if (r == size()) return;
    std::ostringstream os;
    for (bool first = true; r < size(); ++r) {
      if (!differs(r)) continue;
      const std::size_t i = 2 * static_cast<std::size_t>(r);
      os << (first ? "" : "; ") << "rank " << r << " has " << all[i] << " bytes (digest " << std::hex << all[i + 1]
         << std::dec << ")";
      first = false;
    }
    detail::fail_agreed(0, what, " differs between the ", size(), " ranks: rank 0 has ", all[0], " bytes (digest ", std::hex,
                 all[1], std::dec, "), ", os.str(), ". Start every rank with the same inputs (same files, same arguments)");
  }
  void check_same(std::string_view text, std::string_view what) const {
    check_same(std::as_bytes(std::span<const char>(text.data(), text.size())), what);
  }

  // ---- data collectives (memory())
  /// Each rank's rows `mine` (its split.count(rank()) rows) gathered into `all` (split.total()
  /// rows) on every rank, rank r's at row split.begin(r). `mine` may be its own rows of `all`.
  template <class T>
  void allgather_rows(MatrixRef<const T> mine, const RowSplit& split, MatrixRef<T> all) const {
    detail::require(split.ranks() == size(), "dist::Comm::allgather_rows: a split over ", split.ranks(),
                            " ranks on a communicator of ", size());
    detail::require(mine.rows == split.count(rank()) && all.rows == split.total() && mine.cols == all.cols,
                            "dist::Comm::allgather_rows: rank ", rank(), " gives ", Shape{mine.rows, mine.cols},
                            " rows into ", Shape{all.rows, all.cols}, "; the split wants ", split.count(rank()),
                            " of ", split.total(), " rows");
    detail::require(mine.contiguous() && all.contiguous(),
                            "dist::Comm::allgather_rows: the matrices must be contiguous");
    transport().allgather_rows(dtype_of<std::remove_const_t<T>>(), mine.data, split.offsets(), all.cols, all.data);
  }
  /// allgather_rows to `root` alone: `all` (split.total() rows) is written on the root only; on
  /// the other ranks it may be empty (MatrixRef{}). For outputs one rank writes.
  template <class T>
  void gather_rows(MatrixRef<const T> mine, const RowSplit& split, MatrixRef<T> all, int root = 0) const {
    check_root(root, "gather_rows");
    detail::require(split.ranks() == size(), "dist::Comm::gather_rows: a split over ", split.ranks(),
                    " ranks on a communicator of ", size());
    const bool at_root = rank() == root;
    detail::require(mine.rows == split.count(rank()) &&
                        (!at_root || (all.rows == split.total() && (mine.rows == 0 || mine.cols == all.cols))),
                    "dist::Comm::gather_rows: rank ", rank(), " gives ", Shape{mine.rows, mine.cols}, " rows into ",
                    Shape{all.rows, all.cols}, "; the split wants ", split.count(rank()), " of ", split.total(),
                    " rows", at_root ? " on the root" : "");
    detail::require(mine.contiguous() && (!at_root || all.contiguous()),
                    "dist::Comm::gather_rows: the matrices must be contiguous");
    transport().gather_rows(dtype_of<std::remove_const_t<T>>(), mine.data, split.offsets(), at_root ? all.cols : mine.cols,
                            at_root ? all.data : nullptr, root);
  }
  /// data = its sum over ranks, in place, in rank order (blocking; GradientSum overlaps buckets).
  template <class T>
  void sum(std::span<T> data) const {
    State& s = *state_;
    const Index n = static_cast<Index>(data.size());
    if (!s.sum_slot || s.sum_type != dtype_of<T>() || s.sum_n != n) {  // planned again only for another shape
      s.sum_slot = transport().plan_sum(dtype_of<T>(), n);
      s.sum_type = dtype_of<T>();
      s.sum_n = n;
    }
    s.sum_slot->start(data.data());
    s.sum_slot->wait();
  }

  /// Writes "rank r of N: message" to stderr and ends every rank of the job with `code`
  /// (MPI_Abort under MPI): the way out when one rank fails while others wait in a collective.
  /// `speaker` >= 0 (an AgreedError, the same on every rank): only that rank writes and ends the
  /// job; the others wait for it quietly (and after kQuietWait seconds report and end it anyway).
  [[noreturn]] void abort(std::string_view message, int code = 1, int speaker = -1) const {
    if (size() > 1 && speaker >= 0 && speaker < size() && speaker != rank())
      std::this_thread::sleep_for(std::chrono::seconds(kQuietWait));  // ended by the speaker's abort
    if (size() > 1)
      std::fprintf(stderr, "rank %d of %d: %.*s\n", rank(), size(), static_cast<int>(message.size()), message.data());
    else
      std::fprintf(stderr, "%.*s\n", static_cast<int>(message.size()), message.data());
    std::fflush(stderr);
    transport().abort(code);
    std::_Exit(code);  // not reached; GCC does not carry [[noreturn]] through a virtual call
  }
  static constexpr int kQuietWait = 20;

 private:
  struct State {
    std::shared_ptr<Transport> transport;
    sakura::detail::AlignedBuffer<std::byte> scratch;  // allreduce_sum's gathered partials, grown once
    std::unique_ptr<SumSlot> sum_slot;                 // sum()'s plan, kept for the next call of its shape
    DType sum_type = DType::F32;
    Index sum_n = -1;
  };
  template <class T>
  T* scratch(std::size_t n) const {
    if (state_->scratch.n < n * sizeof(T)) state_->scratch.reset(n * sizeof(T));
    return reinterpret_cast<T*>(state_->scratch.ptr);
  }
  void check_root(int root, const char* op) const {
    detail::require(root >= 0 && root < size(), "dist::Comm::", op, ": root ", root, " outside [0, ", size(),
                            ")");
  }
  std::shared_ptr<State> state_;
};

/// Runs fn(). One process: exceptions propagate as usual. Several ranks: an exception on any rank
/// ends the whole job with its message (Comm::abort), so the ranks waiting for it in a collective
/// never hang; an AgreedError is written once, by its speaker.
template <class F>
decltype(auto) run_or_abort(const Comm& comm, F&& fn) {
  if (comm.size() == 1) return std::forward<F>(fn)();
  try {
    return std::forward<F>(fn)();
  } catch (const std::exception& e) {
    comm.abort(e.what(), 1, speaker_of(e));
  } catch (...) {
    comm.abort("unknown exception");
  }
}

}  // namespace sakura::dist
