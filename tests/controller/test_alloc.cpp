// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// After the first step, train() allocates nothing: counted with a replaced global operator new,
// on the runtime (JSON) path, the compile-time path, with sparse input, with eval(), and with losses
// evaluated primitive by primitive.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <new>

#include "support/fixtures.hpp"

// GCC 12 inlines these replacements into library code and then reports free() on a pointer
// from operator new as a mismatch; here both sides are this file's malloc/free pair.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace {
std::atomic<long> g_allocations{0};
}

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::aligned_alloc(static_cast<std::size_t>(a), (n + static_cast<std::size_t>(a) - 1) &
                                                                     ~(static_cast<std::size_t>(a) - 1)))
    return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

using namespace sakura;
using namespace sakura::test;

namespace {
/// Allocations made by `steps` calls of f after two warm-up calls.
template <class F>
long steady_allocations(F&& f, int steps = 5) {
  f();
  f();
  const long before = g_allocations.load();
  for (int i = 0; i < steps; ++i) f();
  return g_allocations.load() - before;
}
}  // namespace

TEST_CASE("the steady-state step allocates nothing", "[alloc]") {
  Controller<float> ctl(spec_of(base_config(), base_pheno(), base_signature()));
  const auto batch = base_batch();
  const auto sel = io::selection_from_json(ctl.model_spec(), BlockKind::Signature,
                                           Json::parse(R"({"a": {"loss": "*", "regularization": "*"}})"), "sel");
  TrainOptions signature_only;
  signature_only.reconstruction = signature_only.main_regularization = signature_only.pheno = false;
  signature_only.selected_signature = &sel;
  TrainOptions raw;
  raw.save_raw_loss = true;

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
