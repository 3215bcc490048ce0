// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// RmsProp: PyTorch's RMSprop (eps 1e-8 outside the sqrt, not centred) with weight decay,
/// momentum and frozen modules (SPEC §6). Steps every parameter whose gradient exists in the
/// PyTorch 1.13 sense (Parameter::has_grad): stale parameters move with a zero gradient.
#pragma once

#include <deque>
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
  using K = Ops<T, Dev>;
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
    if constexpr (!K::host_memory) dev_hyper_ = static_cast<T*>(K::Alloc::allocate(sizeof(T) * kRmsHyper));
    set_hyper();
  }
  ~RmsProp() {
    if constexpr (!K::host_memory) {
      for (auto& s : state_) {
        K::Alloc::deallocate(s.dev_square_avg);
        K::Alloc::deallocate(s.dev_momentum);
      }
      K::Alloc::deallocate(dev_hyper_);
    }
  }
  RmsProp(const RmsProp&) = delete;
  RmsProp& operator=(const RmsProp&) = delete;

  /// One update of every trainable parameter that has a gradient.
  void step() {
    std::size_t i = 0;
    for (Parameter<T>& p : *params_) {
      State& s = state_[i++];
      if (!p.trainable || !p.has_grad) continue;
      if (!s.initialised) {  // PyTorch creates the state lazily, zero-filled
        s.square_avg = Tensor<T>(p.value.rows(), p.value.cols());
        if (opt_.momentum > 0) s.momentum_buffer = Tensor<T>(p.value.rows(), p.value.cols());
        if constexpr (!K::host_memory) {
          s.dev_square_avg = device_zeros(p.value.size());
          if (opt_.momentum > 0) s.dev_momentum = device_zeros(p.value.size());
        }
        s.initialised = true;
      }
      if constexpr (K::host_memory)
        K::rmsprop_step(p.value.data(), p.grad.data(), s.square_avg.data(),
                        opt_.momentum > 0 ? s.momentum_buffer.data() : nullptr, p.value.size(), hyper_);
      else
        K::rmsprop_step(p.device_value, p.device_grad, s.dev_square_avg, s.dev_momentum, p.value.size(), dev_hyper_);
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
    if constexpr (!K::host_memory)
      for (auto& s : state_) {
        if (!s.initialised) continue;
        K::download(s.square_avg.data(), s.dev_square_avg, sizeof(T) * s.square_avg.size());
        if (s.dev_momentum) K::download(s.momentum_buffer.data(), s.dev_momentum, sizeof(T) * s.momentum_buffer.size());
      }
  }
  void upload_state() {
    if constexpr (!K::host_memory) {
      std::size_t i = 0;
      for (Parameter<T>& p : *params_) {
        State& s = state_[i++];
        if (!s.initialised) continue;
        if (!s.dev_square_avg) s.dev_square_avg = device_zeros(p.value.size());
        if (opt_.momentum > 0 && !s.dev_momentum) s.dev_momentum = device_zeros(p.value.size());
        K::upload(s.dev_square_avg, s.square_avg.data(), sizeof(T) * s.square_avg.size());
        if (s.dev_momentum) K::upload(s.dev_momentum, s.momentum_buffer.data(), sizeof(T) * s.momentum_buffer.size());
      }
    }
  }

 private:
  T* device_zeros(Index n) {
    T* d = static_cast<T*>(K::Alloc::allocate(sizeof(T) * static_cast<std::size_t>(n)));
    K::fill(d, n, T(0));
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
    if constexpr (!K::host_memory) K::upload(dev_hyper_, hyper_, sizeof(hyper_));  // read by the kernels
  }

  std::deque<Parameter<T>>* params_;
  OptimizerSpec opt_;
  std::vector<State> state_;
  T hyper_[kRmsHyper]{};
  T* dev_hyper_ = nullptr;
};

}  // namespace sakura
