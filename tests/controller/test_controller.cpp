// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Controller semantics beyond the golden cases: reproducibility, suppress_backward, eval,
// forward scope, frozen modules, dropout, schedules and reset.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "support/fixtures.hpp"

using namespace sakura;
using namespace sakura::test;

namespace {
std::vector<float> flat_params(Controller<float>& c) {
  std::vector<float> v;
  for (auto& p : c.model().parameters().all()) v.insert(v.end(), p.value.begin(), p.value.end());
  return v;
}
bool reached(Controller<float>& c, const std::string& module) {
  for (auto& p : c.model().parameters().all())
    if (p.module == module && p.has_grad) return true;
  return false;
}
}  // namespace

TEST_CASE("one seed gives one run, another seed another", "[controller][rng]") {
  auto run = [](std::uint64_t seed) {
    auto spec = spec_of(base_config(), base_pheno(), base_signature());
    spec.seed = seed;
    Controller<float> c(std::move(spec));
    for (int i = 0; i < 5; ++i) c.train(base_batch(10 + i));
    return flat_params(c);
  };
  const auto a = run(7), b = run(7), c = run(8);
  CHECK(a == b);
  CHECK(a != c);
}

TEST_CASE("suppress_backward returns the record and changes no parameter or optimizer state", "[controller]") {
  Controller<float> c(spec_of(base_config(), base_pheno(), base_signature()));
  c.train(base_batch());
  const auto before = flat_params(c);
  const auto sq = c.optimizer().state()[0].square_avg;
  TrainOptions o;
  o.step.suppress_backward = true;
  const double total = c.train(base_batch(2), o).total;
  CHECK(std::isfinite(total));
  CHECK(total > 0);
  CHECK(flat_params(c) == before);
  CHECK(std::equal(sq.begin(), sq.end(), c.optimizer().state()[0].square_avg.begin()));
}

TEST_CASE("eval computes the same losses as a train step would, without changing parameters", "[controller][eval]") {
  Controller<float> c(spec_of(base_config(), base_pheno(), base_signature()));
  const auto b = base_batch();
  const auto before = flat_params(c);
  const auto state = c.rng().state();
  const auto& e = c.eval(b);
  const double mse = e.main.loss.at("mse"), nll = e.pheno_block("p").loss.at("nll");
  CHECK(flat_params(c) == before);
  c.rng().set_state(state);  // same random draws for the SW2 term
  TrainOptions o;
  o.step.suppress_backward = true;
  const auto& t = c.train(b, o);
  CHECK(t.main.loss.at("mse") == mse);
  CHECK(t.pheno_block("p").loss.at("nll") == nll);
  // the forward tensors of eval are readable
  c.eval(b);
  CHECK(c.view(c.forward().main).rows == kCells);
  CHECK(c.view(c.forward().main).cols == 3);
  CHECK(c.view(c.forward().all).cols == 3 + 2 + 2);  // main + s + p (a is attached)
  CHECK(c.view(c.forward().recon).cols == kGenes);
}

TEST_CASE("forward scope: a signature-only call computes and trains only what it needs", "[controller][scope]") {
  Controller<float> c(spec_of(base_config(), base_pheno(), base_signature()));
  const auto sel = config::selection_from_json(c.model_spec(), BlockKind::Signature,
                                           Json::parse(R"({"a": {"loss": "*", "regularization": "*"}})"), "sel");
  TrainOptions o;
  o.scope.reconstruction = false;
  o.scope.main_regularization = false;
  o.scope.phenos = Selection::none();
  o.scope.signatures = sel;
  const auto& rec = c.train(base_batch(), o);
  CHECK(rec.signature_block("a").present);
  CHECK_FALSE(rec.signature_block("s").present);
  CHECK_FALSE(rec.pheno_block("p").present);
  CHECK(rec.main.loss.count() == 0);
  CHECK(reached(c, "signature_regressors"));
  CHECK(reached(c, "main_latent_compressor"));  // a reads the main latent
  CHECK_FALSE(reached(c, "decoder"));
  CHECK_FALSE(reached(c, "pheno_models"));
  CHECK_FALSE(reached(c, "signature_latent_compressors"));
  // the total is exactly the weighted sum of what was computed
  CHECK(rec.total == Approx(rec.signature_block("a").loss.at("mse") + rec.signature_block("a").loss.at("cos")));
}

TEST_CASE("optimizer excludes freeze a module", "[controller][optim]") {
  auto cfg = base_config();
  cfg["optimizer"]["excludes"] = Json::parse(R"([{"type": "decoder"}, {"type": "pheno_models", "name": "p"}])");
  Controller<float> c(spec_of(cfg, base_pheno(), base_signature()));
  auto snapshot = [&](const std::string& module) {
    std::vector<float> v;
    for (auto& p : c.model().parameters().all())
      if (p.module == module) v.insert(v.end(), p.value.begin(), p.value.end());
    return v;
  };
  const auto dec = snapshot("decoder"), ph = snapshot("pheno_models"), pre = snapshot("pre_encoder");
  for (int i = 0; i < 3; ++i) c.train(base_batch(i + 1));
  CHECK(snapshot("decoder") == dec);
  CHECK(snapshot("pheno_models") == ph);
  CHECK(snapshot("pre_encoder") != pre);
  cfg["optimizer"]["excludes"] = Json::parse(R"([{"type": "pheno_models", "name": "nope"}])");
  REQUIRE_THROWS_WITH(Controller<float>(spec_of(cfg, base_pheno(), base_signature())), Catch::Contains("nope"));
}

TEST_CASE("RMSProp stores subnormal square averages as 0 and steps parameters exactly as without", "[controller][optim]") {
  // A unit whose gradient stays 0 decays v = alpha^t v0 into the subnormal range, where every
  // x86 operation on it costs a microcode assist. The kernel keeps such v at 0; the reference
  // below (PyTorch's formula, no flush) shows the parameters do not change by a single bit.
  // lr, alpha and the gradients are powers of two, so every product is exact and the reference
  // rounds like the kernel whether or not the compiler contracts a*b+c into an FMA.
  const float alpha = 0.5f;
  const std::vector<float> hyper{-0x1p-10f, alpha, 1 - alpha, 1e-8f, 0.0f, 0.0f};
  REQUIRE(hyper.size() == kRmsHyper);
  const Index n = 40;
  std::vector<float> p(n), v(n), grad(n), ref_p(n), ref_v(n);
  for (Index i = 0; i < n; ++i) {
    p[i] = ref_p[i] = 0.01f * float(i + 1);
    v[i] = ref_v[i] = std::ldexp(1.0f, -100 - int(i));  // normal at first, subnormal on the way
  }
  for (int step = 0; step < 60; ++step) {
    for (Index i = 0; i < n; ++i) grad[i] = (step % 20 == 19 && i % 3 == 0) ? 0x1p-10f : 0.0f;  // revives some
    cpu::rmsprop_step<float>(p.data(), grad.data(), v.data(), nullptr, n, hyper.data());
    for (Index i = 0; i < n; ++i) {
      ref_v[i] = ref_v[i] * alpha + (1 - alpha) * grad[i] * grad[i];
      ref_p[i] = ref_p[i] + hyper[0] * (grad[i] / (std::sqrt(ref_v[i]) + hyper[3]));
    }
    for (Index i = 0; i < n; ++i) {
      CAPTURE(step, i, v[i], ref_v[i]);
      REQUIRE(std::fpclassify(v[i]) != FP_SUBNORMAL);
      REQUIRE(p[i] == ref_p[i]);                                   // bitwise
      REQUIRE((v[i] == ref_v[i] || (v[i] == 0.0f && ref_v[i] < std::numeric_limits<float>::min())));
    }
  }
  std::vector<float> nan_grad(n, std::numeric_limits<float>::quiet_NaN());
  cpu::rmsprop_step<float>(p.data(), nan_grad.data(), v.data(), nullptr, n, hyper.data());
  CHECK(std::isnan(v[0]));  // a NaN is not flushed away
}

TEST_CASE("dropout is active in train and off in eval", "[controller][dropout]") {
  auto cfg = base_config();
  cfg["pre_encoder_config"] = Json::parse(
      R"({"hidden_neurons": 8, "hidden_layers": 2, "dropout": "True", "dropout_input": "True", "dropout_input_p": 0.5})");
  Controller<float> c(spec_of(cfg, Json::object(), Json::object()));
  REQUIRE(c.model().pre_encoder().layers().front().kind == LayerKind::Dropout);
  // the Linear after the dropout layer is model_list.1, as in PyTorch
  REQUIRE(c.model().parameters().find("model.pre_encoder.model_list.1.weight") != nullptr);
  const auto b = base_batch();
  EvalOptions e;
  e.scope.main_regularization = false;
  const double e1 = c.eval(b, e).main.loss.at("mse"), e2 = c.eval(b, e).main.loss.at("mse");
  CHECK(e1 == e2);  // deterministic without dropout
  TrainOptions t;
  t.scope.main_regularization = false;
  t.step.suppress_backward = true;
  const double t1 = c.train(b, t).main.loss.at("mse"), t2 = c.train(b, t).main.loss.at("mse");
  CHECK(t1 != t2);  // fresh masks each call
}

TEST_CASE("next_epoch, tick and reset", "[controller][schedule]") {
  auto cfg = base_config();
  cfg["main_latent"]["regularization"]["sw2"]["progressive_const"] = 2.0;
  cfg["main_latent"]["regularization"]["sw2"]["max_weight"] = 0.5;
  Controller<float> c(spec_of(cfg, base_pheno(), base_signature()));
  c.next_epoch();
  c.next_epoch({.reconstruction = false, .main_regularization = false});
  c.tick();
  CHECK(c.epoch() == 2);
  CHECK(c.ticks() == 1);
  CHECK(c.term(BlockKind::Main, "", TermGroup::Regularization, "sw2").weight == 0.2);
  CHECK(c.term(BlockKind::Main, "", TermGroup::Regularization, "sw2").epoch == 1);
  CHECK(c.term(BlockKind::Pheno, "p", TermGroup::Loss, "nll").epoch == 2);
  // a scope advances what it names: the reconstruction losses without the main regularization,
  // no phenotype, and of the signatures only a's losses
  c.next_epoch({.main_regularization = false,
                .phenos = Selection::none(),
                .signatures = config::selection_from_json(c.model_spec(), BlockKind::Signature,
                                                          Json::parse(R"({"a": {"loss": "*"}})"), "sel")});
  CHECK(c.term(BlockKind::Main, "", TermGroup::Loss, "mse").epoch == 2);
  CHECK(c.term(BlockKind::Main, "", TermGroup::Regularization, "sw2").epoch == 1);
  CHECK(c.term(BlockKind::Pheno, "p", TermGroup::Loss, "nll").epoch == 2);
  CHECK(c.term(BlockKind::Signature, "a", TermGroup::Loss, "mse").epoch == 3);
  CHECK(c.term(BlockKind::Signature, "s", TermGroup::Loss, "mse").epoch == 2);
  for (int i = 0; i < 5; ++i) c.next_epoch();
  CHECK(c.term(BlockKind::Main, "", TermGroup::Regularization, "sw2").weight == 0.5);
  c.reset();
  CHECK(c.epoch() == 0);
  CHECK(c.term(BlockKind::Main, "", TermGroup::Regularization, "sw2").weight == 0.1);
  CHECK(c.term(BlockKind::Pheno, "p", TermGroup::Loss, "nll").epoch == 0);
}

TEST_CASE("the record exports as upstream's result dict", "[controller][record]") {
  Controller<float> c(spec_of(base_config(), base_pheno(), base_signature()));
  TrainOptions o;
  o.step.save_raw_loss = true;
  const auto j = config::to_json(c.train(base_batch(), o));
  CHECK(j["main_latent_loss"]["loss"].contains("mse"));
  CHECK(j["main_latent_loss"]["regularization_raw"].contains("sw2"));
  CHECK(j["pheno_loss"]["p"]["regularization"].contains("l2"));
  CHECK(j["signature_loss"]["a"]["loss"].contains("cos"));
  CHECK(j["total_loss_backwarded"].get<double>() > 0);
}

TEST_CASE("accumulate() sums the gradients of several batches into one step", "[controller][accumulate]") {
  auto cfg = base_config();
  cfg["optimizer"]["RMSProp_lr"] = 0.0;  // parameters stay put: each batch's gradient is observable
  Controller<float> sep(spec_of(cfg, base_pheno(), base_signature()));
  Controller<float> acc(spec_of(cfg, base_pheno(), base_signature()));
  const auto b1 = base_batch(1), b2 = base_batch(2);
  TrainOptions sig_only;
  sig_only.scope.reconstruction = sig_only.scope.main_regularization = false;
  sig_only.scope.phenos = Selection::none();
  // separate steps: g1, then g2
  std::vector<std::vector<float>> g1, g2;
  auto grads = [](Controller<float>& c) {
    std::vector<std::vector<float>> g;
    for (auto& p : c.model().parameters().all()) g.emplace_back(p.grad.begin(), p.grad.end());
    return g;
  };
  sep.train(b1);
  g1 = grads(sep);
  sep.train(b2, sig_only);
  g2 = grads(sep);
  // one summed step over the same batches and draws
  const double t1 = acc.accumulate(b1).total;
  const double t2 = acc.accumulate(b2, sig_only).total;
  CHECK(t1 > 0);
  CHECK(t2 > 0);
  const auto g = grads(acc);
  auto& params = acc.model().parameters().all();
  for (std::size_t i = 0; i < g.size(); ++i)
    for (std::size_t k = 0; k < g[i].size(); ++k) {
      INFO(params[i].name << "[" << k << "]");
      REQUIRE(g[i][k] == Approx(g1[i][k] + g2[i][k]).margin(1e-6));
    }
  acc.apply_accumulated();
  // with lr > 0: accumulate + apply on one batch is exactly train()
  Controller<float> a(spec_of(base_config(), base_pheno(), base_signature()));
  Controller<float> b(spec_of(base_config(), base_pheno(), base_signature()));
  for (int s = 0; s < 3; ++s) {
    a.train(b1);
    b.accumulate(b1);
    b.apply_accumulated();
  }
  CHECK(flat_params(a) == flat_params(b));
}

TEST_CASE("all five attachment modes read the right latent and train it", "[controller][attach]") {
  // a: signature_lat (reads s), b: pheno_lat (reads p), c: all_lat, d: multiple [main, s], e: main_lat,
  // f: signature_lat (reads a)
  Controller<float> ctl(spec_of(base_config(), attachment_phenos(), attachment_signatures()));
  CHECK(ctl.model().latent_width() == 3 + 2 + 2);  // main + s + p: attached blocks add nothing
  auto batch = base_batch();
  for (const char* n : {"a", "c", "d", "e", "f"}) batch.set_signature(n, random_tensor(kCells, 2, 7));
  batch.set_labels("b", batch.phenos()[0].labels);
  EvalOptions e;
  ctl.eval(batch, e);
  const auto& f = ctl.forward();
  auto same = [&](Var x, Var y) {
    auto a = ctl.view(x), b = ctl.view(y);
    return a.rows == b.rows && a.cols == b.cols && std::equal(a.data, a.data + a.size(), b.data);
  };
  const int s = ctl.model().find(BlockKind::Signature, "s"), a = ctl.model().find(BlockKind::Signature, "a"),
            c = ctl.model().find(BlockKind::Signature, "c"), d = ctl.model().find(BlockKind::Signature, "d"),
            ee = ctl.model().find(BlockKind::Signature, "e");
  const int p = ctl.model().find(BlockKind::Pheno, "p"), b = ctl.model().find(BlockKind::Pheno, "b");
  CHECK(same(f.sig_lat[a], f.sig_lat[s]));   // signature_lat
  CHECK(same(f.ph_lat[b], f.ph_lat[p]));     // pheno_lat
  CHECK(same(f.sig_lat[c], f.all));          // all_lat
  CHECK(same(f.sig_lat[ee], f.main));        // main_lat
  auto md = ctl.view(f.sig_lat[d]), mm = ctl.view(f.main), ms = ctl.view(f.sig_lat[s]);
  REQUIRE(md.cols == 5);                     // multiple: [main, s] side by side
  for (Index r = 0; r < kCells; ++r) {
    CHECK(md(r, 0) == mm(r, 0));
    CHECK(md(r, 4) == ms(r, 1));
  }
  // a step on d alone trains the main compressor and s's compressor through the attachment
  const auto only_d = config::selection_from_json(ctl.model_spec(), BlockKind::Signature,
                                              Json::parse(R"({"d": {"loss": "*"}})"), "sel");
  TrainOptions o;
  o.scope.reconstruction = o.scope.main_regularization = false;
  o.scope.phenos = Selection::none();
  o.scope.signatures = only_d;
  ctl.train(batch, o);
  CHECK(reached(ctl, "main_latent_compressor"));
  CHECK(reached(ctl, "signature_latent_compressors"));
  CHECK_FALSE(reached(ctl, "pheno_latent_compressors"));
  CHECK_FALSE(reached(ctl, "decoder"));
}

TEST_CASE("loss() is train()'s computation without backward or step", "[controller][loss]") {
  Controller<float> c(spec_of(base_config(), base_pheno(), base_signature()));
  const auto b = base_batch();
  const auto before = flat_params(c);
  const auto state = c.rng().state();
  TrainOptions o;
  o.step.save_raw_loss = true;
  o.step.detach = DetachFrom::Encoder;
  const LossRecord l = c.loss(b, o);
  CHECK(flat_params(c) == before);
  CHECK(c.view(c.forward().main).cols == 3);  // forward tensors readable
  c.rng().set_state(state);
  o.step.suppress_backward = true;
  const LossRecord& t = c.train(b, o);
  CHECK(l.total == t.total);
  CHECK(l.main.loss_raw.values == t.main.loss_raw.values);
  CHECK(l.pheno_block("p").loss.at("nll") == t.pheno_block("p").loss.at("nll"));
}

TEST_CASE("a step's graph key compares its selections by content, not by address", "[controller][graphs]") {
  // options hold their selections by value, so one address (a temporary's) may hold different
  // selections from one call to the next: a GPU step must not replay the other selection's graph
  const ModelSpec m = spec_of(base_config(), base_pheno(), base_signature()).model;
  Selection call = Selection::all(m.signatures), none = Selection::none();
  const Selection kept = call;  // what a graph's entry keeps of the call that made it
  auto key = [&](const Selection& sig) {
    return StepGraphKey{&none, &sig, true, true, false, DetachFrom::None, kCells, 1, 0, 0};
  };
  const StepGraphKey stored = key(kept);
  CHECK(stored == key(call));  // another object, the same selection
  call.entries.pop_back();     // the same object, another selection
  CHECK_FALSE(stored == key(call));
}
