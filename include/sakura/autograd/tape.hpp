// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Tape<T>: a small reverse-mode autograd over a set of primitives.
///
/// Every forward op computes its value at once (into the step's arena) and, when an input
/// requires a gradient, appends a Node. Nodes are appended in execution order, so the tape is
/// already topologically sorted: backward() walks it in reverse and applies each primitive's
/// rule from autograd/rules.hpp, the one place where gradients are written.
///
/// Losses are formulas over the open elementwise set (pointwise functions, + - * /, where, mean,
/// row sums; autograd/expr.hpp writes them). The fused primitives (MSE, L1, cosine, row norms)
/// compute some whole formulas in fewer passes; expr.hpp's evaluate() picks them by the
/// formula's type.
///
/// Example:
///   Tape<double> t;  auto x = t.param(p);  auto y = t.mse(t.celu(x), t.constant(target));
///   t.backward(y);   // p.grad now holds d mse / d p
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "sakura/backend/cpu/ops.hpp"
#include "sakura/backend/pointwise.hpp"
#include "sakura/tensor/arena.hpp"
#include "sakura/tensor/draw.hpp"
#include "sakura/tensor/parameter.hpp"

namespace sakura {

/// The primitives. Adding one means: a forward method below + one case in rules.hpp (a pointwise
/// function is only an enumerator of backend/pointwise.hpp).
enum class Op : std::uint8_t {
  Linear,      // y = x W^T + b  (or x W when the weight is stored input-major)
  SparseLinear,// the same with a constant CSR input x (the first layer on sparse expression)
  Celu,        // alpha = 1
  Relu,
  Sigmoid,
  Softmax,     // row-wise
  LogSoftmax,  // row-wise
  Concat,      // column-wise
  SliceCols,   // a block of columns
  ReverseGrad, // identity forward, -gradient backward (GRL)
  SortCols,    // per-column ascending sort with its permutation (sliced Wasserstein)
  GatherRows,  // a global batch whose rows [first_row, + rows(input)) are the input (distributed step)
  // the open elementwise set and its reductions
  Pointwise,   // y = f(x) elementwise: abs, square, sqrt, exp, log1p, affine, clamp_min (backend/pointwise.hpp)
  Binary,      // y = a + b, a - b, a * b, a / b elementwise (dropout: x * mask)
  Where,       // y = mask ? a : b elementwise, the mask a constant (from less())
  Mean,        // mean of all elements (1 x 1)
  RowSum,      // sum of each row (rows x 1)
  // fused: one kernel for a whole formula of the set above (expr.hpp chooses them)
  Mse,         // mean (a - b)^2
  L1,          // mean |a - b|
  Cosine,      // mean over rows of 1 - cos(a_r, b_r)
  RowNormMean, // mean over rows of ||x_r||_p, p in {1, 2}
  // the remaining terms' own primitives
  Nll,         // mean over rows of -logp[r, label_r]
  Bce,         // mean binary cross-entropy
  KlGauss,     // KL between diagonal Gaussians fitted to x and to a prior sample
  Scale,       // scalar * a weight read at run time
};

/// A handle to one value on the tape.
struct Var {
  int id = -1;
  explicit operator bool() const { return id >= 0; }
};

/// Dev selects where values live and which kernels run (backend/device.hpp): Cpu, or Cuda with
/// the sakura::cuda library. Everything below goes through Ops<T, Dev>.
template <class T, class Dev = Cpu>
class Tape {
 public:
  using Device = Ops<T, Dev>;  // every device call goes through here (backend/device.hpp)
  struct Value {
    T* data = nullptr;
    T* grad = nullptr;
    Index rows = 0, cols = 0;
    Parameter<T>* param = nullptr;
    bool requires_grad = false;
    bool grad_ready = false;  // holds a gradient this backward (first write overwrites)
    bool grad_relu_done = false;  // grad is already through its fused Linear's ReLU and bias (rules.hpp)
    int first_consumer = -1;      // a parameter leaf: the first node reading it (its gradient's last writer)
  };
  /// A layer's layout: weight stored input-major ([in, out]), ReLU fused after it, and for
  /// Op::SparseLinear the CSC copy of its sparse input.
  struct LinearLayout {
    bool transposed, relu;
    const typename Device::SparseInput* sparse_input;
  };
  struct Node {
    Op op;
    int out = -1, a = -1, b = -1, c = -1;  // value ids: the output and up to three inputs (-1: none)
    int parts_begin = 0, parts_count = 0;  // Concat: its inputs are concat_parts_[parts_begin, + parts_count)
    /// What the op's backward reads besides its inputs and output; the member in use follows `op`.
    union {
      LinearLayout linear;                 // Linear, SparseLinear
      Index first_col;                     // SliceCols
      Index first_row;                     // GatherRows
      const std::int32_t* perm;            // SortCols: the source row of every sorted entry
      struct {
        T *norm_a, *norm_b, *dot;          // per row
      } cosine;                            // Cosine
      struct {
        T* norms;                          // per row
        int ord;
      } row_norm;                          // RowNormMean
      const std::int64_t* labels;          // Nll
      T* moments;                          // KlGauss: mean and variance of x, then of the prior
      const T* weight;                     // Scale: read when the rule runs (a device buffer on a GPU)
      struct {
        Pointwise fn;
        T constant;                        // Affine's scale, ClampMin's bound
      } pointwise;                         // Pointwise
      Binary binary;                       // Binary
    };
  };

  Tape() : stamp_(next_stamp()) {
    values_.reserve(256);
    nodes_.reserve(256);
    concat_parts_.reserve(64);
    param_leaves_.reserve(64);
  }

  /// Forget every value and node of the previous step (memory is kept for the next one).
  void reset() {
    values_.clear();
    nodes_.clear();
    concat_parts_.clear();
    param_leaves_.clear();
    arena_.reset();
    if constexpr (!Device::host_memory) staging_.reset();
    stamp_ = next_stamp();
    partner_mean_.a = -1;
  }

  // ------------------------------------------------------------------ leaves
  /// A constant (no gradient) from host memory: aliased on the CPU, copied to the device
  /// otherwise. Must be contiguous.
  Var constant(MatrixRef<const T> m) {
    detail::require(m.contiguous(), "tape constants must be contiguous");
    if constexpr (Device::host_memory) {
      return push_value(const_cast<T*>(m.data), m.rows, m.cols, false);
    } else {  // through pinned staging: the copy can be captured in a graph and replayed
      return host_filled(m.rows, m.cols,
                         [&](MatrixRef<T> s) { std::memcpy(s.data, m.data, sizeof(T) * static_cast<std::size_t>(m.size())); });
    }
  }
  /// A fresh constant buffer from the arena (device memory on a GPU).
  Var scratch(Index rows, Index cols) { return push_value(arena_.template alloc<T>(rows * cols), rows, cols, false); }
  /// A constant filled on the host by f(MatrixRef<T>) (random draws, labels as values): written in
  /// place on the CPU, staged and copied to the device otherwise.
  template <class F>
  Var host_filled(Index rows, Index cols, F&& f) {
    Var v = scratch(rows, cols);
    if constexpr (Device::host_memory) {
      f(data(v));
    } else {
      T* host = staging_.template alloc<T>(rows * cols);
      f(MatrixRef<T>(host, rows, cols));
      Device::upload(ptr(v), host, static_cast<std::size_t>(rows * cols) * sizeof(T));
    }
    return v;
  }
  /// A random array (tensor/draw.hpp) drawn where the tape's memory lives. On a GPU a kernel
  /// draws it, reading the spec (key, counters) from device memory, so a replayed graph draws new
  /// numbers without a recapture. `labels` and `offsets` must be tape memory (see labels()).
  Var drawn(const DrawSpec& s, const std::int64_t* labels, const T* offsets) {
    Var v = scratch(s.rows, s.cols);
    if constexpr (Device::host_memory) {
      Device::draw(ptr(v), s, &s, labels, offsets);
    } else {
      auto* h = staging_.template alloc<DrawSpec>(1);
      *h = s;
      auto* d = arena_.template alloc<DrawSpec>(1);
      Device::upload(d, h, sizeof(DrawSpec));
      Device::draw(ptr(v), s, d, labels, offsets);
    }
    return v;
  }
  /// GPU only: rows `index` of the device matrix `src` (cols wide), gathered by a kernel that
  /// reads the pointer and the indices from device memory (staged here), so a replayed graph
  /// gathers the current batch.
  Var gather_rows(const T* src, std::span<const std::int32_t> index, Index cols) {
    static_assert(!Device::host_memory, "gather_rows reads device memory");
    const Index n = static_cast<Index>(index.size());
    Var v = scratch(n, cols);
    const std::size_t bytes = Device::gather_header + index.size() * sizeof(std::int32_t);
    char* h = staging_.template alloc<char>(bytes);
    std::memcpy(h, &src, sizeof(src));
    std::memcpy(h + Device::gather_header, index.data(), index.size() * sizeof(std::int32_t));
    char* d = arena_.template alloc<char>(bytes);
    Device::upload(d, h, bytes);
    Device::gather_rows(ptr(v), d, n, cols);
    return v;
  }
  /// Host integers (class labels) where kernels can read them; valid until reset().
  const std::int64_t* labels(const std::int64_t* host, Index n) {
    if constexpr (Device::host_memory) {
      return host;
    } else {
      auto* h = staging_.template alloc<std::int64_t>(n);
      std::memcpy(h, host, sizeof(std::int64_t) * static_cast<std::size_t>(n));
      auto* d = arena_.template alloc<std::int64_t>(n);
      Device::upload(d, h, static_cast<std::size_t>(n) * sizeof(std::int64_t));
      return d;
    }
  }
  /// A parameter leaf; every use within one step shares one value, so gradients accumulate.
  Var param(Parameter<T>& p) {
    if (p.stamp == stamp_ && p.leaf >= 0) return Var{p.leaf};
    Var v = push_value(Device::host_memory ? p.value.data() : p.device_value, p.value.rows(), p.value.cols(), true);
    values_[v.id].param = &p;
    values_[v.id].grad = Device::host_memory ? p.grad.data() : p.device_grad;
    // a frozen parameter is never zero-filled by the optimizer, so PyTorch keeps accumulating;
    // so does every parameter while a summed step accumulates
    values_[v.id].grad_ready = accumulate_params_ || (!p.trainable && p.has_grad);
    param_leaves_.push_back({-1, v.id});
    p.stamp = stamp_;
    p.leaf = v.id;
    return v;
  }

  // ------------------------------------------------------------------ access
  const Value& value(Var v) const { return values_[v.id]; }
  MatrixRef<T> data(Var v) { return {values_[v.id].data, values_[v.id].rows, values_[v.id].cols}; }
  MatrixRef<const T> data(Var v) const { return {values_[v.id].data, values_[v.id].rows, values_[v.id].cols}; }
  /// Gradient of a value after backward(), or an empty view if none reached it — or if a fused
  /// rule carried it through the ReLU of the layer that made it, in place (the reconstruction's
  /// MSE + L1 on a Linear + ReLU output: its buffer then holds the gradient before the ReLU).
  MatrixRef<const T> grad(Var v) const {
    const Value& x = values_[v.id];
    if (!x.grad_ready || x.grad_relu_done) return {};
    return {x.grad, x.rows, x.cols};
  }
  /// A 1x1 value read on the host (a device round trip on a GPU: read scalars together, late).
  T scalar(Var v) const {
    if constexpr (Device::host_memory) {
      return values_[v.id].data[0];
    } else {
      T x;
      Device::download(&x, values_[v.id].data, sizeof(T));
      return x;
    }
  }
  Index rows(Var v) const { return values_[v.id].rows; }
  Index cols(Var v) const { return values_[v.id].cols; }
  bool requires_grad(Var v) const { return values_[v.id].requires_grad; }
  BasicArena<typename Device::Alloc>& arena() { return arena_; }
  std::size_t node_count() const { return nodes_.size(); }

  // ------------------------------------------------------------------ layers
  /// y = x W^T + b, with W stored [out, in] (PyTorch); or y = x W when `transposed` ([in, out]).
  /// relu = true fuses the ReLU that follows the layer (Sequential does when one does): the same
  /// values and gradients as linear() then relu(), with two fewer passes over the output.
  Var linear(Var x, Var w, Var bias, bool transposed = false, bool relu = false) {
    const Index n = rows(x), in = cols(x), out = transposed ? cols(w) : rows(w);
    detail::require((transposed ? rows(w) : cols(w)) == in, "linear: input ", Shape{n, in},
                    " does not match weight ", Shape{rows(w), cols(w)});
    Var y = alloc_like(n, out, x, w, bias);
    Device::gemm(false, transposed ? false : true, n, out, in, T(1), ptr(x), in, ptr(w), transposed ? out : in, T(0), ptr(y),
            out);
    if (relu) Device::bias_relu(data(y), bias ? ptr(bias) : nullptr);
    else if (bias) Device::add_bias(data(y), ptr(bias));
    push_node(Op::Linear, y, x, w, bias).linear = {transposed, relu, nullptr};
    return y;
  }
  /// linear() for a constant sparse input (cells x genes, CSR): the first pre-encoder layer on
  /// single-cell data. The CSR must stay alive until backward(); W input-major is the fast layout.
  Var linear_sparse(CsrRef<T> x, Var w, Var bias, bool transposed) {
    static_assert(Device::host_memory, "sparse input is a CPU feature: densify the batch for a GPU");
    const Index n = x.rows, in = x.cols, out = transposed ? cols(w) : rows(w);
    detail::require((transposed ? rows(w) : cols(w)) == in, "linear: sparse input ", Shape{n, in},
                    " does not match weight ", Shape{rows(w), cols(w)});
    Var y = alloc_like(n, out, w, bias);
    const auto* kept = Device::sparse_linear(arena_, ptr(y), x, ptr(w), bias ? ptr(bias) : nullptr, out, transposed);
    push_node(Op::SparseLinear, y, Var{}, w, bias).linear = {transposed, false, kept};
    return y;
  }
  Var celu(Var x) { return unary(Op::Celu, x, [&](T* y) { Device::celu_fwd(y, ptr(x), size(x)); }); }
  Var relu(Var x) { return unary(Op::Relu, x, [&](T* y) { Device::relu_fwd(y, ptr(x), size(x)); }); }
  Var sigmoid(Var x) { return unary(Op::Sigmoid, x, [&](T* y) { Device::sigmoid_fwd(y, ptr(x), size(x)); }); }
  Var softmax(Var x) {
    return unary(Op::Softmax, x, [&](T* y) { Device::softmax_rows_fwd(y, ptr(x), rows(x), cols(x), false); });
  }
  Var log_softmax(Var x) {
    return unary(Op::LogSoftmax, x, [&](T* y) { Device::softmax_rows_fwd(y, ptr(x), rows(x), cols(x), true); });
  }
  /// y = x * mask; `mask` holds 0 or 1/(1-p) per element (drawn by the caller).
  Var dropout(Var x, Var mask) { return binary(Binary::Mul, x, mask, "dropout mask"); }

  // ------------------------------------------------------------------ the open elementwise set
  /// y = f(x) elementwise (backend/pointwise.hpp); the constants are rounded to T.
  Var pointwise(Pointwise f, Var x, double c0 = 0, double c1 = 0) {
    const bool mask = f == Pointwise::Less;  // a comparison: no gradient flows through it
    Var y = alloc_like(rows(x), cols(x), mask ? Var{} : x);
    Device::pointwise(f, ptr(y), ptr(x), size(x), static_cast<T>(c0), static_cast<T>(c1));
    push_node(Op::Pointwise, y, x).pointwise = {f, static_cast<T>(c0)};
    return y;
  }
  Var abs(Var x) { return pointwise(Pointwise::Abs, x); }
  Var square(Var x) { return pointwise(Pointwise::Square, x); }
  /// Its gradient is taken as 0 where sqrt(x) = 0 (a norm's subgradient at 0).
  Var sqrt(Var x) { return pointwise(Pointwise::Sqrt, x); }
  Var exp(Var x) { return pointwise(Pointwise::Exp, x); }
  Var log1p(Var x) { return pointwise(Pointwise::Log1p, x); }
  /// x * scale + shift.
  Var affine(Var x, double scale, double shift) { return pointwise(Pointwise::Affine, x, scale, shift); }
  /// max(x, lo); the gradient passes where x >= lo (PyTorch's clamp_min).
  Var clamp_min(Var x, double lo) { return pointwise(Pointwise::ClampMin, x, lo); }
  /// 1 where x < bound, else 0: a constant mask for where().
  Var less(Var x, double bound) { return pointwise(Pointwise::Less, x, bound); }
  /// y = a f b elementwise on two values of the same shape (`what` names them in the error).
  Var binary(Binary f, Var a, Var b, const char* what = "elementwise operands") {
    require_same_shape(a, b, what);
    Var y = alloc_like(rows(a), cols(a), a, b);
    Device::binary(f, ptr(y), ptr(a), ptr(b), size(a));
    push_node(Op::Binary, y, a, b).binary = f;
    return y;
  }
  Var add(Var a, Var b) { return binary(Binary::Add, a, b); }
  Var sub(Var a, Var b) { return binary(Binary::Sub, a, b); }
  Var mul(Var a, Var b) { return binary(Binary::Mul, a, b); }
  Var div(Var a, Var b) { return binary(Binary::Div, a, b); }
  /// mask ? a : b elementwise; the mask is a constant (less() makes one).
  Var where(Var mask, Var a, Var b) {
    detail::require(!requires_grad(mask), "where: the mask must be a constant (less() makes one), not a value "
                                          "that needs a gradient");
    require_same_shape(mask, a, "where: mask and first value");
    require_same_shape(a, b, "where: values");
    Var y = alloc_like(rows(a), cols(a), a, b);
    Device::where(ptr(y), ptr(mask), ptr(a), ptr(b), size(a));
    push_node(Op::Where, y, mask, a, b);
    return y;
  }
  /// The mean of every element (1 x 1).
  Var mean(Var x) {
    Var y = alloc_like(1, 1, x);
    Device::mean_fwd(ptr(y), ptr(x), size(x));
    push_node(Op::Mean, y, x);
    return y;
  }
  /// The sum of each row (rows x 1).
  Var row_sum(Var x) {
    Var y = alloc_like(rows(x), 1, x);
    Device::row_sum_fwd(ptr(y), ptr(x), rows(x), cols(x));
    push_node(Op::RowSum, y, x);
    return y;
  }

  // ------------------------------------------------------------------ structure
  Var concat(std::span<const Var> parts) {
    detail::require(!parts.empty(), "concat of nothing");
    if (parts.size() == 1) return parts[0];
    const Index n = rows(parts[0]);
    Index width = 0;
    bool rg = false;
    for (Var p : parts) {
      detail::require(rows(p) == n, "concat: ", rows(p), " rows next to ", n);
      width += cols(p);
      rg = rg || requires_grad(p);
    }
    Var y = push_value(arena_.template alloc<T>(n * width), n, width, rg);
    Index off = 0;
    for (Var p : parts) {
      Device::add_block(MatrixRef<T>(ptr(y) + off, n, cols(p), width), data(p), false);
      off += cols(p);
    }
    if (rg) {
      Node& nd = push_node(Op::Concat, y);
      nd.parts_begin = static_cast<int>(concat_parts_.size());
      nd.parts_count = static_cast<int>(parts.size());
      for (Var p : parts) {
        concat_parts_.push_back(p.id);
        note_consumer(p.id);
      }
    }
    return y;
  }
  Var slice_cols(Var x, Index start, Index count) {
    detail::require(start >= 0 && start + count <= cols(x), "slice_cols: columns [", start, ", ", start + count,
                    ") of a tensor with ", cols(x));
    Var y = alloc_like(rows(x), count, x);
    Device::add_block(data(y), MatrixRef<const T>(ptr(x) + start, rows(x), count, cols(x)), false);
    push_node(Op::SliceCols, y, x).first_col = start;
    return y;
  }
  /// Same values, no gradient path (PyTorch's .detach(); also gradient neutralisation).
  Var detach(Var x) {
    const Value v = values_[x.id];
    return push_value(v.data, v.rows, v.cols, false);
  }
  /// Gradient reversal: identity forward, gradient times -1 backward (SPEC §3).
  Var reverse_grad(Var x) {
    const Value v = values_[x.id];
    Var y = push_value(v.data, v.rows, v.cols, v.requires_grad);
    push_node(Op::ReverseGrad, y, x);
    return y;
  }
  /// The global batch (total rows x cols(local)) of a distributed step, whose rows
  /// [first_row, first_row + rows(local)) are this rank's `local`: fill(MatrixRef<T>) writes all
  /// of it (the caller's allgather; host memory, staged on a GPU). Backward gives `local` its rows
  /// of the gradient, with no exchange: everything downstream is computed alike on every rank, so
  /// each rank's gradient of the global batch is already the whole one.
  template <class F>
  Var gathered_rows(Var local, Index first_row, Index total, F&& fill) {
    detail::require(first_row >= 0 && first_row + rows(local) <= total, "gathered_rows: rows [", first_row, ", ",
                    first_row + rows(local), ") of a batch of ", total);
    Var y = host_filled(total, cols(local), std::forward<F>(fill));
    values_[y.id].requires_grad = requires_grad(local);
    push_node(Op::GatherRows, y, local).first_row = first_row;
    return y;
  }
  /// Rows [first, first + count) of x, read in place, without a gradient path (a view for callers).
  Var row_view(Var x, Index first, Index count) {
    const Value v = values_[x.id];
    detail::require(first >= 0 && count >= 0 && first + count <= v.rows, "row_view: rows [", first, ", ",
                    first + count, ") of ", v.rows);
    return push_value(v.data + first * v.cols, count, v.cols, false);
  }
  /// Sorts each column ascending; the gradient flows back through the permutation (a constant
  /// input, such as SW2's prior samples, needs none: its values are sorted alone).
  Var sort_cols(Var x) {
    Var y = alloc_like(rows(x), cols(x), x);
    auto* perm = arena_.template alloc<std::int32_t>(size(x));
    void* scratch = arena_.alloc_bytes(Device::sort_scratch_bytes(rows(x), cols(x)));
    if (requires_grad(x)) Device::sort_columns(ptr(y), perm, ptr(x), rows(x), cols(x), scratch);
    else Device::sort_column_values(ptr(y), perm, ptr(x), rows(x), cols(x), scratch);
    push_node(Op::SortCols, y, x).perm = perm;
    return y;
  }

  // ------------------------------------------------------------------ fused formulas and other terms (scalars)
  Var mse(Var a, Var b) {
    require_same_shape(a, b, "MSE");
    return reduce(Op::Mse, a, b, [&](T* out) { paired_mean(Op::Mse, a, b, out); });
  }
  Var l1(Var a, Var b) {
    require_same_shape(a, b, "L1");
    return reduce(Op::L1, a, b, [&](T* out) { paired_mean(Op::L1, a, b, out); });
  }
  Var cosine(Var a, Var b) {
    require_same_shape(a, b, "Cosine");
    const Index n = rows(a);
    T* na = arena_.template alloc<T>(n);
    T* nb = arena_.template alloc<T>(n);
    T* dot = arena_.template alloc<T>(n);
    Var y = reduce(Op::Cosine, a, b, [&](T* out) { Device::cosine_fwd(out, na, nb, dot, ptr(a), ptr(b), n, cols(a)); });
    if (Node* nd = last_node_for(y)) nd->cosine = {na, nb, dot};
    return y;
  }
  /// Mean over rows of the row's L1 (ord 1) or L2 (ord 2) norm.
  Var row_norm_mean(Var x, int ord) {
    T* norms = arena_.template alloc<T>(rows(x));
    Var y = reduce(Op::RowNormMean, x, Var{},
                   [&](T* out) { Device::row_norm_fwd(out, norms, ptr(x), rows(x), cols(x), ord); });
    if (Node* nd = last_node_for(y)) nd->row_norm = {norms, ord};
    return y;
  }
  /// Mean over rows of -logp[r, labels[r]]; labels (from labels() on a GPU) stay alive until
  /// backward(). On the CPU they are checked here; a GPU controller checks them on upload.
  Var nll(Var logp, const std::int64_t* labels) {
    if constexpr (Device::host_memory) detail::require_labels(labels, rows(logp), cols(logp), "NLL");
    Var y = reduce(Op::Nll, logp, Var{}, [&](T* out) { Device::nll_fwd(out, ptr(logp), labels, rows(logp), cols(logp)); });
    if (Node* nd = last_node_for(y)) nd->labels = labels;
    return y;
  }
  /// Binary cross-entropy of probabilities p against targets y (y gets no gradient).
  Var bce(Var p, Var y) {
    require_same_shape(p, y, "BCE");
    return reduce(Op::Bce, p, detach(y), [&](T* out) { Device::bce_fwd(out, ptr(p), ptr(y), size(p)); });
  }
  /// KL between diagonal Gaussians fitted to x (mean, biased variance + eps) and to `prior`.
  Var kl_gauss(Var x, Var prior, double eps = 1e-8) {
    detail::require(cols(x) == cols(prior), "KL: latent width ", cols(x), " vs prior width ", cols(prior));
    const Index L = cols(x);
    T* m = arena_.template alloc<T>(4 * L);
    Var y = reduce(Op::KlGauss, x, Var{},
                   [&](T* out) { Device::kl_fwd(out, m, ptr(x), rows(x), ptr(prior), rows(prior), L, eps); });
    if (Node* nd = last_node_for(y)) nd->moments = m;
    return y;
  }
  /// s * w for a scalar s and a weight w[0] read at run time (device memory on a GPU, so a
  /// captured step follows weight schedules without being recaptured).
  Var scale(Var s, const T* w) {
    Var y = alloc_like(1, 1, s);
    Device::scale_fwd(ptr(y), ptr(s), w);
    push_node(Op::Scale, y, s).weight = w;
    return y;
  }
  /// s * w with w rounded to T first, as PyTorch multiplies a float tensor by a double.
  Var scale(Var s, double w) {
    Var wv = host_filled(1, 1, [&](MatrixRef<T> m) { m.data[0] = static_cast<T>(w); });
    return scale(s, ptr(wv));
  }

  // ------------------------------------------------------------------ backward
  /// Back-propagates d root / d (everything) with root a 1x1 value. Parameter gradients are
  /// written into Parameter::grad (overwritten on first contribution, marked `written`).
  void backward(Var root) { backward(root, NoHook{}); }
  /// backward(root), calling ready(parameter) for each parameter leaf as soon as its gradient is
  /// complete: after the first node that reads it (the last its backward runs) is done, or at
  /// the end for a leaf no node reads. Data-parallel training starts the parameter's gradient
  /// sum there, while the rest of backward runs. The order is the same for the same graph.
  template <class Ready>
  void backward(Var root, Ready&& ready) {
    Value& r = values_[root.id];
    detail::require(r.rows == 1 && r.cols == 1, "backward() needs a scalar root, got ", Shape{r.rows, r.cols});
    if (!r.requires_grad) return;
    T* g = grad_buffer(root);
    Device::fill(g, 1, T(1));
    r.grad_ready = true;
    constexpr bool hooked = !std::is_same_v<std::decay_t<Ready>, NoHook>;
    if constexpr (hooked) {
      for (auto& [node, leaf] : param_leaves_) node = values_[leaf].first_consumer;
      std::sort(param_leaves_.begin(), param_leaves_.end(), std::greater<>());  // last to be final first
    }
    std::size_t k = 0;
    auto release = [&](long long lowest_done) {  // every leaf whose first consumer has run
      if constexpr (hooked)
        for (; k < param_leaves_.size() && param_leaves_[k].first >= lowest_done; ++k)
          ready(*values_[param_leaves_[k].second].param);
    };
    for (std::size_t i = nodes_.size(); i-- > 0; release(static_cast<long long>(i))) {
      if (!values_[nodes_[i].out].grad_ready) continue;
      if (const std::size_t done = apply_pair_rule(i)) {
        i -= done - 1;  // nodes i - done + 1 .. i are done
        continue;
      }
      apply_rule(nodes_[i]);
    }
    release(-1);  // leaves that no node reads
  }

  /// Where a rule writes the gradient of input `v`: the buffer and whether to accumulate.
  std::pair<T*, bool> grad_target(int v) {
    Value& x = values_[v];
    T* g = grad_buffer(Var{v});
    const bool acc = x.grad_ready;
    x.grad_ready = true;
    if (x.param) x.param->written = true;
    return {g, acc};
  }
  Value& value_at(int id) { return values_[id]; }
  /// While set, parameter gradients add to what they hold instead of overwriting it.
  void set_accumulate_parameters(bool on) { accumulate_params_ = on; }

 private:
  struct NoHook {
    void operator()(Parameter<T>&) const {}
  };
  void apply_rule(const Node& n);  // autograd/rules.hpp
  std::size_t apply_pair_rule(std::size_t i);  // autograd/rules.hpp
  const Node* relu_producer(int v, std::size_t below) const;  // autograd/rules.hpp

  T* grad_buffer(Var v) {
    Value& x = values_[v.id];
    if (!x.grad) x.grad = arena_.template alloc<T>(x.rows * x.cols);
    return x.grad;
  }
  T* ptr(Var v) const { return values_[v.id].data; }
  Index size(Var v) const { return values_[v.id].rows * values_[v.id].cols; }
  void require_same_shape(Var a, Var b, const char* what) const {
    detail::require(rows(a) == rows(b) && cols(a) == cols(b), what, ": shapes ", Shape{rows(a), cols(a)},
                    " and ", Shape{rows(b), cols(b)}, " differ");
  }
  Var push_value(T* d, Index r, Index c, bool rg) {
    Value v;
    v.data = d;
    v.rows = r;
    v.cols = c;
    v.requires_grad = rg;
    values_.push_back(v);
    return Var{static_cast<int>(values_.size()) - 1};
  }
  template <class... Vs>
  Var alloc_like(Index r, Index c, Vs... inputs) {
    bool rg = ((inputs && requires_grad(inputs)) || ...);
    return push_value(arena_.template alloc<T>(r * c), r, c, rg);
  }
  /// Appends a node only if the output needs a gradient; otherwise returns a dummy.
  Node& push_node(Op op, Var out, Var a = {}, Var b = {}, Var c = {}) {
    if (!requires_grad(out)) {
      dummy_ = Node{op, -1, -1, -1, -1, 0, 0, {}};
      return dummy_;
    }
    nodes_.push_back(Node{op, out.id, a.id, b.id, c.id, 0, 0, {}});
    for (int x : {a.id, b.id, c.id}) note_consumer(x);
    return nodes_.back();
  }
  /// The newest node reads value x: a parameter leaf's first such node is where its gradient completes.
  void note_consumer(int x) {
    if (x >= 0 && values_[x].param && values_[x].first_consumer < 0)
      values_[x].first_consumer = static_cast<int>(nodes_.size()) - 1;
  }
  Node* last_node_for(Var y) {
    return (!nodes_.empty() && nodes_.back().out == y.id) ? &nodes_.back() : nullptr;
  }
  template <class F>
  Var unary(Op op, Var x, F&& f) {
    Var y = alloc_like(rows(x), cols(x), x);
    f(ptr(y));
    push_node(op, y, x);
    return y;
  }
  /// MSE's or L1's mean of (a, b) into out. On the CPU the first of the two on a pair takes both
  /// in one pass and keeps its partner's for the other's call (values as alone: the kernels are
  /// tested bitwise), so the reconstruction's MSE + L1 read prediction and target once.
  void paired_mean(Op op, Var a, Var b, T* out) {
    if constexpr (Device::host_memory) {
      if (partner_mean_.a == a.id && partner_mean_.b == b.id && partner_mean_.op == op) {
        out[0] = partner_mean_.value;
        partner_mean_.a = -1;
        return;
      }
      T other;
      if (op == Op::Mse) Device::mse_l1_fwd(out, &other, ptr(a), ptr(b), size(a));
      else Device::mse_l1_fwd(&other, out, ptr(a), ptr(b), size(a));
      partner_mean_ = {op == Op::Mse ? Op::L1 : Op::Mse, a.id, b.id, other};
    } else {
      if (op == Op::Mse) Device::mse_fwd(out, ptr(a), ptr(b), size(a));
      else Device::l1_fwd(out, ptr(a), ptr(b), size(a));
    }
  }
  /// A scalar-valued primitive: f writes the value into the output buffer.
  template <class F>
  Var reduce(Op op, Var a, Var b, F&& f) {
    Var y = alloc_like(1, 1, a, b);
    f(ptr(y));
    push_node(op, y, a, b);
    return y;
  }

  BasicArena<typename Device::Alloc> arena_;
  BasicArena<typename Device::HostAlloc> staging_;  // pinned host staging for uploads (GPU only)
  std::vector<Value> values_;
  std::vector<Node> nodes_;
  std::vector<int> concat_parts_;  // Concat nodes' inputs (Node::parts_begin)
  std::vector<std::pair<int, int>> param_leaves_;  // parameter leaves: {first consumer, value id}
  struct PartnerMean {  // paired_mean's kept result: op of (a, b) is value
    Op op = Op::Mse;
    int a = -1, b = -1;
    T value = 0;
  } partner_mean_;
  /// Process-wide, so a parameter bound on another tape is never mistaken for bound here.
  static std::uint64_t next_stamp() {
    static std::atomic<std::uint64_t> counter{1};
    return counter.fetch_add(1, std::memory_order_relaxed);
  }

  Node dummy_{Op::Scale, -1, -1, -1, -1, 0, 0, {}};
  std::uint64_t stamp_;
  bool accumulate_params_ = false;
};

}  // namespace sakura

#include "sakura/autograd/rules.hpp"
