// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Gradient checks in double precision against central finite differences: every primitive of
/// autograd/tape.hpp, every registered loss and regularizer term, and the composition rules
/// (accumulation, gradient reversal, detach, scale, add). Worst relative error
/// |analytic - numeric| / max(|analytic|, |numeric|, 1e-3) must stay <= 1e-6.
///
/// Inputs are small (5 x 4) and kept away from kinks: |x| >= 0.05 for relu / L1 / row norms,
/// |a - b| >= 0.1 for L1, well separated values for sort_cols, probabilities in (0.1, 0.9) for BCE.
/// Non-scalar outputs are reduced by `probe`: mse against a fixed random target, so the upstream
/// gradient is a generic dense matrix.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "sakura/autograd/gradcheck.hpp"
#include "sakura/autograd/tape.hpp"
#include "sakura/backend/cpu/ops.hpp"
#include "sakura/detail/type_list.hpp"
#include "sakura/losses/registry.hpp"
#include "sakura/tensor/parameter.hpp"
#include "sakura/regularizers/registry.hpp"
#include "sakura/tensor/rng.hpp"
#include "support/threads.hpp"

using sakura::Index;
using sakura::Parameter;
using sakura::Tape;
using sakura::Tensor;
using sakura::Var;

// Every registered term must be usable on a double tape (the gradcheck precision).
template <class... Ls>
constexpr bool all_losses_double(sakura::detail::TypeList<Ls...>) {
  return (sakura::LossFn<Ls, double> && ...);
}
template <class... Rs>
constexpr bool all_regularizers_double(sakura::detail::TypeList<Rs...>) {
  return (sakura::RegularizerFn<Rs, double> && ...);
}
static_assert(all_losses_double(sakura::LossTypes{}), "every LossTypes entry must satisfy LossFn<L, double>");
static_assert(all_regularizers_double(sakura::RegularizerTypes{}),
              "every RegularizerTypes entry must satisfy RegularizerFn<R, double>");
// The same through the registry's own iteration helper (names the failing type in the error).
static_assert(!sakura::detail::for_each_type(sakura::LossTypes{},
                                             []<class L>() { return !sakura::LossFn<L, double>; }));
static_assert(!sakura::detail::for_each_type(sakura::RegularizerTypes{},
                                             []<class R>() { return !sakura::RegularizerFn<R, double>; }));

namespace {

constexpr double kTol = 1e-6;    // worst relative error allowed (double precision)
constexpr double kFloor = 1e-3;  // gradcheck()'s denominator floor
constexpr double kStep = 1e-6;   // gradcheck()'s central-difference step

using P = Parameter<double>;
using Inputs = std::vector<P*>;
using Fn = std::function<Var(Tape<double>&, std::span<const Var>)>;
using Grads = std::vector<Tensor<double>>;

/// "p17" (appended, not `"p" + std::to_string(17)`: GCC 12 warns falsely on the latter).
std::string tagged(const char* prefix, std::uint64_t seed) {
  std::string s(prefix);
  s += std::to_string(seed);
  return s;
}

/// A parameter with entries of magnitude in [lo, hi] and random sign (away from 0-kinks).
P param(Index r, Index c, std::uint64_t seed, double lo = 0.05, double hi = 1.0) {
  P p(tagged("p", seed), "test", "", r, c);
  sakura::Rng rng(seed);
  for (Index i = 0; i < p.value.size(); ++i) {
    const double mag = rng.uniform(lo, hi);
    p.value[i] = rng.uniform() < 0.5 ? -mag : mag;
  }
  return p;
}
/// A constant with entries uniform in [lo, hi).
Tensor<double> uniform(Index r, Index c, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Tensor<double> t(r, c);
  sakura::Rng rng(seed);
  for (double& v : t) v = rng.uniform(lo, hi);
  return t;
}
/// Reduces a matrix to a scalar with a dense, generic upstream gradient.
Var probe(Tape<double>& t, Var y, const Tensor<double>& target) { return t.mse(y, t.constant(target.ref())); }

double max_abs(const Tensor<double>& g) {
  double m = 0;
  for (double v : g) m = std::max(m, std::abs(v));
  return m;
}

/// sakura::gradcheck, with the worst error printed and required <= 1e-6. Also requires every
/// input's analytic gradient to be non-zero, so that no check passes vacuously.
double check(const std::string& what, const Fn& f, const Inputs& in, bool require_nonzero = true) {
  const double err = sakura::gradcheck(f, in, kStep, kFloor);
  std::printf("gradcheck %-72s worst rel err %.3e\n", what.c_str(), err);
  INFO(what << ": worst relative error " << err);
  REQUIRE(err <= kTol);
  if (require_nonzero)
    for (P* p : in) {
      INFO(what << ": gradient of " << p->name << " is identically zero");
      REQUIRE(max_abs(p->grad) > 1e-8);  // gradcheck leaves the analytic gradient in p->grad
    }
  return err;
}

/// Analytic gradients of f at the current values (zeros where no gradient arrived); `written`
/// reports which inputs the backward wrote.
Grads analytic(const Fn& f, const Inputs& in, std::vector<bool>* written = nullptr, double* value = nullptr) {
  Tape<double> t;
  t.reset();
  std::vector<Var> vars;
  for (P* p : in) vars.push_back(t.param(*p));
  Var y = f(t, vars);
  for (P* p : in) p->written = false;
  t.backward(y);
  Grads g;
  if (written) written->clear();
  for (P* p : in) {
    if (written) written->push_back(p->written);
    Tensor<double> gi = p->grad;
    if (!p->written) gi.fill(0.0);
    g.push_back(std::move(gi));
  }
  if (value) *value = t.scalar(y);
  return g;
}
/// Central finite differences of f, one Tensor per input.
Grads numeric(const Fn& f, const Inputs& in, double h = kStep) {
  Tape<double> t;
  auto eval = [&] {
    t.reset();
    std::vector<Var> vars;
    for (P* p : in) vars.push_back(t.param(*p));
    return t.scalar(f(t, vars));
  };
  Grads g;
  for (P* p : in) {
    Tensor<double> gi(p->value.rows(), p->value.cols());
    for (Index i = 0; i < p->value.size(); ++i) {
      const double orig = p->value[i];
      p->value[i] = orig + h;
      const double up = eval();
      p->value[i] = orig - h;
      const double down = eval();
      p->value[i] = orig;
      gi[i] = (up - down) / (2 * h);
    }
    g.push_back(std::move(gi));
  }
  return g;
}
/// gradcheck()'s error definition over every element of every input.
double worst_rel(const Grads& a, const Grads& n, double floor = kFloor) {
  REQUIRE(a.size() == n.size());
  double worst = 0;
  for (std::size_t k = 0; k < a.size(); ++k) {
    REQUIRE(a[k].size() == n[k].size());
    for (Index i = 0; i < a[k].size(); ++i)
      worst = std::max(worst, std::abs(a[k][i] - n[k][i]) / std::max({std::abs(a[k][i]), std::abs(n[k][i]), floor}));
  }
  return worst;
}
void report(const std::string& what, double err) {
  std::printf("gradcheck %-72s worst rel err %.3e\n", what.c_str(), err);
  INFO(what << ": worst relative error " << err);
  REQUIRE(err <= kTol);
}

/// Values per column well apart (gap >= 0.2), in random order: no sort ties, even under +-h.
P distinct_param(Index r, Index c, std::uint64_t seed) {
  P p(tagged("sorted", seed), "test", "", r, c);
  sakura::Rng rng(seed);
  std::vector<int> order(static_cast<std::size_t>(r));
  for (Index col = 0; col < c; ++col) {
    std::iota(order.begin(), order.end(), 0);
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
    for (Index row = 0; row < r; ++row)
      p.value(row, col) = 0.3 * (order[static_cast<std::size_t>(row)] - double(r) / 2) + rng.uniform(0.0, 0.1);
  }
  return p;
}

}  // namespace

// ====================================================================== primitives

TEST_CASE("gradcheck: linear (x, W, b, PyTorch and transposed storage)", "[autograd]") {
  P x = param(5, 4, 11), w = param(3, 4, 12), b = param(1, 3, 13), wt = param(4, 3, 14);
  const Tensor<double> c = uniform(5, 3, 15);
  check("linear x W^T + b  [x, W, b]",
        [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.linear(v[0], v[1], v[2]), c); }, {&x, &w, &b});
  check("linear x W^T (no bias)  [x, W]",
        [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.linear(v[0], v[1], Var{}), c); }, {&x, &w});
  check("linear transposed x W + b  [x, W(in x out), b]",
        [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.linear(v[0], v[1], v[2], true), c); },
        {&x, &wt, &b});
  check("linear transposed x W (no bias)  [x, W]",
        [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.linear(v[0], v[1], Var{}, true), c); },
        {&x, &wt});
  // the same weight and bias twice in a row: the second backward accumulates (both layouts)
  P ws = param(4, 4, 17), bs = param(1, 4, 18);
  const Tensor<double> c4 = uniform(5, 4, 19);
  for (bool tr : {false, true})
    check(std::string("linear ") + (tr ? "transposed " : "") + "W, b used twice (accumulation)  [x, W, b]",
          [&](Tape<double>& t, std::span<const Var> v) {
            return probe(t, t.linear(t.celu(t.linear(v[0], v[1], v[2], tr)), v[1], v[2], tr), c4);
          },
          {&x, &ws, &bs});
  // constant input: only the weights are differentiable
  const Tensor<double> xc = uniform(5, 4, 16);
  check("linear constant x  [W, b]",
        [&](Tape<double>& t, std::span<const Var> v) {
          return probe(t, t.linear(t.constant(xc.ref()), v[0], v[1]), c);
        },
        {&w, &b});
}

TEST_CASE("gradcheck: linear with the ReLU fused (both layouts, with and without bias)", "[autograd]") {
  P x = param(5, 4, 41), w = param(3, 4, 42), b = param(1, 3, 43), wt = param(4, 3, 44);
  const Tensor<double> c = uniform(5, 3, 45);
  for (bool tr : {false, true}) {
    P& wl = tr ? wt : w;
    check(std::string("linear+relu ") + (tr ? "transposed " : "") + "[x, W, b]",
          [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.linear(v[0], v[1], v[2], tr, true), c); },
          {&x, &wl, &b});
    check(std::string("linear+relu ") + (tr ? "transposed " : "") + "(no bias) [x, W]",
          [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.linear(v[0], v[1], Var{}, tr, true), c); },
          {&x, &wl});
  }
}

namespace {
/// A float parameter of uniform(-1, 1) values (the bitwise fusion tests' inputs).
Parameter<float> uniform_float_param(const char* tag, Index r, Index c, std::uint64_t seed) {
  Parameter<float> p(tagged(tag, seed), "test", "", r, c);
  sakura::Rng rng(seed);
  for (auto& v : p.value) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  return p;
}
}  // namespace

TEST_CASE("linear with the ReLU fused equals linear then relu, bitwise, on any thread count", "[autograd]") {
  // big enough (> 2^15 outputs) for the threaded passes; a second consumer accumulates into x
  auto make = [](Index r, Index c, std::uint64_t seed) { return uniform_float_param("q", r, c, seed); };
  Parameter<float> x = make(70, 30, 601), w = make(600, 30, 602), b = make(1, 600, 603);
  Tensor<float> target(70, 600);
  sakura::Rng rng(604);
  for (auto& v : target) v = static_cast<float>(rng.uniform(0.0, 1.0));
  auto run = [&](bool fused) {
    Tape<float> t;
    Var xv = t.param(x), wv = t.param(w), bv = t.param(b);
    Var y = fused ? t.linear(xv, wv, bv, false, true) : t.relu(t.linear(xv, wv, bv));
    Var loss = t.add(t.mse(y, t.constant(target.ref())), t.mse(t.celu(xv), t.constant(x.value.ref())));
    t.backward(loss);
    std::vector<float> out(t.data(y).data, t.data(y).data + t.data(y).rows * t.data(y).cols);
    for (auto* p : {&x, &w, &b}) out.insert(out.end(), p->grad.begin(), p->grad.end());
    out.push_back(t.scalar(loss));
    return out;
  };
  sakura::test::on_thread_counts([&](int threads) {
    CAPTURE(threads);
    const auto a = run(false), f = run(true);
    REQUIRE(a.size() == f.size());
    CHECK(std::memcmp(a.data(), f.data(), a.size() * sizeof(float)) == 0);
  });
}

TEST_CASE("MSE and L1 of one pair back-propagate in one pass, bitwise the two rules", "[autograd]") {
  // The fused pass is taken when both terms share prediction and target; a copy of the target
  // (same values, another tape value) turns it off and gives the reference.
  Parameter<float> x(tagged("r", 701), "test", "", 90, 500);
  sakura::Rng rng(702);
  for (auto& v : x.value) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  Tensor<float> target(90, 500);
  for (auto& v : target) v = rng.uniform() < 0.3 ? 0.0f : static_cast<float>(rng.uniform(-1.0, 1.0));
  target(0, 0) = x.value(0, 0);  // a zero difference: sign 0
  enum Order { MseL1, L1Mse, MseL1Weighted, L1MseWeighted, WithEarlierConsumer };
  auto run = [&](Order order, bool fused) {
    Tape<float> t;
    Var p = t.param(x);
    Var tgt = t.constant(target.ref());
    Var tgt2 = fused ? tgt : t.constant(target.ref());
    const bool weighted = order == MseL1Weighted || order == L1MseWeighted || order == WithEarlierConsumer;
    auto w = [&](Var v, double k) { return weighted ? t.scale(v, k) : v; };
    Var loss;
    if (order == L1Mse || order == L1MseWeighted) {
      Var l = w(t.l1(p, tgt), 0.7);
      loss = t.add(l, w(t.mse(p, tgt2), 1.3));
    } else {
      Var m = w(t.mse(p, tgt), 1.3);
      loss = t.add(m, w(t.l1(p, tgt2), 0.7));
    }
    if (order == WithEarlierConsumer) loss = t.add(loss, t.mse(t.celu(p), tgt));  // its gradient arrives first
    t.backward(loss);
    std::vector<float> g(x.grad.begin(), x.grad.end());
    g.push_back(t.scalar(loss));
    return g;
  };
  sakura::test::on_thread_counts([&](int threads) {
    for (Order o : {MseL1, L1Mse, MseL1Weighted, L1MseWeighted, WithEarlierConsumer}) {
      CAPTURE(threads, int(o));
      const auto ref = run(o, false), fused = run(o, true);
      CHECK(std::memcmp(ref.data(), fused.data(), ref.size() * sizeof(float)) == 0);
    }
  });
}

TEST_CASE("MSE and L1 of one pair share one forward pass, each value bitwise as computed alone", "[autograd]") {
  std::mt19937 gen(705);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  auto filled = [&](Index r, Index c) {
    Tensor<float> m(r, c);
    for (auto& v : m) v = gen() % 4 == 0 ? 0.0f : normal(gen);
    return m;
  };
  for (auto [rows, cols] : {std::pair<Index, Index>{7, 13}, {90, 500}, {100, 4097}}) {
    CAPTURE(rows, cols);
    const Tensor<float> p = filled(rows, cols), q = filled(rows, cols), p2 = filled(rows, cols);
    const Index n = rows * cols;
    auto alone = [&](const Tensor<float>& a, const Tensor<float>& b, bool mse) {
      float v;
      if (mse) sakura::Ops<float, sakura::Cpu>::mse_fwd(&v, a.data(), b.data(), n);
      else sakura::Ops<float, sakura::Cpu>::l1_fwd(&v, a.data(), b.data(), n);
      return v;
    };
    auto same = [](float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; };
    Tape<float> t;
    Var a = t.constant(p.ref()), b = t.constant(q.ref()), c = t.constant(p2.ref());
    Var m = t.mse(a, b), other = t.l1(a, c), swapped = t.l1(b, a), l = t.l1(a, b);  // not the pair, twice
    CHECK(same(t.scalar(m), alone(p, q, true)));
    CHECK(same(t.scalar(l), alone(p, q, false)));
    CHECK(same(t.scalar(other), alone(p, p2, false)));
    CHECK(same(t.scalar(swapped), alone(q, p, false)));
    Var l2 = t.l1(a, b), m2 = t.mse(a, b);  // L1 first, and a second use of the pair
    CHECK(same(t.scalar(l2), alone(p, q, false)));
    CHECK(same(t.scalar(m2), alone(p, q, true)));
    // a kept mean never outlives its tape's step: the next step's values reuse the ids
    t.reset();
    Var x = t.constant(p.ref()), y = t.constant(q.ref());
    (void)t.mse(x, y);
    t.reset();
    Var x2 = t.constant(p2.ref()), y2 = t.constant(q.ref());
    REQUIRE(x2.id == x.id);
    CHECK(same(t.scalar(t.l1(x2, y2)), alone(p2, q, false)));
  }
}

TEST_CASE("MSE and L1 on a Linear + ReLU output take the ReLU and bias gradient in the same pass, bitwise",
          "[autograd]") {
  // The reconstruction's shape: y = relu(h W^T + b), then MSE(y, x) and L1(y, x). The fold is
  // refused when a node between the layer and the pair reads y or b; a copy of the target turns
  // the pair off and gives the reference (the two loss rules, then the layer's ReLU rule).
  auto make = [](Index r, Index c, std::uint64_t seed) { return uniform_float_param("f", r, c, seed); };
  Parameter<float> h = make(40, 24, 801), w = make(5000, 24, 802), b = make(1, 5000, 803);
  Tensor<float> target(40, 5000);
  sakura::Rng rng(804);
  for (auto& v : target) v = rng.uniform() < 0.5 ? 0.0f : static_cast<float>(rng.uniform(0.0, 1.0));
  enum Case { MseL1, L1MseWeighted, LaterConsumer, ReaderOfY, ReaderOfBias, NoBias };
  auto run = [&](Case k, bool pair, bool& folded) {
    Tape<float> t;
    Var hv = t.param(h), wv = t.param(w), bv = t.param(b);
    Var y = t.linear(hv, wv, k == NoBias ? Var{} : bv, false, true);
    Var extra = k == ReaderOfY ? t.mse(t.celu(y), t.constant(target.ref()))
                : k == ReaderOfBias ? t.mse(bv, t.constant(b.value.ref()))
                : Var{};
    Var tgt = t.constant(target.ref()), tgt2 = pair ? tgt : t.constant(target.ref());
    Var loss = k == L1MseWeighted ? t.add(t.scale(t.l1(y, tgt), 0.7), t.scale(t.mse(y, tgt2), 1.3))
                                  : t.add(t.mse(y, tgt), t.l1(y, tgt2));
    if (k == LaterConsumer) loss = t.add(loss, t.mse(t.celu(y), tgt));  // its gradient reaches y first
    if (extra.id >= 0) loss = t.add(loss, extra);
    t.backward(loss);
    folded = t.grad(y).data == nullptr;  // a folded gradient is no longer d loss / d y
    std::vector<float> out;
    for (auto* p : {&h, &w, &b}) out.insert(out.end(), p->grad.begin(), p->grad.end());
    out.push_back(t.scalar(loss));
    return out;
  };
  sakura::test::on_thread_counts([&](int threads) {
    for (Case k : {MseL1, L1MseWeighted, LaterConsumer, ReaderOfY, ReaderOfBias, NoBias}) {
      CAPTURE(threads, int(k));
      for (auto* p : {&h, &w, &b}) std::fill(p->grad.begin(), p->grad.end(), 0.0f);
      bool folded_ref = false, folded = false;
      const auto ref = run(k, false, folded_ref);
      for (auto* p : {&h, &w, &b}) std::fill(p->grad.begin(), p->grad.end(), 0.0f);
      const auto got = run(k, true, folded);
      CHECK_FALSE(folded_ref);
      CHECK(folded == (k != ReaderOfY && k != ReaderOfBias));
      REQUIRE(ref.size() == got.size());
      CHECK(std::memcmp(ref.data(), got.data(), ref.size() * sizeof(float)) == 0);
    }
  });
}

TEST_CASE("gradcheck: celu", "[autograd]") {
  P x = param(5, 4, 21, 0.05, 2.0);
  const Tensor<double> c = uniform(5, 4, 22);
  check("celu", [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.celu(v[0]), c); }, {&x});
}

TEST_CASE("gradcheck: relu", "[autograd]") {
  P x = param(5, 4, 31);
  const Tensor<double> c = uniform(5, 4, 32);
  check("relu", [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.relu(v[0]), c); }, {&x});
}

TEST_CASE("gradcheck: sigmoid", "[autograd]") {
  P x = param(5, 4, 41, 0.05, 3.0);
  const Tensor<double> c = uniform(5, 4, 42, 0.0, 1.0);
  check("sigmoid", [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.sigmoid(v[0]), c); }, {&x});
}

TEST_CASE("gradcheck: softmax", "[autograd]") {
  P x = param(5, 4, 51, 0.05, 2.0);
  const Tensor<double> c = uniform(5, 4, 52, 0.0, 1.0);
  check("softmax (rows)", [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.softmax(v[0]), c); },
        {&x});
}

TEST_CASE("gradcheck: log_softmax", "[autograd]") {
  P x = param(5, 4, 61, 0.05, 2.0);
  const Tensor<double> c = uniform(5, 4, 62, -3.0, 0.0);
  check("log_softmax (rows)",
        [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.log_softmax(v[0]), c); }, {&x});
}

TEST_CASE("gradcheck: dropout", "[autograd]") {
  P x = param(5, 4, 71);
  const Tensor<double> c = uniform(5, 4, 72);
  const double p = 0.3;
  Tensor<double> mask(5, 4);
  sakura::Rng rng(73);
  for (double& m : mask) m = rng.uniform() < p ? 0.0 : 1.0 / (1.0 - p);
  mask[0] = 0.0;  // at least one dropped and one kept element
  mask[1] = 1.0 / (1.0 - p);
  check("dropout (fixed mask, p = 0.3)",
        [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.dropout(v[0], t.constant(mask.ref())), c); },
        {&x});
}

TEST_CASE("gradcheck: concat", "[autograd]") {
  P a = param(5, 2, 81), b = param(5, 3, 82);
  const Tensor<double> k = uniform(5, 1, 83);
  const Tensor<double> c6 = uniform(5, 6, 84), c7 = uniform(5, 7, 85);
  check("concat [a | const | b]",
        [&](Tape<double>& t, std::span<const Var> v) {
          const std::array<Var, 3> parts{v[0], t.constant(k.ref()), v[1]};
          return probe(t, t.concat(parts), c6);
        },
        {&a, &b});
  check("concat [a | b | a] (a twice: accumulation)",
        [&](Tape<double>& t, std::span<const Var> v) {
          const std::array<Var, 3> parts{v[0], v[1], v[0]};
          return probe(t, t.concat(parts), c7);
        },
        {&a, &b});
}

TEST_CASE("gradcheck: slice_cols", "[autograd]") {
  P x = param(5, 6, 91);
  const Tensor<double> c3 = uniform(5, 3, 92), c6 = uniform(5, 6, 93);
  check("slice_cols [1, 4)",
        [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.slice_cols(v[0], 1, 3), c3); }, {&x},
        /*require_nonzero=*/true);
  // two overlapping slices of the same value: the second accumulates into the first's gradient
  check("slice_cols [0, 4) | [2, 4) (overlap: accumulation)",
        [&](Tape<double>& t, std::span<const Var> v) {
          const std::array<Var, 2> parts{t.slice_cols(v[0], 0, 4), t.slice_cols(v[0], 2, 2)};
          return probe(t, t.concat(parts), c6);
        },
        {&x});
  // columns outside every slice must get an exact zero
  const Grads g = analytic(
      [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.slice_cols(v[0], 1, 3), c3); }, {&x});
  for (Index r = 0; r < 5; ++r) {
    CHECK(g[0](r, 0) == 0.0);
    CHECK(g[0](r, 4) == 0.0);
    CHECK(g[0](r, 5) == 0.0);
  }
}

TEST_CASE("gradcheck: detach", "[autograd]") {
  P x = param(5, 4, 101), y = param(5, 4, 102);
  const Tensor<double> c = uniform(5, 4, 103), d = uniform(5, 4, 104);
  // only a detached path: no gradient at all, the parameter is never written
  std::vector<bool> written;
  double value = 0;
  analytic(
      [&](Tape<double>& t, std::span<const Var> v) { return t.add(probe(t, t.detach(v[0]), c), probe(t, v[1], d)); },
      {&x, &y}, &written, &value);
  CHECK_FALSE(written[0]);
  CHECK(written[1]);
  // the forward value is unchanged by detach
  double plain = 0;
  analytic([&](Tape<double>& t, std::span<const Var> v) { return t.add(probe(t, v[0], c), probe(t, v[1], d)); },
           {&x, &y}, nullptr, &plain);
  CHECK(value == plain);
  {
    Tape<double> t;
    t.reset();
    x.written = false;
    Var root = probe(t, t.detach(t.param(x)), c);
    CHECK_FALSE(t.requires_grad(root));
    t.backward(root);  // a root that needs no gradient: nothing happens
    CHECK_FALSE(x.written);
  }
  // a detached use next to a live one: the gradient is exactly that of the live use
  const Fn mixed = [&](Tape<double>& t, std::span<const Var> v) {
    return t.add(probe(t, t.celu(t.detach(v[0])), c), probe(t, t.celu(v[0]), d));
  };
  const Fn live = [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.celu(v[0]), d); };
  const Grads gm = analytic(mixed, {&x}), gl = analytic(live, {&x});
  for (Index i = 0; i < x.value.size(); ++i) CHECK(gm[0][i] == gl[0][i]);
  check("detach next to a live use (live part)", live, {&x});
  // finite differences of the live part agree with the mixed tape's gradient
  report("detach: mixed tape vs FD of the live part", worst_rel(gm, numeric(live, {&x})));
}

TEST_CASE("gradcheck: reverse_grad", "[autograd]") {
  P x = param(5, 4, 111), w = param(3, 4, 112);
  const Tensor<double> c = uniform(5, 4, 113), d = uniform(5, 3, 114);
  const Fn plain = [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.celu(v[0]), c); };
  const Fn rev = [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.reverse_grad(t.celu(v[0])), c); };
  check("reverse_grad: identity path (reference)", plain, {&x});
  double vp = 0, vr = 0;
  const Grads gp = analytic(plain, {&x}, nullptr, &vp), gr = analytic(rev, {&x}, nullptr, &vr);
  CHECK(vp == vr);  // identity forward
  for (Index i = 0; i < x.value.size(); ++i) REQUIRE(gr[0][i] == -gp[0][i]);  // exactly negated
  Grads neg = numeric(plain, {&x});
  for (double& g : neg[0]) g = -g;
  report("reverse_grad vs -FD", worst_rel(gr, neg));

  // GRL inside a graph: x feeds a live term and, through a reversed linear, an adversary term.
  // W sees only the adversary (not reversed for W); x gets live - adversary.
  const Fn grl = [&](Tape<double>& t, std::span<const Var> v) {
    return t.add(probe(t, t.celu(v[0]), c), probe(t, t.linear(t.reverse_grad(v[0]), v[1], Var{}), d));
  };
  const Fn ref = [&](Tape<double>& t, std::span<const Var> v) {  // same value, adversary scaled by -1
    return t.add(probe(t, t.celu(v[0]), c), t.scale(probe(t, t.linear(v[0], v[1], Var{}), d), -1.0));
  };
  const Fn adv = [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.linear(v[0], v[1], Var{}), d); };
  const Grads ga = analytic(grl, {&x, &w});
  const Grads nx = numeric(ref, {&x, &w}), nw = numeric(adv, {&x, &w});
  report("reverse_grad in a graph: dx vs FD(live - adversary)", worst_rel({ga[0]}, {nx[0]}));
  report("reverse_grad in a graph: dW vs FD(adversary)", worst_rel({ga[1]}, {nw[1]}));
}

TEST_CASE("gradcheck: sort_cols", "[autograd]") {
  P x = distinct_param(5, 4, 121);
  const Tensor<double> c = uniform(5, 4, 122);
  check("sort_cols (distinct values)",
        [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.sort_cols(v[0]), c); }, {&x});
  // sorted projections, as the sliced Wasserstein terms use them
  P z = param(5, 4, 123), proj = param(6, 4, 124);
  const Tensor<double> c6 = uniform(5, 6, 125);
  check("sort_cols of z P^T  [z, P]",
        [&](Tape<double>& t, std::span<const Var> v) {
          return probe(t, t.sort_cols(t.linear(v[0], v[1], Var{})), c6);
        },
        {&z, &proj});
}

// The sort itself (its values and permutation, not a gradient): against std::stable_sort on
// float keys ordered as PyTorch orders them (NaN last, -0 == +0 kept in row order), at heights
// on both sides of the network/std::sort switch and of the network's power-of-two padding.
TEMPLATE_TEST_CASE("sort_columns: stable, NaN last, at every height", "[autograd][sort]", float, double) {
  using T = TestType;
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  // the float neighbour of 1; for double one well above the row-index bits (sort_key keeps a
  // double's top 64 - rb bits)
  const T next = T(1) + (sizeof(T) == 4 ? std::numeric_limits<T>::epsilon() : T(1) / T(1 << 20));
  const T specials[] = {T(-1), T(0), T(-0.0), T(1), nan, -nan, inf, -inf, next,
                       T(std::numeric_limits<float>::denorm_min()), -T(std::numeric_limits<float>::max())};
  std::mt19937 gen(7);
  for (Index rows : {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 33, 100, 128, 255, 256, 257, 300})
    for (Index cols : {1, 8, 13, 50, 130}) {
      CAPTURE(rows, cols);
      std::vector<T> x(static_cast<std::size_t>(rows * cols));
      for (auto& v : x)
        v = gen() % 3 == 0 ? specials[gen() % std::size(specials)] : T(int(gen() % 200) - 100) / T(8);  // ties
      std::vector<T> sorted(x.size());
      std::vector<std::int32_t> perm(x.size());
      std::vector<std::uint64_t> scratch(sakura::cpu::sort_scratch_keys(rows, cols));
      sakura::cpu::sort_columns(sorted.data(), perm.data(), x.data(), rows, cols, scratch.data());
      std::vector<std::int32_t> idx(static_cast<std::size_t>(rows));
      for (Index c = 0; c < cols; ++c) {
        std::iota(idx.begin(), idx.end(), 0);
        auto at = [&](std::int32_t r) { return x[static_cast<std::size_t>(r * cols + c)]; };
        std::stable_sort(idx.begin(), idx.end(), [&](std::int32_t a, std::int32_t b) {
          const T u = at(a), v = at(b);
          return std::isnan(v) ? !std::isnan(u) : (!std::isnan(u) && u < v);
        });
        for (Index r = 0; r < rows; ++r) {
          const auto k = static_cast<std::size_t>(r * cols + c);
          REQUIRE(perm[k] == idx[static_cast<std::size_t>(r)]);
          REQUIRE(std::memcmp(&sorted[k], &x[static_cast<std::size_t>(perm[k] * cols + c)], sizeof(T)) == 0);
        }
      }
      // the backward: unsorting the sorted values (and again, accumulated) gives x (2x) back,
      // every entry written (NaN-filled first), -0 kept as PyTorch's scatter_ keeps it
      std::vector<T> back(x.size(), nan);
      sakura::cpu::unsort_columns(back.data(), sorted.data(), perm.data(), rows, cols, false);
      REQUIRE(std::memcmp(back.data(), x.data(), x.size() * sizeof(T)) == 0);
      sakura::cpu::unsort_columns(back.data(), sorted.data(), perm.data(), rows, cols, true);
      for (std::size_t k = 0; k < x.size(); ++k)
        if (!std::isnan(x[k])) REQUIRE(back[k] == x[k] + x[k]);
      // the values alone (a constant input) are the same bits: here with ±0 and NaN in most
      // columns, then with none (ties kept, zeros moved off 0), where float takes the value keys
      auto values_match = [&](const std::vector<T>& in, const std::vector<T>& ref) {
        std::vector<T> v(in.size(), T(7));
        std::vector<std::int32_t> scratch_perm(in.size());
        sakura::cpu::sort_column_values(v.data(), scratch_perm.data(), in.data(), rows, cols, scratch.data());
        return std::memcmp(v.data(), ref.data(), in.size() * sizeof(T)) == 0;
      };
      REQUIRE(values_match(x, sorted));
      for (auto& v : x)
        if (std::isnan(v) || v == T(0)) v = T(int(gen() % 7) + 1) / T(16);
      sakura::cpu::sort_columns(sorted.data(), perm.data(), x.data(), rows, cols, scratch.data());
      REQUIRE(values_match(x, sorted));
    }
}

// The float CELU kernel (gradchecks run in double): correctly rounded against double expm1 on
// every 997th negative float down to -128, and exact on the special values.
TEST_CASE("celu forward in float: correctly rounded, specials exact", "[autograd][celu]") {
  std::vector<float> xs;
  for (std::uint32_t b = 0x80000000u; b < 0xc3000000u; b += 997) xs.push_back(std::bit_cast<float>(b));
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, -1e-8f, -0.35f, -88.0f, -103.0f, -104.0f, -1e30f, -inf, 5.0f, inf, 3e38f,
                  nan, -nan})
    xs.push_back(v);
  std::vector<float> ys(xs.size());
  sakura::cpu::celu_fwd(ys.data(), xs.data(), static_cast<Index>(xs.size()));
  for (std::size_t i = 0; i < xs.size(); ++i) {
    CAPTURE(xs[i], ys[i]);
    if (std::isnan(xs[i])) {
      REQUIRE(std::isnan(ys[i]));
      continue;
    }
    const float ref = xs[i] > 0 ? xs[i] : static_cast<float>(std::expm1(double(xs[i])));
    REQUIRE(std::bit_cast<std::uint32_t>(ys[i]) == std::bit_cast<std::uint32_t>(ref == 0 ? 0.0f : ref));
  }
}

// celu_fwd computes expm1 only for the negative inputs (compressed, then expanded back): every
// length across vector and run edges, signs mixed at random with the special values, gives
// celu_f32's value at each position, bit for bit.
TEST_CASE("celu forward in float: mixed signs at every length equal the scalar kernel", "[autograd][celu]") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const float specials[] = {0.0f, -0.0f, inf, -inf, nan, -nan, -1e-30f, 1e-30f, -200.0f};
  sakura::Rng rng(17);
  for (Index n : {1, 2, 15, 16, 17, 31, 33, 160, 1023, 1024, 1025, 2047, 2049, 3000}) {
    std::vector<float> x(static_cast<std::size_t>(n));
    for (auto& v : x) {
      const double u = rng.uniform();
      v = u < 0.05 ? specials[static_cast<std::size_t>(rng.uniform() * 9) % 9]
                   : static_cast<float>(u < 0.5 ? -rng.uniform(0, 6) : rng.uniform(0, 6));
    }
    if (n > 40) std::fill(x.begin() + 16, x.begin() + 32, -1.5f);  // a vector all negative ...
    if (n > 60) std::fill(x.begin() + 32, x.begin() + 48, 2.5f);   // ... and one all positive
    std::vector<float> y(x.size(), 7.0f);
    sakura::cpu::celu_fwd(y.data(), x.data(), n);
    for (std::size_t i = 0; i < x.size(); ++i) {
      CAPTURE(n, i, x[i]);
      REQUIRE(std::bit_cast<std::uint32_t>(y[i]) == std::bit_cast<std::uint32_t>(sakura::cpu::celu_f32(x[i])));
    }
  }
}

// Batch validation: one NaN, Inf or -Inf anywhere (first, middle, last element; serial and
// parallel block sizes) is found; the largest finite values and subnormals pass.
TEMPLATE_TEST_CASE("all_finite finds one non-finite value anywhere", "[autograd][validation]", float, double) {
  using T = TestType;
  const T bad[] = {std::numeric_limits<T>::quiet_NaN(), -std::numeric_limits<T>::quiet_NaN(),
                   std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity()};
  for (Index n : {1, 15, 16, 17, 4095, 4097, 300000}) {
    std::vector<T> x(static_cast<std::size_t>(n), T(0.5));
    x[0] = std::numeric_limits<T>::max();
    x.back() = -std::numeric_limits<T>::max();
    x[x.size() / 2] = std::numeric_limits<T>::denorm_min();
    REQUIRE(sakura::cpu::all_finite(x.data(), n));
    for (std::size_t at : {std::size_t(0), x.size() / 2 + (n > 2 ? 1 : 0), x.size() - 1})
      for (T b : bad) {
        CAPTURE(n, at, b);
        const T keep = x[at];
        x[at] = b;
        REQUIRE_FALSE(sakura::cpu::all_finite(x.data(), n));
        x[at] = keep;
      }
  }
  REQUIRE(sakura::cpu::all_finite(static_cast<const T*>(nullptr), 0));
}

TEST_CASE("gradcheck: mse", "[autograd]") {
  P a = param(5, 4, 131), b = param(5, 4, 132);
  check("mse  [a, b]", [&](Tape<double>& t, std::span<const Var> v) { return t.mse(v[0], v[1]); }, {&a, &b});
  check("mse(celu(a), b)  [a, b]",
        [&](Tape<double>& t, std::span<const Var> v) { return t.mse(t.celu(v[0]), v[1]); }, {&a, &b});
}

TEST_CASE("gradcheck: l1", "[autograd]") {
  P a = param(5, 4, 141), b("b", "test", "", 5, 4);
  sakura::Rng rng(142);
  for (Index i = 0; i < a.value.size(); ++i)  // |a - b| >= 0.1: away from the kink
    b.value[i] = a.value[i] + (rng.uniform() < 0.5 ? -1 : 1) * rng.uniform(0.1, 0.5);
  check("l1  [a, b]", [&](Tape<double>& t, std::span<const Var> v) { return t.l1(v[0], v[1]); }, {&a, &b});
}

TEST_CASE("gradcheck: cosine", "[autograd]") {
  P a = param(5, 4, 151), b = param(5, 4, 152);
  check("cosine  [a, b]", [&](Tape<double>& t, std::span<const Var> v) { return t.cosine(v[0], v[1]); }, {&a, &b});
  check("cosine(sigmoid(a), b)  [a, b]",
        [&](Tape<double>& t, std::span<const Var> v) { return t.cosine(t.sigmoid(v[0]), v[1]); }, {&a, &b});
}

TEST_CASE("gradcheck: row_norm_mean", "[autograd]") {
  P x = param(5, 4, 161);
  check("row_norm_mean ord 1",
        [&](Tape<double>& t, std::span<const Var> v) { return t.row_norm_mean(v[0], 1); }, {&x});
  check("row_norm_mean ord 2",
        [&](Tape<double>& t, std::span<const Var> v) { return t.row_norm_mean(v[0], 2); }, {&x});
}

TEST_CASE("gradcheck: nll", "[autograd]") {
  P x = param(5, 4, 171, 0.05, 2.0);
  static const std::int64_t labels[5] = {0, 3, 1, 1, 2};
  // directly on a matrix: only the labelled entries get a gradient
  const double err = sakura::gradcheck([&](Tape<double>& t, std::span<const Var> v) { return t.nll(v[0], labels); },
                                       {&x}, kStep, kFloor);
  report("nll on raw scores (fixed labels)", err);
  for (Index r = 0; r < 5; ++r)
    for (Index c = 0; c < 4; ++c) CHECK(x.grad(r, c) == (c == labels[r] ? -1.0 / 5 : 0.0));
  check("nll(log_softmax(x)) (fixed labels)",
        [&](Tape<double>& t, std::span<const Var> v) { return t.nll(t.log_softmax(v[0]), labels); }, {&x});
}

TEST_CASE("gradcheck: bce", "[autograd]") {
  // probabilities sigmoid(x) with |x| <= 2: p in (0.119, 0.881)
  P x = param(5, 4, 181, 0.05, 2.0);
  Tensor<double> y = uniform(5, 4, 182, 0.0, 1.0);
  y[0] = 0.0;  // hard targets too
  y[1] = 1.0;
  check("bce(sigmoid(x), y)  (y fixed in [0, 1])",
        [&](Tape<double>& t, std::span<const Var> v) { return t.bce(t.sigmoid(v[0]), t.constant(y.ref())); }, {&x});
  // the target side never gets a gradient, even when it is a parameter
  P yp = param(5, 4, 183, 0.05, 2.0);
  std::vector<bool> written;
  analytic([&](Tape<double>& t, std::span<const Var> v) { return t.bce(t.sigmoid(v[0]), t.sigmoid(v[1])); },
           {&x, &yp}, &written);
  CHECK(written[0]);
  CHECK_FALSE(written[1]);
}

TEST_CASE("gradcheck: kl_gauss", "[autograd]") {
  P x = param(6, 3, 191);
  const Tensor<double> prior = uniform(6, 3, 192, -1.5, 1.5);
  check("kl_gauss(x, prior)",
        [&](Tape<double>& t, std::span<const Var> v) { return t.kl_gauss(v[0], t.constant(prior.ref())); }, {&x});
  const Tensor<double> prior8 = uniform(8, 3, 193, -1.5, 1.5);  // prior with more rows than x
  check("kl_gauss(x, prior of 8 rows)",
        [&](Tape<double>& t, std::span<const Var> v) { return t.kl_gauss(v[0], t.constant(prior8.ref())); }, {&x});
}

TEST_CASE("gradcheck: scale", "[autograd]") {
  P x = param(5, 4, 201);
  const Tensor<double> c = uniform(5, 4, 202);
  check("scale(mse, 0.37)",
        [&](Tape<double>& t, std::span<const Var> v) { return t.scale(probe(t, v[0], c), 0.37); }, {&x});
  check("scale(scale(mse, -2.5), 0.1)",
        [&](Tape<double>& t, std::span<const Var> v) { return t.scale(t.scale(probe(t, v[0], c), -2.5), 0.1); },
        {&x});
  // exact: d scale(s, w) / d s = w
  const Fn base = [&](Tape<double>& t, std::span<const Var> v) { return probe(t, v[0], c); };
  const Fn scaled = [&](Tape<double>& t, std::span<const Var> v) { return t.scale(probe(t, v[0], c), 0.37); };
  const Grads gb = analytic(base, {&x}), gs = analytic(scaled, {&x});
  for (Index i = 0; i < x.value.size(); ++i) CHECK(gs[0][i] == Approx(0.37 * gb[0][i]).epsilon(1e-14));
}

TEST_CASE("gradcheck: add", "[autograd]") {
  P x = param(5, 4, 211), y = param(5, 4, 212);
  const Tensor<double> c = uniform(5, 4, 213);
  check("add(mse(x, c), cosine(y, c))  [x, y]",
        [&](Tape<double>& t, std::span<const Var> v) {
          return t.add(probe(t, v[0], c), t.cosine(v[1], t.constant(c.ref())));
        },
        {&x, &y});
  check("add(s, s) (one scalar twice: accumulation)",
        [&](Tape<double>& t, std::span<const Var> v) {
          Var s = probe(t, t.celu(v[0]), c);
          return t.add(s, s);
        },
        {&x});
}

// ====================================================================== the open elementwise set

namespace {
/// x with every entry made positive (magnitudes as param(): away from 0).
P positive(P x) {
  for (double& v : x.value) v = std::abs(v);
  return x;
}
}  // namespace

TEST_CASE("gradcheck: pointwise functions", "[autograd][elementwise]") {
  P x = param(5, 4, 261), pos = positive(param(5, 4, 262));
  const Tensor<double> c = uniform(5, 4, 263);
  using Unary = std::function<Var(Tape<double>&, Var)>;
  const std::vector<std::tuple<std::string, Unary, P*>> cases = {
      {"abs (|x| >= 0.05)", [](Tape<double>& t, Var v) { return t.abs(v); }, &x},
      {"square", [](Tape<double>& t, Var v) { return t.square(v); }, &x},
      {"sqrt (x > 0)", [](Tape<double>& t, Var v) { return t.sqrt(v); }, &pos},
      {"exp", [](Tape<double>& t, Var v) { return t.exp(v); }, &x},
      {"log1p (x > 0)", [](Tape<double>& t, Var v) { return t.log1p(v); }, &pos},
      {"affine x * -1.7 + 0.3", [](Tape<double>& t, Var v) { return t.affine(v, -1.7, 0.3); }, &x},
      {"clamp_min(x, 0) (|x| >= 0.05)", [](Tape<double>& t, Var v) { return t.clamp_min(v, 0.0); }, &x},
  };
  for (const auto& [name, f, in] : cases)
    check(name, [&](Tape<double>& t, std::span<const Var> v) { return probe(t, f(t, v[0]), c); }, {in});
  // less() is a constant mask: no node, no gradient
  Tape<double> t;
  Var m = t.less(t.param(x), 0.0);
  CHECK_FALSE(t.requires_grad(m));
  CHECK(t.node_count() == 0);
  for (Index i = 0; i < x.value.size(); ++i) CHECK(t.data(m).data[i] == (x.value[i] < 0.0 ? 1.0 : 0.0));
}

TEST_CASE("gradcheck: binary ops, both operands", "[autograd][elementwise]") {
  P a = param(5, 4, 271), b = param(5, 4, 272, 0.5, 1.5);  // b away from 0 for the division
  const Tensor<double> c = uniform(5, 4, 273);
  for (const auto& [name, f] : std::vector<std::pair<std::string, sakura::Binary>>{
           {"add", sakura::Binary::Add}, {"sub", sakura::Binary::Sub}, {"mul", sakura::Binary::Mul},
           {"div", sakura::Binary::Div}})
    check(name + "  [a, b]",
          [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.binary(f, v[0], v[1]), c); }, {&a, &b});
  check("mul(a, a)  (one operand twice: accumulation)",
        [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.mul(v[0], v[0]), c); }, {&a});
}

TEST_CASE("gradcheck: where, mean, row_sum", "[autograd][elementwise]") {
  P a = param(5, 4, 281), b = param(5, 4, 282), x = param(5, 4, 283);
  const Tensor<double> c = uniform(5, 4, 284), c1 = uniform(5, 1, 285);
  check("where(x < 0, a, b)  [a, b, x: no gradient through the mask]",
        [&](Tape<double>& t, std::span<const Var> v) {
          return probe(t, t.where(t.less(v[2], 0.0), v[0], v[1]), c);
        },
        {&a, &b, &x}, false);
  CHECK(max_abs(x.grad) == 0.0);  // gradcheck left x's gradient: nothing reached it
  check("mean", [&](Tape<double>& t, std::span<const Var> v) { return t.mean(t.celu(v[0])); }, {&a});
  check("row_sum", [&](Tape<double>& t, std::span<const Var> v) { return probe(t, t.row_sum(v[0]), c1); }, {&a});
  // where() refuses a mask that needs a gradient
  Tape<double> t;
  Var pa = t.param(a);
  REQUIRE_THROWS_WITH(t.where(pa, pa, pa), Catch::Contains("where: the mask must be a constant"));
}

TEST_CASE("sqrt's gradient at 0 is 0, as a norm's", "[autograd][elementwise]") {
  P x("zero", "test", "", 2, 3);
  x.value.fill(0.0);
  x.value(1, 0) = 4.0;
  const Grads g = analytic([](Tape<double>& t, std::span<const Var> v) { return t.mean(t.sqrt(t.row_sum(t.square(v[0])))); },
                           {&x});
  for (Index i = 0; i < 3; ++i) CHECK(g[0](0, i) == 0.0);  // the zero row: 0, not NaN
  CHECK(g[0](1, 0) == 0.5);                                 // d/dx ||x|| / 2 = x / (2 ||x||)
}

// ====================================================================== composition rules

TEST_CASE("gradcheck: composition (accumulation, shared parameters, weighted sums)", "[autograd]") {
  P x = param(5, 4, 221, 0.05, 1.5);
  const Tensor<double> c = uniform(5, 4, 222);
  // one value used on both sides of a loss
  check("mse(celu(x), sigmoid(x))  (x used twice)",
        [&](Tape<double>& t, std::span<const Var> v) { return t.mse(t.celu(v[0]), t.sigmoid(v[0])); }, {&x});
  check("cosine(celu(x), x)  (x used twice)",
        [&](Tape<double>& t, std::span<const Var> v) { return t.cosine(t.celu(v[0]), v[0]); }, {&x});
  // one intermediate used by several consumers
  check("h = celu(x); mse(h, c) + row_norm_mean(h, 2) + kl(h, c)",
        [&](Tape<double>& t, std::span<const Var> v) {
          Var h = t.celu(v[0]);
          return t.add(t.add(probe(t, h, c), t.row_norm_mean(h, 2)), t.kl_gauss(h, t.constant(c.ref())));
        },
        {&x});

  // a weight shared by two linears (and the same parameter bound twice on the tape)
  P in = param(5, 4, 223), w = param(4, 4, 224), b = param(1, 4, 225), w2 = param(3, 4, 226);
  const Tensor<double> c3 = uniform(5, 3, 227);
  check("x -> linear(W) -> celu -> linear(W) -> linear(W2)  (W shared)  [x, W, b, W2]",
        [&](Tape<double>& t, std::span<const Var> v) {
          Var h = t.celu(t.linear(v[0], v[1], v[2]));
          Var h2 = t.celu(t.linear(h, v[1], v[2]));
          return probe(t, t.linear(h2, v[3], Var{}), c3);
        },
        {&in, &w, &b, &w2});
  const Tensor<double> c8 = uniform(5, 8, 228);
  check("linear(x, W) and linear(x, param(W) again)  (re-binding shares the leaf)",
        [&](Tape<double>& t, std::span<const Var> v) {
          Var again = t.param(w);  // same Parameter bound a second time in the step
          REQUIRE(again.id == v[1].id);
          const std::array<Var, 2> parts{t.linear(v[0], v[1], Var{}), t.celu(t.linear(v[0], again, Var{}))};
          return probe(t, t.concat(parts), c8);
        },
        {&in, &w});

  // a weighted multi-term total, as the controller builds it: sum_k scale(term_k, w_k)
  P dec = param(4, 3, 229), enc = param(3, 4, 230);
  static const std::int64_t labels[5] = {2, 0, 1, 2, 0};
  const Tensor<double> c53 = uniform(5, 3, 231);
  check("weighted total: 0.7 mse + 0.2 sorted mse - 0.5 nll  [x, enc, dec]",
        [&](Tape<double>& t, std::span<const Var> v) {
          Var z = t.linear(v[0], v[1], Var{});  // 5 x 3 latent
          Var xr = t.linear(t.celu(z), v[2], Var{});
          Var rec = t.scale(t.mse(xr, v[0]), 0.7);
          Var sorted = t.scale(t.mse(t.sort_cols(z), t.constant(c53.ref())), 0.2);
          Var head = t.scale(t.nll(t.log_softmax(z), labels), -0.5);
          return t.add(t.add(rec, sorted), head);
        },
        {&in, &enc, &dec});
}

TEST_CASE("gradcheck: every rule's accumulate branch (input gradient already written)", "[autograd]") {
  // Backward runs in reverse creation order, so a use created FIRST is processed LAST and must
  // add to the gradient that the later use (celu, below) already wrote.
  P x = param(5, 4, 241, 0.05, 1.5);
  const Tensor<double> c = uniform(5, 4, 242), d = uniform(5, 4, 243), c3 = uniform(5, 3, 244),
                       prior = uniform(7, 4, 245), wt = uniform(4, 3, 246), w = uniform(3, 4, 247),
                       c5 = uniform(5, 5, 249), y01 = uniform(5, 4, 250, 0.0, 1.0), c1 = uniform(5, 1, 251),
                       pos = uniform(5, 4, 252, 0.5, 1.5);
  Tensor<double> mask(5, 4), away(5, 4);
  sakura::Rng rng(248);
  for (Index i = 0; i < mask.size(); ++i) {
    mask[i] = rng.uniform() < 0.3 ? 0.0 : 1.0 / 0.7;
    away[i] = x.value[i] + (rng.uniform() < 0.5 ? -1 : 1) * rng.uniform(0.1, 0.5);  // L1 away from its kink
  }
  static const std::int64_t labels[5] = {3, 1, 0, 2, 2};
  using Use = std::function<Var(Tape<double>&, Var)>;
  const std::vector<std::pair<std::string, Use>> uses = {
      {"linear (dx)", [&](Tape<double>& t, Var v) { return probe(t, t.linear(v, t.constant(w.ref()), Var{}), c3); }},
      {"linear transposed (dx)",
       [&](Tape<double>& t, Var v) { return probe(t, t.linear(v, t.constant(wt.ref()), Var{}, true), c3); }},
      {"celu", [&](Tape<double>& t, Var v) { return probe(t, t.celu(v), c); }},
      {"relu", [&](Tape<double>& t, Var v) { return probe(t, t.relu(v), c); }},
      {"sigmoid", [&](Tape<double>& t, Var v) { return probe(t, t.sigmoid(v), c); }},
      {"softmax", [&](Tape<double>& t, Var v) { return probe(t, t.softmax(v), c); }},
      {"log_softmax", [&](Tape<double>& t, Var v) { return probe(t, t.log_softmax(v), c); }},
      {"dropout", [&](Tape<double>& t, Var v) { return probe(t, t.dropout(v, t.constant(mask.ref())), c); }},
      {"concat", [&](Tape<double>& t, Var v) {
         const std::array<Var, 2> parts{t.slice_cols(v, 0, 1), v};
         return probe(t, t.concat(parts), c5);
       }},
      {"slice_cols", [&](Tape<double>& t, Var v) { return probe(t, t.slice_cols(v, 1, 3), c3); }},
      {"reverse_grad twice (identity gradient)",
       [&](Tape<double>& t, Var v) { return probe(t, t.reverse_grad(t.reverse_grad(v)), c); }},
      {"sort_cols", [&](Tape<double>& t, Var v) { return probe(t, t.sort_cols(v), c); }},
      {"mse (a side)", [&](Tape<double>& t, Var v) { return t.mse(v, t.constant(c.ref())); }},
      {"mse (b side)", [&](Tape<double>& t, Var v) { return t.mse(t.constant(c.ref()), v); }},
      {"l1 (a side)", [&](Tape<double>& t, Var v) { return t.l1(v, t.constant(away.ref())); }},
      {"l1 (b side)", [&](Tape<double>& t, Var v) { return t.l1(t.constant(away.ref()), v); }},
      {"cosine (a side)", [&](Tape<double>& t, Var v) { return t.cosine(v, t.constant(c.ref())); }},
      {"cosine (b side)", [&](Tape<double>& t, Var v) { return t.cosine(t.constant(c.ref()), v); }},
      {"row_norm_mean 1", [&](Tape<double>& t, Var v) { return t.row_norm_mean(v, 1); }},
      {"row_norm_mean 2", [&](Tape<double>& t, Var v) { return t.row_norm_mean(v, 2); }},
      {"nll", [&](Tape<double>& t, Var v) { return t.nll(v, labels); }},
      {"bce (p also used by a later mse)", [&](Tape<double>& t, Var v) {
         Var p = t.sigmoid(v);
         Var b = t.bce(p, t.constant(y01.ref()));  // first: accumulates into dp
         return t.add(b, t.mse(p, t.constant(c.ref())));
       }},
      {"kl_gauss", [&](Tape<double>& t, Var v) { return t.kl_gauss(v, t.constant(prior.ref())); }},
      {"abs", [&](Tape<double>& t, Var v) { return probe(t, t.abs(v), c); }},
      {"square", [&](Tape<double>& t, Var v) { return probe(t, t.square(v), c); }},
      {"sqrt", [&](Tape<double>& t, Var v) { return probe(t, t.sqrt(t.abs(v)), c); }},
      {"exp", [&](Tape<double>& t, Var v) { return probe(t, t.exp(v), c); }},
      {"log1p", [&](Tape<double>& t, Var v) { return probe(t, t.log1p(t.abs(v)), c); }},
      {"affine", [&](Tape<double>& t, Var v) { return probe(t, t.affine(v, 0.6, -0.2), c); }},
      {"clamp_min", [&](Tape<double>& t, Var v) { return probe(t, t.clamp_min(v, 0.0), c); }},
      {"add (a side)", [&](Tape<double>& t, Var v) { return probe(t, t.add(v, t.constant(d.ref())), c); }},
      {"sub (b side)", [&](Tape<double>& t, Var v) { return probe(t, t.sub(t.constant(d.ref()), v), c); }},
      {"mul (both sides)", [&](Tape<double>& t, Var v) { return probe(t, t.mul(v, t.celu(v)), c); }},
      {"div (a side)", [&](Tape<double>& t, Var v) { return probe(t, t.div(v, t.constant(pos.ref())), c); }},
      {"div (b side)", [&](Tape<double>& t, Var v) {
         return probe(t, t.div(t.constant(d.ref()), t.affine(t.abs(v), 1.0, 0.5)), c);
       }},
      {"where (both sides)", [&](Tape<double>& t, Var v) {
         return probe(t, t.where(t.constant(mask.ref()), v, t.celu(v)), c);
       }},
      {"mean", [&](Tape<double>& t, Var v) { return t.mean(t.celu(v)); }},
      {"row_sum", [&](Tape<double>& t, Var v) { return probe(t, t.row_sum(v), c1); }},
      {"scale (one scalar scaled twice)", [&](Tape<double>& t, Var v) {
         Var s = probe(t, t.celu(v), c);
         Var a = t.scale(s, 0.3);  // created first: accumulates into ds
         Var b = t.scale(s, -1.7);
         return t.add(a, b);
       }},
  };
  for (const auto& [name, use] : uses) {
    check("accumulate: " + name,
          [&](Tape<double>& t, std::span<const Var> v) {
            Var first = use(t, v[0]);                // processed last: accumulates
            Var second = probe(t, t.celu(v[0]), d);  // processed first: overwrites
            return t.add(first, second);
          },
          {&x});
  }
}

// ====================================================================== term types

namespace {

/// Terms whose prediction must be a probability (fed sigmoid(x) only).
template <class L>
constexpr bool wants_probability = std::is_same_v<L, sakura::Bce>;

/// A loss's options for the checks: the defaults, but SmoothL1's beta inside the checks' range of
/// |pred - target| (0.1 to 0.5), so that both of its branches are checked.
template <class L>
typename L::Options loss_options() {
  typename L::Options o{};
  if constexpr (requires { o.beta; }) o.beta = 0.3;
  return o;
}

template <class L, sakura::Evaluation E>
void check_loss_term(bool squash) {
  const std::string name = std::string(L::names[0]) + (E == sakura::Evaluation::Generic ? " (generic)" : "");
  const typename L::Options opt = loss_options<L>();
  P x = param(5, 4, 301, 0.05, 2.0);
  static const std::int64_t labels[5] = {1, 0, 3, 2, 1};
  // target away from the prediction (|pred - target| >= 0.1) and, for probabilities, in [0, 1]
  Tensor<double> target(5, 4);
  sakura::Rng rng(302);
  for (Index i = 0; i < x.value.size(); ++i) {
    const double p = squash ? 1.0 / (1.0 + std::exp(-x.value[i])) : x.value[i];
    const double mid = squash ? 0.5 : 0.0;
    target[i] = p + (p < mid ? 1.0 : -1.0) * rng.uniform(0.1, squash ? 0.1 + 0.8 * std::abs(p - mid) : 0.5);
  }
  const Fn f = [&](Tape<double>& t, std::span<const Var> v) {
    sakura::LossArgs<double> a{t, squash ? t.sigmoid(v[0]) : v[0],
                               L::needs_target ? t.constant(target.ref()) : Var{},
                               L::needs_labels ? labels : nullptr};
    return L::template apply<E>(a, opt);
  };
  check("loss " + name + (squash ? " (pred = sigmoid(x))" : " (pred = x)"), f, {&x});
}

template <class R>
typename R::Options reg_options(Index latent, int n_labels) {
  typename R::Options o{};
  if constexpr (requires { o.projections; }) o.projections = 8;
  if constexpr (requires { o.n_labels; }) o.n_labels = n_labels;
  if constexpr (requires { o.offsets; }) {
    o.offsets.assign(static_cast<std::size_t>(n_labels), std::vector<double>(static_cast<std::size_t>(latent)));
    for (int k = 0; k < n_labels; ++k)
      for (Index c = 0; c < latent; ++c) o.offsets[k][c] = 0.7 * k - 0.3 * double(c);
  }
  return o;
}
template <class R>
bool reg_valid(const typename R::Options& o, Index latent, bool has_labels) {
  if constexpr (requires { R::invalid(o, sakura::RegContext{}); })
    return R::invalid(o, sakura::RegContext{latent, has_labels}) == nullptr;
  else
    return true;
}

template <class R>
void check_regularizer_term(bool with_labels) {
  const std::string name(R::names[0]);
  constexpr int n_labels = 3;
  // the first latent width the term accepts (SW2_ring2d needs 2)
  Index latent = 0;
  for (Index L : {4, 2, 3, 1})
    if (reg_valid<R>(reg_options<R>(L, n_labels), L, with_labels)) {
      latent = L;
      break;
    }
  INFO(name << ": no latent width in {4, 2, 3, 1} is valid");
  REQUIRE(latent > 0);
  const typename R::Options opt = reg_options<R>(latent, n_labels);
  P z = param(6, latent, 401, 0.05, 1.5);
  static const std::int64_t labels[6] = {0, 2, 1, 1, 0, 2};
  const std::string site = "main_latent.regularization.gradcheck";
  // every evaluation draws the same prior samples and projections: a fresh generator, same seed
  const Fn f = [&](Tape<double>& t, std::span<const Var> v) {
    sakura::Rng rng(403);
    sakura::DrawSource draws{&rng, nullptr};
    sakura::RegArgs<double> a{t, v[0], with_labels ? labels : nullptr, draws, site};
    return R::apply(a, opt);
  };
  check("regularizer " + name + " (latent " + std::to_string(latent) + (with_labels ? ", labels)" : ")"), f, {&z});
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("gradcheck: every registered loss term", "[autograd][terms]", sakura::LossTypes) {
  using L = TestType;
  static_assert(sakura::LossFn<L, double>);
  // as the step runs it (fused primitives where the formula has one), and primitive by primitive
  for (bool squash : {false, true}) {
    if (!squash && wants_probability<L>) continue;
    check_loss_term<L, sakura::Evaluation::Fused>(squash);
    check_loss_term<L, sakura::Evaluation::Generic>(squash);
  }
}

TEMPLATE_LIST_TEST_CASE("gradcheck: every registered regularizer term", "[autograd][terms]",
                        sakura::RegularizerTypes) {
  using R = TestType;
  static_assert(sakura::RegularizerFn<R, double>);
  constexpr sakura::LabelUse use = sakura::label_use_of<R>();
  if (use != sakura::LabelUse::Required) check_regularizer_term<R>(false);
  if (use != sakura::LabelUse::None) check_regularizer_term<R>(true);
}

// ====================================================================== float32 sanity

TEST_CASE("float tape matches the double tape on a small MLP (linear-celu-linear + mse)", "[autograd]") {
  // float values first, so both tapes see exactly the same inputs
  auto make = [](Index r, Index c, std::uint64_t seed) {
    Parameter<float> pf(tagged("f", seed), "test", "", r, c);
    Parameter<double> pd(tagged("d", seed), "test", "", r, c);
    sakura::Rng rng(seed);
    for (Index i = 0; i < pf.value.size(); ++i) {
      pf.value[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
      pd.value[i] = pf.value[i];
    }
    return std::pair{std::move(pf), std::move(pd)};
  };
  auto [w1f, w1d] = make(6, 5, 501);
  auto [b1f, b1d] = make(1, 6, 502);
  auto [w2f, w2d] = make(3, 6, 503);
  auto [b2f, b2d] = make(1, 3, 504);
  auto [xf, xd] = make(8, 5, 505);
  auto [yf, yd] = make(8, 3, 506);

  auto run = [](auto& t, auto& w1, auto& b1, auto& w2, auto& b2, auto& x, auto& y) {
    t.reset();
    Var h = t.celu(t.linear(t.constant(x.value.ref()), t.param(w1), t.param(b1)));
    Var out = t.linear(h, t.param(w2), t.param(b2));
    Var loss = t.mse(out, t.constant(y.value.ref()));
    t.backward(loss);
    return static_cast<double>(t.scalar(loss));
  };
  Tape<float> tf;
  Tape<double> td;
  const double lf = run(tf, w1f, b1f, w2f, b2f, xf, yf);
  const double ld = run(td, w1d, b1d, w2d, b2d, xd, yd);
  CHECK(std::abs(lf - ld) <= 1e-4 * std::max(std::abs(ld), kFloor));

  double worst = 0;
  auto compare = [&](const Parameter<float>& pf, const Parameter<double>& pd) {
    REQUIRE(pf.written);
    REQUIRE(pd.written);
    for (Index i = 0; i < pd.grad.size(); ++i) {
      const double a = pf.grad[i], b = pd.grad[i];
      worst = std::max(worst, std::abs(a - b) / std::max({std::abs(a), std::abs(b), kFloor}));
    }
  };
  compare(w1f, w1d);
  compare(b1f, b1d);
  compare(w2f, w2d);
  compare(b2f, b2d);
  std::printf("float32 vs float64 MLP gradients (linear-celu-linear + mse)             worst rel err %.3e\n", worst);
  INFO("float vs double: worst relative gradient difference " << worst);
  REQUIRE(worst <= 1e-4);
}
