// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The device copies of a model's parameters and gradients (Controller<T, Cuda>): allocated once,
/// refreshed in either direction on request; the host tensors are then copies. Nothing on the CPU.
#pragma once

#include <cstddef>
#include <deque>

#include "sakura/backend/device.hpp"
#include "sakura/tensor/parameter.hpp"

namespace sakura {

template <class T, class Dev>
struct DeviceMirrors {
  using Device = Ops<T, Dev>;
  static std::size_t bytes(const Parameter<T>& p) { return sizeof(T) * static_cast<std::size_t>(p.value.size()); }

  static void allocate(std::deque<Parameter<T>>& params) {
    for (auto& p : params) {
      p.device_value = static_cast<T*>(Device::Alloc::allocate(bytes(p)));
      p.device_grad = static_cast<T*>(Device::Alloc::allocate(bytes(p)));
    }
  }
  static void release(std::deque<Parameter<T>>& params) {
    for (auto& p : params) {
      Device::Alloc::deallocate(p.device_value);
      Device::Alloc::deallocate(p.device_grad);
    }
  }
  /// Values and gradients to the host tensors.
  static void download(std::deque<Parameter<T>>& params) {
    for (auto& p : params) {
      Device::download(p.value.data(), p.device_value, bytes(p));
      Device::download(p.grad.data(), p.device_grad, bytes(p));
    }
  }
  /// The host tensors to the device.
  static void upload(std::deque<Parameter<T>>& params) {
    for (auto& p : params) {
      Device::upload(p.device_value, p.value.data(), bytes(p));
      Device::upload(p.device_grad, p.grad.data(), bytes(p));
    }
  }
};

}  // namespace sakura
