// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Compile-time policies: a model's terms and blocks as types, and selections as types, so that
/// `ctl.train<Model, Selection>(batch)` instantiates only the terms and forward branches the
/// selection uses and dispatches every term statically. The term math is the same code the JSON
/// path runs (each term's apply()); the structure is checked against the loaded config once.
///
/// Example (the pbmc5k tutorial):
///   using Tutorial = sakura::Model<sakura::Terms<sakura::Mse, sakura::L1>, sakura::Terms<sakura::Sw2Uniform>,
///       sakura::Blocks<sakura::Block<"cd8", sakura::FCRegressorHead, 50, sakura::OnMain,
///                                    sakura::Terms<sakura::Mse, sakura::L1, sakura::Cosine>>>>;
///   ctl.train<Tutorial, sakura::SignatureOnly<"cd8">>(batch);   // the tutorial's cd8_focused split
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <string_view>
#include <type_traits>
#include <utility>

#include "sakura/controller/experiment_spec.hpp"
#include "sakura/nn/forward_scope.hpp"

namespace sakura {

/// A string usable as a template argument: the name of a block.
template <std::size_t N>
struct FixedString {
  char chars[N]{};
  constexpr FixedString(const char (&s)[N]) { std::copy_n(s, N, chars); }
  constexpr std::string_view view() const { return {chars, N - 1}; }
};

// ---------------------------------------------------------------- model description
template <class... Fns>
struct Terms {
  using list = detail::TypeList<Fns...>;
  static constexpr std::size_t size = sizeof...(Fns);
};

template <HeadType H>
struct HeadTag {
  static constexpr HeadType type = H;
};
using LinClassifierHead = HeadTag<HeadType::LinClassifier>;
using FCClassifierHead = HeadTag<HeadType::FCClassifier>;
using LinRegressorHead = HeadTag<HeadType::LinRegressor>;
using FCRegressorHead = HeadTag<HeadType::FCRegressor>;
using IdentityHead = HeadTag<HeadType::Identity>;

/// Attachment references for OnMultiple.
struct MainRef {
  static constexpr BlockKind kind = BlockKind::Main;
  static constexpr std::string_view key{};
};
template <FixedString K>
struct SignatureRef {
  static constexpr BlockKind kind = BlockKind::Signature;
  static constexpr std::string_view key = K.view();
};
template <FixedString K>
struct PhenoRef {
  static constexpr BlockKind kind = BlockKind::Pheno;
  static constexpr std::string_view key = K.view();
};

/// Where a block's head reads its latent (SPEC §1 attachment).
template <AttachTo A, class... Refs>
struct Attachment {
  static constexpr AttachTo to = A;
  static constexpr std::size_t n_refs = sizeof...(Refs);
  static constexpr std::array<BlockKind, sizeof...(Refs)> kinds{Refs::kind...};
  static constexpr std::array<std::string_view, sizeof...(Refs)> keys{Refs::key...};
};
using OwnLatent = Attachment<AttachTo::None>;
using OnMain = Attachment<AttachTo::MainLat>;
using OnAll = Attachment<AttachTo::AllLat>;
template <FixedString K>
using OnSignature = Attachment<AttachTo::SignatureLat, SignatureRef<K>>;
template <FixedString K>
using OnPheno = Attachment<AttachTo::PhenoLat, PhenoRef<K>>;
template <class... Refs>
using OnMultiple = Attachment<AttachTo::Multiple, Refs...>;

/// A signature or phenotype block: name, head, latent width, attachment and terms.
template <FixedString Name, class Head, Index LatentDim, class Attach, class Losses, class Regs = Terms<>>
struct Block {
  static constexpr std::string_view name = Name.view();
  static constexpr HeadType head = Head::type;
  static constexpr Index latent_dim = LatentDim;
  using attach = Attach;
  using losses = Losses;
  using regs = Regs;
};
template <class... Bs>
struct Blocks {
  static constexpr std::size_t size = sizeof...(Bs);
  using list = detail::TypeList<Bs...>;
  static constexpr std::array<std::string_view, sizeof...(Bs)> names{Bs::name...};
  static constexpr int index_of(std::string_view n) {
    for (std::size_t i = 0; i < names.size(); ++i)
      if (names[i] == n) return static_cast<int>(i);
    return -1;
  }
};

template <class Recon, class MainRegs = Terms<>, class Signatures = Blocks<>, class Phenos = Blocks<>>
struct Model {
  using recon = Recon;
  using main_regs = MainRegs;
  using signatures = Signatures;
  using phenos = Phenos;
};

// ---------------------------------------------------------------- selections
struct AllBlocks {};
struct NoBlocks {};
template <FixedString... Names>
struct Only {};

/// A selection policy: which groups a step computes; selected blocks use all their terms.
template <bool Reconstruction, bool MainRegularization, class Pheno = AllBlocks, class Signature = AllBlocks>
struct Select {
  static constexpr bool reconstruction = Reconstruction;
  static constexpr bool main_regularization = MainRegularization;
  using pheno = Pheno;
  using signature = Signature;
};
/// Blocks named in a policy: none named means every block of the group.
template <FixedString... Names>
using Named = std::conditional_t<sizeof...(Names) == 0, AllBlocks, Only<Names...>>;

/// The policies, named after what they compute: All, MainOnly (reconstruction and main latent),
/// SignatureOnly<"cd8", ...> and PhenoOnly<"celltype", ...> (those blocks; SignatureOnly<> and
/// PhenoOnly<> every block of the group).
using All = Select<true, true>;
using MainOnly = Select<true, true, NoBlocks, NoBlocks>;
template <FixedString... S>
using SignatureOnly = Select<false, false, NoBlocks, Named<S...>>;
template <FixedString... P>
using PhenoOnly = Select<false, false, Named<P...>, NoBlocks>;

namespace detail {

template <class Sel, class Bs>
struct selected_indices;
template <class Bs>
struct selected_indices<AllBlocks, Bs> {
  static constexpr auto value = [] {
    std::array<int, Bs::size> a{};
    for (std::size_t i = 0; i < Bs::size; ++i) a[i] = static_cast<int>(i);
    return a;
  }();
};
template <class Bs>
struct selected_indices<NoBlocks, Bs> {
  static constexpr std::array<int, 0> value{};
};
template <FixedString... N, class Bs>
struct selected_indices<Only<N...>, Bs> {
  static constexpr std::array<int, sizeof...(N)> value{Bs::index_of(N.view())...};
  static_assert(((Bs::index_of(N.view()) >= 0) && ...), "the selection names a block the model policy does not have");
};

/// The compile-time forward plan's data: ForwardPlan's members as arrays.
template <std::size_t NS, std::size_t NP>
struct PlanData {
  bool main_ = false, all_ = false, recon_ = false;
  std::array<bool, NS> sig_lat_{}, sig_head_{};
  std::array<bool, NP> ph_lat_{}, ph_head_{};
};

/// A block's attachment as constants: what close_forward_scope() reads of a BlockShape.
struct StaticAttachment {
  struct Ref {
    BlockKind kind = BlockKind::Main;
    int index = -1;  ///< -1: a key the model policy lacks
  };
  struct Refs {
    std::array<Ref, 8> refs{};
    std::size_t n = 0;
    constexpr const Ref* begin() const { return refs.data(); }
    constexpr const Ref* end() const { return refs.data() + n; }
  };
  AttachTo attach = AttachTo::None;
  Refs attach_keys;
};

/// The forward scope of selection Sel on model M, computed at compile time by the runtime's closure.
template <class M, class Sel>
struct StaticPlanOf {
  using S = typename M::signatures;
  using P = typename M::phenos;
  static constexpr std::size_t NS = S::size, NP = P::size;
  template <class Bs>
  static constexpr auto attachments() {
    std::array<StaticAttachment, Bs::size> out{};
    std::size_t i = 0;
    for_each_type(typename Bs::list{}, [&]<class B>() {
      using A = typename B::attach;
      static_assert(A::n_refs <= 8, "at most 8 attachment references per block");
      out[i].attach = A::to;
      out[i].attach_keys.n = A::n_refs;
      for (std::size_t k = 0; k < A::n_refs; ++k) {
        const BlockKind kind = A::kinds[k];
        out[i].attach_keys.refs[k] = {kind, kind == BlockKind::Signature ? S::index_of(A::keys[k])
                                            : kind == BlockKind::Pheno   ? P::index_of(A::keys[k])
                                                                         : 0};
      }
      ++i;
      return false;
    });
    return out;
  }
  static constexpr PlanData<NS, NP> compute() {
    constexpr auto sig = attachments<S>();
    constexpr auto ph = attachments<P>();
    PlanData<NS, NP> d;
    for (int b : selected_indices<typename Sel::signature, S>::value) d.sig_head_[b] = true;
    for (int b : selected_indices<typename Sel::pheno, P>::value) d.ph_head_[b] = true;
    close_forward_scope(d, Sel::reconstruction, Sel::main_regularization, NS, NP,
                        [&](BlockKind kind, std::size_t i) -> const StaticAttachment& {
                          return kind == BlockKind::Signature ? sig[i] : ph[i];
                        });
    return d;
  }
  static constexpr PlanData<NS, NP> value = compute();
};

}  // namespace detail

/// The plan accessors of ForwardPlan, answered at compile time.
template <class M, class Sel>
struct StaticPlan {
  using D = detail::StaticPlanOf<M, Sel>;
  static constexpr auto& d = D::value;
  static constexpr auto main() { return std::bool_constant<d.main_>{}; }
  static constexpr auto all() { return std::bool_constant<d.all_>{}; }
  static constexpr auto recon() { return std::bool_constant<d.recon_>{}; }
  template <std::size_t I>
  static constexpr auto sig_lat(std::integral_constant<std::size_t, I>) { return std::bool_constant<d.sig_lat_[I]>{}; }
  template <std::size_t I>
  static constexpr auto sig_head(std::integral_constant<std::size_t, I>) { return std::bool_constant<d.sig_head_[I]>{}; }
  template <std::size_t I>
  static constexpr auto ph_lat(std::integral_constant<std::size_t, I>) { return std::bool_constant<d.ph_lat_[I]>{}; }
  template <std::size_t I>
  static constexpr auto ph_head(std::integral_constant<std::size_t, I>) { return std::bool_constant<d.ph_head_[I]>{}; }
  template <class F>
  static void for_each_sig(F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) { (f(std::integral_constant<std::size_t, I>{}), ...); }(
        std::make_index_sequence<D::NS>{});
  }
  template <class F>
  static void for_each_ph(F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) { (f(std::integral_constant<std::size_t, I>{}), ...); }(
        std::make_index_sequence<D::NP>{});
  }
};

}  // namespace sakura
