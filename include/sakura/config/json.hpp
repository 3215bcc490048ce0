// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Upstream's JSON configs (SPEC §7) -> ExperimentSpec, selections and train flags; and the loss
/// record back to upstream's result dict. Everything that is wrong is reported at load time,
/// naming the key path ("signature_config.cd8.loss.regression_MSE.type"), never mid-training.
///
/// Example:
///   auto spec = sakura::config::experiment_from_json(config, pheno_config, signature_config, 10000);
///   sakura::Controller<float> ctl(std::move(spec));
#pragma once

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sakura/config/spec.hpp"
#include "sakura/controller/options.hpp"
#include "sakura/controller/record.hpp"
#include "sakura/controller/selection.hpp"

namespace sakura::config {

/// Insertion-ordered JSON: term order decides draw order and the total's summation order.
using Json = nlohmann::ordered_json;

/// Reads a JSON file, naming the file on any error. Nesting deeper than 256 levels is refused
/// (no config nests more than a few): printing or walking such a value recursively could
/// overflow the stack.
inline Json read_json_file(const std::string& path) {
  std::error_code ec;
  sakura::detail::require(!std::filesystem::is_directory(path, ec), "cannot read JSON file '", path,
                          "': it is a directory");
  std::ifstream in(path);
  sakura::detail::require(in.good(), "cannot open JSON file '", path, "'");
  constexpr int kMaxDepth = 256;
  auto depth_guard = [&](int depth, Json::parse_event_t, Json&) {
    if (depth > kMaxDepth) sakura::detail::fail("JSON file '", path, "' nests deeper than ", kMaxDepth, " levels");
    return true;
  };
  try {
    return Json::parse(in, depth_guard);
  } catch (const sakura::Error&) {
    throw;
  } catch (const std::exception& e) {
    sakura::detail::fail("malformed JSON in '", path, "': ", e.what());
  }
}

namespace detail {
using sakura::detail::fail;
using sakura::detail::require;

inline std::string kind_of(const Json& j) { return j.type_name(); }

inline const Json* find(const Json& obj, const std::string& key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}
inline const Json& need(const Json& obj, const std::string& key, const std::string& where) {
  require(obj.is_object(), where, " must be an object, got ", kind_of(obj));
  const Json* v = find(obj, key);
  require(v != nullptr, "missing required key ", where, ".", key);
  return *v;
}
inline double number(const Json& v, const std::string& where) {
  require(v.is_number(), where, " must be a number, got ", kind_of(v), " ", v.dump());
  return v.get<double>();
}
/// An integer (a whole float such as 3.0 too). Range-checked before any conversion: a float or an
/// unsigned value beyond int64 would convert with undefined behaviour or wrap.
inline long long integer(const Json& v, const std::string& where) {
  if (v.is_number_unsigned())
    require(v.get<unsigned long long>() <= static_cast<unsigned long long>(std::numeric_limits<long long>::max()),
            where, " is out of range, got ", v.dump());
  if (v.is_number_integer()) return v.get<long long>();
  const double d = v.is_number() ? v.get<double>() : 0.5;
  require(v.is_number() && std::isfinite(d) && d == std::trunc(d), where, " must be an integer, got ", v.dump());
  require(std::fabs(d) < 0x1p63, where, " is out of range, got ", v.dump());
  return static_cast<long long>(d);
}
/// An integer in [lo, hi]; `what` says why the bound exists ("" for none).
inline long long integer_in(const Json& v, const std::string& where, long long lo, long long hi,
                            const char* what = "") {
  const long long x = integer(v, where);
  if (x < lo || x > hi) fail(where, " must be in [", lo, ", ", hi, "]", what, ", got ", x);
  return x;
}

/// Upper bounds on sizes and counts in a config: far above any real model, low enough that a typo
/// (4294967346) is an error naming its key instead of a multi-GB allocation.
inline constexpr long long kMaxWidth = 1LL << 20;          ///< neurons, latent and output widths
inline constexpr long long kMaxLayers = 1000;              ///< hidden_layers
inline constexpr long long kMaxTermCount = 1LL << 16;      ///< integer term options (SW2 projections, labels)
inline constexpr long long kMaxParameters = 1LL << 30;     ///< the whole model (4 GiB per float32 copy)
inline constexpr const char* kWidthNote = " (a layer width; larger is taken as a typo)";

/// A layer width key: an integer in [1, kMaxWidth].
inline Index width(const Json& v, const std::string& where) { return integer_in(v, where, 1, kMaxWidth, kWidthNote); }

/// Upstream's booleans: JSON true/false or the strings "True"/"False" (what upstream writes and
/// reads); anything else ("yes", "Yes", 1, 1e-308) is an error rather than a silent False.
inline bool boolean(const Json& v, const std::string& where) {
  if (v.is_boolean()) return v.get<bool>();
  require(v.is_string() && (v == "True" || v == "False"), where,
          " must be true, false, \"True\" or \"False\", got ", v.dump());
  return v == "True";
}
inline std::string string(const Json& v, const std::string& where) {
  require(v.is_string(), where, " must be a string, got ", v.dump());
  return v.get<std::string>();
}
inline bool opt_bool(const Json& obj, const std::string& key, const std::string& where, bool dflt = false) {
  const Json* v = find(obj, key);
  return v ? boolean(*v, where + "." + key) : dflt;
}

// ---- term options, read through each term's declared fields
// Integer term options are counts (SW2 projections, label counts): bounded, never truncated.
inline void read_value(const Json& v, int& out, const std::string& w) {
  out = static_cast<int>(integer_in(v, w, 0, kMaxTermCount));
}
inline void read_value(const Json& v, double& out, const std::string& w) { out = number(v, w); }
inline void read_value(const Json& v, bool& out, const std::string& w) { out = boolean(v, w); }
inline void read_value(const Json& v, std::vector<std::vector<double>>& out, const std::string& w) {
  require(v.is_array(), w, " must be a list of lists of numbers");
  out.clear();
  for (std::size_t i = 0; i < v.size(); ++i) {
    require(v[i].is_array(), w, "[", i, "] must be a list of numbers");
    std::vector<double> row;
    for (std::size_t k = 0; k < v[i].size(); ++k) row.push_back(number(v[i][k], w + "[" + std::to_string(i) + "]"));
    out.push_back(std::move(row));
  }
}
template <class Options, class Fields>
void read_fields(Options& o, const Fields& fields, const Json& j, const std::string& where) {
  std::apply(
      [&](const auto&... f) {
        (
            [&] {
              const Json* v = find(j, std::string(f.key));
              require(v || !f.required, "missing required key ", where, ".", f.key);
              if (v) read_value(*v, o.*(f.member), where + "." + std::string(f.key));
            }(),
            ...);
      },
      fields);
}

inline Progressive schedule(const Json& j, const std::string& where) {
  Progressive p;
  p.init_weight = number(need(j, "init_weight", where), where + ".init_weight");
  if (const Json* v = find(j, "progressive_const")) p.constant = number(*v, where + ".progressive_const");
  if (const Json* v = find(j, "progressive_start_epoch"))
    p.start_epoch = static_cast<int>(integer_in(*v, where + ".progressive_start_epoch",
                                                std::numeric_limits<int>::min(), std::numeric_limits<int>::max()));
  if (const Json* v = find(j, "progressive_mode")) {
    const std::string m = string(*v, where + ".progressive_mode");
    require(m == "multiply" || m == "increment", where, ".progressive_mode must be \"multiply\" or \"increment\", got \"",
            m, "\"");
    p.mode = m == "multiply" ? Progressive::Mode::Multiply : Progressive::Mode::Increment;
  }
  if (const Json* v = find(j, "max_weight")) p.max_weight = number(*v, where + ".max_weight");
  if (const Json* v = find(j, "min_weight")) p.min_weight = number(*v, where + ".min_weight");
  return p;
}

inline GradFlow flow(const Json& j, const std::string& where, bool allowed) {
  const bool grl = opt_bool(j, "enable_GRL", where), gnl = opt_bool(j, "enable_GNL", where);
  require(!(grl && gnl), where, ": enable_GRL and enable_GNL are exclusive");
  require(allowed || (!grl && !gnl), where, ": enable_GRL / enable_GNL apply to phenotype and signature terms only");
  return grl ? GradFlow::Reverse : gnl ? GradFlow::Neutralize : GradFlow::Normal;
}

/// Term types upstream declares but never implemented, with why they are rejected.
inline const char* rejected_type(const std::string& t) {
  if (t == "L0_regularization") return "L0_regularization has no gradient (upstream raises NotImplementedError)";
  if (t == "euclidean_anchor") return "euclidean_anchor is not implemented upstream (a TODO there)";
  if (t == "SW2") return "an SW2 loss on outputs is not implemented upstream";
  return nullptr;
}

template <class Types>
std::string known_names() {
  std::string s;
  sakura::detail::for_each_type(Types{}, [&]<class Fn>() {
    for (auto n : Fn::names) s += (s.empty() ? "" : ", ") + std::string(n);
    return false;
  });
  return s;
}

inline LossSpec loss_term(const std::string& name, const Json& j, const std::string& where, Slot slot,
                          bool block_term) {
  LossSpec t;
  t.name = name;
  const std::string type = string(need(j, "type", where), where + ".type");
  if (const char* why = rejected_type(type)) fail(where, ".type: ", why);
  const bool found = sakura::detail::for_each_type(LossTypes{}, [&]<class Fn>() {
    if (!sakura::detail::names_type<Fn>(type)) return false;
    require(Fn::slots.has(slot), where, ".type: ", type, " cannot be used ",
            slot == Slot::Reconstruction ? "as a reconstruction loss" : "on a phenotype/signature head");
    Configured<Fn> b;
    read_fields(b.options, Fn::fields, j, where);
    if constexpr (requires { Fn::invalid(b.options); })
      if (const char* why = Fn::invalid(b.options)) fail(where, ": ", why);
    t.configured = b;
    return true;
  });
  require(found, where, ".type: unknown loss type \"", type, "\"; known: ", known_names<LossTypes>());
  t.schedule = schedule(j, where);
  t.flow = flow(j, where, block_term);
  return t;
}

/// Returns false for type "none" (a placeholder upstream crashes on; we skip it).
inline bool reg_term(RegularizerSpec& t, const std::string& name, const Json& j, const std::string& where,
                     const std::string& site, const RegContext& ctx, const UpstreamCompat& compat, bool block_term) {
  t.name = name;
  t.site = site;
  const std::string type = string(need(j, "type", where), where + ".type");
  if (type == "none") return false;
  if (const char* why = rejected_type(type)) fail(where, ".type: ", why);
  const bool found = sakura::detail::for_each_type(RegularizerTypes{}, [&]<class Fn>() {
    if (!sakura::detail::names_type<Fn>(type)) return false;
    Configured<Fn> b;
    read_fields(b.options, Fn::fields, j, where);
    if constexpr (requires { b.options.projections; })
      if (compat.sw2_fixed_projections > 0) b.options.projections = compat.sw2_fixed_projections;
    if constexpr (requires { Fn::invalid(b.options, ctx); })
      if (const char* why = Fn::invalid(b.options, ctx)) fail(where, ": ", why);
    t.configured = b;
    return true;
  });
  require(found, where, ".type: unknown regularization type \"", type, "\"; known: none, ",
          known_names<RegularizerTypes>());
  t.schedule = schedule(j, where);
  t.flow = flow(j, where, block_term);
  return true;
}

/// A group of loss terms {name: term} at `where` (an object, or absent when optional).
inline void loss_group(std::vector<LossSpec>& out, const Json* group, const std::string& where, Slot slot,
                       bool block_term) {
  require(group != nullptr, "missing required key ", where);
  require(group->is_object(), where, " must be an object of terms");
  for (auto it = group->begin(); it != group->end(); ++it)
    out.push_back(loss_term(it.key(), it.value(), where + "." + it.key(), slot, block_term));
}
/// A group of regularization terms; `site` prefixes each term's draw site.
inline void reg_group(std::vector<RegularizerSpec>& out, const Json* group, const std::string& where,
                      const std::string& site, const RegContext& ctx, const UpstreamCompat& compat, bool block_term) {
  if (!group) return;
  require(group->is_object(), where, " must be an object of terms");
  for (auto it = group->begin(); it != group->end(); ++it) {
    RegularizerSpec t;
    if (reg_term(t, it.key(), it.value(), where + "." + it.key(), site + "." + it.key(), ctx, compat, block_term))
      out.push_back(std::move(t));
  }
}

inline StackSpec stack(const Json& j, const std::string& where, Activation default_act) {
  StackSpec s;
  s.output_activation = default_act;
  if (const Json* v = find(j, "hidden_layers"))
    s.hidden_layers = static_cast<int>(integer_in(*v, where + ".hidden_layers", 1, kMaxLayers));
  if (const Json* v = find(j, "hidden_neurons")) {
    if (v->is_array()) {
      s.neurons_is_list = true;
      for (std::size_t i = 0; i < v->size(); ++i)
        s.hidden_neurons.push_back(width((*v)[i], where + ".hidden_neurons[" + std::to_string(i) + "]"));
    } else {
      s.hidden_neurons = {width(*v, where + ".hidden_neurons")};
    }
  }
  if (const Json* v = find(j, "output_activation_function")) {
    const std::string a = string(*v, where + ".output_activation_function");
    if (a == "identity") s.output_activation = Activation::Identity;
    else if (a == "relu") s.output_activation = Activation::Relu;
    else if (a == "softmax") s.output_activation = Activation::Softmax;
    else if (a == "sigmoid") s.output_activation = Activation::Sigmoid;
    else fail(where, ".output_activation_function: unsupported \"", a, "\" (identity, relu, softmax, sigmoid)");
  }
  const bool dropout = opt_bool(j, "dropout", where);
  s.dropout_input = dropout && opt_bool(j, "dropout_input", where);
  s.dropout_hidden = dropout && opt_bool(j, "dropout_hidden", where);
  if (const Json* v = find(j, "dropout_input_p")) s.dropout_input_p = number(*v, where + ".dropout_input_p");
  if (const Json* v = find(j, "dropout_hidden_p")) s.dropout_hidden_p = number(*v, where + ".dropout_hidden_p");
  for (double p : {s.dropout_input_p, s.dropout_hidden_p})
    require(p >= 0 && p < 1, where, ": dropout probabilities must be in [0, 1), got ", p);
  return s;
}

inline BlockSpec block(const std::string& name, const Json& j, BlockKind kind, const UpstreamCompat& compat) {
  const bool sig = kind == BlockKind::Signature;
  const std::string where = std::string(sig ? "signature_config." : "pheno_config.") + name;
  require(j.is_object(), where, " must be an object");
  BlockSpec b;
  b.name = name;
  b.kind = kind;
  b.lat_dim = width(need(j, sig ? "signature_lat_dim" : "pheno_lat_dim", where),
                    where + (sig ? ".signature_lat_dim" : ".pheno_lat_dim"));
  b.out_dim = width(need(j, sig ? "signature_out_dim" : "pheno_out_dim", where),
                    where + (sig ? ".signature_out_dim" : ".pheno_out_dim"));
  if (sig) {
    if (const Json* g = find(j, "signature_list")) {
      require(g->is_array(), where, ".signature_list must be a list of gene names");
      for (std::size_t i = 0; i < g->size(); ++i)
        b.genes.push_back(string((*g)[i], where + ".signature_list[" + std::to_string(i) + "]"));
      require(static_cast<Index>(b.genes.size()) == b.out_dim, where, ": signature_list names ", b.genes.size(),
              " genes but signature_out_dim is ", b.out_dim);
    }
    b.exclude_from_input = opt_bool(j, "exclude_from_input", where);
  }
  // head: upstream defaults a missing model to LinRegressor (signature, where it crashes) or
  // LinClassifier (phenotype)
  b.head = sig ? HeadType::LinRegressor : HeadType::LinClassifier;
  if (const Json* m = find(j, "model")) {
    const std::string mw = where + ".model";
    const std::string type = string(need(*m, "type", mw), mw + ".type");
    if (type == "LinClassifier") b.head = HeadType::LinClassifier;
    else if (type == "FCClassifier") b.head = HeadType::FCClassifier;
    else if (type == "LinRegressor") b.head = HeadType::LinRegressor;
    else if (type == "FCRegressor") b.head = HeadType::FCRegressor;
    else if (type == "bypass" || type == "Identity") b.head = HeadType::Identity;
    else fail(mw, ".type: unknown model type \"", type, "\"; known: LinClassifier, FCClassifier, LinRegressor, FCRegressor, bypass, Identity");
    b.head_stack = stack(*m, mw, Activation::Identity);
    if (opt_bool(*m, "attach", mw)) {
      const std::string to = string(need(*m, "attach_to", mw), mw + ".attach_to");
      auto one_key = [&](BlockKind k) {
        b.attach_keys.push_back({k, string(need(*m, "attach_key", mw), mw + ".attach_key")});
      };
      if (to == "main_lat") b.attach = AttachTo::MainLat;
      else if (to == "all_lat") b.attach = AttachTo::AllLat;
      else if (to == "signature_lat") b.attach = AttachTo::SignatureLat, one_key(BlockKind::Signature);
      else if (to == "pheno_lat") b.attach = AttachTo::PhenoLat, one_key(BlockKind::Pheno);
      else if (to == "multiple") {
        b.attach = AttachTo::Multiple;
        const Json& keys = need(*m, "attach_key", mw);
        require(keys.is_array() && !keys.empty(), mw, ".attach_key must be a non-empty list for attach_to multiple");
        for (std::size_t i = 0; i < keys.size(); ++i) {
          const std::string kw = mw + ".attach_key[" + std::to_string(i) + "]";
          const std::string t = string(need(keys[i], "type", kw), kw + ".type");
          if (t == "main") b.attach_keys.push_back({BlockKind::Main, ""});
          else if (t == "signature" || t == "pheno")
            b.attach_keys.push_back({t == "signature" ? BlockKind::Signature : BlockKind::Pheno,
                                     string(need(keys[i], "key", kw), kw + ".key")});
          else fail(kw, ".type: must be main, signature or pheno, got \"", t, "\"");
        }
      } else fail(mw, ".attach_to: unknown \"", to, "\"; known: main_lat, signature_lat, pheno_lat, all_lat, multiple");
    }
  }
  if (const Json* e = find(j, "encoder_config")) b.encoder = stack(*e, where + ".encoder_config", Activation::Identity);

  loss_group(b.losses, find(j, "loss"), where + ".loss", Slot::Head, true);
  reg_group(b.regularizations, find(j, "regularization"), where + ".regularization",
            std::string(sig ? "signature." : "pheno.") + name + ".regularization", RegContext{b.lat_dim, !sig}, compat,
            true);
  return b;
}
/// Calls f(in, out, key) for every Linear layer the Extractor builds for `m`, with the same
/// defaults (nn/extractor.hpp; a test keeps the two in step), without allocating anything.
/// `key` is the config key that sets the layer's widths.
template <class F>
void for_each_linear(const ModelSpec& m, F&& f) {
  auto chain = [&](Index in, Index out, long long layers, const StackSpec& st, const std::string& key) {
    Index prev = in;
    for (long long i = 0; i + 1 < layers; ++i) {
      const auto k = static_cast<std::size_t>(i);
      if (st.neurons_is_list && k >= st.hidden_neurons.size()) break;  // the Extractor reports it
      const Index w = st.neurons(k);
      f(prev, w, key + ".hidden_neurons");
      prev = w;
    }
    f(prev, out, key);
  };
  auto with_default = [](StackSpec st, Index neurons) {
    if (st.hidden_neurons.empty()) st.hidden_neurons = {neurons};
    return st;
  };
  Index pre_out = m.encoder_neurons;
  if (!m.pre_encoder) {
    chain(m.input_dim, pre_out, 2, with_default({}, m.encoder_neurons), "config.main_latent.encoder_neurons");
  } else {
    pre_out = m.pre_encoder_out_dim > 0 ? m.pre_encoder_out_dim : m.encoder_neurons;
    chain(m.input_dim, pre_out, m.pre_encoder->hidden_layers.value_or(2),
          with_default(*m.pre_encoder, m.encoder_neurons), "config.pre_encoder_config");
  }
  auto compressor = [&](const std::optional<StackSpec>& enc, Index out, const std::string& key) {
    if (!enc) chain(pre_out, out, 1, StackSpec{}, key);
    else chain(pre_out, out, enc->hidden_layers.value_or(1), with_default(*enc, 50), key + ".encoder_config");
  };
  compressor(m.main_encoder, m.latent_dim, "config.main_latent");
  Index z = m.latent_dim;
  for (const auto* group : {&m.signatures, &m.phenos}) {
    const bool sig = group == &m.signatures;
    for (const auto& b : *group) {
      const std::string key = std::string(sig ? "signature_config." : "pheno_config.") + b.name;
      if (!b.attached()) {
        compressor(b.encoder, b.lat_dim, key);
        z += b.lat_dim;
      }
      if (b.head == HeadType::LinClassifier || b.head == HeadType::LinRegressor) f(b.lat_dim, b.out_dim, key + ".model");
      if (b.head == HeadType::FCClassifier || b.head == HeadType::FCRegressor)
        chain(b.lat_dim, b.out_dim, b.head_stack.hidden_layers.value_or(3), with_default(b.head_stack, 5), key + ".model");
    }
  }
  if (!m.decoder) chain(z, m.input_dim, 3, with_default({}, m.decoder_neurons), "config.main_latent.decoder_neurons");
  else chain(z, m.input_dim, m.decoder->hidden_layers.value_or(3), with_default(*m.decoder, m.decoder_neurons),
             "config.main_latent.decoder_config");
}

/// The model's parameter count (weights and biases), as a double: exact up to 2^53 and never
/// overflowing, whatever the widths.
inline double parameter_count(const ModelSpec& m) {
  double n = 0;
  for_each_linear(m, [&](Index in, Index out, const std::string&) { n += (double(in) + 1) * double(out); });
  return n;
}

/// Throws when the model would exceed kMaxParameters, naming the key behind its largest layer.
inline void check_model_size(const ModelSpec& m) {
  double n = 0, largest = -1;
  std::string key;
  Index lin = 0, lout = 0;
  for_each_linear(m, [&](Index in, Index out, const std::string& k) {
    const double p = (double(in) + 1) * double(out);
    n += p;
    if (p > largest) largest = p, key = k, lin = in, lout = out;
  });
  if (n > double(kMaxParameters))
    fail("the model would have ", static_cast<std::uint64_t>(n), " parameters, more than the limit of ", kMaxParameters,
         " (2^30; 4 GiB per float32 copy, and training keeps 3 or 4 copies); its largest layer is ", lin, " -> ", lout,
         ", set by ", key, " (input genes: ", m.input_dim, "); make the layers narrower");
}
}  // namespace detail

/// Builds the experiment from upstream's three dicts. `input_dim` is the number of input genes
/// (after any signature genes excluded from the input).
inline ExperimentSpec experiment_from_json(const Json& config, const Json& pheno_config, const Json& signature_config,
                                           Index input_dim, const UpstreamCompat& compat = {}) {
  using namespace detail;
  require(config.is_object(), "config must be a JSON object");
  ExperimentSpec e;
  ModelSpec& m = e.model;
  m.input_dim = input_dim;
  if (const Json* d = find(config, "device")) e.device = string(*d, "config.device");
  if (const Json* s = find(config, "rnd_seed")) e.seed = static_cast<std::uint64_t>(integer(*s, "config.rnd_seed"));
  const Json& ml = need(config, "main_latent", "config");
  const std::string mw = "config.main_latent";
  m.encoder_neurons = width(need(ml, "encoder_neurons", mw), mw + ".encoder_neurons");
  m.decoder_neurons = width(need(ml, "decoder_neurons", mw), mw + ".decoder_neurons");
  m.latent_dim = width(need(ml, "latent_dim", mw), mw + ".latent_dim");
  if (const Json* p = find(config, "pre_encoder_config")) {
    m.pre_encoder = stack(*p, "config.pre_encoder_config", Activation::Identity);
    if (const Json* o = find(*p, "pre_encoder_out_dim"))
      m.pre_encoder_out_dim = width(*o, "config.pre_encoder_config.pre_encoder_out_dim");
  }
  if (const Json* p = find(ml, "encoder_config")) m.main_encoder = stack(*p, mw + ".encoder_config", Activation::Identity);
  // upstream crashes on a decoder_config without output_activation_function; relu is its default
  if (const Json* p = find(ml, "decoder_config")) m.decoder = stack(*p, mw + ".decoder_config", Activation::Relu);

  loss_group(e.main_losses, find(ml, "loss"), mw + ".loss", Slot::Reconstruction, false);
  reg_group(e.main_regularizations, find(ml, "regularization"), mw + ".regularization", "main_latent.regularization",
            RegContext{m.latent_dim, false}, compat, false);
  auto blocks = [&](const Json& cfg, BlockKind k, std::vector<BlockSpec>& out) {
    if (cfg.is_null()) return;
    require(cfg.is_object(), k == BlockKind::Signature ? "signature_config" : "pheno_config", " must be an object");
    for (auto it = cfg.begin(); it != cfg.end(); ++it) out.push_back(block(it.key(), it.value(), k, compat));
  };
  blocks(signature_config, BlockKind::Signature, m.signatures);
  blocks(pheno_config, BlockKind::Pheno, m.phenos);
  check_model_size(m);

  const Json& opt = need(config, "optimizer", "config");
  const std::string type = string(need(opt, "type", "config.optimizer"), "config.optimizer.type");
  require(type == "RMSProp", "config.optimizer.type: only \"RMSProp\" is supported (upstream too), got \"", type, "\"");
  e.optimizer.lr = number(need(opt, "RMSProp_lr", "config.optimizer"), "config.optimizer.RMSProp_lr");
  e.optimizer.alpha = number(need(opt, "RMSProp_alpha", "config.optimizer"), "config.optimizer.RMSProp_alpha");
  if (const Json* v = find(opt, "RMSProp_weight_decay")) e.optimizer.weight_decay = number(*v, "config.optimizer.RMSProp_weight_decay");
  if (const Json* v = find(opt, "RMSProp_momentum")) e.optimizer.momentum = number(*v, "config.optimizer.RMSProp_momentum");
  if (const Json* ex = find(opt, "excludes")) {
    require(ex->is_array(), "config.optimizer.excludes must be a list");
    for (std::size_t i = 0; i < ex->size(); ++i) {
      const std::string w = "config.optimizer.excludes[" + std::to_string(i) + "]";
      const std::string t = string(need((*ex)[i], "type", w), w + ".type");
      const Json* n = find((*ex)[i], "name");
      e.optimizer.excludes.push_back({t, n ? string(*n, w + ".name") : std::string()});
    }
  }
  return e;
}

/// A selection dict ({name: {loss: "*" | [..], regularization: "*" | [..] | null}}) or null
/// (everything). A missing or null "regularization" means none (upstream documents None but
/// raises on it: SPEC §9). `where` prefixes error messages, e.g. "story[0].cd8_focused.selected_signature".
inline Selection selection_from_json(const ModelSpec& m, BlockKind kind, const Json& sel, const std::string& where) {
  using namespace detail;
  const auto& blocks = kind == BlockKind::Signature ? m.signatures : m.phenos;
  if (sel.is_null() || (sel.is_string() && sel == "*")) return Selection::all(blocks);
  require(sel.is_object(), where, " must be null, \"*\" or an object {name: {loss, regularization}}, got ", sel.dump());
  Selection s;
  for (auto it = sel.begin(); it != sel.end(); ++it) {
    const std::string bw = where + "." + it.key();
    require(it.value().is_object(), bw, " must be an object {loss, regularization}");
    auto terms = [&](const char* key, bool& all, std::vector<std::string>& names, bool missing_is_all) {
      const Json* v = find(it.value(), key);
      if (!v) {
        all = missing_is_all;
        return;
      }
      if (v->is_string()) {
        require(*v == "*", bw, ".", key, " must be \"*\" or a list of term names, got ", v->dump());
        all = true;
        return;
      }
      require(v->is_array(), bw, ".", key, " must be \"*\" or a list of term names, got ", v->dump());
      all = false;
      for (std::size_t i = 0; i < v->size(); ++i) names.push_back(string((*v)[i], bw + "." + key));
    };
    require(find(it.value(), "loss") != nullptr, "missing required key ", bw, ".loss (\"*\" or a list)");
    bool all_l = false, all_r = false;
    std::vector<std::string> ln, rn;
    terms("loss", all_l, ln, true);
    terms("regularization", all_r, rn, false);
    s.add(blocks, it.key(), all_l, ln, all_r, rn, where);
  }
  return s;
}

/// Upstream's train() keyword arguments as the options of Controller::train().
inline TrainOptions train_call_from_json(const ModelSpec& m, const Json& args) {
  using namespace detail;
  auto flag = [&](const char* k, bool d) { return find(args, k) ? boolean(args[k], std::string("train.") + k) : d; };
  auto selected = [&](BlockKind kind, const char* key) -> std::optional<Selection> {
    const Json* s = find(args, key);
    if (!s) return std::nullopt;
    return selection_from_json(m, kind, *s, key);
  };
  TrainOptions o;
  o.scope.reconstruction = flag("backward_reconstruction_loss", true);
  o.scope.main_regularization = flag("backward_main_latent_regularization", true);
  o.scope.phenos = Scope::group(flag("backward_pheno_loss", true), selected(BlockKind::Pheno, "selected_pheno"));
  o.scope.signatures =
      Scope::group(flag("backward_signature_loss", true), selected(BlockKind::Signature, "selected_signature"));
  o.step.suppress_backward = flag("suppress_backward", false);
  o.step.save_raw_loss = flag("save_raw_loss", false);
  if (flag("detach", false)) {
    const Json* f = find(args, "detach_from");
    const std::string from = f ? string(*f, "train.detach_from") : "";
    if (from == "pre_encoder") o.step.detach = DetachFrom::PreEncoder;
    else if (from == "encoder") o.step.detach = DetachFrom::Encoder;
    else fail("train.detach_from must be \"pre_encoder\" or \"encoder\" when detach is set, got \"", from, "\"");
  }
  return o;
}

/// The record as upstream's result dict: main_latent_loss, pheno_loss, signature_loss,
/// total_loss_backwarded (train only).
inline Json to_json(const LossRecord& r, bool with_total = true) {
  auto group = [](const TermValues& v) {
    Json g = Json::object();
    for (std::size_t i = 0; i < v.names.size(); ++i)
      if (v.present[i]) g[v.names[i]] = v.values[i];
    return g;
  };
  auto block = [&](const BlockRecord& b) {
    return Json{{"loss", group(b.loss)},
                {"regularization", group(b.regularization)},
                {"loss_raw", group(b.loss_raw)},
                {"regularization_raw", group(b.regularization_raw)}};
  };
  Json j;
  j["main_latent_loss"] = block(r.main);
  j["pheno_loss"] = Json::object();
  for (auto& b : r.pheno)
    if (b.present) j["pheno_loss"][b.name] = block(b);
  j["signature_loss"] = Json::object();
  for (auto& b : r.signature)
    if (b.present) j["signature_loss"][b.name] = block(b);
  if (with_total) j["total_loss_backwarded"] = r.total;
  return j;
}

}  // namespace sakura::config
