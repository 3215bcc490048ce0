// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Progress of a training action: a redrawn bar with ticks/s, ETA and the current total loss on a
/// terminal, plain lines every ~10% (or 30 s) otherwise. Formats into a stack buffer (no allocation).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace sakura::story {

class Progress {
 public:
  enum class Style { Bar, Lines, None };
  explicit Progress(Style s = Style::None, std::FILE* out = stderr) : style_(s), out_(out) {}

  void begin(const std::string& label, std::int64_t total, std::int64_t done = 0) {
    label_ = label;
    total_ = total;
    start_done_ = done;
    last_pct_ = -1;
    t0_ = last_ = Clock::now();
    if (style_ == Style::Lines) std::fprintf(out_, "%s: %lld/%lld ticks\n", label_.c_str(), (long long)done, (long long)total);
  }
  void update(std::int64_t done, double loss) {
    if (style_ == Style::None) return;
    const auto now = Clock::now();
    const double since = std::chrono::duration<double>(now - last_).count();
    if (style_ == Style::Bar) {
      if (since < 0.1 && done < total_) return;
    } else {
      const int pct = total_ > 0 ? static_cast<int>(done * 10 / total_) : 10;
      if (pct == last_pct_ && since < 30.0 && done < total_) return;
      last_pct_ = pct;
    }
    last_ = now;
    draw(done, loss, now);
  }
  void end() {
    if (style_ == Style::Bar) std::fputc('\n', out_);
    std::fflush(out_);
  }

 private:
  using Clock = std::chrono::steady_clock;
  void draw(std::int64_t done, double loss, Clock::time_point now) {
    const double el = std::chrono::duration<double>(now - t0_).count();
    const double rate = el > 0 ? static_cast<double>(done - start_done_) / el : 0.0;
    const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : 0.0;
    char eta_s[32];
    const long e = static_cast<long>(eta + 0.5);
    if (e >= 3600) std::snprintf(eta_s, sizeof eta_s, "%ldh%02ldm", e / 3600, (e / 60) % 60);
    else std::snprintf(eta_s, sizeof eta_s, "%ldm%02lds", e / 60, e % 60);
    if (style_ == Style::Bar) {
      char bar[31];
      const int filled = total_ > 0 ? static_cast<int>(30 * done / total_) : 30;
      for (int i = 0; i < 30; ++i) bar[i] = i < filled ? '#' : '.';
      bar[30] = 0;
      std::fprintf(out_, "\r%s [%s] %lld/%lld  %.1f ticks/s  ETA %s  loss %.5g   ", label_.c_str(), bar,
                   (long long)done, (long long)total_, rate, eta_s, loss);
    } else {
      std::fprintf(out_, "%s: %lld/%lld ticks  %.1f ticks/s  ETA %s  loss %.5g\n", label_.c_str(), (long long)done,
                   (long long)total_, rate, eta_s, loss);
    }
    std::fflush(out_);
  }
  Style style_;
  std::FILE* out_;
  std::string label_;
  std::int64_t total_ = 0, start_done_ = 0;
  int last_pct_ = -1;
  Clock::time_point t0_, last_;
};

}  // namespace sakura::story
