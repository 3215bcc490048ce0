// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Ops<T, Cuda> against the reference Ops<T, Cpu>: every kernel, float and double, forward and
// backward, overwrite and accumulate; plus CUDA graph replay. Without a device the binary exits
// 77 (gpu_main.cpp) and ctest reports every case as skipped.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "sakura/backend/cpu/ops.hpp"
#include "sakura/backend/cuda/ops.hpp"
#include "support/torch_rmsprop.hpp"

namespace {

using sakura::Index;
using sakura::MatrixRef;
namespace cu = sakura::cuda;
template <class T>
using CpuOps = sakura::Ops<T, sakura::Cpu>;
template <class T>
using GpuOps = sakura::Ops<T, sakura::Cuda>;

const std::pair<Index, Index> kShapes[] = {{37, 53}, {100, 200}};

// ------------------------------------------------------------------ device buffers
template <class U>
class DBuf {
 public:
  explicit DBuf(std::size_t n) : n_(n), p_(static_cast<U*>(cu::malloc_device(std::max<std::size_t>(n, 1) * sizeof(U)))) {}
  explicit DBuf(const std::vector<U>& h) : DBuf(h.size()) { set(h); }
  DBuf(const DBuf&) = delete;
  DBuf& operator=(const DBuf&) = delete;
  ~DBuf() { cu::free_device(p_); }
  void set(const std::vector<U>& h) {
    REQUIRE(h.size() == n_);
    cu::copy_h2d(p_, h.data(), n_ * sizeof(U));
  }
  std::vector<U> get() const {
    std::vector<U> h(n_);
    cu::copy_d2h(h.data(), p_, n_ * sizeof(U));
    return h;
  }
  U* p() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  std::size_t n_;
  U* p_;
};

// ------------------------------------------------------------------ data
template <class T>
std::vector<T> uniform(std::size_t n, double lo, double hi, unsigned seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(d(g));
  return v;
}
/// Every `every`-th value set to exactly zero.
template <class T>
std::vector<T> with_zeros(std::vector<T> v, std::size_t every) {
  for (std::size_t i = 0; i < v.size(); i += every) v[i] = T(0);
  return v;
}

// ------------------------------------------------------------------ comparisons
template <class T>
constexpr double kRel = std::is_same_v<T, float> ? 1e-5 : 1e-12;
template <class T>
constexpr double kAbs = std::is_same_v<T, float> ? 1e-6 : 1e-12;

/// |got - ref| <= rel |ref| + abs max|ref| for every element (NaN matches NaN, inf matches inf).
template <class T>
void expect_close(const std::vector<T>& ref, const std::vector<T>& got, const std::string& what) {
  REQUIRE(ref.size() == got.size());
  double scale = 0;
  for (T v : ref)
    if (std::isfinite(v)) scale = std::max(scale, std::abs(double(v)));
  if (scale == 0) scale = 1;
  std::size_t bad = 0;
  std::ostringstream first;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double r = ref[i], g = got[i];
    bool ok;
    if (std::isnan(r) || std::isnan(g)) ok = std::isnan(r) && std::isnan(g);
    else if (std::isinf(r) || std::isinf(g)) ok = r == g;
    else ok = std::abs(g - r) <= kRel<T> * std::abs(r) + kAbs<T> * scale;
    if (!ok && bad++ < 5) first << "  [" << i << "] cpu " << r << " gpu " << g << '\n';
  }
  INFO(what << ": " << bad << " of " << ref.size() << " differ (scale " << scale << ")\n" << first.str());
  CHECK(bad == 0);
}
/// Bit-for-bit equality (sort results, graph replays).
template <class U>
void expect_same(const std::vector<U>& ref, const std::vector<U>& got, const std::string& what) {
  REQUIRE(ref.size() == got.size());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < ref.size(); ++i)
    if (std::memcmp(&ref[i], &got[i], sizeof(U)) != 0) ++bad;
  INFO(what << ": " << bad << " of " << ref.size() << " differ bitwise");
  CHECK(bad == 0);
}

/// Runs a backward kernel on both sides for acc = false and true (the destination starts from
/// the same random values), and compares. cpu(d, acc) and gpu(d, acc) launch the kernel.
template <class T, class CpuF, class GpuF>
void check_grad(std::size_t n, const std::string& what, CpuF cpu, GpuF gpu, unsigned seed = 99) {
  for (bool acc : {false, true}) {
    std::vector<T> h = uniform<T>(n, -1, 1, seed);
    DBuf<T> d(h);
    cpu(h.data(), acc);
    gpu(d.p(), acc);
    expect_close(h, d.get(), what + (acc ? " (acc)" : " (overwrite)"));
  }
}

/// Runs a scalar forward on both sides and compares out[0].
template <class T, class CpuF, class GpuF>
void check_scalar(const std::string& what, CpuF cpu, GpuF gpu) {
  std::vector<T> h(1, T(-7));
  DBuf<T> d(h);
  cpu(h.data());
  gpu(d.p());
  expect_close(h, d.get(), what);
}

}  // namespace

// ====================================================================== runtime
TEST_CASE("cuda runtime: devices, memory, copies, errors", "[cuda]") {
  CHECK(cu::device_count() > 0);
  CHECK(std::string(cu::device_name()).size() > 0);

  std::vector<float> h = uniform<float>(1000, -1, 1, 1), back(1000);
  auto* pinned = static_cast<float*>(cu::malloc_host(1000 * sizeof(float)));
  std::copy(h.begin(), h.end(), pinned);
  DBuf<float> a(1000), b(1000);
  cu::copy_h2d(a.p(), pinned, 1000 * sizeof(float));
  cu::copy_d2d(b.p(), a.p(), 1000 * sizeof(float));
  cu::copy_d2h(back.data(), b.p(), 1000 * sizeof(float));
  cu::free_host(pinned);
  expect_same(h, back, "h2d (pinned) -> d2d -> d2h");
  cu::synchronize();

  // an impossible allocation throws sakura::Error naming the size, and leaves no sticky error
  CHECK_THROWS_AS(cu::malloc_device(static_cast<std::size_t>(1) << 60), sakura::Error);
  CHECK_THROWS_WITH(cu::malloc_device(static_cast<std::size_t>(1) << 60), Catch::Contains("1152921504606846976"));
  cu::fill<float>(a.p(), 1000, 2.5f);
  CHECK(a.get()[999] == 2.5f);
}

// ====================================================================== dense algebra
TEMPLATE_TEST_CASE("cuda gemm matches the CPU in all four transpose modes", "[cuda]", float, double) {
  using T = TestType;
  struct Dims {
    Index m, n, k;
  };
  for (Dims d : {Dims{37, 53, 29}, Dims{100, 200, 64}, Dims{5, 7, 0}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (Index pad : {0, 3})
          for (double beta : {0.0, 1.5}) {
            const Index ar = ta ? d.k : d.m, ac = ta ? d.m : d.k, br = tb ? d.n : d.k, bc = tb ? d.k : d.n;
            const Index lda = ac + pad, ldb = bc + pad, ldc = d.n + pad;
            auto A = uniform<T>(static_cast<std::size_t>(std::max<Index>(ar * lda, 1)), -1, 1, 11);
            auto B = uniform<T>(static_cast<std::size_t>(std::max<Index>(br * ldb, 1)), -1, 1, 12);
            auto C = uniform<T>(static_cast<std::size_t>(d.m * ldc), -1, 1, 13);
            DBuf<T> dA(A), dB(B), dC(C);
            const T alpha = T(0.7), b = T(beta);
            CpuOps<T>::gemm(ta, tb, d.m, d.n, d.k, alpha, A.data(), lda, B.data(), ldb, b, C.data(), ldc);
            GpuOps<T>::gemm(ta, tb, d.m, d.n, d.k, alpha, dA.p(), lda, dB.p(), ldb, b, dC.p(), ldc);
            std::ostringstream what;
            what << "gemm m" << d.m << " n" << d.n << " k" << d.k << " ta" << ta << " tb" << tb << " pad" << pad
                 << " beta" << beta;
            expect_close(C, dC.get(), what.str());
          }
}

TEST_CASE("cuda gemm with TF32 stays close, and off restores float32", "[cuda]") {
  const Index m = 64, n = 96, k = 128;
  auto A = uniform<float>(m * k, -1, 1, 21), B = uniform<float>(k * n, -1, 1, 22);
  std::vector<float> C(m * n, 0.f);
  DBuf<float> dA(A), dB(B), dC(C);
  CpuOps<float>::gemm(false, false, m, n, k, 1.f, A.data(), k, B.data(), n, 0.f, C.data(), n);
  cu::set_tf32(true);
  GpuOps<float>::gemm(false, false, m, n, k, 1.f, dA.p(), k, dB.p(), n, 0.f, dC.p(), n);
  auto tf = dC.get();
  for (std::size_t i = 0; i < C.size(); ++i) CHECK(std::abs(tf[i] - C[i]) <= 2e-2f * (1 + std::abs(C[i])));
  cu::set_tf32(false);
  GpuOps<float>::gemm(false, false, m, n, k, 1.f, dA.p(), k, dB.p(), n, 0.f, dC.p(), n);
  expect_close(C, dC.get(), "gemm after set_tf32(false)");
}

TEMPLATE_TEST_CASE("cuda fill, axpy, add_block, add_bias, col_sum", "[cuda]", float, double) {
  using T = TestType;
  for (auto [r, c] : kShapes) {
    const std::size_t n = static_cast<std::size_t>(r * c);
    CAPTURE(r, c);
    {
      std::vector<T> h(n);
      DBuf<T> d(n);
      CpuOps<T>::fill(h.data(), Index(n), T(0.375));
      GpuOps<T>::fill(d.p(), Index(n), T(0.375));
      expect_same(h, d.get(), "fill");
    }
    const auto x = uniform<T>(n, -2, 2, 1);
    DBuf<T> dx(x);
    check_grad<T>(
        n, "axpy", [&](T* y, bool acc) { CpuOps<T>::axpy(y, x.data(), Index(n), T(-1.25), acc); },
        [&](T* y, bool acc) { GpuOps<T>::axpy(y, dx.p(), Index(n), T(-1.25), acc); });

    // a block of src (cols [3, 3 + w) of an r x c matrix) into cols [5, 5 + w) of an r x (c + 9) one
    const Index w = c - 7, dld = c + 9;
    check_grad<T>(
        static_cast<std::size_t>(r * dld), "add_block (strided)",
        [&](T* d, bool acc) {
          CpuOps<T>::add_block(MatrixRef<T>(d + 5, r, w, dld), MatrixRef<const T>(x.data() + 3, r, w, c), acc);
        },
        [&](T* d, bool acc) {
          GpuOps<T>::add_block(MatrixRef<T>(d + 5, r, w, dld), MatrixRef<const T>(dx.p() + 3, r, w, c), acc);
        });
    check_grad<T>(
        n, "add_block (contiguous)",
        [&](T* d, bool acc) { CpuOps<T>::add_block(MatrixRef<T>(d, r, c), MatrixRef<const T>(x.data(), r, c), acc); },
        [&](T* d, bool acc) { GpuOps<T>::add_block(MatrixRef<T>(d, r, c), MatrixRef<const T>(dx.p(), r, c), acc); });

    const auto bias = uniform<T>(static_cast<std::size_t>(c), -1, 1, 2);
    DBuf<T> db(bias);
    check_grad<T>(
        n, "add_bias", [&](T* y, bool) { CpuOps<T>::add_bias(MatrixRef<T>(y, r, c), bias.data()); },
        [&](T* y, bool) { GpuOps<T>::add_bias(MatrixRef<T>(y, r, c), db.p()); });
    check_grad<T>(
        n, "add_bias (strided view)", [&](T* y, bool) { CpuOps<T>::add_bias(MatrixRef<T>(y + 2, r, c - 4, c), bias.data()); },
        [&](T* y, bool) { GpuOps<T>::add_bias(MatrixRef<T>(y + 2, r, c - 4, c), db.p()); });

    check_grad<T>(
        static_cast<std::size_t>(c), "col_sum", [&](T* s, bool acc) { CpuOps<T>::col_sum(s, MatrixRef<const T>(x.data(), r, c), acc); },
        [&](T* s, bool acc) { GpuOps<T>::col_sum(s, MatrixRef<const T>(dx.p(), r, c), acc); });
    check_grad<T>(
        static_cast<std::size_t>(c - 4), "col_sum (strided view)",
        [&](T* s, bool acc) { CpuOps<T>::col_sum(s, MatrixRef<const T>(x.data() + 1, r, c - 4, c), acc); },
        [&](T* s, bool acc) { GpuOps<T>::col_sum(s, MatrixRef<const T>(dx.p() + 1, r, c - 4, c), acc); });
  }
}

// ====================================================================== activations
TEMPLATE_TEST_CASE("cuda activations, forward and backward", "[cuda]", float, double) {
  using T = TestType;
  for (auto [r, c] : kShapes) {
    const std::size_t n = static_cast<std::size_t>(r * c);
    const Index N = Index(n);
    CAPTURE(r, c);
    const auto x = with_zeros(uniform<T>(n, -4, 4, 3), 7);  // exact zeros: ReLU's and CELU's kink
    const auto dy = uniform<T>(n, -1, 1, 4);
    DBuf<T> dx(x), ddy(dy);
    struct Act {
      const char* name;
      void (*cpu_f)(T*, const T*, Index);
      void (*gpu_f)(T*, const T*, Index);
      void (*cpu_b)(T*, const T*, const T*, Index, bool);
      void (*gpu_b)(T*, const T*, const T*, Index, bool);
      bool bwd_uses_output;
    };
    const Act acts[] = {
        {"celu", CpuOps<T>::celu_fwd, GpuOps<T>::celu_fwd, CpuOps<T>::celu_bwd, GpuOps<T>::celu_bwd, false},
        {"relu", CpuOps<T>::relu_fwd, GpuOps<T>::relu_fwd, CpuOps<T>::relu_bwd, GpuOps<T>::relu_bwd, true},
        {"sigmoid", CpuOps<T>::sigmoid_fwd, GpuOps<T>::sigmoid_fwd, CpuOps<T>::sigmoid_bwd, GpuOps<T>::sigmoid_bwd,
         true},
    };
    for (const Act& a : acts) {
      std::vector<T> y(n);
      DBuf<T> dyv(n);
      a.cpu_f(y.data(), x.data(), N);
      a.gpu_f(dyv.p(), dx.p(), N);
      expect_close(y, dyv.get(), std::string(a.name) + " forward");
      // the backward reads the CPU forward on both sides, so it is compared on equal inputs
      const std::vector<T>& saved = a.bwd_uses_output ? y : x;
      DBuf<T> dsaved(saved);
      check_grad<T>(
          n, std::string(a.name) + " backward", [&](T* d, bool acc) { a.cpu_b(d, dy.data(), saved.data(), N, acc); },
          [&](T* d, bool acc) { a.gpu_b(d, ddy.p(), dsaved.p(), N, acc); });
    }
  }
}

// ====================================================================== the open elementwise set
TEMPLATE_TEST_CASE("cuda pointwise functions, binary ops and where, forward and backward", "[cuda]", float, double) {
  using T = TestType;
  using sakura::Binary;
  using sakura::Pointwise;
  for (auto [r, c] : kShapes) {
    const std::size_t n = static_cast<std::size_t>(r * c);
    const Index N = Index(n);
    CAPTURE(r, c);
    auto x = with_zeros(uniform<T>(n, -3, 3, 21), 7);  // exact zeros: abs's and sqrt's kinks
    const auto b = uniform<T>(n, 0.5, 2, 22), dy = uniform<T>(n, -1, 1, 23);
    DBuf<T> dx(x), db(b), ddy(dy);
    struct Fn {
      Pointwise f;
      T c0, c1;
      bool positive;  // sqrt, log1p: their input made non-negative
    };
    for (const Fn& f : {Fn{Pointwise::Abs, 0, 0, false}, Fn{Pointwise::Square, 0, 0, false},
                        Fn{Pointwise::Sqrt, 0, 0, true}, Fn{Pointwise::Exp, 0, 0, false},
                        Fn{Pointwise::Log1p, 0, 0, true}, Fn{Pointwise::Affine, T(-1.5), T(0.25), false},
                        Fn{Pointwise::ClampMin, T(0.5), 0, false}, Fn{Pointwise::Less, T(0.5), 0, false}}) {
      CAPTURE(int(f.f));
      std::vector<T> in = x;
      if (f.positive)
        for (auto& v : in) v = std::abs(v);
      DBuf<T> din(in);
      std::vector<T> y(n);
      DBuf<T> dyv(n);
      CpuOps<T>::pointwise(f.f, y.data(), in.data(), N, f.c0, f.c1);
      GpuOps<T>::pointwise(f.f, dyv.p(), din.p(), N, f.c0, f.c1);
      expect_close(y, dyv.get(), "pointwise forward");
      DBuf<T> dyo(y);  // the backward reads the CPU forward on both sides
      check_grad<T>(
          n, "pointwise backward",
          [&](T* d, bool acc) { CpuOps<T>::pointwise_bwd(f.f, d, dy.data(), in.data(), y.data(), N, f.c0, acc); },
          [&](T* d, bool acc) { GpuOps<T>::pointwise_bwd(f.f, d, ddy.p(), din.p(), dyo.p(), N, f.c0, acc); });
    }
    for (Binary f : {Binary::Add, Binary::Sub, Binary::Mul, Binary::Div}) {
      CAPTURE(int(f));
      std::vector<T> y(n);
      DBuf<T> dyv(n);
      CpuOps<T>::binary(f, y.data(), x.data(), b.data(), N);
      GpuOps<T>::binary(f, dyv.p(), dx.p(), db.p(), N);
      expect_close(y, dyv.get(), "binary forward");
      for (bool wrt_b : {false, true})
        check_grad<T>(
            n, wrt_b ? "binary backward (b)" : "binary backward (a)",
            [&](T* d, bool acc) { CpuOps<T>::binary_bwd(f, wrt_b, d, dy.data(), x.data(), b.data(), N, acc); },
            [&](T* d, bool acc) { GpuOps<T>::binary_bwd(f, wrt_b, d, ddy.p(), dx.p(), db.p(), N, acc); });
    }
    // where: the mask from less()
    std::vector<T> mask(n), y(n);
    CpuOps<T>::pointwise(Pointwise::Less, mask.data(), x.data(), N, T(0), T(0));
    DBuf<T> dmask(mask), dyv(n);
    CpuOps<T>::where(y.data(), mask.data(), x.data(), b.data(), N);
    GpuOps<T>::where(dyv.p(), dmask.p(), dx.p(), db.p(), N);
    expect_same(y, dyv.get(), "where forward");
    for (bool selected : {true, false})
      check_grad<T>(
          n, selected ? "where backward (a)" : "where backward (b)",
          [&](T* d, bool acc) { CpuOps<T>::where_bwd(d, dy.data(), mask.data(), selected, N, acc); },
          [&](T* d, bool acc) { GpuOps<T>::where_bwd(d, ddy.p(), dmask.p(), selected, N, acc); });
  }
}

TEMPLATE_TEST_CASE("cuda mean and row sums, forward and backward", "[cuda]", float, double) {
  using T = TestType;
  const std::vector<T> g{T(0.75)};
  DBuf<T> dg(g);
  for (auto [r, c] : std::vector<std::pair<Index, Index>>{{37, 53}, {100, 200}, {5, 1000}, {3000, 1001}}) {
    const std::size_t n = static_cast<std::size_t>(r * c);
    CAPTURE(r, c);
    const auto x = uniform<T>(n, -2, 2, 31), dy = uniform<T>(static_cast<std::size_t>(r), -1, 1, 32);
    DBuf<T> dx(x), ddy(dy);
    check_scalar<T>("mean forward", [&](T* o) { CpuOps<T>::mean_fwd(o, x.data(), Index(n)); },
                    [&](T* o) { GpuOps<T>::mean_fwd(o, dx.p(), Index(n)); });
    check_grad<T>(
        n, "mean backward", [&](T* d, bool acc) { CpuOps<T>::mean_bwd(d, g.data(), Index(n), acc); },
        [&](T* d, bool acc) { GpuOps<T>::mean_bwd(d, dg.p(), Index(n), acc); });
    std::vector<T> y(static_cast<std::size_t>(r));
    DBuf<T> dyv(static_cast<std::size_t>(r));
    CpuOps<T>::row_sum_fwd(y.data(), x.data(), r, c);
    GpuOps<T>::row_sum_fwd(dyv.p(), dx.p(), r, c);
    expect_close(y, dyv.get(), "row_sum forward");
    check_grad<T>(
        n, "row_sum backward", [&](T* d, bool acc) { CpuOps<T>::row_sum_bwd(d, dy.data(), r, c, acc); },
        [&](T* d, bool acc) { GpuOps<T>::row_sum_bwd(d, ddy.p(), r, c, acc); });
  }
}

TEMPLATE_TEST_CASE("cuda row softmax and log-softmax, forward and backward", "[cuda]", float, double) {
  using T = TestType;
  for (auto [r, c] : std::vector<std::pair<Index, Index>>{{37, 53}, {100, 200}, {64, 3}, {5, 1000}}) {
    const std::size_t n = static_cast<std::size_t>(r * c);
    CAPTURE(r, c);
    const auto x = uniform<T>(n, -6, 6, 6), dy = uniform<T>(n, -1, 1, 7);
    DBuf<T> dx(x), ddy(dy);
    for (bool log : {false, true}) {
      CAPTURE(log);
      std::vector<T> y(n);
      DBuf<T> dyo(n);
      CpuOps<T>::softmax_rows_fwd(y.data(), x.data(), r, c, log);
      GpuOps<T>::softmax_rows_fwd(dyo.p(), dx.p(), r, c, log);
      expect_close(y, dyo.get(), log ? "log_softmax forward" : "softmax forward");
      DBuf<T> dys(y);
      check_grad<T>(
          n, log ? "log_softmax backward" : "softmax backward",
          [&](T* d, bool acc) { CpuOps<T>::softmax_rows_bwd(d, dy.data(), y.data(), r, c, log, acc); },
          [&](T* d, bool acc) { GpuOps<T>::softmax_rows_bwd(d, ddy.p(), dys.p(), r, c, log, acc); });
    }
  }
}

// ====================================================================== losses
TEMPLATE_TEST_CASE("cuda MSE, L1 and BCE, forward and backward", "[cuda]", float, double) {
  using T = TestType;
  const std::vector<T> g{T(0.75)};
  DBuf<T> dg(g);
  for (auto [r, c] : kShapes) {
    const std::size_t n = static_cast<std::size_t>(r * c);
    const Index N = Index(n);
    CAPTURE(r, c);
    const auto a = uniform<T>(n, -2, 2, 8);
    auto b = uniform<T>(n, -2, 2, 9);
    for (std::size_t i = 0; i < n; i += 5) b[i] = a[i];  // ties: L1's sign(0) = 0
    DBuf<T> da(a), dbb(b);

    check_scalar<T>("mse forward", [&](T* o) { CpuOps<T>::mse_fwd(o, a.data(), b.data(), N); },
                    [&](T* o) { GpuOps<T>::mse_fwd(o, da.p(), dbb.p(), N); });
    check_scalar<T>("l1 forward", [&](T* o) { CpuOps<T>::l1_fwd(o, a.data(), b.data(), N); },
                    [&](T* o) { GpuOps<T>::l1_fwd(o, da.p(), dbb.p(), N); });
    check_grad<T>(
        n, "mse backward", [&](T* d, bool acc) { CpuOps<T>::mse_bwd(d, g.data(), a.data(), b.data(), N, acc); },
        [&](T* d, bool acc) { GpuOps<T>::mse_bwd(d, dg.p(), da.p(), dbb.p(), N, acc); });
    check_grad<T>(
        n, "mse backward (b side)", [&](T* d, bool acc) { CpuOps<T>::mse_bwd(d, g.data(), b.data(), a.data(), N, acc); },
        [&](T* d, bool acc) { GpuOps<T>::mse_bwd(d, dg.p(), dbb.p(), da.p(), N, acc); });
    check_grad<T>(
        n, "l1 backward", [&](T* d, bool acc) { CpuOps<T>::l1_bwd(d, g.data(), a.data(), b.data(), N, acc); },
        [&](T* d, bool acc) { GpuOps<T>::l1_bwd(d, dg.p(), da.p(), dbb.p(), N, acc); });

    const auto p = uniform<T>(n, 0.01, 0.99, 10), y = uniform<T>(n, 0, 1, 11);
    DBuf<T> dp(p), dyy(y);
    check_scalar<T>("bce forward", [&](T* o) { CpuOps<T>::bce_fwd(o, p.data(), y.data(), N); },
                    [&](T* o) { GpuOps<T>::bce_fwd(o, dp.p(), dyy.p(), N); });
    check_grad<T>(
        n, "bce backward", [&](T* d, bool acc) { CpuOps<T>::bce_bwd(d, g.data(), p.data(), y.data(), N, acc); },
        [&](T* d, bool acc) { GpuOps<T>::bce_bwd(d, dg.p(), dp.p(), dyy.p(), N, acc); });
  }
  // BCE's clamps: p exactly 0 or 1 (log clamp at -100, backward denominator max(.., 1e-12))
  const std::vector<T> p{T(0), T(1), T(0), T(1), T(1e-30), T(0.5)}, y{T(1), T(0), T(0), T(1), T(1), T(0.25)};
  DBuf<T> dp(p), dyy(y);
  const Index N = Index(p.size());
  check_scalar<T>("bce forward (clamped)", [&](T* o) { CpuOps<T>::bce_fwd(o, p.data(), y.data(), N); },
                  [&](T* o) { GpuOps<T>::bce_fwd(o, dp.p(), dyy.p(), N); });
  check_grad<T>(
      p.size(), "bce backward (clamped)",
      [&](T* d, bool acc) { CpuOps<T>::bce_bwd(d, g.data(), p.data(), y.data(), N, acc); },
      [&](T* d, bool acc) { GpuOps<T>::bce_bwd(d, dg.p(), dp.p(), dyy.p(), N, acc); });
  // a larger MSE: several blocks in the reduction's first pass
  const std::size_t big = 3'000'017;
  const auto a = uniform<T>(big, -1, 1, 12), b = uniform<T>(big, -1, 1, 13);
  DBuf<T> da(a), dbb(b);
  check_scalar<T>("mse forward (3M)", [&](T* o) { CpuOps<T>::mse_fwd(o, a.data(), b.data(), Index(big)); },
                  [&](T* o) { GpuOps<T>::mse_fwd(o, da.p(), dbb.p(), Index(big)); });
}

TEMPLATE_TEST_CASE("cuda row norms and cosine, forward and backward", "[cuda]", float, double) {
  using T = TestType;
  const std::vector<T> g{T(-1.3)};
  DBuf<T> dg(g);
  for (auto [r, c] : std::vector<std::pair<Index, Index>>{{37, 53}, {100, 200}, {3000, 20}}) {
    const std::size_t n = static_cast<std::size_t>(r * c);
    CAPTURE(r, c);
    auto x = with_zeros(uniform<T>(n, -1, 1, 14), 11);
    std::fill(x.begin() + 2 * c, x.begin() + 3 * c, T(0));  // a zero row: L2's gradient is 0 there
    DBuf<T> dx(x);
    for (int ord : {1, 2}) {
      CAPTURE(ord);
      std::vector<T> out(1), norms(static_cast<std::size_t>(r));
      DBuf<T> dout(1), dnorms(static_cast<std::size_t>(r));
      CpuOps<T>::row_norm_fwd(out.data(), norms.data(), x.data(), r, c, ord);
      GpuOps<T>::row_norm_fwd(dout.p(), dnorms.p(), dx.p(), r, c, ord);
      expect_close(out, dout.get(), "row norm mean");
      expect_close(norms, dnorms.get(), "row norms");
      DBuf<T> dn(norms);
      check_grad<T>(
          n, "row norm backward",
          [&](T* d, bool acc) { CpuOps<T>::row_norm_bwd(d, g.data(), x.data(), norms.data(), r, c, ord, acc); },
          [&](T* d, bool acc) { GpuOps<T>::row_norm_bwd(d, dg.p(), dx.p(), dn.p(), r, c, ord, acc); });
    }

    auto a = uniform<T>(n, -1, 1, 15), b = uniform<T>(n, -1, 1, 16);
    std::fill(a.begin(), a.begin() + c, T(0));                                 // |a| = 0: clamped, no norm term
    for (Index j = 0; j < c; ++j) a[static_cast<std::size_t>(c + j)] = T(1e-10) * b[static_cast<std::size_t>(c + j)];  // tiny |a|
    DBuf<T> da(a), db(b);
    std::vector<T> out(1), na(static_cast<std::size_t>(r)), nb(static_cast<std::size_t>(r)), dot(static_cast<std::size_t>(r));
    DBuf<T> dout(1), dna(static_cast<std::size_t>(r)), dnb(static_cast<std::size_t>(r)), ddot(static_cast<std::size_t>(r));
    CpuOps<T>::cosine_fwd(out.data(), na.data(), nb.data(), dot.data(), a.data(), b.data(), r, c);
    GpuOps<T>::cosine_fwd(dout.p(), dna.p(), dnb.p(), ddot.p(), da.p(), db.p(), r, c);
    expect_close(out, dout.get(), "cosine forward");
    expect_close(na, dna.get(), "cosine |a|");
    expect_close(nb, dnb.get(), "cosine |b|");
    expect_close(dot, ddot.get(), "cosine a.b");
    DBuf<T> sna(na), snb(nb), sdot(dot);  // the backward reads the CPU's saved values on both sides
    check_grad<T>(
        n, "cosine backward (a)",
        [&](T* d, bool acc) {
          CpuOps<T>::cosine_bwd(d, g.data(), a.data(), b.data(), na.data(), nb.data(), dot.data(), r, c, acc);
        },
        [&](T* d, bool acc) { GpuOps<T>::cosine_bwd(d, dg.p(), da.p(), db.p(), sna.p(), snb.p(), sdot.p(), r, c, acc); });
    check_grad<T>(
        n, "cosine backward (b)",
        [&](T* d, bool acc) {
          CpuOps<T>::cosine_bwd(d, g.data(), b.data(), a.data(), nb.data(), na.data(), dot.data(), r, c, acc);
        },
        [&](T* d, bool acc) { GpuOps<T>::cosine_bwd(d, dg.p(), db.p(), da.p(), snb.p(), sna.p(), sdot.p(), r, c, acc); });
  }
}

TEMPLATE_TEST_CASE("cuda NLL, forward and backward", "[cuda]", float, double) {
  using T = TestType;
  const std::vector<T> g{T(0.6)};
  DBuf<T> dg(g);
  for (auto [r, c] : std::vector<std::pair<Index, Index>>{{37, 53}, {100, 200}, {1000, 7}}) {
    CAPTURE(r, c);
    const std::size_t n = static_cast<std::size_t>(r * c);
    const auto logp = uniform<T>(n, -8, 0, 17);
    std::vector<std::int64_t> labels(static_cast<std::size_t>(r));
    std::mt19937 gen(18);
    for (auto& l : labels) l = std::int64_t(gen() % std::uint32_t(c));
    DBuf<T> dl(logp);
    DBuf<std::int64_t> dlab(labels);
    check_scalar<T>("nll forward", [&](T* o) { CpuOps<T>::nll_fwd(o, logp.data(), labels.data(), r, c); },
                    [&](T* o) { GpuOps<T>::nll_fwd(o, dl.p(), dlab.p(), r, c); });
    check_grad<T>(
        n, "nll backward", [&](T* d, bool acc) { CpuOps<T>::nll_bwd(d, g.data(), labels.data(), r, c, acc); },
        [&](T* d, bool acc) { GpuOps<T>::nll_bwd(d, dg.p(), dlab.p(), r, c, acc); });
  }
}

TEMPLATE_TEST_CASE("cuda Gaussian KL, forward and backward", "[cuda]", float, double) {
  using T = TestType;
  const std::vector<T> g{T(0.9)};
  DBuf<T> dg(g);
  for (auto [r, c] : kShapes) {
    CAPTURE(r, c);
    const Index pr = r + 27;  // the prior sample has its own row count
    const auto x = uniform<T>(static_cast<std::size_t>(r * c), -1, 1, 19);
    const auto prior = uniform<T>(static_cast<std::size_t>(pr * c), -1.5, 2.5, 20);
    DBuf<T> dx(x), dprior(prior);
    std::vector<T> out(1), m(static_cast<std::size_t>(4 * c));
    DBuf<T> dout(1), dm(static_cast<std::size_t>(4 * c));
    CpuOps<T>::kl_fwd(out.data(), m.data(), x.data(), r, prior.data(), pr, c, 1e-8);
    GpuOps<T>::kl_fwd(dout.p(), dm.p(), dx.p(), r, dprior.p(), pr, c, 1e-8);
    expect_close(out, dout.get(), "kl forward");
    expect_close(m, dm.get(), "kl moments");
    DBuf<T> sm(m);
    check_grad<T>(
        static_cast<std::size_t>(r * c), "kl backward",
        [&](T* d, bool acc) { CpuOps<T>::kl_bwd(d, g.data(), x.data(), m.data(), r, c, acc); },
        [&](T* d, bool acc) { GpuOps<T>::kl_bwd(d, dg.p(), dx.p(), sm.p(), r, c, acc); });
  }
}

// ====================================================================== sliced Wasserstein sort
TEMPLATE_TEST_CASE("cuda column sort (stable, NaN last, exact) and unsort", "[cuda]", float, double) {
  using T = TestType;
  // 4096 rows is the largest shared-memory sort; 4097 and 5000 take the global-memory network
  for (auto [r, c] : std::vector<std::pair<Index, Index>>{
           {37, 53}, {100, 200}, {1, 5}, {2, 3}, {1000, 50}, {4096, 2}, {4097, 3}, {5000, 2}}) {
    CAPTURE(r, c);
    const std::size_t n = static_cast<std::size_t>(r * c);
    auto x = uniform<T>(n, -3, 3, 21);
    std::mt19937 gen(22);
    const T nan = std::numeric_limits<T>::quiet_NaN();
    const T specials[] = {T(-1), T(0), T(-0.0), T(1), T(2), nan, -nan, std::numeric_limits<T>::infinity(),
                          -std::numeric_limits<T>::infinity(), T(1) + std::numeric_limits<T>::epsilon()};
    for (auto& v : x)
      if (gen() % 3 == 0) v = specials[gen() % std::size(specials)];  // ties, signed zeros, NaN, inf
    DBuf<T> dx(x);
    std::vector<T> sorted(n);
    std::vector<std::int32_t> perm(n);
    std::vector<std::uint64_t> scratch(CpuOps<T>::sort_scratch_bytes(r, c) / sizeof(std::uint64_t) + 1);
    CpuOps<T>::sort_columns(sorted.data(), perm.data(), x.data(), r, c, scratch.data());
    DBuf<T> dsorted(n);
    DBuf<std::int32_t> dperm(n);
    DBuf<char> dscratch(GpuOps<T>::sort_scratch_bytes(r, c));
    GpuOps<T>::sort_columns(dsorted.p(), dperm.p(), dx.p(), r, c, dscratch.p());
    expect_same(sorted, dsorted.get(), "sorted values");
    expect_same(perm, dperm.get(), "permutation");

    const auto ds = uniform<T>(n, -1, 1, 23);
    DBuf<T> dds(ds);
    check_grad<T>(
        n, "unsort", [&](T* d, bool acc) { CpuOps<T>::unsort_columns(d, ds.data(), perm.data(), r, c, acc); },
        [&](T* d, bool acc) { GpuOps<T>::unsort_columns(d, dds.p(), dperm.p(), r, c, acc); });
  }
}

// ====================================================================== scalars and optimizer
TEMPLATE_TEST_CASE("cuda scalar scale, forward and backward", "[cuda]", float, double) {
  using T = TestType;
  const std::vector<T> s{T(1.7)}, w{T(0.3)}, g{T(-2.1)};
  DBuf<T> ds(s), dw(w), dg(g);
  check_scalar<T>("scale forward", [&](T* o) { CpuOps<T>::scale_fwd(o, s.data(), w.data()); },
                  [&](T* o) { GpuOps<T>::scale_fwd(o, ds.p(), dw.p()); });
  check_grad<T>(
      1, "scale backward", [&](T* d, bool acc) { CpuOps<T>::scale_bwd(d, g.data(), w.data(), acc); },
      [&](T* d, bool acc) { GpuOps<T>::scale_bwd(d, dg.p(), dw.p(), acc); });
}

TEMPLATE_TEST_CASE("cuda RMSProp step with and without momentum and weight decay", "[cuda]", float, double) {
  using T = TestType;
  const std::size_t n = 100 * 200 + 3;
  for (double wd : {0.0, 0.01})
    for (double mom : {0.0, 0.9}) {
      CAPTURE(wd, mom);
      const double lr = 1e-3, alpha = 0.9, eps = 1e-8;
      const std::vector<T> hyper{T(-lr), T(alpha), T(1 - alpha), T(eps), T(wd), T(mom)};
      REQUIRE(hyper.size() == sakura::kRmsHyper);
      auto p = uniform<T>(n, -1, 1, 24);
      std::vector<T> v(n, T(0)), buf(n, T(0));
      DBuf<T> dp(p), dv(v), dbuf(buf), dh(hyper);
      for (int step = 0; step < 3; ++step) {
        auto grad = with_zeros(uniform<T>(n, -0.1, 0.1, 25 + step), 13);
        DBuf<T> dgr(grad);
        CpuOps<T>::rmsprop_step(p.data(), grad.data(), v.data(), mom > 0 ? buf.data() : nullptr, Index(n),
                                hyper.data());
        GpuOps<T>::rmsprop_step(dp.p(), dgr.p(), dv.p(), mom > 0 ? dbuf.p() : nullptr, Index(n), dh.p());
      }
      expect_close(p, dp.get(), "parameters");
      expect_close(v, dv.get(), "square averages");
      if (mom > 0) expect_close(buf, dbuf.get(), "momentum buffer");
    }
}

TEST_CASE("cuda RMSProp rounds every update exactly as PyTorch 1.13's RMSprop", "[cuda]") {
  // the CPU test's reference (tests/controller/test_rmsprop.cpp): the kernel writes PyTorch's
  // fmas explicitly and this file's library compiles with --fmad=false, so it must match bitwise
  const auto ref = sakura::test::load_torch_rmsprop();
  for (const auto& c : ref.cases) {
    CAPTURE(c.lr, c.alpha, c.weight_decay, c.momentum);
    const std::vector<float> hyper{float(-c.lr), float(c.alpha), float(1.0 - c.alpha), 1e-8f, float(c.weight_decay),
                                   float(c.momentum)};
    REQUIRE(hyper.size() == sakura::kRmsHyper);
    DBuf<float> p(ref.param), g(ref.grad), v(ref.square_avg), b(ref.momentum_buffer), h(hyper);
    GpuOps<float>::rmsprop_step(p.p(), g.p(), v.p(), c.momentum > 0 ? b.p() : nullptr, Index(ref.param.size()), h.p());
    auto bits_differ = [](const std::vector<float>& x, const std::vector<float>& y) {
      std::size_t d = 0;
      for (std::size_t i = 0; i < x.size(); ++i) d += std::memcmp(&x[i], &y[i], sizeof(float)) != 0;
      return d;
    };
    CHECK(bits_differ(p.get(), c.param) == 0);
    CHECK(bits_differ(v.get(), c.square_avg) == 0);
    CHECK(bits_differ(b.get(), c.momentum_buffer) == 0);
  }
}

// ====================================================================== CUDA graphs
TEMPLATE_TEST_CASE("cuda graph replay is bit-identical to eager launches", "[cuda]", float, double) {
  using T = TestType;
  const Index n = 37, k = 29, m = 53, big = 5000;
  const auto x = uniform<T>(static_cast<std::size_t>(n * k), -1, 1, 30), w0 = uniform<T>(static_cast<std::size_t>(m * k), -1, 1, 31);
  const auto target = uniform<T>(static_cast<std::size_t>(n * m), -1, 1, 32), z = uniform<T>(static_cast<std::size_t>(big * 2), -1, 1, 33);
  const std::vector<T> hyper{T(-1e-2), T(0.9), T(0.1), T(1e-8), T(0.01), T(0)}, one{T(1)};
  DBuf<T> dx(x), dw0(w0), dtarget(target), dz(z), dhyper(hyper), done(one);
  DBuf<T> p(static_cast<std::size_t>(m * k)), v(static_cast<std::size_t>(m * k)), v0(std::vector<T>(static_cast<std::size_t>(m * k), T(0)));
  DBuf<T> y(static_cast<std::size_t>(n * m)), h(static_cast<std::size_t>(n * m)), dh(static_cast<std::size_t>(n * m)), dy(static_cast<std::size_t>(n * m));
  DBuf<T> dw(static_cast<std::size_t>(m * k)), loss(1), weighted(1), wdev(1), sorted(static_cast<std::size_t>(n * m)), zs(static_cast<std::size_t>(big * 2));
  DBuf<std::int32_t> perm(static_cast<std::size_t>(n * m)), zperm(static_cast<std::size_t>(big * 2));
  DBuf<char> scratch(std::max(cu::sort_scratch_bytes(n, m), cu::sort_scratch_bytes(big, 2)));
  auto* pinned_w = static_cast<T*>(cu::malloc_host(sizeof(T)));
  pinned_w[0] = T(0.5);

  auto step = [&] {
    cu::copy_d2d(p.p(), dw0.p(), sizeof(T) * static_cast<std::size_t>(m * k));
    cu::copy_d2d(v.p(), v0.p(), sizeof(T) * static_cast<std::size_t>(m * k));
    cu::copy_h2d(wdev.p(), pinned_w, sizeof(T));  // pinned: read again at every replay
    GpuOps<T>::gemm(false, true, n, m, k, T(1), dx.p(), k, p.p(), k, T(0), y.p(), m);
    GpuOps<T>::celu_fwd(h.p(), y.p(), n * m);
    GpuOps<T>::mse_fwd(loss.p(), h.p(), dtarget.p(), n * m);
    GpuOps<T>::scale_fwd(weighted.p(), loss.p(), wdev.p());
    GpuOps<T>::mse_bwd(dh.p(), done.p(), h.p(), dtarget.p(), n * m, false);
    GpuOps<T>::celu_bwd(dy.p(), dh.p(), y.p(), n * m, false);
    GpuOps<T>::gemm(true, false, m, k, n, T(1), dy.p(), m, dx.p(), k, T(0), dw.p(), k);
    GpuOps<T>::sort_columns(sorted.p(), perm.p(), y.p(), n, m, scratch.p());
    GpuOps<T>::sort_columns(zs.p(), zperm.p(), dz.p(), big, 2, scratch.p());
    GpuOps<T>::rmsprop_step(p.p(), dw.p(), v.p(), nullptr, m * k, dhyper.p());
  };
  struct Result {
    std::vector<T> loss, weighted, dw, p, v, sorted, zs;
    std::vector<std::int32_t> perm, zperm;
  };
  auto read = [&] {
    return Result{loss.get(), weighted.get(), dw.get(), p.get(), v.get(), sorted.get(), zs.get(), perm.get(), zperm.get()};
  };
  auto poison = [&] {  // replays must recompute everything
    const T nan = std::numeric_limits<T>::quiet_NaN();
    for (auto* b : {&loss, &weighted, &dw, &sorted, &zs, &y, &h}) cu::fill<T>(b->p(), Index(b->size()), nan);
  };
  auto expect_equal = [&](const Result& a, const Result& b, const std::string& what) {
    expect_same(a.loss, b.loss, what + ": loss");
    expect_same(a.weighted, b.weighted, what + ": weighted loss");
    expect_same(a.dw, b.dw, what + ": weight gradient");
    expect_same(a.p, b.p, what + ": parameters");
    expect_same(a.v, b.v, what + ": square averages");
    expect_same(a.sorted, b.sorted, what + ": sorted");
    expect_same(a.perm, b.perm, what + ": perm");
    expect_same(a.zs, b.zs, what + ": sorted (global network)");
    expect_same(a.zperm, b.zperm, what + ": perm (global network)");
  };

  step();
  const Result eager = read();
  REQUIRE(std::isfinite(double(eager.loss[0])));

  poison();
  cu::begin_capture();
  try {
    step();
  } catch (...) {
    cu::destroy_graph(cu::end_capture());
    throw;
  }
  void* exec = cu::end_capture();
  REQUIRE(exec != nullptr);
  for (int replay = 0; replay < 2; ++replay) {
    poison();
    cu::launch_graph(exec);
    cu::synchronize();
    expect_equal(eager, read(), "replay " + std::to_string(replay + 1));
  }
  // a new weight in the pinned buffer reaches the replay without recapture
  pinned_w[0] = T(2.5);
  cu::launch_graph(exec);
  const Result changed = read();
  CHECK(changed.weighted[0] == changed.loss[0] * T(2.5));
  expect_same(eager.loss, changed.loss, "loss after the weight change");
  cu::destroy_graph(exec);
  cu::free_host(pinned_w);
}

// ====================================================================== a step's inputs
/// Every form of tensor/draw.hpp, with supervision or offsets where the form takes them.
template <class T>
void check_draws(sakura::DrawSpec s, const std::vector<std::int64_t>* labels, const std::vector<T>* offsets) {
  using sakura::DrawSpec;
  const std::size_t n = static_cast<std::size_t>(s.rows * s.cols);
  std::vector<T> ref(n);
  CpuOps<T>::draw(ref.data(), s, &s, labels ? labels->data() : nullptr, offsets ? offsets->data() : nullptr);
  DBuf<DrawSpec> ds(std::vector<DrawSpec>{s});
  DBuf<std::int64_t> dl(labels ? *labels : std::vector<std::int64_t>{0});
  DBuf<T> doff(offsets ? *offsets : std::vector<T>{T(0)}), out(n);
  // Uniform and Bernoulli: integer Philox, exact uniforms and mul_add (an fma on both sides when
  // the host has one), so the same bits; the normal forms go through each side's log and sincos
  const bool exact = s.form == DrawSpec::Bernoulli || (s.form == DrawSpec::Uniform && sakura::kFusedMulAdd);
  auto compare = [&](const std::string& what) {
    if (exact) expect_same(ref, out.get(), what);
    else expect_close(ref, out.get(), what);
  };
  GpuOps<T>::draw(out.p(), s, ds.p(), labels ? dl.p() : nullptr, offsets ? doff.p() : nullptr);
  compare("draw form " + std::to_string(s.form) + " cols " + std::to_string(s.cols));

  // captured once, the kernel reads new counters from device memory at every replay
  cu::begin_capture();
  GpuOps<T>::draw(out.p(), s, ds.p(), labels ? dl.p() : nullptr, offsets ? doff.p() : nullptr);
  void* exec = cu::end_capture();
  s.base += 1000;
  s.label_base += 1000;
  ds.set(std::vector<DrawSpec>{s});
  CpuOps<T>::draw(ref.data(), s, &s, labels ? labels->data() : nullptr, offsets ? offsets->data() : nullptr);
  cu::launch_graph(exec);
  compare("replayed draw form " + std::to_string(s.form));
  cu::destroy_graph(exec);
}

TEMPLATE_TEST_CASE("random draws on the GPU equal the host's for every form", "[cuda][draws]", float, double) {
  using T = TestType;
  using sakura::DrawSpec;
  for (int form : {DrawSpec::Uniform, DrawSpec::GaussianMixture, DrawSpec::Ring2d, DrawSpec::UnitProjections,
                   DrawSpec::Bernoulli})
    for (Index cols : {Index(2), Index(5), Index(50)}) {
      if (form == DrawSpec::Ring2d && cols != 2) continue;
      DrawSpec s;
      s.form = form, s.rows = 100, s.cols = cols, s.n_labels = 4, s.a = 0.3, s.b = 0.9;
      s.key = 0x1234abcdULL, s.base = 77, s.label_base = s.base + static_cast<std::uint64_t>(s.rows * s.pairs_per_row());
      check_draws<T>(s, nullptr, nullptr);
      std::vector<std::int64_t> labels(static_cast<std::size_t>(s.rows));
      for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 4);
      if (form == DrawSpec::GaussianMixture) check_draws<T>(s, &labels, nullptr);
      if (form == DrawSpec::Uniform) {
        const auto offsets = uniform<T>(static_cast<std::size_t>(4 * cols), -5, 5, 40);
        check_draws<T>(s, &labels, &offsets);
      }
    }
}

TEMPLATE_TEST_CASE("gather_rows copies the indexed rows of a device matrix, read at every replay", "[cuda][batch]",
                   float, double) {
  using T = TestType;
  const Index rows = 50, cols = 37;
  const auto a = uniform<T>(static_cast<std::size_t>(rows * cols), -1, 1, 41), b = uniform<T>(a.size(), -1, 1, 42);
  DBuf<T> da(a), db(b), out(static_cast<std::size_t>(5 * cols));
  auto args = [&](const T* src, std::vector<std::int32_t> idx) {
    std::vector<char> h(cu::kGatherHeader + idx.size() * sizeof(std::int32_t));
    std::memcpy(h.data(), &src, sizeof(src));
    std::memcpy(h.data() + cu::kGatherHeader, idx.data(), idx.size() * sizeof(std::int32_t));
    return h;
  };
  auto expected = [&](const std::vector<T>& m, const std::vector<std::int32_t>& idx) {
    std::vector<T> e;
    for (auto r : idx) e.insert(e.end(), m.begin() + r * cols, m.begin() + (r + 1) * cols);
    return e;
  };
  const std::vector<std::int32_t> i1{3, 0, 49, 3, 17}, i2{1, 2, 3, 4, 48};
  DBuf<char> dargs(args(da.p(), i1));
  GpuOps<T>::gather_rows(out.p(), dargs.p(), 5, cols);
  expect_same(expected(a, i1), out.get(), "gathered rows");
  cu::begin_capture();
  GpuOps<T>::gather_rows(out.p(), dargs.p(), 5, cols);
  void* exec = cu::end_capture();
  dargs.set(args(db.p(), i2));  // another matrix and other rows, same graph
  cu::launch_graph(exec);
  expect_same(expected(b, i2), out.get(), "replayed gather");
  cu::destroy_graph(exec);
}
