// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// RmsProp: PyTorch's RMSprop (eps 1e-8 outside the sqrt, not centred) with weight decay,
/// momentum and frozen modules (SPEC §6). Steps every parameter whose gradient exists in the
/// PyTorch 1.13 sense (Parameter::has_grad): stale parameters move with a zero gradient.
#pragma once

#include <deque>
#include <vector>

#include "sakura/backend/cpu/ops.hpp"
#include "sakura/config/spec.hpp"
#include "sakura/nn/parameter.hpp"

namespace sakura {

template <class T = float>
class RmsProp {
 public:
  struct State {
    Tensor<T> square_avg;
    Tensor<T> momentum_buffer;
    bool initialised = false;
  };

  RmsProp(std::deque<Parameter<T>>& params, const OptimizerSpec& opt) : params_(&params), opt_(opt) {
    detail::require(opt.lr >= 0, "optimizer.RMSProp_lr must be non-negative (got ", opt.lr, ")");
    detail::require(opt.alpha >= 0 && opt.alpha <= 1, "optimizer.RMSProp_alpha must be in [0, 1] (got ", opt.alpha,
                    ")");
    detail::require(opt.momentum >= 0, "optimizer.RMSProp_momentum must be non-negative (got ", opt.momentum, ")");
    state_.resize(params.size());
    set_hyper();
  }

  /// One update of every trainable parameter that has a gradient.
  void step() {
    std::size_t i = 0;
    for (Parameter<T>& p : *params_) {
      State& s = state_[i++];
      if (!p.trainable || !p.has_grad) continue;
      if (!s.initialised) {  // PyTorch creates the state lazily, zero-filled
        s.square_avg = Tensor<T>(p.value.rows(), p.value.cols());
        if (opt_.momentum > 0) s.momentum_buffer = Tensor<T>(p.value.rows(), p.value.cols());
        s.initialised = true;
      }
      Ops<T, Cpu>::rmsprop_step(p.value.data(), p.grad.data(), s.square_avg.data(),
                                opt_.momentum > 0 ? s.momentum_buffer.data() : nullptr, p.value.size(), hyper_);
    }
  }

  const OptimizerSpec& options() const { return opt_; }
  void set_lr(double lr) {
    opt_.lr = lr;
    set_hyper();
  }
  std::vector<State>& state() { return state_; }
  const std::vector<State>& state() const { return state_; }

 private:
  /// The hyper-parameters as the kernels read them, rounded from double like PyTorch's scalars.
  void set_hyper() {
    hyper_[0] = static_cast<T>(-opt_.lr);
    hyper_[1] = static_cast<T>(opt_.alpha);
    hyper_[2] = static_cast<T>(1.0 - opt_.alpha);
    hyper_[3] = static_cast<T>(opt_.eps);
    hyper_[4] = static_cast<T>(opt_.weight_decay);
    hyper_[5] = static_cast<T>(opt_.momentum);
  }

  std::deque<Parameter<T>>* params_;
  OptimizerSpec opt_;
  std::vector<State> state_;
  T hyper_[kRmsHyper]{};
};

}  // namespace sakura
