// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// THE backward table: one rule per primitive of autograd/tape.hpp, and nowhere else.
/// A rule reads the output gradient `gy` and writes each input's gradient through
/// grad_target(), which says whether to overwrite (first contribution) or accumulate.
#pragma once

#include "sakura/autograd/tape.hpp"

namespace sakura {

template <class T>
void Tape<T>::apply_rule(const Node& n) {
  Value& out = values_[n.out];
  const T* gy = out.grad;
  auto needs = [&](int v) { return v >= 0 && values_[v].requires_grad; };
  auto in = [&](int v) -> const Value& { return values_[v]; };

  switch (n.op) {
    case Op::Linear: {
      const Value &x = in(n.a), &w = in(n.b);
      const bool tr = n.i0 == 1;
      const Index rows = x.rows, fin = x.cols, fout = out.cols;
      if (needs(n.a)) {  // dx = dy W  (or dy W^T when stored input-major)
        auto [dx, acc] = grad_target(n.a);
        cpu::gemm<T>(false, tr, rows, fin, fout, T(1), gy, fout, w.data, tr ? fout : fin, acc ? T(1) : T(0), dx, fin);
      }
      if (needs(n.b)) {  // dW = dy^T x  (or x^T dy)
        auto [dw, acc] = grad_target(n.b);
        if (tr)
          cpu::gemm<T>(true, false, fin, fout, rows, T(1), x.data, fin, gy, fout, acc ? T(1) : T(0), dw, fout);
        else
          cpu::gemm<T>(true, false, fout, fin, rows, T(1), gy, fout, x.data, fin, acc ? T(1) : T(0), dw, fin);
      }
      if (needs(n.c)) {
        auto [db, acc] = grad_target(n.c);
        cpu::col_sum<T>(db, MatrixRef<const T>(gy, rows, fout), acc);
      }
      break;
    }
    case Op::SparseLinear: {  // the input is constant: only dW and db
      const auto& csc = *static_cast<const cpu::Csc<T>*>(n.aux);
      if (needs(n.b)) {
        auto [dw, acc] = grad_target(n.b);
        cpu::csc_weight_grad(dw, csc, gy, out.cols, n.i0 == 1, acc);
      }
      if (needs(n.c)) {
        auto [db, acc] = grad_target(n.c);
        cpu::col_sum<T>(db, MatrixRef<const T>(gy, out.rows, out.cols), acc);
      }
      break;
    }
    case Op::Celu: {
      if (!needs(n.a)) break;
      auto [dx, acc] = grad_target(n.a);
      cpu::celu_bwd(dx, gy, in(n.a).data, out.rows * out.cols, acc);
      break;
    }
    case Op::Relu: {
      if (!needs(n.a)) break;
      auto [dx, acc] = grad_target(n.a);
      cpu::relu_bwd(dx, gy, out.data, out.rows * out.cols, acc);
      break;
    }
    case Op::Sigmoid: {
      if (!needs(n.a)) break;
      auto [dx, acc] = grad_target(n.a);
      cpu::sigmoid_bwd(dx, gy, out.data, out.rows * out.cols, acc);
      break;
    }
    case Op::Softmax:
    case Op::LogSoftmax: {
      if (!needs(n.a)) break;
      auto [dx, acc] = grad_target(n.a);
      cpu::softmax_rows_bwd(dx, gy, out.data, out.rows, out.cols, n.op == Op::LogSoftmax, acc);
      break;
    }
    case Op::Dropout: {
      if (!needs(n.a)) break;
      auto [dx, acc] = grad_target(n.a);
      cpu::mul(dx, gy, in(n.b).data, out.rows * out.cols, acc);
      break;
    }
    case Op::Concat: {
      Index off = 0;
      for (int k = 0; k < n.extra_cnt; ++k) {
        const int id = extra_[n.extra_off + k];
        const Index w = values_[id].cols;
        if (needs(id)) {
          auto [dx, acc] = grad_target(id);
          cpu::add_block<T>(MatrixRef<T>(dx, out.rows, w), MatrixRef<const T>(gy + off, out.rows, w, out.cols), acc);
        }
        off += w;
      }
      break;
    }
    case Op::SliceCols: {
      if (!needs(n.a)) break;
      const Value& x = in(n.a);
      auto [dx, acc] = grad_target(n.a);
      if (!acc) cpu::fill(dx, x.rows * x.cols, T(0));
      cpu::add_block<T>(MatrixRef<T>(dx + n.i0, x.rows, out.cols, x.cols), MatrixRef<const T>(gy, out.rows, out.cols),
                        true);
      break;
    }
    case Op::ReverseGrad: {
      if (!needs(n.a)) break;
      auto [dx, acc] = grad_target(n.a);
      cpu::axpy(dx, gy, out.rows * out.cols, T(-1), acc);
      break;
    }
    case Op::SortCols: {
      if (!needs(n.a)) break;
      auto [dx, acc] = grad_target(n.a);
      cpu::unsort_columns(dx, gy, static_cast<const std::int32_t*>(n.aux), out.rows, out.cols, acc);
      break;
    }
    case Op::Mse:
    case Op::L1: {
      const Value &a = in(n.a), &b = in(n.b);
      const Index cnt = a.rows * a.cols;
      const T k = (n.op == Op::Mse ? T(2) : T(1)) * gy[0] / T(cnt);
      auto kernel = n.op == Op::Mse ? &cpu::sq_diff_bwd<T> : &cpu::abs_diff_bwd<T>;
      if (needs(n.a)) {
        auto [da, acc] = grad_target(n.a);
        kernel(da, k, a.data, b.data, cnt, acc);
      }
      if (needs(n.b)) {
        auto [db, acc] = grad_target(n.b);
        kernel(db, k, b.data, a.data, cnt, acc);
      }
      break;
    }
    case Op::Cosine: {
      const Value &a = in(n.a), &b = in(n.b);
      if (needs(n.a)) {
        auto [da, acc] = grad_target(n.a);
        cpu::cosine_rows_bwd(da, gy[0], a.data, b.data, n.saved0, n.saved1, n.saved2, a.rows, a.cols, acc);
      }
      if (needs(n.b)) {
        auto [db, acc] = grad_target(n.b);
        cpu::cosine_rows_bwd(db, gy[0], b.data, a.data, n.saved1, n.saved0, n.saved2, a.rows, a.cols, acc);
      }
      break;
    }
    case Op::RowNormMean: {
      if (!needs(n.a)) break;
      const Value& x = in(n.a);
      auto [dx, acc] = grad_target(n.a);
      cpu::row_norms_bwd(dx, gy[0] / T(x.rows), x.data, n.saved0, x.rows, x.cols, n.i0, acc);
      break;
    }
    case Op::Nll: {
      if (!needs(n.a)) break;
      const Value& x = in(n.a);
      auto [dx, acc] = grad_target(n.a);
      cpu::nll_bwd(dx, gy[0] / T(x.rows), static_cast<const std::int64_t*>(n.aux), x.rows, x.cols, acc);
      break;
    }
    case Op::Bce: {
      if (!needs(n.a)) break;
      const Value &p = in(n.a), &y = in(n.b);
      auto [dp, acc] = grad_target(n.a);
      cpu::bce_bwd(dp, gy[0] / T(p.rows * p.cols), p.data, y.data, p.rows * p.cols, acc);
      break;
    }
    case Op::KlGauss: {
      if (!needs(n.a)) break;
      const Value& x = in(n.a);
      auto [dx, acc] = grad_target(n.a);
      cpu::kl_gauss_bwd(dx, gy[0], x.data, n.saved0, n.saved1, n.saved2, n.saved3, x.rows, x.cols, acc);
      break;
    }
    case Op::Scale: {
      if (!needs(n.a)) break;
      auto [ds, acc] = grad_target(n.a);
      ds[0] = acc ? ds[0] + gy[0] * n.s0 : gy[0] * n.s0;
      break;
    }
    case Op::Add: {
      for (int id : {n.a, n.b}) {
        if (!needs(id)) continue;
        auto [d, acc] = grad_target(id);
        d[0] = acc ? d[0] + gy[0] : gy[0];
      }
      break;
    }
  }
}

}  // namespace sakura
