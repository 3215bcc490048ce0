// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Config validation at load (issue 18): absurd widths, counts and batch sizes are errors naming their
// key and the limit, never multi-GB allocations; one boolean rule for every upstream boolean; repeated
// gene/cell names and make_names_unique through a whole Session.
#include <sakura/story/demo.hpp>  // first: brings config/json.hpp before the io readers

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <string>
#include <unistd.h>

using namespace sakura;
using sakura::config::Json;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

/// The demo's config and data (tiny: `genes` genes, a few cells) in a fresh folder; the config's path.
fs::path demo_dir(const std::string& name, Index genes = 30) {
  const fs::path d = fs::temp_directory_path() / ("sakura-limits-" + name + "-" + std::to_string(getpid()));
  fs::remove_all(d);
  story::DemoOptions o;
  o.cells = 60;
  o.genes = genes;
  o.cell_types = 3;
  o.ticks = 4;
  o.segment = 2;
  o.out_dir = d.string();
  return story::write_demo_files(o);
}

/// `c` written as a config file next to `config`; its path.
std::string write_config(const fs::path& config, const Json& c, const std::string& name = "edited.json") {
  const fs::path p = config.parent_path() / name;
  std::ofstream(p) << c.dump(2);
  return p.string();
}

struct Fixture {
  fs::path config = demo_dir("cfg");
  Json base = config::read_json_file(config.string());
  /// load_setup of `c` (throws what it throws).
  story::Setup load(const Json& c) const { return story::load_setup(write_config(config, c)); }
};

}  // namespace

TEST_CASE("absurd widths, layer counts and term counts are errors naming the key and the limit", "[config][limits]") {
  const Fixture f;
  REQUIRE_NOTHROW(f.load(f.base));
  Json c = f.base;
  c["main_latent"]["encoder_neurons"] = 4294967346LL;  // used to build Linear(1, 4294967346) in the load probe
  CHECK_THROWS_WITH(f.load(c), Contains("config.main_latent.encoder_neurons must be in [1, 1048576]") &&
                            Contains("got 4294967346"));
  c = f.base;
  c["pre_encoder_config"] = Json{{"hidden_neurons", 2147483647LL}};
  CHECK_THROWS_WITH(f.load(c), Contains("config.pre_encoder_config.hidden_neurons must be in [1, 1048576]"));
  c = f.base;
  c["main_latent"]["decoder_config"] = Json{{"hidden_layers", 2147483647LL}};
  CHECK_THROWS_WITH(f.load(c), Contains("config.main_latent.decoder_config.hidden_layers must be in [1, 1000]"));
  c = f.base;
  c["main_latent"]["latent_dim"] = -3;
  CHECK_THROWS_WITH(f.load(c), Contains("config.main_latent.latent_dim must be in [1, 1048576]") && Contains("got -3"));
  c = f.base;
  c["main_latent"]["decoder_neurons"] = 18446744073709551615ULL;  // used to wrap to -1
  CHECK_THROWS_WITH(f.load(c), Contains("config.main_latent.decoder_neurons is out of range"));
  c = f.base;
  c["main_latent"]["encoder_neurons"] = 1e300;  // converting it to an integer was undefined behaviour
  CHECK_THROWS_WITH(f.load(c), Contains("config.main_latent.encoder_neurons is out of range"));
  // SW2_num_projections used to be truncated to int: 4294967346 became 50 without a word.
  c = f.base;
  c["main_latent"]["regularization"]["uniform_shape_unsupervised"]["SW2_num_projections"] = 4294967346LL;
  CHECK_THROWS_WITH(f.load(c), Contains("config.main_latent.regularization.uniform_shape_unsupervised.SW2_num_projections "
                                 "must be in [0, 65536]"));
  c = f.base;
  c["main_latent"]["loss"]["L2"]["progressive_start_epoch"] = 4294967396LL;
  CHECK_THROWS_WITH(f.load(c), Contains("config.main_latent.loss.L2.progressive_start_epoch must be in [-2147483648"));
}

TEST_CASE("the whole model is bounded: a parameter count beyond 2^30 names its largest layer's key",
          "[config][limits]") {
  const Fixture f;
  Json c = f.base;
  // each width is allowed, but 2^20 x 2^20 hidden layers are 2^40 parameters
  c["main_latent"]["encoder_neurons"] = 1 << 20;
  CHECK_THROWS_WITH(f.load(c), Contains("the model would have") && Contains("more than the limit of 1073741824") &&
                            Contains("1048576 -> 1048576") && Contains("config.main_latent.encoder_neurons"));
  // with the data's genes: 60000 input genes x 20000 neurons is too much, with 1 input gene it is not
  Json ml = f.base;
  ml["main_latent"]["encoder_neurons"] = 20000;
  ml["main_latent"]["decoder_neurons"] = 8;
  const Json empty = Json::object();
  REQUIRE_NOTHROW(config::experiment_from_json(ml, empty, empty, 1));
  CHECK_THROWS_WITH(config::experiment_from_json(ml, empty, empty, 60000),
             Contains("would have 16") && Contains("60000 -> 20000") &&
                 Contains("input genes: 60000"));
}

TEST_CASE("the parameter count the config check uses is the Extractor's", "[config][limits]") {
  // golden configs cover custom pre-encoders/decoders, FC heads, attachments and legacy layouts
  std::size_t checked = 0;
  for (const auto& e : fs::directory_iterator(fs::path(SAKURA_SOURCE_DIR) / "tests" / "golden")) {
    if (e.path().extension() != ".json") continue;
    const Json g = config::read_json_file(e.path().string());
    if (!g.contains("config")) continue;
    const Json pheno = g.value("pheno_config", Json::object()), sig = g.value("signature_config", Json::object());
    for (Index genes : {Index{1}, Index{12}, Index{301}}) {
      const ExperimentSpec spec = config::experiment_from_json(g["config"], pheno, sig, genes);
      Rng init(0);
      Extractor<float> model(spec.model, init);
      INFO(e.path().filename().string() << " with " << genes << " genes");
      CHECK(config::detail::parameter_count(spec.model) == static_cast<double>(model.parameters().total_size()));
      ++checked;
    }
  }
  CHECK(checked >= 30);
}

TEST_CASE("batch sizes and counts are bounded, and a batch beyond 16 GiB is named once the genes are known",
          "[config][limits]") {
  const Fixture f;
  Json c = f.base;
  auto& split = c["story"][0]["split_configs"]["main_lat_reconstruct"];
  split["batch_size"] = 1LL << 40;
  CHECK_THROWS_WITH(f.load(c), Contains("story[0].split_configs.main_lat_reconstruct.batch_size must be in [1, 1048576]"));
  c = f.base;
  c["story"][0]["ticks"] = 1LL << 62;
  CHECK_THROWS_WITH(f.load(c), Contains("story[0].ticks must be in [1, 1099511627776]"));
  c = f.base;
  c["story"][0]["checkpoint_segment"] = 0;
  CHECK_THROWS_WITH(f.load(c), Contains("story[0].checkpoint_segment must be in [1,"));
  // 2^20 cells per batch passes the key's range; times 30 000 genes it would be 120 GiB
  c = f.base;
  c["story"][0]["split_configs"]["main_lat_reconstruct"]["batch_size"] = 1 << 20;
  const story::Setup s = f.load(c);
  REQUIRE_NOTHROW(story::Session(s, {}));  // 30 genes: 2^20 x 28 input genes fit
  // the same batch with 5000 genes is more than 2^32 values
  const fs::path wide = demo_dir("wide", 5000);
  Json w = config::read_json_file(wide.string());
  w["story"][0]["split_configs"]["main_lat_reconstruct"]["batch_size"] = 1 << 20;
  CHECK_THROWS_WITH(story::Session(write_config(wide, w)),
                    Contains("story[0].split_configs.main_lat_reconstruct.batch_size: 1048576 cells x") &&
                        Contains("more than 2^32 values (16 GiB)"));
}

TEST_CASE("every upstream boolean follows one rule: true, false, \"True\" or \"False\"", "[config][bool]") {
  const Fixture f;
  struct Case {
    std::function<void(Json&)> set;
    const char* key;
  };
  const std::vector<Case> cases{
      {[](Json& c) { c["dump_configs"] = 1e-308; }, "config.dump_configs"},  // was taken as False silently
      {[](Json& c) { c["dump_splits"] = "Yes"; }, "config.dump_splits"},      // likewise
      {[](Json& c) { c["preslice_tests"] = "yes"; }, "config.preslice_tests"},
      {[](Json& c) { c["persist_test_set"] = 1; }, "config.persist_test_set"},
      {[](Json& c) { c["dataset"]["pheno_df_na_filter"] = "false"; }, "config.dataset.pheno_df_na_filter"},
      {[](Json& c) { c["dataset"]["expr_mat_pre_slice"] = 0; }, "config.dataset.expr_mat_pre_slice"},
      {[](Json& c) { c["dataset"]["make_names_unique"] = "yes"; }, "config.dataset.make_names_unique"},
      {[](Json& c) { c["story"][0]["checkpoint_save_arch"] = "TRUE"; }, "story[0].checkpoint_save_arch"},
      {[](Json& c) { c["story"][0]["checkpoint_every_epoch"] = Json::array(); }, "story[0].checkpoint_every_epoch"},
  };
  for (const auto& k : cases) {
    INFO(k.key);
    Json c = f.base;
    k.set(c);
    CHECK_THROWS_WITH(f.load(c), Contains(std::string(k.key) + " must be true, false, \"True\" or \"False\""));
  }
  Json c = f.base;
  c["dump_configs"] = false;
  c["dump_splits"] = true;
  c["dataset"]["make_names_unique"] = "True";
  const auto s = f.load(c);
  CHECK_FALSE(s.dump_configs);
  CHECK(s.dump_splits);
  CHECK(s.dataset.make_names_unique);
}

TEST_CASE("sakura-train runs on the CPU and says so when the config asks for another device", "[config][device]") {
  const Fixture f;
  Json c = f.base;
  c["device"] = "cuda:0";  // upstream's torch.device strings
  std::ostringstream notes;
  story::SessionOptions so;
  so.log = &notes;
  story::Session s(story::load_setup(write_config(f.config, c), so), so);
  CHECK_THAT(notes.str(), Contains("config.device \"cuda:0\" ignored: sakura-train runs on the CPU"));
  story::Runner r(s);
  r.run();  // the whole story, on Controller<float> (the CPU)
  CHECK(r.ticks_run() > 0);
}

TEST_CASE("phenotype options: bins bounded, booleans and strings checked", "[config][pheno]") {
  data::Dataset<float> ds;
  ds.cells = {"a", "b", "c"};
  ds.genes = {"g"};
  ds.expr.rows = 3;
  ds.expr.cols = 1;
  ds.expr.indptr.assign(4, 0);
  ds.pheno = {{"x", {"1", "2", "inf"}}, {"y", {"1", "2", "3"}}};
  auto fit = [&](const char* json) { return data::fit_pheno("p", Json::parse(json), ds); };
  CHECK_THROWS_WITH(fit(R"({"type": "numerical", "pheno_df_keys": ["x"], "post_procedure": [{"type": "ToTensor"}]})"),
             Contains("column 'x' has 'inf' for cell 'c'"));
  CHECK_THROWS_WITH(fit(R"({"type": "numerical", "pheno_df_keys": ["y"],
                     "post_procedure": [{"type": "ToKBins", "n_bins": 4294967301}]})"),  // was truncated to 5
             Contains("post_procedure[0].n_bins must be in [2, 65536]"));
  CHECK_THROWS_WITH(fit(R"({"type": "numerical", "pheno_df_keys": ["y"],
                     "post_procedure": [{"type": "ToKBins", "strategy": 3}]})"),
             Contains("post_procedure[0].strategy must be a string"));
  CHECK_THROWS_WITH(fit(R"({"type": "numerical", "pheno_df_keys": ["y"],
                     "post_procedure": [{"type": "ToBinary", "inverse": "yes"}]})"),  // was taken as False
             Contains("post_procedure[0].inverse must be true, false, \"True\" or \"False\""));
  const auto t = data::fit_pheno("p", Json::parse(R"({"type": "numerical", "pheno_df_keys": ["y"],
      "post_procedure": [{"type": "ToBinary", "threshold": 1.5, "inverse": true}]})"), ds);
  CHECK(t.values == std::vector<float>{1, 0, 0});
}

TEST_CASE("repeated gene names through a Session: an error, or renamed with make_names_unique, and an ambiguous "
          "signature gene is always an error",
          "[config][names]") {
  const fs::path cfg = demo_dir("names");
  const fs::path genes = cfg.parent_path() / "data" / "genes.csv";
  std::string text;
  {
    std::ifstream in(genes);
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  auto with_genes = [&](const std::string& from, const std::string& to) {
    std::string t = text;
    const auto at = t.find("\"" + from + "\"");
    REQUIRE(at != std::string::npos);
    t.replace(at, from.size() + 2, "\"" + to + "\"");
    std::ofstream(genes) << t;
  };
  Json c = config::read_json_file(cfg.string());
  auto session = [&](bool unique) {
    c["dataset"]["make_names_unique"] = unique;
    std::ofstream(cfg) << c.dump(2);
    return story::Session(cfg.string());
  };
  with_genes("G9", "G5");  // G5 twice, no signature lists it
  CHECK_THROWS_WITH(session(false), Contains("genes.csv: gene name 'G5' occurs 2 times: rows 6 (line 7) and 10 (line 11)") &&
                                        Contains("\"make_names_unique\": true"));
  CHECK_NOTHROW(session(true));
  with_genes("G9", "CD8B");  // the signature's CD8B twice: ambiguous even when renamed
  CHECK_THROWS_WITH(session(true), Contains("signature 'cd8' lists gene 'CD8B', which the data set's gene names repeat") &&
                                       Contains("rows 2 and 10"));
}
