// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Sequential<T>: an ordered stack of Linear / activation / dropout layers, named the way
/// PyTorch's `model_list` indexes them, so state_dict keys and golden files line up.
#pragma once

#include <cmath>
#include <deque>
#include <string>
#include <vector>

#include "sakura/autograd/tape.hpp"
#include "sakura/nn/model_spec.hpp"
#include "sakura/tensor/parameter.hpp"
#include "sakura/tensor/rng.hpp"

namespace sakura {

enum class LayerKind { Linear, Celu, Relu, Sigmoid, Softmax, LogSoftmax, Dropout };

template <class T>
struct Layer {
  LayerKind kind = LayerKind::Linear;
  Parameter<T>* weight = nullptr;  // Linear only
  Parameter<T>* bias = nullptr;
  double p = 0.0;                  // Dropout only
};

/// Dropout masks reserved ahead, handed out first in first out. A vector and a read position, not
/// a std::deque: a deque used as a queue allocates a node whenever its ends cross a node boundary,
/// so a warm distributed step would allocate every few calls; this keeps its storage.
class ReservedMasks {
 public:
  void push_back(const DrawSpec& s) { items_.push_back(s); }
  DrawSpec& back() { return items_.back(); }
  const DrawSpec& front() const { return items_[next_]; }
  void pop_front() { ++next_; }
  bool empty() const { return next_ == items_.size(); }
  std::size_t size() const { return items_.size() - next_; }
  void clear() {
    items_.clear();
    next_ = 0;
  }

 private:
  std::vector<DrawSpec> items_;
  std::size_t next_ = 0;
};

/// Everything a forward pass needs beyond the tape: mode, and where dropout masks come from.
/// A distributed step (controller.hpp) runs modules on this rank's rows of a global batch:
/// `row_total` >= 0 then gives the global batch size and `row_begin` this rank's first row, and a
/// dropout mask is reserved with its global shape and drawn for these rows only (the
/// single-process mask's rows). `reserved` hands out masks reserved earlier, in order, for modules
/// whose place in the draw order came before their input existed (heads after the latent gather).
template <class T>
struct ForwardContext {
  bool training = true;
  Rng* rng = nullptr;  // dropout masks come from the controller's generator
  Index row_begin = 0, row_total = -1;
  ReservedMasks* reserved = nullptr;
};

/// Owns the parameters of every module of one model (stable addresses, registration order).
template <class T>
class ParameterStore {
 public:
  Parameter<T>& add(std::string name, std::string module, std::string block, Index rows, Index cols) {
    params_.emplace_back(std::move(name), std::move(module), std::move(block), rows, cols);
    return params_.back();
  }
  std::deque<Parameter<T>>& all() { return params_; }
  const std::deque<Parameter<T>>& all() const { return params_; }
  Parameter<T>* find(const std::string& name) {
    for (auto& p : params_)
      if (p.name == name) return &p;
    return nullptr;
  }
  Index total_size() const {
    Index s = 0;
    for (auto& p : params_) s += p.value.size();
    return s;
  }

 private:
  std::deque<Parameter<T>> params_;
};

template <class T>
class Sequential {
 public:
  Sequential() = default;
  Sequential(std::string prefix, std::string module, std::string block)
      : prefix_(std::move(prefix)), module_(std::move(module)), block_(std::move(block)) {}

  /// Appends Linear(in, out); `input_major` stores its weight [in, out] (fast for sparse input).
  Sequential& linear(ParameterStore<T>& store, Index in, Index out, bool input_major = false) {
    const std::string idx = prefix_ + ".model_list." + std::to_string(layers_.size());
    Layer<T> l;
    l.kind = LayerKind::Linear;
    l.weight = input_major ? &store.add(idx + ".weight", module_, block_, in, out)
                           : &store.add(idx + ".weight", module_, block_, out, in);
    l.weight->transposed = input_major;
    l.bias = &store.add(idx + ".bias", module_, block_, 1, out);
    layers_.push_back(l);
    out_dim_ = out;
    if (in_dim_ < 0) in_dim_ = in;
    return *this;
  }
  Sequential& add(LayerKind k, double p = 0.0) {
    layers_.push_back(Layer<T>{k, nullptr, nullptr, p});
    return *this;
  }
  Sequential& activation(Activation a) {
    switch (a) {
      case Activation::Identity: break;
      case Activation::Relu: add(LayerKind::Relu); break;
      case Activation::Softmax: add(LayerKind::Softmax); break;
      case Activation::Sigmoid: add(LayerKind::Sigmoid); break;
    }
    return *this;
  }
  Sequential& dropout(double p) { return add(LayerKind::Dropout, p); }

  /// Applies layers [from, end); from = 1 continues after a first layer applied elsewhere.
  template <class Dev>
  Var forward(Tape<T, Dev>& tape, Var x, ForwardContext<T>& ctx, std::size_t from = 0) const {
    for (std::size_t li = from; li < layers_.size(); ++li) {
      const Layer<T>& l = layers_[li];
      switch (l.kind) {
        case LayerKind::Linear: {
          detail::require(tape.cols(x) == (l.weight->transposed ? l.weight->value.rows() : l.weight->value.cols()),
                          l.weight->name, ": input width ", tape.cols(x), " does not match weight ",
                          Shape{l.weight->torch_rows(), l.weight->torch_cols()});
          // a ReLU right after the layer is fused into it (one pass instead of three)
          const bool relu = li + 1 < layers_.size() && layers_[li + 1].kind == LayerKind::Relu;
          x = tape.linear(x, tape.param(*l.weight), tape.param(*l.bias), l.weight->transposed, relu);
          if (relu) ++li;
          break;
        }
        case LayerKind::Celu: x = tape.celu(x); break;
        case LayerKind::Relu: x = tape.relu(x); break;
        case LayerKind::Sigmoid: x = tape.sigmoid(x); break;
        case LayerKind::Softmax: x = tape.softmax(x); break;
        case LayerKind::LogSoftmax: x = tape.log_softmax(x); break;
        case LayerKind::Dropout: {
          if (!ctx.training || l.p <= 0.0) break;
          DrawSpec spec;
          if (ctx.reserved && !ctx.reserved->empty()) {
            spec = ctx.reserved->front();
            ctx.reserved->pop_front();
            detail::require(spec.rows == tape.rows(x) && spec.cols == tape.cols(x), prefix_,
                            ": a reserved dropout mask of ", Shape{spec.rows, spec.cols}, " for an input of ",
                            Shape{tape.rows(x), tape.cols(x)});
          } else {
            spec = mask_spec(l.p, ctx.row_total >= 0 ? ctx.row_total : tape.rows(x), tape.cols(x));
            ctx.rng->reserve(spec);
          }
          if (ctx.row_total >= 0) {  // this rank's rows of the global mask (counters of row r: tensor/draw.hpp)
            spec.base += static_cast<std::uint64_t>(ctx.row_begin * spec.pairs_per_row());
            spec.rows = tape.rows(x);
          }
          Var mask = tape.drawn(spec, nullptr, static_cast<const T*>(nullptr));
          x = tape.dropout(x, mask);
          break;
        }
      }
    }
    return x;
  }

  /// Reserves, in forward()'s order, the dropout masks forward() would draw on `rows` rows of
  /// width `in` in training mode, and queues them for a later forward() (ctx.reserved).
  void reserve_masks(Index rows, Index in, Rng& rng, ReservedMasks& out) const {
    Index width = in;
    for (const Layer<T>& l : layers_) {
      if (l.kind == LayerKind::Linear) width = l.weight->transposed ? l.weight->value.cols() : l.weight->value.rows();
      if (l.kind != LayerKind::Dropout || l.p <= 0.0) continue;
      out.push_back(mask_spec(l.p, rows, width));
      rng.reserve(out.back());
    }
  }

  const std::vector<Layer<T>>& layers() const { return layers_; }
  bool empty() const { return layers_.empty(); }
  Index in_dim() const { return in_dim_; }
  Index out_dim() const { return out_dim_; }
  const std::string& prefix() const { return prefix_; }

 private:
  static DrawSpec mask_spec(double p, Index rows, Index cols) {
    DrawSpec spec;
    spec.form = DrawSpec::Bernoulli;
    spec.rows = rows, spec.cols = cols, spec.a = p;
    spec.b = static_cast<double>(p >= 1.0 ? T(0) : static_cast<T>(1.0 / (1.0 - p)));
    return spec;
  }
  std::string prefix_, module_, block_;
  std::vector<Layer<T>> layers_;
  Index in_dim_ = -1, out_dim_ = -1;
};

/// PyTorch's nn.Linear default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W and b.
template <class T>
void init_linear_default(Sequential<T>& s, Rng& rng) {
  for (const Layer<T>& l : s.layers()) {
    if (l.kind != LayerKind::Linear) continue;
    const Index fan_in = l.weight->torch_cols();
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(double(fan_in)) : 0.0;
    for (auto& v : l.weight->value) v = static_cast<T>(rng.uniform(-bound, bound));
    for (auto& v : l.bias->value) v = static_cast<T>(rng.uniform(-bound, bound));
  }
}

}  // namespace sakura
