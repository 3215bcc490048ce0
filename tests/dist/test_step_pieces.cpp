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
