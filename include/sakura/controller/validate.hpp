// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// validate_batch(): a batch checked against the model and the call's selection before anything
/// changes (shapes, targets, labels in range, no NaN/Inf), with messages that name the block. It runs
/// every step, so it allocates nothing unless it fails.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <variant>
#include <vector>

#include "sakura/backend/cpu/ops.hpp"
#include "sakura/controller/batch.hpp"
#include "sakura/controller/experiment_spec.hpp"
#include "sakura/controller/selection.hpp"
#include "sakura/error.hpp"

namespace sakura {

/// Where each block's target sits in a batch, looked up by name only when the batch layout changes.
struct BatchSlots {
  std::vector<int> signature, pheno;
  std::uint64_t layout = ~std::uint64_t(0);
};

namespace detail {
template <class T, class... What>
void require_finite(const Tensor<T>& t, const What&... what) {
  if (Ops<T, Cpu>::all_finite(t.data(), t.size())) return;  // a batch is in host memory
  for (Index i = 0; i < t.size(); ++i)
    if (!std::isfinite(t[i]))
      fail(what..., " contains ", std::isnan(t[i]) ? "NaN" : "Inf", " at [", i / t.cols(), ", ", i % t.cols(), "]");
}
}  // namespace detail

/// Throws sakura::Error on the first problem; HostMemory: the controller trains on the CPU.
template <bool HostMemory, class T>
void validate_batch(const Batch<T>& batch, const ModelSpec& m, const Selection& ps, const Selection& ss,
                    BatchSlots& slots) {
  const Index n = batch.cells();
  const CsrMatrix<T>* sp = batch.sparse_input();
  // messages are built only on failure: validation runs every step and must not allocate
  const auto* dv = batch.device_input();
  auto shape = [&] { return dv ? shape_str(n, dv->genes) : sp ? sp->shape_str() : batch.expr.shape_str(); };
  if (n <= 0) detail::fail("batch has no cells (expression ", shape(), ")");
  if (batch.genes() != m.input_dim)
    detail::fail("batch expression is ", shape(), " but the model expects ", m.input_dim, " genes per cell");
  if (dv) {
    if constexpr (HostMemory)
      detail::fail("batch input is in GPU memory (set_device_rows) but this controller runs on the CPU: use a "
                   "Controller<T, Cuda> or a host batch");
    if (sp || !batch.expr.empty())
      detail::fail("batch has device rows and a host expression ", sp ? sp->shape_str() : batch.expr.shape_str(),
                   ": set one input (clear_device_rows() or clear the host one)");
    if (!dv->data) detail::fail("batch device rows point to no matrix (null data)");
    for (Index i = 0; i < n; ++i)
      if (dv->index[i] < 0 || dv->index[i] >= dv->data_rows)
        detail::fail("batch device row index ", dv->index[i], " of cell ", i, " is outside the device matrix's ",
                     dv->data_rows, " rows");
  }
  if (sp) {
    sp->validate("batch sparse expression");
    if (!batch.expr.empty() && (batch.expr.rows() != n || batch.expr.cols() != sp->cols))
      detail::fail("batch dense expression ", batch.expr.shape_str(), " differs from its sparse input ", shape());
    for (Index k = 0; k < sp->nnz(); ++k)
      if (!std::isfinite(sp->values[static_cast<std::size_t>(k)])) {
        const Index row = static_cast<Index>(
            std::upper_bound(sp->indptr.begin(), sp->indptr.end(), static_cast<std::int64_t>(k)) -
            sp->indptr.begin() - 1);
        detail::fail("batch sparse expression contains ", std::isnan(sp->values[k]) ? "NaN" : "Inf", " at [", row,
                     ", ", sp->indices[k], "]");
      }
  }
  if (!dv && (!batch.expr.empty() || !sp)) detail::require_finite(batch.expr, "batch expression", "");
  if (batch.layout_id() != slots.layout || batch.layout_id() == 0) {
    slots.signature.assign(m.signatures.size(), -1);
    slots.pheno.assign(m.phenos.size(), -1);
    for (std::size_t i = 0; i < m.signatures.size(); ++i)
      slots.signature[i] = batch.signature_slot(m.signatures[i].name);
    for (std::size_t i = 0; i < m.phenos.size(); ++i) slots.pheno[i] = batch.pheno_slot_index(m.phenos[i].name);
    slots.layout = batch.layout_id();
  }
  for (const auto& e : ss.entries) {
      const BlockSpec& b = m.signatures[e.block];
      if (e.losses.empty()) continue;
      detail::require(slots.signature[e.block] >= 0, "batch has no target for signature '", b.name, "' (expected ",
                      Shape{n, b.out_dim}, ")");
      const Tensor<T>& y = batch.signatures()[slots.signature[e.block]].values;
      detail::require(y.rows() == n && y.cols() == b.out_dim, "signature '", b.name, "' target is ", y.shape(),
                      ", expected ", Shape{n, b.out_dim});
      detail::require_finite(y, "signature '", b.name, "' target");
    }
  for (const auto& e : ps.entries) {
      const BlockSpec& b = m.phenos[e.block];
      const auto* ph = slots.pheno[e.block] >= 0 ? &batch.phenos()[slots.pheno[e.block]] : nullptr;
      bool labels = false, values = false;
      for (int i : e.losses)
        std::visit([&](auto& t) {
          using Fn = typename std::decay_t<decltype(t)>::type;
          labels = labels || Fn::needs_labels;
          values = values || Fn::needs_target;
        }, b.losses[i].configured);
      for (int i : e.regs)
        std::visit([&](auto& t) {
          labels = labels || label_use_of<typename std::decay_t<decltype(t)>::type>() == LabelUse::Required;
        }, b.regularizations[i].configured);
      if (labels) {
        detail::require(ph && !ph->labels.empty(), "batch has no labels for phenotype '", b.name, "' (expected ", n,
                        " class indices)");
        detail::require(static_cast<Index>(ph->labels.size()) == n, "phenotype '", b.name, "' has ",
                        ph->labels.size(), " labels for ", n, " cells");
      }
      bool classes = false;
      for (int i : e.losses)
        std::visit([&](auto& t) { classes = classes || std::decay_t<decltype(t)>::type::needs_labels; }, b.losses[i].configured);
      if (classes) detail::require_labels(ph->labels.data(), n, b.out_dim, "phenotype '", b.name, "'");
      if (values) {
        const bool has_values = ph && !ph->values.empty();
        const bool from_labels = ph && !has_values && b.out_dim == 1 && static_cast<Index>(ph->labels.size()) == n;
        detail::require(has_values || from_labels, "batch has no values for phenotype '", b.name, "' (expected ",
                        Shape{n, b.out_dim}, ")");
        if (has_values) {
          detail::require(ph->values.rows() == n && ph->values.cols() == b.out_dim, "phenotype '", b.name,
                          "' values are ", ph->values.shape(), ", expected ", Shape{n, b.out_dim});
          detail::require_finite(ph->values, "phenotype '", b.name, "' values");
        }
      }
    }
}

}  // namespace sakura
