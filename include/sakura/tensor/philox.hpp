// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Philox4x32-10 (Salmon et al. 2011) as pure functions of (counter, key), compiled for the host
/// and, under nvcc, for the device: the one definition of every random number the library makes.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SAKURA_HD __host__ __device__
#else
#define SAKURA_HD
#endif

namespace sakura::philox {

struct Block {
  std::uint32_t v[4];
};

/// Ten rounds of Philox4x32 on counter (ctr, 0) with a 64-bit key.
SAKURA_HD inline Block block(std::uint64_t ctr, std::uint64_t key) {
  std::uint32_t c0 = static_cast<std::uint32_t>(ctr), c1 = static_cast<std::uint32_t>(ctr >> 32), c2 = 0, c3 = 0;
  std::uint32_t k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
  for (int r = 0; r < 10; ++r) {
    const std::uint64_t p0 = std::uint64_t(0xD2511F53u) * c0, p1 = std::uint64_t(0xCD9E8D57u) * c2;
    const std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<std::uint32_t>(p1);
    c3 = static_cast<std::uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Block{{c0, c1, c2, c3}};
}

/// Uniform in [0, 1) with 53 random bits from two words.
SAKURA_HD inline double unit(std::uint32_t a, std::uint32_t b) {
  const std::uint64_t hi = a >> 5, lo = b >> 6;
  return (static_cast<double>(hi) * 67108864.0 + static_cast<double>(lo)) * (1.0 / 9007199254740992.0);
}

/// The two uniforms of block ctr.
SAKURA_HD inline void uniform_pair(std::uint64_t key, std::uint64_t ctr, double& u0, double& u1) {
  const Block b = block(ctr, key);
  u0 = unit(b.v[0], b.v[1]);
  u1 = unit(b.v[2], b.v[3]);
}

/// Two independent standard normals from block ctr by Box-Muller (r cos a, r sin a).
SAKURA_HD inline void normal_pair(std::uint64_t key, std::uint64_t ctr, double& n0, double& n1) {
  double u1, u2;
  uniform_pair(key, ctr, u1, u2);
  if (u1 < 1e-300) u1 = 1e-300;
  const double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586476925 * u2;
  n0 = r * cos(a);
  n1 = r * sin(a);
}

}  // namespace sakura::philox
