// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Philox4x32-10 (Salmon et al. 2011) as pure functions of (counter, key), compiled for the host
/// and, under nvcc, for the device: the one definition of every random number the library makes.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "sakura/tensor/mul_add.hpp"

// the host's batch of blocks in AVX-512 (not under nvcc, whose host pass needs none of it)
#if defined(__AVX512F__) && defined(__AVX512DQ__) && !defined(__CUDACC__)
#define SAKURA_PHILOX_AVX512 1
#include <immintrin.h>
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

/// uniform_pair for blocks ctr, ctr + 1, ..., ctr + n - 1 into u0[i], u1[i], bit for bit, on the
/// host. With AVX-512, eight blocks at a time, each 32-bit word in the low half of a 64-bit lane
/// so that Philox's 32 x 32 -> 64 products are single vpmuludq instructions (GCC vectorises the
/// scalar block() with vpmullq, a 64 x 64 product three times as expensive: 6 -> ~1.5 ns a block).
/// The high halves of the lanes carry garbage that no product reads; the final words are masked.
inline void uniform_pairs_host(std::uint64_t key, std::uint64_t ctr, std::int64_t n, double* u0, double* u1) {
  std::int64_t i = 0;
#if defined(SAKURA_PHILOX_AVX512)
  const __m512i m0 = _mm512_set1_epi64(0xD2511F53), m1 = _mm512_set1_epi64(0xCD9E8D57);
  const __m512i low = _mm512_set1_epi64(0xffffffff), lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
  __m512i k0[10], k1[10];  // the round keys, as block() bumps them
  for (std::uint32_t r = 0, a = static_cast<std::uint32_t>(key), b = static_cast<std::uint32_t>(key >> 32); r < 10;
       ++r, a += 0x9E3779B9u, b += 0xBB67AE85u) {
    k0[r] = _mm512_set1_epi64(a);
    k1[r] = _mm512_set1_epi64(b);
  }
  const __m512d scale = _mm512_set1_pd(1.0 / 9007199254740992.0);
  // unit(): (hi >> 5) * 2^26 + (lo >> 6) is a 53-bit integer, converted exactly
  auto unit = [&](__m512i hi, __m512i lo) {
    const __m512i v = _mm512_or_si512(_mm512_slli_epi64(_mm512_srli_epi64(_mm512_and_si512(hi, low), 5), 26),
                                      _mm512_srli_epi64(_mm512_and_si512(lo, low), 6));
    return _mm512_mul_pd(_mm512_cvtepi64_pd(v), scale);
  };
  // V vectors of eight blocks side by side: one round is a chain of ~7 cycles (product, shift,
  // xor), so a single vector would wait on it
  auto blocks = [&]<int V>(std::integral_constant<int, V>) {
    __m512i c0[V], c1[V], c2[V], c3[V];
    for (int v = 0; v < V; ++v) {
      c0[v] = _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(ctr + static_cast<std::uint64_t>(i + 8 * v))), lane);
      c1[v] = _mm512_srli_epi64(c0[v], 32);
      c2[v] = c3[v] = _mm512_setzero_si512();
    }
    for (int r = 0; r < 10; ++r)
      for (int v = 0; v < V; ++v) {
        const __m512i p0 = _mm512_mul_epu32(c0[v], m0), p1 = _mm512_mul_epu32(c2[v], m1);
        c0[v] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), c1[v], k0[r], 0x96);  // xor of the three
        c2[v] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), c3[v], k1[r], 0x96);
        c1[v] = p1;
        c3[v] = p0;
      }
    for (int v = 0; v < V; ++v) {
      _mm512_storeu_pd(u0 + i + 8 * v, unit(c0[v], c1[v]));
      _mm512_storeu_pd(u1 + i + 8 * v, unit(c2[v], c3[v]));
    }
    i += 8 * V;
  };
  while (i + 32 <= n) blocks(std::integral_constant<int, 4>{});
  while (i + 8 <= n) blocks(std::integral_constant<int, 1>{});
#endif
  for (; i < n; ++i) uniform_pair(key, ctr + static_cast<std::uint64_t>(i), u0[i], u1[i]);
}

/// Host math for Box-Muller, branch-free so that loops over many pairs vectorise (libm's log
/// and sincos are scalar calls and were most of the cost of drawing SW2 projections). fdlibm's
/// polynomials (Sun Microsystems, freely redistributable): errors below 1 ulp, as libm's; the
/// GPU uses its own log/sincos, so the two agree up to that rounding, as before. Written with
/// mul_add, so a pair drawn alone (draw_raw_pair) equals the same pair of a vector loop bit for bit.
namespace host {
/// log(u) for a positive normal u (Box-Muller clamps u >= 1e-300).
inline double log_normal(double u) {
  constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  constexpr double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01, Lg3 = 2.857142874366239149e-01,
                   Lg4 = 2.222219843214978396e-01, Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                   Lg7 = 1.479819860511658591e-01;
  // std::bit_cast, not memcpy: it keeps u in a register, so loops over log_normal vectorise
  const std::uint64_t bits = std::bit_cast<std::uint64_t>(u);
  std::int64_t k = static_cast<std::int64_t>(bits >> 52) - 1023;  // u > 0: no sign bit
  double m = std::bit_cast<double>((bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull);  // [1, 2)
  const bool big = m > 1.41421356237309504880;  // m in [sqrt(1/2), sqrt(2)): f small
  m = big ? 0.5 * m : m;
  k += big ? 1 : 0;
  // fdlibm's expression with every product that meets a sum in a mul_add (the same bits in the
  // vector loops and one pair at a time, whatever the compiler would contract)
  const double f = m - 1.0, dk = static_cast<double>(k), hf = 0.5 * f;
  const double s = f / (2.0 + f), z = s * s, w = z * z;
  const double odd = z * mul_add(w, mul_add(w, mul_add(w, Lg7, Lg5), Lg3), Lg1);
  const double R = mul_add(w, mul_add(w, mul_add(w, Lg6, Lg4), Lg2), odd);
  const double t = mul_add(s, mul_add(hf, f, R), dk * ln2_lo);  // s (hfsq + R) + k ln2_lo, hfsq = f^2 / 2
  return mul_add(dk, ln2_hi, f - mul_add(hf, f, -t));            // k ln2_hi - ((hfsq - t) - f)
}
struct SinCos {
  double s, c;
};
/// sin and cos of x, |x| <= pi/4.
inline SinCos sincos_small(double x) {
  constexpr double S1 = -1.66666666666666324348e-01, S2 = 8.33333333332248946124e-03,
                   S3 = -1.98412698298579493134e-04, S4 = 2.75573137070700676789e-06,
                   S5 = -2.50507602534068634195e-08, S6 = 1.58969099521155010221e-10;
  constexpr double C1 = 4.16666666666666019037e-02, C2 = -1.38888888888741095749e-03,
                   C3 = 2.48015872894767294178e-05, C4 = -2.75573143513906633035e-07,
                   C5 = 2.08757232129817482790e-09, C6 = -1.13596475577881948265e-11;
  const double z = x * x;  // products meeting sums in mul_adds, as in log_normal
  const double sn = mul_add(z * x, mul_add(z, mul_add(z, mul_add(z, mul_add(z, mul_add(z, S6, S5), S4), S3), S2), S1), x);
  const double r = z * mul_add(z, mul_add(z, mul_add(z, mul_add(z, mul_add(z, C6, C5), C4), C3), C2), C1);
  const double w = mul_add(-0.5, z, 1.0);  // 1 - z / 2
  return {sn, w + mul_add(z, r, mul_add(-0.5, z, 1.0 - w))};  // w + (((1 - w) - z / 2) + z r)
}
/// sin and cos of 2 pi u for u in [0, 1): the quadrant comes exactly from 4u (no pi-sized
/// rounding in the argument), the rest from sincos_small.
inline SinCos sincos_turn(double u) {
  // the nearest quadrant 0..4 (4 is 0); truncation, not floor(), so the loop vectorises. 4u is
  // exact, so these mul_adds round as 4u + 0.5 and 4u - q would: they only pin that down.
  const std::int64_t quadrant = static_cast<std::int64_t>(mul_add(4.0, u, 0.5));
  const double q = static_cast<double>(quadrant);
  const SinCos k = sincos_small(mul_add(4.0, u, -q) * 1.57079632679489661923);
  const double s = (quadrant & 1) ? k.c : k.s;  // quadrants 1, 3: sin(x + pi/2) = cos x
  const double c = (quadrant & 1) ? k.s : k.c;
  return {(quadrant & 2) ? -s : s, ((quadrant + 1) & 2) ? -c : c};  // 2, 3: -sin; 1, 2: -cos
}
/// Box-Muller without its square root: t = -2 log(max(u1, 1e-300)) and the unit vector of
/// angle 2 pi u2. (The square root stays out so this vectorises: a scalar sqrt is cheap, and a
/// vectorised one needs -fno-math-errno.)
inline void box_muller_parts(double u1, double u2, double& t, double& cs, double& sn) {
  // max(u1, 1e-300) on the bits (non-negative doubles order as integers): GCC if-converts an
  // integer select but not a floating-point compare, and the loop would not vectorise
  constexpr std::uint64_t tiny = std::bit_cast<std::uint64_t>(1e-300);
  const std::uint64_t b = std::bit_cast<std::uint64_t>(u1);
  t = -2.0 * log_normal(std::bit_cast<double>(b < tiny ? tiny : b));
  const SinCos a = sincos_turn(u2);
  cs = a.c;
  sn = a.s;
}
}  // namespace host

/// Box-Muller: two independent standard normals (r cos a, r sin a) from two uniforms.
SAKURA_HD inline void box_muller(double u1, double u2, double& n0, double& n1) {
#if defined(__CUDA_ARCH__)
  u1 = u1 < 1e-300 ? 1e-300 : u1;
  const double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586476925 * u2;
  n0 = r * cos(a);
  n1 = r * sin(a);
#else
  double t, cs, sn;
  host::box_muller_parts(u1, u2, t, cs, sn);
  const double r = std::sqrt(t);
  n0 = r * cs;
  n1 = r * sn;
#endif
}

/// Two independent standard normals from block ctr.
SAKURA_HD inline void normal_pair(std::uint64_t key, std::uint64_t ctr, double& n0, double& n1) {
  double u1, u2;
  uniform_pair(key, ctr, u1, u2);
  box_muller(u1, u2, n0, n1);
}

}  // namespace sakura::philox
