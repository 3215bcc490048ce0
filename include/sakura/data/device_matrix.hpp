// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// data::DeviceMatrix<T>: a cells x genes expression matrix uploaded to GPU memory once, so that
/// training batches are gathered there (Batch::set_device_rows) instead of crossing PCIe every
/// step. Checked for NaN/Inf when uploaded: the per-step validation then only checks indices.
///
/// Example:
///   data::DeviceMatrix<float> on_gpu(dataset.expr);        // CsrMatrix or dense, once
///   on_gpu.select(batch, cell_indices);                    // each step: no host expression
///   controller.train(batch);                               // Controller<float, Cuda>
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "sakura/backend/cuda/ops.hpp"
#include "sakura/controller/batch.hpp"
#include "sakura/tensor/csr.hpp"

namespace sakura::data {

template <class T = float>
class DeviceMatrix {
  using Device = Ops<T, Cuda>;  // every copy and allocation goes through the device interface

 public:
  DeviceMatrix() = default;
  /// Copies a dense row-major host matrix.
  explicit DeviceMatrix(MatrixRef<const T> host) {
    detail::require(host.contiguous(), "DeviceMatrix: the host matrix must be contiguous");
    check_finite(host.data, host.rows, host.cols, 0);
    allocate(host.rows, host.cols);
    Device::upload(data_, host.data, bytes(rows_ * cols_));
    Device::synchronize();
  }
  explicit DeviceMatrix(const Tensor<T>& host) : DeviceMatrix(host.ref()) {}
  /// Densifies a CSR matrix block by block on the host (never whole) and uploads it.
  explicit DeviceMatrix(const CsrMatrix<T>& host) {
    host.validate("DeviceMatrix: CSR input");
    allocate(host.rows, host.cols);
    constexpr Index kBlock = 256;
    std::vector<T> buf(static_cast<std::size_t>(std::min(kBlock, std::max<Index>(rows_, 1)) * cols_));
    std::vector<Index> sel;
    for (Index r0 = 0; r0 < rows_; r0 += kBlock) {
      const Index n = std::min(kBlock, rows_ - r0);
      sel.resize(static_cast<std::size_t>(n));
      for (Index i = 0; i < n; ++i) sel[static_cast<std::size_t>(i)] = r0 + i;
      host.gather_dense(sel, buf.data());
      check_finite(buf.data(), n, cols_, r0);
      Device::upload(data_ + r0 * cols_, buf.data(), bytes(n * cols_));
      Device::synchronize();  // buf is reused
    }
  }
  DeviceMatrix(DeviceMatrix&& o) noexcept { swap(o); }
  DeviceMatrix& operator=(DeviceMatrix&& o) noexcept {
    DeviceMatrix tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  DeviceMatrix(const DeviceMatrix&) = delete;
  DeviceMatrix& operator=(const DeviceMatrix&) = delete;
  ~DeviceMatrix() { Device::Alloc::deallocate(data_); }

  const T* data() const { return data_; }
  Index rows() const { return rows_; }
  Index cols() const { return cols_; }

  /// Points `batch`'s input at rows `index` of this matrix (the matrix must outlive the step).
  void select(Batch<T>& batch, std::span<const std::int32_t> index) const {
    batch.set_device_rows(data_, rows_, cols_, index);
  }
  /// Copies rows back to the host (tests, debugging).
  Tensor<T> download(Index first, Index n) const {
    detail::require(first >= 0 && n >= 0 && first + n <= rows_, "DeviceMatrix::download: rows [", first, ", ",
                    first + n, ") outside ", rows_);
    Tensor<T> out(n, cols_);
    if (n > 0) Device::download(out.data(), data_ + first * cols_, bytes(n * cols_));
    return out;
  }

 private:
  static std::size_t bytes(Index n) { return static_cast<std::size_t>(n) * sizeof(T); }
  static void check_finite(const T* p, Index rows, Index cols, Index row0) {
    for (Index i = 0; i < rows * cols; ++i)
      if (!std::isfinite(p[i]))
        detail::fail("DeviceMatrix: expression contains ", std::isnan(p[i]) ? "NaN" : "Inf", " at [", row0 + i / cols,
                     ", ", i % cols, "]");
  }
  void allocate(Index rows, Index cols) {
    detail::require(rows >= 0 && cols >= 0 && rows <= INT32_MAX, "DeviceMatrix: bad shape ", shape_str(rows, cols));
    rows_ = rows;
    cols_ = cols;
    if (rows * cols > 0) data_ = static_cast<T*>(Device::Alloc::allocate(bytes(rows * cols)));
  }
  void swap(DeviceMatrix& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(rows_, o.rows_);
    std::swap(cols_, o.cols_);
  }
  T* data_ = nullptr;
  Index rows_ = 0, cols_ = 0;
};

}  // namespace sakura::data
