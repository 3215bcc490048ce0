// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Parameter<T>: a trainable tensor with its gradient and PyTorch-compatible bookkeeping.
#pragma once

#include <cstdint>
#include <string>

#include "sakura/tensor/tensor.hpp"

namespace sakura {

template <class T>
struct Parameter {
  std::string name;    ///< PyTorch state_dict key, e.g. "model.decoder.model_list.4.weight"
  std::string module;  ///< pre_encoder, main_latent_compressor, decoder, signature_regressors, ...
  std::string block;   ///< signature/phenotype name for per-block modules, else empty
  Tensor<T> value;
  Tensor<T> grad;
  /// Stored input-major (in x out) instead of PyTorch's out x in; see named views.
  bool transposed = false;
  /// PyTorch 1.13 semantics: once a gradient reached this tensor, zero_grad() only zero-fills it,
  /// so the optimizer keeps stepping it (SPEC §6).
  bool has_grad = false;
  /// Not excluded by `optimizer.excludes`.
  bool trainable = true;
  /// Device copies of value and grad while a GPU controller trains (null on the CPU).
  T* device_value = nullptr;
  T* device_grad = nullptr;

  // -- per-step bookkeeping used by the tape
  std::uint64_t stamp = 0;
  int leaf = -1;
  bool written = false;

  Parameter() = default;
  Parameter(std::string n, std::string mod, std::string blk, Index rows, Index cols)
      : name(std::move(n)), module(std::move(mod)), block(std::move(blk)), value(rows, cols), grad(rows, cols) {}

  /// Shape as PyTorch reports it ([out, in] for weights, [n] as [1, n] for biases).
  Index torch_rows() const { return transposed ? value.cols() : value.rows(); }
  Index torch_cols() const { return transposed ? value.rows() : value.cols(); }
  /// Element (r, c) of the PyTorch-layout view.
  T& torch_at(Index r, Index c) { return transposed ? value(c, r) : value(r, c); }
  const T& torch_at(Index r, Index c) const { return transposed ? value(c, r) : value(r, c); }
  const T& torch_grad_at(Index r, Index c) const { return transposed ? grad(c, r) : grad(r, c); }
};

}  // namespace sakura
