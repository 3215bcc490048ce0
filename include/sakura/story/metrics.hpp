// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Quality measures of a trained model: Pearson correlation (signature head vs marker expression)
/// and k-nearest-neighbour label accuracy of a latent space (held-out cells against training cells).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "sakura/error.hpp"
#include "sakura/tensor/tensor.hpp"

namespace sakura::story {

/// Pearson's r of two equally long series; 0 when either is constant.
inline double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  detail::require(a.size() == b.size() && !a.empty(), "pearson: series of different or zero length");
  const double n = static_cast<double>(a.size());
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) ma += a[i], mb += b[i];
  ma /= n;
  mb /= n;
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0.0;
}

/// Fraction of query points whose k nearest reference points (Euclidean) mostly carry the query's
/// label (ties go to the smallest label). Points are rows of dim values.
inline double knn_accuracy(const std::vector<float>& ref, const std::vector<std::int64_t>& ref_labels,
                           const std::vector<float>& query, const std::vector<std::int64_t>& query_labels, Index dim,
                           int k) {
  const std::size_t nr = ref_labels.size(), nq = query_labels.size();
  detail::require(dim > 0 && ref.size() == nr * dim && query.size() == nq * dim && nr > 0 && nq > 0 && k > 0,
                  "knn_accuracy: inconsistent sizes");
  std::vector<std::pair<double, std::int64_t>> d(nr);
  std::size_t hits = 0;
  const std::size_t kk = std::min<std::size_t>(static_cast<std::size_t>(k), nr);
  for (std::size_t q = 0; q < nq; ++q) {
    for (std::size_t r = 0; r < nr; ++r) {
      double s = 0;
      for (Index j = 0; j < dim; ++j) {
        const double x = static_cast<double>(query[q * dim + j]) - ref[r * dim + j];
        s += x * x;
      }
      d[r] = {s, ref_labels[r]};
    }
    std::partial_sort(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(kk), d.end());
    std::map<std::int64_t, int> votes;
    for (std::size_t i = 0; i < kk; ++i) ++votes[d[i].second];
    std::int64_t best = -1;
    int most = 0;
    for (auto [label, v] : votes)
      if (v > most) best = label, most = v;
    hits += best == query_labels[q];
  }
  return static_cast<double>(hits) / static_cast<double>(nq);
}

}  // namespace sakura::story
