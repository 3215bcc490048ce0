// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Batch<T>: one mini-batch as train() reads it (SPEC §2): the expression input (cells x genes),
/// each signature's target (cells x out) and each phenotype's labels or values.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "sakura/detail/names.hpp"
#include "sakura/tensor/csr.hpp"
#include "sakura/tensor/tensor.hpp"

namespace sakura {

/// Example:
///   Batch<float> b(expr);                         // 100 cells x 10000 genes
///   b.set_signature("cd8", cd8_expr);             // 100 x 2, the marker genes' expression
///   b.set_labels("celltype", labels);             // 100 class indices
template <class T = float>
class Batch {
 public:
  struct Target {
    std::string name;
    Tensor<T> values;  ///< cells x signature_out_dim
  };
  struct Pheno {
    std::string name;
    std::vector<std::int64_t> labels;  ///< class indices (NLL, supervised priors)
    Tensor<T> values;                  ///< cells x k numbers (MSE / L1 / Cosine / BCE)
  };

  Tensor<T> expr;  ///< cells x genes (dense); may be left empty when a sparse input is set

  Batch() = default;
  explicit Batch(Tensor<T> x) : expr(std::move(x)) {}

  /// Sparse input (cells x genes, CSR): the first layer then uses sparse products. The dense
  /// `expr`, if also set, must hold the same values (it then serves as the reconstruction target).
  Batch& set_sparse(CsrMatrix<T> x) {
    sparse_ = std::move(x);
    has_sparse_ = true;
    return *this;
  }
  CsrMatrix<T>& sparse() {
    has_sparse_ = true;
    return sparse_;
  }
  const CsrMatrix<T>* sparse_input() const { return has_sparse_ ? &sparse_ : nullptr; }
  void clear_sparse() { has_sparse_ = false; }

  /// Input rows of a matrix already in GPU memory (data::DeviceMatrix): cell i of the batch is
  /// row index[i] of `data` (data_rows x genes, row-major); the GPU gathers them, so a step
  /// moves no expression through the host. Only a Controller<T, Cuda> reads it; the matrix was
  /// checked for NaN/Inf when uploaded. Refilling reuses the index storage (no allocation).
  struct DeviceRows {
    const T* data = nullptr;
    Index data_rows = 0, genes = 0;
    std::vector<std::int32_t> index;
  };
  Batch& set_device_rows(const T* data, Index data_rows, Index genes, std::span<const std::int32_t> index) {
    device_.data = data;
    device_.data_rows = data_rows;
    device_.genes = genes;
    device_.index.assign(index.begin(), index.end());
    has_device_ = true;
    return *this;
  }
  const DeviceRows* device_input() const { return has_device_ ? &device_ : nullptr; }
  void clear_device_rows() { has_device_ = false; }

  Index cells() const {
    return has_device_ ? static_cast<Index>(device_.index.size()) : has_sparse_ ? sparse_.rows : expr.rows();
  }
  Index genes() const { return has_device_ ? device_.genes : has_sparse_ ? sparse_.cols : expr.cols(); }

  /// Adds or replaces a signature target (the expression of its marker genes).
  Batch& set_signature(const std::string& name, Tensor<T> values) {
    signature_values(name) = std::move(values);
    return *this;
  }
  /// Adds or replaces a phenotype's class labels.
  Batch& set_labels(const std::string& name, std::vector<std::int64_t> labels) {
    pheno_slot(name).labels = std::move(labels);
    return *this;
  }
  /// Adds or replaces a phenotype's numeric values.
  Batch& set_pheno_values(const std::string& name, Tensor<T> values) {
    pheno_slot(name).values = std::move(values);
    return *this;
  }
  /// Mutable slots (created on first use) for refilling a batch in place without allocating.
  Tensor<T>& signature_values(const std::string& name) {
    for (auto& t : sigs_)
      if (t.name == name) return t.values;
    sigs_.push_back(Target{name, {}});
    bump();
    return sigs_.back().values;
  }
  std::vector<std::int64_t>& labels(const std::string& name) { return pheno_slot(name).labels; }
  Tensor<T>& pheno_values(const std::string& name) { return pheno_slot(name).values; }
  /// The same slots by index (signature_slot, pheno_slot_index), for refilling without a name lookup.
  Tensor<T>& signature_values_at(int slot) { return sigs_.at(static_cast<std::size_t>(slot)).values; }
  Pheno& pheno_at(int slot) { return phs_.at(static_cast<std::size_t>(slot)); }

  const std::vector<Target>& signatures() const { return sigs_; }
  const std::vector<Pheno>& phenos() const { return phs_; }
  /// Slot index of a named entry, or -1.
  int signature_slot(const std::string& name) const { return detail::index_of_name(sigs_, name); }
  int pheno_slot_index(const std::string& name) const { return detail::index_of_name(phs_, name); }

  /// Changes whenever a named entry is added, so a controller can cache name -> slot.
  std::uint64_t layout_id() const { return layout_id_; }

 private:
  Pheno& pheno_slot(const std::string& name) {
    for (auto& p : phs_)
      if (p.name == name) return p;
    phs_.push_back(Pheno{name, {}, {}});
    bump();
    return phs_.back();
  }
  void bump() {
    static std::atomic<std::uint64_t> counter{1};
    layout_id_ = counter.fetch_add(1);
  }
  CsrMatrix<T> sparse_;
  bool has_sparse_ = false;
  DeviceRows device_;
  bool has_device_ = false;
  std::vector<Target> sigs_;
  std::vector<Pheno> phs_;
  std::uint64_t layout_id_ = 0;
};

}  // namespace sakura
