// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Prior samplers for the sliced-Wasserstein and KL regularizers (SPEC §3), in the shapes
/// upstream's sakura.utils.distributions produces. Each is a DrawSpec (tensor/draw.hpp): the
/// formulas live there, so the CPU and the GPU draw the same arrays from the same state.
#pragma once

#include <cstdint>
#include <vector>

#include "sakura/tensor/rng.hpp"

namespace sakura::priors {

/// Uniform(low, high)^L; a supervised prior adds offsets[label] to each row (see draw.hpp).
inline DrawSpec uniform(Index rows, Index cols, double low, double high) {
  DrawSpec s;
  s.form = DrawSpec::Uniform;
  s.rows = rows, s.cols = cols, s.a = low, s.b = high;
  return s;
}

/// Per pair of dimensions: n_labels Gaussian components (std x_std, y_std) on a circle of
/// radius 1.4, component k rotated to angle 2 pi k / n_labels; an odd last dimension is N(0, x_std).
/// Labels come from supervision, else are drawn uniformly.
inline DrawSpec gaussian_mixture(Index rows, Index cols, int n_labels, double x_std, double y_std) {
  DrawSpec s;
  s.form = DrawSpec::GaussianMixture;
  s.rows = rows, s.cols = cols, s.n_labels = n_labels, s.a = x_std, s.b = y_std;
  return s;
}

/// Points on the unit circle (evenly spaced angles) with N(0, 0.01) noise: sklearn's
/// make_circles outer ring, which upstream uses. Order is irrelevant to the sorted SW2.
inline DrawSpec ring2d(Index rows) {
  DrawSpec s;
  s.form = DrawSpec::Ring2d;
  s.rows = rows, s.cols = 2;
  return s;
}

/// P directions drawn standard normal, each normalised to unit length in double, then rounded.
inline DrawSpec unit_projections(Index rows, Index cols) {
  DrawSpec s;
  s.form = DrawSpec::UnitProjections;
  s.rows = rows, s.cols = cols;
  return s;
}

/// Draws spec into out on the host from rng (what the controller's step does on the CPU).
/// `offsets` (n_labels rows of out.cols) shift a uniform prior's rows by their label.
template <class T>
void sample(MatrixRef<T> out, DrawSpec s, Rng& rng, const std::int64_t* labels = nullptr,
            const std::vector<std::vector<double>>* offsets = nullptr) {
  detail::require(out.contiguous() && out.rows == s.rows && out.cols == s.cols, "priors::sample: output ",
                  shape_str(out.rows, out.cols), " does not match the draw ", shape_str(s.rows, s.cols));
  rng.reserve(s, s.form == DrawSpec::GaussianMixture && !labels);
  std::vector<T> off;
  if (offsets)
    for (auto& row : *offsets)
      for (double v : row) off.push_back(static_cast<T>(v));
  draw_fill_host(out.data, s, labels, offsets ? off.data() : nullptr);
}

}  // namespace sakura::priors
