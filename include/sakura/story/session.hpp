// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Session: what upstream's sakuraAE.__init__ sets up, in two steps. load_setup() reads and
/// validates the configs and the whole story without touching the data; Session then reads the
/// data, fits the phenotypes, makes the splits and builds the controller.
///
/// Relative paths in a config resolve against the working directory, as upstream's do (its
/// tutorial configs say "./data/..."), or against SessionOptions::base_dir when set.
#pragma once

#include <filesystem>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "sakura/config/json.hpp"
#include "sakura/controller/controller.hpp"
#include "sakura/data/loader.hpp"
#include "sakura/data/pheno.hpp"
#include "sakura/data/splitter.hpp"
#include "sakura/io/matrix_market.hpp"
#include "sakura/story/config.hpp"
#include "sakura/story/ranks.hpp"
#if defined(SAKURA_WITH_HDF5)
#include "sakura/io/h5ad.hpp"
#include "sakura/io/h5ad_rows.hpp"
#endif

namespace sakura::story {

struct SessionOptions {
  std::string base_dir;         ///< relative config paths resolve here ("" = working directory)
  std::ostream* log = nullptr;  ///< warnings and -v messages (nullptr: quiet)
  bool verbose = false;
  bool backed = false;          ///< read X from disk as it trains, whatever the config says (--backed)
  /// The ranks that run the story together (default: one process). Every rank reads the config;
  /// they must agree on it, on the data files and on `launch` (checked when the Session starts).
  dist::Comm comm;
  Json launch = Json::object();  ///< what else every rank must agree on (sakura-train: its arguments)
};

/// Everything a config says, validated; no data read yet.
struct Setup {
  std::string config_path;
  Json config;
  Json signature_config = Json::object();  ///< the selected signatures only (upstream subsets it)
  Json pheno_meta = Json::object();        ///< the selected phenotypes only
  DatasetConfig dataset;
  std::string log_path;                    ///< as configured, resolved (string-joined like upstream)
  std::uint64_t seed = 3407;
  std::vector<std::string> split_names;
  ExperimentSpec probe;                    ///< built with a 1-gene input, for validation only
  std::vector<ActionConfig> story;
  bool dump_configs = false, dump_splits = false;  ///< write the configs / splits.csv into log_path
};

namespace detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;
using namespace config::detail;

inline std::string resolve(const std::string& base, const std::string& p) {
  if (p.empty() || base.empty() || std::filesystem::path(p).is_absolute()) return p;
  return (std::filesystem::path(base) / p).string();
}

/// `dataset.selected_x` subsets `cfg` (a signature config or pheno meta) as upstream does.
inline Json subset(const Json& cfg, const std::vector<std::string>& names, const std::string& what,
                   const std::string& file) {
  Json out = Json::object();
  for (const auto& n : names) {
    if (!cfg.contains(n)) {
      std::string known;
      for (auto it = cfg.begin(); it != cfg.end(); ++it) known += (known.empty() ? "" : ", ") + it.key();
      fail("dataset.", what, " names '", n, "' but ", file.empty() ? std::string("no file is configured") : "'" + file + "'",
           " defines ", known.empty() ? std::string("none") : known);
    }
    out[n] = cfg[n];
  }
  return out;
}

inline void add_block_splits(const Json& cfg, const std::string& kind, std::vector<std::string>& names,
                             const std::string& file) {
  for (auto it = cfg.begin(); it != cfg.end(); ++it) {
    const Json* s = find(it.value(), "split");
    if (!s) continue;
    const std::string w = file + ": " + it.key() + ".split";
    const std::string type = string(need(*s, "type", w), w + ".type");
    if (type == "none") continue;
    require(type == "auto", w, ".type must be \"auto\" or \"none\", got \"", type, "\"");
    const std::string base = string(need(*s, "base", w), w + ".base");
    detail::require_split(base, names, w + ".base");
    (void)integer(need(*s, "seed", w), w + ".seed");
    const auto dec = integer(need(*s, "train_dec", w), w + ".train_dec");
    require(dec >= 0 && dec <= 10, w, ".train_dec must be in [0, 10] (tenths), got ", dec);
    names.push_back(kind + "_" + it.key() + "_train");
    names.push_back(kind + "_" + it.key() + "_test");
  }
}

/// load_setup() without its net for nlohmann's exceptions.
inline Setup load_setup_unguarded(const std::string& config_path, const SessionOptions& o) {
  Setup s;
  s.config_path = config_path;
  s.config = config::read_json_file(config_path);
  const Json& c = s.config;
  require(c.is_object(), config_path, ": the config must be a JSON object");
  auto note = [&](const std::string& m) {
    if (o.log) *o.log << "sakura-train: " << m << "\n";
  };
  if (const Json* d = find(c, "device"); d && d->is_string() && *d != "cpu")
    note("config.device \"" + d->get<std::string>() + "\" ignored: sakura-train runs on the CPU");
  if (const Json* r = find(c, "reproducible"); r && !boolean(*r, "config.reproducible"))
    note("config.reproducible is \"False\"; runs are seeded with rnd_seed anyway");
  if (const Json* v = find(c, "rnd_seed")) s.seed = static_cast<std::uint64_t>(integer(*v, "config.rnd_seed"));
  // Upstream's booleans follow one rule (true/false/"True"/"False"), also those sakura-train ignores.
  s.dump_configs = opt_bool(c, "dump_configs", "config");
  s.dump_splits = opt_bool(c, "dump_splits", "config");
  for (const char* k : {"preslice_tests", "persist_test_set"}) (void)opt_bool(c, k, "config");
  s.log_path = resolve(o.base_dir, string(need(c, "log_path", "config"), "config.log_path"));

  // dataset
  const Json& ds = need(c, "dataset", "config");
  const std::string type = string(need(ds, "type", "config.dataset"), "config.dataset.type");
  auto path = [&](const char* key, bool required) {
    const Json* v = find(ds, key);
    require(v || !required, "missing required key config.dataset.", key, " (dataset type ", type, ")");
    return v ? resolve(o.base_dir, string(*v, std::string("config.dataset.") + key)) : std::string();
  };
  if (type == "rna_count_sparse") {
    s.dataset.type = DatasetConfig::Type::MatrixMarket;
    s.dataset.mtx = path("gene_expr_MM_path", true);
    s.dataset.gene_names = path("gene_name_csv_path", true);
    s.dataset.cell_names = path("cell_name_csv_path", true);
    s.dataset.pheno_csv = path("pheno_csv_path", false);
  } else if (type == "h5ad" || type == "anndata") {
    s.dataset.type = DatasetConfig::Type::H5ad;
    s.dataset.h5ad = path("h5ad_path", true);
  } else if (type == "rna_count") {
    fail("config.dataset.type \"rna_count\" (a dense expression CSV) is not supported; convert it to MatrixMarket "
         "(type \"rna_count_sparse\") or AnnData (type \"h5ad\" with \"h5ad_path\")");
  } else {
    fail("config.dataset.type: unknown \"", type, "\"; known: rna_count_sparse, h5ad");
  }
  s.dataset.make_names_unique = opt_bool(ds, "make_names_unique", "config.dataset");
  stream_options_from_json(ds, s.dataset, o.backed);
  for (const char* k : {"pheno_df_na_filter", "expr_mat_pre_slice"}) (void)opt_bool(ds, k, "config.dataset");
  s.dataset.signature_config_path = path("signature_config_path", false);
  s.dataset.pheno_meta_path = path("pheno_meta_path", false);
  if (const Json* v = find(ds, "selected_signature"))
    s.dataset.selected_signature = detail::string_list(*v, "config.dataset.selected_signature");
  if (const Json* v = find(ds, "selected_pheno"))
    s.dataset.selected_pheno = detail::string_list(*v, "config.dataset.selected_pheno");
  Json sig_all = Json::object(), ph_all = Json::object();
  if (!s.dataset.signature_config_path.empty()) sig_all = config::read_json_file(s.dataset.signature_config_path);
  if (!s.dataset.pheno_meta_path.empty()) ph_all = config::read_json_file(s.dataset.pheno_meta_path);
  require(sig_all.is_object(), s.dataset.signature_config_path, ": must be a JSON object {name: signature}");
  require(ph_all.is_object(), s.dataset.pheno_meta_path, ": must be a JSON object {name: phenotype}");
  s.signature_config = subset(sig_all, s.dataset.selected_signature, "selected_signature", s.dataset.signature_config_path);
  s.pheno_meta = subset(ph_all, s.dataset.selected_pheno, "selected_pheno", s.dataset.pheno_meta_path);
  if (s.dataset.type == DatasetConfig::Type::MatrixMarket)
    require(s.pheno_meta.empty() || !s.dataset.pheno_csv.empty(),
            "missing required key config.dataset.pheno_csv_path (phenotypes are selected)");

  // model and terms (input width unknown yet: validated with one gene)
  s.probe = config::experiment_from_json(c, s.pheno_meta, s.signature_config, 1);
  {  // the model's structure (attachment widths, layer lists) is checked by building it, on 1 gene
    Rng init(0);
    Extractor<float> probe(s.probe.model, init);
  }
  for (const auto& b : s.probe.model.signatures)
    require(!b.genes.empty(), "signature_config.", b.name, ": signature_list is required (the marker genes)");

  // splits
  s.split_names = {"all"};
  require(find(c, "manual_split") == nullptr || !boolean(c["manual_split"], "config.manual_split"),
          "config.manual_split (a pickle of masks) is not supported; use overall_train_test_split");
  const Json& ov = need(c, "overall_train_test_split", "config");
  const std::string ot = string(need(ov, "type", "config.overall_train_test_split"), "config.overall_train_test_split.type");
  if (ot == "auto") {
    (void)integer(need(ov, "seed", "config.overall_train_test_split"), "config.overall_train_test_split.seed");
    const auto dec = integer(need(ov, "train_dec", "config.overall_train_test_split"),
                             "config.overall_train_test_split.train_dec");
    require(dec >= 0 && dec <= 10, "config.overall_train_test_split.train_dec must be in [0, 10] (tenths), got ", dec);
    s.split_names.push_back("overall_train");
    s.split_names.push_back("overall_test");
  } else {
    require(ot == "none", "config.overall_train_test_split.type must be \"auto\" or \"none\", got \"", ot, "\"");
  }
  add_block_splits(s.pheno_meta, "pheno", s.split_names, s.dataset.pheno_meta_path);
  add_block_splits(s.signature_config, "signature", s.split_names, s.dataset.signature_config_path);

  s.story = story_from_json(s.probe.model, need(c, "story", "config"), s.split_names);
  return s;
}
}  // namespace detail

/// Reads a config and everything it refers to except the data, and validates the story.
inline Setup load_setup(const std::string& config_path, const SessionOptions& o = {}) {
  try {
    return detail::load_setup_unguarded(config_path, o);
  } catch (const nlohmann::json::exception& e) {  // a value of an unexpected JSON type that no check caught
    sakura::detail::fail(config_path, ": unexpected value in the config: ", e.what());
  }
}


/// Config + data + controller, ready for a story.
class Session {
 public:
  explicit Session(const std::string& config_path, const SessionOptions& o = {}) : Session(load_setup(config_path, o), o) {}

  Session(Setup setup, const SessionOptions& o) : setup_(std::move(setup)), opt_(o) {
    const Setup& s = setup_;
    check_inputs_agree(o.comm, input_facts());
    // signatures and phenotypes
    std::vector<data::SignatureRequest> sigs;
    for (const auto& b : s.probe.model.signatures) {
      data::SignatureRequest r{b.name, b.genes, b.exclude_from_input};
      signature_post(r, s.signature_config[b.name]);
      sigs.push_back(std::move(r));
    }
    const std::string meta_file = s.dataset.pheno_meta_path.empty() ? "pheno_meta" : s.dataset.pheno_meta_path;
    if (s.dataset.backed) {
      data_ = read_backed(sigs, meta_file + ": ");
    } else {
      data::Dataset<float> ds = read_dataset();
      std::vector<data::PhenoTable> phenos;
      for (auto it = s.pheno_meta.begin(); it != s.pheno_meta.end(); ++it)
        phenos.push_back(data::fit_pheno(it.key(), it.value(), ds, meta_file + ": "));
      data_ = data::prepare_training_data(std::move(ds), sigs, std::move(phenos));
    }
    check_batches();
    check_labels();
    make_splits();
    // controller
    ExperimentSpec spec = config::experiment_from_json(s.config, s.pheno_meta, s.signature_config, data_.n_genes());
    ctl_ = make_controller(std::move(spec), o.comm);
    if (o.log && o.verbose) {
      *o.log << "sakura-train: " << data_.n_cells() << " cells, " << data_.n_genes() << " input genes, "
             << ctl_->model().parameters().total_size() << " parameters\n";
      for (const auto& [name, rows] : splits_.all())
        *o.log << "sakura-train: split " << name << ": " << rows.size() << " cells\n";
    }
  }

  const Setup& setup() const { return setup_; }
  const data::TrainingData<float>& data() const { return data_; }
  const data::Splits& splits() const { return splits_; }
  Controller<float>& controller() { return *ctl_; }
  const SessionOptions& options() const { return opt_; }
  const dist::Comm& comm() const { return opt_.comm; }
  /// The config text saved into checkpoints.
  std::string config_text() const { return setup_.config.dump(); }

 private:
  /// What every rank must agree on: the configs as read, the identity of every data file (by its
  /// config key: ranks may resolve the paths against different folders), and the options' `launch`.
  Json input_facts() const {
    const DatasetConfig& d = setup_.dataset;
    Json files = Json::object();
    for (const auto& [key, f] : {std::pair{"gene_expr_MM_path", &d.mtx}, std::pair{"gene_name_csv_path", &d.gene_names},
                                 std::pair{"cell_name_csv_path", &d.cell_names}, std::pair{"pheno_csv_path", &d.pheno_csv},
                                 std::pair{"h5ad_path", &d.h5ad}})
      if (!f->empty()) files[key] = file_facts(*f);
    return Json{{"config", setup_.config},
                {"signature_config", setup_.signature_config},
                {"pheno_meta", setup_.pheno_meta},
                {"data", files},
                {"launch", opt_.launch}};
  }

  data::Dataset<float> read_dataset() const {
    const DatasetConfig& d = setup_.dataset;
    if (d.type == DatasetConfig::Type::H5ad) {
#if defined(SAKURA_WITH_HDF5)
      return io::read_h5ad<float>(d.h5ad, data::NameOptions{d.make_names_unique});
#else
      sakura::detail::fail("config.dataset.type \"h5ad\": this build has no HDF5 support (configure with the HDF5 "
                           "C library installed, e.g. Debian's libhdf5-dev)");
#endif
    }
    return io::read_mtx_dataset<float>(d.mtx, d.gene_names, d.cell_names, d.pheno_csv,
                                       data::NameOptions{d.make_names_unique});
  }

  /// X stays in the .h5ad (io/h5ad_rows.hpp); genes, signatures and phenotypes as in memory.
  data::TrainingData<float> read_backed(const std::vector<data::SignatureRequest>& sigs, const std::string& where) const {
#if defined(SAKURA_WITH_HDF5)
    return io::read_h5ad_backed<float>(setup_.dataset.h5ad, data::NameOptions{setup_.dataset.make_names_unique}, sigs,
                                       setup_.pheno_meta, where);
#else
    (void)sigs, (void)where;
    sakura::detail::fail("config.dataset.backed: this build has no HDF5 support (configure with the HDF5 C library "
                         "installed, e.g. Debian's libhdf5-dev)");
#endif
  }

  static void signature_post(data::SignatureRequest& r, const Json& cfg) {
    using namespace config::detail;
    const std::string w = "signature_config." + r.name + ".post_procedure";
    const Json* pp = find(cfg, "post_procedure");
    if (!pp) return;
    require(pp->is_array(), w, " must be a list");
    for (std::size_t i = 0; i < pp->size(); ++i) {
      const std::string pw = w + "[" + std::to_string(i) + "]";
      const std::string t = string(need((*pp)[i], "type", pw), pw + ".type");
      if (t == "ToTensor") continue;
      require(t == "ToBinary", pw, ".type: signatures support ToTensor and ToBinary, got \"", t, "\"");
      r.binarize = true;
      if (const Json* v = find((*pp)[i], "threshold")) r.threshold = number(*v, pw + ".threshold");
      if (const Json* v = find((*pp)[i], "scale_factor")) r.scale = number(*v, pw + ".scale_factor");
      r.inverse = opt_bool((*pp)[i], "inverse", pw);
    }
  }

  /// A batch is batch_size x input genes dense floats: bounded like the model, now that the genes
  /// are known, so a huge batch_size is an error naming its key rather than a failed allocation.
  void check_batches() const {
    constexpr double kMaxBatchValues = 0x1p32;  // 16 GiB of float32
    const double genes = static_cast<double>(data_.n_genes());
    auto check = [&](const SplitConfig& sc, const std::string& where) {
      sakura::detail::require(static_cast<double>(sc.batch_size) * genes <= kMaxBatchValues, where,
                              ".batch_size: ", sc.batch_size, " cells x ", data_.n_genes(),
                              " input genes is more than 2^32 values (16 GiB) in one batch; use a smaller batch_size");
    };
    for (const auto& a : setup_.story) {
      if (a.kind == ActionConfig::Kind::Train) check(a.train, a.where);
      for (const auto& sc : a.splits) check(sc, a.where + ".split_configs." + sc.key);
    }
  }

  /// Class labels must fit a classifier head, checked once here rather than per batch.
  void check_labels() const {
    for (const auto& b : setup_.probe.model.phenos) {
      const data::PhenoTable* t = nullptr;
      for (const auto& p : data_.phenos)
        if (p.name == b.name) t = &p;
      if (!t || !t->has_labels()) continue;
      const bool classifier = b.head == HeadType::LinClassifier || b.head == HeadType::FCClassifier;
      if (!classifier) continue;
      std::int64_t mx = 0;
      for (auto l : t->labels) mx = std::max(mx, l);
      sakura::detail::require(mx < b.out_dim, "pheno_config.", b.name, ": labels reach ", mx, " (",
                              t->classes.empty() ? std::string("numeric codes")
                                                 : std::to_string(t->classes.size()) + " categories",
                              ") but pheno_out_dim is ", b.out_dim);
    }
  }

  void make_splits() {
    using namespace config::detail;
    const Json& c = setup_.config;
    const Index n = data_.n_cells();
    splits_.set("all", std::vector<char>(static_cast<std::size_t>(n), 1));
    const Json& ov = c["overall_train_test_split"];
    if (ov["type"] == "auto") {
      const auto bins = data::random_k_bin_labels(std::vector<char>(static_cast<std::size_t>(n), 1), 10,
                                                  static_cast<std::uint64_t>(ov["seed"].get<long long>()));
      const auto m = data::incremental_train_test_split(bins, static_cast<int>(ov["train_dec"].get<long long>()));
      splits_.set("overall_train", m.train);
      splits_.set("overall_test", m.test);
    }
    auto blocks = [&](const Json& cfg, const std::string& kind) {
      for (auto it = cfg.begin(); it != cfg.end(); ++it) {
        const Json* s = find(it.value(), "split");
        if (!s || (*s)["type"] == "none") continue;
        const auto base = splits_.mask((*s)["base"].get<std::string>(), n);
        const auto bins = data::random_k_bin_labels(base, 10, static_cast<std::uint64_t>((*s)["seed"].get<long long>()));
        const auto m = data::incremental_train_test_split(bins, static_cast<int>((*s)["train_dec"].get<long long>()));
        splits_.set(kind + "_" + it.key() + "_train", m.train);
        splits_.set(kind + "_" + it.key() + "_test", m.test);
      }
    };
    blocks(setup_.pheno_meta, "pheno");
    blocks(setup_.signature_config, "signature");
    for (const auto& [name, rows] : splits_.all())
      if (rows.empty() && opt_.log) *opt_.log << "sakura-train: warning: split '" << name << "' has no cells\n";
  }

  Setup setup_;
  SessionOptions opt_;
  data::TrainingData<float> data_;
  data::Splits splits_;
  std::unique_ptr<Controller<float>> ctl_;
};

}  // namespace sakura::story
