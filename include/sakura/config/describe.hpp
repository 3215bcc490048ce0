// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// describe(spec): every field of an ExperimentSpec as canonical JSON, so two specs (one from a
/// JSON config, one from sakura::Experiment) compare field by field and a difference prints.
///
/// Example:
///   if (sakura::describe(a) != sakura::describe(b)) std::puts(sakura::describe(a).dump(2).c_str());
#pragma once

#include <string>
#include <tuple>
#include <variant>

#include "sakura/config/json.hpp"
#include "sakura/config/spec.hpp"

namespace sakura {

namespace config::detail {
using config::Json;

inline const char* name_of(Activation a) {
  constexpr const char* names[] = {"identity", "relu", "softmax", "sigmoid"};
  return names[static_cast<int>(a)];
}
inline const char* name_of(HeadType h) {
  constexpr const char* names[] = {"LinClassifier", "FCClassifier", "LinRegressor", "FCRegressor", "Identity"};
  return names[static_cast<int>(h)];
}
inline const char* name_of(BlockKind k) {
  constexpr const char* names[] = {"main", "signature", "pheno"};
  return names[static_cast<int>(k)];
}
inline const char* name_of(AttachTo a) {
  constexpr const char* names[] = {"none", "main_lat", "signature_lat", "pheno_lat", "all_lat", "multiple"};
  return names[static_cast<int>(a)];
}
inline const char* name_of(GradFlow f) {
  constexpr const char* names[] = {"normal", "GRL", "GNL"};
  return names[static_cast<int>(f)];
}

template <class V>
Json or_null(const std::optional<V>& v) {
  return v ? Json(*v) : Json();
}

inline Json stack(const std::optional<StackSpec>& s) {
  if (!s) return Json();
  return Json{{"hidden_layers", or_null(s->hidden_layers)},
              {"hidden_neurons", s->hidden_neurons},
              {"neurons_is_list", s->neurons_is_list},
              {"output_activation", name_of(s->output_activation)},
              {"dropout_input", s->dropout_input},
              {"dropout_hidden", s->dropout_hidden},
              {"dropout_input_p", s->dropout_input_p},
              {"dropout_hidden_p", s->dropout_hidden_p}};
}

inline Json schedule(const Progressive& p) {
  return Json{{"init_weight", p.init_weight},
              {"constant", p.constant},
              {"start_epoch", p.start_epoch},
              {"mode", p.mode == Progressive::Mode::Multiply ? "multiply" : "increment"},
              {"max_weight", or_null(p.max_weight)},
              {"min_weight", or_null(p.min_weight)}};
}

/// A term: its type's first name and every option it declares in `fields` (all of its options).
template <class Variant>
Json term(const TermSpec<Variant>& t) {
  Json j{{"name", t.name}, {"schedule", schedule(t.schedule)}, {"flow", name_of(t.flow)}, {"site", t.site}};
  std::visit(
      [&](const auto& bound) {
        using Fn = typename std::decay_t<decltype(bound)>::type;
        j["type"] = std::string(Fn::names[0]);
        Json options = Json::object();
        std::apply([&](const auto&... f) { ((options[std::string(f.key)] = bound.options.*(f.member)), ...); },
                   Fn::fields);
        j["options"] = std::move(options);
      },
      t.configured);
  return j;
}

template <class Variant>
Json terms(const std::vector<TermSpec<Variant>>& ts) {
  Json j = Json::array();
  for (const auto& t : ts) j.push_back(term(t));
  return j;
}

inline Json block(const BlockSpec& b) {
  Json keys = Json::array();
  for (const auto& k : b.attach_keys) keys.push_back(Json{{"kind", name_of(k.kind)}, {"key", k.key}, {"index", k.index}});
  return Json{{"name", b.name},
              {"kind", name_of(b.kind)},
              {"lat_dim", b.lat_dim},
              {"out_dim", b.out_dim},
              {"head", name_of(b.head)},
              {"head_stack", stack(b.head_stack)},
              {"encoder", stack(b.encoder)},
              {"attach", name_of(b.attach)},
              {"attach_keys", std::move(keys)},
              {"losses", terms(b.losses)},
              {"regularizations", terms(b.regularizations)},
              {"genes", b.genes},
              {"exclude_from_input", b.exclude_from_input}};
}

inline Json blocks(const std::vector<BlockSpec>& bs) {
  Json j = Json::array();
  for (const auto& b : bs) j.push_back(block(b));
  return j;
}
}  // namespace config::detail

/// Every field of `e` (model shape, terms with their options and schedules, optimizer, device,
/// seed) as JSON in a fixed layout: equal specs give equal values, whatever built them.
inline config::Json describe(const ExperimentSpec& e) {
  using namespace config::detail;
  const ModelSpec& m = e.model;
  Json excludes = Json::array();
  for (const auto& [type, name] : e.optimizer.excludes) excludes.push_back(Json::array({type, name}));
  return Json{
      {"model",
       {{"input_dim", m.input_dim},
        {"encoder_neurons", m.encoder_neurons},
        {"decoder_neurons", m.decoder_neurons},
        {"latent_dim", m.latent_dim},
        {"pre_encoder", stack(m.pre_encoder)},
        {"pre_encoder_out_dim", m.pre_encoder_out_dim},
        {"main_encoder", stack(m.main_encoder)},
        {"decoder", stack(m.decoder)},
        {"decoder_output", name_of(m.decoder_output)},
        {"signatures", blocks(m.signatures)},
        {"phenos", blocks(m.phenos)},
        {"first_layer_input_major", m.first_layer_input_major}}},
      {"main_losses", terms(e.main_losses)},
      {"main_regularizations", terms(e.main_regularizations)},
      {"optimizer",
       {{"lr", e.optimizer.lr},
        {"alpha", e.optimizer.alpha},
        {"weight_decay", e.optimizer.weight_decay},
        {"momentum", e.optimizer.momentum},
        {"eps", e.optimizer.eps},
        {"excludes", std::move(excludes)}}},
      {"device", e.device},
      {"seed", e.seed}};
}

}  // namespace sakura
