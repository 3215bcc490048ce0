// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// After the first step, train() allocates nothing: counted with a replaced global operator new,
// on the runtime (JSON) path, the compile-time path, with sparse input, with eval(), and with losses
// evaluated primitive by primitive.
#include <catch2/catch.hpp>

#include "support/counting_new.hpp"
#include "support/fixtures.hpp"

using namespace sakura;
using namespace sakura::test;

namespace {
/// Allocations made by `steps` calls of f after two warm-up calls.
template <class F>
long steady_allocations(F&& f, int steps = 5) {
  f();
  f();
  const CountedAllocations counted;
  for (int i = 0; i < steps; ++i) f();
  return counted.count();
}
}  // namespace

TEST_CASE("the steady-state step allocates nothing", "[alloc]") {
  Controller<float> ctl(spec_of(base_config(), base_pheno(), base_signature()));
  const auto batch = base_batch();
  const auto sel = config::selection_from_json(ctl.model_spec(), BlockKind::Signature,
                                           Json::parse(R"({"a": {"loss": "*", "regularization": "*"}})"), "sel");
  TrainOptions signature_only;
  signature_only.scope.reconstruction = signature_only.scope.main_regularization = false;
  signature_only.scope.phenos = Selection::none();
  signature_only.scope.signatures = sel;
  TrainOptions raw;
  raw.step.save_raw_loss = true;

  CHECK(steady_allocations([&] { ctl.train(batch); }) == 0);
  CHECK(steady_allocations([&] { ctl.train(batch, raw); }) == 0);
  CHECK(steady_allocations([&] { ctl.train(batch, signature_only); }) == 0);
  // interleaved selections, as the tutorial's hybrid story runs them
  CHECK(steady_allocations([&] {
          ctl.train(batch);
          ctl.train(batch, signature_only);
        }) == 0);
  CHECK(steady_allocations([&] { ctl.train<Fixture, All>(batch); }) == 0);
  CHECK(steady_allocations([&] {
          ctl.train<Fixture, MainOnly>(batch);
          ctl.train<Fixture, SignatureOnly<"a">>(batch);
        }) == 0);
  CHECK(steady_allocations([&] { ctl.eval(batch); }) == 0);
  CHECK(steady_allocations([&] { ctl.next_epoch(); }) == 0);
}

TEST_CASE("the steady-state step with sparse input allocates nothing", "[alloc][sparse]") {
  auto spec = spec_of(base_config(), base_pheno(), base_signature());
  spec.model.first_layer_input_major = true;
  Controller<float> ctl(std::move(spec));
  auto batch = base_batch();
  batch.set_sparse(CsrMatrix<float>::from_dense(batch.expr));
  batch.expr = Tensor<float>();
  CHECK(steady_allocations([&] { ctl.train(batch); }) == 0);
  CHECK(steady_allocations([&] { ctl.train<Fixture, All>(batch); }) == 0);
}

TEST_CASE("the steady-state step with formula-only losses allocates nothing", "[alloc][losses]") {
  // SmoothL1 and LogCosh run primitive by primitive: their intermediates come from the arena too
  Json config = base_config(), signatures = base_signature();
  config["main_latent"]["loss"] = {{"huber", term("SmoothL1", 1.0, {{"beta", 0.5}})}, {"logcosh", term("LogCosh")}};
  signatures["a"]["loss"]["logcosh"] = term("LogCosh");
  Controller<float> ctl(spec_of(config, base_pheno(), signatures));
  const auto batch = base_batch();
  CHECK(steady_allocations([&] { ctl.train(batch); }) == 0);
  CHECK(steady_allocations([&] { ctl.eval(batch); }) == 0);
}
