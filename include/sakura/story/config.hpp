// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The parts of upstream's config that drive a run (SPEC §7): the dataset section, the splits and
/// the story (train, test, train_hybrid), parsed and validated completely before any data is read,
/// so a wrong split, selection or key fails at once with its path ("story[0].split_configs.x").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sakura/config/json.hpp"
#include "sakura/controller/controller.hpp"
#include "sakura/data/sampling.hpp"

namespace sakura::story {

using config::Json;

/// One way of training: a train_hybrid split_configs entry, or a `train` action's flags.
struct SplitConfig {
  std::string key;        ///< split_configs key ("cd8_focused"); "train" for a train action
  std::string use_split;  ///< which cells ("overall_train")
  Index batch_size = 50;
  bool main = true, pheno = true, signature = true;  ///< train_main_latent, train_pheno, train_signature
  std::optional<Selection> selected_pheno, selected_signature;  ///< std::nullopt: every block
  DetachFrom detach = DetachFrom::None;

  TrainOptions options(bool save_raw) const {
    return {.scope = {.reconstruction = main,
                      .main_regularization = main,
                      .phenos = Scope::group(pheno, selected_pheno),
                      .signatures = Scope::group(signature, selected_signature)},
            .step = {.detach = detach, .save_raw_loss = save_raw}};
  }
};

/// One test (evaluation + loss log + latent dump), upstream's test().
struct TestConfig {
  std::string on_split;
  bool make_logs = false;
  std::string log_prefix;
  std::vector<std::string> log_groups{"loss", "regularization"};
  bool dump_latent = false;
  std::string latent_prefix;
  bool test_main = true, test_pheno = true, test_signature = true;
  std::optional<Selection> selected_pheno, selected_signature;  ///< std::nullopt: every block
  bool dump_pre_encoder = false, dump_reconstructed = false, reconstructed_gene_names = false;
  bool dump_pheno_out = false, dump_signature_out = false;
  bool save_raw = false;
};

/// Arguments of a next_epoch() call.
struct ProgressionConfig {
  bool main = true, pheno = true, signature = true;
  std::optional<Selection> selected_pheno, selected_signature;  ///< std::nullopt: every block
  Scope scope() const {
    return {.reconstruction = main,
            .main_regularization = main,
            .phenos = Scope::group(pheno, selected_pheno),
            .signatures = Scope::group(signature, selected_signature)};
  }
};

struct ActionConfig {
  enum class Kind { Train, Test, TrainHybrid };
  enum class Mode { Interleave, Sum };
  enum class Prog { None, EpochEnd, OnTest };
  Kind kind = Kind::Train;
  std::string where;  ///< "story[2]"
  std::string remark;
  // common to train and train_hybrid
  bool make_logs = false, save_raw = false;
  std::string log_prefix;
  std::vector<std::string> log_groups{"loss", "regularization"};
  std::vector<TestConfig> tests;
  std::string checkpoint_prefix;
  std::int64_t checkpoint_segment = 2000, test_segment = 2000;
  // train
  SplitConfig train;
  std::int64_t epochs = 0;
  bool test_every_epoch = false, test_on_segment = false, checkpoint_on_segment = false;
  // train_hybrid
  std::vector<SplitConfig> splits;
  std::int64_t ticks = 0;
  Mode mode = Mode::Interleave;
  Prog prog = Prog::None;
  ProgressionConfig prog_on_test;
  bool perform_test = false, perform_checkpoint = false, drop_last = false;
  // test
  TestConfig test;
};

/// The dataset section: upstream's rna_count_sparse (MatrixMarket + CSVs) or our h5ad.
struct DatasetConfig {
  enum class Type { MatrixMarket, H5ad };
  Type type = Type::MatrixMarket;
  std::string mtx, gene_names, cell_names, pheno_csv, h5ad;  ///< resolved paths
  std::string signature_config_path, pheno_meta_path;        ///< resolved; empty when absent
  std::vector<std::string> selected_signature, selected_pheno;
  bool make_names_unique = false;  ///< rename repeated gene/cell names (AnnData's make_unique) instead of failing
  bool backed = false;             ///< h5ad: X stays on disk, batches are read as they are needed
  data::SamplingOptions sampling;  ///< how batches are drawn (exact: as in memory; blocks: for disks)
};

namespace detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;
using namespace config::detail;

inline constexpr long long kMaxBatch = 1LL << 20;  ///< batch_size (a full batch of a million cells fits)
inline constexpr long long kMaxCount = 1LL << 40;  ///< epochs, ticks, segments

inline std::string opt_string(const Json& obj, const std::string& key, const std::string& where, std::string dflt) {
  const Json* v = find(obj, key);
  return v ? string(*v, where + "." + key) : dflt;
}
inline bool need_bool(const Json& obj, const std::string& key, const std::string& where) {
  return boolean(need(obj, key, where), where + "." + key);
}
inline std::vector<std::string> string_list(const Json& v, const std::string& where) {
  require(v.is_array(), where, " must be a list of strings, got ", v.dump());
  std::vector<std::string> out;
  for (std::size_t i = 0; i < v.size(); ++i) out.push_back(string(v[i], where + "[" + std::to_string(i) + "]"));
  return out;
}

/// A selection: null, "*", a dict {name: {loss, regularization}} or (as upstream's train()
/// documents) a name or a list of names, each meaning every term.
inline std::optional<Selection> selection(const ModelSpec& m, BlockKind kind, const Json* v, const std::string& where) {
  if (!v || v->is_null()) return std::nullopt;
  Json sel = *v;
  auto everything = Json{{"loss", "*"}, {"regularization", "*"}};
  if (sel.is_string() && sel != "*") sel = Json{{sel.get<std::string>(), everything}};
  if (sel.is_array()) {
    Json obj = Json::object();
    for (std::size_t i = 0; i < sel.size(); ++i) obj[string(sel[i], where + "[" + std::to_string(i) + "]")] = everything;
    sel = obj;
  }
  Selection s = config::selection_from_json(m, kind, sel, where);
  if (sel.is_string()) return std::nullopt;  // "*"
  return s;
}

inline std::vector<std::string> groups(const Json& obj, const std::string& where, std::vector<std::string> dflt) {
  const Json* v = find(obj, "log_loss_groups");
  if (!v) return dflt;
  auto g = string_list(*v, where + ".log_loss_groups");
  for (const auto& x : g)
    require(x == "loss" || x == "regularization" || x == "loss_raw" || x == "regularization_raw", where,
            ".log_loss_groups: unknown group '", x, "' (loss, regularization, loss_raw, regularization_raw)");
  return g;
}

inline void require_split(const std::string& name, const std::vector<std::string>& known, const std::string& where) {
  for (const auto& k : known)
    if (k == name) return;
  std::string s;
  for (const auto& k : known) s += (s.empty() ? "" : ", ") + k;
  fail(where, ": no split named '", name, "'; splits: ", s);
}

/// `defaults_on`: a story `test` action treats a missing test_main/test_pheno/test_signature as
/// "True"; an inference story as "False" (both as upstream does).
inline TestConfig test_config(const ModelSpec& m, const Json& t, const std::string& where,
                              const std::vector<std::string>& splits, bool defaults_on, const std::string& dflt_prefix,
                              const std::vector<std::string>& dflt_groups, bool save_raw) {
  require(t.is_object(), where, " must be an object");
  TestConfig c;
  c.on_split = string(need(t, "on_split", where), where + ".on_split");
  require_split(c.on_split, splits, where + ".on_split");
  c.make_logs = opt_bool(t, "make_logs", where);
  c.log_prefix = opt_string(t, "log_prefix", where, dflt_prefix);
  c.log_groups = groups(t, where, dflt_groups);
  c.dump_latent = opt_bool(t, "dump_latent", where);
  c.latent_prefix = opt_string(t, "latent_prefix", where, "");
  c.test_main = opt_bool(t, "test_main", where, defaults_on);
  c.test_pheno = opt_bool(t, "test_pheno", where, defaults_on);
  c.test_signature = opt_bool(t, "test_signature", where, defaults_on);
  c.selected_pheno = selection(m, BlockKind::Pheno, find(t, "selected_pheno"), where + ".selected_pheno");
  c.selected_signature =
      selection(m, BlockKind::Signature, find(t, "selected_signature"), where + ".selected_signature");
  c.dump_pre_encoder = opt_bool(t, "dump_pre_encoder_output", where);
  c.dump_reconstructed = opt_bool(t, "dump_reconstructed_output", where);
  const std::string naming = opt_string(t, "reconstructed_output_naming", where, "dimid");
  require(naming == "dimid" || naming == "genenames", where,
          ".reconstructed_output_naming must be dimid or genenames, got '", naming, "'");
  c.reconstructed_gene_names = naming == "genenames";
  c.dump_pheno_out = opt_bool(t, "dump_predicted_phenos", where);
  c.dump_signature_out = opt_bool(t, "dump_predicted_signatures", where);
  const std::string compression = opt_string(t, "compression", where, "none");
  require(compression == "none", where, ".compression '", compression,
          "' is not supported: latents are written as plain CSV (compression \"none\")");
  c.save_raw = t.contains("save_raw_loss") ? opt_bool(t, "save_raw_loss", where) : save_raw;
  return c;
}

/// upstream's detach / detach_from pair.
inline DetachFrom detach(const Json& obj, const std::string& where) {
  if (!opt_bool(obj, "detach", where)) return DetachFrom::None;
  const std::string from = opt_string(obj, "detach_from", where, "");
  if (from == "pre_encoder") return DetachFrom::PreEncoder;
  if (from == "encoder") return DetachFrom::Encoder;
  fail(where, ".detach_from must be \"pre_encoder\" or \"encoder\" when detach is \"True\", got \"", from, "\"");
}

/// The train flags of a split (or a `train` action). As upstream's lint: a selection given while
/// its group is not trained is an error.
inline SplitConfig split_config(const ModelSpec& m, const std::string& key, const Json& s, const std::string& where,
                                const std::vector<std::string>& splits) {
  require(s.is_object(), where, " must be an object");
  SplitConfig c;
  c.key = key;
  c.use_split = string(need(s, "use_split", where), where + ".use_split");
  require_split(c.use_split, splits, where + ".use_split");
  if (const Json* b = find(s, "batch_size"))
    c.batch_size = integer_in(*b, where + ".batch_size", 1, kMaxBatch, " (cells per batch; larger is taken as a typo)");
  c.main = need_bool(s, "train_main_latent", where);
  c.pheno = need_bool(s, "train_pheno", where);
  c.signature = need_bool(s, "train_signature", where);
  const Json* sp = find(s, "selected_pheno");
  const Json* ss = find(s, "selected_signature");
  require(c.pheno || !sp, where, ": selected_pheno is given but train_pheno is \"False\"");
  require(c.signature || !ss, where, ": selected_signature is given but train_signature is \"False\"");
  c.selected_pheno = selection(m, BlockKind::Pheno, sp, where + ".selected_pheno");
  c.selected_signature = selection(m, BlockKind::Signature, ss, where + ".selected_signature");
  c.detach = detach(s, where);
  return c;
}

inline std::vector<TestConfig> tests(const ModelSpec& m, const Json& item, const std::string& where,
                                     const std::vector<std::string>& splits, const std::string& prefix,
                                     const std::vector<std::string>& grps, bool save_raw, bool required) {
  std::vector<TestConfig> out;
  const Json* t = find(item, "tests");
  require(t || !required, "missing required key ", where, ".tests (tests are switched on)");
  if (!t) return out;
  require(t->is_array(), where, ".tests must be a list");
  for (std::size_t i = 0; i < t->size(); ++i)
    out.push_back(test_config(m, (*t)[i], where + ".tests[" + std::to_string(i) + "]", splits, true, prefix, grps,
                              save_raw));
  return out;
}

/// A count of epochs, ticks or ticks between events: in [1, kMaxCount], so tick arithmetic
/// (counts times small factors) cannot overflow.
inline std::int64_t positive(const Json& obj, const std::string& key, const std::string& where, std::int64_t dflt,
                             bool required) {
  const Json* v = find(obj, key);
  require(v || !required, "missing required key ", where, ".", key);
  return v ? integer_in(*v, where + "." + key, 1, kMaxCount) : dflt;
}
}  // namespace detail

/// Parses one story item. `splits` lists the split names the config defines.
inline ActionConfig action_from_json(const ModelSpec& m, const Json& item, const std::string& where,
                                     const std::vector<std::string>& splits) {
  using namespace detail;
  require(item.is_object(), where, " must be an object");
  ActionConfig a;
  a.where = where;
  a.remark = opt_string(item, "remark", where, "");
  const std::string action = opt_string(item, "action", where, "train");
  a.save_raw = opt_bool(item, "save_raw_loss", where);
  a.make_logs = opt_bool(item, "make_logs", where);
  a.log_groups = groups(item, where, {"loss", "regularization"});
  a.checkpoint_prefix = opt_string(item, "checkpoint_prefix", where, "");
  for (const char* k : {"checkpoint_save_arch", "checkpoint_every_epoch"})  // upstream's, unused here: checked only
    (void)opt_bool(item, k, where);
  if (action == "train") {
    a.kind = ActionConfig::Kind::Train;
    a.train = split_config(m, "train", item, where, splits);
    a.epochs = positive(item, "epochs", where, 0, true);
    a.log_prefix = opt_string(item, "log_prefix", where, "train");
    a.test_every_epoch = opt_bool(item, "test_every_epoch", where);
    a.test_on_segment = opt_bool(item, "test_on_segment", where);
    a.test_segment = positive(item, "test_segment", where, 2000, a.test_on_segment);
    a.checkpoint_on_segment = opt_bool(item, "checkpoint_on_segment", where);
    a.checkpoint_segment = positive(item, "checkpoint_segment", where, 2000, false);
    // upstream's train() tests everything in a segmental test, with the action's log groups
    a.tests = tests(m, item, where, splits, "test", a.log_groups, a.save_raw, a.test_every_epoch || a.test_on_segment);
    for (auto& t : a.tests) {
      t.test_main = t.test_pheno = t.test_signature = true;
      t.selected_pheno = t.selected_signature = std::nullopt;
      t.log_groups = a.log_groups;
    }
  } else if (action == "test") {
    a.kind = ActionConfig::Kind::Test;
    a.test = test_config(m, item, where, splits, true, "inference", a.log_groups, a.save_raw);
  } else if (action == "train_hybrid" || action == "train_hybrid_fastload") {
    a.kind = ActionConfig::Kind::TrainHybrid;
    a.drop_last = action == "train_hybrid_fastload";  // its DataLoader drops the last partial batch
    a.ticks = positive(item, "ticks", where, 0, true);
    const std::string mode = string(need(item, "hybrid_mode", where), where + ".hybrid_mode");
    if (mode == "interleave") a.mode = ActionConfig::Mode::Interleave;
    else if (mode == "sum" && action == "train_hybrid") a.mode = ActionConfig::Mode::Sum;
    else fail(where, ".hybrid_mode \"", mode, "\" is not supported (", action == "train_hybrid" ? "interleave or sum" : "interleave",
              "; upstream does not implement it either)");
    const std::string prog = opt_string(item, "prog_loss_weight_mode", where, "");
    if (prog == "epoch_end") a.prog = ActionConfig::Prog::EpochEnd;
    else if (prog == "on_test") a.prog = ActionConfig::Prog::OnTest;
    else require(prog.empty(), where, ".prog_loss_weight_mode must be \"epoch_end\" or \"on_test\", got \"", prog, "\"");
    a.log_prefix = opt_string(item, "log_prefix", where, "");
    a.perform_test = opt_bool(item, "perform_test", where);
    a.test_segment = positive(item, "test_segment", where, 2000, a.perform_test);
    a.perform_checkpoint = opt_bool(item, "perform_checkpoint", where);
    a.checkpoint_segment = positive(item, "checkpoint_segment", where, 2000, false);
    a.tests = tests(m, item, where, splits, a.log_prefix, a.log_groups, a.save_raw, a.perform_test);
    const Json& sc = need(item, "split_configs", where);
    require(sc.is_object() && !sc.empty(), where, ".split_configs must be a non-empty object");
    for (auto it = sc.begin(); it != sc.end(); ++it)
      a.splits.push_back(split_config(m, it.key(), it.value(), where + ".split_configs." + it.key(), splits));
    if (a.prog == ActionConfig::Prog::OnTest) {
      require(a.perform_test, where, ": prog_loss_weight_mode \"on_test\" needs perform_test \"True\"");
      const std::string pw = where + ".loss_prog_on_test";
      const Json& p = need(item, "loss_prog_on_test", where);
      a.prog_on_test.main = need_bool(p, "prog_main", pw);
      a.prog_on_test.pheno = need_bool(p, "train_pheno", pw);
      a.prog_on_test.signature = need_bool(p, "train_signature", pw);
      a.prog_on_test.selected_pheno = selection(m, BlockKind::Pheno, find(p, "selected_pheno"), pw + ".selected_pheno");
      a.prog_on_test.selected_signature =
          selection(m, BlockKind::Signature, find(p, "selected_signature"), pw + ".selected_signature");
    }
  } else {
    fail(where, ".action: unknown action \"", action, "\"; known: train, test, train_hybrid, train_hybrid_fastload");
  }
  return a;
}

/// A whole story (a list of items).
inline std::vector<ActionConfig> story_from_json(const ModelSpec& m, const Json& story,
                                                 const std::vector<std::string>& splits,
                                                 const std::string& where = "story") {
  config::detail::require(story.is_array(), where, " must be a list of actions");
  std::vector<ActionConfig> out;
  for (std::size_t i = 0; i < story.size(); ++i)
    out.push_back(action_from_json(m, story[i], where + "[" + std::to_string(i) + "]", splits));
  return out;
}

/// An inference story (upstream's -y file): a list of test items, or a dict of them.
inline std::vector<TestConfig> inference_from_json(const ModelSpec& m, const Json& j,
                                                   const std::vector<std::string>& splits, const std::string& file) {
  using namespace detail;
  std::vector<const Json*> items;
  if (j.is_object())
    for (auto it = j.begin(); it != j.end(); ++it) items.push_back(&it.value());
  else if (j.is_array())
    for (const auto& x : j) items.push_back(&x);
  else fail(file, ": an inference story must be a list (or dict) of test items");
  std::vector<TestConfig> out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string where = file + "[" + std::to_string(i) + "]";
    const std::string action = opt_string(*items[i], "action", where, "test");
    require(action == "test", where, ".action: inference runs only \"test\" items, got \"", action, "\"");
    out.push_back(test_config(m, *items[i], where, splits, false, "inference", {"loss", "regularization"},
                              opt_bool(*items[i], "save_raw_loss", where)));
  }
  return out;
}

/// The dataset keys of streaming input: "backed" (h5ad only), "sampling" ("exact" or "blocks"),
/// "block_cells" and "blocks_per_fetch" (blocks mode; defaults 64 and 16). `backed` forces it on
/// (sakura-train --backed).
inline void stream_options_from_json(const Json& ds, DatasetConfig& d, bool backed) {
  using namespace detail;
  d.backed = backed || opt_bool(ds, "backed", "config.dataset");
  require(!d.backed || d.type == DatasetConfig::Type::H5ad,
          backed ? "--backed" : "config.dataset.backed",
          ": only an AnnData .h5ad is read from disk as it trains; write one from this data set with `sakura-train "
          "convert -c CONFIG -o data.h5ad` and set \"type\": \"h5ad\", \"h5ad_path\": \"data.h5ad\"");
  const std::string mode = opt_string(ds, "sampling", "config.dataset", "exact");
  require(mode == "exact" || mode == "blocks", "config.dataset.sampling must be \"exact\" or \"blocks\", got \"",
          mode, "\"");
  d.sampling.mode = mode == "exact" ? data::SamplingOptions::Mode::Exact : data::SamplingOptions::Mode::Blocks;
  for (auto [key, field] : {std::pair{"block_cells", &d.sampling.block_cells},
                            std::pair{"blocks_per_fetch", &d.sampling.blocks_per_fetch}})
    if (const Json* v = find(ds, key)) *field = integer_in(*v, std::string("config.dataset.") + key, 1, 1 << 24);
}

}  // namespace sakura::story
