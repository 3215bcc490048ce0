// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Rng: a seedable counter-based generator (Philox4x32-10) owned by the controller, and
/// DrawQueue: the injection point that replays the exact arrays a golden file recorded.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <deque>
#include <numbers>
#include <string>
#include <vector>

#include "sakura/error.hpp"
#include "sakura/tensor/draw.hpp"
#include "sakura/tensor/philox.hpp"
#include "sakura/tensor/tensor.hpp"

namespace sakura {

/// Philox4x32-10 (Salmon et al. 2011). Counter-based, so the full state is (key, counter,
/// buffered lane): tiny to checkpoint, and reproducible on the GPU from the same (seed, offset).
class Rng {
 public:
  struct State {
    std::uint64_t key = 0;
    std::uint64_t counter = 0;
    std::uint32_t lane = 4;
    std::array<std::uint32_t, 4> block{};
    bool has_spare = false;  // Box-Muller makes normals in pairs; the second waits here
    double spare = 0.0;
    bool operator==(const State&) const = default;
  };

  explicit Rng(std::uint64_t seed = 3407) { state_.key = seed; }

  std::uint32_t next_u32() {
    if (state_.lane >= 4) {
      state_.block = philox(state_.counter++, state_.key);
      state_.lane = 0;
    }
    return state_.block[state_.lane++];
  }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() {
    const std::uint32_t a = next_u32(), b = next_u32();  // in this order
    return philox::unit(a, b);
  }
  double uniform(double low, double high) { return low + (high - low) * uniform(); }
  /// Standard normal by Box-Muller; each pair of uniforms gives two normals (the second is kept
  /// in the state, so a checkpoint resumes exactly).
  double normal() {
    if (state_.has_spare) {
      state_.has_spare = false;
      return state_.spare;
    }
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double r = std::sqrt(-2.0 * std::log(u1)), a = 2.0 * std::numbers::pi * u2;
    state_.spare = r * std::sin(a);
    state_.has_spare = true;
    return r * std::cos(a);
  }
  double normal(double mean, double stddev) { return mean + stddev * normal(); }
  /// Uniform integer in [0, n).
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : static_cast<std::uint64_t>(uniform() * double(n)) % n; }

  /// Reserves the Philox blocks of one random array (tensor/draw.hpp) and stamps them into s.
  /// A partly used block and a pending normal are dropped, so every array starts on a fresh
  /// block and the same state gives the same array on the CPU and on the GPU.
  void reserve(DrawSpec& s, bool drawn_labels = false) {
    state_.lane = 4;
    state_.has_spare = false;
    s.key = state_.key;
    s.base = state_.counter;
    s.label_base = s.base + static_cast<std::uint64_t>(s.rows * s.pairs_per_row());
    state_.counter += s.blocks(drawn_labels);
  }

  const State& state() const { return state_; }
  void set_state(const State& s) { state_ = s; }
  void seed(std::uint64_t s) { state_ = State{}; state_.key = s; }

 private:
  static std::array<std::uint32_t, 4> philox(std::uint64_t ctr, std::uint64_t key) {
    const philox::Block b = philox::block(ctr, key);
    return {b.v[0], b.v[1], b.v[2], b.v[3]};
  }
  State state_;
};

/// Kinds of random arrays a training step draws (SPEC §3).
enum class DrawKind { prior_samples, projections, dropout_mask };

inline const char* to_string(DrawKind k) {
  switch (k) {
    case DrawKind::prior_samples: return "prior_samples";
    case DrawKind::projections: return "projections";
    case DrawKind::dropout_mask: return "dropout_mask";
  }
  return "?";
}

/// One recorded random array, e.g. from a golden file: site "main_latent.regularization.sw2".
struct RecordedDraw {
  std::string site;
  DrawKind kind = DrawKind::prior_samples;
  Index rows = 0, cols = 0;
  std::vector<double> data;  // row-major
};

/// FIFO of injected draws. When non-empty, every draw the controller makes is served from
/// here instead of the generator, after checking site, kind and shape (errors name all three).
class DrawQueue {
 public:
  void push(RecordedDraw d) { q_.push_back(std::move(d)); }
  bool empty() const { return pos_ >= q_.size(); }
  std::size_t remaining() const { return q_.size() - pos_; }
  void clear() { q_.clear(); pos_ = 0; }
  std::size_t position() const { return pos_; }
  void rewind_to(std::size_t p) { pos_ = p; }

  template <class T>
  void pop_into(const std::string& site, DrawKind kind, MatrixRef<T> out) {
    detail::require(!empty(), "injected draws exhausted: ", site, " wants ", to_string(kind), " ",
                    shape_str(out.rows, out.cols));
    const RecordedDraw& d = q_[pos_];
    detail::require(d.site == site && d.kind == kind && d.rows == out.rows && d.cols == out.cols,
                    "injected draw mismatch: next recorded draw is ", d.site, " ", to_string(d.kind), " ",
                    shape_str(d.rows, d.cols), " but the step asks for ", site, " ", to_string(kind), " ",
                    shape_str(out.rows, out.cols));
    for (Index r = 0; r < out.rows; ++r)
      for (Index c = 0; c < out.cols; ++c) out(r, c) = static_cast<T>(d.data[r * d.cols + c]);
    ++pos_;
  }

 private:
  std::vector<RecordedDraw> q_;
  std::size_t pos_ = 0;
};

}  // namespace sakura
