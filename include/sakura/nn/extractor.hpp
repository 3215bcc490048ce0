// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Extractor<T>: SAKURA's autoencoder with a main latent plus named signature / phenotype
/// blocks (SPEC §1). Builds every module with upstream's shapes and names, and runs a forward
/// pass limited to what a call needs (forward scope), with detach and attachment handling.
#pragma once

#include <functional>
#include <type_traits>
#include <utility>
#include <string>
#include <vector>

#include "sakura/detail/names.hpp"
#include "sakura/nn/forward_scope.hpp"
#include "sakura/nn/model_spec.hpp"
#include "sakura/nn/sequential.hpp"

namespace sakura {

namespace detail {
/// Runs f when c holds: a runtime test for bool, a compile-time one for std::bool_constant
/// (f is a generic lambda, so a false constant never instantiates its body).
template <class F>
void when(bool c, F&& f) {
  if (c) f(0);
}
template <bool B, class F>
void when(std::bool_constant<B>, F&& f) {
  if constexpr (B) f(0);
}
}  // namespace detail

/// The forward tensors of one call (valid until the next call on the same tape).
struct ForwardVars {
  Var x, pre, main, all, recon;
  std::vector<Var> sig_lat, sig_out, ph_lat, ph_out;
};

template <class T = float>
class Extractor {
 public:
  struct Block {
    const BlockShape* spec = nullptr;
    Sequential<T> compressor;  // empty when attached
    Sequential<T> head;        // empty for Identity heads
  };

  /// Builds every module; parameters get PyTorch's default initialisation from `init`.
  Extractor(ModelShape spec, Rng& init) : spec_(std::move(spec)) {
    const ModelShape& m = spec_;
    detail::require(m.input_dim > 0, "input_dim must be positive (got ", m.input_dim, ")");
    detail::require(m.latent_dim > 0, "main_latent.latent_dim must be positive (got ", m.latent_dim, ")");
    validate_blocks();

    // Registration order follows upstream's ModuleDict: pre-encoder, main compressor, signature
    // compressors, signature heads, phenotype compressors, phenotype heads, decoder.
    pre_ = Sequential<T>("model.pre_encoder", "pre_encoder", "");
    if (!m.pre_encoder) {
      StackSpec legacy;
      legacy.hidden_neurons = {m.encoder_neurons};
      chain(pre_, m.input_dim, m.encoder_neurons, 2, legacy, true, "pre_encoder", m.first_layer_input_major);
      pre_out_ = m.encoder_neurons;
    } else {
      pre_out_ = m.pre_encoder_out_dim > 0 ? m.pre_encoder_out_dim : m.encoder_neurons;
      StackSpec st = *m.pre_encoder;
      if (st.hidden_neurons.empty()) st.hidden_neurons = {m.encoder_neurons};
      chain(pre_, m.input_dim, pre_out_, st.hidden_layers.value_or(2), st, true, "pre_encoder_config",
            m.first_layer_input_major);
    }
    main_ = Sequential<T>("model.main_latent_compressor", "main_latent_compressor", "");
    compressor(main_, m.main_encoder, m.latent_dim, "main_latent.encoder_config");

    sigs_.resize(m.signatures.size());
    phs_.resize(m.phenos.size());
    build_blocks(sigs_, m.signatures, "signature");
    build_blocks(phs_, m.phenos, "pheno");

    Index z = m.latent_dim;
    for (auto& b : m.signatures) z += b.attached() ? 0 : b.lat_dim;
    for (auto& b : m.phenos) z += b.attached() ? 0 : b.lat_dim;
    latent_width_ = z;
    dec_ = Sequential<T>("model.decoder", "decoder", "");
    if (!m.decoder) {
      StackSpec legacy;
      legacy.hidden_neurons = {m.decoder_neurons};
      chain(dec_, z, m.input_dim, 3, legacy, false, "decoder");
      dec_.activation(m.decoder_output);
    } else {
      StackSpec st = *m.decoder;
      if (st.hidden_neurons.empty()) st.hidden_neurons = {m.decoder_neurons};
      chain(dec_, z, m.input_dim, st.hidden_layers.value_or(3), st, false, "main_latent.decoder_config");
      dec_.activation(st.output_activation);
    }

    for (auto& p : params_.all()) p.stamp = 0;
    for (auto* s : modules()) init_linear_default(*s, init);
  }

  /// The same from a model whose blocks also carry their terms (an ExperimentSpec's model).
  template <class Block>
    requires(!std::is_same_v<Block, BlockShape>)
  Extractor(const ModelOf<Block>& spec, Rng& init) : Extractor(shape_of(spec), init) {}

  Extractor(const Extractor&) = delete;  // parameters are referenced by address
  Extractor& operator=(const Extractor&) = delete;

  const ModelShape& spec() const { return spec_; }
  ParameterStore<T>& parameters() { return params_; }
  const ParameterStore<T>& parameters() const { return params_; }
  Index input_dim() const { return spec_.input_dim; }
  Index latent_width() const { return latent_width_; }
  const std::vector<Block>& signatures() const { return sigs_; }
  const std::vector<Block>& phenos() const { return phs_; }
  const Sequential<T>& pre_encoder() const { return pre_; }
  const Sequential<T>& decoder() const { return dec_; }

  /// Forward scope (SPEC §1): the latents and heads the requested terms need, and everything
  /// their attachments read. Reconstruction needs every non-attached latent (decoder input).
  void plan(ForwardPlan& p, bool recon, bool main_reg, const std::vector<char>& sig_heads,
            const std::vector<char>& ph_heads) const {
    p.sig_lat_.assign(sigs_.size(), 0);
    p.ph_lat_.assign(phs_.size(), 0);
    p.sig_head_ = sig_heads;
    p.ph_head_ = ph_heads;
    p.sig_head_.resize(sigs_.size(), 0);
    p.ph_head_.resize(phs_.size(), 0);
    detail::close_forward_scope(p, recon, main_reg, sigs_.size(), phs_.size(),
                                [&](BlockKind kind, std::size_t i) -> const BlockShape& {
                                  return *(kind == BlockKind::Signature ? sigs_ : phs_)[i].spec;
                                });
  }

  /// Runs the planned forward pass. `x` is the (N x genes) input already on the tape, or `first`
  /// the first pre-encoder layer already applied (sparse input). Plan: ForwardPlan or a static plan.
  ///
  /// Distributed (`exchange` set; controller.hpp): x holds this rank's rows and ctx says where they
  /// sit in the global batch. The pre-encoder, compressors and decoder run on these rows; heads of
  /// own latents only reserve their dropout masks in their single-process place. After the decoder,
  /// exchange(out) replaces the computed own latents (and `all`) by the global batch's, and the
  /// heads then run on the global rows, so every draw keeps its single-process order.
  template <class Plan, class Dev>
  void forward(Tape<T, Dev>& t, Var x, const Plan& p, DetachFrom detach, ForwardContext<T>& ctx, ForwardVars& out,
               Var first = Var{}, const std::function<void(ForwardVars&)>* exchange = nullptr) const {
    out.x = x;
    out.sig_lat.assign(sigs_.size(), Var{});
    out.sig_out.assign(sigs_.size(), Var{});
    out.ph_lat.assign(phs_.size(), Var{});
    out.ph_out.assign(phs_.size(), Var{});
    out.main = out.all = out.recon = Var{};
    if (!first)
      detail::require(t.cols(x) == spec_.input_dim, "batch expression has ", t.cols(x), " genes, the model expects ",
                      spec_.input_dim);
    out.pre = first ? pre_.forward(t, first, ctx, 1) : pre_.forward(t, x, ctx);
    if (detach == DetachFrom::PreEncoder) out.pre = t.detach(out.pre);
    ReservedMasks& deferred = deferred_;  // distributed: the own heads' masks, reserved in their place
    deferred.clear();
    auto own = [&](const Block& b, Var& lat, Var& o, auto need_head) {
      if (b.spec->attached()) return;
      lat = b.compressor.forward(t, out.pre, ctx);
      if (detach == DetachFrom::Encoder) lat = t.detach(lat);
      detail::when(need_head, [&](auto) {
        if (!exchange) o = head(t, b, lat, ctx);
        else if (ctx.training) b.head.reserve_masks(ctx.row_total, b.spec->lat_dim, *ctx.rng, deferred);
      });
    };
    detail::when(p.main(), [&](auto) {
      out.main = main_.forward(t, out.pre, ctx);
      if (detach == DetachFrom::Encoder) out.main = t.detach(out.main);
    });
    p.for_each_sig([&](auto i) {
      detail::when(p.sig_lat(i), [&](auto) { own(sigs_[i], out.sig_lat[i], out.sig_out[i], p.sig_head(i)); });
    });
    p.for_each_ph([&](auto i) {
      detail::when(p.ph_lat(i), [&](auto) { own(phs_[i], out.ph_lat[i], out.ph_out[i], p.ph_head(i)); });
    });
    detail::when(p.all(), [&](auto) {
      parts_.clear();
      parts_.push_back(out.main);
      for (std::size_t i = 0; i < sigs_.size(); ++i)
        if (!sigs_[i].spec->attached()) parts_.push_back(out.sig_lat[i]);
      for (std::size_t i = 0; i < phs_.size(); ++i)
        if (!phs_[i].spec->attached()) parts_.push_back(out.ph_lat[i]);
      out.all = t.concat(parts_);
    });
    detail::when(p.recon(), [&](auto) { out.recon = dec_.forward(t, out.all, ctx); });
    if (exchange) {  // the global batch's latents; the heads of own latents on them, in order
      (*exchange)(out);
      ForwardContext<T> global{ctx.training, ctx.rng, 0, -1, &deferred};
      p.for_each_sig([&](auto i) {
        detail::when(p.sig_lat(i), [&](auto) {
          detail::when(p.sig_head(i), [&](auto) {
            if (!sigs_[i].spec->attached()) out.sig_out[i] = head(t, sigs_[i], out.sig_lat[i], global);
          });
        });
      });
      p.for_each_ph([&](auto i) {
        detail::when(p.ph_lat(i), [&](auto) {
          detail::when(p.ph_head(i), [&](auto) {
            if (!phs_[i].spec->attached()) out.ph_out[i] = head(t, phs_[i], out.ph_lat[i], global);
          });
        });
      });
      ctx.row_total = -1;  // the attached heads below run on the global rows
    }
    p.for_each_sig([&](auto i) {
      detail::when(p.sig_lat(i), [&](auto) {
        if (!sigs_[i].spec->attached()) return;
        latent(t, out, BlockKind::Signature, i);
        detail::when(p.sig_head(i), [&](auto) { out.sig_out[i] = head(t, sigs_[i], out.sig_lat[i], ctx); });
      });
    });
    p.for_each_ph([&](auto i) {
      detail::when(p.ph_lat(i), [&](auto) {
        if (!phs_[i].spec->attached()) return;
        latent(t, out, BlockKind::Pheno, i);
        detail::when(p.ph_head(i), [&](auto) { out.ph_out[i] = head(t, phs_[i], out.ph_lat[i], ctx); });
      });
    });
  }

  /// The head of a block applied to a latent (used again for gradient-reversed terms).
  template <class Dev>
  Var head(Tape<T, Dev>& t, const Block& b, Var lat, ForwardContext<T>& ctx) const {
    return b.head.empty() ? lat : b.head.forward(t, lat, ctx);
  }

  /// Every module, in registration order.
  std::vector<const Sequential<T>*> modules() const {
    std::vector<const Sequential<T>*> v{&pre_, &main_};
    for (auto& b : sigs_) v.push_back(&b.compressor);
    for (auto& b : sigs_) v.push_back(&b.head);
    for (auto& b : phs_) v.push_back(&b.compressor);
    for (auto& b : phs_) v.push_back(&b.head);
    v.push_back(&dec_);
    return v;
  }
  std::vector<Sequential<T>*> modules() {
    std::vector<Sequential<T>*> v;
    for (auto* s : std::as_const(*this).modules()) v.push_back(const_cast<Sequential<T>*>(s));
    return v;
  }

  /// Index of a block by name, or -1.
  int find(BlockKind kind, const std::string& name) const {
    return detail::index_of_name(kind == BlockKind::Signature ? spec_.signatures : spec_.phenos, name);
  }

 private:
  // ---- construction
  void chain(Sequential<T>& s, Index in, Index out, int layers, const StackSpec& st, bool celu_last,
             const std::string& where, bool first_input_major = false) {
    detail::require(layers >= 1, where, ".hidden_layers must be at least 1 (got ", layers, ")");
    detail::require(!st.neurons_is_list || static_cast<int>(st.hidden_neurons.size()) >= layers - 1, where,
                    ".hidden_neurons lists ", st.hidden_neurons.size(), " widths but hidden_layers ", layers,
                    " needs ", layers - 1);
    if (st.dropout_input) s.dropout(st.dropout_input_p);
    Index prev = in;
    for (int i = 0; i + 1 < layers; ++i) {
      const Index w = st.neurons(static_cast<std::size_t>(i));
      detail::require(w > 0, where, ".hidden_neurons must be positive (got ", w, ")");
      s.linear(params_, prev, w, first_input_major && i == 0);
      s.add(LayerKind::Celu);
      if (st.dropout_hidden) s.dropout(st.dropout_hidden_p);
      prev = w;
    }
    s.linear(params_, prev, out, first_input_major && layers == 1);
    if (celu_last) s.add(LayerKind::Celu);
  }
  void compressor(Sequential<T>& s, const std::optional<StackSpec>& enc, Index out, const std::string& where) {
    if (!enc) {
      chain(s, pre_out_, out, 1, StackSpec{}, true, where);
      return;
    }
    StackSpec st = *enc;
    if (st.hidden_neurons.empty()) st.hidden_neurons = {50};
    chain(s, pre_out_, out, st.hidden_layers.value_or(1), st, true, where);
  }
  void build_blocks(std::vector<Block>& blocks, const std::vector<BlockShape>& specs, const std::string& group) {
    const std::string comp = group == "signature" ? "signature_latent_compressors" : "pheno_latent_compressors";
    const std::string heads = group == "signature" ? "signature_regressors" : "pheno_models";
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const BlockShape& b = specs[i];
      blocks[i].spec = &b;
      if (b.attached()) continue;
      blocks[i].compressor = Sequential<T>("model." + comp + "." + b.name, comp, b.name);
      compressor(blocks[i].compressor, b.encoder, b.lat_dim, group + "_config." + b.name + ".encoder_config");
    }
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const BlockShape& b = specs[i];
      Sequential<T>& h = blocks[i].head = Sequential<T>("model." + heads + "." + b.name, heads, b.name);
      const std::string where = group + "_config." + b.name + ".model";
      const StackSpec& st = b.head_stack;
      switch (b.head) {
        case HeadType::LinClassifier:
          h.linear(params_, b.lat_dim, b.out_dim).add(LayerKind::LogSoftmax);
          break;
        case HeadType::LinRegressor:
          h.linear(params_, b.lat_dim, b.out_dim).activation(st.output_activation);
          break;
        case HeadType::FCClassifier:
        case HeadType::FCRegressor: {
          StackSpec s2 = st;
          if (s2.hidden_neurons.empty()) s2.hidden_neurons = {5};
          chain(h, b.lat_dim, b.out_dim, st.hidden_layers.value_or(3), s2, false, where);
          if (b.head == HeadType::FCClassifier) h.add(LayerKind::LogSoftmax);
          else h.activation(st.output_activation);
          break;
        }
        case HeadType::Identity: break;
      }
    }
  }

  Index attach_width(const BlockShape& b, std::vector<const BlockShape*>& stack) const {
    auto block_width = [&](BlockKind k, const std::string& key) -> Index {
      if (k == BlockKind::Main) return spec_.latent_dim;
      const auto& v = k == BlockKind::Signature ? spec_.signatures : spec_.phenos;
      for (auto& o : v)
        if (o.name == key) {
          if (!o.attached()) return o.lat_dim;
          for (auto* s : stack)
            detail::require(s != &o, "attachment cycle through '", o.name, "'");
          stack.push_back(&o);
          Index w = attach_width(o, stack);
          stack.pop_back();
          return w;
        }
      detail::fail(b.kind == BlockKind::Signature ? "signature_config." : "pheno_config.", b.name,
                   ".model.attach_key: no ", k == BlockKind::Signature ? "signature" : "phenotype", " named '", key,
                   "'");
    };
    switch (b.attach) {
      case AttachTo::None: return b.lat_dim;
      case AttachTo::MainLat: return spec_.latent_dim;
      case AttachTo::AllLat: {
        Index z = spec_.latent_dim;
        for (auto& o : spec_.signatures) z += o.attached() ? 0 : o.lat_dim;
        for (auto& o : spec_.phenos) z += o.attached() ? 0 : o.lat_dim;
        return z;
      }
      case AttachTo::SignatureLat:
      case AttachTo::PhenoLat:
      case AttachTo::Multiple: {
        Index z = 0;
        for (auto& r : b.attach_keys) z += block_width(r.kind, r.key);
        return z;
      }
    }
    return 0;
  }
  void validate_blocks() {
    for (auto* group : {&spec_.signatures, &spec_.phenos})
      for (auto& b : *group) {
        const std::string where =
            (b.kind == BlockKind::Signature ? "signature_config." : "pheno_config.") + b.name;
        detail::require(b.lat_dim > 0, where, ": latent dim must be positive (got ", b.lat_dim, ")");
        detail::require(b.out_dim > 0 || b.head == HeadType::Identity, where, ": out dim must be positive (got ",
                        b.out_dim, ")");
        std::vector<const BlockShape*> stack{&b};
        const Index w = attach_width(b, stack);
        for (auto& r : b.attach_keys) r.index = r.kind == BlockKind::Main ? 0 : find(r.kind, r.key);
        detail::require(w == b.lat_dim, where, ": the head reads a latent of width ", w, " (its attachment) but ",
                        b.kind == BlockKind::Signature ? "signature_lat_dim" : "pheno_lat_dim", " is ", b.lat_dim);
        detail::require(b.head != HeadType::Identity || b.out_dim == b.lat_dim || b.out_dim == 0, where,
                        ": an Identity/bypass head outputs its latent, so the out dim must equal the latent dim ",
                        b.lat_dim, " (got ", b.out_dim, ")");
      }
  }

  // ---- forward helpers
  template <class Dev>
  Var latent(Tape<T, Dev>& t, ForwardVars& out, BlockKind kind, std::size_t i) const {
    if (kind == BlockKind::Main) return out.main;
    Var& lat = (kind == BlockKind::Signature ? out.sig_lat : out.ph_lat)[i];
    if (lat) return lat;
    const BlockShape& b = *(kind == BlockKind::Signature ? sigs_ : phs_)[i].spec;
    switch (b.attach) {
      case AttachTo::MainLat: lat = out.main; break;
      case AttachTo::AllLat: lat = out.all; break;
      case AttachTo::None: break;
      default: {
        Var parts[16];
        detail::require(b.attach_keys.size() <= 16, b.name, ": at most 16 attach keys");
        std::size_t k = 0;
        for (auto& r : b.attach_keys)
          parts[k++] = latent(t, out, r.kind, static_cast<std::size_t>(r.index));
        lat = t.concat(std::span<const Var>(parts, k));
      }
    }
    return lat;
  }

  ModelShape spec_;
  ParameterStore<T> params_;
  Sequential<T> pre_, main_, dec_;
  std::vector<Block> sigs_, phs_;
  Index pre_out_ = 0, latent_width_ = 0;
  mutable std::vector<Var> parts_;
  mutable ReservedMasks deferred_;  // a member: its storage is kept from call to call
};

}  // namespace sakura
