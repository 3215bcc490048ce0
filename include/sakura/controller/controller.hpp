// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Controller<T>: SAKURA's training step (SPEC §5). Owns the model, the terms and their weight
/// schedules, the optimizer, the random generator and one tape reused by every call.
///
/// Example:
///   sakura::Controller<float> ctl(sakura::config::experiment_from_json(config, pheno_config,
///                                                                      signature_config, genes));
///   const auto& rec = ctl.train(batch);           // one RMSProp step on every term
///   ctl.next_epoch();                             // advance the weight schedules
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "sakura/backend/cuda/ops.hpp"
#include "sakura/controller/batch.hpp"
#include "sakura/controller/device_mirrors.hpp"
#include "sakura/controller/dispatch.hpp"
#include "sakura/controller/options.hpp"
#include "sakura/controller/policy_check.hpp"
#include "sakura/controller/record.hpp"
#include "sakura/controller/selection.hpp"
#include "sakura/controller/step_graphs.hpp"
#include "sakura/controller/training_state.hpp"
#include "sakura/controller/validate.hpp"
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
  using Device = Ops<T, Dev>;  // every device call goes through here (backend/device.hpp)
  using Scalar = T;
  using Mirrors = DeviceMirrors<T, Dev>;

  explicit Controller(ExperimentSpec spec)
      : spec_(std::move(spec)), rng_(spec_.seed), model_(spec_.model, rng_),
        optimizer_(model_.parameters().all(), spec_.optimizer) {
    const ModelSpec& m = spec_.model;
    optimizer_.apply_excludes();
    if constexpr (!Device::host_memory) {  // device mirrors of every parameter and its gradient
      Mirrors::allocate(model_.parameters().all());
      sync_to_device();
    }
    all_phenos_ = Selection::all(m.phenos);
    all_signatures_ = Selection::all(m.signatures);
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
    if constexpr (!Device::host_memory) Mirrors::release(model_.parameters().all());
  }

  /// GPU: copies parameters, gradients and optimizer state to their host tensors (for reading
  /// them, checkpoints, golden comparisons). A no-op on the CPU.
  void sync_to_host() {
    if constexpr (!Device::host_memory) {
      Mirrors::download(model_.parameters().all());
      optimizer_.download_state();
    }
  }
  /// GPU: after host tensors were changed (loaded parameters, restored state), copies them to the
  /// device. A no-op on the CPU.
  void sync_to_device() {
    if constexpr (!Device::host_memory) {
      Mirrors::upload(model_.parameters().all());
      optimizer_.upload_state();
      Device::synchronize();
    }
  }
  /// GPU: capture each distinct step (selection, batch shape, set of stepped parameters) as a
  /// CUDA graph on its second occurrence and replay it afterwards (SPEC: issue "GPU backend").
  void enable_graphs(bool on) {
    static_assert(!Device::host_memory, "CUDA graphs need Controller<T, Cuda>");
    graphs_enabled_ = on;
  }
  /// A forward tensor of the last eval() as a host tensor (a copy on the GPU).
  Tensor<T> fetch(Var v) const {
    if (!v) return {};
    auto m = tape_.data(v);
    Tensor<T> t(m.rows, m.cols);
    Device::download(t.data(), m.data, sizeof(T) * static_cast<std::size_t>(t.size()));
    return t;
  }

  // ------------------------------------------------------------------ the step
  /// One training step (SPEC §5). Throws sakura::Error on bad input, leaving parameters,
  /// optimizer state, gradients and the random stream exactly as they were.
  const LossRecord& train(const Batch<T>& batch, const TrainOptions& o = {}) {
    const auto c = runtime_call(o.scope, o.step.save_raw_loss, true);
    return step(batch, c, o.step);
  }

  /// The same step with the model's structure and the selection known at compile time
  /// (controller/policy.hpp): only the selected terms and forward branches are instantiated and
  /// every term is dispatched statically. The first call checks `M` against the loaded config.
  template <class M, class Sel>
  const LossRecord& train(const Batch<T>& batch, const StepOptions& o = {}) {
    verify<M>();
    const StaticCall<M, Sel> c{spec_, o.save_raw_loss, true};
    return step(batch, c, o);
  }

  /// One part of a summed step (upstream's hybrid "sum" mode): computes this batch's terms and
  /// adds their gradients into the parameters' gradients, without an optimizer step. The first
  /// call after a step zero-fills the gradients (PyTorch's zero_grad()); apply_accumulated()
  /// then takes one step on the sum. Equal to back-propagating the summed totals at once.
  const LossRecord& accumulate(const Batch<T>& batch, const TrainOptions& o = {}) {
    const auto c = runtime_call(o.scope, o.step.save_raw_loss, true);
    tape_.set_accumulate_parameters(true);  // parameter leaves (made in compute) add to their grads
    try {
      guarded([&] { compute(batch, c, o.step.detach); });
    } catch (...) {
      tape_.set_accumulate_parameters(false);
      throw;
    }
    if (!accumulating_) {
      optimizer_.zero_grad();
      accumulating_ = true;
    }
    optimizer_.begin_backward();
    tape_.backward(total_);
    tape_.set_accumulate_parameters(false);
    optimizer_.end_accumulated_backward();
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
    const auto c = runtime_call(o.scope, o.step.save_raw_loss, true);
    guarded([&] { compute(batch, c, o.step.detach); });
    finish_record();
    return record_;
  }

  /// Evaluation (SPEC §5): the same record, dropout off, no gradients, nothing changes except
  /// the random stream. The forward tensors stay readable through forward() until the next call.
  const LossRecord& eval(const Batch<T>& batch, const EvalOptions& o = {}) {
    const auto c = runtime_call(o.scope, o.save_raw_loss, false);
    guarded([&] { compute(batch, c, DetachFrom::None); });
    finish_record();
    return record_;
  }

  /// Latents, head outputs and reconstruction of the last eval() call (empty if not computed).
  MatrixRef<const T> view(Var v) const { return v ? tape_.data(v) : MatrixRef<const T>{}; }
  const ForwardVars& forward() const { return fwd_; }

  // ------------------------------------------------------------------ schedules
  /// Advances the weight schedules of the terms in scope by one epoch (SPEC §4); upstream's
  /// prog_main is `reconstruction` and `main_regularization` together.
  void next_epoch(const Scope& o = {}) {
    ++epoch_;
    if (o.reconstruction)
      for (std::size_t i = 0; i < spec_.main_losses.size(); ++i) advance(main_loss_[i], spec_.main_losses[i]);
    if (o.main_regularization)
      for (std::size_t i = 0; i < spec_.main_regularizations.size(); ++i)
        advance(main_reg_[i], spec_.main_regularizations[i]);
    auto blocks = [&](const Selection& sel, std::vector<BlockState>& st, const std::vector<BlockSpec>& specs) {
      for (const auto& e : sel.entries) {
        for (int i : e.losses) advance(st[e.block].loss[i], specs[e.block].losses[i]);
        for (int i : e.regs) advance(st[e.block].reg[i], specs[e.block].regularizations[i]);
      }
    };
    blocks(chosen(o.phenos, all_phenos_), pheno_states_, spec_.model.phenos);
    blocks(chosen(o.signatures, all_signatures_), signature_states_, spec_.model.signatures);
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
    blocks(pheno_states_, spec_.model.phenos);
    blocks(signature_states_, spec_.model.signatures);
  }

  // ------------------------------------------------------------------ state access
  int epoch() const { return epoch_; }
  int ticks() const { return tick_; }
  void set_counters(int epoch, int ticks) {
    epoch_ = epoch;
    tick_ = ticks;
  }
  /// Weight and epoch of a term; block empty for main.
  TermState& term(BlockKind kind, const std::string& block, TermGroup group, const std::string& name) {
    const bool loss = group == TermGroup::Loss;
    if (kind == BlockKind::Main)
      return loss ? main_loss_[index_of(spec_.main_losses, name, "main_latent.loss")]
                  : main_reg_[index_of(spec_.main_regularizations, name, "main_latent.regularization")];
    const auto& specs = kind == BlockKind::Signature ? spec_.model.signatures : spec_.model.phenos;
    auto& st = kind == BlockKind::Signature ? signature_states_ : pheno_states_;
    const int b = model_.find(kind, block);
    detail::require(b >= 0, "no ", kind == BlockKind::Signature ? "signature" : "phenotype", " named '", block, "'");
    return loss ? st[b].loss[index_of(specs[b].losses, name, block + ".loss")]
                : st[b].reg[index_of(specs[b].regularizations, name, block + ".regularization")];
  }

  // ------------------------------------------------------------------ checkpoints
  /// Everything training changes, in PyTorch layout (any device: a GPU controller syncs to the
  /// host first). io/checkpoint.hpp writes it to a file.
  TrainingState capture() {
    sync_to_host();
    TrainingState c;
    c.scalar_bytes = sizeof(T);
    c.epoch = epoch_;
    c.tick = tick_;
    c.rng = rng_.state();
    const auto& opt = optimizer_.state();
    std::size_t i = 0;
    for (const auto& p : model_.parameters().all()) {
      ParamRecord r;
      r.name = p.name;
      r.rows = p.torch_rows();
      r.cols = p.torch_cols();
      auto torch = [&](const Tensor<T>& t) {  // internal layout -> PyTorch layout
        std::vector<double> v(static_cast<std::size_t>(r.rows * r.cols));
        for (Index a = 0; a < r.rows; ++a)
          for (Index b = 0; b < r.cols; ++b) v[a * r.cols + b] = p.transposed ? t(b, a) : t(a, b);
        return v;
      };
      r.value = torch(p.value);
      r.has_grad = p.has_grad;
      r.grad = torch(p.grad);
      const auto& s = opt[i++];
      r.opt_initialised = s.initialised;
      if (s.initialised) {
        r.square_avg = torch(s.square_avg);
        if (!s.momentum_buffer.empty()) r.momentum = torch(s.momentum_buffer);
      }
      c.params.push_back(std::move(r));
    }
    c.terms = term_records();
    return c;
  }
  /// Sets everything capture() returns. The state must fit this controller (io::check_restore
  /// checks a file's state and names what does not fit); a GPU controller then syncs to the device.
  void restore(const TrainingState& c) {
    auto& opt = optimizer_.state();
    std::size_t i = 0;
    for (auto& p : model_.parameters().all()) {
      const ParamRecord& r = c.params[i];
      auto internal = [&](const std::vector<double>& v, Tensor<T>& t) {  // in place when allocated
        if (t.rows() != p.value.rows() || t.cols() != p.value.cols()) t = Tensor<T>(p.value.rows(), p.value.cols());
        for (Index a = 0; a < r.rows; ++a)
          for (Index b = 0; b < r.cols; ++b) (p.transposed ? t(b, a) : t(a, b)) = static_cast<T>(v[a * r.cols + b]);
      };
      internal(r.value, p.value);
      p.has_grad = r.has_grad;
      if (!r.grad.empty()) internal(r.grad, p.grad);
      else p.grad.fill(T(0));
      auto& s = opt[i];
      s.initialised = r.opt_initialised;
      if (r.opt_initialised) {
        internal(r.square_avg, s.square_avg);
        if (!r.momentum.empty()) internal(r.momentum, s.momentum_buffer);
        else s.momentum_buffer = Tensor<T>();
      }
      ++i;
    }
    for (const auto& t : c.terms) {
      TermState& s = term(static_cast<BlockKind>(t.kind), t.block, term_group(t.group, "checkpoint term"), t.name);
      s.weight = t.weight;
      s.epoch = t.epoch;
    }
    set_counters(c.epoch, c.tick);
    rng_.set_state(c.rng);
    sync_to_device();
  }
  /// The terms in checkpoint order (main losses, main regularizations, then each signature's and
  /// each phenotype's losses and regularizations) with their current weights and epochs.
  std::vector<TermRecord> term_records() {
    std::vector<TermRecord> out;
    auto terms = [&](BlockKind kind, const std::string& block, TermGroup group, const auto& specs) {
      for (const auto& t : specs) {
        const TermState& s = term(kind, block, group, t.name);
        out.push_back({static_cast<std::uint8_t>(kind), block, term_group_name(group), t.name, s.weight, s.epoch});
      }
    };
    terms(BlockKind::Main, "", TermGroup::Loss, spec_.main_losses);
    terms(BlockKind::Main, "", TermGroup::Regularization, spec_.main_regularizations);
    for (const auto& b : spec_.model.signatures) {
      terms(BlockKind::Signature, b.name, TermGroup::Loss, b.losses);
      terms(BlockKind::Signature, b.name, TermGroup::Regularization, b.regularizations);
    }
    for (const auto& b : spec_.model.phenos) {
      terms(BlockKind::Pheno, b.name, TermGroup::Loss, b.losses);
      terms(BlockKind::Pheno, b.name, TermGroup::Regularization, b.regularizations);
    }
    return out;
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
  const Selection& all_phenos() const { return all_phenos_; }
  const Selection& all_signatures() const { return all_signatures_; }
  Tape<T, Dev>& tape() { return tape_; }

 private:
  struct BlockState {
    std::vector<TermState> loss, reg;
  };
  /// A scope's selection of one group; std::nullopt is every block with every term.
  static const Selection& chosen(const std::optional<Selection>& selected, const Selection& all) {
    return selected ? *selected : all;
  }

  /// The runtime call of train(), accumulate(), loss() (training) and eval() for a scope.
  RuntimeCall<T> runtime_call(const Scope& s, bool save_raw, bool training) const {
    return RuntimeCall<T>{spec_,
                          model_,
                          s.reconstruction,
                          s.main_regularization,
                          chosen(s.phenos, all_phenos_),
                          chosen(s.signatures, all_signatures_),
                          save_raw,
                          training};
  }

  /// Scalars to add into the total, in upstream's order (SPEC §4).
  struct PendingTerms {
    std::vector<Var> loss, reg;
  };

  template <class V>
  static std::vector<std::string> names(const std::vector<V>& terms) {
    std::vector<std::string> n;
    for (auto& t : terms) n.push_back(t.name);
    return n;
  }
  template <class V>
  static std::size_t index_of(const std::vector<V>& terms, const std::string& name, const std::string& where) {
    return detail::find_by_name(terms, name, where, "term");
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

  // ------------------------------------------------------------------ the shared computation
  /// One step's forward, terms and total; the same body serves RuntimeCall and StaticCall.
  template <class Call>
  void compute(const Batch<T>& batch, const Call& c, DetachFrom detach) {
    const Selection& ps = c.pheno();
    const Selection& ss = c.signature();
    validate_batch<Device::host_memory>(batch, spec_.model, ps, ss, slots_);

    tape_.reset();
    record_.main.clear();
    for (auto& b : record_.pheno) b.clear();
    for (auto& b : record_.signature) b.clear();

    const auto& plan = c.plan(plan_scratch_);
    ForwardContext<T> ctx{c.training, &rng_};
    Var x, first;
    input(batch, c, x, first);
    model_.forward(tape_, x, plan, detach, ctx, fwd_, first);

    DrawSource draws{&rng_, &draws_};
    sum_main_loss_.clear();
    sum_main_reg_.clear();
    detail::when(c.recon(), [&](auto) {
      c.each_main_loss([&](auto i, const auto& configured) {
        LossArgs<T, Dev> a{tape_, fwd_.recon, x, nullptr};
        Var raw = std::decay_t<decltype(configured)>::type::apply(a, configured.options);
        sum_main_loss_.push_back(weigh(raw, main_loss_[i].weight, record_.main.loss, record_.main.loss_raw, i, c));
      });
    });
    detail::when(c.main_reg(), [&](auto) {
      c.each_main_reg([&](auto i, const auto& configured) {
        RegArgs<T, Dev> a{tape_, fwd_.main, nullptr, draws, spec_.main_regularizations[i].site};
        Var raw = std::decay_t<decltype(configured)>::type::apply(a, configured.options);
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
    for (auto [group, sel] : {std::pair{&pending_pheno_, &ps}, std::pair{&pending_signature_, &ss}}) {
      for (std::size_t k = 0; k < sel->entries.size(); ++k)
        for (Var v : (*group)[k].loss) add(v);
      for (std::size_t k = 0; k < sel->entries.size(); ++k)
        for (Var v : (*group)[k].reg) add(v);
    }
    if (!total_) total_ = tape_.host_filled(1, 1, [](MatrixRef<T> m) { m.data[0] = T(0); });
  }

  /// The input on the tape. A sparse batch runs the first pre-encoder layer as a sparse product
  /// (`first`), and is densified only when the reconstruction needs it as a target.
  template <class Call>
  void input(const Batch<T>& batch, const Call& c, Var& x, Var& first) {
    if constexpr (!Device::host_memory) {
      if (const auto* dv = batch.device_input()) {  // gathered on the GPU
        x = tape_.gather_rows(dv->data, dv->index, dv->genes);
        return;
      }
    }
    const CsrMatrix<T>* sp = batch.sparse_input();
    const auto& layers = model_.pre_encoder().layers();
    // sparse products are a CPU feature: a GPU gets the densified batch
    const bool sparse_first = Device::host_memory && sp && !layers.empty() && layers.front().kind == LayerKind::Linear;
    if (!batch.expr.empty()) {
      x = tape_.constant(batch.expr);
    } else if (!sparse_first || bool(c.recon())) {
      x = tape_.host_filled(sp->rows, sp->cols, [&](MatrixRef<T> m) { Ops<T, Cpu>::csr_densify(m.data, sp->ref()); });
    }
    if constexpr (Device::host_memory)
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
    auto& st = pheno ? pheno_states_ : signature_states_;
    auto& rec = pheno ? record_.pheno : record_.signature;
    const auto& lat = pheno ? fwd_.ph_lat : fwd_.sig_lat;
    const auto& out = pheno ? fwd_.ph_out : fwd_.sig_out;
    const auto& slot = pheno ? slots_.pheno : slots_.signature;
    auto& pending = pheno ? pending_pheno_ : pending_signature_;
    if (pending.size() < sel.entries.size()) pending.resize(sel.entries.size());
    c.each_entry(kind, [&](auto k, auto b, auto for_losses, auto for_regs) {
      const BlockSpec& spec = specs[b];
      BlockRecord& r = rec[b];
      r.present = true;
      pending[k].loss.clear();
      pending[k].reg.clear();
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
      for_losses([&](auto i, const auto& configured) {
        const LossSpec& term = spec.losses[i];
        Var pred = out[b];
        if (term.flow != GradFlow::Normal) {  // re-apply the head to the reversed / neutralised latent
          Var l = term.flow == GradFlow::Reverse ? tape_.reverse_grad(lat[b]) : tape_.detach(lat[b]);
          pred = model_.head(tape_, blocks[b], l, ctx);
        }
        LossArgs<T, Dev> a{tape_, pred, target, labels ? tape_.labels(labels, batch.cells()) : nullptr};
        Var raw = std::decay_t<decltype(configured)>::type::apply(a, configured.options);
        pending[k].loss.push_back(weigh(raw, st[b].loss[i].weight, r.loss, r.loss_raw, i, c));
      });
      for_regs([&](auto i, const auto& configured) {
        const RegularizerSpec& term = spec.regularizations[i];
        Var z = lat[b];
        if (term.flow == GradFlow::Reverse) z = tape_.reverse_grad(z);
        else if (term.flow == GradFlow::Neutralize) z = tape_.detach(z);
        RegArgs<T, Dev> a{tape_, z, pheno ? labels : nullptr, draws, term.site};
        Var raw = std::decay_t<decltype(configured)>::type::apply(a, configured.options);
        pending[k].reg.push_back(weigh(raw, st[b].reg[i].weight, r.regularization, r.regularization_raw, i, c));
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
  const LossRecord& step(const Batch<T>& batch, const Call& c, const StepOptions& o) {
    if constexpr (!Device::host_memory) {
      if (graphs_enabled_ && !o.suppress_backward) return graph_step(batch, c, o.detach);
    }
    guarded([&] { compute(batch, c, o.detach); });
    if (!o.suppress_backward) backward_and_step();
    finish_record();
    tape_.reset();  // frees this step's activations; merges arena chunks once, then never allocates
    return record_;
  }
  void backward_and_step() {
    optimizer_.begin_backward();
    tape_.backward(total_);
    optimizer_.step_after_backward();
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

  /// A GPU step through its CUDA graph (controller/step_graphs.hpp).
  template <class Call>
  const LossRecord& graph_step(const Batch<T>& batch, const Call& c, DetachFrom detach) {
    const StepGraphKey key{&c.pheno(), &c.signature(), c.recon(), c.main_reg(), c.save_raw, detach, batch.cells(),
                           batch.layout_id(), optimizer_.has_grad_generation(), input_kind(batch)};
    auto guard = [&](auto&& f) { guarded(f); };
    graphs_.run(key, guard, [&] { compute(batch, c, detach); }, [&] { backward_and_step(); });
    finish_record();
    tape_.reset();
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
    check_policy<M>(spec_);
    verified_.push_back(&tag);
  }

  ExperimentSpec spec_;
  Rng rng_;
  Extractor<T> model_;
  RmsProp<T, Dev> optimizer_;
  DrawQueue draws_;
  Tape<T, Dev> tape_;

  int tick_ = 0, epoch_ = 0;
  std::vector<TermState> main_loss_, main_reg_;
  std::vector<BlockState> pheno_states_, signature_states_;
  Selection all_phenos_, all_signatures_;

  // per-call scratch, kept to avoid reallocating
  LossRecord record_;
  PlanScratch plan_scratch_;
  ForwardVars fwd_;
  Var total_;
  std::vector<Var> sum_main_loss_, sum_main_reg_;
  std::vector<PendingTerms> pending_pheno_, pending_signature_;
  BatchSlots slots_;
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
  StepGraphs<Dev> graphs_;  // GPU: one CUDA graph per distinct step
  bool graphs_enabled_ = false;
};

}  // namespace sakura
