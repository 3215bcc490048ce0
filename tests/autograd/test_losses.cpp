// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Loss formulas (autograd/expr.hpp): the tape's fused primitives give the values and gradients of
// the formulas they stand for, and the formulas evaluated primitive by primitive agree with them.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <type_traits>
#include <vector>

#include "sakura/autograd/expr.hpp"
#include "sakura/losses/registry.hpp"
#include "sakura/nn/parameter.hpp"
#include "sakura/tensor/rng.hpp"
#include "support/fixtures.hpp"

using sakura::Evaluation;
using sakura::Index;
using sakura::Parameter;
using sakura::Tape;
using sakura::Var;

namespace {

/// A loss's value and the gradients of its prediction and target, with the number of tape nodes.
template <class T>
struct Run {
  double value = 0;
  std::vector<T> grad_pred, grad_target;
  std::size_t nodes = 0;
};

template <class L, Evaluation E, class T>
Run<T> run(Parameter<T>& pred, Parameter<T>& target) {
  Tape<T> t;
  sakura::LossArgs<T> a{t, t.param(pred), L::needs_target ? t.param(target) : Var{}, nullptr};
  Var y = L::template apply<E>(a, typename L::Options{});
  pred.written = target.written = false;
  t.backward(y);
  REQUIRE(pred.written);
  REQUIRE(target.written == L::needs_target);
  Run<T> r{static_cast<double>(t.scalar(y)), std::vector<T>(pred.grad.begin(), pred.grad.end()), {}, t.node_count()};
  if (L::needs_target) r.grad_target.assign(target.grad.begin(), target.grad.end());
  return r;
}

/// max |a - b| over max |b|: the error relative to the gradient's scale.
template <class T>
double rel_to_max(const std::vector<T>& a, const std::vector<T>& b) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / std::max(scale, 1e-300);
}

template <class T>
Parameter<T> uniform_param(const char* name, Index r, Index c, std::uint64_t seed, double lo, double hi) {
  Parameter<T> p(name, "test", "", r, c);
  sakura::Rng rng(seed);
  for (auto& v : p.value) v = static_cast<T>(rng.uniform(lo, hi));
  return p;
}

}  // namespace

// The registered MSE, L1 and Cosine (and the row norms) are formulas; the step runs them through
// the tape's fused kernels. Evaluated primitive by primitive, each agrees with its kernel within
// 1e-6 relative (value; gradients of both operands against the gradient's largest entry).
TEMPLATE_TEST_CASE("fused losses equal their formulas evaluated primitive by primitive", "[autograd][losses]", float,
                   double) {
  using T = TestType;
  auto compare = [](auto tag, const char* name) {
    using L = decltype(tag);
    for (const auto& [rows, cols] : {std::pair<Index, Index>{5, 4}, {37, 53}, {90, 500}}) {
      CAPTURE(name, rows, cols);
      // reconstruction-like: a prediction in (0, 2) and a target with a third of its entries 0
      Parameter<T> pred = uniform_param<T>("pred", rows, cols, 11 + rows, 0.0, 2.0);
      Parameter<T> target = uniform_param<T>("target", rows, cols, 12 + rows, 0.0, 2.0);
      sakura::Rng rng(13);
      for (auto& v : target.value)
        if (rng.uniform() < 0.3) v = T(0);
      const Run<T> fused = run<L, Evaluation::Fused>(pred, target);
      const Run<T> generic = run<L, Evaluation::Generic>(pred, target);
      CHECK(fused.nodes == 1);  // one fused primitive
      CHECK(generic.nodes > 1);
      const double ev = std::abs(generic.value - fused.value) / std::abs(fused.value);
      const double ep = rel_to_max(generic.grad_pred, fused.grad_pred);
      const double et = rel_to_max(generic.grad_target, fused.grad_target);
      std::printf("%-8s %-6s %3lld x %3lld: relative difference value %.1e, d pred %.1e, d target %.1e\n", name,
                  sizeof(T) == 4 ? "float" : "double", static_cast<long long>(rows), static_cast<long long>(cols), ev,
                  ep, et);
      CHECK(ev <= 1e-6);
      CHECK(ep <= 1e-6);
      CHECK(et <= 1e-6);
    }
  };
  compare(sakura::Mse{}, "MSE");
  compare(sakura::L1{}, "L1");
  compare(sakura::Cosine{}, "Cosine");
  compare(sakura::L1Norm{}, "L1_norm");
  compare(sakura::L2Norm{}, "L2_norm");
}
