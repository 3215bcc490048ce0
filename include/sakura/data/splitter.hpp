// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Seeded train/test splits with upstream's semantics (DataSplitter.auto_random_k_bin_labelling
/// followed by get_incremental_train_test_split), and the named set of splits a story uses.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "sakura/data/row_set.hpp"
#include "sakura/error.hpp"
#include "sakura/tensor/rng.hpp"
#include "sakura/tensor/tensor.hpp"

namespace sakura::data {

/// Labels every included cell (base != 0) with a bin 1..k, 0 for excluded ones: the bins
/// 1..k repeated n/k times plus 1..(n % k), shuffled with a generator seeded by `seed`.
/// Upstream shuffles with numpy's global generator (np.random.seed(seed)); numpy's Mersenne
/// Twister stream is not reproduced here, so the same seed gives a different (but equally
/// balanced and equally reproducible) assignment than upstream.
inline std::vector<int> random_k_bin_labels(std::span<const char> base, int k, std::uint64_t seed) {
  detail::require(k > 0, "k-bin labelling needs k > 0 (got ", k, ")");
  std::vector<int> bins;
  Index n = 0;
  for (char b : base) n += b != 0;
  const Index rep = n / k, rmd = n % k;
  bins.reserve(static_cast<std::size_t>(n));
  for (int b = 1; b <= k; ++b)
    for (Index r = 0; r < rep; ++r) bins.push_back(b);
  for (Index b = 1; b <= rmd; ++b) bins.push_back(static_cast<int>(b));
  Rng rng(seed);
  for (std::size_t i = bins.size(); i > 1; --i) std::swap(bins[i - 1], bins[rng.below(i)]);  // Fisher-Yates
  std::vector<int> out(base.size(), 0);
  std::size_t next = 0;
  for (std::size_t i = 0; i < base.size(); ++i)
    if (base[i] != 0) out[i] = bins[next++];
  return out;
}

struct TrainTestMasks {
  std::vector<char> train, test;
};

/// Cells labelled 1..k train, the other labelled cells test, unlabelled cells neither
/// (upstream's get_incremental_train_test_split; k = `train_dec` tenths when bins are 1..10).
inline TrainTestMasks incremental_train_test_split(std::span<const int> bins, int k) {
  TrainTestMasks m;
  m.train.assign(bins.size(), 0);
  m.test.assign(bins.size(), 0);
  for (std::size_t i = 0; i < bins.size(); ++i) {
    if (bins[i] == 0) continue;
    (bins[i] <= k ? m.train : m.test)[i] = 1;
  }
  return m;
}

/// Named cell subsets ("all", "overall_train", "pheno_<name>_test", ...), rows ascending.
class Splits {
 public:
  void set(const std::string& name, std::span<const char> mask) {
    RowSet rows = RowSet::from_mask(mask);  // a bit per cell: splits of an atlas stay small
    for (auto& s : splits_)
      if (s.first == name) {
        s.second = std::move(rows);
        return;
      }
    splits_.emplace_back(name, std::move(rows));
  }
  bool contains(const std::string& name) const {
    for (auto& s : splits_)
      if (s.first == name) return true;
    return false;
  }
  /// Rows of a split; throws naming it and the splits that exist.
  const RowSet& rows(const std::string& name) const {
    for (auto& s : splits_)
      if (s.first == name) return s.second;
    detail::fail("no split named '", name, "'; splits: ", names_str());
  }
  /// A mask over n cells.
  std::vector<char> mask(const std::string& name, Index n) const {
    std::vector<char> m(static_cast<std::size_t>(n), 0);
    for (Index r : rows(name)) m[static_cast<std::size_t>(r)] = 1;
    return m;
  }
  const std::vector<std::pair<std::string, RowSet>>& all() const { return splits_; }
  std::string names_str() const {
    std::string s;
    for (auto& p : splits_) s += (s.empty() ? "" : ", ") + p.first;
    return s.empty() ? "(none)" : s;
  }

 private:
  std::vector<std::pair<std::string, RowSet>> splits_;
};

}  // namespace sakura::data
