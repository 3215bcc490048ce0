// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Prior samplers for the sliced-Wasserstein and KL regularizers (SPEC §3), in the shapes
/// upstream's sakura.utils.distributions produces.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include "sakura/tensor/rng.hpp"

namespace sakura::priors {

/// Uniform(low, high)^L, each row shifted by offsets[label] when labels and offsets are given.
template <class T>
void uniform(MatrixRef<T> out, Rng& rng, double low, double high, const std::int64_t* labels = nullptr,
             const std::vector<std::vector<double>>* offsets = nullptr) {
  for (Index r = 0; r < out.rows; ++r)
    for (Index c = 0; c < out.cols; ++c) {
      double v = rng.uniform(low, high);
      if (labels && offsets) v += (*offsets)[static_cast<std::size_t>(labels[r])][static_cast<std::size_t>(c)];
      out(r, c) = static_cast<T>(v);
    }
}

/// Per pair of dimensions: n_labels Gaussian components (std x_std, y_std) on a circle of
/// radius 1.4, component k rotated to angle 2 pi k / n_labels; an odd last dimension is N(0, x_std).
/// Labels come from supervision, else are drawn uniformly.
template <class T>
void gaussian_mixture(MatrixRef<T> out, Rng& rng, int n_labels, double x_std, double y_std,
                      const std::int64_t* labels = nullptr) {
  const Index n = out.rows, pairs = out.cols / 2;
  for (Index r = 0; r < n; ++r) {
    const double label = labels ? double(labels[r]) : double(rng.below(static_cast<std::uint64_t>(n_labels)));
    const double theta = 2.0 * std::numbers::pi / n_labels * label;
    const double ct = std::cos(theta), st = std::sin(theta);
    for (Index p = 0; p < pairs; ++p) {
      const double x = rng.normal(0.0, x_std), y = rng.normal(0.0, y_std);
      out(r, 2 * p) = static_cast<T>(x * ct - y * st + 1.4 * ct);
      out(r, 2 * p + 1) = static_cast<T>(x * st + y * ct + 1.4 * st);
    }
    if (out.cols % 2) out(r, out.cols - 1) = static_cast<T>(rng.normal(0.0, x_std));
  }
}

/// Points on the unit circle (evenly spaced angles) with N(0, 0.01) noise: sklearn's
/// make_circles outer ring, which upstream uses. Order is irrelevant to the sorted SW2.
template <class T>
void ring2d(MatrixRef<T> out, Rng& rng) {
  for (Index r = 0; r < out.rows; ++r) {
    const double a = 2.0 * std::numbers::pi * double(r) / double(out.rows);
    out(r, 0) = static_cast<T>(std::cos(a) + rng.normal(0.0, 0.01));
    out(r, 1) = static_cast<T>(std::sin(a) + rng.normal(0.0, 0.01));
  }
}

/// P directions drawn standard normal, each normalised to unit length in double, then rounded.
template <class T>
void unit_projections(MatrixRef<T> out, Rng& rng) {
  constexpr Index kStack = 512;
  double row[kStack];
  for (Index r = 0; r < out.rows; ++r) {
    if (out.cols > kStack) {  // very wide latents: draw twice (the counter-based state replays)
      const Rng::State start = rng.state();
      double s = 0;
      for (Index c = 0; c < out.cols; ++c) {
        const double v = rng.normal();
        s += v * v;
      }
      s = std::sqrt(s);
      rng.set_state(start);
      for (Index c = 0; c < out.cols; ++c) out(r, c) = static_cast<T>(rng.normal() / s);
      continue;
    }
    double s = 0;
    for (Index c = 0; c < out.cols; ++c) {
      row[c] = rng.normal();
      s += row[c] * row[c];
    }
    s = std::sqrt(s);
    for (Index c = 0; c < out.cols; ++c) out(r, c) = static_cast<T>(row[c] / s);
  }
}

}  // namespace sakura::priors
