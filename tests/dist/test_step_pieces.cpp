// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The pieces of the distributed step that one process can check (no MPI needed): a dropout mask
// drawn for some rows of a global batch is those rows of the single-process mask; masks reserved
// ahead (heads after the gather) are the ones forward() would reserve; gathered_rows gives its
// input that input's rows of the gradient.
#include <catch2/catch.hpp>

#include <algorithm>

#include "support/fixtures.hpp"
#include "support/golden.hpp"

using namespace sakura;

namespace {

/// Linear(3 -> 7), dropout 0.4, Linear(7 -> 5), dropout 0.3: a head-like stack.
struct Stack {
  ParameterStore<float> store;
  Sequential<float> seq{"m", "m", ""};
  Stack() {
    seq.linear(store, 3, 7).dropout(0.4).linear(store, 7, 5).dropout(0.3);
    Rng init(1);
    init_linear_default(seq, init);
  }
};

Tensor<float> copy(MatrixRef<const float> m) {
  Tensor<float> t(m.rows, m.cols);
  std::copy_n(m.data, m.rows * m.cols, t.data());
  return t;
}

}  // namespace

TEST_CASE("distributed pieces: a rank's rows of a dropout mask are the single-process mask's rows",
          "[dist][draws]") {
  const Index B = 11;
  const Tensor<float> x = test::random_tensor<float>(B, 3, 5);
  Stack s;
  Rng one(9);
  Tape<float> t;
  ForwardContext<float> ctx{true, &one};
  const Tensor<float> full = copy(t.data(s.seq.forward(t, t.constant(x), ctx)));
  for (auto [first, count] : {std::pair<Index, Index>{0, 4}, {4, 4}, {8, 3}, {11, 0}}) {
    Rng r(9);
    Tape<float> u;
    ForwardContext<float> local{true, &r, first, B};
    const Tensor<float> mine = test::rows_of(Batch<float>(x), first, count).expr;
    Var y = u.constant(count ? mine.ref() : MatrixRef<const float>(x.data(), 0, 3));
    const Tensor<float> part = copy(u.data(s.seq.forward(u, y, local)));
    INFO("rows " << first << " + " << count);
    REQUIRE(part.rows() == count);
    CHECK(std::equal(part.begin(), part.end(), full.data() + first * full.cols()));
    CHECK(r.state() == one.state());  // the global shape was reserved
  }
}

TEST_CASE("distributed pieces: masks reserved ahead are the ones forward() reserves", "[dist][draws]") {
  const Index B = 6;
  const Tensor<float> x = test::random_tensor<float>(B, 3, 6);
  Stack s;
  Rng a(4), b(4);
  Tape<float> t;
  ForwardContext<float> direct{true, &a};
  const Tensor<float> expected = copy(t.data(s.seq.forward(t, t.constant(x), direct)));
  ReservedMasks queue;
  s.seq.reserve_masks(B, 3, b, queue);
  CHECK(queue.size() == 2);
  CHECK(b.state() == a.state());
  Rng unused(123);
  ForwardContext<float> later{true, &unused, 0, -1, &queue};
  Tape<float> u;
  const Tensor<float> got = copy(u.data(s.seq.forward(u, u.constant(x), later)));
  CHECK(queue.empty());
  CHECK(std::equal(got.begin(), got.end(), expected.begin()));
  CHECK(unused.state() == Rng(123).state());  // nothing reserved twice
}

TEST_CASE("distributed pieces: gathered_rows passes its input that input's rows of the gradient", "[dist][tape]") {
  const Index B = 7, first = 2, n = 3;
  Parameter<double> p("p", "m", "", n, 4);
  const Tensor<double> all = test::random_tensor<double>(B, 4, 8, -1, 1);
  for (Index r = 0; r < n; ++r)
    for (Index c = 0; c < 4; ++c) p.value(r, c) = all(first + r, c);
  const Tensor<double> w = test::random_tensor<double>(B, 4, 9, -1, 1);
  Tape<double> t;
  Var g = t.gathered_rows(t.param(p), first, B, [&](MatrixRef<double> m) { std::copy_n(all.data(), B * 4, m.data); });
  t.backward(t.mean(t.mul(t.square(g), t.constant(w))));  // d/dg = 2 g w / (B * 4)
  for (Index r = 0; r < n; ++r)
    for (Index c = 0; c < 4; ++c) CHECK(p.grad(r, c) == Approx(2 * all(first + r, c) * w(first + r, c) / (B * 4)));
}

TEST_CASE("distributed pieces: backward reports each parameter once, when its gradient is complete",
          "[dist][tape][overlap]") {
  // the overlapped gradient sum starts a parameter's sum from this hook, so at the call its
  // gradient must already be the final one: a layer read twice (w2), a bias whose gradient the
  // reconstruction's fused MSE + L1 rule writes early (b2), and a leaf no node reads (unused)
  Parameter<double> w1("w1", "m", "", 6, 3), b1("b1", "m", "", 1, 6), w2("w2", "m", "", 4, 6),
      b2("b2", "m", "", 1, 4), unused("u", "m", "", 2, 2);
  for (Parameter<double>* p : {&w1, &b1, &w2, &b2, &unused})
    p->value = test::random_tensor<double>(p->value.rows(), p->value.cols(), 11 + p->name.size() + p->value.size(), -1, 1);
  const Tensor<double> x = test::random_tensor<double>(5, 3, 2, -1, 1), target = test::random_tensor<double>(5, 4, 3, -1, 1);
  Tape<double> t;
  const Var h = t.linear(t.constant(x), t.param(w1), t.param(b1), false, true);
  const Var y = t.linear(h, t.param(w2), t.param(b2), false, true);
  const Var again = t.linear(h, t.param(w2), Var{}, false, false);  // w2's second use
  (void)t.param(unused);
  const Var loss = t.add(t.add(t.mse(y, t.constant(target)), t.l1(y, t.constant(target))), t.mean(t.square(again)));
  std::vector<std::pair<const Parameter<double>*, Tensor<double>>> seen;
  t.backward(loss, [&](Parameter<double>& p) { seen.push_back({&p, p.grad}); });
  REQUIRE(seen.size() == 5);
  for (const auto& [p, grad_then] : seen) {
    INFO(p->name);
    CHECK(std::count_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == p; }) == 1);
    CHECK(std::equal(grad_then.begin(), grad_then.end(), p->grad.begin(), p->grad.end()));  // nothing added after
  }
  // the last layer's parameters are complete before the first layer's
  auto at = [&](const Parameter<double>& p) {
    return std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == &p; }) - seen.begin();
  };
  CHECK(at(w2) < at(w1));
  CHECK(at(b2) < at(b1));
  CHECK(w1.written);
  CHECK(!unused.written);
}
