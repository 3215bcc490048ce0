// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// What a story does differently on N ranks (mpirun -np N sakura-train): the rows of a batch each
/// rank holds, the check that every rank started with the same inputs, the checkpoint read once
/// and shared, the per-cell outputs gathered in cell order, and the one place the communicator
/// reaches the controller. On one rank every piece is a no-op.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "sakura/config/json.hpp"
#include "sakura/controller/controller.hpp"
#include "sakura/dist/comm.hpp"
#include "sakura/io/checkpoint.hpp"

namespace sakura::story {

using config::Json;

// ---------------------------------------------------------------- the controller
/// True when the controller runs the exact distributed step (it is built with a dist::Comm,
/// issue 17); until then a run on N ranks trains each rank's rows alone (sakura-train warns).
inline constexpr bool kDistributedStep = std::is_constructible_v<Controller<float>, ExperimentSpec, dist::Comm>;

/// The story's controller on `comm`'s ranks: the one place the communicator reaches the controller
/// (a template only so that the branch a controller lacks is not compiled).
template <class Ctl = Controller<float>>
std::unique_ptr<Ctl> make_controller(ExperimentSpec spec, const dist::Comm& comm) {
  if constexpr (std::is_constructible_v<Ctl, ExperimentSpec, dist::Comm>) {
    return std::make_unique<Ctl>(std::move(spec), comm);
  } else {
    (void)comm;  // a controller without the distributed step: one process's (each rank trains its rows)
    return std::make_unique<Ctl>(std::move(spec));
  }
}

// ---------------------------------------------------------------- rows
/// This rank's rows of a global batch or evaluation chunk (the controller's contract:
/// dist::RowSplit::balanced, in global order; possibly none).
inline std::span<const Index> own_rows(std::span<const Index> rows, int rank, int ranks) {
  const auto [begin, count] = dist::balanced_range(static_cast<Index>(rows.size()), ranks, rank);
  return rows.subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(count));
}
/// The most rows a rank holds of `rows` (rank 0's share).
inline Index own_capacity(Index rows, int ranks) { return dist::balanced_range(rows, ranks, 0).second; }

// ---------------------------------------------------------------- same inputs everywhere
namespace detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;
inline std::string brief(const Json& j) {
  std::string s = j.dump();
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}
/// `path` followed by an object's key: .key, or ["key"] when it is not a plain name (a file path).
inline std::string member(const std::string& path, const std::string& key) {
  const bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
  return plain ? (path.empty() ? key : path + "." + key) : path + Json(key).dump().insert(0, "[") + "]";
}
/// The first place where `b` (rank `rank`'s) differs from `a` (rank 0's), "" when nowhere, as
/// "<path>: <a> on rank 0, <b> on rank <rank>".
inline std::string json_difference(const Json& a, const Json& b, int rank, const std::string& path = "") {
  const std::string there = " on rank " + std::to_string(rank);
  auto differ = [&](const std::string& x, const std::string& y) { return path + ": " + x + " on rank 0, " + y + there; };
  if (a.type() != b.type()) return differ(brief(a), brief(b));
  if (a.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      const std::string at = member(path, it.key());
      if (!b.contains(it.key())) return at + ": " + brief(it.value()) + " on rank 0, absent" + there;
      if (std::string d = json_difference(it.value(), b[it.key()], rank, at); !d.empty()) return d;
    }
    for (auto it = b.begin(); it != b.end(); ++it)
      if (!a.contains(it.key())) return member(path, it.key()) + ": absent on rank 0, " + brief(it.value()) + there;
    return {};
  }
  if (a.is_array()) {
    if (a.size() != b.size()) return differ(std::to_string(a.size()) + " items", std::to_string(b.size()) + " items");
    for (std::size_t i = 0; i < a.size(); ++i)
      if (std::string d = json_difference(a[i], b[i], rank, path + "[" + std::to_string(i) + "]"); !d.empty())
        return d;
    return {};
  }
  return a == b ? std::string() : differ(brief(a), brief(b));
}
}  // namespace detail

/// A file's identity as cheaply as it can be had: its size and a digest of its first and last
/// 64 KiB (copies of one file on several nodes agree; a different or damaged file almost never does).
inline Json file_facts(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return Json{{"bytes", std::string("cannot open: ") + std::strerror(errno)}, {"digest", ""}};
  std::vector<std::byte> head(1 << 16), tail(1 << 16);
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  head.resize(std::fread(head.data(), 1, head.size(), f));
  std::fseek(f, std::max<long>(0, size - static_cast<long>(tail.size())), SEEK_SET);
  tail.resize(std::fread(tail.data(), 1, tail.size(), f));
  std::fclose(f);
  char digest[40];
  std::snprintf(digest, sizeof digest, "%016llx%016llx", static_cast<unsigned long long>(dist::hash_bytes(head)),
                static_cast<unsigned long long>(dist::hash_bytes(tail)));
  return Json{{"bytes", size}, {"digest", digest}};
}

/// Every rank must run the same job: `facts` (the config, the files' identities, the arguments)
/// are compared with rank 0's; a difference throws, on every rank, an error naming the first rank
/// that differs and where (a config key, a file). Collective; nothing on one rank.
inline void check_inputs_agree(const dist::Comm& comm, const Json& facts) {
  if (comm.size() == 1) return;
  const std::string mine = facts.dump();
  std::string root = mine;
  comm.broadcast(root, 0);
  std::string diff = root == mine ? std::string() : detail::json_difference(Json::parse(root), facts, comm.rank());
  const std::int32_t flag = diff.empty() ? 0 : 1;
  std::vector<std::int32_t> flags(static_cast<std::size_t>(comm.size()));
  comm.allgather(std::span<const std::int32_t>(&flag, 1), std::span<std::int32_t>(flags));
  const auto first = std::find(flags.begin(), flags.end(), 1);
  if (first == flags.end()) return;
  const int rank = static_cast<int>(first - flags.begin());
  comm.broadcast(diff, rank);
  dist::detail::fail_agreed(0, "rank ", rank, " of ", comm.size(), " was started with other inputs than rank 0: ", diff,
                       ". Start every rank with the same config, data files and arguments");
}

// ---------------------------------------------------------------- checkpoints
/// Rank 0 reads the checkpoint and sends its bytes to every rank, which parses them: the file
/// needs to be visible to rank 0 only, and every rank restores the same state.
inline io::Checkpoint read_checkpoint_on_ranks(const dist::Comm& comm, const std::string& path) {
  if (comm.size() == 1) return io::read_checkpoint(path);
  std::string bytes;
  if (comm.rank() == 0) {
    const std::vector<std::uint8_t> b = io::detail::read_file(path);
    bytes.assign(b.begin(), b.end());
  }
  comm.broadcast(bytes, 0);
  return io::parse_checkpoint(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()), path);
}

/// Confirms every rank holds the same training state (after a resume): a digest of the
/// parameters, gradients, optimizer state, counters and term weights, compared across ranks.
inline void check_state_agrees(const dist::Comm& comm, Controller<float>& ctl, const std::string& what) {
  if (comm.size() == 1) return;
  const TrainingState s = ctl.capture();
  std::vector<double> all{static_cast<double>(s.epoch), static_cast<double>(s.tick)};
  for (const auto& p : s.params)
    for (const auto* v : {&p.value, &p.grad, &p.square_avg, &p.momentum}) all.insert(all.end(), v->begin(), v->end());
  for (const auto& t : s.terms) all.push_back(t.weight);
  comm.check_same(std::as_bytes(std::span<const double>(all)), what);
}

/// The signal any rank received (0: none), the same on every rank, so all stop at the same tick.
/// `all` is scratch (sized once: a story asks at every tick).
inline int agreed_signal(const dist::Comm& comm, int mine, std::vector<std::int32_t>& all) {
  if (comm.size() == 1) return mine;
  all.resize(static_cast<std::size_t>(comm.size()));
  const std::int32_t m = mine;
  comm.allgather(std::span<const std::int32_t>(&m, 1), std::span<std::int32_t>(all));
  for (std::int32_t s : all)
    if (s) return s;
  return 0;
}

// ---------------------------------------------------------------- per-cell outputs
/// Gathers the rows of per-cell outputs (latents, reconstructions) that the ranks hold after an
/// evaluation into cell order on rank 0, the one that writes them (a collective: every rank asks
/// for the same slots in the same order; the other ranks get their own rows back). On one rank the
/// view itself is returned.
class RowGather {
 public:
  explicit RowGather(dist::Comm comm) : comm_(std::move(comm)) {}

  /// `mine` (this rank's rows of a chunk of `rows` cells) gathered into slot `slot`'s buffer on
  /// rank 0; elsewhere this rank's rows (densely copied).
  MatrixRef<const float> gather(std::size_t slot, MatrixRef<const float> mine, Index rows) {
    if (comm_.size() == 1) return mine;
    if (slots_.size() <= slot) slots_.resize(slot + 1);
    Slot& s = slots_[slot];
    Index cols = mine.cols;  // a rank with no rows may not know the width
    widths_.resize(static_cast<std::size_t>(comm_.size()));
    comm_.allgather(std::span<const Index>(&cols, 1), std::span<Index>(widths_));
    cols = *std::max_element(widths_.begin(), widths_.end());
    sakura::detail::require(mine.rows == 0 || mine.cols == cols, "gathering outputs: rank ", comm_.rank(), " has ",
                            mine.cols, " columns, another rank ", cols);
    s.mine.resize(static_cast<std::size_t>(mine.rows * cols));
    for (Index i = 0; i < mine.rows; ++i)  // a tape matrix may be padded (ld): copied densely
      std::copy_n(mine.data + i * mine.ld, cols, s.mine.begin() + i * cols);
    split_.assign_balanced(rows, comm_.size());
    const MatrixRef<const float> own(s.mine.data(), mine.rows, cols);
    if (comm_.rank() != 0) {  // only rank 0 writes: the others send their rows and keep them
      comm_.gather_rows<float>(own, split_, MatrixRef<float>());
      return own;
    }
    s.all.resize(static_cast<std::size_t>(rows * cols));
    comm_.gather_rows<float>(own, split_, MatrixRef<float>(s.all.data(), rows, cols));
    return {s.all.data(), rows, cols};
  }

 private:
  struct Slot {
    std::vector<float> mine, all;
  };
  dist::Comm comm_;
  std::vector<Slot> slots_;
  std::vector<Index> widths_;  // scratch reused call after call: a warm evaluation allocates nothing
  dist::RowSplit split_;
};

}  // namespace sakura::story
