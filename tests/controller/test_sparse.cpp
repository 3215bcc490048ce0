// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Sparse (CSR) input: the first layer's sparse products give the dense path's records,
// gradients and parameters within float tolerance, in both weight layouts.
#include <catch2/catch.hpp>

#include <cmath>

#include "support/fixtures.hpp"
#include "support/threads.hpp"

using namespace sakura;
using namespace sakura::test;

namespace {

/// A batch with ~90% zeros, as dense and as CSR (without the dense copy).
std::pair<Batch<float>, Batch<float>> batches(std::uint64_t seed) {
  Batch<float> dense = base_batch(seed);
  Rng rng(seed);
  for (auto& v : dense.expr)
    if (rng.uniform() < 0.8) v = 0.0f;
  Batch<float> sparse = dense;
  sparse.set_sparse(CsrMatrix<float>::from_dense(dense.expr));
  sparse.expr = Tensor<float>();
  return {dense, sparse};
}

void compare(Controller<float>& a, Controller<float>& b, double rel) {
  auto& pa = a.model().parameters().all();
  auto& pb = b.model().parameters().all();
  for (std::size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].name);
    REQUIRE(pa[i].has_grad == pb[i].has_grad);
    for (Index r = 0; r < pa[i].torch_rows(); ++r)
      for (Index c = 0; c < pa[i].torch_cols(); ++c) {
        REQUIRE(pa[i].torch_at(r, c) == Approx(pb[i].torch_at(r, c)).epsilon(rel).margin(1e-6));
        REQUIRE(pa[i].torch_grad_at(r, c) == Approx(pb[i].torch_grad_at(r, c)).epsilon(rel).margin(1e-6));
      }
  }
}

}  // namespace

TEST_CASE("sparse input equals dense input within float tolerance, in both weight layouts", "[sparse]") {
  for (bool input_major : {false, true}) {
    INFO("first layer input-major: " << input_major);
    auto dense_spec = spec_of(base_config(), base_pheno(), base_signature());
    auto sparse_spec = dense_spec;
    sparse_spec.model.first_layer_input_major = input_major;
    Controller<float> d(std::move(dense_spec)), s(std::move(sparse_spec));
    // same initial parameters, whatever the storage
    auto& pd = d.model().parameters().all();
    auto& ps = s.model().parameters().all();
    for (std::size_t i = 0; i < pd.size(); ++i)
      for (Index r = 0; r < pd[i].torch_rows(); ++r)
        for (Index c = 0; c < pd[i].torch_cols(); ++c) ps[i].torch_at(r, c) = pd[i].torch_at(r, c);
    REQUIRE(ps.front().transposed == input_major);
    for (int step = 0; step < 4; ++step) {
      auto [db, sb] = batches(50 + step);
      const double td = d.train(db).total, ts = s.train(sb).total;
      CHECK(ts == Approx(td).epsilon(1e-5));
      compare(d, s, 1e-4);
    }
    // a batch with both: the dense copy is the reconstruction target, the CSR feeds layer one
    auto [db, sb] = batches(99);
    sb.expr = db.expr;
    TrainOptions o;
    o.step.suppress_backward = true;
    const auto state = d.rng().state();
    s.rng().set_state(state);
    CHECK(s.train(sb, o).total == Approx(d.train(db, o).total).epsilon(1e-5));
  }
}

TEST_CASE("sparse input is validated like dense input", "[sparse][errors]") {
  Controller<float> c(spec_of(base_config(), base_pheno(), base_signature()));
  auto [db, sb] = batches(3);
  auto bad = sb;
  bad.sparse().values[0] = std::numeric_limits<float>::quiet_NaN();
  REQUIRE_THROWS_WITH(c.train(bad), Catch::Contains("batch sparse expression contains NaN"));
  auto wide = sb;
  wide.sparse().cols = kGenes + 2;
  REQUIRE_THROWS_WITH(c.train(wide), Catch::Contains("[8, 14]"));
  auto unsorted = sb;
  std::swap(unsorted.sparse().indices[0], unsorted.sparse().indices[1]);
  REQUIRE_THROWS_WITH(c.train(unsorted), Catch::Contains("unsorted"));
}

TEST_CASE("csr_to_csc gives the same CSC on any thread count, empty rows and columns included", "[sparse]") {
  // Large enough (> 2^15 non-zeros) for the threaded path; every 7th row and 5th gene empty.
  Tensor<float> d(300, 2000);
  Rng rng(17);
  for (Index r = 0; r < d.rows(); ++r)
    for (Index c = 0; c < d.cols(); ++c)
      d(r, c) = (r % 7 != 3 && c % 5 != 1 && rng.uniform() < 0.1) ? float(rng.uniform(0.5, 3.0)) : 0.0f;
  const auto csr = CsrMatrix<float>::from_dense(d);
  REQUIRE(csr.nnz() > cpu::kParallelMinElems);  // csr_to_csc forks from there
  // reference: column by column, rows ascending
  std::vector<std::int64_t> ptr{0};
  std::vector<std::int32_t> rows;
  std::vector<float> vals;
  for (Index c = 0; c < d.cols(); ++c) {
    for (Index r = 0; r < d.rows(); ++r)
      if (d(r, c) != 0.0f) rows.push_back(std::int32_t(r)), vals.push_back(d(r, c));
    ptr.push_back(std::int64_t(rows.size()));
  }
  on_thread_counts([&](int threads) {
    CAPTURE(threads);
    std::vector<std::int64_t> colptr(d.cols() + 1, -1);
    std::vector<std::int32_t> rowidx(csr.nnz(), -1);
    std::vector<float> v(csr.nnz(), -1.0f);
    cpu::Csc<float> csc{d.rows(), d.cols(), colptr.data(), rowidx.data(), v.data()};
    cpu::csr_to_csc(csc, csr.ref());
    CHECK(colptr == ptr);
    CHECK(rowidx == rows);
    CHECK(v == vals);
  });
}

TEST_CASE("sparse first-layer kernels equal dense products at every tile width", "[sparse]") {
  // tile_width cuts rows into 64/72/80-wide register tiles or a scalar remainder: cover each
  const Index n = 37, in = 700;
  Tensor<float> x(n, in);
  Rng rng(23);
  for (auto& v : x) v = rng.uniform() < 0.15 ? float(rng.uniform(0.5, 3.0)) : 0.0f;
  const auto csr = CsrMatrix<float>::from_dense(x);
  std::vector<std::int64_t> colptr(in + 1);
  std::vector<std::int32_t> rowidx(csr.nnz());
  std::vector<float> vals(csr.nnz());
  cpu::Csc<float> csc{n, in, colptr.data(), rowidx.data(), vals.data()};
  cpu::csr_to_csc(csc, csr.ref());
  for (Index out : {5, 8, 64, 72, 80, 100, 136, 200, 210}) {
    CAPTURE(out);
    Tensor<float> w(in, out), dy(n, out);
    for (auto& v : w) v = float(rng.uniform(-1, 1));
    for (auto& v : dy) v = float(rng.uniform(-1, 1));
    Tensor<float> y(n, out), dw(in, out);
    cpu::csr_linear_fwd_inmajor(y.data(), csr.ref(), w.data(), out);  // y starts at 0
    cpu::csc_weight_grad_inmajor(dw.data(), csc, dy.data(), out, false);
    double worst = 0;
    for (Index r = 0; r < n; ++r)
      for (Index o = 0; o < out; ++o) {
        double ref = 0;
        for (Index g = 0; g < in; ++g) ref += double(x(r, g)) * w(g, o);
        worst = std::max(worst, std::abs(y(r, o) - ref) / std::max(1.0, std::abs(ref)));
      }
    for (Index g = 0; g < in; ++g)
      for (Index o = 0; o < out; ++o) {
        double ref = 0;
        for (Index r = 0; r < n; ++r) ref += double(x(r, g)) * dy(r, o);
        worst = std::max(worst, std::abs(dw(g, o) - ref) / std::max(1.0, std::abs(ref)));
      }
    CHECK(worst < 1e-5);
  }
}
