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

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
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
#include "sakura/dist/comm.hpp"
#include "sakura/dist/gradient_sum.hpp"
#include "sakura/nn/extractor.hpp"
#include "sakura/optim/rmsprop.hpp"

namespace sakura {

/// Dev = Cuda trains on a GPU (library sakura::cuda): parameters, gradients, optimizer state and
/// every activation live in device memory; random arrays are drawn by kernels from Philox
/// counters the host reserves; a batch is staged from the host, or gathered on the GPU from a
/// data::DeviceMatrix (Batch::set_device_rows).
/// The parameters' host tensors are then copies, refreshed by sync_to_host().
///
/// Data-parallel training (docs/distributed.md, "The step"): with a Comm of N > 1 ranks, every rank
/// calls the same methods in the same order, each with a Batch holding ONLY ITS rows of the global
/// batch (the rows dist::RowSplit::balanced(B, N) gives it, in global order; a rank may have none).
/// The encoder and decoder run on those rows; one allgather brings every rank the global batch's
/// latents and per-cell targets; every term that reads latents (regularizers, heads and their
/// losses) runs on the global batch on every rank; reconstruction terms are means over the global
/// count. Every rank gets the same LossRecord; parameters and optimizer state stay bit-identical.
/// Dev = Cuda runs the same step on GPU ranks: with an NCCL Comm (memory() Device: one GPU per rank,
/// dist::nccl_comm) the gather and the gradient sum move device memory; with a host Comm (MPI) they
/// are staged through host memory (ranks may then share a GPU). CUDA graphs are off while
/// distributed (see step()).
template <class T = float, class Dev = Cpu>
class Controller {
 public:
  using Device = Ops<T, Dev>;  // every device call goes through here (backend/device.hpp)
  using Scalar = T;
  using Mirrors = DeviceMirrors<T, Dev>;

  /// `comm`: the ranks training together (default: this process alone, no MPI needed).
  explicit Controller(ExperimentSpec spec, dist::Comm comm = {})
      : spec_(std::move(spec)), rng_(spec_.seed), model_(spec_.model, rng_),
        optimizer_(model_.parameters().all(), spec_.optimizer), comm_(std::move(comm)) {
    const ModelSpec& m = spec_.model;
    exchange_ = [this](ForwardVars& out) { exchange(out); };
    shard_optimizer_ = distributed() && Device::host_memory;
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

  /// Makes the host tensors of parameters, gradients and optimizer state whole and current (for
  /// reading them, checkpoints, golden comparisons). GPU: copies them from the device. N ranks
  /// with a sharded optimizer (the default): gathers every rank's chunks of the gradients and
  /// optimizer state, so it is a collective (every rank calls it). Otherwise a no-op.
  void sync_to_host() {
    if constexpr (Device::host_memory) {
      gather_shards();
    } else {
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
  /// Ignored while distributed (more than one rank): the step's collectives run on the host.
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
      if (distributed()) hold_frozen_gradients();  // until apply_accumulated()'s sum
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
    accumulating_ = false;
    if (!distributed()) return optimizer_.step();
    reduce_gradients(true);
    step_distributed();
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
  /// Distributed: every ForwardVars entry (x, pre, main, all, recon, sig_lat, sig_out, ph_lat,
  /// ph_out) holds THIS RANK'S ROWS of the batch, in global order; gather them with
  /// comm().allgather_rows(view(v), split(), ...) (a GPU's view is device memory: an NCCL Comm
  /// gathers it as it is; download it first for a host Comm). (The terms read the gathered batch
  /// internally.)
  MatrixRef<const T> view(Var v) const { return v ? tape_.data(v) : MatrixRef<const T>{}; }
  const ForwardVars& forward() const { return fwd_; }

  /// The ranks training together, and how the last call's batch was split over them.
  const dist::Comm& comm() const { return comm_; }
  const dist::RowSplit& split() const { return split_; }
  /// Checks (a collective: every rank calls it) that every rank holds the same parameter bytes,
  /// gradients, optimizer state and gradient flags (not between accumulate() and
  /// apply_accumulated(): the gradients are still the ranks' shares), after gathering a sharded
  /// optimizer's chunks (sync_to_host()); throws the same sakura::Error on every rank otherwise.
  /// Debug builds run it every kCheckEvery distributed steps.
  void check_replicas() {
    if (comm_.size() == 1) return;
    sync_to_host();
    std::vector<std::uint64_t>& digest = digest_;  // a member: its storage is kept (debug builds check every 16 steps)
    digest.clear();
    auto add = [&](const Tensor<T>& t) {
      digest.push_back(dist::hash_bytes(std::as_bytes(std::span<const T>(t.data(), static_cast<std::size_t>(t.size())))));
    };
    std::size_t i = 0;
    for (const auto& p : model_.parameters().all()) {
      add(p.value);
      if (p.has_grad) add(p.grad);  // frozen modules' too: checkpoints hold rank 0's
      const auto& st = optimizer_.state()[i++];
      digest.push_back(p.has_grad * 2 + st.initialised);
      if (st.initialised) add(st.square_avg);
      if (!st.momentum_buffer.empty()) add(st.momentum_buffer);
    }
    comm_.check_same(std::as_bytes(std::span<const std::uint64_t>(digest)), "the parameters, gradients and optimizer state");
  }
  static constexpr int kCheckEvery = 16;
  /// N host ranks: whether each rank updates only its chunk of the encoder's and decoder's
  /// parameters (ZeRO stage 1; default on), or every parameter (off). The parameters are the same
  /// bits either way; sharded, gradients and optimizer state are whole only after sync_to_host()
  /// (a collective; capture() and check_replicas() call it). Collective when switching off after
  /// a sharded step (it gathers); not between accumulate() and apply_accumulated().
  void set_optimizer_sharding(bool on) {
    detail::require(!accumulating_, "set_optimizer_sharding: call apply_accumulated() first");
    const bool shard = on && distributed() && Device::host_memory;
    if (shard == shard_optimizer_) return;
    gather_shards();
    shard_optimizer_ = shard;
    grad_sum_.reset();  // planned again for the other result (reduce-scatter or whole sum)
    reduced_.clear();
    reduced_index_.clear();
  }
  bool optimizer_sharded() const { return shard_optimizer_; }
  /// N ranks: start each encoder/decoder gradient's sum during backward, as soon as that gradient
  /// is complete, instead of after backward (default off). The sums are the same bits either way.
  /// It pays where the engine moves data while the rank computes (RDMA networks, NCCL); on one
  /// machine's shared memory, where moving data costs the same cores, it measured slower
  /// (docs/scaling.md). A summed step (accumulate()) still sums once, in apply_accumulated().
  void set_gradient_overlap(bool on) { overlap_gradient_sum_ = on; }
  bool gradient_overlap() const { return overlap_gradient_sum_; }
  /// Wall seconds this controller has spent in its collectives (the distributed calls' exchanges:
  /// split, latent gather, loss sums, gradient sum), for measuring a step's exchange share.
  double exchange_seconds() const { return exchange_seconds_; }

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
  /// host first; N ranks: a collective, see sync_to_host()). io/checkpoint.hpp writes it to a file.
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
    for (Shards& k : shards_) k = Shards{};  // everything below is whole
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
    if (distributed()) begin_split(batch, ps, ss);  // collective: every rank's batch is checked here
    else validate_batch<Device::host_memory>(batch, spec_.model, ps, ss, slots_);

    tape_.reset();
    record_.main.clear();
    for (auto& b : record_.pheno) b.clear();
    for (auto& b : record_.signature) b.clear();

    const auto& plan = c.plan(plan_scratch_);
    exchange_batch_ = &batch;
    ForwardContext<T> ctx{c.training, &rng_};
    const bool split = distributed();
    if (split) ctx.row_begin = split_.begin(comm_.rank()), ctx.row_total = split_.total();
    Var x, first;
    input(batch, c, x, first);
    ForwardVars& f = split ? gfwd_ : fwd_;  // distributed: latents and heads of the global batch
    model_.forward(tape_, x, plan, detach, ctx, f, first, split ? &exchange_ : nullptr);

    DrawSource draws{&rng_, &draws_};
    sum_main_loss_.clear();
    sum_main_reg_.clear();
    total_terms_.clear();
    detail::when(c.recon(), [&](auto) {
      c.each_main_loss([&](auto i, const auto& configured) {
        LossArgs<T, Dev> a{tape_, f.recon, x, nullptr};
        Var raw = std::decay_t<decltype(configured)>::type::apply(a, configured.options);
        // distributed: this rank's share of the global mean (a mean over its rows times rows / B);
        // finish_record() adds the ranks' shares
        if (split) raw = tape_.scale(raw, static_cast<double>(tape_.rows(x)) / static_cast<double>(split_.total()));
        partial_ = split;
        sum_main_loss_.push_back(weigh(raw, main_loss_[i].weight, record_.main.loss, record_.main.loss_raw, i, c));
        partial_ = false;
      });
    });
    detail::when(c.main_reg(), [&](auto) {
      c.each_main_reg([&](auto i, const auto& configured) {
        RegArgs<T, Dev> a{tape_, f.main, nullptr, draws, spec_.main_regularizations[i].site};
        Var raw = std::decay_t<decltype(configured)>::type::apply(a, configured.options);
        sum_main_reg_.push_back(
            weigh(raw, main_reg_[i].weight, record_.main.regularization, record_.main.regularization_raw, i, c));
      });
    });
    const Batch<T>& targets = split ? global_ : batch;
    const BatchSlots& slots = split ? global_slots_ : slots_;
    run_blocks(targets, slots, f, c, BlockKind::Pheno, ctx, draws);
    run_blocks(targets, slots, f, c, BlockKind::Signature, ctx, draws);

    // total_loss_backwarded: float running sum in upstream's order (SPEC §4)
    total_ = Var{};
    auto add = [&](Var v) {
      total_terms_.push_back(v);
      total_ = total_ ? tape_.add(total_, v) : v;
    };
    for (Var v : sum_main_loss_) add(v);
    for (Var v : sum_main_reg_) add(v);
    for (auto [group, sel] : {std::pair{&pending_pheno_, &ps}, std::pair{&pending_signature_, &ss}}) {
      for (std::size_t k = 0; k < sel->entries.size(); ++k)
        for (Var v : (*group)[k].loss) add(v);
      for (std::size_t k = 0; k < sel->entries.size(); ++k)
        for (Var v : (*group)[k].reg) add(v);
    }
    if (!total_) total_ = tape_.host_filled(1, 1, [](MatrixRef<T> m) { m.data[0] = T(0); });
    if (split) local_views();
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
    if (batch.cells() == 0) {  // a rank without rows of the global batch
      x = tape_.scratch(0, spec_.model.input_dim);
      return;
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
  void run_blocks(const Batch<T>& batch, const BatchSlots& slots, const ForwardVars& f, const Call& c, BlockKind kind,
                  ForwardContext<T>& ctx, DrawSource& draws) {
    const bool pheno = kind == BlockKind::Pheno;
    const Selection& sel = pheno ? c.pheno() : c.signature();
    const auto& specs = pheno ? spec_.model.phenos : spec_.model.signatures;
    const auto& blocks = pheno ? model_.phenos() : model_.signatures();
    auto& st = pheno ? pheno_states_ : signature_states_;
    auto& rec = pheno ? record_.pheno : record_.signature;
    const auto& lat = pheno ? f.ph_lat : f.sig_lat;
    const auto& out = pheno ? f.ph_out : f.sig_out;
    const auto& slot = pheno ? slots.pheno : slots.signature;
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
    pending_values_.push_back(
        PendingValue{raw, w, &weighted, c.save_raw ? &raws : nullptr, i, static_cast<T>(weight), partial_});
    return w;
  }

  /// compute(), then (unless suppressed) backward and one optimizer step with PyTorch 1.13's
  /// zero_grad semantics (SPEC §6). On a GPU with graphs enabled, a step seen before is replayed.
  template <class Call>
  const LossRecord& step(const Batch<T>& batch, const Call& c, const StepOptions& o) {
    if constexpr (!Device::host_memory) {
      // not while distributed: a graph cannot hold begin_split's host allgather, the host-side
      // exchange of the latents and targets, or the loss sums the record needs
      if (graphs_enabled_ && !o.suppress_backward && !distributed()) return graph_step(batch, c, o.detach);
    }
    guarded([&] { compute(batch, c, o.detach); });
    if (!o.suppress_backward) backward_and_step();
    finish_record();
    tape_.reset();  // frees this step's activations; merges arena chunks once, then never allocates
    return record_;
  }
  void backward_and_step() {
    optimizer_.begin_backward();
    if (distributed()) hold_frozen_gradients();
    if (distributed() && overlap_gradient_sum_)
      tape_.backward(total_, [this](Parameter<T>& p) { start_sum_during_backward(p); });
    else
      tape_.backward(total_);
    if (!distributed()) return optimizer_.step_after_backward();
    reduce_gradients(false);
    optimizer_.after_backward();
    step_distributed();
#ifndef NDEBUG
    if (distributed() && ++distributed_steps_ % kCheckEvery == 0) check_replicas();
#endif
  }

  /// Reads the step's scalars into the record (on a GPU: once, after the device work).
  void finish_record() {
    if (distributed()) return finish_distributed_record();
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

  // ------------------------------------------------------------------ the distributed step
  bool distributed() const { return comm_.size() > 1; }

  /// Collective, first of a distributed call: every rank's batch is validated, and one allgather
  /// shares each rank's verdict, row count and targets held, so all ranks learn the split and the
  /// gather's layout, and all throw (leaving everything as it was) if any rank's rows are invalid.
  void begin_split(const Batch<T>& batch, const Selection& ps, const Selection& ss) {
    const ModelSpec& m = spec_.model;
    const Index n = batch.cells();
    std::string error;
    if (n > 0) {
      try {
        validate_batch<Device::host_memory>(batch, m, ps, ss, slots_);
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
    const std::size_t k = 2 + m.signatures.size() + 2 * m.phenos.size();
    desc_.assign(k, 0);
    desc_[0] = error.empty();
    desc_[1] = n;
    if (n > 0 && error.empty()) {
      for (std::size_t b = 0; b < m.signatures.size(); ++b) {
        const int slot = slots_.signature[b];
        desc_[2 + b] = slot >= 0 && batch.signatures()[slot].values.rows() == n &&
                       batch.signatures()[slot].values.cols() == m.signatures[b].out_dim;
      }
      for (std::size_t b = 0; b < m.phenos.size(); ++b) {
        const int slot = slots_.pheno[b];
        if (slot < 0) continue;
        const auto& ph = batch.phenos()[slot];
        desc_[2 + m.signatures.size() + 2 * b] = static_cast<Index>(ph.labels.size()) == n;
        desc_[3 + m.signatures.size() + 2 * b] = ph.values.rows() == n && ph.values.cols() == m.phenos[b].out_dim;
      }
    }
    const int N = comm_.size();
    all_desc_.assign(k * static_cast<std::size_t>(N), 0);
    timed([&] { comm_.allgather(std::span<const std::int64_t>(desc_), std::span<std::int64_t>(all_desc_)); });
    counts_.resize(static_cast<std::size_t>(N));
    int ref = -1;
    for (int r = 0; r < N; ++r) {
      const std::int64_t* d = &all_desc_[k * static_cast<std::size_t>(r)];
      if (!d[0]) {
        if (r == comm_.rank()) detail::fail(error);
        dist::detail::fail_agreed(r, "rank ", r, " of ", N, " rejected its rows of the batch (its own error names the "
                                  "problem); nothing was trained");
      }
      counts_[static_cast<std::size_t>(r)] = d[1];
      if (d[1] == 0) continue;
      if (ref < 0) ref = r;
      else if (!std::equal(d + 2, d + k, &all_desc_[k * static_cast<std::size_t>(ref) + 2]))
        detail::fail("ranks ", ref, " and ", r, " hold different targets (signature expression, phenotype labels "
                     "or values) in their rows of the batch: give every rank the same kinds of data");
    }
    detail::require(ref >= 0, "the batch has no cells on any of the ", N, " ranks");
    split_.assign(counts_);  // in place: a warm step allocates nothing
    layout_.assign(all_desc_.begin() + static_cast<std::ptrdiff_t>(k * static_cast<std::size_t>(ref) + 2),
                   all_desc_.begin() + static_cast<std::ptrdiff_t>(k * static_cast<std::size_t>(ref + 1)));
  }

  /// Width of the per-cell targets in the gather (layout_: which ones the ranks hold).
  Index target_width() const {
    const ModelSpec& m = spec_.model;
    Index w = 0;
    for (std::size_t b = 0; b < m.signatures.size(); ++b) w += layout_[b] ? m.signatures[b].out_dim : 0;
    for (std::size_t b = 0; b < m.phenos.size(); ++b)
      w += (layout_[m.signatures.size() + 2 * b] ? 1 : 0) + (layout_[m.signatures.size() + 2 * b + 1] ? m.phenos[b].out_dim : 0);
    return w;
  }

  /// Extractor::forward's exchange: ONE allgather of this rank's own latents (the computed ones, in
  /// the decoder input's order) and per-cell targets. The latents enter the tape as one
  /// gathered_rows value, sliced into the global batch's latents; the targets fill global_.
  void exchange(ForwardVars& out) {
    const ModelSpec& m = spec_.model;
    exchange_parts_.clear();
    if (out.main) exchange_parts_.push_back(out.main);
    for (std::size_t i = 0; i < m.signatures.size(); ++i)
      if (!m.signatures[i].attached() && out.sig_lat[i]) exchange_parts_.push_back(out.sig_lat[i]);
    for (std::size_t i = 0; i < m.phenos.size(); ++i)
      if (!m.phenos[i].attached() && out.ph_lat[i]) exchange_parts_.push_back(out.ph_lat[i]);
    const int me = comm_.rank();
    const Index n = split_.count(me), B = split_.total(), first = split_.begin(me);
    Index Z = 0;
    for (Var v : exchange_parts_) Z += tape_.cols(v);
    const Index W = Z + target_width();
    if (W == 0) return;
    const Var local = exchange_parts_.empty() ? Var{} : tape_.concat(exchange_parts_);
    send_.resize(static_cast<std::size_t>(n * W));
    recv_.resize(static_cast<std::size_t>(B * W));
    const Batch<T>& batch = *exchange_batch_;
    const T* latents = local ? host_rows(local) : nullptr;
    for (Index r = 0; r < n; ++r) {
      T* row = send_.data() + r * W;
      if (latents) std::copy_n(latents + r * Z, Z, row);
      row += Z;
      for (std::size_t b = 0; b < m.signatures.size(); ++b)
        if (layout_[b]) row = std::copy_n(&batch.signatures()[slots_.signature[b]].values(r, 0), m.signatures[b].out_dim, row);
      for (std::size_t b = 0; b < m.phenos.size(); ++b) {
        const auto& ph = batch.phenos()[std::max(slots_.pheno[b], 0)];
        if (layout_[m.signatures.size() + 2 * b]) *row++ = static_cast<T>(ph.labels[r]);  // small integers: exact
        if (layout_[m.signatures.size() + 2 * b + 1]) row = std::copy_n(&ph.values(r, 0), m.phenos[b].out_dim, row);
      }
    }
    timed([&] { allgather_exchange(n, B, W); });
    if (local) {
      const Var g = tape_.gathered_rows(local, first, B, [&](MatrixRef<T> all) {
        for (Index r = 0; r < B; ++r) std::copy_n(recv_.data() + r * W, Z, all.data + r * Z);
      });
      Index off = 0;
      auto global = [&](Var& v) {
        const Index w = tape_.cols(v);
        v = exchange_parts_.size() == 1 ? g : tape_.slice_cols(g, off, w);
        off += w;
      };
      if (out.main) global(out.main);
      for (std::size_t i = 0; i < m.signatures.size(); ++i)
        if (!m.signatures[i].attached() && out.sig_lat[i]) global(out.sig_lat[i]);
      for (std::size_t i = 0; i < m.phenos.size(); ++i)
        if (!m.phenos[i].attached() && out.ph_lat[i]) global(out.ph_lat[i]);
      if (out.all) out.all = g;  // `all` is the concatenation of exactly these latents
    }
    unpack_targets(W - target_width());
  }

  /// A tape value's rows where the host reads them: the tape's memory on the CPU; on a GPU a copy
  /// in a host buffer kept for later calls. (The tape's values are contiguous.)
  const T* host_rows(Var v) {
    const MatrixRef<const T> m = tape_.data(v);
    if constexpr (Device::host_memory) {
      return m.data;
    } else {
      const std::size_t count = static_cast<std::size_t>(m.rows * m.cols);
      if (host_rows_.size() < count) host_rows_.resize(count);
      Device::download(host_rows_.data(), m.data, count * sizeof(T));
      return host_rows_.data();
    }
  }
  /// The exchange's allgather of send_ (n x W, this rank's rows) into recv_ (B x W): host memory
  /// for the CPU and host engines; an NCCL Comm gathers device memory, so on a GPU the rows are
  /// staged through device buffers allocated once (grown), and the result read back to recv_,
  /// where the targets are unpacked and the latents staged onto the tape as on the CPU.
  void allgather_exchange(Index n, Index B, Index W) {
    if constexpr (!Device::host_memory) {
      if (comm_.memory() == dist::Memory::Device) {
        T* mine = dev_send_.grow(static_cast<std::size_t>(n * W));
        T* all = dev_recv_.grow(static_cast<std::size_t>(B * W));
        Device::upload(mine, send_.data(), sizeof(T) * static_cast<std::size_t>(n * W));
        comm_.allgather_rows<T>(MatrixRef<const T>(mine, n, W), split_, MatrixRef<T>(all, B, W));
        Device::download(recv_.data(), all, sizeof(T) * static_cast<std::size_t>(B * W));  // waits for the gather
        return;
      }
    }
    comm_.allgather_rows<T>(MatrixRef<const T>(send_.data(), n, W), split_, MatrixRef<T>(recv_.data(), B, W));
  }

  /// The gathered targets (columns from `col` of recv_) into global_'s slots (global_slots_).
  void unpack_targets(Index col) {
    const ModelSpec& m = spec_.model;
    const Index B = split_.total(), W = recv_.empty() ? 0 : static_cast<Index>(recv_.size()) / B;
    if (global_.expr.rows() != B) global_.expr = Tensor<T>(B, 0);  // cells() of the global batch
    if (global_layout_ != layout_) resolve_global_slots();         // names are looked up only here
    auto take = [&](Tensor<T>& t, Index cols) {
      if (t.rows() != B || t.cols() != cols) t = Tensor<T>(B, cols);
      for (Index r = 0; r < B; ++r) std::copy_n(recv_.data() + r * W + col, cols, &t(r, 0));
      col += cols;
    };
    for (std::size_t b = 0; b < m.signatures.size(); ++b)
      if (layout_[b]) take(global_.signature_values_at(global_slots_.signature[b]), m.signatures[b].out_dim);
    for (std::size_t b = 0; b < m.phenos.size(); ++b) {
      const bool labels = layout_[m.signatures.size() + 2 * b], values = layout_[m.signatures.size() + 2 * b + 1];
      if (!labels && !values) continue;
      auto& ph = global_.pheno_at(global_slots_.pheno[b]);
      ph.labels.clear();  // capacity kept: no allocation once warm
      if (labels) {
        for (Index r = 0; r < B; ++r) ph.labels.push_back(static_cast<std::int64_t>(recv_[static_cast<std::size_t>(r * W + col)]));
        ++col;
      }
      if (values) take(ph.values, m.phenos[b].out_dim);
    }
  }
  /// global_'s slot of every target the ranks hold (layout_), created on first use; the others -1.
  /// Runs when the kinds of targets in the batches change, not per call.
  void resolve_global_slots() {
    const ModelSpec& m = spec_.model;
    global_slots_.signature.assign(m.signatures.size(), -1);
    global_slots_.pheno.assign(m.phenos.size(), -1);
    for (std::size_t b = 0; b < m.signatures.size(); ++b) {
      if (!layout_[b]) continue;
      global_.signature_values(m.signatures[b].name);
      global_slots_.signature[b] = global_.signature_slot(m.signatures[b].name);
    }
    for (std::size_t b = 0; b < m.phenos.size(); ++b) {
      const bool labels = layout_[m.signatures.size() + 2 * b], values = layout_[m.signatures.size() + 2 * b + 1];
      if (!labels && !values) continue;
      const std::string& name = m.phenos[b].name;
      global_.labels(name).clear();
      if (!values) global_.pheno_values(name) = Tensor<T>();  // labels only: no values read
      global_slots_.pheno[b] = global_.pheno_slot_index(name);
    }
    global_layout_ = layout_;
  }

  /// forward() after a distributed call: every entry as this rank's rows (see view()).
  void local_views() {
    fwd_ = gfwd_;
    const int me = comm_.rank();
    const Index first = split_.begin(me), n = split_.count(me), B = split_.total();
    auto mine = [&](Var& v) {
      if (v && tape_.rows(v) == B) v = tape_.row_view(v, first, n);
    };
    mine(fwd_.main);
    mine(fwd_.all);
    for (auto* group : {&fwd_.sig_lat, &fwd_.sig_out, &fwd_.ph_lat, &fwd_.ph_out})
      for (Var& v : *group) mine(v);
  }

  /// The record of a distributed call: decoder-side terms are the sum of the ranks' shares (one
  /// allreduce in rank order), the rest is replicated; the total is re-added in compute()'s order.
  void finish_distributed_record() {
    sums_.clear();
    const bool rows = split_.count(comm_.rank()) > 0;  // a rank without rows has a 0/0 share
    for (const PendingValue& v : pending_values_)
      if (v.partial) sums_.push_back(rows ? static_cast<double>(tape_.scalar(v.raw)) : 0.0);
    timed([&] { comm_.allreduce_sum(std::span<double>(sums_)); });
    std::size_t k = 0;
    weighted_.clear();
    for (const PendingValue& v : pending_values_) {
      T raw, w;
      if (v.partial) {
        raw = static_cast<T>(sums_[k++]);
        w = raw * v.weight;  // Tape::scale's product
      } else {
        raw = tape_.scalar(v.raw);
        w = tape_.scalar(v.w);
      }
      v.weighted->set(v.index, static_cast<double>(w));
      if (v.raws) v.raws->set(v.index, static_cast<double>(raw));
      weighted_.push_back({v.w.id, w});
    }
    T total = T(0);
    for (std::size_t i = 0; i < total_terms_.size(); ++i) {
      T x = T(0);
      for (const auto& [id, w] : weighted_)
        if (id == total_terms_[i].id) x = w;
      total = i == 0 ? x : total + x;
    }
    pending_values_.clear();
    record_.total = static_cast<double>(total);
  }

  /// The ordered sum over ranks of the encoder's and decoder's gradients (partial sums over each
  /// rank's rows); heads are computed on the global batch on every rank, their gradients already
  /// whole and identical, and are not sent. One bucket per parameter of these modules, started in
  /// registration order. Frozen modules (optimizer.excludes) are summed too: their gradients are
  /// never applied but are checkpointed, and must be the same on every rank (see
  /// hold_frozen_gradients). `accumulated`: every parameter a summed step reached (has_grad), else
  /// those this backward wrote.
  void reduce_gradients(bool accumulated) {
    plan_gradient_sum();
    auto sent = [&](std::size_t b) { return accumulated ? reduced_[b]->has_grad : reduced_[b]->written; };
    timed([&] {
      for (std::size_t b = 0; b < reduced_.size(); ++b)
        if (!shards_[b].started && sent(b)) start_sum(b);
      grad_sum_->wait_all();
      for (std::size_t b = 0; b < reduced_.size(); ++b)
        if (sent(b)) gradient_summed(*reduced_[b]);
      for (Shards& k : shards_) k.started = false;
    });
    for (std::size_t b = 0; b < reduced_.size(); ++b) {
      Held& h = held_[b];
      if (!h.active) continue;
      T* g = host_gradient(*reduced_[b]);
      for (Index e = 0; e < h.grad.size(); ++e) g[e] += h.grad.data()[e];  // the steps before, plus this one's sum
      device_gradient(*reduced_[b]);
      h.active = false;
    }
  }
  void start_sum(std::size_t b) {
    grad_sum_->start_bucket(static_cast<Index>(b), gradient_to_sum(*reduced_[b]));
    shards_[b].started = true;
    shards_[b].grad = shard_optimizer_;  // only this rank's chunk holds the sum
  }
  /// Tape::backward's hook (overlap on): p's gradient is complete, its sum starts now.
  void start_sum_during_backward(Parameter<T>& p) {
    if (!p.written) return;
    for (std::size_t b = 0; b < reduced_.size(); ++b)
      if (reduced_[b] == &p) timed([&] {
          start_sum(b);
          grad_sum_->progress();  // lets the engine move the buckets in flight
        });
  }
  /// A frozen parameter's gradient is never zero-filled (the optimizer does not own it, as in
  /// PyTorch), so a backward adds this rank's rows' share to the sum of the steps before. Before a
  /// distributed backward (or summed step) that sum is set aside and the gradient zeroed;
  /// reduce_gradients() adds it back to the sum of the shares, so every rank holds what one
  /// process would (within rounding), not its own share plus the total.
  void hold_frozen_gradients() {
    plan_gradient_sum();
    for (std::size_t b = 0; b < reduced_.size(); ++b) {
      Parameter<T>& p = *reduced_[b];
      Held& h = held_[b];
      h.active = !p.trainable && p.has_grad;
      if (!h.active) continue;
      if (h.grad.size() != p.grad.size()) h.grad = Tensor<T>(p.grad.rows(), p.grad.cols());  // once
      std::copy_n(host_gradient(p), p.grad.size(), h.grad.data());
      std::fill_n(p.grad.data(), p.grad.size(), T(0));
      device_gradient(p);
    }
  }
  // Where a gradient lives for the exchange. The CPU: its host tensor, and the helpers below do
  // nothing else. A GPU: Parameter::device_grad, with the host tensor as the staging copy.
  /// The memory the gradient sum reads and writes: device memory for an NCCL Comm; host memory
  /// otherwise (a GPU's gradient is downloaded into its host tensor first).
  T* gradient_to_sum(Parameter<T>& p) {
    if constexpr (!Device::host_memory)
      if (comm_.memory() == dist::Memory::Device) return p.device_grad;
    return host_gradient(p);
  }
  /// After the sum: a host-staged GPU gradient goes back to the device.
  void gradient_summed(Parameter<T>& p) {
    if constexpr (!Device::host_memory)
      if (comm_.memory() == dist::Memory::Host) device_gradient(p);
  }
  /// The gradient in its host tensor, to read or change there (a GPU: downloaded first).
  T* host_gradient(Parameter<T>& p) {
    if constexpr (!Device::host_memory)
      Device::download(p.grad.data(), p.device_grad, sizeof(T) * static_cast<std::size_t>(p.grad.size()));
    return p.grad.data();
  }
  /// A GPU: the host tensor, changed, back to the device gradient (waits for the copy: the host
  /// tensor may be written again at once).
  void device_gradient(Parameter<T>& p) {
    if constexpr (!Device::host_memory) {
      Device::upload(p.device_grad, p.grad.data(), sizeof(T) * static_cast<std::size_t>(p.grad.size()));
      Device::synchronize();
    }
  }
  /// The gradient sum's buckets, planned once for every parameter of the rows modules (a warm step
  /// then allocates nothing, whichever subset a call sends).
  void plan_gradient_sum() {
    if (grad_sum_) return;
    std::vector<Index> sizes;
    bucket_of_.assign(model_.parameters().all().size(), -1);
    std::size_t i = 0;
    for (auto& p : model_.parameters().all()) {
      const bool rows_module = p.module == "pre_encoder" || p.module == "main_latent_compressor" ||
                               p.module == "signature_latent_compressors" || p.module == "pheno_latent_compressors" ||
                               p.module == "decoder";
      if (rows_module) {
        bucket_of_[i] = static_cast<Index>(reduced_.size());
        reduced_.push_back(&p);
        reduced_index_.push_back(i);
        sizes.push_back(p.grad.size());
      }
      ++i;
    }
    held_.resize(reduced_.size());
    shards_.assign(reduced_.size(), Shards{});
    grad_sum_ = std::make_unique<dist::GradientSum<T>>(
        comm_, sizes, shard_optimizer_ ? dist::Result::OwnChunk : dist::Result::EveryElement);
  }

  /// The optimizer step of a distributed call, after reduce_gradients(). Replicated: every rank
  /// updates every parameter. Sharded (ZeRO stage 1, the default on host ranks): a rank updates
  /// only its chunk of each encoder/decoder parameter (the chunk whose gradient sum it holds; heads
  /// are whole everywhere and updated whole), then the updated chunks are gathered: the same bytes
  /// as the gradients' allgather it replaces, 1/N of the update's work. The update is elementwise,
  /// so the parameters are bit-identical to the replicated step's; the optimizer state and
  /// gradients stay sharded until gather_shards().
  void step_distributed() {
    if (!shard_optimizer_) return optimizer_.step();
    optimizer_.step([&](std::size_t i, const Parameter<T>& p) {
      const Index b = bucket_of_[i];
      return b < 0 ? std::pair<Index, Index>{0, p.value.size()} : grad_sum_->chunk(b);
    });
    timed([&] {
      for (std::size_t b = 0; b < reduced_.size(); ++b) {
        Parameter<T>& p = *reduced_[b];
        if (!p.trainable || !p.has_grad) continue;  // as RmsProp::step: not updated
        grad_sum_->gather_chunks(static_cast<Index>(b), p.value.data());
        shards_[b].state = true;
      }
    });
  }
  /// Gathers the chunks a sharded step left on their ranks: summed gradients and optimizer state
  /// (collective; a no-op when nothing is sharded). Between accumulate() and apply_accumulated()
  /// the gradients are each rank's own partial sums and are left alone.
  void gather_shards() {
    if (!shard_optimizer_ || !grad_sum_) return;
    timed([&] {
      for (std::size_t b = 0; b < reduced_.size(); ++b) {
        Shards& k = shards_[b];
        const Index bucket = static_cast<Index>(b);
        if (k.grad && !accumulating_) {
          grad_sum_->gather_chunks(bucket, reduced_[b]->grad.data());
          k.grad = false;
        }
        if (k.state) {
          auto& st = optimizer_.state()[reduced_index_[b]];
          grad_sum_->gather_chunks(bucket, st.square_avg.data());
          if (!st.momentum_buffer.empty()) grad_sum_->gather_chunks(bucket, st.momentum_buffer.data());
          k.state = false;
        }
      }
    });
  }
  template <class F>
  void timed(F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    exchange_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

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
    T weight;      // as the tape rounded it
    bool partial;  // distributed: this rank's share of a decoder-side term, summed in finish_record()
  };
  std::vector<PendingValue> pending_values_;
  StepGraphs<Dev> graphs_;  // GPU: one CUDA graph per distinct step
  bool graphs_enabled_ = false;

  // the distributed step (comm_.size() > 1)
  dist::Comm comm_;
  dist::RowSplit split_;                        // the last call's rows per rank
  ForwardVars gfwd_;                            // what the terms read: latents and heads of the global batch
  std::function<void(ForwardVars&)> exchange_;  // Extractor::forward's hook: exchange()
  const Batch<T>* exchange_batch_ = nullptr;    // this rank's rows, during compute()
  Batch<T> global_;                             // the global batch's targets (no expression)
  BatchSlots global_slots_;
  std::vector<std::int64_t> global_layout_;  // the layout_ global_slots_ were resolved for
  std::vector<std::int64_t> desc_, all_desc_, layout_;  // begin_split(): what each rank holds
  std::vector<Index> counts_;                           // begin_split(): rows per rank
  std::vector<T> send_, recv_;                  // the gather's rows
  std::vector<T> host_rows_;                    // GPU: this rank's latents, downloaded for the gather
  /// Device memory grown on demand and kept (GPU: the NCCL gather's staging; unused on the CPU).
  struct DeviceStage {
    T* ptr = nullptr;
    std::size_t n = 0;
    DeviceStage() = default;
    DeviceStage(const DeviceStage&) = delete;
    DeviceStage& operator=(const DeviceStage&) = delete;
    ~DeviceStage() { Device::Alloc::deallocate(ptr); }
    T* grow(std::size_t count) {
      if (count > n) {
        Device::Alloc::deallocate(ptr);
        ptr = nullptr;
        n = 0;
        ptr = static_cast<T*>(Device::Alloc::allocate(count * sizeof(T)));
        n = count;
      }
      return ptr;
    }
  };
  DeviceStage dev_send_, dev_recv_;
  std::vector<Var> exchange_parts_, total_terms_;
  std::vector<double> sums_;
  std::vector<std::pair<int, T>> weighted_;
  bool partial_ = false;  // weigh(): the term is this rank's share of a decoder-side mean
  std::unique_ptr<dist::GradientSum<T>> grad_sum_;
  std::vector<Parameter<T>*> reduced_;  // grad_sum_'s buckets: every rows-module parameter
  std::vector<std::size_t> reduced_index_;  // bucket -> parameter index
  std::vector<Index> bucket_of_;            // parameter index -> bucket (-1: a head, not reduced)
  bool shard_optimizer_ = false;            // step_distributed(): ZeRO stage 1
  struct Shards {                           // what of a bucket's parameter only this rank's chunk holds
    bool grad = false, state = false;
    bool started = false;  // its sum was started in this backward (overlap)
  };
  bool overlap_gradient_sum_ = false;
  std::vector<Shards> shards_;
  struct Held {                         // a frozen gradient set aside (hold_frozen_gradients)
    Tensor<T> grad;
    bool active = false;
  };
  std::vector<Held> held_;
  std::vector<std::uint64_t> digest_;  // check_replicas()' digests
  int distributed_steps_ = 0;
  double exchange_seconds_ = 0;
};

}  // namespace sakura
