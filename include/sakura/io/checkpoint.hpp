// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Checkpoints (SPEC §8): a versioned, little-endian binary file holding everything a run needs to
/// continue bit-identically: parameters with their gradients, optimizer state, term weights and
/// epochs, counters, the controller's random state, the samplers and the story position.
///
/// Layout: magic "SAKURACK", u32 version, then records until "END ":
///   [4-byte tag][u64 payload length][payload][u64 FNV-1a 64 of the payload]
/// Tags: CONF (the config JSON text), CTRL (counters, generator), PARM (one per parameter, in
/// PyTorch layout: name, [rows, cols], value, has_grad, grad, optimizer state), TERM (weights
/// and epochs), SAMP (one per sampler), STRY (story position), DIST (the number of ranks of a
/// distributed run; absent: one process, so single-process files are unchanged). Integers and IEEE floats are
/// written little-endian byte by byte, so files move between machines.
///
/// Reading checks integrity (checksums, lengths) and each field's own meaning (ranges, finite
/// values, sizes that agree); restore() checks the file against the model, and the story runner
/// checks the story position and samplers against the config and data. Every error names the
/// file, the record (index and tag) and the field, and says what to do.
/// Files are written as temp + fsync + rename + fsync of the directory (io/durable.hpp).
///
/// Example:
///   auto ck = sakura::io::capture(ctl);  ck.config = text;  sakura::io::write_checkpoint("a.ckpt", ck);
///   sakura::io::restore(ctl, sakura::io::read_checkpoint("a.ckpt"), "a.ckpt");
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "sakura/controller/training_state.hpp"
#include "sakura/data/sampler.hpp"
#include "sakura/error.hpp"
#include "sakura/io/durable.hpp"
#include "sakura/tensor/rng.hpp"

namespace sakura::io {

inline constexpr std::uint32_t kCheckpointVersion = 2;  // 2: the generator's pending normal

/// What to do about a checkpoint whose content cannot be right (the end of every such error).
inline constexpr const char* kCheckpointDamaged =
    "the file is damaged or was not written by sakura-train; resume from an earlier checkpoint";
/// What to do about a checkpoint that does not fit the config or data it is resumed with.
inline constexpr const char* kCheckpointMismatch =
    "resume with the config and data the checkpoint was written with";

struct SamplerRecord {
  std::string name;
  data::BatchSampler::State state;
  int record = -1;  ///< index of its record when read from a file
};

/// Where a story stopped.
struct StoryPosition {
  std::int64_t item = 0;          ///< story item being run
  std::int64_t tick = 0;          ///< ticks done in that item
  std::int64_t cursor = 0;        ///< interleave: next split's index
  std::int64_t epoch = 0;         ///< train action: epochs completed
  bool item_done = false;         ///< the item finished (terminal test/checkpoint done)
  std::uint64_t log_bytes = 0;    ///< size of the loss log when saved (truncated to it on resume)
};

/// A checkpoint file's content: the controller's state (TrainingState: scalar type, counters,
/// generator, parameters with optimizer state, term weights) and where the story stood.
struct Checkpoint : TrainingState {
  std::string config;  ///< the config JSON the run used (informational + mismatch warning)
  std::vector<SamplerRecord> samplers;
  StoryPosition story;
  /// Ranks (processes) of the run that wrote it; every rank's state is the same (replicated), so
  /// one file holds it all. A DIST record when > 1.
  std::int64_t ranks = 1;
  /// Record indices of CTRL, TERM and STRY when read from a file (-1: built in memory).
  struct Records {
    int ctrl = -1, terms = -1, story = -1;
  } records;
};

/// "checkpoint 'a.ckpt' record 5 (SAMP), field position": the prefix of every checkpoint error.
inline std::string checkpoint_field(const std::string& path, int record, const char* tag, const std::string& field) {
  std::string s = "checkpoint '" + path + "'";
  if (record >= 0) s += " record " + std::to_string(record) + " (" + tag + ")";
  else s += std::string(" ") + tag + " record";
  if (!field.empty()) s += ", field " + field;
  return s;
}

namespace detail {
using sakura::detail::fail;
using sakura::detail::require;

inline std::uint64_t fnv1a(const std::uint8_t* p, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

class Writer {
 public:
  std::vector<std::uint8_t> buf;
  void u8(std::uint8_t v) { buf.push_back(v); }
  void u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) buf.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) buf.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
  void str(const std::string& s) {
    u64(s.size());
    buf.insert(buf.end(), s.begin(), s.end());
  }
  void scalars(const std::vector<double>& v, std::uint32_t bytes) {
    u64(v.size());
    for (double x : v) {
      if (bytes == 4) u32(std::bit_cast<std::uint32_t>(static_cast<float>(x)));
      else f64(x);
    }
  }
  void rng(const Rng::State& s) {
    u64(s.key);
    u64(s.counter);
    u32(s.lane);
    for (auto b : s.block) u32(b);
    u8(s.has_spare);  // Box-Muller's pending second normal
    f64(s.spare);
  }
};

/// Reads one record's payload. Every value is checked as it is read: lengths against the bytes
/// left (before anything is allocated), integers against their range, scalars for finiteness.
class Reader {
 public:
  Reader(const std::uint8_t* p, std::size_t n, std::string path, int record, std::string tag)
      : p_(p), n_(n), path_(std::move(path)), record_(record), tag_(std::move(tag)) {}

  /// Throws "checkpoint 'f' record i (TAG), field F: <args>; <the file is damaged ...>".
  template <class... A>
  [[noreturn]] void bad(const std::string& field, A&&... args) const {
    fail(checkpoint_field(path_, record_, tag_.c_str(), field), ": ", std::forward<A>(args)..., "; ",
         kCheckpointDamaged);
  }

  std::uint8_t u8(const std::string& field) { return *need(1, field); }
  std::uint32_t u32(const std::string& field) {
    const std::uint8_t* q = need(4, field);
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(q[i]) << (8 * i);
    return v;
  }
  std::uint64_t u64(const std::string& field) {
    const std::uint8_t* q = need(8, field);
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(q[i]) << (8 * i);
    return v;
  }
  double f64(const std::string& field) { return std::bit_cast<double>(u64(field)); }
  /// A boolean stored as one byte: 0 or 1, nothing else.
  bool flag(const std::string& field) {
    const std::uint8_t v = u8(field);
    if (v > 1) bad(field, "a flag must be 0 or 1, got ", int(v));
    return v == 1;
  }
  /// A signed integer within [lo, hi].
  std::int64_t integer(const std::string& field, std::int64_t lo, std::int64_t hi) {
    const auto v = static_cast<std::int64_t>(u64(field));
    if (v < lo || v > hi) bad(field, v, " is outside [", lo, ", ", hi, "]");
    return v;
  }
  double finite(const std::string& field) {
    const double v = f64(field);
    if (!std::isfinite(v)) bad(field, "the value is ", v, " (not finite)");
    return v;
  }
  std::string str(const std::string& field) {
    const std::uint64_t n = count(1, field);
    const std::uint8_t* q = need(n, field);
    return std::string(reinterpret_cast<const char*>(q), n);
  }
  /// A length-prefixed array of finite scalars (and >= 0 when `non_negative`).
  std::vector<double> scalars(std::uint32_t bytes, const std::string& field, bool non_negative = false) {
    const std::uint64_t n = count(bytes, field);
    std::vector<double> v(n);
    for (std::size_t i = 0; i < v.size(); ++i) {
      const double x = bytes == 4 ? static_cast<double>(std::bit_cast<float>(u32(field))) : f64(field);
      if (!std::isfinite(x) || (non_negative && x < 0))
        bad(field + "[" + std::to_string(i) + "]", "the value is ", x,
            non_negative ? " (must be finite and >= 0)" : " (not finite)");
      v[i] = x;
    }
    return v;
  }
  /// The length prefix of an array of `elem`-byte elements, checked against the bytes left.
  std::uint64_t count(std::uint64_t elem, const std::string& field) {
    const std::uint64_t n = u64(field);
    if (elem != 0 && n > (n_ - pos_) / elem) bad(field, "a length of ", n, " exceeds the record (truncated?)");
    return n;
  }
  Rng::State rng(const std::string& field) {
    Rng::State s;
    s.key = u64(field + ".key");
    s.counter = u64(field + ".counter");
    s.lane = u32(field + ".lane");
    if (s.lane > 4) bad(field + ".lane", s.lane, " is outside [0, 4]");
    for (auto& b : s.block) b = u32(field + ".block");
    s.has_spare = flag(field + ".has_spare");
    s.spare = f64(field + ".spare");
    if (s.has_spare && !std::isfinite(s.spare)) bad(field + ".spare", "the pending normal is ", s.spare);
    return s;
  }
  void done() {
    if (pos_ != n_) bad("", n_ - pos_, " unexpected trailing bytes");
  }

 private:
  const std::uint8_t* need(std::uint64_t k, const std::string& field) {
    if (k > n_ - pos_) bad(field, "truncated record");
    const std::uint8_t* q = p_ + pos_;
    pos_ += k;
    return q;
  }
  const std::uint8_t* p_;
  std::size_t n_, pos_ = 0;
  std::string path_;
  int record_;
  std::string tag_;
};

inline constexpr char kMagic[8] = {'S', 'A', 'K', 'U', 'R', 'A', 'C', 'K'};
inline constexpr std::int64_t kInt32Max = std::numeric_limits<std::int32_t>::max();
inline constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

inline void put(FileWriter& out, const std::vector<std::uint8_t>& b) {
  out.put(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

inline void record(FileWriter& out, const char (&tag)[5], const Writer& w) {
  Writer h;
  for (int i = 0; i < 4; ++i) h.u8(static_cast<std::uint8_t>(tag[i]));
  h.u64(w.buf.size());
  h.buf.insert(h.buf.end(), w.buf.begin(), w.buf.end());
  h.u64(fnv1a(w.buf.data(), w.buf.size()));
  put(out, h.buf);
}

inline void sampler_state(Writer& w, const data::BatchSampler::State& s) {
  w.rng(s.rng);
  w.u64(s.order.size());
  for (Index r : s.order) w.i64(r);
  w.i64(s.position);
  w.i64(s.epochs);
}

/// The whole file; a directory, a missing or an unreadable file is an error naming the path.
inline std::vector<std::uint8_t> read_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::string newest;
    fs::file_time_type t{};
    for (const auto& e : fs::directory_iterator(path, ec))
      if (e.path().extension() == ".ckpt" && e.is_regular_file(ec) && (newest.empty() || e.last_write_time(ec) > t)) {
        newest = e.path().string();
        t = e.last_write_time(ec);
      }
    fail("cannot read checkpoint '", path, "': it is a directory; give a checkpoint file (",
         newest.empty() ? std::string("it holds no *.ckpt file") : "the newest in it is '" + newest + "'", ")");
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open checkpoint '", path, "': ", std::strerror(errno));
  std::vector<std::uint8_t> bytes;
  std::uint8_t chunk[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail("cannot read checkpoint '", path, "': ", std::strerror(err));
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), chunk, chunk + n);
  }
  ::close(fd);
  return bytes;
}

inline ParamRecord read_param(Reader& r, std::uint32_t bytes) {
  ParamRecord p;
  p.name = r.str("name");
  if (p.name.empty()) r.bad("name", "empty parameter name");
  p.rows = r.integer("rows", 0, kInt32Max);
  p.cols = r.integer("cols", 0, kInt32Max);
  const auto size = static_cast<std::uint64_t>(p.rows) * static_cast<std::uint64_t>(p.cols);  // < 2^62
  p.value = r.scalars(bytes, "value");
  auto sized = [&](const std::vector<double>& v, const char* field, bool may_be_empty) {
    if (v.size() != size && !(may_be_empty && v.empty()))
      r.bad(field, "holds ", v.size(), " values but parameter '", p.name, "' is ", p.rows, " x ", p.cols, " = ", size);
  };
  sized(p.value, "value", false);
  p.has_grad = r.flag("has_grad");
  p.grad = r.scalars(bytes, "grad");
  sized(p.grad, "grad", true);
  p.opt_initialised = r.flag("opt_initialised");
  p.square_avg = r.scalars(bytes, "square_avg", true);
  p.momentum = r.scalars(bytes, "momentum");
  if (p.opt_initialised) sized(p.square_avg, "square_avg", false);
  else if (!p.square_avg.empty() || !p.momentum.empty())
    r.bad("square_avg", "optimizer state is present but opt_initialised is 0");
  sized(p.momentum, "momentum", true);
  return p;
}

inline std::vector<TermRecord> read_terms(Reader& r) {
  std::vector<TermRecord> terms;
  const std::uint64_t k = r.u64("count");
  for (std::uint64_t i = 0; i < k; ++i) {  // each term reads >= 41 bytes: a bad count runs out of record
    const std::string f = "terms[" + std::to_string(i) + "]";
    TermRecord t;
    t.kind = r.u8(f + ".kind");
    if (t.kind > 2) r.bad(f + ".kind", int(t.kind), " is not a block kind (0 main, 1 signature, 2 phenotype)");
    t.block = r.str(f + ".block");
    if ((t.kind == 0) != t.block.empty()) r.bad(f + ".block", "'", t.block, "' does not fit block kind ", int(t.kind));
    t.group = r.str(f + ".group");
    if (t.group != "loss" && t.group != "regularization")
      r.bad(f + ".group", "'", t.group, "' is neither loss nor regularization");
    t.name = r.str(f + ".name");
    t.weight = r.finite(f + ".weight");
    t.epoch = static_cast<std::int32_t>(r.integer(f + ".epoch", 0, kInt32Max));
    terms.push_back(std::move(t));
  }
  return terms;
}

inline data::BatchSampler::State read_sampler_state(Reader& r) {
  data::BatchSampler::State s;
  s.rng = r.rng("rng");
  s.order.resize(r.count(8, "order"));
  for (std::size_t i = 0; i < s.order.size(); ++i) {
    s.order[i] = static_cast<Index>(r.u64("order"));
    if (s.order[i] < 0) r.bad("order[" + std::to_string(i) + "]", "negative cell index ", s.order[i]);
  }
  s.position = r.integer("position", 0, kInt64Max);
  s.epochs = r.integer("epochs", 0, kInt64Max - 1);  // begin_epoch() adds one
  if (s.order.empty() != (s.epochs == 0))
    r.bad("epochs", s.epochs, " passes begun but the pass order holds ", s.order.size(), " cells");
  if (s.order.empty() && s.position != 0) r.bad("position", s.position, " batches taken before any pass began");
  return s;
}
}  // namespace detail

/// Writes a checkpoint atomically and durably (temp file, fsync, rename, fsync of the directory;
/// io/durable.hpp): an earlier file of the same name stays intact until the new one is complete,
/// and a failure (a full disk) removes the temp file and names the file and the cause.
inline void write_checkpoint(const std::string& path, const Checkpoint& c) {
  using namespace detail;
  AtomicFile file(path);
  FileWriter& out = file.out();
  Writer head;
  head.buf.assign(kMagic, kMagic + 8);
  head.u32(kCheckpointVersion);
  head.u32(c.scalar_bytes);
  put(out, head.buf);
  {
    Writer w;
    w.str(c.config);
    record(out, "CONF", w);
  }
  {
    Writer w;
    w.i64(c.epoch);
    w.i64(c.tick);
    w.rng(c.rng);
    record(out, "CTRL", w);
  }
  for (const auto& p : c.params) {
    Writer w;
    w.str(p.name);
    w.i64(p.rows);
    w.i64(p.cols);
    w.scalars(p.value, c.scalar_bytes);
    w.u8(p.has_grad);
    w.scalars(p.grad, c.scalar_bytes);
    w.u8(p.opt_initialised);
    w.scalars(p.square_avg, c.scalar_bytes);
    w.scalars(p.momentum, c.scalar_bytes);
    record(out, "PARM", w);
  }
  {
    Writer w;
    w.u64(c.terms.size());
    for (const auto& t : c.terms) {
      w.u8(t.kind);
      w.str(t.block);
      w.str(t.group);
      w.str(t.name);
      w.f64(t.weight);
      w.i64(t.epoch);
    }
    record(out, "TERM", w);
  }
  for (const auto& s : c.samplers) {
    Writer w;
    w.str(s.name);
    sampler_state(w, s.state);
    record(out, "SAMP", w);
  }
  {
    Writer w;
    w.i64(c.story.item);
    w.i64(c.story.tick);
    w.i64(c.story.cursor);
    w.i64(c.story.epoch);
    w.u8(c.story.item_done);
    w.u64(c.story.log_bytes);
    record(out, "STRY", w);
  }
  if (c.ranks != 1) {
    Writer w;
    w.i64(c.ranks);
    record(out, "DIST", w);
  }
  record(out, "END ", Writer{});
  file.commit();
}

/// Reads and checks a checkpoint: integrity (magic, version, record lengths and checksums) and
/// every field's own meaning (ranges, finite values, sizes that agree with each other). Errors
/// name the file, the record (index and tag) and the field.
inline Checkpoint parse_checkpoint(std::span<const std::uint8_t> bytes, const std::string& path);
inline Checkpoint read_checkpoint(const std::string& path) { return parse_checkpoint(detail::read_file(path), path); }

/// read_checkpoint() on bytes already read (a distributed run: rank 0 reads, every rank parses);
/// `path` names the file in messages.
inline Checkpoint parse_checkpoint(std::span<const std::uint8_t> bytes, const std::string& path) {
  using namespace detail;
  require(bytes.size() >= 16 && std::memcmp(bytes.data(), kMagic, 8) == 0, "'", path,
          "' is not a sakura checkpoint (bad magic; PyTorch .pth files cannot be read)");
  Reader head(bytes.data() + 8, 8, path, -1, "header");
  Checkpoint c;
  const std::uint32_t version = head.u32("version");
  require(version == kCheckpointVersion, "checkpoint '", path, "' has format version ", version,
          "; this build reads version ", kCheckpointVersion);
  c.scalar_bytes = head.u32("scalar_bytes");
  if (c.scalar_bytes != 4 && c.scalar_bytes != 8) head.bad("scalar_bytes", c.scalar_bytes, " is neither 4 nor 8");
  std::size_t pos = 16;
  int n_records = 0;
  bool ended = false;
  int conf_record = -1, dist_record = -1;
  while (pos < bytes.size() && !ended) {
    require(bytes.size() - pos >= 12, "checkpoint '", path, "': truncated after record ", n_records - 1, "; ",
            kCheckpointDamaged);
    const std::string tag(reinterpret_cast<const char*>(&bytes[pos]), 4);
    const std::string what = checkpoint_field(path, n_records, tag.c_str(), "");
    Reader len(&bytes[pos + 4], 8, path, n_records, tag);
    const std::uint64_t n = len.u64("length");
    const std::size_t left = bytes.size() - pos - 12;
    require(n <= left && left - n >= 8, what, ": truncated; ", kCheckpointDamaged);
    const std::uint8_t* payload = &bytes[pos + 12];
    Reader sum(payload + n, 8, path, n_records, tag);
    require(sum.u64("checksum") == fnv1a(payload, n), what, ": checksum mismatch (file corrupted); ",
            kCheckpointDamaged);
    Reader r(payload, n, path, n_records, tag);
    auto once = [&](int& index) {
      if (index >= 0) r.bad("", "a second ", tag, " record (the first is record ", index, ")");
      index = n_records;
    };
    if (tag == "CONF") {
      once(conf_record);
      c.config = r.str("config");
    } else if (tag == "CTRL") {
      once(c.records.ctrl);
      c.epoch = static_cast<std::int32_t>(r.integer("epoch", 0, kInt32Max));
      c.tick = static_cast<std::int32_t>(r.integer("tick", 0, kInt32Max));
      c.rng = r.rng("rng");
    } else if (tag == "PARM") {
      c.params.push_back(read_param(r, c.scalar_bytes));
      c.params.back().record = n_records;
    } else if (tag == "TERM") {
      once(c.records.terms);
      c.terms = read_terms(r);
    } else if (tag == "SAMP") {
      SamplerRecord s;
      s.name = r.str("name");
      s.state = read_sampler_state(r);
      s.record = n_records;
      c.samplers.push_back(std::move(s));
    } else if (tag == "STRY") {
      once(c.records.story);
      c.story.item = r.integer("item", 0, kInt64Max);
      c.story.tick = r.integer("tick", 0, kInt64Max);
      c.story.cursor = r.integer("cursor", 0, kInt64Max);
      c.story.epoch = r.integer("epoch", 0, kInt64Max);
      c.story.item_done = r.flag("item_done");
      c.story.log_bytes = r.u64("log_bytes");
    } else if (tag == "DIST") {
      once(dist_record);
      c.ranks = r.integer("ranks", 2, kInt32Max);
    } else if (tag == "END ") {
      ended = true;
    } else {
      r.bad("", "unknown record tag");
    }
    r.done();
    pos += 12 + n + 8;
    ++n_records;
  }
  require(ended, "checkpoint '", path, "' is truncated (no END record after ", n_records, " records); ",
          kCheckpointDamaged);
  require(pos == bytes.size(), "checkpoint '", path, "': ", bytes.size() - pos, " bytes after the END record; ",
          kCheckpointDamaged);
  require(c.records.ctrl >= 0 && c.records.story >= 0 && c.records.terms >= 0, "checkpoint '", path, "' lacks a ",
          c.records.ctrl < 0 ? "CTRL" : c.records.story < 0 ? "STRY" : "TERM", " record; ", kCheckpointDamaged);
  return c;
}

/// The controller's whole trainable state (any device: a GPU controller syncs to the host first).
template <class Controller>
Checkpoint capture(Controller& ctl) {
  Checkpoint c;
  static_cast<TrainingState&>(c) = ctl.capture();
  return c;
}

/// Checks a checkpoint against the controller without changing it: the scalar type, every
/// parameter of the model in order with its shape and the optimizer state the config implies,
/// and every term of the model exactly once. Errors name the file, the record and the field.
template <class Controller>
void check_restore(Controller& ctl, const Checkpoint& c, const std::string& path) {
  using T = typename Controller::Scalar;
  using sakura::detail::fail;
  using sakura::detail::require;
  require(c.scalar_bytes == sizeof(T), "checkpoint '", path, "' holds ", c.scalar_bytes == 4 ? "float" : "double",
          " values but the controller uses ", sizeof(T) == 4 ? "float" : "double");
  auto& params = ctl.model().parameters().all();
  require(c.params.size() == params.size(), "checkpoint '", path, "' has ", c.params.size(),
          " parameters but the model built from the config has ", params.size(),
          " (was it written for another config?); ", kCheckpointMismatch);
  const bool momentum = ctl.optimizer().options().momentum > 0;
  std::size_t i = 0;
  for (auto& p : params) {
    const ParamRecord& r = c.params[i++];
    auto at = [&](const char* field) { return checkpoint_field(path, r.record, "PARM", field); };
    require(r.name == p.name, at("name"), ": parameter ", i - 1, " is '", r.name, "' but the model's is '", p.name,
            "'; ", kCheckpointMismatch);
    require(r.rows == p.torch_rows() && r.cols == p.torch_cols(), "checkpoint '", path, "': parameter '", r.name,
            "' is ", shape_str(r.rows, r.cols), " in the file but ", shape_str(p.torch_rows(), p.torch_cols()),
            " in the model (", at("rows"), "); ", kCheckpointMismatch);
    const auto size = static_cast<std::size_t>(r.rows * r.cols);
    require(r.value.size() == size && (r.grad.empty() || r.grad.size() == size), at("value"), ": parameter '", r.name,
            "' has inconsistent sizes; ", kCheckpointDamaged);
    if (r.opt_initialised) {
      require(r.square_avg.size() == size, at("square_avg"), ": parameter '", r.name, "' has ", r.square_avg.size(),
              " optimizer values for ", size, " entries; ", kCheckpointDamaged);
      require(momentum == !r.momentum.empty(), at("momentum"), ": parameter '", r.name, "' ",
              momentum ? "has no momentum buffer but the config's RMSProp_momentum is above 0"
                       : "has a momentum buffer but the config's RMSProp_momentum is 0",
              "; ", kCheckpointMismatch);
      require(r.momentum.empty() || r.momentum.size() == size, at("momentum"), ": parameter '", r.name, "' has ",
              r.momentum.size(), " momentum values for ", size, " entries; ", kCheckpointDamaged);
    }
  }
  // the terms: the model's, each once
  const std::vector<TermRecord> model = ctl.term_records();
  auto key = [](const TermRecord& t) { return std::tie(t.kind, t.block, t.group, t.name); };
  auto label = [](const TermRecord& t) {
    return (t.block.empty() ? std::string("main_latent") : t.block) + "." + t.group + "." + t.name;
  };
  std::set<std::tuple<std::uint8_t, std::string, std::string, std::string>> seen;
  for (std::size_t k = 0; k < c.terms.size(); ++k) {
    const TermRecord& t = c.terms[k];
    const std::string at = checkpoint_field(path, c.records.terms, "TERM", "terms[" + std::to_string(k) + "]");
    const bool known = std::any_of(model.begin(), model.end(), [&](const TermRecord& m) { return key(m) == key(t); });
    require(known, at, ": term ", label(t), " is not in the model built from the config; ", kCheckpointMismatch);
    require(seen.insert(key(t)).second, at, ": term ", label(t), " appears twice; ", kCheckpointDamaged);
  }
  for (const auto& m : model)
    if (!seen.count(key(m)))
      fail(checkpoint_field(path, c.records.terms, "TERM", ""), ": the model's term ", label(m),
           " is missing (was the checkpoint written for another config?); ", kCheckpointMismatch);
}

/// Restores the controller from a checkpoint, all or nothing: everything is checked
/// (check_restore) before anything changes.
template <class Controller>
void restore(Controller& ctl, const Checkpoint& c, const std::string& path) {
  check_restore(ctl, c, path);
  ctl.restore(c);
}

}  // namespace sakura::io
