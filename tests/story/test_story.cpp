// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// sakura-train's layers: phenotype encoding, splits, samplers, loader, checkpoints, story config
// validation, the story runner (resume bit-identity, hybrid sum), the real pbmc5k configs, the demo.
#include <sakura/story/demo.hpp>  // first: brings config/json.hpp before the io readers

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <unistd.h>

#if defined(SAKURA_WITH_HDF5)
#include <sakura/io/h5ad_convert.hpp>
#include <sakura/io/synthetic_h5ad.hpp>
#endif

using namespace sakura;
using sakura::config::Json;
namespace fs = std::filesystem;

// Counts heap allocations while enabled (the training-loop test below).
#include "support/counting_new.hpp"
namespace {
std::atomic<bool>& g_count = sakura::test::count_allocations;
std::atomic<long>& g_allocs = sakura::test::allocations;
}  // namespace

namespace {

/// A fresh, empty scratch directory per test.
fs::path scratch(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("sakura-story-" + name + "-" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

data::Dataset<float> small_dataset(const std::vector<std::string>& cells, const std::vector<std::vector<std::string>>& cols,
                             const std::vector<std::string>& names) {
  data::Dataset<float> ds;
  ds.cells = cells;
  ds.genes = {"g0"};
  ds.expr.rows = static_cast<Index>(cells.size());
  ds.expr.cols = 1;
  ds.expr.indptr.assign(cells.size() + 1, 0);
  for (std::size_t j = 0; j < cols.size(); ++j) ds.pheno.push_back({names[j], cols[j]});
  return ds;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const sakura::Error& e) {
    return e.what();
  }
  return "(no error)";
}

/// Synthetic data (4 types) written as upstream's files into dir; returns the dataset.
data::Dataset<float> write_synthetic(const fs::path& dir, Index cells, Index genes, std::uint64_t seed = 7) {
  fs::create_directories(dir);
  auto ds = data::to_dataset(data::make_synthetic({.cells = cells, .genes = genes, .cell_types = 4, .seed = seed}));
  io::write_mtx_dataset(ds, dir.string());
  return ds;
}

}  // namespace

// ====================================================================== phenotypes
TEST_CASE("categorical phenotypes are coded once over the whole column, with the configured order", "[pheno]") {
  const auto ds = small_dataset({"c1", "c2", "c3", "c4"}, {{"T", "B", "NK", "T"}}, {"celltype"});
  const Json meta = Json::parse(R"({"type": "categorical", "pheno_df_key": "celltype", "order": ["B", "T", "NK"],
                                    "post_procedure": [{"type": "ToOrdinal"}, {"type": "ToTensor"}]})");
  const auto t = data::fit_pheno("ct", meta, ds);
  CHECK(t.labels == std::vector<std::int64_t>{1, 0, 2, 1});
  CHECK(t.classes == std::vector<std::string>{"B", "T", "NK"});
  CHECK_FALSE(t.has_values());

  // no order: upstream's 'auto' categories, sorted, fitted on the whole data set (SPEC §9)
  Json automatic = meta;
  automatic.erase("order");
  CHECK(data::fit_pheno("ct", automatic, ds).labels == std::vector<std::int64_t>{2, 0, 1, 2});

  Json onehot = meta;
  onehot["post_procedure"] = Json::parse(R"([{"type": "ToOnehot"}])");
  const auto o = data::fit_pheno("ct", onehot, ds);
  CHECK(o.width == 3);
  CHECK(o.values == std::vector<float>{0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0});
}

TEST_CASE("phenotype errors name the phenotype, column, value, cell and row", "[pheno]") {
  const auto ds = small_dataset({"c1", "c2", "c3"}, {{"T", "X", ""}, {"1.5", "abc", "2"}}, {"celltype", "score"});
  const Json meta = Json::parse(R"({"type": "categorical", "pheno_df_key": "celltype", "order": ["T", "B"],
                                    "post_procedure": [{"type": "ToOrdinal"}]})");
  auto e = error_of([&] { data::fit_pheno("ct", meta, ds); });
  CHECK_THAT(e, Catch::Contains("pheno_meta.ct") && Catch::Contains("'X'") && Catch::Contains("cell 'c2'") &&
                    Catch::Contains("row 2") && Catch::Contains("'T', 'B'"));
  Json missing = meta;
  missing["order"] = Json::array({"T", "X"});
  e = error_of([&] { data::fit_pheno("ct", missing, ds); });
  CHECK_THAT(e, Catch::Contains("missing value (NA)") && Catch::Contains("cell 'c3'"));
  missing["order"] = Json::array({"T", "X", "NA"});  // NA listed in the order: it is a category
  CHECK(data::fit_pheno("ct", missing, ds).labels == std::vector<std::int64_t>{0, 1, 2});

  const Json num = Json::parse(R"({"type": "numerical", "pheno_df_keys": ["score"], "post_procedure": [{"type": "ToTensor"}]})");
  CHECK_THAT(error_of([&] { data::fit_pheno("s", num, ds); }),
             Catch::Contains("numerical column 'score'") && Catch::Contains("'abc'") && Catch::Contains("cell 'c2'"));
  Json nocol = num;
  nocol["pheno_df_keys"] = Json::array({"nope"});
  CHECK_THAT(error_of([&] { data::fit_pheno("s", nocol, ds); }),
             Catch::Contains("'nope' not found") && Catch::Contains("'celltype', 'score'"));
  Json text = meta;
  text["post_procedure"] = Json::array();
  CHECK_THAT(error_of([&] { data::fit_pheno("ct", text, ds); }), Catch::Contains("ToOrdinal"));
}

TEST_CASE("numerical phenotypes, binning and binarising are fitted on the whole column", "[pheno]") {
  const auto ds = small_dataset({"a", "b", "c", "d", "e", "f"}, {{"0", "1", "2", "3", "4", "10"}}, {"n"});
  const Json num = Json::parse(R"({"type": "numerical", "pheno_df_keys": ["n"], "post_procedure": [{"type": "ToTensor"}]})");
  const auto t = data::fit_pheno("n", num, ds);
  CHECK(t.width == 1);
  CHECK(t.values == std::vector<float>{0, 1, 2, 3, 4, 10});
  CHECK(t.labels == std::vector<std::int64_t>{0, 1, 2, 3, 4, 10});  // whole numbers double as labels

  Json bins = num;
  bins["type"] = "categorical";
  bins.erase("pheno_df_keys");
  bins["pheno_df_key"] = "n";
  bins["post_procedure"] = Json::parse(R"([{"type": "ToKBins", "n_bins": 2, "encode": "ordinal", "strategy": "uniform"}])");
  CHECK(data::fit_pheno("n", bins, ds).labels == std::vector<std::int64_t>{0, 0, 0, 0, 0, 1});  // edges 0, 5, 10
  bins["post_procedure"][0]["strategy"] = "quantile";
  CHECK(data::fit_pheno("n", bins, ds).labels == std::vector<std::int64_t>{0, 0, 0, 1, 1, 1});  // median 2.5
  bins["post_procedure"][0]["strategy"] = "kmeans";
  CHECK_THAT(error_of([&] { data::fit_pheno("n", bins, ds); }), Catch::Contains("kmeans"));

  Json bin = num;
  bin["post_procedure"] = Json::parse(R"([{"type": "ToBinary", "threshold": 2.5, "scale_factor": 2}])");
  CHECK(data::fit_pheno("n", bin, ds).values == std::vector<float>{0, 0, 0, 2, 2, 2});
}

// ====================================================================== splits and samplers
TEST_CASE("k-bin labelling and incremental splits follow upstream's semantics, seeded", "[split]") {
  std::vector<char> base(1003, 1);
  base[5] = base[77] = base[500] = 0;  // excluded cells stay 0
  const auto bins = data::random_k_bin_labels(base, 10, 3407);
  std::map<int, int> count;
  for (int b : bins) ++count[b];
  CHECK(count[0] == 3);
  for (int b = 1; b <= 10; ++b) CHECK(count[b] == 100);  // 1000 = 10 x 100, no remainder
  CHECK(bins == data::random_k_bin_labels(base, 10, 3407));
  CHECK(bins != data::random_k_bin_labels(base, 10, 3408));
  const auto m = data::incremental_train_test_split(bins, 5);
  std::size_t train = 0, test = 0;
  for (std::size_t i = 0; i < bins.size(); ++i) {
    CHECK_FALSE((m.train[i] && m.test[i]));
    train += m.train[i];
    test += m.test[i];
    if (bins[i] == 0) CHECK((!m.train[i] && !m.test[i]));
  }
  CHECK(train == 500);
  CHECK(test == 500);
  // remainder: bins 1..(n % k) get one more
  const auto r = data::random_k_bin_labels(std::vector<char>(13, 1), 10, 1);
  CHECK(std::count(r.begin(), r.end(), 1) == 2);
  CHECK(std::count(r.begin(), r.end(), 4) == 1);
}

TEST_CASE("the batch sampler visits every cell once per pass and continues exactly from its state", "[sampler]") {
  std::vector<Index> rows;
  for (Index i = 0; i < 23; ++i) rows.push_back(i * 3);
  data::BatchSampler s(rows, 5, 42);
  CHECK(s.batches() == 5);
  CHECK(s.exhausted());
  s.begin_epoch();
  std::vector<Index> seen;
  std::vector<std::size_t> sizes;
  while (!s.exhausted()) {
    auto b = s.take();
    sizes.push_back(b.size());
    seen.insert(seen.end(), b.begin(), b.end());
  }
  CHECK(sizes == std::vector<std::size_t>{5, 5, 5, 5, 3});  // drop_last false: a short last batch
  std::sort(seen.begin(), seen.end());
  CHECK(seen == rows);

  s.begin_epoch();
  s.take();
  const auto st = s.state();
  data::BatchSampler copy(rows, 5, 999);
  copy.set_state(st);
  for (int pass = 0; pass < 3; ++pass) {
    while (!s.exhausted()) {
      auto a = s.take();
      auto b = copy.take();
      CHECK(std::vector<Index>(a.begin(), a.end()) == std::vector<Index>(b.begin(), b.end()));
    }
    s.begin_epoch();
    copy.begin_epoch();
  }
  auto bad = st;
  bad.order[0] = 1;  // not a row of the split
  CHECK_THROWS_WITH(copy.set_state(bad), Catch::Contains("not a permutation"));
  // states that would index outside the pass, divide by nothing or overflow the pass counter are
  // rejected, naming the field, and the sampler keeps its state
  const auto kept = copy.state();
  auto with = [&](auto edit) {
    auto b = st;
    edit(b);
    return b;
  };
  CHECK_THROWS_WITH(copy.set_state(with([](auto& b) { b.position = -1; })), Catch::Contains("field position"));
  CHECK_THROWS_WITH(copy.set_state(with([](auto& b) { b.position = 6; })), Catch::Contains("outside [0, 5]"));
  CHECK_THROWS_WITH(copy.set_state(with([](auto& b) { b.epochs = std::numeric_limits<std::int64_t>::max(); })),
                    Catch::Contains("field epochs"));
  CHECK_THROWS_WITH(copy.set_state(with([](auto& b) { b.epochs = 0; })), Catch::Contains("field epochs"));
  CHECK_THROWS_WITH(copy.set_state(with([](auto& b) { b.order.clear(); })), Catch::Contains("field position"));
  CHECK_THROWS_WITH(copy.set_state(with([](auto& b) { b.rng.lane = 9; }), "saved", "the fix"),
                    Catch::Contains("saved, field rng.lane") && Catch::EndsWith("; the fix"));
  CHECK(copy.state().order == kept.order);
  CHECK(copy.state().position == kept.position);
  CHECK(copy.state().rng == kept.rng);
  data::BatchSampler dl(rows, 5, 1, true);
  CHECK(dl.batches() == 4);
}

// ====================================================================== loader
TEST_CASE("the loader fills batches in place: input genes, signature targets, phenotypes", "[loader]") {
  auto ds = data::to_dataset(data::make_synthetic({.cells = 50, .genes = 40, .cell_types = 3, .seed = 5}));
  const auto dense = data::make_synthetic({.cells = 50, .genes = 40, .cell_types = 3, .seed = 5}).expr;
  const Json meta = Json::parse(R"({"type": "categorical", "pheno_df_key": "cell_type",
                                    "post_procedure": [{"type": "ToOrdinal"}]})");
  std::vector<data::PhenoTable> ph{data::fit_pheno("ct", meta, ds)};
  std::vector<data::SignatureRequest> sigs{{"cd8", {"CD8B", "CD8A"}, true}, {"g", {"G5"}, false}};
  const auto d = data::prepare_training_data(std::move(ds), sigs, ph);
  REQUIRE(d.n_genes() == 38);  // CD8A and CD8B excluded from the input
  CHECK(d.genes[0] == "G2");
  data::Loader<float> loader(d);
  auto b = loader.make_batch(8);
  const std::vector<Index> rows{7, 3, 41};
  loader.fill(rows, b);
  REQUIRE(b.expr.rows() == 3);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    for (Index g = 0; g < 38; ++g) CHECK(b.expr(static_cast<Index>(i), g) == dense(rows[i], g + 2));
    CHECK(b.signature_values("cd8")(static_cast<Index>(i), 0) == dense(rows[i], 1));  // CD8B first, as listed
    CHECK(b.signature_values("cd8")(static_cast<Index>(i), 1) == dense(rows[i], 0));
    CHECK(b.signature_values("g")(static_cast<Index>(i), 0) == dense(rows[i], 5));
  }
  CHECK(b.labels("ct").size() == 3);
  const auto* data_before = b.expr.data();
  loader.fill(std::vector<Index>{1, 2, 3, 4, 5, 6, 7, 8}, b);
  CHECK(b.expr.data() == data_before);  // refilled in place

  auto ds2 = data::to_dataset(data::make_synthetic({.cells = 10, .genes = 40, .cell_types = 3}));
  CHECK_THROWS_WITH(data::prepare_training_data(std::move(ds2), {{"cd8", {"CD8A", "CD8Z"}, false}}, {}),
                    Catch::Contains("'CD8Z' (signature 'cd8')"));
}

// ====================================================================== checkpoints
TEST_CASE("checkpoints round-trip the controller bit for bit and reject damaged files", "[checkpoint]") {
  const fs::path dir = scratch("ckpt");
  const Json cfg = Json::parse(R"({"main_latent": {"encoder_neurons": 8, "decoder_neurons": 8, "latent_dim": 3,
      "loss": {"mse": {"type": "MSE", "init_weight": 1.0, "progressive_const": 1.1, "progressive_start_epoch": 1}},
      "regularization": {"sw2": {"type": "SW2_uniform", "init_weight": 0.1, "progressive_const": 1.0,
        "progressive_start_epoch": 1, "uniform_low": -1, "uniform_high": 1}}},
    "optimizer": {"type": "RMSProp", "RMSProp_lr": 0.01, "RMSProp_alpha": 0.9, "RMSProp_momentum": 0.5}})");
  Controller<float> a(config::experiment_from_json(cfg, {}, {}, 6));
  Batch<float> b(Tensor<float>(5, 6));
  for (Index i = 0; i < b.expr.size(); ++i) b.expr[i] = static_cast<float>((i * 7) % 5) * 0.3f;
  for (int i = 0; i < 3; ++i) a.train(b);
  a.next_epoch();
  a.tick();
  a.rng().normal();  // leaves Box-Muller's second normal pending: it must survive the round trip
  REQUIRE(a.rng().state().has_spare);
  io::Checkpoint ck = io::capture(a);
  ck.config = "{}";
  ck.story = {2, 17, 1, 3, false, 12345};
  ck.samplers.push_back({"main", {Rng(9).state(), {3, 1, 2}, 1, 4}});
  const std::string path = (dir / "a.ckpt").string();
  io::write_checkpoint(path, ck);
  const io::Checkpoint back = io::read_checkpoint(path);
  CHECK(back.story.tick == 17);
  CHECK(back.story.log_bytes == 12345);
  CHECK(back.samplers.at(0).state.order == std::vector<Index>{3, 1, 2});
  CHECK(back.params.size() == a.model().parameters().all().size());

  Controller<float> c(config::experiment_from_json(cfg, {}, {}, 6));
  io::restore(c, back, path);
  CHECK(c.rng().state() == a.rng().state());
  for (int i = 0; i < 4; ++i) {
    const double ta = a.train(b).total, tc = c.train(b).total;
    CHECK(ta == tc);
  }
  auto pa = a.model().parameters().all().begin();
  for (auto& p : c.model().parameters().all()) {
    CHECK(std::equal(p.value.begin(), p.value.end(), pa->value.begin()));
    ++pa;
  }
  CHECK(c.term(BlockKind::Main, "", TermGroup::Loss, "mse").weight == a.term(BlockKind::Main, "", TermGroup::Loss, "mse").weight);

  // damage: a flipped byte, a truncated file, not a checkpoint, another model
  std::string bytes = slurp(path);
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x40;
  write(dir / "flipped.ckpt", flipped);
  CHECK_THROWS_WITH(io::read_checkpoint((dir / "flipped.ckpt").string()),
                    Catch::Contains("flipped.ckpt") && Catch::Contains("record"));
  write(dir / "short.ckpt", bytes.substr(0, bytes.size() - 30));
  CHECK_THROWS_WITH(io::read_checkpoint((dir / "short.ckpt").string()), Catch::Contains("short.ckpt"));
  write(dir / "junk.ckpt", "PK\x03\x04 this is a torch zip");
  CHECK_THROWS_WITH(io::read_checkpoint((dir / "junk.ckpt").string()), Catch::Contains("not a sakura checkpoint"));
  Controller<float> other(config::experiment_from_json(cfg, {}, {}, 7));
  CHECK_THROWS_WITH(io::restore(other, back, path),
                    Catch::Contains("a.ckpt") && Catch::Contains("model.pre_encoder") && Catch::Contains("[8, 7]"));
}

// ====================================================================== the real configs
namespace {
const fs::path kConfigs = fs::path(SAKURA_SOURCE_DIR) / "examples" / "configs";

/// A working directory laid out as the pbmc5k config expects (its paths are relative to it).
fs::path pbmc5k_workdir(const std::string& name, bool with_data, Index cells = 600, Index genes = 300) {
  const fs::path w = scratch(name);
  fs::create_directories(w / "documentation/VT_PBMC_CD4CD8_0.01_1");
  fs::copy_file(kConfigs / "pbmc5k_signature_config.json", w / "documentation/VT_PBMC_CD4CD8_0.01_1/signature_config.json");
  if (with_data) {
    const fs::path d = w / "data/docuPBMC";
    write_synthetic(d, cells, genes);
    fs::rename(d / "matrix.mtx", d / "lognorm_hv10k.mtx");
    fs::rename(d / "genes.csv", d / "genenames_hv10k.csv");
    fs::rename(d / "cells.csv", d / "cell_names.csv");
    fs::rename(d / "pheno.csv", d / "pheno_df.csv");
  }
  return w;
}
}  // namespace

TEST_CASE("the unmodified pbmc5k config fails at load, naming the split, cd4cd8 and what exists", "[config]") {
  const fs::path w = pbmc5k_workdir("cd4cd8", false);  // no data files: the story is checked first
  story::SessionOptions so;
  so.base_dir = w.string();
  const std::string e = error_of([&] { story::Session s((kConfigs / "pbmc5k_config.json").string(), so); });
  CHECK_THAT(e, Catch::Contains("story[0].split_configs.cd8_focused.selected_signature") &&
                    Catch::Contains("'cd4cd8'") && Catch::Contains("configured: cd8"));
}

TEST_CASE("the pbmc5k config with cd4cd8 corrected trains on tutorial-shaped data from mtx + csv", "[config][run]") {
  const fs::path w = pbmc5k_workdir("pbmc5k", true);
  Json cfg = config::read_json_file((kConfigs / "pbmc5k_config.json").string());
  auto& item = cfg["story"][0];
  auto& sel = item["split_configs"]["cd8_focused"]["selected_signature"];
  sel["cd8"] = sel["cd4cd8"];
  sel.erase("cd4cd8");
  item["ticks"] = 60;  // shorter than the tutorial's 5000, same story otherwise
  item["test_segment"] = 30;
  item["checkpoint_segment"] = 30;
  write(w / "config.json", cfg.dump(2));
  story::SessionOptions so;
  so.base_dir = w.string();
  story::Session s((w / "config.json").string(), so);
  CHECK(s.data().n_genes() == 300);
  CHECK(s.splits().rows("overall_train").size() == 300);  // train_dec 5 of 10 bins
  story::Runner r(s);
  r.run();
  const fs::path log = w / "documentation/VT_PBMC_CD4CD8_0.01_1/log";
  const std::string losses = slurp(log / "losses.tsv");
  CHECK_THAT(losses, Catch::Contains("\thybrid_main_latent_loss_L2\t") &&
                         Catch::Contains("\thybrid_signature_cd8_loss_raw_regression_MSE\t") &&
                         Catch::Contains("\toverall_test_main_latent_regularization_uniform_shape_unsupervised\t"));
  CHECK(fs::exists(log / "checkpoint__tick_30.ckpt"));
  CHECK(fs::exists(log / "checkpoint__tick_60.ckpt"));
  // by the first test (tick 30) each split took 15 batches = 5 passes of 3; a pass ends (epoch_end)
  // when the next batch is asked for, so 4 per split: the controller is at epoch 8
  const fs::path csv = log / "8_overall_test_all_latent.csv";
  REQUIRE(fs::exists(csv));
  std::ifstream in(csv);
  std::string header;
  std::getline(in, header);
  CHECK(header.rfind("cell,main.1,main.2,", 0) == 0);
  CHECK_THAT(header, Catch::Contains(",main.50,cd8.1,") && Catch::EndsWith(",cd8.50"));
  CHECK(fs::exists(log / "signature_config.json"));
  CHECK(fs::exists(log / "splits.csv"));
}

// ====================================================================== story runner
namespace {
/// A compact config exercising every action: two interleaved splits (main; signatures + phenotype),
/// a train action, a hybrid "sum" action and a test action, with tests, logs and checkpoints.
fs::path resume_workdir() {
  const fs::path w = scratch("resume");
  write_synthetic(w / "data", 240, 48);
  write(w / "signature.json", R"({
    "cd8": {"signature_list": ["CD8A", "CD8B"], "exclude_from_input": "True", "signature_lat_dim": 3,
            "signature_out_dim": 2, "model": {"type": "LinRegressor"},
            "loss": {"mse": {"type": "MSE", "init_weight": 0.5, "progressive_const": 0.1, "progressive_start_epoch": 2,
                             "progressive_mode": "increment", "max_weight": 1.0}},
            "regularization": {"l2": {"type": "L2_regularization", "init_weight": 0.01, "progressive_const": 1.0,
                                      "progressive_start_epoch": 1}}},
    "g": {"signature_list": ["G3"], "signature_lat_dim": 4, "signature_out_dim": 1,
          "model": {"type": "FCRegressor", "hidden_neurons": 5, "attach": "True", "attach_to": "main_lat"},
          "loss": {"l1": {"type": "L1", "init_weight": 1.0, "progressive_const": 1.0, "progressive_start_epoch": 1}}}})");
  write(w / "pheno.json", R"({
    "ct": {"type": "categorical", "pheno_df_key": "cell_type", "order": ["CD8 T", "type1", "type2", "type3"],
           "post_procedure": [{"type": "ToOrdinal"}, {"type": "ToTensor"}],
           "split": {"type": "auto", "base": "overall_train", "seed": 11, "train_dec": 7},
           "pheno_lat_dim": 2, "pheno_out_dim": 4, "model": {"type": "LinClassifier"},
           "loss": {"nll": {"type": "NLL", "init_weight": 1.0, "progressive_const": 1.05, "progressive_start_epoch": 1}},
           "regularization": {"sw": {"type": "SW2_uniform_supervised", "init_weight": 0.01, "progressive_const": 1.0,
             "progressive_start_epoch": 1, "uniform_low": -1, "uniform_high": 1, "uniform_n_labels": 4,
             "uniform_label_offsets": [[0, 0], [1, 1], [2, 2], [3, 3]], "SW2_num_projections": 10}}}})");
  Json cfg = Json::parse(R"({
    "log_path": "log/", "rnd_seed": 99, "reproducible": "True", "dump_configs": "True", "dump_splits": "True",
    "dataset": {"type": "rna_count_sparse", "gene_expr_MM_path": "data/matrix.mtx", "gene_name_csv_path": "data/genes.csv",
                "cell_name_csv_path": "data/cells.csv", "pheno_csv_path": "data/pheno.csv",
                "signature_config_path": "signature.json", "pheno_meta_path": "pheno.json",
                "selected_signature": ["cd8", "g"], "selected_pheno": ["ct"]},
    "overall_train_test_split": {"type": "auto", "train_dec": 6, "seed": 5},
    "main_latent": {"encoder_neurons": 16, "decoder_neurons": 16, "latent_dim": 4,
      "encoder_config": {"hidden_layers": 1, "dropout": "True", "dropout_input": "True", "dropout_input_p": 0.1},
      "loss": {"L2": {"type": "MSE", "init_weight": 1.0, "progressive_const": 1.0, "progressive_start_epoch": 100}},
      "regularization": {"u": {"type": "SW2_uniform", "init_weight": 0.001, "progressive_const": 1.5,
        "progressive_start_epoch": 1, "max_weight": 0.1, "SW2_num_projections": 8, "uniform_low": -2, "uniform_high": 2}}},
    "optimizer": {"type": "RMSProp", "RMSProp_lr": 0.002, "RMSProp_alpha": 0.9, "RMSProp_momentum": 0.3,
                  "RMSProp_weight_decay": 0.001},
    "story": [
      {"action": "train_hybrid", "ticks": 40, "hybrid_mode": "interleave", "prog_loss_weight_mode": "epoch_end",
       "split_configs": {
         "main": {"use_split": "overall_train", "batch_size": 32, "train_main_latent": "True", "train_pheno": "False",
                  "train_signature": "False"},
         "heads": {"use_split": "pheno_ct_train", "batch_size": 25, "train_main_latent": "False", "train_pheno": "True",
                   "train_signature": "True", "selected_signature": ["cd8"],
                   "selected_pheno": {"ct": {"loss": "*", "regularization": "*"}}}},
       "make_logs": "True", "log_prefix": "hyb", "save_raw_loss": "True",
       "log_loss_groups": ["loss", "regularization", "loss_raw"],
       "perform_test": "True", "test_segment": 10, "perform_checkpoint": "True", "checkpoint_segment": 10,
       "checkpoint_prefix": "hyb",
       "tests": [{"on_split": "overall_test", "make_logs": "True", "log_prefix": "t", "dump_latent": "True",
                  "latent_prefix": "test_latent"},
                 {"on_split": "all", "dump_latent": "True", "latent_prefix": "all", "dump_predicted_phenos": "True",
                  "dump_predicted_signatures": "True", "dump_pre_encoder_output": "True"}]},
      {"action": "train", "use_split": "overall_train", "batch_size": 64, "epochs": 2, "train_main_latent": "True",
       "train_pheno": "False", "train_signature": "True", "make_logs": "True", "log_prefix": "train",
       "test_on_segment": "True", "test_segment": 2, "checkpoint_on_segment": "True", "checkpoint_segment": 2,
       "checkpoint_prefix": "trn", "detach": "True", "detach_from": "pre_encoder",
       "tests": [{"on_split": "overall_test", "make_logs": "True", "dump_latent": "True", "latent_prefix": "trn"}]},
      {"action": "train_hybrid", "ticks": 12, "hybrid_mode": "sum", "prog_loss_weight_mode": "on_test",
       "loss_prog_on_test": {"prog_main": "True", "train_pheno": "True", "train_signature": "False"},
       "split_configs": {
         "a": {"use_split": "overall_train", "batch_size": 40, "train_main_latent": "True", "train_pheno": "False",
               "train_signature": "True"},
         "b": {"use_split": "pheno_ct_train", "batch_size": 30, "train_main_latent": "False", "train_pheno": "True",
               "train_signature": "False"}},
       "make_logs": "True", "log_prefix": "sum", "perform_test": "True", "test_segment": 4,
       "perform_checkpoint": "True", "checkpoint_segment": 4, "checkpoint_prefix": "sum",
       "tests": [{"on_split": "pheno_ct_test", "make_logs": "True", "dump_latent": "True", "latent_prefix": "ct"}]},
      {"action": "test", "on_split": "all", "make_logs": "True", "log_prefix": "final", "dump_latent": "True",
       "latent_prefix": "final", "dump_reconstructed_output": "True", "reconstructed_output_naming": "genenames"}
    ]})");
  write(w / "config.json", cfg.dump(2));
  return w;
}

struct Outcome {
  io::Checkpoint state;
  std::map<std::string, std::string> files;  // log dir contents
};

Outcome outcome(story::Session& s, const fs::path& w) {
  Outcome o;
  o.state = io::capture(s.controller());
  for (const auto& e : fs::directory_iterator(w / "log")) o.files[e.path().filename().string()] = slurp(e.path());
  return o;
}

void require_same(const Outcome& a, const Outcome& b) {
  CHECK(a.state.epoch == b.state.epoch);
  CHECK(a.state.tick == b.state.tick);
  CHECK(a.state.rng == b.state.rng);
  REQUIRE(a.state.params.size() == b.state.params.size());
  for (std::size_t i = 0; i < a.state.params.size(); ++i) {
    const auto& p = a.state.params[i];
    const auto& q = b.state.params[i];
    INFO(p.name);
    CHECK(p.value == q.value);  // bitwise: doubles widened from the same floats
    CHECK(p.grad == q.grad);
    CHECK(p.has_grad == q.has_grad);
    CHECK(p.square_avg == q.square_avg);
    CHECK(p.momentum == q.momentum);
  }
  REQUIRE(a.state.terms.size() == b.state.terms.size());
  for (std::size_t i = 0; i < a.state.terms.size(); ++i) {
    CHECK(a.state.terms[i].weight == b.state.terms[i].weight);
    CHECK(a.state.terms[i].epoch == b.state.terms[i].epoch);
  }
  std::vector<std::string> na, nb;
  for (auto& [k, v] : a.files) na.push_back(k);
  for (auto& [k, v] : b.files) nb.push_back(k);
  CHECK(na == nb);
  for (auto& [k, v] : a.files) {
    INFO(k);
    auto it = b.files.find(k);
    if (it != b.files.end()) CHECK((v == it->second));
  }
}
}  // namespace

namespace {
/// Runs `config` in a fresh session until `stop` ticks; the newest checkpoint it wrote.
std::string run_until(const std::string& config, const story::SessionOptions& so, std::int64_t stop) {
  std::string ckpt;
  story::Session s(config, so);
  story::RunnerOptions ro;
  ro.max_ticks = stop;
  story::Runner r(s, ro);
  r.run();
  REQUIRE(r.stopped());
  for (const auto& f : r.written())
    if (f.ends_with(".ckpt")) ckpt = f;
  REQUIRE_FALSE(ckpt.empty());
  return ckpt;
}
}  // namespace

TEST_CASE("a run stopped at any checkpoint and resumed in a fresh session ends bit-identical", "[run][resume]") {
  const fs::path w = resume_workdir();
  story::SessionOptions so;
  so.base_dir = w.string();
  const std::string config = (w / "config.json").string();
  Outcome full;
  {
    story::Session s(config, so);
    story::Runner r(s);
    r.run();
    full = outcome(s, w);
  }
  REQUIRE(full.files.count("losses.tsv"));
  CHECK(full.files.count("hyb_tick_40.ckpt"));
  CHECK(full.files.count("trn_tick_4.ckpt"));
  CHECK(full.files.count("sum_tick_12.ckpt"));
  const std::string& losses = full.files["losses.tsv"];
  CHECK_THAT(losses, Catch::Contains("\thyb_pheno_ct_loss_nll\t") && Catch::Contains("\thyb_signature_cd8_loss_raw_mse\t") &&
                         Catch::Contains("\tt_main_latent_regularization_u\t") && Catch::Contains("\tsum_pheno_ct_loss_nll\t") &&
                         Catch::Contains("\tfinal_signature_g_loss_l1\t"));
  CHECK_THAT(losses, !Catch::Contains("hyb_signature_g_"));  // the heads split selects cd8 only
  // "all" test: main, pre-encoder, phenotype latent + output, signature latents + outputs
  bool saw_all = false;
  for (auto& [name, text] : full.files)
    if (name.find("_all.csv") != std::string::npos) {
      saw_all = true;
      const std::string header = text.substr(0, text.find('\n'));
      CHECK(header ==
            "cell,main.1,main.2,main.3,main.4,lat_pre.1,lat_pre.2,lat_pre.3,lat_pre.4,lat_pre.5,lat_pre.6,lat_pre.7,"
            "lat_pre.8,lat_pre.9,lat_pre.10,lat_pre.11,lat_pre.12,lat_pre.13,lat_pre.14,lat_pre.15,lat_pre.16,ct.1,ct.2,"
            "ct.out.1,ct.out.2,ct.out.3,ct.out.4,cd8.1,cd8.2,cd8.3,g.1,g.2,g.3,g.4,cd8.out.1,cd8.out.2,g.out.1");
    }
  CHECK(saw_all);

  // stop after the checkpoint at a given total tick, resume from it in a fresh session
  for (std::int64_t stop : {10, 35, 40, 42, 44, 46, 50, 53, 58}) {
    DYNAMIC_SECTION("stopped after tick " << stop) {
      fs::remove_all(w / "log");
      const std::string ckpt = run_until(config, so, stop);
      // the interrupted process may have logged past its last checkpoint; resume must drop that
      std::ofstream(w / "log" / "losses.tsv", std::ios::app) << "999\tjunk\t1\n";
      story::Session s(config, so);
      story::Runner r(s);
      r.resume(ckpt);
      CHECK_FALSE(r.stopped());
      require_same(full, outcome(s, w));
    }
  }
}

// ====================================================================== faults: checkpoints, files
namespace {
/// The controller's state and the loss log, to show a failed resume changed nothing.
struct Snapshot {
  io::Checkpoint state;
  std::string losses;
};
Snapshot snapshot(story::Session& s, const fs::path& log) {
  return {io::capture(s.controller()), slurp(log / "losses.tsv")};
}
bool same(const Snapshot& a, const Snapshot& b) {
  bool ok = a.state.epoch == b.state.epoch && a.state.tick == b.state.tick && a.state.rng == b.state.rng &&
            a.losses == b.losses && a.state.params.size() == b.state.params.size();
  for (std::size_t i = 0; ok && i < a.state.params.size(); ++i) {
    const auto &p = a.state.params[i], &q = b.state.params[i];
    ok = p.value == q.value && p.square_avg == q.square_avg;
  }
  for (std::size_t i = 0; ok && i < a.state.terms.size(); ++i) ok = a.state.terms[i].weight == b.state.terms[i].weight;
  return ok;
}

std::vector<std::string> temp_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().extension() == ".tmp") out.push_back(e.path().string());
  return out;
}
}  // namespace

TEST_CASE("resume rejects a checkpoint field without meaning, naming file, record and field, and changes nothing",
          "[resume][checkpoint]") {
  const fs::path w = resume_workdir();
  const fs::path log = w / "log";
  story::SessionOptions so;
  so.base_dir = w.string();
  const std::string config = (w / "config.json").string();
  {
    story::Session s(config, so);
    story::Runner r(s);
    r.run();
  }
  const std::string losses = slurp(log / "losses.tsv");
  const auto first_line = losses.find('\n') + 1;
  constexpr auto kI64Max = std::numeric_limits<std::int64_t>::max();
  struct Case {
    const char* from;      // a checkpoint of the full run: story[0] interleave, story[1] train, story[2] sum
    std::string expect;    // "(TAG), field F" of the message
    std::function<void(io::Checkpoint&)> edit;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const std::vector<Case> cases = {
      // story position (the cursor of -1 indexed before the samplers: heap-buffer-overflow; -2: division by zero)
      {"hyb_tick_20.ckpt", "(STRY), field cursor", [](auto& c) { c.story.cursor = -1; }},
      {"hyb_tick_20.ckpt", "(STRY), field cursor", [](auto& c) { c.story.cursor = -2; }},
      {"hyb_tick_20.ckpt", "(STRY), field cursor", [](auto& c) { c.story.cursor = 1; }},
      {"hyb_tick_20.ckpt", "(STRY), field tick", [](auto& c) { c.story.tick = -2; }},
      {"hyb_tick_20.ckpt", "(STRY), field tick", [](auto& c) { c.story.tick = 41; }},
      {"hyb_tick_20.ckpt", "(STRY), field tick", [](auto& c) { c.story.tick = 60, c.tick = 200; }},
      {"hyb_tick_20.ckpt", "(STRY), field epoch", [](auto& c) { c.story.epoch = 1; }},
      {"hyb_tick_20.ckpt", "(STRY), field item", [](auto& c) { c.story.item = 9; }},
      {"hyb_tick_20.ckpt", "(STRY), field item", [](auto& c) { c.story.item = 3; }},  // a test action
      {"hyb_tick_20.ckpt", "(STRY), field item_done", [](auto& c) { c.story.item_done = true; }},
      {"hyb_tick_20.ckpt", "(STRY), field log_bytes", [](auto& c) { c.story.log_bytes = 3; }},
      {"hyb_tick_20.ckpt", "(STRY), field log_bytes", [&](auto& c) { c.story.log_bytes = losses.size() + 1; }},
      {"hyb_tick_20.ckpt", "(STRY), field log_bytes", [&](auto& c) { c.story.log_bytes = first_line + 3; }},
      {"trn_tick_2.ckpt", "(STRY), field epoch", [](auto& c) { c.story.epoch = 2; }},
      {"trn_tick_2.ckpt", "(STRY), field tick", [](auto& c) { c.story.tick = 7; }},
      {"trn_tick_2.ckpt", "(STRY), field cursor", [](auto& c) { c.story.cursor = 1; }},
      {"sum_tick_4.ckpt", "(STRY), field cursor", [](auto& c) { c.story.cursor = 1; }},
      // samplers
      {"hyb_tick_20.ckpt", "(SAMP), field position", [](auto& c) { c.samplers[0].state.position = -1; }},
      {"hyb_tick_20.ckpt", "field position", [](auto& c) { c.samplers[0].state.position = 99; }},
      {"hyb_tick_20.ckpt", "(SAMP), field epochs", [](auto& c) { c.samplers[1].state.epochs = kI64Max; }},
      {"hyb_tick_20.ckpt", "field epochs", [](auto& c) { c.samplers[1].state.epochs = 0; }},
      {"hyb_tick_20.ckpt", "field epochs", [](auto& c) { c.samplers[1].state.epochs += 1; }},
      {"trn_tick_2.ckpt", "field position", [](auto& c) { c.story.tick = 1; }},  // the train sampler took 2
      {"hyb_tick_20.ckpt", "field order", [](auto& c) { c.samplers[0].state.order[0] = 100000; }},
      {"hyb_tick_20.ckpt", "(SAMP), field rng.lane", [](auto& c) { c.samplers[0].state.rng.lane = 9; }},
      {"hyb_tick_20.ckpt", "field name", [](auto& c) { c.samplers[0].name = "other"; }},
      {"hyb_tick_20.ckpt", "(SAMP)", [](auto& c) { c.samplers.pop_back(); }},
      // parameters (a shape of 2^62 overflowed rows * cols * 12)
      {"hyb_tick_20.ckpt", "(PARM), field rows", [](auto& c) { c.params[0].rows = std::int64_t(1) << 62; }},
      {"hyb_tick_20.ckpt", "(PARM), field value", [](auto& c) { c.params[0].cols += 1; }},
      {"hyb_tick_20.ckpt", "(PARM), field value[0]", [=](auto& c) { c.params[0].value[0] = nan; }},
      {"hyb_tick_20.ckpt", "(PARM), field grad[1]", [=](auto& c) { c.params[1].grad[1] = -inf; }},
      {"hyb_tick_20.ckpt", "(PARM), field square_avg[0]", [](auto& c) { c.params[0].square_avg[0] = -1; }},
      {"hyb_tick_20.ckpt", "(PARM), field momentum[2]", [=](auto& c) { c.params[0].momentum[2] = inf; }},
      {"hyb_tick_20.ckpt", "(PARM), field momentum", [](auto& c) { c.params[0].momentum.clear(); }},
      {"hyb_tick_20.ckpt", "(PARM), field name", [](auto& c) { c.params[0].name = "model.other"; }},
      // terms
      {"hyb_tick_20.ckpt", "(TERM), field terms[0].weight", [=](auto& c) { c.terms[0].weight = nan; }},
      {"hyb_tick_20.ckpt", "(TERM), field terms[0].epoch", [](auto& c) { c.terms[0].epoch = -1; }},
      {"hyb_tick_20.ckpt", "(TERM), field terms[0].epoch", [](auto& c) { c.terms[0].epoch = c.epoch + 1; }},
      {"hyb_tick_20.ckpt", "(TERM), field terms[0].kind", [](auto& c) { c.terms[0].kind = 7; }},
      {"hyb_tick_20.ckpt", "appears twice", [](auto& c) { c.terms.push_back(c.terms[0]); }},
      {"hyb_tick_20.ckpt", "is missing", [](auto& c) { c.terms.pop_back(); }},
      // counters and the generator
      {"hyb_tick_20.ckpt", "(CTRL), field epoch", [](auto& c) { c.epoch = -1; }},
      {"hyb_tick_20.ckpt", "(CTRL), field epoch", [](auto& c) { c.epoch = c.tick + 1; }},
      {"hyb_tick_20.ckpt", "(CTRL), field tick", [](auto& c) { c.tick = std::numeric_limits<std::int32_t>::max(); }},
      {"hyb_tick_20.ckpt", "(CTRL), field rng.lane", [](auto& c) { c.rng.lane = 5; }},
      {"hyb_tick_20.ckpt", "(CTRL), field rng.spare", [=](auto& c) { c.rng.has_spare = true, c.rng.spare = nan; }},
  };
  story::Session s(config, so);
  const Snapshot before = snapshot(s, log);
  for (const auto& c : cases) {
    INFO(c.from << ": " << c.expect);
    io::Checkpoint ck = io::read_checkpoint((log / c.from).string());
    c.edit(ck);
    const std::string bad = (log / "bad.ckpt").string();
    io::write_checkpoint(bad, ck);
    story::Runner r(s);
    const std::string e = error_of([&] { r.resume(bad); });
    CHECK_THAT(e, Catch::Contains("checkpoint '" + bad + "' record ") && Catch::Contains(c.expect) &&
                      Catch::Contains("resume "));  // the fix
    CHECK(same(before, snapshot(s, log)));  // all or nothing
  }
  // the unedited file resumes (the session above is untouched), and ends as the full run did
  fs::remove(log / "bad.ckpt");
  story::Runner r(s);
  r.resume((log / "hyb_tick_20.ckpt").string());
  CHECK(slurp(log / "losses.tsv") == losses);
}

TEST_CASE("reading a checkpoint: sizes are checked without overflow, paths that are no file are named",
          "[checkpoint]") {
  const fs::path dir = scratch("ckpt-read");
  io::Checkpoint ck;
  ck.params.push_back({"p", 2147483647, 2147483647, {1.0, 2.0}, {}, false, false, {}, {}});
  io::write_checkpoint((dir / "huge.ckpt").string(), ck);
  CHECK_THROWS_WITH(io::read_checkpoint((dir / "huge.ckpt").string()),
                    Catch::Contains("record 2 (PARM), field value: holds 2 values") &&
                        Catch::Contains("4611686014132420609"));
  // a directory: named, with what is expected and the newest checkpoint in it
  CHECK_THROWS_WITH(io::read_checkpoint(dir.string()),
                    Catch::Contains("'" + dir.string() + "': it is a directory; give a checkpoint file") &&
                        Catch::Contains("huge.ckpt"));
  CHECK_THROWS_WITH(io::read_checkpoint((dir / "none.ckpt").string()),
                    Catch::Contains("none.ckpt': No such file or directory"));
  // bytes after the END record; a second STRY record
  io::write_checkpoint((dir / "empty.ckpt").string(), io::Checkpoint{});
  const std::string good = slurp(dir / "empty.ckpt");
  write(dir / "tail.ckpt", good + "x");
  CHECK_THROWS_WITH(io::read_checkpoint((dir / "tail.ckpt").string()),
                    Catch::Contains("1 bytes after the END record"));
  const auto stry = good.find("STRY"), end = good.find("END ");
  write(dir / "twice.ckpt", good.substr(0, end) + good.substr(stry, end - stry) + good.substr(end));
  CHECK_THROWS_WITH(io::read_checkpoint((dir / "twice.ckpt").string()),
                    Catch::Contains("(STRY): a second STRY record (the first is record 3)"));
}

TEST_CASE("output files: a full disk is an error naming the file, unfinished files leave no trace", "[io][fault]") {
  const fs::path dir = scratch("durable");
  // the loss log checks every write: on a full disk (/dev/full) it fails, naming the file
  story::LossLog log;
  CHECK_THROWS_WITH(log.open("/dev/full"), Catch::Contains("'/dev/full' (disk full?): No space left on device"));
  // an unfinished CSV (an exception, an interrupt) leaves the older file as it was and no temp
  write(dir / "a.csv", "old\n");
  {
    story::CsvWriter w((dir / "a.csv").string(), {"cell", "x"});
    w.begin_row("c1");
    w.value(1.5f);
    w.end_row();
    CHECK(fs::exists(dir / "a.csv.tmp"));
  }
  CHECK(slurp(dir / "a.csv") == "old\n");
  CHECK(temp_files(dir).empty());
  {
    story::CsvWriter w((dir / "a.csv").string(), {"cell", "x"});
    w.begin_row("c1");
    w.value(1.5f);
    w.end_row();
    w.close();
  }
  CHECK(slurp(dir / "a.csv") == "cell,x\nc1,1.5\n");
  // a checkpoint that cannot be written names the file and leaves nothing
  CHECK_THROWS_WITH(io::write_checkpoint((dir / "missing" / "c.ckpt").string(), io::Checkpoint{}),
                    Catch::Contains("c.ckpt.tmp'") && Catch::Contains("No such file or directory"));
  CHECK(temp_files(dir).empty());
}

TEST_CASE("temp files of a killed run are removed at the next start, an interrupt stops cleanly", "[run][fault]") {
  const fs::path w = resume_workdir();
  const fs::path log = w / "log";
  story::SessionOptions so;
  so.base_dir = w.string();
  const std::string config = (w / "config.json").string();
  // what a run killed while writing leaves: temps of a checkpoint, a latent CSV and a JSON dump
  write(log / "hyb_tick_30.ckpt.tmp", "partial");
  write(log / "2_test_latent.csv.tmp", "partial");
  write(log / "gene_meta.json.tmp", "partial");
  write(log / "notes.txt.tmp", "not ours");
  std::ostringstream notes;
  std::atomic<int> interrupt{0};
  {
    story::Session s(config, so);
    story::RunnerOptions ro;
    ro.log = &notes;
    ro.verbose = true;
    ro.max_ticks = 25;
    story::Runner r(s, ro);
    r.run();
  }
  CHECK_THAT(notes.str(), Catch::Contains("removed '" + (log / "hyb_tick_30.ckpt.tmp").string() +
                                          "', a temporary file left by an interrupted run"));
  CHECK(temp_files(log) == std::vector<std::string>{(log / "notes.txt.tmp").string()});
  fs::remove(log / "notes.txt.tmp");
  // SIGINT/SIGTERM (here set by hand): the run stops at the next tick, names the newest checkpoint
  story::Session s(config, so);
  story::RunnerOptions ro;
  ro.interrupt = &interrupt;
  story::Runner r(s, ro);
  interrupt = 15;
  std::string e;
  try {
    r.resume((log / "hyb_tick_20.ckpt").string());
  } catch (const story::Interrupted& x) {
    CHECK(x.signal() == 15);
    e = x.what();
  }
  CHECK_THAT(e, Catch::Contains("interrupted by signal 15 after tick 23") &&
                    Catch::Contains("continue from checkpoint '" + (log / "hyb_tick_20.ckpt").string() + "'"));
  CHECK(temp_files(log).empty());
}

TEST_CASE("hybrid sum with one split steps exactly like interleave", "[run]") {
  const fs::path w = resume_workdir();
  Json cfg = config::read_json_file((w / "config.json").string());
  Json item = cfg["story"][2];
  item["split_configs"].erase("b");
  item["perform_test"] = "False";
  item["perform_checkpoint"] = "False";
  item["prog_loss_weight_mode"] = "epoch_end";
  item.erase("loss_prog_on_test");
  std::vector<io::Checkpoint> out;
  for (const char* mode : {"sum", "interleave"}) {
    item["hybrid_mode"] = mode;
    cfg["story"] = Json::array({item});
    write(w / "one.json", cfg.dump());
    story::SessionOptions so;
    so.base_dir = w.string();
    story::Session s((w / "one.json").string(), so);
    story::Runner r(s);
    r.run();
    out.push_back(io::capture(s.controller()));
  }
  REQUIRE(out[0].params.size() == out[1].params.size());
  for (std::size_t i = 0; i < out[0].params.size(); ++i) {
    INFO(out[0].params[i].name);
    CHECK(out[0].params[i].value == out[1].params[i].value);
    CHECK(out[0].params[i].square_avg == out[1].params[i].square_avg);
  }
  CHECK(out[0].epoch == out[1].epoch);
}

TEST_CASE("story errors are reported at load with their path", "[config]") {
  const fs::path w = resume_workdir();
  const Json base = config::read_json_file((w / "config.json").string());
  story::SessionOptions so;
  so.base_dir = w.string();
  auto load = [&](const Json& cfg) {
    write(w / "bad.json", cfg.dump());
    return error_of([&] { story::load_setup((w / "bad.json").string(), so); });
  };
  Json c = base;
  c["story"][0]["split_configs"]["heads"]["use_split"] = "pheno_x_train";
  CHECK_THAT(load(c), Catch::Contains("story[0].split_configs.heads.use_split: no split named 'pheno_x_train'") &&
                          Catch::Contains("pheno_ct_train"));
  c = base;
  c["story"][0]["split_configs"]["main"]["selected_signature"] = Json::array({"cd8"});
  CHECK_THAT(load(c), Catch::Contains("story[0].split_configs.main: selected_signature is given but train_signature"));
  c = base;
  c["story"][0]["hybrid_mode"] = "pattern";
  CHECK_THAT(load(c), Catch::Contains("story[0].hybrid_mode \"pattern\""));
  c = base;
  c["story"][1]["tests"][0]["compression"] = "gzip";
  CHECK_THAT(load(c), Catch::Contains("story[1].tests[0].compression 'gzip'"));
  c = base;
  c["story"][3]["action"] = "dance";
  CHECK_THAT(load(c), Catch::Contains("story[3].action: unknown action \"dance\""));
  c = base;
  c["story"][1].erase("epochs");
  CHECK_THAT(load(c), Catch::Contains("missing required key story[1].epochs"));
  c = base;
  c["dataset"]["selected_signature"] = Json::array({"cd8", "cd4"});
  CHECK_THAT(load(c), Catch::Contains("dataset.selected_signature names 'cd4'") && Catch::Contains("defines cd8, g"));
  c = base;
  c["story"][0]["split_configs"]["heads"]["selected_pheno"]["ct"]["loss"] = Json::array({"nl"});
  CHECK_THAT(load(c), Catch::Contains("story[0].split_configs.heads.selected_pheno.ct.loss: no term named 'nl'"));
  // data errors come from the Session: a pheno order that misses a category
  c = base;
  write(w / "pheno2.json", R"({"ct": {"type": "categorical", "pheno_df_key": "cell_type", "order": ["CD8 T", "type1"],
    "post_procedure": [{"type": "ToOrdinal"}], "pheno_lat_dim": 2, "pheno_out_dim": 2, "model": {"type": "LinClassifier"},
    "loss": {"nll": {"type": "NLL", "init_weight": 1.0}}}})");
  c["dataset"]["pheno_meta_path"] = "pheno2.json";
  for (auto& item : c["story"]) {
    if (item.contains("split_configs"))
      for (auto& [k, v] : item["split_configs"].items()) v["use_split"] = "overall_train";
    if (item.contains("tests"))
      for (auto& t : item["tests"]) t["on_split"] = "all";
  }
  write(w / "bad.json", c.dump());
  CHECK_THAT(error_of([&] { story::Session s((w / "bad.json").string(), so); }),
             Catch::Contains("pheno2.json: ct") && Catch::Contains("not in its order"));
}

namespace {
/// Allocations of the config in w's first story item (as `mode`, logging every tick, no tests or
/// checkpoints) stopped after 5 (warm-up), 60 and 180 ticks: ticks 61..180 must add nothing.
std::vector<long> allocations_per_run(const fs::path& w, const char* mode, bool backed) {
  const Json cfg = config::read_json_file((w / "config.json").string());
  Json item = cfg["story"][0];
  item["hybrid_mode"] = mode;
  item["ticks"] = 1000;
  item["perform_test"] = "False";
  item["perform_checkpoint"] = "False";
  Json c = cfg;
  c["story"] = Json::array({item});
  write(w / "alloc.json", c.dump());
  story::SessionOptions so;
  so.base_dir = w.string();
  so.backed = backed;
  std::vector<long> allocs;
  for (std::int64_t ticks : {5, 60, 180}) {
    story::Session s((w / "alloc.json").string(), so);
    story::RunnerOptions ro;
    ro.max_ticks = ticks;
    story::Runner r(s, ro);
    g_allocs = 0;
    g_count = true;
    r.run();
    g_count = false;
    allocs.push_back(g_allocs.load());
  }
  return allocs;
}
}  // namespace

TEST_CASE("the training loop allocates nothing per tick once warm (interleave and sum)", "[run][alloc]") {
  const fs::path w = resume_workdir();
  for (const char* mode : {"interleave", "sum"}) {
    const std::vector<long> allocs = allocations_per_run(w, mode, false);
    INFO(mode << ": " << allocs[1] << " allocations in a run of 60 ticks, " << allocs[2] << " in 180");
    CHECK(allocs[2] == allocs[1]);
  }
}

#if defined(SAKURA_WITH_HDF5)
TEST_CASE("an AnnData .h5ad data set: X, var names, obs columns as phenotypes", "[run][h5ad]") {
  const fs::path w = scratch("h5ad");
  write(w / "sig.json", R"({"cd8": {"signature_list": ["CD8A", "CD8B"], "signature_lat_dim": 2, "signature_out_dim": 2,
    "loss": {"mse": {"type": "MSE", "init_weight": 1.0}}}})");
  write(w / "pheno.json", R"({"ng": {"type": "numerical", "pheno_df_keys": ["n_genes"], "post_procedure": [{"type": "ToTensor"}],
    "pheno_lat_dim": 2, "pheno_out_dim": 1, "model": {"type": "LinRegressor"}, "loss": {"mse": {"type": "MSE", "init_weight": 1.0}}}})");
  Json cfg = Json::parse(R"({"log_path": "log", "dataset": {"type": "h5ad", "signature_config_path": "sig.json",
      "pheno_meta_path": "pheno.json", "selected_signature": ["cd8"], "selected_pheno": ["ng"]},
    "overall_train_test_split": {"type": "none"},
    "main_latent": {"encoder_neurons": 4, "decoder_neurons": 4, "latent_dim": 2,
      "loss": {"L2": {"type": "MSE", "init_weight": 1.0}}},
    "optimizer": {"type": "RMSProp", "RMSProp_lr": 0.01, "RMSProp_alpha": 0.9},
    "story": [{"action": "train", "use_split": "all", "batch_size": 2, "epochs": 3, "train_main_latent": "True",
               "train_pheno": "True", "train_signature": "True", "make_logs": "True"},
              {"action": "test", "on_split": "all", "dump_latent": "True", "latent_prefix": "lat"}]})");
  cfg["dataset"]["h5ad_path"] = std::string(SAKURA_IO_DATA_DIR) + "/x_csr.h5ad";
  write(w / "config.json", cfg.dump());
  story::SessionOptions so;
  so.base_dir = w.string();
  story::Session s((w / "config.json").string(), so);
  CHECK(s.data().n_cells() == 4);
  CHECK(s.data().n_genes() == 5);
  story::Runner r(s);
  r.run();
  CHECK(s.controller().ticks() == 6);
  const std::string csv = slurp(w / "log" / "3_lat.csv");
  CHECK(csv.rfind("cell,main.1,main.2,ng.1,ng.2,cd8.1,cd8.2\nAAAC-1,", 0) == 0);
  CHECK_THAT(csv, Catch::Contains("\n\"cell,3\",") && Catch::Contains("\n\"cell\"\"4\","));
  CHECK_THAT(slurp(w / "log" / "losses.tsv"), Catch::Contains("\ttrain_pheno_ng_loss_mse\t"));
}
#endif

// ====================================================================== the demo
TEST_CASE("the demo's trained model beats the untrained one on held-out cells", "[demo]") {
  story::DemoOptions o;
  o.cells = 1000;
  o.genes = 500;
  o.ticks = 1000;  // 500 cells train, 5 batches per pass: 100 passes per split, as the tutorial
  o.segment = 500;
  o.out_dir = scratch("demo").string();
  const auto rep = story::run_demo(o);
  INFO("untrained r " << rep.untrained.signature_r << " knn " << rep.untrained.knn_accuracy << "; trained r "
                      << rep.trained.signature_r << " knn " << rep.trained.knn_accuracy);
  CHECK(rep.trained.signature_r > 0.5);
  CHECK(rep.trained.signature_r > rep.untrained.signature_r + 0.3);
  CHECK(rep.trained.knn_accuracy > 0.75);
  CHECK(rep.trained.knn_accuracy > rep.untrained.knn_accuracy + 0.15);
  CHECK(fs::exists(fs::path(rep.log_path) / "losses.tsv"));
}

// ====================================================================== streaming: splits, samplers
TEST_CASE("a row set keeps a split as bits: members in order, the k-th member, every cell", "[stream]") {
  std::vector<char> mask(1500, 0);
  std::vector<Index> want;
  for (Index i = 0; i < 1500; ++i)
    if ((i * 7) % 5 == 1 || (i > 600 && i < 1100)) mask[static_cast<std::size_t>(i)] = 1, want.push_back(i);
  const auto s = data::RowSet::from_mask(mask);
  CHECK(s.size() == static_cast<Index>(want.size()));
  CHECK(std::vector<Index>(s.begin(), s.end()) == want);
  for (std::size_t k = 0; k < want.size(); k += 37) CHECK(s.select(static_cast<Index>(k)) == want[k]);
  CHECK(s.select(static_cast<Index>(want.size()) - 1) == want.back());
  CHECK_FALSE(s.contains(0));
  CHECK(s.contains(601));
  std::vector<Index> some(10);
  CHECK(s.copy(static_cast<Index>(want.size()) - 4, some) == 4);
  CHECK(std::vector<Index>(some.begin(), some.begin() + 4) == std::vector<Index>(want.end() - 4, want.end()));
  CHECK_THROWS_WITH(s.select(static_cast<Index>(want.size())), Catch::Contains("member"));
  const auto all = data::RowSet::all(5);
  CHECK(std::vector<Index>(all.begin(), all.end()) == std::vector<Index>{0, 1, 2, 3, 4});
  CHECK(all == data::RowSet::from_mask(std::vector<char>(5, 1)));
  CHECK(data::RowSet::from_mask(std::vector<char>(3, 0)).empty());
}

TEST_CASE("the exact sampler draws BatchSampler's batches and states, with 4 bytes per cell", "[stream][sampler]") {
  std::vector<char> mask(300, 0);
  std::vector<Index> rows;
  for (Index i = 0; i < 300; i += 3) mask[static_cast<std::size_t>(i)] = 1, rows.push_back(i);
  const auto set = data::RowSet::from_mask(mask);
  for (const bool drop_last : {false, true}) {
    data::BatchSampler old(rows, 7, 42, drop_last);
    data::Sampler now(set, 7, 42, drop_last);
    CHECK(now.batches() == old.batches());
    for (int pass = 0; pass < 3; ++pass) {
      old.begin_epoch();
      now.begin_epoch();
      while (!old.exhausted()) {
        REQUIRE_FALSE(now.exhausted());
        const auto a = old.take();
        const auto b = now.take();
        CHECK(std::vector<Index>(a.begin(), a.end()) == std::vector<Index>(b.begin(), b.end()));
        const auto sa = old.state(), sb = now.state();
        CHECK(sa.order == sb.order);
        CHECK(sa.rng == sb.rng);
        CHECK(sa.position == sb.position);
        CHECK(sa.epochs == sb.epochs);
      }
      CHECK(now.exhausted());
    }
  }
  // a BatchSampler's state (what checkpoints hold) continues in a Sampler
  data::BatchSampler old(rows, 7, 5);
  old.begin_epoch();
  old.take();
  data::Sampler now(set, 7, 1);
  now.set_state(old.state());
  for (int i = 0; i < 40; ++i) {
    if (old.exhausted()) old.begin_epoch(), now.begin_epoch();
    const auto a = old.take();
    const auto b = now.take();
    CHECK(std::vector<Index>(a.begin(), a.end()) == std::vector<Index>(b.begin(), b.end()));
  }
  auto bad = old.state();
  bad.order[0] = 1;  // not a cell of the split
  CHECK_THROWS_WITH(now.set_state(bad, "saved", "the fix"),
                    Catch::Contains("saved, field order") && Catch::Contains("not a permutation") &&
                        Catch::EndsWith("; the fix"));
  bad = old.state();
  bad.order[1] = bad.order[0];  // a cell twice
  CHECK_THROWS_WITH(now.set_state(bad), Catch::Contains("not a permutation"));
  bad = old.state();
  bad.position = 99;
  CHECK_THROWS_WITH(now.set_state(bad), Catch::Contains("field position"));
  bad = old.state();
  bad.epochs = 0;
  CHECK_THROWS_WITH(now.set_state(bad), Catch::Contains("field epochs"));
}

TEST_CASE("the blocks sampler: shuffled blocks of consecutive cells, each cell once a pass, resumable",
          "[stream][sampler]") {
  std::vector<char> mask(1000, 0);
  std::vector<Index> rows;
  for (Index i = 0; i < 1000; ++i)
    if (i % 4 != 1) mask[static_cast<std::size_t>(i)] = 1, rows.push_back(i);  // 750 cells
  const auto set = data::RowSet::from_mask(mask);
  const data::SamplingOptions blocks{data::SamplingOptions::Mode::Blocks, 16, 3};  // fetches of 48 cells
  data::Sampler s(set, 20, 9, false, blocks);
  CHECK(s.batches() == 38);  // as exact: ceil(750 / 20)
  std::vector<std::vector<Index>> passes;
  for (int pass = 0; pass < 2; ++pass) {
    s.begin_epoch();
    std::vector<Index> seq;
    while (!s.exhausted()) {
      const Index p = s.position();
      const auto [f0, f1] = s.batch_fetches(p);
      const auto b = s.take();
      CHECK(b.size() == (p + 1 < s.batches() ? 20u : 10u));
      std::vector<Index> fetched;  // every cell of a batch is in one of the fetches it names
      for (Index f = f0; f <= f1; ++f) {
        std::vector<Index> fr;
        s.fetch_rows(f, fr);
        CHECK(std::is_sorted(fr.begin(), fr.end()));
        CHECK(fr.size() <= 48u);
        fetched.insert(fetched.end(), fr.begin(), fr.end());
      }
      std::sort(fetched.begin(), fetched.end());
      for (Index r : b) CHECK(std::binary_search(fetched.begin(), fetched.end(), r));
      seq.insert(seq.end(), b.begin(), b.end());
    }
    std::vector<Index> sorted = seq;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == rows);  // each cell once
    // a fetch is 3 blocks of 16 consecutive cells (of the split): its 48 cells come from 3 runs
    std::vector<Index> first(seq.begin(), seq.begin() + 48);
    std::sort(first.begin(), first.end());
    int runs = 1;
    for (std::size_t i = 1; i < first.size(); ++i) {
      const auto a = std::lower_bound(rows.begin(), rows.end(), first[i - 1]) - rows.begin();
      const auto b = std::lower_bound(rows.begin(), rows.end(), first[i]) - rows.begin();
      runs += b != a + 1;
    }
    CHECK(runs <= 3);
    CHECK(seq != sorted);  // shuffled
    passes.push_back(seq);
  }
  CHECK(passes[0] != passes[1]);
  // its state is the block order (47 blocks) and the position; a fresh sampler continues from it
  data::Sampler t(set, 20, 9, false, blocks);
  t.begin_epoch();
  for (int i = 0; i < 5; ++i) t.take();
  const auto st = t.state();
  CHECK(st.order.size() == 47u);
  data::Sampler u(set, 20, 9, false, blocks);
  u.set_state(st);
  for (int i = 0; i < 80; ++i) {
    if (t.exhausted()) t.begin_epoch(), u.begin_epoch();
    const auto a = t.take();
    const auto b = u.take();
    CHECK(std::vector<Index>(a.begin(), a.end()) == std::vector<Index>(b.begin(), b.end()));
  }
  // an exact sampler's state is not a blocks sampler's (a checkpoint of the other mode)
  data::Sampler exact(set, 20, 9);
  exact.begin_epoch();
  CHECK_THROWS_WITH(u.set_state(exact.state()), Catch::Contains("field order") && Catch::Contains("sampling"));
}

// ====================================================================== streaming: backed .h5ad
#if defined(SAKURA_WITH_HDF5)
namespace {
/// Every row of a file, as the in-memory reader reads it, against a backed read of `rows`.
void require_rows(const std::string& file, const std::vector<Index>& rows) {
  INFO(file);
  const auto whole = io::read_h5ad<float>(file);
  io::H5adRows<float> backed(file);
  REQUIRE(backed.rows() == whole.n_cells());
  REQUIRE(backed.cols() == whole.n_genes());
  CHECK(backed.genes() == whole.genes);
  CsrMatrix<float> got;
  backed.read(rows, got);
  REQUIRE(got.rows == static_cast<Index>(rows.size()));
  got.validate("backed rows");
  std::vector<float> a(static_cast<std::size_t>(got.cols)), b(a.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    whole.expr.gather_dense(std::span<const Index>(&rows[i], 1), a.data());
    const std::vector<Index> one{static_cast<Index>(i)};
    got.gather_dense(one, b.data());
    INFO("row " << rows[i]);
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  }
  std::vector<std::string> names;
  backed.names(rows, names);
  for (std::size_t i = 0; i < rows.size(); ++i) CHECK(names[i] == whole.cells[static_cast<std::size_t>(rows[i])]);
}
}  // namespace

TEST_CASE("a backed .h5ad reads the rows and names the in-memory reader reads", "[stream][h5ad]") {
  const std::string dir = SAKURA_IO_DATA_DIR;
  for (const char* f : {"x_csr.h5ad", "x_dense.h5ad", "x_gzip.h5ad", "legacy_fixed.h5ad"})
    require_rows(dir + "/" + f, {0, 2, 3});  // legacy: row 0 unsorted with a repeated column, summed
  // many chunks (plain and gzip, CSR and dense): runs of rows, scattered rows, rows across chunks
  const fs::path w = scratch("h5ad-rows");
  std::vector<Index> rows;
  for (Index r = 0; r < 900; r += (r % 50 < 20 ? 1 : 7)) rows.push_back(r);
  for (const int gzip : {0, 3}) {
    io::SyntheticAtlasOptions o;
    o.model = {.cells = 900, .genes = 120, .cell_types = 4};
    o.block_cells = 100;
    o.layout.chunk_bytes = 1000;
    o.layout.gzip = gzip;
    const std::string csr = (w / ("csr" + std::to_string(gzip) + ".h5ad")).string();
    io::write_synthetic_h5ad(csr, o);
    require_rows(csr, rows);
    const auto ds = io::read_h5ad<float>(csr);  // the same cells with a dense X
    std::vector<float> dense(static_cast<std::size_t>(ds.n_cells() * ds.n_genes()));
    std::vector<Index> all(static_cast<std::size_t>(ds.n_cells()));
    std::iota(all.begin(), all.end(), Index{0});
    ds.expr.gather_dense(all, dense.data());
    const std::string dn = (w / ("dense" + std::to_string(gzip) + ".h5ad")).string();
    io::H5adFile f(dn);
    io::write_obs_var(f.root(), ds.cells, ds.genes, ds.pheno, o.layout);
    io::h5w::write_array<float>(f.root(), "X", dense, static_cast<hsize_t>(ds.n_genes()), o.layout);
    f.commit();
    require_rows(dn, rows);
  }
  // what a backed run cannot read, or must not: named as the in-memory reader names it, or better
  CHECK_THAT(error_of([&] { io::H5adRows<float> x(dir + "/x_csc.h5ad"); }),
             Catch::Contains("x_csc.h5ad: HDF5 path '/X'") && Catch::Contains("csc_matrix") &&
                 Catch::Contains("sakura-train convert --h5ad"));
  CHECK(error_of([&] { io::H5adRows<float> x(dir + "/dup_names.h5ad"); }) ==
        error_of([&] { io::read_h5ad<float>(dir + "/dup_names.h5ad"); }));
  for (const char* f : {"indptr_huge.h5ad", "data_huge.h5ad", "index_huge.h5ad", "bad_shape.h5ad"}) {
    INFO(f);
    CHECK_THAT(error_of([&] { io::H5adRows<float> x(dir + "/" + f); }), Catch::Contains(f));
  }
  io::H5adRows<float> x(dir + "/x_csr.h5ad");
  CsrMatrix<float> m;
  CHECK_THROWS_WITH(x.read(std::vector<Index>{2, 1}, m), Catch::Contains("rows must ascend"));
}

namespace {
enum class XKind { Csr, CsrGzip, Dense, DenseGzip };

/// resume_workdir's data and story, the data in an .h5ad: X as `kind`, in chunks of a few cells
/// (reads cross chunks), obs columns as anndata types them (cell_type categorical).
fs::path h5ad_workdir(XKind kind, const std::string& sampling) {
  const fs::path w = resume_workdir();
  const std::string d = (w / "data").string(), out = (w / "data.h5ad").string();
  io::ConvertOptions o;
  o.layout.chunk_bytes = 512;
  o.layout.gzip = kind == XKind::CsrGzip || kind == XKind::DenseGzip ? 4 : 0;
  if (kind == XKind::Csr || kind == XKind::CsrGzip) {
    io::convert_mtx_to_h5ad<float>(d + "/matrix.mtx", d + "/genes.csv", d + "/cells.csv", d + "/pheno.csv", out, o);
  } else {
    const auto ds = io::read_mtx_dataset<float>(d + "/matrix.mtx", d + "/genes.csv", d + "/cells.csv", d + "/pheno.csv");
    std::vector<float> dense(static_cast<std::size_t>(ds.n_cells() * ds.n_genes()));
    std::vector<Index> all(static_cast<std::size_t>(ds.n_cells()));
    std::iota(all.begin(), all.end(), Index{0});
    ds.expr.gather_dense(all, dense.data());
    io::H5adFile f(out);
    io::write_obs_var(f.root(), ds.cells, ds.genes, ds.pheno, o.layout);
    io::h5w::write_array<float>(f.root(), "X", dense, static_cast<hsize_t>(ds.n_genes()), o.layout);
    f.commit();
  }
  Json cfg = config::read_json_file((w / "config.json").string());
  Json ds = cfg["dataset"];
  for (const char* k : {"gene_expr_MM_path", "gene_name_csv_path", "cell_name_csv_path", "pheno_csv_path"}) ds.erase(k);
  ds["type"] = "h5ad";
  ds["h5ad_path"] = "data.h5ad";
  ds["sampling"] = sampling;
  ds["block_cells"] = 8;
  ds["blocks_per_fetch"] = 3;
  cfg["dataset"] = ds;
  write(w / "config.json", cfg.dump(2));
  return w;
}

/// A full run of the config in w, in memory or backed; its log folder and the controller.
Outcome full_run(const fs::path& w, bool backed, story::RunnerOptions ro = {}) {
  fs::remove_all(w / "log");
  story::SessionOptions so;
  so.base_dir = w.string();
  so.backed = backed;
  story::Session s((w / "config.json").string(), so);
  CHECK(static_cast<bool>(s.data().backed) == backed);
  story::Runner r(s, ro);
  r.run();
  return outcome(s, w);
}
}  // namespace

TEST_CASE("a backed run is bit-identical to the run in memory: losses, latents, checkpoints", "[stream][run]") {
  for (const XKind kind : {XKind::Csr, XKind::CsrGzip, XKind::Dense, XKind::DenseGzip})
    for (const char* sampling : {"exact", "blocks"}) {
      DYNAMIC_SECTION("X kind " << static_cast<int>(kind) << ", sampling " << sampling) {
        const fs::path w = h5ad_workdir(kind, sampling);
        const Outcome memory = full_run(w, false);
        REQUIRE(memory.files.count("hyb_tick_40.ckpt"));
        REQUIRE(memory.files.count("splits.csv"));
        require_same(memory, full_run(w, true));
      }
    }
  // the two modes draw different batches (blocks is not exact)
  const fs::path w = h5ad_workdir(XKind::Csr, "exact");
  const Outcome exact = full_run(w, true);
  const Outcome blocks = full_run(h5ad_workdir(XKind::Csr, "blocks"), true);
  CHECK(exact.files.at("losses.tsv") != blocks.files.at("losses.tsv"));
  // no gene excluded from the input (the tutorial's case): a backed batch copies its rows whole
  const fs::path all_genes = h5ad_workdir(XKind::CsrGzip, "exact");
  Json sig = config::read_json_file((all_genes / "signature.json").string());
  sig["cd8"]["exclude_from_input"] = "False";
  write(all_genes / "signature.json", sig.dump(2));
  require_same(full_run(all_genes, false), full_run(all_genes, true));
}

TEST_CASE("a backed blocks-mode run stopped at a checkpoint and resumed ends bit-identical", "[stream][resume]") {
  const fs::path w = h5ad_workdir(XKind::CsrGzip, "blocks");
  const Outcome full = full_run(w, true);
  story::SessionOptions so;
  so.base_dir = w.string();
  so.backed = true;
  const std::string config = (w / "config.json").string();
  for (std::int64_t stop : {10, 42, 53}) {
    DYNAMIC_SECTION("stopped after tick " << stop) {
      fs::remove_all(w / "log");
      const std::string ckpt = run_until(config, so, stop);
      story::Session s(config, so);
      story::Runner r(s);
      r.resume(ckpt);
      require_same(full, outcome(s, w));
    }
  }
}

TEST_CASE("a backed training loop allocates nothing per tick once warm", "[stream][alloc]") {
  for (const char* sampling : {"exact", "blocks"}) {
    const fs::path w = h5ad_workdir(XKind::CsrGzip, sampling);
    for (const char* mode : {"interleave", "sum"}) {
      const std::vector<long> allocs = allocations_per_run(w, mode, true);
      INFO(sampling << ", " << mode << ": " << allocs[1] << " allocations in 60 ticks, " << allocs[2] << " in 180");
      CHECK(allocs[2] == allocs[1]);
    }
  }
}

namespace {
/// Calls `act` once, when the loss log reaches tick `at` (a hook into a running story).
struct AtTick : story::ScalarSink {
  std::int64_t at = 0;
  std::function<void()> act;
  bool done = false;
  void begin(std::int64_t) override {}
  void scalar(std::int64_t tick, std::string_view, double) override {
    if (done || tick < at) return;
    done = true;
    act();
  }
  void flush() override {}
};
}  // namespace

TEST_CASE("a file changed during a backed run stops it, naming file and HDF5 path, and checkpoints stay good",
          "[stream][fault]") {
  const fs::path w = h5ad_workdir(XKind::Csr, "exact");
  const fs::path data = w / "data.h5ad", kept = w / "data.h5ad.kept", other = w / "other.h5ad";
  const Outcome full = full_run(w, true);
  fs::copy_file(data, kept);
  write_synthetic(w / "d2", 240, 48, 8);  // the same shape, other values
  io::convert_mtx_to_h5ad<float>((w / "d2/matrix.mtx").string(), (w / "d2/genes.csv").string(),
                                 (w / "d2/cells.csv").string(), (w / "d2/pheno.csv").string(), other.string());
  const std::vector<std::pair<const char*, std::function<void()>>> changes = {
      {"truncated", [&] { fs::resize_file(data, fs::file_size(data) / 2); }},
      {"replaced", [&] { fs::rename(other, data); }},
      {"rewritten in place", [&] { fs::copy_file(other, data, fs::copy_options::overwrite_existing); }},
  };
  for (const auto& [what, change] : changes) {
    DYNAMIC_SECTION("the file " << what) {
      fs::remove_all(w / "log");
      if (!fs::exists(other)) fs::copy_file(kept, other);  // "replaced" used it up: any other file will do
      AtTick hook;
      hook.at = 25;  // after the checkpoint of tick 20, before that of tick 30
      hook.act = change;
      story::RunnerOptions ro;
      ro.scalars = &hook;
      story::SessionOptions so;
      so.base_dir = w.string();
      so.backed = true;
      std::string e;
      {
        story::Session s((w / "config.json").string(), so);
        story::Runner r(s, ro);
        e = error_of([&] { r.run(); });
      }
      CHECK(hook.done);
      CHECK_THAT(e, Catch::Contains(data.string() + ": HDF5 path '/") && Catch::Contains("changed while the run") &&
                        Catch::Contains("sakura-train -r"));
      CHECK_FALSE(fs::exists(w / "log" / "hyb_tick_30.ckpt"));
      fs::copy_file(kept, data, fs::copy_options::overwrite_existing);  // the original back
      story::Session s((w / "config.json").string(), so);
      story::Runner r(s);
      r.resume((w / "log" / "hyb_tick_20.ckpt").string());
      require_same(full, outcome(s, w));
    }
  }
}

TEST_CASE("backed input: what the config may say and what it may not", "[stream][config]") {
  const fs::path w = h5ad_workdir(XKind::Csr, "exact");
  story::SessionOptions so;
  so.base_dir = w.string();
  Json cfg = config::read_json_file((w / "config.json").string());
  auto load_with = [&](const std::string& key, const Json& value) {
    Json c = cfg;
    c["dataset"][key] = value;
    write(w / "c.json", c.dump());
    return error_of([&] { story::load_setup((w / "c.json").string(), so); });
  };
  CHECK_THAT(load_with("sampling", "random"), Catch::Contains("config.dataset.sampling must be \"exact\" or \"blocks\""));
  CHECK_THAT(load_with("block_cells", 0), Catch::Contains("config.dataset.block_cells must be in [1, 16777216]"));
  CHECK_THAT(load_with("backed", "yes"), Catch::Contains("config.dataset.backed must be true, false"));
  CHECK(load_with("backed", true) == "(no error)");
  const fs::path m = resume_workdir();  // MatrixMarket
  so.base_dir = m.string();
  so.backed = true;
  CHECK_THAT(error_of([&] { story::load_setup((m / "config.json").string(), so); }),
             Catch::Contains("--backed: only an AnnData .h5ad") && Catch::Contains("sakura-train convert -c CONFIG"));
}
#endif
