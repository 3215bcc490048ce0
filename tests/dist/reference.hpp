// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Data and serial references for the dist tests: every rank can generate every rank's values, so
// each collective is checked against a plain loop over ranks.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "sakura/tensor/rng.hpp"
#include "sakura/tensor/tensor.hpp"

namespace sakura::test {

/// n values of rank r, magnitudes spread over 2^-12 .. 2^12 with both signs, so that sums in
/// different orders round differently (the order checks can fail).
template <class T>
std::vector<T> rank_values(std::uint64_t seed, int rank, Index n) {
  Rng rng(seed * 1000003 + static_cast<std::uint64_t>(rank));
  std::vector<T> v(static_cast<std::size_t>(n));
  for (T& x : v) {
    const double mag = std::ldexp(1.0 + rng.uniform(), static_cast<int>(rng.uniform() * 25) - 12);
    x = static_cast<T>(rng.uniform() < 0.5 ? -mag : mag);
  }
  return v;
}

/// Sum over ranks of rank_values, added in rank order (the contract), or in reverse rank order
/// (a different order, to show the data is order-sensitive).
template <class T>
std::vector<T> serial_sum(std::uint64_t seed, int ranks, Index n, bool reverse = false) {
  std::vector<T> acc = rank_values<T>(seed, reverse ? ranks - 1 : 0, n);
  for (int k = 1; k < ranks; ++k) {
    const std::vector<T> v = rank_values<T>(seed, reverse ? ranks - 1 - k : k, n);
    for (std::size_t i = 0; i < acc.size(); ++i) acc[i] += v[i];
  }
  return acc;
}

template <class T>
bool same_bits(const T* a, const T* b, std::size_t n) {
  return n == 0 || std::memcmp(a, b, n * sizeof(T)) == 0;
}
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && same_bits(a.data(), b.data(), a.size());
}

}  // namespace sakura::test
