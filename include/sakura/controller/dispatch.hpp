// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The two ways a step knows what to compute: RuntimeCall (a Selection read at runtime, terms
/// dispatched with std::visit) and StaticCall (model and selection as types, controller/policy.hpp:
/// terms dispatched statically, unselected blocks never instantiated). The step body reads both
/// through the same members, so it is written once.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "sakura/controller/experiment_spec.hpp"
#include "sakura/controller/policy.hpp"
#include "sakura/controller/selection.hpp"
#include "sakura/nn/extractor.hpp"

namespace sakura {

/// Where a runtime call writes its forward plan: kept by the controller, so a step allocates nothing.
struct PlanScratch {
  ForwardPlan plan;
  std::vector<char> pheno_heads, signature_heads;
};

/// A step whose selection is known at runtime: terms dispatched with std::visit.
template <class T>
struct RuntimeCall {
  const ExperimentSpec& spec;
  const Extractor<T>& model;
  bool reconstruction, main_regularization;
  const Selection& phenos;
  const Selection& signatures;
  bool save_raw, training;

  bool recon() const { return reconstruction; }
  bool main_reg() const { return main_regularization; }
  const Selection& pheno() const { return phenos; }
  const Selection& signature() const { return signatures; }
  /// The forward branches the selection needs, written into `s`.
  const ForwardPlan& plan(PlanScratch& s) const {
    s.pheno_heads.assign(model.phenos().size(), 0);
    s.signature_heads.assign(model.signatures().size(), 0);
    for (const auto& e : phenos.entries) s.pheno_heads[e.block] = 1;
    for (const auto& e : signatures.entries) s.signature_heads[e.block] = 1;
    model.plan(s.plan, reconstruction, main_regularization, s.signature_heads, s.pheno_heads);
    return s.plan;
  }
  /// f(index, configured term) for each reconstruction loss / main regularization, in order.
  template <class F>
  void each_main_loss(F&& f) const {
    each_term(spec.main_losses, f);
  }
  template <class F>
  void each_main_reg(F&& f) const {
    each_term(spec.main_regularizations, f);
  }
  /// f(k, block, for_losses, for_regs) for each selected block; for_*(g) calls g(index, configured term).
  template <class F>
  void each_entry(BlockKind kind, F&& f) const {
    const Selection& sel = kind == BlockKind::Pheno ? phenos : signatures;
    const auto& blocks = kind == BlockKind::Pheno ? spec.model.phenos : spec.model.signatures;
    for (std::size_t k = 0; k < sel.entries.size(); ++k) {
      const auto& e = sel.entries[k];
      const BlockSpec& b = blocks[e.block];
      auto over = [&](const std::vector<int>& idx, const auto& terms) {
        return [&](auto&& g) {
          for (int i : idx) std::visit([&](const auto& t) { g(static_cast<std::size_t>(i), t); }, terms[i].configured);
        };
      };
      f(k, static_cast<std::size_t>(e.block), over(e.losses, b.losses), over(e.regs, b.regularizations));
    }
  }

 private:
  template <class Spec, class F>
  static void each_term(const std::vector<Spec>& specs, F& f) {
    for (std::size_t i = 0; i < specs.size(); ++i) std::visit([&](const auto& b) { f(i, b); }, specs[i].configured);
  }
};

/// A step whose model structure and selection are types: terms dispatched statically, and
/// unselected blocks, terms and forward branches never instantiated.
template <class M, class Sel>
struct StaticCall {
  const ExperimentSpec& spec;
  bool save_raw, training;
  using SigIdx = detail::selected_indices<typename Sel::signature, typename M::signatures>;
  using PhIdx = detail::selected_indices<typename Sel::pheno, typename M::phenos>;
  static constexpr auto recon() { return std::bool_constant<Sel::reconstruction>{}; }
  static constexpr auto main_reg() { return std::bool_constant<Sel::main_regularization>{}; }
  /// The same selection as a runtime object, for validation and the record (built once).
  static const Selection& pheno() { return selection<typename M::phenos, PhIdx>(); }
  static const Selection& signature() { return selection<typename M::signatures, SigIdx>(); }
  static StaticPlan<M, Sel> plan(PlanScratch&) { return {}; }
  template <class F>
  void each_main_loss(F&& f) const {
    each_static<typename M::recon::list>(spec.main_losses, f);
  }
  template <class F>
  void each_main_reg(F&& f) const {
    each_static<typename M::main_regs::list>(spec.main_regularizations, f);
  }
  template <class F>
  void each_entry(BlockKind kind, F&& f) const {
    if (kind == BlockKind::Pheno) entries<typename M::phenos, PhIdx>(spec.model.phenos, f);
    else entries<typename M::signatures, SigIdx>(spec.model.signatures, f);
  }

 private:
  template <class List, class Spec, class F>
  static void each_static(const std::vector<Spec>& specs, F& f) {
    [&]<class... Fns>(detail::TypeList<Fns...>) {
      [&]<std::size_t... I>(std::index_sequence<I...>) {
        (f(std::integral_constant<std::size_t, I>{}, *std::get_if<Configured<Fns>>(&specs[I].configured)), ...);
      }(std::index_sequence_for<Fns...>{});
    }(List{});
  }
  template <class Bs, class Idx, class F>
  static void entries(const std::vector<BlockSpec>& specs, F& f) {
    constexpr auto idx = Idx::value;
    [&]<std::size_t... K>(std::index_sequence<K...>) {
      (
          [&] {
            constexpr std::size_t b = static_cast<std::size_t>(idx[K]);
            using B = detail::type_at_t<b, typename Bs::list>;
            const BlockSpec& spec = specs[b];
            f(std::integral_constant<std::size_t, K>{}, std::integral_constant<std::size_t, b>{},
              [&](auto&& g) { each_static<typename B::losses::list>(spec.losses, g); },
              [&](auto&& g) { each_static<typename B::regs::list>(spec.regularizations, g); });
          }(),
          ...);
    }(std::make_index_sequence<idx.size()>{});
  }
  template <class Bs, class Idx>
  static const Selection& selection() {
    static const Selection sel = [] {
      Selection s;
      std::size_t k = 0;
      detail::for_each_type(typename Bs::list{}, [&]<class B>() {
        for (int b : Idx::value)
          if (static_cast<std::size_t>(b) == k) {
            Selection::Entry e;
            e.block = b;
            for (std::size_t i = 0; i < B::losses::size; ++i) e.losses.push_back(static_cast<int>(i));
            for (std::size_t i = 0; i < B::regs::size; ++i) e.regs.push_back(static_cast<int>(i));
            s.entries.push_back(e);
          }
        ++k;
        return false;
      });
      // evaluation order is the selection's order, as for a runtime selection
      Selection ordered;
      for (int b : Idx::value)
        for (auto& e : s.entries)
          if (e.block == b) ordered.entries.push_back(e);
      return ordered;
    }();
    return sel;
  }
};

}  // namespace sakura
