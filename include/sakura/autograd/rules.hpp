// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// THE backward table: one rule per primitive of autograd/tape.hpp, and nowhere else.
/// A rule reads the output gradient `gy` and writes each input's gradient through
/// grad_target(), which says whether to overwrite (first contribution) or accumulate.
#pragma once

#include <tuple>

#include "sakura/autograd/tape.hpp"

namespace sakura {

template <class T, class Dev>
void Tape<T, Dev>::apply_rule(const Node& n) {
  Value& out = values_[n.out];
  const T* gy = out.grad;
  const Index count = out.rows * out.cols;
  auto needs = [&](int v) { return v >= 0 && values_[v].requires_grad; };
  auto in = [&](int v) -> const Value& { return values_[v]; };
  // write(d, acc) gives input v its gradient, if it needs one (d: its buffer; acc: add to it)
  auto to_input = [&](int v, auto&& write) {
    if (!needs(v)) return;
    auto [d, acc] = grad_target(v);
    write(d, acc);
  };

  switch (n.op) {
    case Op::Linear: {
      const Value &x = in(n.a), &w = in(n.b);
      const bool tr = n.linear.transposed;
      const Index rows = x.rows, fin = x.cols, fout = out.cols;
      bool bias_done = out.grad_relu_done;  // the reconstruction's pair rule did ReLU and bias
      if (n.linear.relu && !bias_done && (needs(n.a) || needs(n.b) || needs(n.c))) {
        // fused ReLU: gy masked by the output, and the bias gradient, in one pass
        T* masked = arena_.template alloc<T>(rows * fout);
        T* db = nullptr;
        bool acc = false;
        if (needs(n.c)) std::tie(db, acc) = grad_target(n.c);
        Device::relu_bwd_col_sum(masked, db, acc, gy, out.data, rows, fout);
        gy = masked;
        bias_done = true;
      }
      to_input(n.a, [&](T* dx, bool acc) {  // dx = dy W  (or dy W^T when stored input-major)
        Device::gemm(false, tr, rows, fin, fout, T(1), gy, fout, w.data, tr ? fout : fin, acc ? T(1) : T(0), dx, fin);
      });
      to_input(n.b, [&](T* dw, bool acc) {  // dW = dy^T x  (or x^T dy)
        if (tr)
          Device::gemm(true, false, fin, fout, rows, T(1), x.data, fin, gy, fout, acc ? T(1) : T(0), dw, fout);
        else
          Device::gemm(true, false, fout, fin, rows, T(1), gy, fout, x.data, fin, acc ? T(1) : T(0), dw, fin);
      });
      if (!bias_done)
        to_input(n.c, [&](T* db, bool acc) { Device::col_sum(db, MatrixRef<const T>(gy, rows, fout), acc); });
      break;
    }
    case Op::SparseLinear:  // the input is constant: only dW and db (CPU only)
      if constexpr (Device::host_memory) {
        to_input(n.b, [&](T* dw, bool acc) {
          Device::sparse_linear_weight_grad(dw, *n.linear.sparse_input, gy, out.cols, n.linear.transposed, acc);
        });
        to_input(n.c, [&](T* db, bool acc) { Device::col_sum(db, MatrixRef<const T>(gy, out.rows, out.cols), acc); });
      }
      break;
    case Op::Celu:
      to_input(n.a, [&](T* dx, bool acc) { Device::celu_bwd(dx, gy, in(n.a).data, count, acc); });
      break;
    case Op::Relu:
      to_input(n.a, [&](T* dx, bool acc) { Device::relu_bwd(dx, gy, out.data, count, acc); });
      break;
    case Op::Sigmoid:
      to_input(n.a, [&](T* dx, bool acc) { Device::sigmoid_bwd(dx, gy, out.data, count, acc); });
      break;
    case Op::Softmax:
    case Op::LogSoftmax:
      to_input(n.a, [&](T* dx, bool acc) {
        Device::softmax_rows_bwd(dx, gy, out.data, out.rows, out.cols, n.op == Op::LogSoftmax, acc);
      });
      break;
    case Op::Concat: {
      Index off = 0;
      for (int k = 0; k < n.parts_count; ++k) {
        const int id = concat_parts_[n.parts_begin + k];
        const Index w = values_[id].cols;
        if (needs(id)) {
          auto [dx, acc] = grad_target(id);
          Device::add_block(MatrixRef<T>(dx, out.rows, w), MatrixRef<const T>(gy + off, out.rows, w, out.cols), acc);
        }
        off += w;
      }
      break;
    }
    case Op::SliceCols:
      to_input(n.a, [&](T* dx, bool acc) {
        const Value& x = in(n.a);
        if (!acc) Device::fill(dx, x.rows * x.cols, T(0));
        Device::add_block(MatrixRef<T>(dx + n.first_col, x.rows, out.cols, x.cols),
                     MatrixRef<const T>(gy, out.rows, out.cols), true);
      });
      break;
    case Op::GatherRows:
      to_input(n.a, [&](T* dx, bool acc) {
        const Value& x = in(n.a);
        Device::add_block(MatrixRef<T>(dx, x.rows, x.cols), MatrixRef<const T>(gy + n.first_row * out.cols, x.rows, x.cols),
                          acc);
      });
      break;
    case Op::ReverseGrad:
      to_input(n.a, [&](T* dx, bool acc) { Device::axpy(dx, gy, count, T(-1), acc); });
      break;
    case Op::SortCols:
      to_input(n.a, [&](T* dx, bool acc) { Device::unsort_columns(dx, gy, n.perm, out.rows, out.cols, acc); });
      break;
    case Op::Pointwise:  // each function's derivative is beside it in backend/pointwise.hpp
      to_input(n.a, [&](T* dx, bool acc) {
        Device::pointwise_bwd(n.pointwise.fn, dx, gy, in(n.a).data, out.data, count, n.pointwise.constant, acc);
      });
      break;
    case Op::Binary:
      for (const bool wrt_b : {false, true})
        to_input(wrt_b ? n.b : n.a, [&](T* d, bool acc) {
          Device::binary_bwd(n.binary, wrt_b, d, gy, in(n.a).data, in(n.b).data, count, acc);
        });
      break;
    case Op::Where:  // a (input b) where the constant mask (input a) is set, b (input c) elsewhere
      for (const bool selected : {true, false})
        to_input(selected ? n.b : n.c,
                 [&](T* d, bool acc) { Device::where_bwd(d, gy, in(n.a).data, selected, count, acc); });
      break;
    case Op::Mean:
      to_input(n.a, [&](T* dx, bool acc) { Device::mean_bwd(dx, gy, in(n.a).rows * in(n.a).cols, acc); });
      break;
    case Op::RowSum:
      to_input(n.a, [&](T* dx, bool acc) { Device::row_sum_bwd(dx, gy, out.rows, in(n.a).cols, acc); });
      break;
    case Op::Mse:
    case Op::L1: {
      const Value &a = in(n.a), &b = in(n.b);
      auto kernel = n.op == Op::Mse ? &Device::mse_bwd : &Device::l1_bwd;
      to_input(n.a, [&](T* da, bool acc) { kernel(da, gy, a.data, b.data, a.rows * a.cols, acc); });
      to_input(n.b, [&](T* db, bool acc) { kernel(db, gy, b.data, a.data, a.rows * a.cols, acc); });
      break;
    }
    case Op::Cosine: {
      const Value &a = in(n.a), &b = in(n.b);
      const auto& c = n.cosine;
      to_input(n.a, [&](T* da, bool acc) {
        Device::cosine_bwd(da, gy, a.data, b.data, c.norm_a, c.norm_b, c.dot, a.rows, a.cols, acc);
      });
      to_input(n.b, [&](T* db, bool acc) {
        Device::cosine_bwd(db, gy, b.data, a.data, c.norm_b, c.norm_a, c.dot, a.rows, a.cols, acc);
      });
      break;
    }
    case Op::RowNormMean:
      to_input(n.a, [&](T* dx, bool acc) {
        const Value& x = in(n.a);
        Device::row_norm_bwd(dx, gy, x.data, n.row_norm.norms, x.rows, x.cols, n.row_norm.ord, acc);
      });
      break;
    case Op::Nll:
      to_input(n.a, [&](T* dx, bool acc) { Device::nll_bwd(dx, gy, n.labels, in(n.a).rows, in(n.a).cols, acc); });
      break;
    case Op::Bce:
      to_input(n.a, [&](T* dp, bool acc) {
        Device::bce_bwd(dp, gy, in(n.a).data, in(n.b).data, in(n.a).rows * in(n.a).cols, acc);
      });
      break;
    case Op::KlGauss:
      to_input(n.a, [&](T* dx, bool acc) {
        const Value& x = in(n.a);
        Device::kl_bwd(dx, gy, x.data, n.moments, x.rows, x.cols, acc);
      });
      break;
    case Op::Scale:
      to_input(n.a, [&](T* ds, bool acc) { Device::scale_bwd(ds, gy, n.weight, acc); });
      break;
  }
}

/// Nodes whose backward is cheaper done together, found from node i (the reverse walk's next
/// one); returns how many nodes ending at i it applied (0: none, nothing done).
/// MSE and L1 of the same prediction against a constant target (the reconstruction terms):
/// one pass over prediction and target instead of two, the same values as the two rules (in
/// the order the walk would apply them). The partner is node i - 1, or node i - 2 when node
/// i - 1 is its weight (a Scale of its output), whose scalar rule is then applied first.
template <class T, class Dev>
std::size_t Tape<T, Dev>::apply_pair_rule(std::size_t i) {
  const Node& first = nodes_[i];
  if (first.op != Op::Mse && first.op != Op::L1) return 0;
  const Op other = first.op == Op::Mse ? Op::L1 : Op::Mse;
  auto partner = [&](std::size_t j) {
    const Node& p = nodes_[j];
    return p.op == other && p.a == first.a && p.b == first.b;
  };
  const Value &a = values_[first.a], &b = values_[first.b];
  if (!a.requires_grad || b.requires_grad) return 0;
  std::size_t j = 0;
  if (i >= 1 && partner(i - 1)) {
    j = i - 1;
  } else if (i >= 2 && partner(i - 2) && nodes_[i - 1].op == Op::Scale && nodes_[i - 1].a == nodes_[i - 2].out &&
             values_[nodes_[i - 1].out].grad_ready) {
    apply_rule(nodes_[i - 1]);  // the partner's weight: scalars only, independent of node i
    j = i - 2;
  } else {
    return 0;
  }
  const Node& second = nodes_[j];
  if (!values_[second.out].grad_ready) {  // (only when node i - 1 was adjacent and not reached)
    return 0;
  }
  const Node& mse = first.op == Op::Mse ? first : second;
  const Node& l1 = first.op == Op::Mse ? second : first;
  if constexpr (Device::host_memory) {  // (the GPU keeps the ReLU's own pass)
    if (const Node* lin = relu_producer(first.a, j)) {
      T* db = nullptr;
      bool acc_db = false;
      if (lin->c >= 0 && values_[lin->c].requires_grad) std::tie(db, acc_db) = grad_target(lin->c);
      auto [da, acc] = grad_target(first.a);
      Device::mse_l1_relu_bwd(da, db, acc_db, values_[mse.out].grad, values_[l1.out].grad, first.op == Op::Mse, a.data,
                         b.data, a.rows, a.cols, acc);
      values_[first.a].grad_relu_done = true;
      return i - j + 1;
    }
  }
  auto [da, acc] = grad_target(first.a);
  Device::mse_l1_bwd(da, values_[mse.out].grad, values_[l1.out].grad, first.op == Op::Mse, a.data, b.data,
                a.rows * a.cols, acc);
  return i - j + 1;
}

/// The Linear node with a fused ReLU that produced value v, if no node between it and node
/// `below` reads v or that layer's bias: then every contribution to v's gradient is in when the
/// nodes from `below` on are applied, and the ReLU's mask and bias gradient can be taken there
/// (the layer's rule finds grad_relu_done). Null otherwise.
template <class T, class Dev>
auto Tape<T, Dev>::relu_producer(int v, std::size_t below) const -> const Node* {
  std::size_t p = below;
  while (p-- > 0 && nodes_[p].out != v) {
  }
  if (p == std::size_t(-1)) return nullptr;
  const Node& lin = nodes_[p];
  if (lin.op != Op::Linear || !lin.linear.relu) return nullptr;
  auto reads = [&](const Node& n, int id) {
    if (id < 0) return false;
    if (n.a == id || n.b == id || n.c == id) return true;
    for (int k = 0; k < n.parts_count; ++k)
      if (concat_parts_[n.parts_begin + k] == id) return true;
    return false;
  };
  for (std::size_t k = p + 1; k < below; ++k)
    if (reads(nodes_[k], v) || reads(nodes_[k], lin.c)) return nullptr;
  return &lin;
}

}  // namespace sakura
