// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The random arrays of a step (tensor/draw.hpp): each form has its distribution, an array is a
// pure function of (key, counter, row, pair) — the property that lets the GPU draw it with one
// thread per pair — and a step consumes exactly the counters it reserves.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "support/fixtures.hpp"

using namespace sakura;
using namespace sakura::test;

namespace {

Tensor<double> sample(DrawSpec s, Rng& rng, const std::int64_t* labels = nullptr) {
  Tensor<double> t(s.rows, s.cols);
  priors::sample(t.ref(), s, rng, labels);
  return t;
}

bool same(const Tensor<double>& a, const Tensor<double>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() && std::equal(a.begin(), a.end(), b.begin());
}

double mean_col(const Tensor<double>& t, Index c) {
  double m = 0;
  for (Index r = 0; r < t.rows(); ++r) m += t(r, c);
  return m / double(t.rows());
}

}  // namespace

TEST_CASE("draws: each form has the distribution its prior promises", "[draws]") {
  Rng rng(7);
  const auto u = sample(priors::uniform(4000, 5, -3.0, 5.0), rng);
  for (double v : u) REQUIRE((v >= -3.0 && v < 5.0));
  for (Index c = 0; c < 5; ++c) CHECK(mean_col(u, c) == Approx(1.0).margin(0.15));

  const auto p = sample(priors::unit_projections(300, 7), rng);  // odd width: the last pair is half used
  double m = 0;
  for (Index r = 0; r < p.rows(); ++r) {
    double ss = 0;
    for (Index c = 0; c < 7; ++c) ss += p(r, c) * p(r, c), m += p(r, c);
    REQUIRE(std::sqrt(ss) == Approx(1.0).epsilon(1e-12));
  }
  CHECK(m / (300 * 7) == Approx(0.0).margin(0.03));

  const auto ring = sample(priors::ring2d(2000), rng);
  double rad = 0, rad2 = 0;
  for (Index r = 0; r < ring.rows(); ++r) {
    const double d = std::hypot(ring(r, 0), ring(r, 1));
    rad += d, rad2 += d * d;
  }
  rad /= 2000, rad2 /= 2000;
  CHECK(rad == Approx(1.0).margin(1e-3));
  CHECK(std::sqrt(rad2 - rad * rad) == Approx(0.01).epsilon(0.15));

  // supervised mixture: label k sits at radius 1.4, angle 2 pi k / 4; the odd last column is N(0, x_std)
  std::vector<std::int64_t> labels(4000);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 4);
  const auto gm = sample(priors::gaussian_mixture(4000, 3, 4, 0.5, 0.1), rng, labels.data());
  for (int k = 0; k < 4; ++k) {
    double x = 0, y = 0;
    for (Index r = k; r < 4000; r += 4) x += gm(r, 0), y += gm(r, 1);
    const double th = 2 * std::numbers::pi * k / 4;
    CHECK(x / 1000 == Approx(1.4 * std::cos(th)).margin(0.05));
    CHECK(y / 1000 == Approx(1.4 * std::sin(th)).margin(0.05));
  }
  double s2 = 0;
  for (Index r = 0; r < 4000; ++r) s2 += gm(r, 2) * gm(r, 2);
  CHECK(std::sqrt(s2 / 4000) == Approx(0.5).epsilon(0.05));
  // unsupervised: drawn labels use every component about equally (angles of the first pair)
  const auto gu = sample(priors::gaussian_mixture(4000, 2, 4, 0.05, 0.05), rng);
  int count[4] = {};
  for (Index r = 0; r < 4000; ++r) {
    const double a = std::atan2(gu(r, 1), gu(r, 0));
    const int k = static_cast<int>(std::lround((a < -0.5 ? a + 2 * std::numbers::pi : a) / (std::numbers::pi / 2))) % 4;
    ++count[k];
  }
  for (int k = 0; k < 4; ++k) CHECK(count[k] == Approx(1000).margin(120));

  DrawSpec drop;
  drop.form = DrawSpec::Bernoulli;
  drop.rows = 100, drop.cols = 101, drop.a = 0.3, drop.b = 1.0 / 0.7;
  const auto mask = sample(drop, rng);
  int zeros = 0;
  for (double v : mask) {
    REQUIRE((v == 0.0 || v == 1.0 / 0.7));
    zeros += v == 0.0;
  }
  CHECK(zeros / 10100.0 == Approx(0.3).margin(0.02));
}

TEST_CASE("draws: an array is a pure function of (key, counter, row, pair)", "[draws]") {
  for (int form : {DrawSpec::Uniform, DrawSpec::GaussianMixture, DrawSpec::Ring2d, DrawSpec::UnitProjections,
                   DrawSpec::Bernoulli}) {
    // 300: UnitProjections rows beyond the host cache; 8 x 50: the tiny latent, rows in two groups
    for (Index cols : {Index(2), Index(5), Index(8), Index(300)}) {
      if (form == DrawSpec::Ring2d && cols != 2) continue;
      DrawSpec s;
      s.form = form, s.rows = cols == 8 ? 50 : 9, s.cols = cols, s.n_labels = 3, s.a = 0.25, s.b = 0.75;
      INFO("form " << form << " cols " << cols);
      Rng rng(11);
      rng.normal();  // a pending normal and a half-used block are dropped by reserve()
      const Rng::State before = rng.state();
      const bool drawn_labels = form == DrawSpec::GaussianMixture;
      const auto a = sample(s, rng);
      // exactly the blocks of the layout are consumed
      REQUIRE(rng.state().counter == before.counter + s.blocks(drawn_labels));
      REQUIRE(!rng.state().has_spare);
      // the same state gives the same array; the next array is new
      Rng again(11);
      again.set_state(before);
      REQUIRE(same(sample(s, again), a));
      REQUIRE(!same(sample(s, rng), a));
      // every pair computed on its own, as a GPU thread does, gives the host's values
      DrawSpec t = s;
      Rng r2(11);
      r2.set_state(before);
      r2.reserve(t, drawn_labels);
      // a float array is the double one rounded (the same arithmetic, one cast at the end)
      Tensor<float> af(s.rows, s.cols);
      draw_fill_host<float>(af.data(), t, nullptr, nullptr);
      for (Index i = 0; i < af.size(); ++i) REQUIRE(af.data()[i] == static_cast<float>(a.data()[i]));
      for (Index r = 0; r < s.rows; ++r) {
        double ss = 0;
        for (Index p = 0; p < t.pairs_per_row(); ++p) {
          double v0, v1;
          draw_pair_values<double>(t, r, p, draw_label(t, r, nullptr), nullptr, v0, v1);
          if (form == DrawSpec::UnitProjections) {
            // column order and mul_add, as the host and the GPU sum: a plain ss += v0 * v0 is
            // fused or not as the compiler likes (GCC's AMD tunings keep this loop's FMAs out)
            ss = mul_add(v0, v0, ss);
            if (2 * p + 1 < cols) ss = mul_add(v1, v1, ss);
            continue;
          }
          REQUIRE(a(r, 2 * p) == v0);
          if (2 * p + 1 < cols) REQUIRE(a(r, 2 * p + 1) == v1);
        }
        if (form != DrawSpec::UnitProjections) continue;
        for (Index p = 0; p < t.pairs_per_row(); ++p) {
          double v0, v1;
          draw_raw_pair(t, r, p, v0, v1);
          REQUIRE(a(r, 2 * p) == v0 / std::sqrt(ss));
          if (2 * p + 1 < cols) REQUIRE(a(r, 2 * p + 1) == v1 / std::sqrt(ss));
        }
      }
    }
  }
}

TEST_CASE("draws: the host's batch of Philox blocks equals the blocks one by one", "[draws]") {
  // every vector width and tail, counters whose high word changes inside a batch, keys with both halves set
  for (std::uint64_t key : {std::uint64_t(0), std::uint64_t(0x123456789abcdef0), ~std::uint64_t(0)})
    for (std::uint64_t ctr : {std::uint64_t(0), (std::uint64_t(1) << 32) - 13, ~std::uint64_t(0) - 20})
      for (std::int64_t n : {0, 1, 7, 8, 9, 31, 32, 33, 40, 77}) {
        CAPTURE(key, ctr, n);
        std::vector<double> u0(std::size_t(n) + 1, -1.0), u1(std::size_t(n) + 1, -1.0);
        philox::uniform_pairs_host(key, ctr, n, u0.data(), u1.data());
        for (std::int64_t i = 0; i < n; ++i) {
          double e0, e1;
          philox::uniform_pair(key, ctr + std::uint64_t(i), e0, e1);
          REQUIRE(u0[std::size_t(i)] == e0);
          REQUIRE(u1[std::size_t(i)] == e1);
        }
        REQUIRE(u0[std::size_t(n)] == -1.0);  // nothing written past n
        REQUIRE(u1[std::size_t(n)] == -1.0);
      }
}

TEST_CASE("draws: a step reserves exactly its arrays' counters, and injection replays them", "[draws]") {
  // base_config: main SW2 with 50 projections over a 3-d latent, 8 cells
  Controller<float> gen(spec_of(base_config(), base_pheno(), base_signature()));
  Controller<float> inj(spec_of(base_config(), base_pheno(), base_signature()));
  const auto batch = base_batch(3);
  const Rng::State s0 = gen.rng().state();
  const double total = gen.train(batch).total;
  REQUIRE(gen.rng().state().counter == s0.counter + 8 * 2 + 50 * 2);
  // the arrays priors::sample makes from the same state, injected, give the same step bit for bit
  Rng rng;
  rng.set_state(s0);
  Tensor<float> prior(8, 3), proj(50, 3);
  priors::sample(prior.ref(), priors::uniform(8, 3, -1.0, 1.0), rng);
  priors::sample(proj.ref(), priors::unit_projections(50, 3), rng);
  const std::string site = "main_latent.regularization.sw2";
  inj.injected_draws().push(RecordedDraw{site, DrawKind::prior_samples, 8, 3, {prior.begin(), prior.end()}});
  inj.injected_draws().push(RecordedDraw{site, DrawKind::projections, 50, 3, {proj.begin(), proj.end()}});
  REQUIRE(inj.train(batch).total == total);
  REQUIRE(inj.injected_draws().empty());
  // one seed, one run; another seed, another run
  Controller<float> same(spec_of(base_config(), base_pheno(), base_signature()));
  REQUIRE(same.train(batch).total == total);
  Controller<float> other(spec_of(base_config(), base_pheno(), base_signature()));
  other.rng().seed(99);
  REQUIRE(other.train(batch).total != total);
}

TEST_CASE("draws: the host's Box-Muller math (log, sin and cos of a turn) agrees with libm", "[draws]") {
  std::vector<double> us{0x1p-53, 1e-300, 1e-17, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1 - 0x1p-53, 0.1249999999999999};
  Rng rng(3);
  for (int i = 0; i < 100000; ++i) us.push_back(rng.uniform());
  double worst_log = 0, worst_trig = 0;
  for (double u : us) {
    CAPTURE(u);
    const double l = philox::host::log_normal(u), ref = std::log(u);
    worst_log = std::max(worst_log, std::abs(l - ref) / std::abs(ref));
    // libm rounds 2 pi u first (up to 4.4e-16 off in the angle); sincos_turn reduces 4u exactly
    const philox::host::SinCos sc = philox::host::sincos_turn(u);
    const double a = 2.0 * std::numbers::pi * u;
    worst_trig = std::max({worst_trig, std::abs(sc.s - std::sin(a)), std::abs(sc.c - std::cos(a))});
    REQUIRE(std::abs(sc.s * sc.s + sc.c * sc.c - 1.0) < 4e-16);
  }
  INFO("worst relative log error " << worst_log << ", worst absolute sin/cos difference " << worst_trig);
  CHECK(worst_log < 3e-16);   // about 1 ulp
  CHECK(worst_trig < 1.2e-15);
  // u = 0 (probability 2^-53) is clamped to 1e-300 before the log, as before: the same bits as
  // u = 1e-300 itself (log_normal's, which may differ from libm's log in the last bit)
  double n0, n1, c0, c1;
  philox::box_muller(0.0, 0.25, n0, n1);
  philox::box_muller(1e-300, 0.25, c0, c1);
  CHECK(n1 == c1);
  CHECK(n0 == c0);
  CHECK(n1 == Approx(std::sqrt(-2.0 * std::log(1e-300))).epsilon(1e-15));
}
