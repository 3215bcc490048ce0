// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Bad input never crashes and never half-applies: every class of bad input gets a sakura::Error
// naming the key or shapes, and a throwing train() leaves all state bit-identical.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>

#include "support/fixtures.hpp"

using namespace sakura;
using namespace sakura::test;
using Catch::Contains;

namespace {

/// Everything train() may change, copied bit for bit.
struct Snapshot {
  std::vector<std::vector<float>> values, grads, square_avg, momentum;
  std::vector<char> has_grad;
  Rng::State rng;
  std::size_t draw_pos = 0;
  std::vector<double> weights;
  std::vector<int> epochs;

  static std::vector<float> copy(const Tensor<float>& t) { return std::vector<float>(t.begin(), t.end()); }
  explicit Snapshot(Controller<float>& c) {
    for (auto& p : c.model().parameters().all()) {
      values.push_back(copy(p.value));
      grads.push_back(copy(p.grad));
      has_grad.push_back(p.has_grad);
    }
    for (auto& s : c.optimizer().state()) {
      square_avg.push_back(copy(s.square_avg));
      momentum.push_back(copy(s.momentum_buffer));
    }
    rng = c.rng().state();
    draw_pos = c.injected_draws().position();
    auto terms = [&](BlockKind k, const std::string& b, const std::vector<std::string>& loss,
                     const std::vector<std::string>& reg) {
      for (auto& n : loss) {
        weights.push_back(c.term(k, b, TermGroup::Loss, n).weight);
        epochs.push_back(c.term(k, b, TermGroup::Loss, n).epoch);
      }
      for (auto& n : reg) {
        weights.push_back(c.term(k, b, TermGroup::Regularization, n).weight);
        epochs.push_back(c.term(k, b, TermGroup::Regularization, n).epoch);
      }
    };
    terms(BlockKind::Main, "", {"mse"}, {"sw2"});
    terms(BlockKind::Pheno, "p", {"nll"}, {"l2"});
    terms(BlockKind::Signature, "s", {"mse"}, {});
    terms(BlockKind::Signature, "a", {"mse", "cos"}, {});
  }
  /// Bitwise comparison (memcmp, so NaN payloads and -0 count too; an empty vector's data() may
  /// be null, which memcmp must not get even for 0 bytes).
  static bool same(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
      if (a[i].size() != b[i].size() ||
          (!a[i].empty() && std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0))
        return false;
    return true;
  }
  bool operator==(const Snapshot& o) const {
    return same(values, o.values) && same(grads, o.grads) && same(square_avg, o.square_avg) &&
           same(momentum, o.momentum) && has_grad == o.has_grad && rng == o.rng && draw_pos == o.draw_pos &&
           weights == o.weights && epochs == o.epochs;
  }
};

/// A controller that has already taken a step (so optimizer state and gradients are non-trivial).
struct Trained {
  Controller<float> ctl{spec_of(base_config(), base_pheno(), base_signature())};
  Batch<float> good = base_batch();
  Trained() {
    ctl.train(good);
    ctl.next_epoch();
  }
};

/// Runs a bad call and checks the message and that nothing changed.
template <class F>
void rejects(Trained& t, F&& bad, const std::string& fragment) {
  const Snapshot before(t.ctl);
  REQUIRE_THROWS_WITH(bad(t.ctl), Contains(fragment));
  REQUIRE(Snapshot(t.ctl) == before);
  // and the controller still works afterwards, from the same state
  REQUIRE_NOTHROW(t.ctl.train(t.good));
}

}  // namespace

// ------------------------------------------------------------------ config errors (at load)
TEST_CASE("unknown loss and regularizer types are rejected at load, naming the key", "[errors][config]") {
  auto cfg = base_config();
  cfg["main_latent"]["loss"]["huber"] = term("Huber");
  REQUIRE_THROWS_WITH(spec_of(cfg, base_pheno(), base_signature()),
                      Contains("config.main_latent.loss.huber.type") && Contains("Huber") && Contains("MSE"));
  auto pheno = base_pheno();
  pheno["p"]["regularization"]["bad"] = term("SW3_fancy");
  REQUIRE_THROWS_WITH(spec_of(base_config(), pheno, base_signature()),
                      Contains("pheno_config.p.regularization.bad.type") && Contains("SW3_fancy"));
  // a reconstruction-only loss on a head, and a head-only loss on the reconstruction
  auto sig = base_signature();
  sig["s"]["loss"]["n"] = term("L1_norm");
  REQUIRE_THROWS_WITH(spec_of(base_config(), base_pheno(), sig), Contains("signature_config.s.loss.n.type"));
  cfg = base_config();
  cfg["main_latent"]["loss"]["nll"] = term("NLL");
  REQUIRE_THROWS_WITH(spec_of(cfg, base_pheno(), base_signature()), Contains("reconstruction loss"));
}

TEST_CASE("unknown model types, modes and optimizers are rejected at load", "[errors][config]") {
  auto sig = base_signature();
  sig["s"]["model"]["type"] = "Transformer";
  REQUIRE_THROWS_WITH(spec_of(base_config(), base_pheno(), sig), Contains("signature_config.s.model.type"));
  auto cfg = base_config();
  cfg["main_latent"]["loss"]["mse"]["progressive_mode"] = "exponential";
  REQUIRE_THROWS_WITH(spec_of(cfg, base_pheno(), base_signature()), Contains("progressive_mode"));
  cfg = base_config();
  cfg["optimizer"]["type"] = "Adam";
  REQUIRE_THROWS_WITH(spec_of(cfg, base_pheno(), base_signature()), Contains("config.optimizer.type"));
  cfg = base_config();
  cfg["main_latent"]["loss"]["mse"]["enable_GRL"] = "maybe";
  REQUIRE_THROWS_WITH(spec_of(cfg, base_pheno(), base_signature()), Contains("enable_GRL"));
}

TEST_CASE("missing required keys are named with their full path", "[errors][config]") {
  auto cfg = base_config();
  cfg["main_latent"].erase("latent_dim");
  REQUIRE_THROWS_WITH(spec_of(cfg, base_pheno(), base_signature()), Contains("config.main_latent.latent_dim"));
  cfg = base_config();
  cfg["main_latent"]["regularization"]["sw2"].erase("init_weight");
  REQUIRE_THROWS_WITH(spec_of(cfg, base_pheno(), base_signature()),
                      Contains("config.main_latent.regularization.sw2.init_weight"));
  auto pheno = base_pheno();
  pheno["p"].erase("pheno_out_dim");
  REQUIRE_THROWS_WITH(spec_of(base_config(), pheno, base_signature()), Contains("pheno_config.p.pheno_out_dim"));
  auto sig = base_signature();
  sig["s"].erase("loss");
  REQUIRE_THROWS_WITH(spec_of(base_config(), base_pheno(), sig), Contains("signature_config.s.loss"));
  pheno = base_pheno();
  pheno["p"]["regularization"]["sup"] = term("SW2_uniform_supervised");
  REQUIRE_THROWS_WITH(spec_of(base_config(), pheno, base_signature()), Contains("uniform_n_labels"));
  REQUIRE_THROWS_WITH(config::experiment_from_json(Json::parse("[1,2]"), base_pheno(), base_signature(), kGenes),
                      Contains("config must be a JSON object"));
  REQUIRE_THROWS_WITH(config::read_json_file("/nonexistent/config.json"), Contains("/nonexistent/config.json"));
}

TEST_CASE("wrongly typed values are named", "[errors][config]") {
  auto cfg = base_config();
  cfg["main_latent"]["latent_dim"] = "three";
  REQUIRE_THROWS_WITH(spec_of(cfg, base_pheno(), base_signature()), Contains("config.main_latent.latent_dim"));
  cfg = base_config();
  cfg["main_latent"]["regularization"]["sw2"]["SW2_num_projections"] = 0;
  REQUIRE_THROWS_WITH(spec_of(cfg, base_pheno(), base_signature()), Contains("SW2_num_projections"));
}

TEST_CASE("attachment to a block that does not exist is rejected when the model is built", "[errors][config]") {
  auto sig = base_signature();
  sig["a"]["model"]["attach_to"] = "signature_lat";
  sig["a"]["model"]["attach_key"] = "nope";
  REQUIRE_THROWS_WITH(Controller<float>(spec_of(base_config(), base_pheno(), sig)),
                      Contains("signature_config.a") && Contains("nope"));
  sig = base_signature();
  sig["a"]["model"]["attach_to"] = "multiple";
  sig["a"]["model"]["attach_key"] = Json::parse(R"([{"type": "main"}, {"type": "pheno", "key": "ghost"}])");
  REQUIRE_THROWS_WITH(Controller<float>(spec_of(base_config(), base_pheno(), sig)), Contains("ghost"));
  sig = base_signature();
  sig["a"]["model"]["attach_to"] = "somewhere";
  REQUIRE_THROWS_WITH(spec_of(base_config(), base_pheno(), sig), Contains("attach_to"));
  sig = base_signature();  // width mismatch: attached to the 3-d main latent but declares 4
  sig["a"]["signature_lat_dim"] = 4;
  REQUIRE_THROWS_WITH(Controller<float>(spec_of(base_config(), base_pheno(), sig)),
                      Contains("signature_lat_dim") && Contains("3"));
}

TEST_CASE("selections naming unknown blocks or terms are rejected, listing what exists", "[errors][selection]") {
  Controller<float> ctl(spec_of(base_config(), base_pheno(), base_signature()));
  REQUIRE_THROWS_WITH(
      config::selection_from_json(ctl.model_spec(), BlockKind::Signature,
                              Json::parse(R"({"cd4cd8": {"loss": "*", "regularization": "*"}})"), "selected_signature"),
      Contains("selected_signature") && Contains("cd4cd8") && Contains("s, a"));
  REQUIRE_THROWS_WITH(config::selection_from_json(ctl.model_spec(), BlockKind::Pheno,
                                              Json::parse(R"({"p": {"loss": ["nll", "kl"]}})"), "selected_pheno"),
                      Contains("selected_pheno.p.loss") && Contains("'kl'") && Contains("nll"));
  REQUIRE_THROWS_WITH(config::selection_from_json(ctl.model_spec(), BlockKind::Pheno,
                                              Json::parse(R"({"p": {"loss": "*", "regularization": ["l3"]}})"),
                                              "selected_pheno"),
                      Contains("selected_pheno.p.regularization") && Contains("l3"));
  REQUIRE_THROWS_WITH(config::selection_from_json(ctl.model_spec(), BlockKind::Pheno, Json::parse(R"(["p"])"), "sel"),
                      Contains("sel must be"));
  REQUIRE_THROWS_WITH(ctl.term(BlockKind::Signature, "zz", TermGroup::Loss, "mse"), Contains("zz"));
}

// ------------------------------------------------------------------ batch errors (at train)
TEST_CASE("a batch missing a target is rejected and changes nothing", "[errors][batch]") {
  Trained t;
  Batch<float> no_sig(t.good.expr);
  no_sig.set_signature("s", t.good.signatures()[0].values);
  no_sig.set_labels("p", t.good.phenos()[0].labels);
  rejects(t, [&](auto& c) { c.train(no_sig); }, "no target for signature 'a'");
  Batch<float> no_labels(t.good.expr);
  no_labels.set_signature("s", t.good.signatures()[0].values);
  no_labels.set_signature("a", t.good.signatures()[1].values);
  rejects(t, [&](auto& c) { c.train(no_labels); }, "no labels for phenotype 'p'");
  // with the phenotype switched off, the same batch is fine
  TrainOptions o;
  o.scope.phenos = Selection::none();
  REQUIRE_NOTHROW(t.ctl.train(no_labels, o));
}

TEST_CASE("mismatched shapes are rejected naming both shapes", "[errors][batch]") {
  Trained t;
  Batch<float> wide = t.good;
  wide.expr = random_tensor(kCells, kGenes + 1, 5);
  rejects(t, [&](auto& c) { c.train(wide); }, "[8, 13]");
  Batch<float> bad_target = t.good;
  bad_target.set_signature("s", random_tensor(kCells, 3, 6));
  rejects(t, [&](auto& c) { c.train(bad_target); }, "signature 's' target is [8, 3], expected [8, 2]");
  Batch<float> short_labels = t.good;
  short_labels.set_labels("p", {0, 1, 2});
  rejects(t, [&](auto& c) { c.train(short_labels); }, "phenotype 'p' has 3 labels for 8 cells");
  Batch<float> bad_label = t.good;
  bad_label.labels("p")[4] = 7;
  rejects(t, [&](auto& c) { c.train(bad_label); }, "label 7 of cell 4 is outside [0, 3)");
  Batch<float> empty;
  rejects(t, [&](auto& c) { c.train(empty); }, "batch has no cells");
}

TEST_CASE("NaN or Inf anywhere in a batch is rejected with its position", "[errors][batch]") {
  Trained t;
  Batch<float> nan = t.good;
  nan.expr(2, 5) = std::numeric_limits<float>::quiet_NaN();
  rejects(t, [&](auto& c) { c.train(nan); }, "batch expression contains NaN at [2, 5]");
  Batch<float> inf = t.good;
  inf.signature_values("a")(1, 1) = std::numeric_limits<float>::infinity();
  rejects(t, [&](auto& c) { c.train(inf); }, "signature 'a' target contains Inf at [1, 1]");
  // eval validates the same way
  const Snapshot before(t.ctl);
  REQUIRE_THROWS_WITH(t.ctl.eval(nan), Contains("NaN"));
  REQUIRE(Snapshot(t.ctl) == before);
}

TEST_CASE("a batch whose input is in GPU memory is rejected by a CPU controller", "[errors][batch]") {
  Trained t;
  const float fake_device_matrix[kGenes] = {};
  const std::int32_t rows[kCells] = {};
  Batch<float> dev = t.good;
  dev.expr = Tensor<float>();
  dev.set_device_rows(fake_device_matrix, 1, kGenes, rows);
  REQUIRE(dev.cells() == kCells);
  rejects(t, [&](auto& c) { c.train(dev); }, "batch input is in GPU memory (set_device_rows) but this controller runs on the CPU");
  // wrong width is reported first, as for a host batch
  dev.set_device_rows(fake_device_matrix, 1, kGenes - 1, rows);
  rejects(t, [&](auto& c) { c.train(dev); }, "batch expression is [8, 11] but the model expects 12 genes");
}

TEST_CASE("an error midway through the step (after random draws) restores the random stream", "[errors][batch]") {
  Trained t;
  // the main SW2 draws first, then the phenotype's supervised prior fails on a label
  auto pheno = base_pheno();
  pheno["p"]["regularization"]["gm"] =
      term("SW2_gaussian_mixture_supervised", 0.1, Json{{"gaussian_mixture_n_labels", 2}});
  Controller<float> ctl(spec_of(base_config(), pheno, base_signature()));
  TrainOptions no_pheno;
  no_pheno.scope.phenos = Selection::none();
  ctl.train(t.good, no_pheno);
  const auto rng_before = ctl.rng().state();
  std::vector<float> w0(ctl.model().parameters().all().front().value.begin(),
                        ctl.model().parameters().all().front().value.end());
  REQUIRE_THROWS_WITH(ctl.train(t.good), Contains("label 2 of cell 2 is outside [0, 2)"));
  REQUIRE(ctl.rng().state() == rng_before);
  REQUIRE(std::equal(w0.begin(), w0.end(), ctl.model().parameters().all().front().value.begin()));
}

TEST_CASE("injected draws that do not match what the step asks for are rejected", "[errors][draws]") {
  Trained t;
  RecordedDraw d;
  d.site = "main_latent.regularization.sw2";
  d.kind = DrawKind::prior_samples;
  d.rows = kCells;
  d.cols = 4;  // the latent is 3-d
  d.data.assign(static_cast<std::size_t>(kCells * 4), 0.5);
  t.ctl.injected_draws().clear();
  t.ctl.injected_draws().push(d);
  const Snapshot before(t.ctl);
  REQUIRE_THROWS_WITH(t.ctl.train(t.good), Contains("injected draw mismatch") && Contains("[8, 4]") && Contains("[8, 3]"));
  REQUIRE(Snapshot(t.ctl) == before);
  t.ctl.injected_draws().clear();
  REQUIRE_NOTHROW(t.ctl.train(t.good));
}
