// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Helpers shared by tests that read golden JSON: parameters, batches and recorded draws.
#pragma once

#include <sakura/sakura.hpp>
#include <string>
#include <vector>

namespace sakura::test {

using sakura::config::Json;

inline void flatten_into(const Json& j, std::vector<double>& out) {
  if (j.is_array())
    for (const auto& e : j) flatten_into(e, out);
  else
    out.push_back(j.get<double>());
}
inline std::vector<double> flatten(const Json& j) {
  std::vector<double> v;
  flatten_into(j, v);
  return v;
}

/// {name: {shape, data}} in PyTorch layout -> the controller's parameters (every name must exist).
template <class T, class Dev>
void load_parameters(Controller<T, Dev>& ctl, const Json& params) {
  std::size_t seen = 0;
  for (auto it = params.begin(); it != params.end(); ++it) {
    auto* p = ctl.model().parameters().find(it.key());
    sakura::detail::require(p != nullptr, "golden parameter ", it.key(), " does not exist in the model");
    const auto flat = flatten(it.value()["data"]);
    sakura::detail::require(static_cast<Index>(flat.size()) == p->value.size(), "golden parameter ", it.key(),
                            " has ", flat.size(), " values, the model ", p->value.size());
    for (Index r = 0; r < p->torch_rows(); ++r)
      for (Index c = 0; c < p->torch_cols(); ++c)
        p->torch_at(r, c) = static_cast<T>(flat[static_cast<std::size_t>(r * p->torch_cols() + c)]);
    ++seen;
  }
  sakura::detail::require(seen == ctl.model().parameters().all().size(), "golden file lists ", seen,
                          " parameters, the model has ", ctl.model().parameters().all().size());
}

/// {shape, data} (data flat or nested) or a nested list -> a 2-D tensor.
template <class T>
Tensor<T> tensor_from(const Json& j) {
  const Json& d = j.is_object() ? j["data"] : j;
  const auto flat = flatten(d);
  Index rows = static_cast<Index>(d.size()), cols = 1;
  if (j.is_object() && j.contains("shape")) {
    rows = j["shape"][0].get<Index>();
    cols = j["shape"].size() > 1 ? j["shape"][1].get<Index>() : 1;
  } else if (rows) {
    cols = static_cast<Index>(flat.size()) / rows;
  }
  sakura::detail::require(rows * cols == static_cast<Index>(flat.size()), "golden tensor shape mismatch");
  Tensor<T> t(rows, cols);
  for (Index i = 0; i < t.size(); ++i) t[i] = static_cast<T>(flat[static_cast<std::size_t>(i)]);
  return t;
}

/// batch {expr: {all, <signature>...}, pheno: {<name>: {shape, dtype, data}}}
template <class T = float>
Batch<T> make_batch(const Json& b) {
  Batch<T> batch(tensor_from<T>(b["expr"]["all"]));
  for (auto it = b["expr"].begin(); it != b["expr"].end(); ++it)
    if (it.key() != "all") batch.set_signature(it.key(), tensor_from<T>(it.value()));
  if (b.contains("pheno"))
    for (auto it = b["pheno"].begin(); it != b["pheno"].end(); ++it) {
      const Json& d = it.value().is_object() ? it.value()["data"] : it.value();
      const auto flat = flatten(d);
      std::vector<std::int64_t> labels(flat.begin(), flat.end());
      batch.set_labels(it.key(), labels);
    }
  return batch;
}

/// Rows [first, first + count) of a batch (expression dense and/or sparse, targets, labels, values):
/// one rank's part of a global batch in a distributed step.
template <class T>
Batch<T> rows_of(const Batch<T>& b, Index first, Index count) {
  auto rows = [&](const Tensor<T>& t) {
    if (t.empty()) return Tensor<T>();
    Tensor<T> out(count, t.cols());
    for (Index r = 0; r < count; ++r)
      for (Index c = 0; c < t.cols(); ++c) out(r, c) = t(first + r, c);
    return out;
  };
  Batch<T> out(rows(b.expr));
  if (b.expr.empty()) out.expr = Tensor<T>(count, b.genes());
  if (const auto* sp = b.sparse_input()) {
    Tensor<T> dense(sp->rows, sp->cols);
    Ops<T, Cpu>::csr_densify(dense.data(), sp->ref());
    out.set_sparse(CsrMatrix<T>::from_dense(rows(dense).ref()));
    if (b.expr.empty()) out.expr = Tensor<T>();
  }
  for (const auto& s : b.signatures()) out.set_signature(s.name, rows(s.values));
  for (const auto& p : b.phenos()) {
    if (!p.labels.empty())
      out.set_labels(p.name, std::vector<std::int64_t>(p.labels.begin() + first, p.labels.begin() + first + count));
    if (!p.values.empty()) out.set_pheno_values(p.name, rows(p.values));
  }
  return out;
}
/// This rank's rows of a global batch, as the distributed step's contract splits them.
template <class T>
Batch<T> rank_rows(const Batch<T>& b, const dist::Comm& comm) {
  const auto [first, count] = dist::balanced_range(b.cells(), comm.size(), comm.rank());
  return rows_of(b, first, count);
}

/// Queues a call's recorded draws for replay.
template <class T, class Dev>
void inject(Controller<T, Dev>& ctl, const Json& draws) {
  ctl.injected_draws().clear();
  for (const Json& d : draws) {
    RecordedDraw r;
    r.site = d["site"];
    const std::string kind = d["kind"];
    r.kind = kind == "projections" ? DrawKind::projections : DrawKind::prior_samples;
    r.rows = d["shape"][0];
    r.cols = d["shape"][1];
    r.data = flatten(d["data"]);
    ctl.injected_draws().push(std::move(r));
  }
}

}  // namespace sakura::test
