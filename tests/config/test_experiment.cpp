// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// sakura::Experiment written by hand for the tutorial config and every golden case gives the spec
// the JSON loader gives (field by field, via describe()) and a bit-identical training step; its
// mistakes throw naming the call and the fix.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <map>
#include <sakura/config/describe.hpp>
#include <sakura/config/experiment.hpp>
#include <sakura/data/synthetic.hpp>

#include "support/golden.hpp"

using namespace sakura;
using sakura::config::Json;
using Mode = Progressive::Mode;

namespace {

/// The weight schedule most golden terms use: init, constant, start epoch, multiply.
Progressive at(double init, double constant = 1.0, int start = 1) {
  return {.init_weight = init, .constant = constant, .start_epoch = start};
}
template <class Fn>
TermOptions<Fn> w(double init, double constant = 1.0, int start = 1) {
  return {.schedule = at(init, constant, start)};
}
TermOptions<Sw2Uniform> sw2(double init, double low, double high, double constant = 1.0, int projections = 50) {
  return {.schedule = at(init, constant), .options = {.projections = projections, .low = low, .high = high}};
}
Experiment small() { return Experiment({.genes = 12, .encoder_neurons = 8, .decoder_neurons = 8, .latent_dim = 3}); }
RmsPropSettings rms() { return {.lr = 0.01, .alpha = 0.9}; }
/// The golden cases' usual blocks: phenotype "p" (3 classes, NLL) and a linear signature (MSE).
PhenoBlock p_nll(double weight = 1) {
  return PhenoBlock("p", {.lat_dim = 2, .out_dim = 3}).head(HeadType::LinClassifier).loss<Nll>("nll", w<Nll>(weight));
}
SignatureBlock fc_on_main(const std::string& name) {
  return SignatureBlock(name, {.lat_dim = 3, .out_dim = 2}).head(HeadType::FCRegressor, {.width = 5}).attach_to_main();
}
SignatureBlock lin_mse(const std::string& name, double weight = 1) {
  return SignatureBlock(name, {.lat_dim = 2, .out_dim = 2}).head(HeadType::LinRegressor).loss<Mse>("mse", w<Mse>(weight));
}

/// The pbmc5k tutorial (examples/configs/pbmc5k_config.json + pbmc5k_signature_config.json).
Experiment tutorial(Index genes) {
  const Progressive ramp{.init_weight = 0.0, .constant = 0.01, .start_epoch = 50, .mode = Mode::Increment, .max_weight = 1.0};
  return Experiment({.genes = genes, .encoder_neurons = 200, .decoder_neurons = 200, .latent_dim = 50})
      .loss<Mse>("L2", {.schedule = {.start_epoch = 100}})
      .loss<L1>("L1", {.schedule = {.start_epoch = 100}})
      .regularizer<Sw2Uniform>("uniform_shape_unsupervised",
                               {.schedule = {.init_weight = 1e-4, .constant = 1.01, .max_weight = 1.0},
                                .options = {.projections = 50, .low = -10, .high = 10}})
      .signature(SignatureBlock("cd8", {.lat_dim = 50, .genes = {"CD8A", "CD8B"}})
                     .head(HeadType::FCRegressor, {.width = 5})
                     .attach_to_main()
                     .loss<Mse>("regression_MSE", {.schedule = ramp})
                     .loss<L1>("regression_L1", {.schedule = ramp})
                     .loss<Cosine>("regression_cosine", {.schedule = ramp}))
      .optimizer({.lr = 0.001, .alpha = 0.9})
      .seed(3407);
}

Experiment main_five_losses() {
  return small()
      .loss<Mse>("mse", w<Mse>(1))
      .loss<L1>("l1", {.schedule = {.init_weight = 0.5, .constant = 2.0, .max_weight = 1.5}})
      .loss<Cosine>("cos", w<Cosine>(0.3))
      .loss<L1Norm>("l1norm", w<L1Norm>(0.01))
      .loss<L2Norm>("l2norm", w<L2Norm>(0.02))
      .regularizer<Sw2Uniform>("sw2", sw2(0.1, -1, 1, 1.5));
}

/// Each golden case's config, written with the builder.
std::map<std::string, Experiment> golden_builders() {
  std::map<std::string, Experiment> b;
  const auto base = [](double sw2_init) {
    return small().loss<Mse>("mse", w<Mse>(1)).regularizer<Sw2Uniform>("sw2", sw2(sw2_init, -1, 1)).optimizer(rms());
  };
  b.emplace("golden_custom_arch",
            small()
                .loss<Mse>("mse", w<Mse>(1))
                .loss<L1>("l1", w<L1>(0.5))
                .regularizer<Sw2Uniform>("sw2", sw2(0.1, -1, 1))
                .decoder({.count = 3, .widths = {9, 7}, .output = Activation::Identity})
                .pre_encoder({.layers = {.count = 3, .widths = {10, 9}}, .out_dim = 7})
                .optimizer(rms())
                .pheno(PhenoBlock("p", {.lat_dim = 2, .out_dim = 3})
                           .head(HeadType::LinClassifier)
                           .encoder({.count = 2, .width = 4})
                           .loss<Nll>("nll", w<Nll>(1)))
                .signature(SignatureBlock("s", {.lat_dim = 2, .out_dim = 2})
                               .encoder({.count = 3, .widths = {5, 4}})
                               .head(HeadType::FCRegressor, {.count = 3, .widths = {4, 3}, .output = Activation::Relu})
                               .loss<Mse>("mse", w<Mse>(1))
                               .loss<L1>("l1", w<L1>(1))));
  b.emplace("golden_detach",
            base(0.1).pheno(p_nll())
                .signature(lin_mse("s_lin"))
                .signature(fc_on_main("s_main")
                               .loss<Mse>("mse", w<Mse>(1))));
  b.emplace(
      "golden_dynamic_weights",
      small()
          .loss<Mse>("mse_default", {.schedule = {.init_weight = 1.0, .constant = 0.9, .start_epoch = 3, .min_weight = 0.5}})
          .loss<L1>("l1_mult", {.schedule = {.init_weight = 0.1, .constant = 2.0, .mode = Mode::Multiply, .max_weight = 1.0}})
          .loss<Cosine>("cos_inc", {.schedule = {.init_weight = 0.0, .constant = 0.25, .start_epoch = 5,
                                                 .mode = Mode::Increment, .max_weight = 1.0}})
          .regularizer<Sw2Uniform>("sw2", {.schedule = {.init_weight = 0.0001, .constant = 1.01, .max_weight = 1.0},
                                           .options = {.low = -10, .high = 10}})
          .regularizer<L2Regularization>("l2r_dec", {.schedule = {.init_weight = 0.3, .constant = -0.05, .start_epoch = 2,
                                                                  .mode = Mode::Increment, .min_weight = 0.1}})
          .optimizer(rms())
          .pheno(PhenoBlock("p", {.lat_dim = 2, .out_dim = 3})
                     .head(HeadType::LinClassifier)
                     .loss<Nll>("nll", {.schedule = {.init_weight = 0.0, .constant = 0.1, .start_epoch = 2,
                                                     .mode = Mode::Increment, .max_weight = 0.5}})
                     .regularizer<L1Regularization>("l1r", {.schedule = {.init_weight = 1.0, .constant = 0.5,
                                                                         .mode = Mode::Multiply, .min_weight = 0.2}}))
          .signature(SignatureBlock("s", {.lat_dim = 2, .out_dim = 2})
                         .head(HeadType::LinRegressor)
                         .loss<Mse>("mse", {.schedule = {.init_weight = 0.0, .constant = 0.01, .start_epoch = 4,
                                                         .mode = Mode::Increment, .max_weight = 1.0}})
                         .loss<Cosine>("cos", {.schedule = {.init_weight = 0.01, .constant = 3.0, .mode = Mode::Multiply,
                                                            .max_weight = 0.5}})
                         .regularizer<L2Regularization>("l2r", w<L2Regularization>(0.001, 2.0))));
  b.emplace("golden_grl_gnl",
            base(0.1)
                .pheno(p_nll()
                           .loss<Nll>("nll_grl", {.schedule = at(0.5), .flow = GradFlow::Reverse})
                           .regularizer<L2Regularization>("l2reg_grl", {.schedule = at(0.3), .flow = GradFlow::Reverse}))
                .signature(SignatureBlock("s", {.lat_dim = 2, .out_dim = 2})
                               .head(HeadType::LinRegressor)
                               .loss<Mse>("mse", {.schedule = at(1), .flow = GradFlow::Reverse})
                               .regularizer<L2Regularization>("l2reg_grl", {.schedule = at(0.2), .flow = GradFlow::Reverse})));
  b.emplace("golden_kl_sw2_gm_ring",
            small()
                .loss<Mse>("mse", w<Mse>(1))
                .regularizer<Sw2GaussianMixture>("gm", {.schedule = at(0.2), .options = {.n_labels = 4, .x_std = 0.5, .y_std = 0.1}})
                .optimizer(rms())
                .pheno(p_nll().regularizer<Sw2Ring2d>("ring", w<Sw2Ring2d>(0.3)))
                .signature(lin_mse("s").regularizer<Sw2GaussianMixture>(
                                   "gm2d", {.schedule = at(0.4), .options = {.n_labels = 3, .x_std = 0.3, .y_std = 0.2}})));
  b.emplace("golden_main_mse_l1_sw2uniform", main_five_losses().optimizer(rms()));
  b.emplace("golden_pheno_nll_linclassifier",
            base(0.05)
                .pheno(PhenoBlock("celltype", {.lat_dim = 2, .out_dim = 3})
                           .head(HeadType::LinClassifier)
                           .loss<Nll>("nll", {.schedule = {.init_weight = 1.0, .constant = 1.2, .max_weight = 2.0}})
                           .regularizer<L2Regularization>("l2reg", w<L2Regularization>(0.1)))
                .pheno(PhenoBlock("batchlab", {.lat_dim = 2, .out_dim = 2})
                           .head(HeadType::FCClassifier, {.count = 3, .width = 4})
                           .loss<Nll>("nll", w<Nll>(0.5))
                           .regularizer<L1Regularization>("l1reg", w<L1Regularization>(0.05)))
                .pheno(PhenoBlock("legacy", {.lat_dim = 2, .out_dim = 2}).loss<Nll>("nll", w<Nll>(0.25))));
  b.emplace("golden_rmsprop_wd_momentum",
            main_five_losses().optimizer({.lr = 0.01, .alpha = 0.9, .weight_decay = 0.05, .momentum = 0.8}).pheno(p_nll()));
  b.emplace("golden_save_raw_loss",
            small()
                .loss<Mse>("mse", w<Mse>(0.7))
                .loss<L1>("l1", w<L1>(1.3))
                .regularizer<Sw2Uniform>("sw2", sw2(0.25, -1, 1))
                .optimizer(rms())
                .pheno(p_nll(0.4).regularizer<L2Regularization>("l2reg", w<L2Regularization>(0.6)))
                .signature(lin_mse("s", 2.0).regularizer<L1Regularization>("l1reg", w<L1Regularization>(0.3))));
  b.emplace("golden_selection",
            base(0.1)
                .pheno(p_nll()
                           .regularizer<L1Regularization>("l1reg", w<L1Regularization>(0.1))
                           .regularizer<L2Regularization>("l2reg", w<L2Regularization>(0.2)))
                .signature(lin_mse("s_lin")
                               .loss<L1>("l1", w<L1>(0.5))
                               .regularizer<L2Regularization>("l2reg", w<L2Regularization>(0.1)))
                .signature(fc_on_main("s_main")
                               .loss<Mse>("mse", w<Mse>(1))
                               .loss<Cosine>("cos", w<Cosine>(0.5))));
  const Progressive quarter{.init_weight = 0.5, .constant = 0.25, .mode = Mode::Increment, .max_weight = 1.0};
  b.emplace("golden_signature_regressors",
            small()
                .loss<Mse>("L2", w<Mse>(1))
                .loss<L1>("L1", w<L1>(1))
                .regularizer<Sw2Uniform>("sw2", sw2(0.01, -10, 10, 1.01))
                .optimizer(rms())
                .signature(lin_mse("s_lin")
                               .loss<L1>("l1", w<L1>(0.5))
                               .loss<Cosine>("cos", w<Cosine>(0.25)))
                .signature(fc_on_main("s_fc_main")
                               .loss<Mse>("regression_MSE", {.schedule = quarter})
                               .loss<L1>("regression_L1", {.schedule = quarter})
                               .loss<Cosine>("regression_cosine", {.schedule = quarter}))
                .signature(SignatureBlock("s_multi", {.lat_dim = 5, .out_dim = 2})
                               .head(HeadType::FCRegressor, {.count = 2, .width = 4})
                               .attach_to_multiple({{BlockKind::Main, ""}, {BlockKind::Signature, "s_lin"}})
                               .loss<Mse>("mse", w<Mse>(1))));
  b.emplace("golden_sw2_num_projections_bug",
            small()
                .loss<Mse>("mse", w<Mse>(1))
                .regularizer<Sw2Uniform>("sw2", sw2(0.2, -1, 1, 1.0, 10))
                .optimizer(rms())
                .pheno(p_nll().regularizer<Sw2Uniform>("sw2", sw2(0.3, -2, 2, 1.0, 200))));
  return b;
}

bool same_parameters(Controller<float>& a, Controller<float>& b) {
  auto& pa = a.model().parameters().all();
  auto& pb = b.model().parameters().all();
  if (pa.size() != pb.size()) return false;
  for (std::size_t i = 0; i < pa.size(); ++i)
    if (pa[i].name != pb[i].name || pa[i].value.size() != pb[i].value.size() ||
        std::memcmp(pa[i].value.data(), pb[i].value.data(), sizeof(float) * pa[i].value.size()) != 0)
      return false;
  return true;
}

/// Equal specs, with the first difference printed when they are not.
void require_same_spec(const ExperimentSpec& from_json, const ExperimentSpec& built) {
  const Json a = describe(from_json), b = describe(built);
  if (a != b) {
    const Json patch = Json::diff(a, b);
    FAIL_CHECK("builder differs from JSON loader: " << patch.dump());
  }
  REQUIRE(a == b);
}

Json read_config(const char* name) {
  return config::read_json_file(std::string(SAKURA_EXAMPLES_DIR) + "/configs/" + name);
}

}  // namespace

TEST_CASE("the builder gives the tutorial's JSON spec and the same training steps", "[experiment]") {
  const auto data = data::make_synthetic({.cells = 16, .genes = 400});
  const Index genes = data.expr.cols();
  const Json config = read_config("pbmc5k_config.json"), sig = read_config("pbmc5k_signature_config.json");
  ExperimentSpec from_json = config::experiment_from_json(config, Json(), sig, genes);
  ExperimentSpec built = tutorial(genes).build();
  require_same_spec(from_json, built);

  Controller<float> a(std::move(from_json)), b(std::move(built));
  REQUIRE(same_parameters(a, b));
  Batch<float> batch(data.expr);
  Tensor<float> cd8(data.expr.rows(), 2);
  for (Index r = 0; r < cd8.rows(); ++r) cd8(r, 0) = data.expr(r, 0), cd8(r, 1) = data.expr(r, 1);
  batch.set_signature("cd8", cd8);
  for (int step = 0; step < 3; ++step) {  // the SW2 draws come from each controller's own seeded stream
    const Json ra = config::to_json(a.train(batch)), rb = config::to_json(b.train(batch));
    REQUIRE(ra == rb);
    REQUIRE(same_parameters(a, b));
    a.next_epoch();
    b.next_epoch();
  }
}

TEST_CASE("the builder gives every golden case's JSON spec and bit-identical training steps", "[experiment]") {
  auto builders = golden_builders();
  std::size_t cases = 0;
  for (const auto& entry : std::filesystem::directory_iterator(SAKURA_DEFAULT_GOLDEN_DIR)) {
    if (entry.path().extension() != ".json") continue;
    const std::string name = entry.path().stem().string();
    INFO(name);
    REQUIRE(builders.count(name) == 1);  // a new golden case needs its builder here
    const Json g = config::read_json_file(entry.path().string());
    const Index genes = g["input_dim"].get<Index>();
    // as written, and with upstream's fixed 50 SW2 projections (how the golden replay loads them)
    require_same_spec(config::experiment_from_json(g["config"], g["pheno_config"], g["signature_config"], genes),
                      builders.at(name).build());
    const UpstreamCompat compat{.sw2_fixed_projections = 50};
    ExperimentSpec from_json = config::experiment_from_json(g["config"], g["pheno_config"], g["signature_config"], genes, compat);
    ExperimentSpec built = builders.at(name).upstream_compat(compat).build();
    require_same_spec(from_json, built);

    Controller<float> a(std::move(from_json)), b(std::move(built));
    test::load_parameters(a, g["parameters_before"]);
    test::load_parameters(b, g["parameters_before"]);
    const Batch<float> batch = test::make_batch<float>(g["batch"]);
    int steps = 0;
    for (const Json& call : g["calls"]) {
      if (call["method"] != "train") continue;
      const auto args = config::train_call_from_json(a.model_spec(), call["args"]);
      test::inject(a, call.value("random_draws", Json::array()));
      test::inject(b, call.value("random_draws", Json::array()));
      const Json ra = config::to_json(a.train(batch, args)), rb = config::to_json(b.train(batch, args));
      REQUIRE(ra == rb);
      REQUIRE(same_parameters(a, b));
      ++steps;
    }
    REQUIRE(steps > 0);
    ++cases;
  }
  REQUIRE(cases == builders.size());
}

TEST_CASE("describe() tells specs apart in every kind of field", "[experiment]") {
  const ExperimentSpec base = golden_builders().at("golden_custom_arch").build();
  const Json d = describe(base);
  auto differs = [&](auto&& change) {
    ExperimentSpec s = base;
    change(s);
    return describe(s) != d;
  };
  CHECK(differs([](ExperimentSpec& s) { s.main_losses[1].schedule.max_weight = 2.0; }));
  CHECK(differs([](ExperimentSpec& s) { std::get<Configured<Sw2Uniform>>(s.main_regularizations[0].configured).options.low = -2; }));
  CHECK(differs([](ExperimentSpec& s) { s.main_losses[0].configured = Configured<L1>{}; }));
  CHECK(differs([](ExperimentSpec& s) { s.model.decoder->hidden_neurons[1] = 8; }));
  CHECK(differs([](ExperimentSpec& s) { s.model.signatures[0].head_stack.output_activation = Activation::Sigmoid; }));
  CHECK(differs([](ExperimentSpec& s) { s.model.phenos[0].losses[0].flow = GradFlow::Neutralize; }));
  CHECK(differs([](ExperimentSpec& s) { s.model.signatures[0].attach_keys.push_back({BlockKind::Main, ""}); }));
  CHECK(differs([](ExperimentSpec& s) { s.optimizer.eps = 1e-7; }));
  CHECK(differs([](ExperimentSpec& s) { s.seed = 1; }));
}

TEST_CASE("builder mistakes throw naming the call and the fix", "[experiment]") {
  auto throws = [](auto&& f, const char* text) { REQUIRE_THROWS_WITH(f(), Catch::Contains(text)); };
  throws([] { small().loss<Mse>("mse").loss<L1>("mse"); }, "Experiment.loss<L1>(\"mse\"): a loss named \"mse\" is already there");
  throws([] { small().regularizer<Sw2Ring2d>("ring"); },
         "Experiment.regularizer<SW2_ring2d>(\"ring\"): SW2_ring2d needs a 2-dimensional latent");
  throws([] { small().loss<Mse>("mse", {.flow = GradFlow::Reverse}); }, "phenotype and signature terms only; drop .flow");
  throws([] { small().regularizer<Sw2UniformSupervised>("sup", {.options = {.n_labels = 1, .offsets = {{0, 0, 0}}}}); },
         "needs labels: use it on a phenotype's regularization");
  throws([] { SignatureBlock("cd8", {.lat_dim = 4, .out_dim = 3, .genes = {"CD8A", "CD8B"}}); },
         "SignatureBlock(\"cd8\"): 2 genes but out_dim 3");
  throws([] { PhenoBlock("ct", {.lat_dim = 0, .out_dim = 3}); }, "PhenoBlock(\"ct\"): lat_dim must be in [1,");
  throws([] { small().decoder({.width = 4, .widths = {4, 4}}); }, "Experiment.decoder: set either width");
  throws([] { small().decoder({.dropout_hidden = 1.0}); }, "dropout_hidden must be in [0, 1)");
  throws([] { small().freeze(Frozen::SignatureHead); }, "Experiment.freeze(signature_regressors): name the block");
  throws([] { small().pheno(p_nll()).pheno(p_nll()); }, "Experiment.pheno(\"p\"): a pheno block of that name is already there");
  throws([] { small().signature(SignatureBlock("s", {.lat_dim = 2, .out_dim = 1}).attach_to_signature("t")).build(); },
         "attaches to signature \"t\", which is not there");
  throws([] { Experiment({.genes = 1 << 20, .encoder_neurons = 1 << 20}).build(); }, "parameters, more than the limit");
  throws([] { small().device("tpu"); }, "Experiment.device(\"tpu\"): use \"cpu\" or \"cuda\"");
  CHECK(small().device("cuda").build().device == "cuda");  // the spec says what was asked; the caller picks Dev
}
