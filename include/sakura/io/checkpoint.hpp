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
/// and epochs), SAMP (one per sampler), STRY (story position). Integers and IEEE floats are
/// written little-endian byte by byte, so files move between machines.
///
/// Example:
///   auto ck = sakura::io::capture(ctl);  ck.config = text;  sakura::io::write_checkpoint("a.ckpt", ck);
///   sakura::io::restore(ctl, sakura::io::read_checkpoint("a.ckpt"), "a.ckpt");
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "sakura/controller/controller.hpp"
#include "sakura/data/sampler.hpp"
#include "sakura/error.hpp"
#include "sakura/tensor/rng.hpp"

namespace sakura::io {

inline constexpr std::uint32_t kCheckpointVersion = 2;  // 2: the generator's pending normal

/// One parameter in PyTorch layout ([out, in] for weights), with its optimizer state.
struct ParamRecord {
  std::string name;
  std::int64_t rows = 0, cols = 0;
  std::vector<double> value, grad;  // kept in double here; written in the controller's precision
  bool has_grad = false;
  bool opt_initialised = false;
  std::vector<double> square_avg, momentum;  // empty when absent
};

struct TermRecord {
  std::uint8_t kind = 0;  // BlockKind
  std::string block, group, name;
  double weight = 0;
  std::int32_t epoch = 0;
};

struct SamplerRecord {
  std::string name;
  data::BatchSampler::State state;
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

struct Checkpoint {
  std::uint32_t scalar_bytes = 4;  ///< 4: float, 8: double
  std::string config;              ///< the config JSON the run used (informational + mismatch warning)
  std::int32_t epoch = 0, tick = 0;
  Rng::State rng;
  std::vector<ParamRecord> params;
  std::vector<TermRecord> terms;
  std::vector<SamplerRecord> samplers;
  StoryPosition story;
};

namespace detail_ckpt {
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

class Reader {
 public:
  Reader(const std::uint8_t* p, std::size_t n, std::string what) : p_(p), n_(n), what_(std::move(what)) {}
  std::uint8_t u8() { return *need(1); }
  std::uint32_t u32() {
    const std::uint8_t* q = need(4);
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(q[i]) << (8 * i);
    return v;
  }
  std::uint64_t u64() {
    const std::uint8_t* q = need(8);
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(q[i]) << (8 * i);
    return v;
  }
  std::int64_t i64() { return static_cast<std::int64_t>(u64()); }
  double f64() { return std::bit_cast<double>(u64()); }
  std::string str() {
    const std::uint64_t n = count(1);
    const std::uint8_t* q = need(n);
    return std::string(reinterpret_cast<const char*>(q), n);
  }
  std::vector<double> scalars(std::uint32_t bytes) {
    const std::uint64_t n = count(bytes);
    std::vector<double> v(n);
    for (auto& x : v) x = bytes == 4 ? static_cast<double>(std::bit_cast<float>(u32())) : f64();
    return v;
  }
  Rng::State rng() {
    Rng::State s;
    s.key = u64();
    s.counter = u64();
    s.lane = u32();
    for (auto& b : s.block) b = u32();
    s.has_spare = u8() != 0;
    s.spare = f64();
    require(s.lane <= 4, what_, ": bad generator state (lane ", s.lane, ")");
    return s;
  }
  void done() { require(pos_ == n_, what_, ": ", n_ - pos_, " unexpected trailing bytes"); }

 private:
  std::uint64_t count(std::uint64_t elem) {
    const std::uint64_t n = u64();
    require(elem == 0 || n <= (n_ - pos_) / elem, what_, ": truncated (a length of ", n, " exceeds the record)");
    return n;
  }
  const std::uint8_t* need(std::uint64_t k) {
    require(k <= n_ - pos_, what_, ": truncated record");
    const std::uint8_t* q = p_ + pos_;
    pos_ += k;
    return q;
  }
  const std::uint8_t* p_;
  std::size_t n_, pos_ = 0;
  std::string what_;
};

inline constexpr char kMagic[8] = {'S', 'A', 'K', 'U', 'R', 'A', 'C', 'K'};

inline void record(std::ofstream& out, const char (&tag)[5], const Writer& w) {
  Writer h;
  for (int i = 0; i < 4; ++i) h.u8(static_cast<std::uint8_t>(tag[i]));
  h.u64(w.buf.size());
  out.write(reinterpret_cast<const char*>(h.buf.data()), static_cast<std::streamsize>(h.buf.size()));
  out.write(reinterpret_cast<const char*>(w.buf.data()), static_cast<std::streamsize>(w.buf.size()));
  Writer t;
  t.u64(fnv1a(w.buf.data(), w.buf.size()));
  out.write(reinterpret_cast<const char*>(t.buf.data()), 8);
}

inline void sampler_state(Writer& w, const data::BatchSampler::State& s) {
  w.rng(s.rng);
  w.u64(s.order.size());
  for (Index r : s.order) w.i64(r);
  w.i64(s.position);
  w.i64(s.epochs);
}
}  // namespace detail_ckpt

/// Writes a checkpoint atomically (to `path`.tmp, then renamed), naming the file on failure.
inline void write_checkpoint(const std::string& path, const Checkpoint& c) {
  using namespace detail_ckpt;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    require(out.good(), "cannot write checkpoint '", tmp, "'");
    out.write(kMagic, 8);
    Writer v;
    v.u32(kCheckpointVersion);
    v.u32(c.scalar_bytes);
    out.write(reinterpret_cast<const char*>(v.buf.data()), 8);
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
    record(out, "END ", Writer{});
    out.flush();
    require(out.good(), "error while writing checkpoint '", tmp, "' (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  require(!ec, "cannot rename '", tmp, "' to '", path, "': ", ec.message());
}

/// Reads and checks a checkpoint; errors name the file and the offending record.
inline Checkpoint read_checkpoint(const std::string& path) {
  using namespace detail_ckpt;
  std::ifstream in(path, std::ios::binary);
  require(in.good(), "cannot open checkpoint '", path, "'");
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  require(bytes.size() >= 16 && std::memcmp(bytes.data(), kMagic, 8) == 0, "'", path,
          "' is not a sakura checkpoint (bad magic; PyTorch .pth files cannot be read)");
  Reader head(bytes.data() + 8, 8, "checkpoint '" + path + "' header");
  Checkpoint c;
  const std::uint32_t version = head.u32();
  require(version == kCheckpointVersion, "checkpoint '", path, "' has format version ", version,
          "; this build reads version ", kCheckpointVersion);
  c.scalar_bytes = head.u32();
  require(c.scalar_bytes == 4 || c.scalar_bytes == 8, "checkpoint '", path, "': bad scalar size ", c.scalar_bytes);
  std::size_t pos = 16;
  int n_records = 0;
  bool ended = false, have_ctrl = false, have_story = false, have_terms = false;
  while (pos < bytes.size() && !ended) {
    require(bytes.size() - pos >= 12, "checkpoint '", path, "': truncated after record ", n_records);
    const std::string tag(reinterpret_cast<const char*>(&bytes[pos]), 4);
    Reader len(&bytes[pos + 4], 8, "");
    const std::uint64_t n = len.u64();
    const std::string what = "checkpoint '" + path + "' record " + std::to_string(n_records) + " (" + tag + ")";
    require(n <= bytes.size() - pos - 12 && bytes.size() - pos - 12 - n >= 8, what, ": truncated");
    const std::uint8_t* payload = &bytes[pos + 12];
    Reader sum(payload + n, 8, what);
    require(sum.u64() == fnv1a(payload, n), what, ": checksum mismatch (file corrupted)");
    Reader r(payload, n, what);
    if (tag == "CONF") {
      c.config = r.str();
    } else if (tag == "CTRL") {
      c.epoch = static_cast<std::int32_t>(r.i64());
      c.tick = static_cast<std::int32_t>(r.i64());
      c.rng = r.rng();
      have_ctrl = true;
    } else if (tag == "PARM") {
      ParamRecord p;
      p.name = r.str();
      p.rows = r.i64();
      p.cols = r.i64();
      p.value = r.scalars(c.scalar_bytes);
      p.has_grad = r.u8() != 0;
      p.grad = r.scalars(c.scalar_bytes);
      p.opt_initialised = r.u8() != 0;
      p.square_avg = r.scalars(c.scalar_bytes);
      p.momentum = r.scalars(c.scalar_bytes);
      const auto sz = static_cast<std::size_t>(p.rows * p.cols);
      require(p.rows >= 0 && p.cols >= 0 && p.value.size() == sz && (p.grad.empty() || p.grad.size() == sz) &&
                  (p.square_avg.empty() || p.square_avg.size() == sz) && (p.momentum.empty() || p.momentum.size() == sz),
              what, ": parameter '", p.name, "' has inconsistent sizes");
      c.params.push_back(std::move(p));
    } else if (tag == "TERM") {
      const std::uint64_t k = r.u64();
      for (std::uint64_t i = 0; i < k; ++i) {
        TermRecord t;
        t.kind = r.u8();
        t.block = r.str();
        t.group = r.str();
        t.name = r.str();
        t.weight = r.f64();
        t.epoch = static_cast<std::int32_t>(r.i64());
        c.terms.push_back(std::move(t));
      }
      have_terms = true;
    } else if (tag == "SAMP") {
      SamplerRecord s;
      s.name = r.str();
      s.state.rng = r.rng();
      const std::uint64_t k = r.u64();
      require(k <= n / 8, what, ": truncated sampler order");
      s.state.order.resize(k);
      for (auto& v : s.state.order) v = r.i64();
      s.state.position = r.i64();
      s.state.epochs = r.i64();
      c.samplers.push_back(std::move(s));
    } else if (tag == "STRY") {
      c.story.item = r.i64();
      c.story.tick = r.i64();
      c.story.cursor = r.i64();
      c.story.epoch = r.i64();
      c.story.item_done = r.u8() != 0;
      c.story.log_bytes = r.u64();
      have_story = true;
    } else if (tag == "END ") {
      ended = true;
    } else {
      fail(what, ": unknown record tag");
    }
    r.done();
    pos += 12 + n + 8;
    ++n_records;
  }
  require(ended, "checkpoint '", path, "' is truncated (no END record after ", n_records, " records)");
  require(have_ctrl && have_story && have_terms, "checkpoint '", path, "' lacks a ",
          !have_ctrl ? "CTRL" : !have_story ? "STRY" : "TERM", " record");
  return c;
}

/// The controller's whole trainable state.
template <class T>
Checkpoint capture(Controller<T>& ctl) {
  Checkpoint c;
  c.scalar_bytes = sizeof(T);
  c.epoch = ctl.epoch();
  c.tick = ctl.ticks();
  c.rng = ctl.rng().state();
  auto& params = ctl.model().parameters().all();
  auto& opt = ctl.optimizer().state();
  std::size_t i = 0;
  for (auto& p : params) {
    ParamRecord r;
    r.name = p.name;
    r.rows = p.torch_rows();
    r.cols = p.torch_cols();
    auto torch = [&](const Tensor<T>& t) {  // internal layout -> PyTorch layout
      std::vector<double> v(static_cast<std::size_t>(r.rows * r.cols));
      for (Index a = 0; a < r.rows; ++a)
        for (Index b = 0; b < r.cols; ++b) v[a * r.cols + b] = p.transposed ? t(b, a) : t(a, b);
      return v;
    };
    r.value = torch(p.value);
    r.has_grad = p.has_grad;
    r.grad = torch(p.grad);
    const auto& s = opt[i++];
    r.opt_initialised = s.initialised;
    if (s.initialised) {
      r.square_avg = torch(s.square_avg);
      if (!s.momentum_buffer.empty()) r.momentum = torch(s.momentum_buffer);
    }
    c.params.push_back(std::move(r));
  }
  auto terms = [&](BlockKind kind, const std::string& block, const std::string& group, const auto& specs) {
    for (const auto& t : specs) {
      const TermState& s = ctl.term(kind, block, group, t.name);
      c.terms.push_back({static_cast<std::uint8_t>(kind), block, group, t.name, s.weight, s.epoch});
    }
  };
  terms(BlockKind::Main, "", "loss", ctl.spec().main_losses);
  terms(BlockKind::Main, "", "regularization", ctl.spec().main_regularizations);
  for (const auto& b : ctl.model_spec().signatures) {
    terms(BlockKind::Signature, b.name, "loss", b.losses);
    terms(BlockKind::Signature, b.name, "regularization", b.regularizations);
  }
  for (const auto& b : ctl.model_spec().phenos) {
    terms(BlockKind::Pheno, b.name, "loss", b.losses);
    terms(BlockKind::Pheno, b.name, "regularization", b.regularizations);
  }
  return c;
}

/// Restores the controller from a checkpoint. Every parameter and term of the model must be in
/// the file with the same shape, and nothing else: errors name the file and the record.
template <class T>
void restore(Controller<T>& ctl, const Checkpoint& c, const std::string& path) {
  using sakura::detail::require;
  require(c.scalar_bytes == sizeof(T), "checkpoint '", path, "' holds ", c.scalar_bytes == 4 ? "float" : "double",
          " values but the controller uses ", sizeof(T) == 4 ? "float" : "double");
  auto& params = ctl.model().parameters().all();
  require(c.params.size() == params.size(), "checkpoint '", path, "' has ", c.params.size(),
          " parameters but the model built from the config has ", params.size(),
          " (was it written for another config?)");
  // check everything before changing anything
  std::size_t i = 0;
  for (auto& p : params) {
    const ParamRecord& r = c.params[i++];
    require(r.name == p.name, "checkpoint '", path, "': parameter ", i - 1, " is '", r.name, "' but the model's is '",
            p.name, "'");
    require(r.rows == p.torch_rows() && r.cols == p.torch_cols(), "checkpoint '", path, "': parameter '", r.name,
            "' is ", shape_str(r.rows, r.cols), " in the file but ", shape_str(p.torch_rows(), p.torch_cols()),
            " in the model");
  }
  for (const auto& t : c.terms) {
    const auto kind = static_cast<BlockKind>(t.kind);
    try {
      (void)ctl.term(kind, t.block, t.group, t.name);
    } catch (const Error& e) {
      sakura::detail::fail("checkpoint '", path, "': term ", t.block.empty() ? "main_latent" : t.block, ".", t.group,
                           ".", t.name, " is not in the model (", e.what(), ")");
    }
  }
  auto& opt = ctl.optimizer().state();
  i = 0;
  for (auto& p : params) {
    const ParamRecord& r = c.params[i];
    auto internal = [&](const std::vector<double>& v, Tensor<T>& t) {  // in place when allocated
      if (t.rows() != p.value.rows() || t.cols() != p.value.cols()) t = Tensor<T>(p.value.rows(), p.value.cols());
      for (Index a = 0; a < r.rows; ++a)
        for (Index b = 0; b < r.cols; ++b) (p.transposed ? t(b, a) : t(a, b)) = static_cast<T>(v[a * r.cols + b]);
    };
    internal(r.value, p.value);
    p.has_grad = r.has_grad;
    if (!r.grad.empty()) internal(r.grad, p.grad);
    else p.grad.fill(T(0));
    auto& s = opt[i];
    s.initialised = r.opt_initialised;
    if (r.opt_initialised) {
      internal(r.square_avg, s.square_avg);
      if (!r.momentum.empty()) internal(r.momentum, s.momentum_buffer);
      else s.momentum_buffer = Tensor<T>();
    }
    ++i;
  }
  for (const auto& t : c.terms) {
    TermState& s = ctl.term(static_cast<BlockKind>(t.kind), t.block, t.group, t.name);
    s.weight = t.weight;
    s.epoch = t.epoch;
  }
  ctl.set_counters(c.epoch, c.tick);
  ctl.rng().set_state(c.rng);
}

}  // namespace sakura::io
