// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Device tags and the Ops<T, Dev> interface every backend implements: the only way the tape, its
/// backward rules and the optimizer touch tensor memory.
///
/// The interface is pointer-based so that memory may live on a GPU: forward reductions write their
/// scalar into an output buffer, backward kernels read the upstream gradient from a buffer, and
/// loss weights and optimizer hyper-parameters are read from buffers (on the GPU they stay in
/// device memory, so a captured CUDA graph needs no recapture when they change).
#pragma once

#include <cstddef>
#include <type_traits>

namespace sakura {

/// Host memory; Eigen / oneDNN / OpenBLAS and OpenMP kernels (backend/cpu/).
struct Cpu {};
/// Device memory; cuBLAS and custom CUDA kernels (backend/cuda/ops.hpp, library sakura::cuda).
struct Cuda {};

template <class Dev>
inline constexpr bool is_cuda_v = std::is_same_v<Dev, Cuda>;

/// Specialised by backend/cpu/ops.hpp and backend/cuda/ops.hpp.
template <class T, class Dev>
struct Ops;

/// RMSProp's hyper-parameters as one buffer of T, each rounded from double as PyTorch does:
/// {-lr, alpha, 1 - alpha, eps, weight_decay, momentum}.
inline constexpr std::size_t kRmsHyper = 6;

}  // namespace sakura
