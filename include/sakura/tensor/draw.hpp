// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// DrawSpec: one random array of a training step (a prior sample, SW2 projections, a dropout
/// mask) as a pure function of (key, counter, row, column pair). Because no element depends on
/// the one drawn before it, the CPU fills the array in a loop and the GPU with one thread per
/// pair, from the same formulas below, and a captured CUDA graph replays with new draws by
/// reading a new DrawSpec from device memory.
///
/// Layout: columns (2p, 2p+1) of row r come from Philox block base + r * ceil(cols / 2) + p;
/// a row's drawn class label (unsupervised gaussian mixture) from block label_base + r.
///
/// Every product that meets a sum is a mul_add (tensor/mul_add.hpp): the host's loops, a pair
/// computed alone and the GPU (nvcc --fmad=false: only explicit fma fuse) round it alike, whatever
/// the compiler would contract where (GCC's AMD tunings, for one, keep FMAs out of loop-carried sums).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "sakura/tensor/philox.hpp"

// loops of independent pairs; a no-op without OpenMP (no unknown-pragma warning)
#if defined(_OPENMP)
#define SAKURA_DRAW_SIMD _Pragma("omp simd")
#else
#define SAKURA_DRAW_SIMD
#endif

namespace sakura {

struct DrawSpec {
  enum Form : int {
    Uniform,          ///< low + (high - low) U, plus offsets[label][c] when offsets are given
    GaussianMixture,  ///< per column pair, component `label` of a mixture on a circle (SPEC §3)
    Ring2d,           ///< the unit circle at evenly spaced angles, N(0, 0.01) noise
    UnitProjections,  ///< standard normal rows scaled to unit length (in double)
    Bernoulli,        ///< dropout mask: 0 with probability p, else keep_scale
  };
  int form = Uniform;
  int n_labels = 0;  ///< GaussianMixture: components
  std::int64_t rows = 0, cols = 0;
  std::uint64_t key = 0, base = 0, label_base = 0;  ///< set by reserve()
  double a = 0, b = 0;  ///< Uniform: low, high; GaussianMixture: x_std, y_std; Bernoulli: p, keep_scale

  SAKURA_HD std::int64_t pairs_per_row() const { return (cols + 1) / 2; }
  /// Philox blocks the array consumes.
  std::uint64_t blocks(bool drawn_labels) const {
    return static_cast<std::uint64_t>(rows * pairs_per_row()) + (drawn_labels ? static_cast<std::uint64_t>(rows) : 0);
  }
};

/// Class index of row r: the supervision if given, else drawn uniformly from n_labels.
SAKURA_HD inline std::int64_t draw_label(const DrawSpec& s, std::int64_t r, const std::int64_t* labels) {
  if (labels) return labels[r];
  if (s.form != DrawSpec::GaussianMixture) return 0;
  double u, unused;
  philox::uniform_pair(s.key, s.label_base + static_cast<std::uint64_t>(r), u, unused);
  const auto k = static_cast<std::int64_t>(u * s.n_labels);
  return k < s.n_labels ? k : s.n_labels - 1;
}

/// The two raw values (uniforms or standard normals, by form) of row r, pair p.
SAKURA_HD inline void draw_raw_pair(const DrawSpec& s, std::int64_t r, std::int64_t p, double& v0, double& v1) {
  const std::uint64_t ctr = s.base + static_cast<std::uint64_t>(r * s.pairs_per_row() + p);
  if (s.form == DrawSpec::Uniform || s.form == DrawSpec::Bernoulli) philox::uniform_pair(s.key, ctr, v0, v1);
  else philox::normal_pair(s.key, ctr, v0, v1);
}

/// The raw values of n consecutive pairs from pair p0 of row r on the host (they may run on into
/// the next rows: the layout is contiguous), in vector loops (philox::uniform_pairs_host, then
/// Box-Muller): the values of draw_raw_pair, pair by pair.
inline void draw_raw_pairs_host(const DrawSpec& s, std::int64_t r, std::int64_t p0, std::int64_t n, double* v0,
                                double* v1) {
  philox::uniform_pairs_host(s.key, s.base + static_cast<std::uint64_t>(r * s.pairs_per_row() + p0), n, v0, v1);
  if (s.form == DrawSpec::Uniform || s.form == DrawSpec::Bernoulli) return;
  double t[128];
  for (std::int64_t c0 = 0; c0 < n; c0 += 128) {  // philox::box_muller, in two loops
    const std::int64_t m = n - c0 < 128 ? n - c0 : 128;
    SAKURA_DRAW_SIMD
    for (std::int64_t i = 0; i < m; ++i) philox::host::box_muller_parts(v0[c0 + i], v1[c0 + i], t[i], v0[c0 + i], v1[c0 + i]);
    std::int64_t i = 0;
#if defined(SAKURA_PHILOX_AVX512)
    for (; i + 8 <= m; i += 8) {  // t >= 0: the vector square root is std::sqrt's, without its errno check
      const __m512d radius = _mm512_sqrt_pd(_mm512_loadu_pd(t + i));
      _mm512_storeu_pd(v0 + c0 + i, _mm512_mul_pd(_mm512_loadu_pd(v0 + c0 + i), radius));
      _mm512_storeu_pd(v1 + c0 + i, _mm512_mul_pd(_mm512_loadu_pd(v1 + c0 + i), radius));
    }
#endif
    for (; i < m; ++i) {
      const double radius = std::sqrt(t[i]);
      v0[c0 + i] *= radius;
      v1[c0 + i] *= radius;
    }
  }
}

/// Final values of columns 2p and 2p+1 of row r from their raw values (v1 unused when
/// 2p+1 == cols); for UnitProjections the raw normals, which the caller divides by the row's
/// norm. `offsets` (n_labels x cols, row-major) only for a supervised Uniform.
template <class T>
SAKURA_HD inline void shape_pair_values(const DrawSpec& s, std::int64_t r, std::int64_t p, std::int64_t label,
                                        const T* offsets, double& v0, double& v1) {
  const std::int64_t c0 = 2 * p, c1 = c0 + 1;
  switch (s.form) {
    case DrawSpec::Uniform:
      v0 = mul_add(s.b - s.a, v0, s.a);
      v1 = mul_add(s.b - s.a, v1, s.a);
      if (offsets) {
        v0 += static_cast<double>(offsets[label * s.cols + c0]);
        if (c1 < s.cols) v1 += static_cast<double>(offsets[label * s.cols + c1]);
      }
      break;
    case DrawSpec::GaussianMixture: {
      const double x = s.a * v0, y = s.b * v1;
      if (c1 >= s.cols) {  // an odd last dimension is N(0, x_std)
        v0 = x;
        break;
      }
      const double theta = 6.283185307179586476925 / s.n_labels * static_cast<double>(label);
      const double ct = cos(theta), st = sin(theta);
      v0 = mul_add(x, ct, mul_add(-y, st, 1.4 * ct));  // x ct - y st + 1.4 ct
      v1 = mul_add(x, st, mul_add(y, ct, 1.4 * st));   // x st + y ct + 1.4 st
      break;
    }
    case DrawSpec::Ring2d: {
      const double ang = 6.283185307179586476925 * static_cast<double>(r) / static_cast<double>(s.rows);
      v0 = mul_add(0.01, v0, cos(ang));
      v1 = mul_add(0.01, v1, sin(ang));
      break;
    }
    case DrawSpec::UnitProjections: break;
    case DrawSpec::Bernoulli:
      v0 = v0 < s.a ? 0.0 : s.b;
      v1 = v1 < s.a ? 0.0 : s.b;
      break;
  }
}

/// draw_raw_pair followed by shape_pair_values: one pair, as a GPU thread computes it.
template <class T>
SAKURA_HD inline void draw_pair_values(const DrawSpec& s, std::int64_t r, std::int64_t p, std::int64_t label,
                                       const T* offsets, double& v0, double& v1) {
  draw_raw_pair(s, r, p, v0, v1);
  shape_pair_values(s, r, p, label, offsets, v0, v1);
}

/// Fills row-major out (rows x cols) on the host; the CUDA kernel evaluates the same functions.
/// Raw values come up to kChunk pairs at a time from draw_raw_pairs_host: several whole rows at
/// once when rows are narrow (a row's counters follow the previous row's, and a latent of 8 has
/// only 4 pairs per row), else a row in pieces; UnitProjections rows wider than one piece are
/// drawn twice (once for the norm), so nothing is allocated.
template <class T>
void draw_fill_host(T* out, const DrawSpec& s, const std::int64_t* labels, const T* offsets) {
  const std::int64_t P = s.pairs_per_row();
  constexpr std::int64_t kChunk = 128;
  double v0[kChunk], v1[kChunk];
  const bool unit = s.form == DrawSpec::UnitProjections;
  // pairs [p0, p0 + n) of row r, raw values in a[], b[]: shaped and stored, or summed (unit)
  // Bernoulli (dropout masks): shape_pair_values' u < p ? 0 : keep_scale with the uniforms and p
  // compared as integers (non-negative doubles order as their bits) so that it compiles to
  // selects: a branch on random bits mispredicts half the time (19 -> 8 ns per pair).
  const bool mask_form = s.form == DrawSpec::Bernoulli && !std::signbit(s.a);
  const std::uint64_t p_bits = std::bit_cast<std::uint64_t>(s.a);
  const T keep = static_cast<T>(s.b);
  auto emit = [&](std::int64_t r, std::int64_t p0, std::int64_t n, std::int64_t lab, double* a, double* b, double& ss) {
    T* row = out + r * s.cols;
    if (mask_form) {
      const std::int64_t full = 2 * (p0 + n) <= s.cols ? n : n - 1;  // pairs with both columns in the row
      T* __restrict o = row + 2 * p0;
      for (std::int64_t i = 0; i < full; ++i) {
        o[2 * i] = std::bit_cast<std::uint64_t>(a[i]) < p_bits ? T(0) : keep;
        o[2 * i + 1] = std::bit_cast<std::uint64_t>(b[i]) < p_bits ? T(0) : keep;
      }
      if (full < n) o[2 * full] = std::bit_cast<std::uint64_t>(a[full]) < p_bits ? T(0) : keep;
      return;
    }
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t p = p0 + i;
      const bool two = 2 * p + 1 < s.cols;
      if (unit) {  // the sum of squares in column order, as the GPU sums it
        ss = mul_add(a[i], a[i], ss);
        if (two) ss = mul_add(b[i], b[i], ss);
        continue;
      }
      shape_pair_values(s, r, p, lab, offsets, a[i], b[i]);
      row[2 * p] = static_cast<T>(a[i]);
      if (two) row[2 * p + 1] = static_cast<T>(b[i]);
    }
  };
  auto normalise = [&](std::int64_t r, std::int64_t p0, std::int64_t n, const double* a, const double* b, double norm) {
    T* row = out + r * s.cols;
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t p = p0 + i;
      row[2 * p] = static_cast<T>(a[i] / norm);
      if (2 * p + 1 < s.cols) row[2 * p + 1] = static_cast<T>(b[i] / norm);
    }
  };
  if (P <= kChunk) {
    const std::int64_t group = kChunk / P;
    for (std::int64_t r0 = 0; r0 < s.rows; r0 += group) {
      const std::int64_t nr = s.rows - r0 < group ? s.rows - r0 : group;
      draw_raw_pairs_host(s, r0, 0, nr * P, v0, v1);
      if (s.cols % 2 == 0 && (unit || (s.form == DrawSpec::Uniform && !offsets))) {
        // even width: the group's rows are nr * P whole pairs, contiguous in out, so the values
        // go out in one loop the compiler vectorises (the same operations as emit/normalise)
        const std::int64_t np = nr * P;
        T* __restrict o = out + r0 * s.cols;
        if (unit) {
          double norm[kChunk];
          for (std::int64_t r = 0; r < nr; ++r) {
            double ss = 0;  // column order, as emit sums
            for (std::int64_t p = r * P; p < (r + 1) * P; ++p) ss = mul_add(v1[p], v1[p], mul_add(v0[p], v0[p], ss));
            std::fill(norm + r * P, norm + (r + 1) * P, sqrt(ss));
          }
          SAKURA_DRAW_SIMD
          for (std::int64_t j = 0; j < np; ++j) {
            o[2 * j] = static_cast<T>(v0[j] / norm[j]);
            o[2 * j + 1] = static_cast<T>(v1[j] / norm[j]);
          }
        } else {
          const double low = s.a, width = s.b - s.a;
          SAKURA_DRAW_SIMD
          for (std::int64_t j = 0; j < np; ++j) {
            o[2 * j] = static_cast<T>(mul_add(width, v0[j], low));
            o[2 * j + 1] = static_cast<T>(mul_add(width, v1[j], low));
          }
        }
        continue;
      }
      for (std::int64_t r = r0; r < r0 + nr; ++r) {
        double* a = v0 + (r - r0) * P;
        double* b = v1 + (r - r0) * P;
        double ss = 0;
        emit(r, 0, P, draw_label(s, r, labels), a, b, ss);
        if (unit) normalise(r, 0, P, a, b, sqrt(ss));
      }
    }
    return;
  }
  for (std::int64_t r = 0; r < s.rows; ++r) {
    const std::int64_t lab = draw_label(s, r, labels);
    double ss = 0;
    for (std::int64_t p0 = 0; p0 < P; p0 += kChunk) {
      const std::int64_t n = P - p0 < kChunk ? P - p0 : kChunk;
      draw_raw_pairs_host(s, r, p0, n, v0, v1);
      emit(r, p0, n, lab, v0, v1, ss);
    }
    if (!unit) continue;
    const double norm = sqrt(ss);
    for (std::int64_t p0 = 0; p0 < P; p0 += kChunk) {
      const std::int64_t n = P - p0 < kChunk ? P - p0 : kChunk;
      draw_raw_pairs_host(s, r, p0, n, v0, v1);
      normalise(r, p0, n, v0, v1, norm);
    }
  }
}

}  // namespace sakura
