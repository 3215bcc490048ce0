// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Every training-core defect of SPEC §9, with a test that shows the fixed behaviour.
#include <catch2/catch.hpp>

#include <cmath>

#include "support/fixtures.hpp"

using namespace sakura;
using namespace sakura::test;
using Catch::Contains;

namespace {

RecordedDraw draw(const std::string& site, DrawKind kind, Index rows, Index cols, std::uint64_t seed) {
  RecordedDraw d{site, kind, rows, cols, {}};
  Rng rng(seed);
  Tensor<float> t(rows, cols);
  if (kind == DrawKind::projections) priors::sample(t.ref(), priors::unit_projections(rows, cols), rng);
  else priors::sample(t.ref(), priors::uniform(rows, cols, -1.0, 1.0), rng);
  d.data.assign(t.begin(), t.end());
  return d;
}

/// SW2 of z against prior s with projections p, computed directly (double).
double sw2_reference(const Tensor<float>& z, const RecordedDraw& s, const RecordedDraw& p) {
  const Index n = z.rows(), L = z.cols(), P = p.rows;
  double total = 0;
  for (Index k = 0; k < P; ++k) {
    std::vector<double> a(static_cast<std::size_t>(n)), b(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i)
      for (Index j = 0; j < L; ++j) {
        a[i] += double(z(i, j)) * float(p.data[k * L + j]);
        b[i] += float(s.data[i * L + j]) * float(p.data[k * L + j]);
      }
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    for (Index i = 0; i < n; ++i) total += (a[i] - b[i]) * (a[i] - b[i]);
  }
  return total / double(n * P);
}

Json main_only_config(Json reg) {
  Json cfg = base_config();
  cfg["main_latent"]["regularization"] = Json{{"r", reg}};
  return cfg;
}

bool any_written(Controller<float>& c, const std::string& module) {
  for (auto& p : c.model().parameters().all())
    if (p.module == module && p.has_grad) return true;
  return false;
}

}  // namespace

TEST_CASE("fix: SW2 honours SW2_num_projections (upstream always uses 50)", "[fixes][sw2]") {
  for (int P : {10, 200}) {
    Json reg = term("SW2_uniform", 1.0, Json{{"uniform_low", -1.0}, {"uniform_high", 1.0}, {"SW2_num_projections", P}});
    Controller<float> ctl(spec_of(main_only_config(reg), Json::object(), Json::object()));
    Batch<float> b(random_tensor(kCells, kGenes, 3));
    const auto prior = draw("main_latent.regularization.r", DrawKind::prior_samples, kCells, 3, 1);
    const auto proj = draw("main_latent.regularization.r", DrawKind::projections, P, 3, 2);
    ctl.injected_draws().push(prior);
    ctl.injected_draws().push(proj);
    EvalOptions o;
    o.scope.reconstruction = false;
    const double value = ctl.eval(b, o).main.regularization.at("r");
    REQUIRE(ctl.injected_draws().remaining() == 0);
    const Tensor<float> z = [&] {
      auto v = ctl.view(ctl.forward().main);
      Tensor<float> t(v.rows, v.cols);
      for (Index i = 0; i < t.size(); ++i) t[i] = v.data[i];
      return t;
    }();
    CHECK(value == Approx(sw2_reference(z, prior, proj)).epsilon(1e-5));
    // the upstream-compatible mode still asks for 50 (used by the golden replay)
    UpstreamCompat compat;
    compat.sw2_fixed_projections = 50;
    Controller<float> up(config::experiment_from_json(main_only_config(reg), Json::object(), Json::object(), kGenes, compat));
    up.injected_draws().push(prior);
    up.injected_draws().push(proj);
    REQUIRE_THROWS_WITH(up.eval(b, o), Contains("[50, 3]"));
  }
}

TEST_CASE("fix: KL_gaussian_mixture runs and matches the diagonal-Gaussian formula", "[fixes][kl]") {
  Json reg = term("KL_gaussian_mixture", 1.0,
                  Json{{"gaussian_mixture_n_labels", 4}, {"gaussian_mixture_x_var", 0.5}, {"gaussian_mixture_y_var", 0.1}});
  Controller<float> ctl(spec_of(main_only_config(reg), Json::object(), Json::object()));
  Batch<float> b(random_tensor(kCells, kGenes, 3));
  const auto prior = draw("main_latent.regularization.r", DrawKind::prior_samples, kCells, 3, 7);
  ctl.injected_draws().push(prior);
  EvalOptions o;
  o.scope.reconstruction = false;
  const double value = ctl.eval(b, o).main.regularization.at("r");
  auto z = ctl.view(ctl.forward().main);
  double kl = 0;
  for (Index j = 0; j < 3; ++j) {
    double mp = 0, mq = 0, vp = 0, vq = 0;
    for (Index i = 0; i < kCells; ++i) mp += z(i, j), mq += float(prior.data[i * 3 + j]);
    mp /= kCells, mq /= kCells;
    for (Index i = 0; i < kCells; ++i) {
      vp += (z(i, j) - mp) * (z(i, j) - mp);
      vq += (float(prior.data[i * 3 + j]) - mq) * (float(prior.data[i * 3 + j]) - mq);
    }
    vp = vp / kCells + 1e-8, vq = vq / kCells + 1e-8;
    kl += 0.5 * (std::log(vq) - std::log(vp) + (vp + (mp - mq) * (mp - mq)) / vq - 1);
  }
  CHECK(value == Approx(kl).epsilon(1e-5));
  // and it trains: the main compressor gets a gradient from it
  TrainOptions t;
  t.scope.reconstruction = false;
  ctl.train(b, t);
  CHECK(any_written(ctl, "main_latent_compressor"));
}

TEST_CASE("fix: a phenotype BCE loss is stored and back-propagated", "[fixes][bce]") {
  Json pheno = Json::parse(R"({"flag": {"pheno_lat_dim": 2, "pheno_out_dim": 1,
      "model": {"type": "FCRegressor", "hidden_neurons": 4, "output_activation_function": "sigmoid"},
      "loss": {"bce": {"type": "BCE", "init_weight": 2.0, "progressive_const": 1.0, "progressive_start_epoch": 1}}}})");
  Controller<float> ctl(spec_of(base_config(), pheno, Json::object()));
  Batch<float> b(random_tensor(kCells, kGenes, 3));
  b.set_pheno_values("flag", random_tensor(kCells, 1, 4, 0.0, 1.0));
  TrainOptions o;
  o.step.save_raw_loss = true;
  const auto& rec = ctl.train(b, o);
  const auto& blk = rec.pheno_block("flag");
  REQUIRE(blk.loss.get("bce").has_value());
  CHECK(*blk.loss.get("bce") == Approx(2.0 * *blk.loss_raw.get("bce")).epsilon(1e-6));
  CHECK(rec.total == Approx(*rec.main.loss.get("mse") + *rec.main.regularization.get("sw2") + *blk.loss.get("bce"))
                         .epsilon(1e-6));
  CHECK(any_written(ctl, "pheno_models"));
  // binary labels work as targets too (out_dim 1)
  Batch<float> lb(random_tensor(kCells, kGenes, 3));
  lb.set_labels("flag", {0, 1, 1, 0, 1, 0, 0, 1});
  CHECK(std::isfinite(ctl.train(lb).total));
}

TEST_CASE("fix: a selection with regularization null means no regularization", "[fixes][selection]") {
  Controller<float> ctl(spec_of(base_config(), base_pheno(), base_signature()));
  const auto sel = config::selection_from_json(ctl.model_spec(), BlockKind::Pheno,
                                           Json::parse(R"({"p": {"loss": "*", "regularization": null}})"), "sel");
  TrainOptions o;
  o.scope.phenos = sel;
  const auto& rec = ctl.train(base_batch(), o);
  CHECK(rec.pheno_block("p").loss.get("nll").has_value());
  CHECK(rec.pheno_block("p").regularization.count() == 0);
  // missing "regularization" is the same; "[]" too
  const auto sel2 = config::selection_from_json(ctl.model_spec(), BlockKind::Pheno, Json::parse(R"({"p": {"loss": "*"}})"), "s");
  o.scope.phenos = sel2;
  CHECK(ctl.train(base_batch(), o).pheno_block("p").regularization.count() == 0);
}

TEST_CASE("fix: reconstruction with the main regularization off still feeds the decoder", "[fixes][forward]") {
  // no head attached to the main latent: upstream fails with a width mismatch here
  Controller<float> ctl(spec_of(base_config(), base_pheno(), Json::object()));
  TrainOptions o;
  o.scope.main_regularization = false;
  const auto& rec = ctl.train(base_batch(), o);
  CHECK(rec.main.loss.get("mse").has_value());
  CHECK(rec.main.regularization.count() == 0);
  CHECK(any_written(ctl, "main_latent_compressor"));  // the decoder reads the main latent
}

TEST_CASE("fix: a signature without an explicit model gets a linear regressor head", "[fixes][model]") {
  Json sig = Json::parse(R"({"s": {"signature_lat_dim": 2, "signature_out_dim": 2,
      "loss": {"mse": {"type": "MSE", "init_weight": 1.0, "progressive_const": 1.0, "progressive_start_epoch": 1}}}})");
  Controller<float> ctl(spec_of(base_config(), Json::object(), sig));
  REQUIRE(ctl.model().parameters().find("model.signature_regressors.s.model_list.0.weight") != nullptr);
  Batch<float> b(random_tensor(kCells, kGenes, 3));
  b.set_signature("s", random_tensor(kCells, 2, 9));
  CHECK(std::isfinite(ctl.train(b).total));
}

TEST_CASE("fix: unimplemented upstream types are rejected at load, the supervised GM prior works", "[fixes][config]") {
  for (const char* t : {"L0_regularization", "euclidean_anchor"}) {
    auto cfg = base_config();
    cfg["main_latent"]["regularization"]["x"] = term(t);
    REQUIRE_THROWS_WITH(spec_of(cfg, Json::object(), Json::object()), Contains(t));
  }
  auto pheno = base_pheno();
  pheno["p"]["loss"]["nll"]["weighted"] = "True";
  REQUIRE_THROWS_WITH(spec_of(base_config(), pheno, Json::object()), Contains("weighted NLL"));
  // SW2_gaussian_mixture_supervised: labels place each cell on its component
  pheno = base_pheno();
  pheno["p"]["regularization"] = Json{{"gm", term("SW2_gaussian_mixture_supervised", 0.5,
                                                  Json{{"gaussian_mixture_n_labels", 3}})}};
  Controller<float> ctl(spec_of(base_config(), pheno, Json::object()));
  CHECK(std::isfinite(ctl.train(base_batch()).pheno_block("p").regularization.at("gm")));
  // only phenotypes have labels: on the main latent it is a load-time error
  auto cfg = base_config();
  cfg["main_latent"]["regularization"]["gm"] = term("SW2_gaussian_mixture_supervised", 1.0, Json{{"gaussian_mixture_n_labels", 3}});
  REQUIRE_THROWS_WITH(spec_of(cfg, Json::object(), Json::object()), Contains("needs labels"));
}

TEST_CASE("fix: the supervised uniform prior uses (N) labels and shifts rows by their offsets", "[fixes][priors]") {
  Rng a(5), b(5);
  Tensor<float> plain(6, 2), shifted(6, 2);
  const std::vector<std::vector<double>> offsets{{0, 0}, {10, 0}, {0, 10}};
  const std::vector<std::int64_t> labels{0, 1, 2, 2, 1, 0};
  priors::sample(plain.ref(), priors::uniform(6, 2, -1, 1), a);
  priors::sample(shifted.ref(), priors::uniform(6, 2, -1, 1), b, labels.data(), &offsets);
  for (Index i = 0; i < 6; ++i)
    for (Index j = 0; j < 2; ++j)
      CHECK(shifted(i, j) == Approx(plain(i, j) + offsets[labels[i]][j]));
  // and end to end on a phenotype, with the offsets validated at load
  auto pheno = base_pheno();
  pheno["p"]["regularization"] = Json{{"u", term("SW2_uniform_supervised", 1.0,
                                                 Json{{"uniform_n_labels", 3},
                                                      {"uniform_label_offsets", Json::parse("[[0,0],[3,0],[0,3]]")}})}};
  Controller<float> ctl(spec_of(base_config(), pheno, Json::object()));
  CHECK(std::isfinite(ctl.train(base_batch()).pheno_block("p").regularization.at("u")));
  pheno["p"]["regularization"]["u"]["uniform_label_offsets"] = Json::parse("[[0,0],[3,0]]");
  REQUIRE_THROWS_WITH(spec_of(base_config(), pheno, Json::object()), Contains("uniform_label_offsets"));
}

TEST_CASE("fix: gradient neutralisation (GNL) trains the head and stops the gradient upstream", "[fixes][gnl]") {
  Json sig = Json::parse(R"({"s": {"signature_lat_dim": 2, "signature_out_dim": 2, "model": {"type": "LinRegressor"},
      "loss": {"mse": {"type": "MSE", "init_weight": 1.0, "progressive_const": 1.0, "progressive_start_epoch": 1,
                       "enable_GNL": "True"}}}})");
  Controller<float> ctl(spec_of(base_config(), Json::object(), sig));
  Batch<float> b(random_tensor(kCells, kGenes, 3));
  b.set_signature("s", random_tensor(kCells, 2, 9));
  TrainOptions o;
  o.scope.reconstruction = false;
  o.scope.main_regularization = false;
  const auto& rec = ctl.train(b, o);
  CHECK(std::isfinite(rec.signature_block("s").loss.at("mse")));
  CHECK(any_written(ctl, "signature_regressors"));
  CHECK_FALSE(any_written(ctl, "signature_latent_compressors"));
  CHECK_FALSE(any_written(ctl, "pre_encoder"));
}

TEST_CASE("fix: a regularization of type none is skipped instead of raising", "[fixes][config]") {
  auto cfg = base_config();
  cfg["main_latent"]["regularization"]["off"] = Json{{"type", "none"}, {"init_weight", 1.0}};
  Controller<float> ctl(spec_of(cfg, Json::object(), Json::object()));
  Batch<float> b(random_tensor(kCells, kGenes, 3));
  TrainOptions o;
  o.step.save_raw_loss = true;
  const auto& rec = ctl.train(b, o);
  CHECK(rec.main.regularization.count() == 1);  // only sw2
  CHECK_FALSE(rec.main.regularization.get("off").has_value());
}

TEST_CASE("fix: gaussian mixture spreads default to 0.5 / 0.1 when absent", "[fixes][priors]") {
  Json reg = term("SW2_gaussian_mixture", 1.0, Json{{"gaussian_mixture_n_labels", 4}});
  auto spec = spec_of(main_only_config(reg), Json::object(), Json::object());
  const auto& opt = std::get<Configured<Sw2GaussianMixture>>(spec.main_regularizations[0].configured).options;
  CHECK(opt.x_std == 0.5);
  CHECK(opt.y_std == 0.1);
}

TEST_CASE("fix: decoder_config without output_activation_function defaults to relu", "[fixes][model]") {
  auto cfg = base_config();
  cfg["main_latent"]["decoder_config"] = Json{{"hidden_neurons", 6}, {"hidden_layers", 2}};
  Controller<float> ctl(spec_of(cfg, Json::object(), Json::object()));
  const auto& layers = ctl.model().decoder().layers();
  REQUIRE(layers.back().kind == LayerKind::Relu);
  // main_latent.encoder_config works too (upstream passes it kwargs its compressor rejects)
  cfg["main_latent"]["encoder_config"] = Json{{"hidden_neurons", 5}, {"hidden_layers", 2}};
  Controller<float> c2(spec_of(cfg, Json::object(), Json::object()));
  REQUIRE(c2.model().parameters().find("model.main_latent_compressor.model_list.2.weight") != nullptr);
  CHECK(std::isfinite(c2.train(Batch<float>(random_tensor(kCells, kGenes, 3))).total));
}
