// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// RmsProp: PyTorch's RMSprop (eps 1e-8 outside the sqrt, not centred) with weight decay,
/// momentum and frozen modules (SPEC §6). Steps every parameter whose gradient exists in the
/// PyTorch 1.13 sense (Parameter::has_grad, kept here): stale parameters move with a zero gradient.
#pragma once

#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "sakura/backend/cpu/ops.hpp"
#include "sakura/optim/options.hpp"
#include "sakura/tensor/parameter.hpp"

namespace sakura {

/// Dev = Cuda keeps the state in device memory (dev_square_avg, dev_momentum); the host tensors
/// are then the copies that Controller::sync_to_host() refreshes.
template <class T = float, class Dev = Cpu>
class RmsProp {
 public:
  using Device = Ops<T, Dev>;  // every device call goes through here (backend/device.hpp)
  struct State {
    Tensor<T> square_avg;
    Tensor<T> momentum_buffer;
    bool initialised = false;
    T* dev_square_avg = nullptr;
    T* dev_momentum = nullptr;
  };

  RmsProp(std::deque<Parameter<T>>& params, const OptimizerSpec& opt) : params_(&params), opt_(opt) {
    detail::require(opt.lr >= 0, "optimizer.RMSProp_lr must be non-negative (got ", opt.lr, ")");
    detail::require(opt.alpha >= 0 && opt.alpha <= 1, "optimizer.RMSProp_alpha must be in [0, 1] (got ", opt.alpha,
                    ")");
    detail::require(opt.momentum >= 0, "optimizer.RMSProp_momentum must be non-negative (got ", opt.momentum, ")");
    state_.resize(params.size());
    if constexpr (!Device::host_memory) dev_hyper_ = static_cast<T*>(Device::Alloc::allocate(sizeof(T) * kRmsHyper));
    set_hyper();
  }
  ~RmsProp() {
    if constexpr (!Device::host_memory) {
      for (auto& s : state_) {
        Device::Alloc::deallocate(s.dev_square_avg);
        Device::Alloc::deallocate(s.dev_momentum);
      }
      Device::Alloc::deallocate(dev_hyper_);
    }
  }
  RmsProp(const RmsProp&) = delete;
  RmsProp& operator=(const RmsProp&) = delete;

  /// One update of every trainable parameter that has a gradient.
  void step() {
    step([](std::size_t, const Parameter<T>& p) { return std::pair<Index, Index>{0, p.value.size()}; });
  }
  /// The update of elements [first, first + count) of each such parameter, {first, count} =
  /// part(i, parameter i): a sharded optimizer updates its chunk. The update is elementwise, so
  /// every element gets the same bits as in step(). The state is allocated whole.
  template <class Part>
  void step(const Part& part) {
    std::size_t i = 0;
    for (Parameter<T>& p : *params_) {
      const auto [first, count] = part(i, std::as_const(p));
      State& s = state_[i++];
      if (!p.trainable || !p.has_grad) continue;
      if (!s.initialised) {  // PyTorch creates the state lazily, zero-filled
        s.square_avg = Tensor<T>(p.value.rows(), p.value.cols());
        if (opt_.momentum > 0) s.momentum_buffer = Tensor<T>(p.value.rows(), p.value.cols());
        if constexpr (!Device::host_memory) {
          s.dev_square_avg = device_zeros(p.value.size());
          if (opt_.momentum > 0) s.dev_momentum = device_zeros(p.value.size());
        }
        s.initialised = true;
      }
      if (count == 0) continue;  // a chunk of a parameter with fewer elements than ranks
      auto at = [first](T* x) { return x ? x + first : nullptr; };
      if constexpr (Device::host_memory)
        Device::rmsprop_step(at(p.value.data()), at(p.grad.data()), at(s.square_avg.data()),
                             at(opt_.momentum > 0 ? s.momentum_buffer.data() : nullptr), count, hyper_);
      else
        Device::rmsprop_step(at(p.device_value), at(p.device_grad), at(s.dev_square_avg), at(s.dev_momentum), count,
                             dev_hyper_);
    }
  }

  // ---- PyTorch 1.13's gradient bookkeeping (SPEC §6): which parameters have a gradient
  /// Before a backward pass: no parameter written yet (the tape sets Parameter::written).
  void begin_backward() {
    for (Parameter<T>& p : *params_) p.written = false;
  }
  /// After the backward pass of a step, then the update: a parameter written now has a gradient
  /// from here on; one that had a gradient and was not written is zero-filled (torch 1.13's
  /// zero_grad() fills with zeros, it does not free), so it still moves (momentum, weight decay).
  void step_after_backward() {
    after_backward();
    step();
  }
  /// step_after_backward()'s bookkeeping alone (a sharded optimizer then steps its chunks).
  void after_backward() {
    for (Parameter<T>& p : *params_) {
      if (p.written) {
        if (!p.has_grad) ++has_grad_generation_;
        p.has_grad = true;
      } else if (p.has_grad && p.trainable) {
        zero_grad(p);
      }
    }
  }
  /// After the backward pass of one part of a summed step (no update yet).
  void end_accumulated_backward() {
    for (Parameter<T>& p : *params_) p.has_grad = p.has_grad || p.written;
  }
  /// Zero-fills every trainable gradient (the first part of a summed step).
  void zero_grad() {
    for (Parameter<T>& p : *params_)
      if (p.trainable) zero_grad(p);
  }
  /// Bumps whenever a parameter gets its first gradient: the set of stepped parameters changed.
  std::uint64_t has_grad_generation() const { return has_grad_generation_; }

  /// optimizer.excludes (SPEC §6): frozen modules keep their values and get no optimizer state.
  void apply_excludes() {
    for (auto& [type, name] : opt_.excludes) {
      const bool singleton = type == "pre_encoder" || type == "main_latent_compressor" || type == "decoder";
      const bool group = type == "signature_latent_compressors" || type == "signature_regressors" ||
                         type == "pheno_latent_compressors" || type == "pheno_models";
      detail::require(singleton || group, "optimizer.excludes: unknown module type '", type,
                      "' (known: pre_encoder, main_latent_compressor, decoder, signature_latent_compressors, "
                      "signature_regressors, pheno_latent_compressors, pheno_models)");
      bool any = false;
      for (auto& p : *params_)
        if (p.module == type && (singleton || p.block == name)) {
          p.trainable = false;
          any = true;
        }
      detail::require(any || singleton, "optimizer.excludes: no ", type, " named '", name, "'");
    }
  }

  const OptimizerSpec& options() const { return opt_; }
  void set_lr(double lr) {
    opt_.lr = lr;
    set_hyper();
  }
  std::vector<State>& state() { return state_; }
  const std::vector<State>& state() const { return state_; }

  /// Device state <-> host tensors (GPU only; the controller calls these).
  void download_state() {
    if constexpr (!Device::host_memory)
      for (auto& s : state_) {
        if (!s.initialised) continue;
        Device::download(s.square_avg.data(), s.dev_square_avg, sizeof(T) * s.square_avg.size());
        if (s.dev_momentum) Device::download(s.momentum_buffer.data(), s.dev_momentum, sizeof(T) * s.momentum_buffer.size());
      }
  }
  void upload_state() {
    if constexpr (!Device::host_memory) {
      std::size_t i = 0;
      for (Parameter<T>& p : *params_) {
        State& s = state_[i++];
        if (!s.initialised) continue;
        if (!s.dev_square_avg) s.dev_square_avg = device_zeros(p.value.size());
        if (opt_.momentum > 0 && !s.dev_momentum) s.dev_momentum = device_zeros(p.value.size());
        Device::upload(s.dev_square_avg, s.square_avg.data(), sizeof(T) * s.square_avg.size());
        if (s.dev_momentum) Device::upload(s.dev_momentum, s.momentum_buffer.data(), sizeof(T) * s.momentum_buffer.size());
      }
    }
  }

 private:
  void zero_grad(Parameter<T>& p) {
    if constexpr (Device::host_memory) p.grad.fill(T(0));
    else Device::fill(p.device_grad, p.grad.size(), T(0));
  }
  T* device_zeros(Index n) {
    T* d = static_cast<T*>(Device::Alloc::allocate(sizeof(T) * static_cast<std::size_t>(n)));
    Device::fill(d, n, T(0));
    return d;
  }
  /// The hyper-parameters as the kernels read them, rounded from double like PyTorch's scalars.
  void set_hyper() {
    hyper_[0] = static_cast<T>(-opt_.lr);
    hyper_[1] = static_cast<T>(opt_.alpha);
    hyper_[2] = static_cast<T>(1.0 - opt_.alpha);
    hyper_[3] = static_cast<T>(opt_.eps);
    hyper_[4] = static_cast<T>(opt_.weight_decay);
    hyper_[5] = static_cast<T>(opt_.momentum);
    if constexpr (!Device::host_memory) Device::upload(dev_hyper_, hyper_, sizeof(hyper_));  // read by the kernels
  }

  std::deque<Parameter<T>>* params_;
  OptimizerSpec opt_;
  std::vector<State> state_;
  T hyper_[kRmsHyper]{};
  T* dev_hyper_ = nullptr;
  std::uint64_t has_grad_generation_ = 0;
};

}  // namespace sakura
