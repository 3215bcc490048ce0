// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Controller<T>: SAKURA's training step (SPEC §5). Owns the model, the terms and their weight
/// schedules, the optimizer, the random generator and one tape reused by every call.
///
/// Example:
///   auto ctl = sakura::io::controller_from_json(config, pheno_config, signature_config, genes);
///   const auto& rec = ctl.train(batch);           // one RMSProp step on every term
///   ctl.next_epoch();                             // advance the weight schedules
#pragma once

#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "sakura/backend/cuda/ops.hpp"
#include "sakura/controller/options.hpp"
#include "sakura/controller/policy.hpp"
#include "sakura/controller/record.hpp"
#include "sakura/controller/selection.hpp"
#include "sakura/controller/batch.hpp"
#include "sakura/nn/extractor.hpp"
#include "sakura/optim/rmsprop.hpp"

namespace sakura {

/// Dev = Cuda trains on a GPU (library sakura::cuda): parameters, gradients, optimizer state and
/// every activation live in device memory; random arrays are drawn by kernels from Philox
/// counters the host reserves; a batch is staged from the host, or gathered on the GPU from a
/// data::DeviceMatrix (Batch::set_device_rows).
/// The parameters' host tensors are then copies, refreshed by sync_to_host().
template <class T = float, class Dev = Cpu>
class Controller {
 public:
  using K = Ops<T, Dev>;

  explicit Controller(ExperimentSpec spec)
      : spec_(std::move(spec)), rng_(spec_.seed), model_(spec_.model, rng_),
        optimizer_(model_.parameters().all(), spec_.optimizer) {
    const ModelSpec& m = spec_.model;
    apply_excludes();
    if constexpr (!K::host_memory) {  // device mirrors of every parameter and its gradient
      for (auto& p : model_.parameters().all()) {
        p.device_value = static_cast<T*>(K::Alloc::allocate(sizeof(T) * static_cast<std::size_t>(p.value.size())));
        p.device_grad = static_cast<T*>(K::Alloc::allocate(sizeof(T) * static_cast<std::size_t>(p.value.size())));
      }
      sync_to_device();
    }
    all_pheno_ = Selection::all(m.phenos);
    all_sig_ = Selection::all(m.signatures);
    reset();
    // preallocate the record once: names in config order, refilled in place by every call
    record_.main.name = "main_latent";
    record_.main.loss.reset(names(spec_.main_losses));
    record_.main.regularization.reset(names(spec_.main_regularizations));
    record_.main.loss_raw.reset(names(spec_.main_losses));
    record_.main.regularization_raw.reset(names(spec_.main_regularizations));
    auto blocks = [&](std::vector<BlockRecord>& out, const std::vector<BlockSpec>& specs) {
      out.resize(specs.size());
      for (std::size_t i = 0; i < specs.size(); ++i) {
        out[i].name = specs[i].name;
        out[i].loss.reset(names(specs[i].losses));
        out[i].loss_raw.reset(names(specs[i].losses));
        out[i].regularization.reset(names(specs[i].regularizations));
        out[i].regularization_raw.reset(names(specs[i].regularizations));
      }
    };
    blocks(record_.pheno, m.phenos);
    blocks(record_.signature, m.signatures);
    sum_main_loss_.reserve(16);
    sum_main_reg_.reserve(16);
    pending_values_.reserve(64);
  }
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;
  ~Controller() {
    if constexpr (!K::host_memory) {
      for (auto& g : graphs_) cuda::destroy_graph(g.exec);
      for (auto& p : model_.parameters().all()) {
        K::Alloc::deallocate(p.device_value);
        K::Alloc::deallocate(p.device_grad);
      }
    }
  }

  /// GPU: copies parameters, gradients and optimizer state to their host tensors (for reading
  /// them, checkpoints, golden comparisons). A no-op on the CPU.
  void sync_to_host() {
    if constexpr (!K::host_memory) {
      for (auto& p : model_.parameters().all()) {
        K::download(p.value.data(), p.device_value, sizeof(T) * static_cast<std::size_t>(p.value.size()));
        K::download(p.grad.data(), p.device_grad, sizeof(T) * static_cast<std::size_t>(p.grad.size()));
      }
      optimizer_.download_state();
    }
  }
  /// GPU: after host tensors were changed (loaded parameters, restored state), copies them to the
  /// device. A no-op on the CPU.
  void sync_to_device() {
    if constexpr (!K::host_memory) {
      for (auto& p : model_.parameters().all()) {
        K::upload(p.device_value, p.value.data(), sizeof(T) * static_cast<std::size_t>(p.value.size()));
        K::upload(p.device_grad, p.grad.data(), sizeof(T) * static_cast<std::size_t>(p.grad.size()));
      }
      optimizer_.upload_state();
      cuda::synchronize();
    }
  }
  /// GPU: capture each distinct step (selection, batch shape, set of stepped parameters) as a
  /// CUDA graph on its second occurrence and replay it afterwards (SPEC: issue "GPU backend").
  void enable_graphs(bool on) {
    static_assert(!K::host_memory, "CUDA graphs need Controller<T, Cuda>");
    graphs_enabled_ = on;
  }
  /// A forward tensor of the last eval() as a host tensor (a copy on the GPU).
  Tensor<T> fetch(Var v) const {
    if (!v) return {};
    auto m = tape_.data(v);
    Tensor<T> t(m.rows, m.cols);
    K::download(t.data(), m.data, sizeof(T) * static_cast<std::size_t>(t.size()));
    return t;
  }

  // ------------------------------------------------------------------ the step
  /// One training step (SPEC §5). Throws sakura::Error on bad input, leaving parameters,
  /// optimizer state, gradients and the random stream exactly as they were.
  const LossRecord& train(const Batch<T>& batch, const TrainOptions& o = {}) {
    const RuntimeCall c{*this, o.reconstruction, o.main_regularization, pick(o.pheno, o.selected_pheno, all_pheno_),
                        pick(o.signature, o.selected_signature, all_sig_), o.save_raw_loss, true};
    return step(batch, c, o.detach, o.suppress_backward);
  }

  /// The same step with the model's structure and the selection known at compile time
  /// (controller/policy.hpp): only the selected terms and forward branches are instantiated and
  /// every term is dispatched statically. The first call checks `M` against the loaded config.
  template <class M, class Sel>
  const LossRecord& train(const Batch<T>& batch, const StepOptions& o = {}) {
    verify<M>();
    const StaticCall<M, Sel> c{*this, o.save_raw_loss, true};
    return step(batch, c, o.detach, o.suppress_backward);
  }

  /// One part of a summed step (upstream's hybrid "sum" mode): computes this batch's terms and
  /// adds their gradients into the parameters' gradients, without an optimizer step. The first
  /// call after a step zero-fills the gradients (PyTorch's zero_grad()); apply_accumulated()
  /// then takes one step on the sum. Equal to back-propagating the summed totals at once.
  const LossRecord& accumulate(const Batch<T>& batch, const TrainOptions& o = {}) {
    const RuntimeCall c{*this, o.reconstruction, o.main_regularization, pick(o.pheno, o.selected_pheno, all_pheno_),
                        pick(o.signature, o.selected_signature, all_sig_), o.save_raw_loss, true};
    tape_.set_accumulate_parameters(true);  // parameter leaves (made in compute) add to their grads
    try {
      guarded([&] { compute(batch, c, o.detach); });
    } catch (...) {
      tape_.set_accumulate_parameters(false);
      throw;
    }
    if (!accumulating_) {
      for (auto& p : model_.parameters().all())
        if (p.trainable) zero_grad(p);
      accumulating_ = true;
    }
    for (auto& p : model_.parameters().all()) p.written = false;
    tape_.backward(total_);
    tape_.set_accumulate_parameters(false);
    for (auto& p : model_.parameters().all()) p.has_grad = p.has_grad || p.written;
    finish_record();
    tape_.reset();
    return record_;
  }
  /// The optimizer step on the gradients summed by accumulate() (a no-op without any).
  void apply_accumulated() {
    if (!accumulating_) return;
    optimizer_.step();
    accumulating_ = false;
  }

  /// The shared computation (SPEC §5, upstream's loss()): the record of a training-mode forward
  /// (dropout on, detach honoured) without backward or optimizer step. The forward tensors stay
  /// readable through forward() until the next call.
  const LossRecord& loss(const Batch<T>& batch, const TrainOptions& o = {}) {
    const RuntimeCall c{*this, o.reconstruction, o.main_regularization, pick(o.pheno, o.selected_pheno, all_pheno_),
                        pick(o.signature, o.selected_signature, all_sig_), o.save_raw_loss, true};
    guarded([&] { compute(batch, c, o.detach); });
    finish_record();
    return record_;
  }

  /// Evaluation (SPEC §5): the same record, dropout off, no gradients, nothing changes except
  /// the random stream. The forward tensors stay readable through forward() until the next call.
  const LossRecord& eval(const Batch<T>& batch, const EvalOptions& o = {}) {
    const RuntimeCall c{*this, o.reconstruction, o.main_regularization, pick(o.pheno, o.selected_pheno, all_pheno_),
                        pick(o.signature, o.selected_signature, all_sig_), o.save_raw_loss, false};
    guarded([&] { compute(batch, c, DetachFrom::None); });
    finish_record();
    return record_;
  }

  /// Latents, head outputs and reconstruction of the last eval() call (empty if not computed).
  MatrixRef<const T> view(Var v) const { return v ? tape_.data(v) : MatrixRef<const T>{}; }
  const ForwardVars& forward() const { return fwd_; }

  // ------------------------------------------------------------------ schedules
  /// Advances the weight schedules of the selected terms by one epoch (SPEC §4).
  void next_epoch(bool prog_main = true, bool prog_pheno = true, const Selection* selected_pheno = nullptr,
                  bool prog_signature = true, const Selection* selected_signature = nullptr) {
    ++epoch_;
    if (prog_main) {
      for (std::size_t i = 0; i < spec_.main_losses.size(); ++i) advance(main_loss_[i], spec_.main_losses[i]);
      for (std::size_t i = 0; i < spec_.main_regularizations.size(); ++i)
        advance(main_reg_[i], spec_.main_regularizations[i]);
    }
    auto blocks = [&](const Selection& sel, std::vector<BlockState>& st, const std::vector<BlockSpec>& specs) {
      for (const auto& e : sel.entries) {
        for (int i : e.losses) advance(st[e.block].loss[i], specs[e.block].losses[i]);
        for (int i : e.regs) advance(st[e.block].reg[i], specs[e.block].regularizations[i]);
      }
    };
    if (prog_pheno) blocks(selected_pheno ? *selected_pheno : all_pheno_, ph_, spec_.model.phenos);
    if (prog_signature) blocks(selected_signature ? *selected_signature : all_sig_, sig_, spec_.model.signatures);
  }
  void tick() { ++tick_; }
  /// Back to initial weights and counters (parameters and optimizer state are kept, as upstream).
  void reset() {
    tick_ = epoch_ = 0;
    init(main_loss_, spec_.main_losses);
    init(main_reg_, spec_.main_regularizations);
    auto blocks = [&](std::vector<BlockState>& st, const std::vector<BlockSpec>& specs) {
      st.resize(specs.size());
      for (std::size_t b = 0; b < specs.size(); ++b) {
        init(st[b].loss, specs[b].losses);
        init(st[b].reg, specs[b].regularizations);
      }
    };
    blocks(ph_, spec_.model.phenos);
    blocks(sig_, spec_.model.signatures);
  }

  // ------------------------------------------------------------------ state access
  int epoch() const { return epoch_; }
  int ticks() const { return tick_; }
  void set_counters(int epoch, int ticks) {
    epoch_ = epoch;
    tick_ = ticks;
  }
  /// Weight and epoch of a term: group is "loss" or "regularization"; block empty for main.
  TermState& term(BlockKind kind, const std::string& block, const std::string& group, const std::string& name) {
    detail::require(group == "loss" || group == "regularization", "term group must be loss or regularization, not '",
                    group, "'");
    const bool loss = group == "loss";
    if (kind == BlockKind::Main)
      return loss ? main_loss_[index_of(spec_.main_losses, name, "main_latent.loss")]
                  : main_reg_[index_of(spec_.main_regularizations, name, "main_latent.regularization")];
    const auto& specs = kind == BlockKind::Signature ? spec_.model.signatures : spec_.model.phenos;
    auto& st = kind == BlockKind::Signature ? sig_ : ph_;
    const int b = model_.find(kind, block);
    detail::require(b >= 0, "no ", kind == BlockKind::Signature ? "signature" : "phenotype", " named '", block, "'");
    return loss ? st[b].loss[index_of(specs[b].losses, name, block + ".loss")]
                : st[b].reg[index_of(specs[b].regularizations, name, block + ".regularization")];
  }

  const ExperimentSpec& spec() const { return spec_; }
  const ModelSpec& model_spec() const { return spec_.model; }
  Extractor<T>& model() { return model_; }
  const Extractor<T>& model() const { return model_; }
  RmsProp<T, Dev>& optimizer() { return optimizer_; }
  Rng& rng() { return rng_; }
  /// Queue of recorded draws to replay (golden tests); empty means draw from rng().
  DrawQueue& injected_draws() { return draws_; }
  const LossRecord& record() const { return record_; }
  const Selection& all_phenos() const { return all_pheno_; }
  const Selection& all_signatures() const { return all_sig_; }
  Tape<T, Dev>& tape() { return tape_; }

 private:
  struct BlockState {
    std::vector<TermState> loss, reg;
  };
  static const Selection& pick(bool on, const Selection* sel, const Selection& all) {
    return on ? (sel ? *sel : all) : none_selection();
  }
  static const Selection& none_selection() {
    static const Selection none;
    return none;
  }

  /// A step whose selection is known at runtime: terms dispatched with std::visit.
  struct RuntimeCall {
    Controller& ctl;
    bool recon_, main_reg_;
    const Selection& ps;
    const Selection& ss;
    bool save_raw, training;
    bool recon() const { return recon_; }
    bool main_reg() const { return main_reg_; }
    const Selection& pheno() const { return ps; }
    const Selection& signature() const { return ss; }
    const ForwardPlan& plan() const {
      ctl.head_ph_.assign(ctl.model_.phenos().size(), 0);
      ctl.head_sig_.assign(ctl.model_.signatures().size(), 0);
      for (const auto& e : ps.entries) ctl.head_ph_[e.block] = 1;
      for (const auto& e : ss.entries) ctl.head_sig_[e.block] = 1;
      ctl.model_.plan(ctl.plan_, recon_, main_reg_, ctl.head_sig_, ctl.head_ph_);
      return ctl.plan_;
    }
    /// f(index, bound term) for each reconstruction loss / main regularization, in order.
    template <class F>
    void each_main_loss(F&& f) const {
      each_term(ctl.spec_.main_losses, f);
    }
    template <class F>
    void each_main_reg(F&& f) const {
      each_term(ctl.spec_.main_regularizations, f);
    }
    template <class Spec, class F>
    static void each_term(const std::vector<Spec>& specs, F& f) {
      for (std::size_t i = 0; i < specs.size(); ++i) std::visit([&](const auto& b) { f(i, b); }, specs[i].fn);
    }
    /// f(k, block, for_losses, for_regs) for each selected block; for_*(g) calls g(index, bound term).
    template <class F>
    void each_entry(BlockKind kind, F&& f) const {
      const Selection& sel = kind == BlockKind::Pheno ? ps : ss;
      const auto& specs = kind == BlockKind::Pheno ? ctl.spec_.model.phenos : ctl.spec_.model.signatures;
      for (std::size_t k = 0; k < sel.entries.size(); ++k) {
        const auto& e = sel.entries[k];
        const BlockSpec& b = specs[e.block];
        auto over = [&](const std::vector<int>& idx, const auto& terms) {
          return [&](auto&& g) {
            for (int i : idx) std::visit([&](const auto& t) { g(static_cast<std::size_t>(i), t); }, terms[i].fn);
          };
        };
        f(k, static_cast<std::size_t>(e.block), over(e.losses, b.losses), over(e.regs, b.regularizations));
      }
    }
  };

  /// A step whose model structure and selection are types: terms dispatched statically, and
  /// unselected blocks, terms and forward branches never instantiated.
  template <class M, class Sel>
  struct StaticCall {
    Controller& ctl;
    bool save_raw, training;
    using SigIdx = sakura::detail::selected_indices<typename Sel::signature, typename M::signatures>;
    using PhIdx = sakura::detail::selected_indices<typename Sel::pheno, typename M::phenos>;
    static constexpr auto recon() { return std::bool_constant<Sel::reconstruction>{}; }
    static constexpr auto main_reg() { return std::bool_constant<Sel::main_regularization>{}; }
    /// The same selection as a runtime object, for validation and the record (built once).
    static const Selection& pheno() { return selection<typename M::phenos, PhIdx>(); }
    static const Selection& signature() { return selection<typename M::signatures, SigIdx>(); }
    static StaticPlan<M, Sel> plan() { return {}; }
    template <class F>
    void each_main_loss(F&& f) const {
      each_static<typename M::recon::list>(ctl.spec_.main_losses, f);
    }
    template <class F>
    void each_main_reg(F&& f) const {
      each_static<typename M::main_regs::list>(ctl.spec_.main_regularizations, f);
    }
    template <class F>
    void each_entry(BlockKind kind, F&& f) const {
      if (kind == BlockKind::Pheno) entries<typename M::phenos, PhIdx>(ctl.spec_.model.phenos, f);
      else entries<typename M::signatures, SigIdx>(ctl.spec_.model.signatures, f);
    }

   private:
    template <class List, class Spec, class F>
    static void each_static(const std::vector<Spec>& specs, F& f) {
      [&]<class... Fns>(sakura::detail::TypeList<Fns...>) {
        [&]<std::size_t... I>(std::index_sequence<I...>) {
          (f(std::integral_constant<std::size_t, I>{}, *std::get_if<Bound<Fns>>(&specs[I].fn)), ...);
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
              using B = sakura::detail::type_at_t<b, typename Bs::list>;
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
        sakura::detail::for_each_type(typename Bs::list{}, [&]<class B>() {
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

  /// Scalars to add into the total, in upstream's order (SPEC §4).
  struct Pending {
    std::vector<Var> loss, reg;
  };

  template <class V>
  static std::vector<std::string> names(const std::vector<V>& terms) {
    std::vector<std::string> n;
    for (auto& t : terms) n.push_back(t.name);
    return n;
  }
  template <class V>
  static int index_of(const std::vector<V>& terms, const std::string& name, const std::string& where) {
    std::string known;
    for (std::size_t i = 0; i < terms.size(); ++i) {
      if (terms[i].name == name) return static_cast<int>(i);
      known += (i ? ", " : "") + terms[i].name;
    }
    detail::fail(where, ": no term named '", name, "'; configured: ", known.empty() ? "(none)" : known);
  }
  template <class V>
  static void init(std::vector<TermState>& st, const std::vector<V>& terms) {
    st.resize(terms.size());
    for (std::size_t i = 0; i < terms.size(); ++i) st[i] = TermState{terms[i].schedule.init_weight, 0};
  }
  template <class V>
  static void advance(TermState& s, const V& term) {
    s.epoch += 1;
    s.weight = term.schedule.advance(s.weight, s.epoch);
  }

  /// optimizer.excludes (SPEC §6): frozen modules keep their values and get no optimizer state.
  void apply_excludes() {
    for (auto& [type, name] : spec_.optimizer.excludes) {
      const bool singleton = type == "pre_encoder" || type == "main_latent_compressor" || type == "decoder";
      const bool group = type == "signature_latent_compressors" || type == "signature_regressors" ||
                         type == "pheno_latent_compressors" || type == "pheno_models";
      detail::require(singleton || group, "optimizer.excludes: unknown module type '", type,
                      "' (known: pre_encoder, main_latent_compressor, decoder, signature_latent_compressors, "
                      "signature_regressors, pheno_latent_compressors, pheno_models)");
      bool any = false;
      for (auto& p : model_.parameters().all())
        if (p.module == type && (singleton || p.block == name)) {
          p.trainable = false;
          any = true;
        }
      detail::require(any || singleton, "optimizer.excludes: no ", type, " named '", name, "'");
    }
  }

  /// Runs f; on any exception restores the random stream and the injected-draw position.
  template <class F>
  void guarded(F&& f) {
    const Rng::State rs = rng_.state();
    const std::size_t dq = draws_.position();
    try {
      f();
    } catch (...) {
      rng_.set_state(rs);
      draws_.rewind_to(dq);
      tape_.reset();
      throw;
    }
  }

  // ------------------------------------------------------------------ validation
  void validate(const Batch<T>& batch, const Selection& ps, const Selection& ss) {
    const ModelSpec& m = spec_.model;
    const Index n = batch.cells();
    const CsrMatrix<T>* sp = batch.sparse_input();
    // messages are built only on failure: validation runs every step and must not allocate
    const auto* dv = batch.device_input();
    auto shape = [&] { return dv ? shape_str(n, dv->genes) : sp ? sp->shape_str() : batch.expr.shape_str(); };
    if (n <= 0) detail::fail("batch has no cells (expression ", shape(), ")");
    if (batch.genes() != m.input_dim)
      detail::fail("batch expression is ", shape(), " but the model expects ", m.input_dim, " genes per cell");
    if (dv) {
      if constexpr (K::host_memory)
        detail::fail("batch input is in GPU memory (set_device_rows) but this controller runs on the CPU: use a "
                     "Controller<T, Cuda> or a host batch");
      if (sp || !batch.expr.empty())
        detail::fail("batch has device rows and a host expression ", sp ? sp->shape_str() : batch.expr.shape_str(),
                     ": set one input (clear_device_rows() or clear the host one)");
      if (!dv->data) detail::fail("batch device rows point to no matrix (null data)");
      for (Index i = 0; i < n; ++i)
        if (dv->index[i] < 0 || dv->index[i] >= dv->data_rows)
          detail::fail("batch device row index ", dv->index[i], " of cell ", i, " is outside the device matrix's ",
                       dv->data_rows, " rows");
    }
    if (sp) {
      sp->validate("batch sparse expression");
      if (!batch.expr.empty() && (batch.expr.rows() != n || batch.expr.cols() != sp->cols))
        detail::fail("batch dense expression ", batch.expr.shape_str(), " differs from its sparse input ", shape());
      for (Index k = 0; k < sp->nnz(); ++k)
        if (!std::isfinite(sp->values[static_cast<std::size_t>(k)])) {
          const Index row = static_cast<Index>(
              std::upper_bound(sp->indptr.begin(), sp->indptr.end(), static_cast<std::int64_t>(k)) -
              sp->indptr.begin() - 1);
          detail::fail("batch sparse expression contains ", std::isnan(sp->values[k]) ? "NaN" : "Inf", " at [", row,
                       ", ", sp->indices[k], "]");
        }
    }
    if (!dv && (!batch.expr.empty() || !sp)) require_finite(batch.expr, "batch expression", "");
    if (batch.layout_id() != layout_id_ || batch.layout_id() == 0) {
      sig_slot_.assign(m.signatures.size(), -1);
      ph_slot_.assign(m.phenos.size(), -1);
      for (std::size_t i = 0; i < m.signatures.size(); ++i) sig_slot_[i] = batch.signature_slot(m.signatures[i].name);
      for (std::size_t i = 0; i < m.phenos.size(); ++i) ph_slot_[i] = batch.pheno_slot_index(m.phenos[i].name);
      layout_id_ = batch.layout_id();
    }
    for (const auto& e : ss.entries) {
        const BlockSpec& b = m.signatures[e.block];
        if (e.losses.empty()) continue;
        detail::require(sig_slot_[e.block] >= 0, "batch has no target for signature '", b.name, "' (expected ",
                        Shape{n, b.out_dim}, ")");
        const Tensor<T>& y = batch.signatures()[sig_slot_[e.block]].values;
        detail::require(y.rows() == n && y.cols() == b.out_dim, "signature '", b.name, "' target is ", y.shape(),
                        ", expected ", Shape{n, b.out_dim});
        require_finite(y, "signature '", b.name, "' target");
      }
    for (const auto& e : ps.entries) {
        const BlockSpec& b = m.phenos[e.block];
        const auto* ph = ph_slot_[e.block] >= 0 ? &batch.phenos()[ph_slot_[e.block]] : nullptr;
        bool labels = false, values = false;
        for (int i : e.losses)
          std::visit([&](auto& t) {
            using Fn = typename std::decay_t<decltype(t)>::fn;
            labels = labels || Fn::needs_labels;
            values = values || Fn::needs_target;
          }, b.losses[i].fn);
        for (int i : e.regs)
          std::visit([&](auto& t) {
            labels = labels || label_use_of<typename std::decay_t<decltype(t)>::fn>() == LabelUse::Required;
          }, b.regularizations[i].fn);
        if (labels) {
          detail::require(ph && !ph->labels.empty(), "batch has no labels for phenotype '", b.name, "' (expected ", n,
                          " class indices)");
          detail::require(static_cast<Index>(ph->labels.size()) == n, "phenotype '", b.name, "' has ",
                          ph->labels.size(), " labels for ", n, " cells");
        }
        bool classes = false;
        for (int i : e.losses)
          std::visit([&](auto& t) { classes = classes || std::decay_t<decltype(t)>::fn::needs_labels; }, b.losses[i].fn);
        if (classes)
          for (Index r = 0; r < n; ++r)
            detail::require(ph->labels[r] >= 0 && ph->labels[r] < b.out_dim, "phenotype '", b.name, "': label ",
                            ph->labels[r], " of cell ", r, " is outside [0, ", b.out_dim, ")");
        if (values) {
          const bool has_values = ph && !ph->values.empty();
          const bool from_labels = ph && !has_values && b.out_dim == 1 && static_cast<Index>(ph->labels.size()) == n;
          detail::require(has_values || from_labels, "batch has no values for phenotype '", b.name, "' (expected ",
                          Shape{n, b.out_dim}, ")");
          if (has_values) {
            detail::require(ph->values.rows() == n && ph->values.cols() == b.out_dim, "phenotype '", b.name,
                            "' values are ", ph->values.shape(), ", expected ", Shape{n, b.out_dim});
            require_finite(ph->values, "phenotype '", b.name, "' values");
          }
        }
      }
  }
  template <class... What>
  static void require_finite(const Tensor<T>& t, const What&... what) {
    if (cpu::all_finite(t.data(), t.size())) return;
    for (Index i = 0; i < t.size(); ++i)
      if (!std::isfinite(t[i]))
        detail::fail(what..., " contains ", std::isnan(t[i]) ? "NaN" : "Inf", " at [", i / t.cols(), ", ", i % t.cols(),
                     "]");
  }

  // ------------------------------------------------------------------ the shared computation
  /// One step's forward, terms and total; the same body serves RuntimeCall and StaticCall.
  template <class Call>
  void compute(const Batch<T>& batch, const Call& c, DetachFrom detach) {
    const Selection& ps = c.pheno();
    const Selection& ss = c.signature();
    validate(batch, ps, ss);

    tape_.reset();
    record_.main.clear();
    for (auto& b : record_.pheno) b.clear();
    for (auto& b : record_.signature) b.clear();

    const auto& plan = c.plan();
    ForwardContext<T> ctx{c.training, &rng_};
    Var x, first;
    input(batch, c, x, first);
    model_.forward(tape_, x, plan, detach, ctx, fwd_, first);

    DrawSource draws{&rng_, &draws_};
    sum_main_loss_.clear();
    sum_main_reg_.clear();
    detail::when(c.recon(), [&](auto) {
      c.each_main_loss([&](auto i, const auto& bound) {
        LossArgs<T, Dev> a{tape_, fwd_.recon, x, nullptr};
        Var raw = std::decay_t<decltype(bound)>::fn::apply(a, bound.options);
        sum_main_loss_.push_back(weigh(raw, main_loss_[i].weight, record_.main.loss, record_.main.loss_raw, i, c));
      });
    });
    detail::when(c.main_reg(), [&](auto) {
      c.each_main_reg([&](auto i, const auto& bound) {
        RegArgs<T, Dev> a{tape_, fwd_.main, nullptr, draws, spec_.main_regularizations[i].site};
        Var raw = std::decay_t<decltype(bound)>::fn::apply(a, bound.options);
        sum_main_reg_.push_back(
            weigh(raw, main_reg_[i].weight, record_.main.regularization, record_.main.regularization_raw, i, c));
      });
    });
    run_blocks(batch, c, BlockKind::Pheno, ctx, draws);
    run_blocks(batch, c, BlockKind::Signature, ctx, draws);

    // total_loss_backwarded: float running sum in upstream's order (SPEC §4)
    total_ = Var{};
    auto add = [&](Var v) { total_ = total_ ? tape_.add(total_, v) : v; };
    for (Var v : sum_main_loss_) add(v);
    for (Var v : sum_main_reg_) add(v);
    for (auto [pend, sel] : {std::pair{&pend_ph_, &ps}, std::pair{&pend_sig_, &ss}}) {
      for (std::size_t k = 0; k < sel->entries.size(); ++k)
        for (Var v : (*pend)[k].loss) add(v);
      for (std::size_t k = 0; k < sel->entries.size(); ++k)
        for (Var v : (*pend)[k].reg) add(v);
    }
    if (!total_) total_ = tape_.host_filled(1, 1, [](MatrixRef<T> m) { m.data[0] = T(0); });
  }

  /// The input on the tape. A sparse batch runs the first pre-encoder layer as a sparse product
  /// (`first`), and is densified only when the reconstruction needs it as a target.
  template <class Call>
  void input(const Batch<T>& batch, const Call& c, Var& x, Var& first) {
    if constexpr (!K::host_memory) {
      if (const auto* dv = batch.device_input()) {  // gathered on the GPU
        x = tape_.gather_rows(dv->data, dv->index, dv->genes);
        return;
      }
    }
    const CsrMatrix<T>* sp = batch.sparse_input();
    const auto& layers = model_.pre_encoder().layers();
    // sparse products are a CPU feature: a GPU gets the densified batch
    const bool sparse_first = K::host_memory && sp && !layers.empty() && layers.front().kind == LayerKind::Linear;
    if (!batch.expr.empty()) {
      x = tape_.constant(batch.expr);
    } else if (!sparse_first || bool(c.recon())) {
      x = tape_.host_filled(sp->rows, sp->cols, [&](MatrixRef<T> m) { cpu::csr_densify(m.data, sp->ref()); });
    }
    if constexpr (K::host_memory)
      if (sparse_first) {
        const Layer<T>& l = layers.front();
        first = tape_.linear_sparse(sp->ref(), tape_.param(*l.weight), tape_.param(*l.bias), l.weight->transposed);
      }
  }

  /// The selected blocks' losses and regularizations (SPEC §2-3), in the selection's order.
  template <class Call>
  void run_blocks(const Batch<T>& batch, const Call& c, BlockKind kind, ForwardContext<T>& ctx,
                  DrawSource& draws) {
    const bool pheno = kind == BlockKind::Pheno;
    const Selection& sel = pheno ? c.pheno() : c.signature();
    const auto& specs = pheno ? spec_.model.phenos : spec_.model.signatures;
    const auto& blocks = pheno ? model_.phenos() : model_.signatures();
    auto& st = pheno ? ph_ : sig_;
    auto& rec = pheno ? record_.pheno : record_.signature;
    const auto& lat = pheno ? fwd_.ph_lat : fwd_.sig_lat;
    const auto& out = pheno ? fwd_.ph_out : fwd_.sig_out;
    const auto& slot = pheno ? ph_slot_ : sig_slot_;
    auto& pend = pheno ? pend_ph_ : pend_sig_;
    if (pend.size() < sel.entries.size()) pend.resize(sel.entries.size());
    c.each_entry(kind, [&](auto k, auto b, auto for_losses, auto for_regs) {
      const BlockSpec& spec = specs[b];
      BlockRecord& r = rec[b];
      r.present = true;
      pend[k].loss.clear();
      pend[k].reg.clear();
      // targets: a signature's marker expression; a phenotype's labels and/or values
      const std::int64_t* labels = nullptr;
      Var target;
      if (slot[b] >= 0) {
        if (pheno) {
          const auto& ph = batch.phenos()[slot[b]];
          if (static_cast<Index>(ph.labels.size()) == batch.cells()) labels = ph.labels.data();
          if (!ph.values.empty()) target = tape_.constant(ph.values);
          else if (labels && spec.out_dim == 1) {
            target = tape_.host_filled(batch.cells(), 1, [&](MatrixRef<T> m) {
              for (Index i = 0; i < batch.cells(); ++i) m.data[i] = static_cast<T>(labels[i]);
            });
          }
        } else {
          target = tape_.constant(batch.signatures()[slot[b]].values);
        }
      }
      for_losses([&](auto i, const auto& bound) {
        const LossSpec& term = spec.losses[i];
        Var pred = out[b];
        if (term.flow != GradFlow::Normal) {  // re-apply the head to the reversed / neutralised latent
          Var l = term.flow == GradFlow::Reverse ? tape_.reverse_grad(lat[b]) : tape_.detach(lat[b]);
          pred = model_.head(tape_, blocks[b], l, ctx);
        }
        LossArgs<T, Dev> a{tape_, pred, target, labels ? tape_.labels(labels, batch.cells()) : nullptr};
        Var raw = std::decay_t<decltype(bound)>::fn::apply(a, bound.options);
        pend[k].loss.push_back(weigh(raw, st[b].loss[i].weight, r.loss, r.loss_raw, i, c));
      });
      for_regs([&](auto i, const auto& bound) {
        const RegularizerSpec& term = spec.regularizations[i];
        Var z = lat[b];
        if (term.flow == GradFlow::Reverse) z = tape_.reverse_grad(z);
        else if (term.flow == GradFlow::Neutralize) z = tape_.detach(z);
        RegArgs<T, Dev> a{tape_, z, pheno ? labels : nullptr, draws, term.site};
        Var raw = std::decay_t<decltype(bound)>::fn::apply(a, bound.options);
        pend[k].reg.push_back(weigh(raw, st[b].reg[i].weight, r.regularization, r.regularization_raw, i, c));
      });
    });
  }

  /// raw * weight (the weight rounded to T, staged from the host so a replayed graph reads the
  /// current schedule); its values reach the record in finish_record().
  template <class Call>
  Var weigh(Var raw, double weight, TermValues& weighted, TermValues& raws, std::size_t i, const Call& c) {
    Var w = tape_.scale(raw, weight);
    pending_values_.push_back(PendingValue{raw, w, &weighted, c.save_raw ? &raws : nullptr, i});
    return w;
  }

  /// compute(), then (unless suppressed) backward and one optimizer step with PyTorch 1.13's
  /// zero_grad semantics (SPEC §6). On a GPU with graphs enabled, a step seen before is replayed.
  template <class Call>
  const LossRecord& step(const Batch<T>& batch, const Call& c, DetachFrom detach, bool suppress_backward) {
    if constexpr (!K::host_memory) {
      if (graphs_enabled_ && !suppress_backward) return graph_step(batch, c, detach);
    }
    guarded([&] { compute(batch, c, detach); });
    if (!suppress_backward) backward_and_step();
    finish_record();
    tape_.reset();  // frees this step's activations; merges arena chunks once, then never allocates
    return record_;
  }
  void backward_and_step() {
    for (auto& p : model_.parameters().all()) p.written = false;
    tape_.backward(total_);
    for (auto& p : model_.parameters().all()) {
      if (p.written) {
        if (!p.has_grad) ++has_grad_generation_;
        p.has_grad = true;
      } else if (p.has_grad && p.trainable) {
        zero_grad(p);  // torch 1.13 zero_grad(): zero-fill
      }
    }
    optimizer_.step();
  }
  void zero_grad(Parameter<T>& p) {
    if constexpr (K::host_memory) p.grad.fill(T(0));
    else K::fill(p.device_grad, p.grad.size(), T(0));
  }

  /// Reads the step's scalars into the record (on a GPU: once, after the device work).
  void finish_record() {
    for (const PendingValue& v : pending_values_) {
      v.weighted->set(v.index, static_cast<double>(tape_.scalar(v.w)));
      if (v.raws) v.raws->set(v.index, static_cast<double>(tape_.scalar(v.raw)));
    }
    pending_values_.clear();
    record_.total = static_cast<double>(tape_.scalar(total_));
  }

  /// GPU graph steps: the first occurrence of a step runs eagerly (it sizes the arenas and creates
  /// optimizer state), the second is captured, later ones re-run only the host logic (staging
  /// fills, bookkeeping; Ops launch nothing) and replay the graph. Weights, the learning rate and
  /// random draws reach the graph through device or pinned buffers, so they may change freely.
  template <class Call>
  const LossRecord& graph_step(const Batch<T>& batch, const Call& c, DetachFrom detach) {
    if constexpr (!K::host_memory) {
      const GraphKey key{&c.pheno(), &c.signature(), c.recon(), c.main_reg(), c.save_raw, detach, batch.cells(),
                         batch.layout_id(), has_grad_generation_, input_kind(batch)};
      GraphEntry* entry = nullptr;
      for (auto& g : graphs_)
        if (g.key == key) entry = &g;
      if (!entry) {  // first occurrence: eager
        graphs_.push_back(GraphEntry{key, nullptr});
        guarded([&] { compute(batch, c, detach); });
        backward_and_step();
      } else if (!entry->exec) {  // second: capture, then launch
        guarded([&] {
          cuda::begin_capture();
          try {
            compute(batch, c, detach);
            backward_and_step();
          } catch (...) {
            cuda::destroy_graph(cuda::end_capture());
            throw;
          }
          entry->exec = cuda::end_capture();
        });
        cuda::launch_graph(entry->exec);
      } else {  // replay
        cuda::dry_run() = true;
        try {
          guarded([&] { compute(batch, c, detach); });
          backward_and_step();
        } catch (...) {
          cuda::dry_run() = false;
          throw;
        }
        cuda::dry_run() = false;
        cuda::launch_graph(entry->exec);
      }
      finish_record();
      tape_.reset();
    }
    return record_;
  }

  /// 0 dense host, 1 sparse host (densified), 2 device rows.
  static int input_kind(const Batch<T>& b) { return b.device_input() ? 2 : b.expr.empty() ? 1 : 0; }

  // ------------------------------------------------------------------ policy check
  /// Checks once per controller that model policy M describes the loaded config.
  template <class M>
  void verify() {
    static const char tag = 0;  // one address per policy type
    for (const void* v : verified_)
      if (v == &tag) return;
    const ModelSpec& m = spec_.model;
    check_terms<LossVariant>(typename M::recon::list{}, spec_.main_losses, "main_latent.loss");
    check_terms<RegularizerVariant>(typename M::main_regs::list{}, spec_.main_regularizations,
                                    "main_latent.regularization");
    check_blocks(typename M::signatures::list{}, m.signatures, "signature_config");
    check_blocks(typename M::phenos::list{}, m.phenos, "pheno_config");
    verified_.push_back(&tag);
  }
  template <class Variant, class... Fns, class Spec>
  static void check_terms(sakura::detail::TypeList<Fns...>, const std::vector<Spec>& specs, const std::string& where) {
    detail::require(specs.size() == sizeof...(Fns), "model policy does not match the config: ", where, " has ",
                    specs.size(), " terms, the policy ", sizeof...(Fns));
    [[maybe_unused]] std::size_t i = 0;
    (
        [&] {
          constexpr std::size_t want = sakura::detail::variant_index<Variant, Bound<Fns>>();
          detail::require(specs[i].fn.index() == want, "model policy does not match the config: ", where, ".",
                          specs[i].name, " is not a ", Fns::names[0], " term");
          ++i;
        }(),
        ...);
  }
  template <class... Bs>
  static void check_blocks(sakura::detail::TypeList<Bs...>, const std::vector<BlockSpec>& specs,
                           const std::string& where) {
    detail::require(specs.size() == sizeof...(Bs), "model policy does not match the config: ", where, " has ",
                    specs.size(), " blocks, the policy ", sizeof...(Bs));
    [[maybe_unused]] std::size_t i = 0;
    (
        [&] {
          const BlockSpec& b = specs[i++];
          const std::string w = where + "." + b.name;
          detail::require(b.name == Bs::name, "model policy does not match the config: block ", i - 1, " of ", where,
                          " is '", b.name, "', the policy says '", Bs::name, "'");
          detail::require(b.head == Bs::head && b.lat_dim == Bs::latent_dim && b.attach == Bs::attach::to &&
                              b.attach_keys.size() == Bs::attach::n_refs,
                          "model policy does not match the config: head, latent width or attachment of ", w);
          for (std::size_t k = 0; k < Bs::attach::n_refs; ++k)
            detail::require(b.attach_keys[k].kind == Bs::attach::kinds[k] && b.attach_keys[k].key == Bs::attach::keys[k],
                            "model policy does not match the config: attach_key of ", w);
          check_terms<LossVariant>(typename Bs::losses::list{}, b.losses, w + ".loss");
          check_terms<RegularizerVariant>(typename Bs::regs::list{}, b.regularizations, w + ".regularization");
        }(),
        ...);
  }

  ExperimentSpec spec_;
  Rng rng_;
  Extractor<T> model_;
  RmsProp<T, Dev> optimizer_;
  DrawQueue draws_;
  Tape<T, Dev> tape_;

  int tick_ = 0, epoch_ = 0;
  std::vector<TermState> main_loss_, main_reg_;
  std::vector<BlockState> ph_, sig_;
  Selection all_pheno_, all_sig_;

  // per-call scratch, kept to avoid reallocating
  LossRecord record_;
  ForwardPlan plan_;
  ForwardVars fwd_;
  Var total_;
  std::vector<char> head_ph_, head_sig_;
  std::vector<Var> sum_main_loss_, sum_main_reg_;
  std::vector<Pending> pend_ph_, pend_sig_;
  std::vector<int> sig_slot_, ph_slot_;
  std::uint64_t layout_id_ = ~std::uint64_t(0);
  std::vector<const void*> verified_;
  bool accumulating_ = false;
  /// A weighted term whose values are read into the record after the step.
  struct PendingValue {
    Var raw, w;
    TermValues* weighted;
    TermValues* raws;
    std::size_t index;
  };
  std::vector<PendingValue> pending_values_;
  std::uint64_t has_grad_generation_ = 0;  // bumps when a parameter first gets a gradient
  // GPU graphs, one per distinct step
  struct GraphKey {
    const Selection* ps;
    const Selection* ss;
    bool recon, main_reg, save_raw;
    DetachFrom detach;
    Index cells;
    std::uint64_t layout, has_grad_generation;
    int input;  // input_kind(): the step's first kernels differ
    bool operator==(const GraphKey&) const = default;
  };
  struct GraphEntry {
    GraphKey key;
    void* exec;
  };
  std::vector<GraphEntry> graphs_;
  bool graphs_enabled_ = false;
};

}  // namespace sakura
