// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Tensor<T>: an owning 2-D row-major matrix (cells x features); MatrixRef<T>: a non-owning view.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <new>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "sakura/error.hpp"

namespace sakura {

using Index = std::int64_t;

/// Non-owning view of a row-major matrix (rows x cols, leading dimension ld).
template <class T>
struct MatrixRef {
  T* data = nullptr;
  Index rows = 0;
  Index cols = 0;
  Index ld = 0;  // elements between the starts of consecutive rows

  MatrixRef() = default;
  MatrixRef(T* d, Index r, Index c) : data(d), rows(r), cols(c), ld(c) {}
  MatrixRef(T* d, Index r, Index c, Index l) : data(d), rows(r), cols(c), ld(l) {}
  template <class U>
    requires std::is_same_v<const U, T>
  MatrixRef(const MatrixRef<U>& o) : data(o.data), rows(o.rows), cols(o.cols), ld(o.ld) {}

  T& operator()(Index r, Index c) const { return data[r * ld + c]; }
  Index size() const { return rows * cols; }
  bool contiguous() const { return ld == cols; }
  bool empty() const { return rows == 0 || cols == 0; }
};

/// A shape for error messages: prints as [rows, cols] and, unlike a string, costs nothing to
/// pass to detail::require() on the hot path (messages are built only when a check fails).
struct Shape {
  Index rows = 0, cols = 0;
  friend std::ostream& operator<<(std::ostream& os, const Shape& s) {
    return os << '[' << s.rows << ", " << s.cols << ']';
  }
};

/// Non-owning view of a compressed-sparse-row matrix (rows sorted by column, no duplicates).
template <class T>
struct CsrRef {
  Index rows = 0, cols = 0;
  const std::int64_t* indptr = nullptr;
  const std::int32_t* indices = nullptr;
  const T* values = nullptr;
  Index nnz() const { return rows ? indptr[rows] : 0; }
};

namespace detail {
/// 64-byte aligned buffer: vector-width aligned loads in every kernel.
template <class T>
struct AlignedBuffer {
  T* ptr = nullptr;
  std::size_t n = 0;
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t count) { reset(count); }
  AlignedBuffer(const AlignedBuffer& o) : AlignedBuffer(o.n) {
    if (n) std::memcpy(ptr, o.ptr, n * sizeof(T));
  }
  AlignedBuffer(AlignedBuffer&& o) noexcept : ptr(std::exchange(o.ptr, nullptr)), n(std::exchange(o.n, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer o) noexcept {
    std::swap(ptr, o.ptr);
    std::swap(n, o.n);
    return *this;
  }
  ~AlignedBuffer() { std::free(ptr); }
  void reset(std::size_t count) {
    std::free(ptr);
    ptr = nullptr;
    n = count;
    if (count == 0) return;
    std::size_t bytes = ((count * sizeof(T) + 63) / 64) * 64;
    ptr = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (!ptr) throw std::bad_alloc();
  }
};
}  // namespace detail

/// Owning 2-D row-major matrix, float32 by default. Rows are cells, columns genes/features.
template <class T = float>
class Tensor {
 public:
  using value_type = T;
  Tensor() = default;
  Tensor(Index rows, Index cols) : rows_(rows), cols_(cols), buf_(static_cast<std::size_t>(rows * cols)) {
    detail::require(rows >= 0 && cols >= 0, "negative tensor shape [", rows, ", ", cols, "]");
    fill(T(0));
  }
  Tensor(Index rows, Index cols, std::initializer_list<T> values) : Tensor(rows, cols) {
    detail::require(static_cast<Index>(values.size()) == rows * cols, "initializer of ", values.size(),
                    " values for a [", rows, ", ", cols, "] tensor");
    std::copy(values.begin(), values.end(), data());
  }
  static Tensor from(const std::vector<T>& v, Index rows, Index cols) {
    detail::require(static_cast<Index>(v.size()) == rows * cols, "buffer of ", v.size(), " values for a [", rows,
                    ", ", cols, "] tensor");
    Tensor t(rows, cols);
    std::copy(v.begin(), v.end(), t.data());
    return t;
  }

  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  Index size() const { return rows_ * cols_; }
  bool empty() const { return size() == 0; }
  T* data() { return buf_.ptr; }
  const T* data() const { return buf_.ptr; }
  T& operator()(Index r, Index c) { return buf_.ptr[r * cols_ + c]; }
  const T& operator()(Index r, Index c) const { return buf_.ptr[r * cols_ + c]; }
  T& operator[](Index i) { return buf_.ptr[i]; }
  const T& operator[](Index i) const { return buf_.ptr[i]; }
  T* begin() { return data(); }
  T* end() { return data() + size(); }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size(); }

  MatrixRef<T> ref() { return {data(), rows_, cols_}; }
  MatrixRef<const T> ref() const { return {data(), rows_, cols_}; }
  operator MatrixRef<T>() { return ref(); }
  operator MatrixRef<const T>() const { return ref(); }

  void fill(T v) { std::fill(begin(), end(), v); }
  /// Reallocates only when the element count grows; contents are unspecified afterwards.
  void resize(Index rows, Index cols) {
    if (static_cast<std::size_t>(rows * cols) > buf_.n) buf_.reset(static_cast<std::size_t>(rows * cols));
    rows_ = rows;
    cols_ = cols;
  }
  std::string shape_str() const;
  Shape shape() const { return {rows_, cols_}; }

 private:
  Index rows_ = 0, cols_ = 0;
  detail::AlignedBuffer<T> buf_;
};

/// "[r, c]". Built by appending: GCC 12 warns (-Wrestrict, a false positive) on "[" + string&&.
inline std::string shape_str(Index r, Index c) {
  std::string s = "[";
  s += std::to_string(r);
  s += ", ";
  s += std::to_string(c);
  s += ']';
  return s;
}
template <class T>
std::string Tensor<T>::shape_str() const {
  return sakura::shape_str(rows_, cols_);
}

}  // namespace sakura
