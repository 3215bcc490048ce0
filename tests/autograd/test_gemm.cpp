// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// cpu::gemm against a double-precision reference in all four transpose modes, over shapes that
/// cross every edge of the small-product kernel (8- and 6-row tiles, 16-lane vectors, 64-column panels,
/// 16 x 16 transpose blocks, its stack buffer) and the hand-over to the library above it:
/// values within a k-proportional rounding bound, nothing written outside C's m x n block
/// (padding of the leading dimensions is checked), and C not read when beta == 0; products big
/// enough to fork, on 1-3 threads, split by rows or by columns, allocate nothing once warm.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "sakura/backend/cpu/gemm.hpp"
#include "sakura/tensor/rng.hpp"
#include "support/counting_new.hpp"
#include "support/threads.hpp"

using sakura::Index;

namespace {

template <class T>
void check_gemm(bool ta, bool tb, Index m, Index n, Index k, T alpha, T beta, sakura::Rng& rng) {
  const Index pad = 3;
  const Index lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
  const Index arows = ta ? k : m, brows = tb ? n : k;
  std::vector<T> a(static_cast<std::size_t>(arows * lda)), b(static_cast<std::size_t>(brows * ldb));
  std::vector<T> c(static_cast<std::size_t>(m * ldc));
  for (auto& v : a) v = static_cast<T>(rng.uniform(-1, 1));
  for (auto& v : b) v = static_cast<T>(rng.uniform(-1, 1));
  const T sentinel = T(12345);
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < ldc; ++j)
      c[i * ldc + j] = j >= n ? sentinel : beta == T(0) ? std::numeric_limits<T>::quiet_NaN() : T(rng.uniform(-1, 1));
  const std::vector<T> c0 = c;
  sakura::cpu::gemm<T>(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);

  const double eps = std::numeric_limits<T>::epsilon();
  double worst = 0;  // largest error / bound over C
  Index padding_written = 0, not_finite = 0;
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < ldc; ++j) {
      const T got = c[i * ldc + j];
      if (j >= n) {
        padding_written += got != sentinel;
        continue;
      }
      double ref = 0, mag = 0;
      for (Index p = 0; p < k; ++p) {
        const double x = ta ? a[p * lda + i] : a[i * lda + p], y = tb ? b[j * ldb + p] : b[p * ldb + j];
        ref += x * y;
        mag += std::abs(x * y);
      }
      ref *= alpha;
      mag *= std::abs(alpha);
      if (beta != T(0)) {
        ref += double(beta) * c0[i * ldc + j];
        mag += std::abs(double(beta) * c0[i * ldc + j]);
      }
      not_finite += !std::isfinite(got);
      worst = std::max(worst, std::abs(double(got) - ref) / (2 * eps * double(k + 2) * mag));
    }
  std::ostringstream where;
  where << "ta " << ta << " tb " << tb << " m " << m << " n " << n << " k " << k << " alpha " << alpha << " beta "
        << beta;
  INFO(where.str());
  CHECK(padding_written == 0);  // leading-dimension padding is never written
  CHECK(not_finite == 0);       // beta == 0: C's NaNs were not read
  CHECK(worst <= 1.0);          // within 2 eps (k + 2) sum |a b| of the double result
}

}  // namespace

TEMPLATE_TEST_CASE("gemm matches a double reference in every mode, shape edge and beta", "[gemm]", float, double) {
  sakura::Rng rng(7);
  const Index ms[] = {1, 5, 6, 7, 8, 9, 13, 32, 100};
  const Index ns[] = {1, 2, 8, 16, 17, 50, 64, 65, 200};
  const Index ks[] = {1, 5, 16, 33, 200};
  for (int mode = 0; mode < 4; ++mode)
    for (Index m : ms)
      for (Index n : ns)
        for (Index k : ks) {
          const bool ta = mode & 1, tb = mode & 2;
          const TestType beta = (m + n + k) % 3 == 0 ? TestType(0) : (m + n + k) % 3 == 1 ? TestType(1) : TestType(0.25);
          const TestType alpha = (m * n + k) % 2 ? TestType(1) : TestType(-0.5);
          check_gemm<TestType>(ta, tb, m, n, k, alpha, beta, rng);
        }
}

TEST_CASE("the small float kernel takes what it is built for and declines the rest", "[gemm]") {
  std::vector<float> a(64 * 1024, 0.5f), b(64 * 1024, 0.25f), c(64 * 1024, 0.0f);
  using sakura::cpu::small_gemm_f32;
#if defined(__AVX512F__)
  CHECK(small_gemm_f32(false, false, 32, 200, 32, 1.f, a.data(), 32, b.data(), 200, 0.f, c.data(), 200));
  CHECK(small_gemm_f32(true, false, 200, 32, 32, 1.f, a.data(), 200, b.data(), 32, 0.f, c.data(), 32));
  CHECK(small_gemm_f32(false, true, 32, 32, 200, 1.f, a.data(), 200, b.data(), 200, 0.f, c.data(), 32));
  CHECK(c[0] == 25.f);  // the last call: 200 products of 0.5 x 0.25
  // B^T of 208 x 200 padded elements does not fit the stack buffer: declined, C untouched
  c[0] = -1.f;
  CHECK_FALSE(small_gemm_f32(false, true, 8, 200, 200, 1.f, a.data(), 200, b.data(), 200, 0.f, c.data(), 200));
  CHECK(c[0] == -1.f);
#else
  WARN("built without AVX-512: the small kernel always declines (the library GEMM is used)");
  CHECK_FALSE(small_gemm_f32(false, false, 32, 200, 32, 1.f, a.data(), 32, b.data(), 200, 0.f, c.data(), 200));
#endif
  CHECK_FALSE(small_gemm_f32(true, true, 8, 8, 8, 1.f, a.data(), 8, b.data(), 8, 0.f, c.data(), 8));
  CHECK_FALSE(small_gemm_f32(false, false, 0, 8, 8, 1.f, a.data(), 8, b.data(), 8, 0.f, c.data(), 8));
}

namespace {
// Big enough to fork (m n k >= kParallelMinWork): C split by rows, and by columns (too few rows)
struct Shape {
  Index m, n, k;
};
constexpr Shape kForked[] = {{100, 200, 200}, {33, 200, 200}, {7, 2000, 200}};
}  // namespace

TEST_CASE("float products big enough to fork match the reference on 1, 2 and 3 threads", "[gemm]") {
  sakura::Rng rng(11);
  sakura::test::on_thread_counts([&](int threads) {
    CAPTURE(threads);
    for (int mode = 0; mode < 4; ++mode)
      for (const Shape& s : kForked)
        for (float beta : {0.0f, 0.25f}) check_gemm<float>(mode & 1, mode & 2, s.m, s.n, s.k, 1.0f, beta, rng);
  });
}

TEST_CASE("a float product big enough to fork allocates nothing once warm", "[gemm][alloc]") {
  // oneDNN's own threading wrapped each threaded product's work in a std::function (an allocation)
  std::vector<float> a(2000 * 200, 0.5f), b(2000 * 200, 0.25f), c(2000 * 200, 0.0f);
  sakura::test::on_thread_counts([&](int threads) {
    for (int mode = 0; mode < 4; ++mode)
      for (const Shape& s : kForked) {
        const bool ta = mode & 1, tb = mode & 2;
        auto product = [&] {
          sakura::cpu::gemm<float>(ta, tb, s.m, s.n, s.k, 1.0f, a.data(), ta ? s.m : s.k, b.data(), tb ? s.k : s.n,
                                   0.0f, c.data(), s.n);
        };
        product();  // warm: the library's first call of a shape sets up its kernels
        long allocated = 0;
        {
          sakura::test::CountedAllocations counted;
          product();
          allocated = counted.count();
        }
        CAPTURE(threads, ta, tb, s.m, s.n, s.k);  // Catch's messages allocate: after the count
        CHECK(allocated == 0);
      }
  });
}
