// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// AnnData (.h5ad) reader through the HDF5 C API: X (dense, CSR or CSC) as sparse cells x genes,
/// var/obs names, and the obs columns as phenotype columns.
#pragma once

#if !defined(SAKURA_WITH_HDF5)
#error "sakura/io/h5ad.hpp needs HDF5: link the CMake target sakura::hdf5 (it defines SAKURA_WITH_HDF5=1)"
#endif

#include <hdf5.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "sakura/data/dataset.hpp"
#include "sakura/error.hpp"

namespace sakura::io {
namespace h5 {

/// Owns one HDF5 identifier and closes it with the matching H5?close.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, -1)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept {
    std::swap(id_, o.id_);
    std::swap(close_, o.close_);
    return *this;
  }
  ~Handle() {
    if (id_ >= 0 && close_) close_(id_);
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

/// HDF5 prints its own error stack to stderr by default; we report through sakura::Error instead,
/// so printing is off while a reader runs and restored afterwards.
class QuietErrors {
 public:
  QuietErrors() {
    H5Eget_auto2(H5E_DEFAULT, &fn_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietErrors() { H5Eset_auto2(H5E_DEFAULT, fn_, data_); }
  QuietErrors(const QuietErrors&) = delete;
  QuietErrors& operator=(const QuietErrors&) = delete;

 private:
  H5E_auto2_t fn_ = nullptr;
  void* data_ = nullptr;
};

/// An open group or dataset with the file and HDF5 path that error messages name.
struct Node {
  Handle h;
  std::string file, path;
  hid_t id() const { return h.get(); }
  std::string where() const { return file + ": HDF5 path '" + path + "'"; }
  bool is_group() const { return H5Iget_type(id()) == H5I_GROUP; }
};

inline bool has(const Node& n, const std::string& name) { return H5Lexists(n.id(), name.c_str(), H5P_DEFAULT) > 0; }
inline bool has_attr(const Node& n, const std::string& name) { return H5Aexists(n.id(), name.c_str()) > 0; }

inline Node open(const Node& parent, const std::string& name) {
  const std::string path = (parent.path == "/" ? "/" : parent.path + "/") + name;
  Node n{Handle(has(parent, name) ? H5Oopen(parent.id(), name.c_str(), H5P_DEFAULT) : -1, H5Oclose), parent.file,
         path};
  sakura::detail::require(n.h.ok(), n.where(), ": not found (or not readable)");
  return n;
}

template <class U>
hid_t native() {
  if constexpr (std::is_same_v<U, float>) return H5T_NATIVE_FLOAT;
  else if constexpr (std::is_same_v<U, double>) return H5T_NATIVE_DOUBLE;
  else if constexpr (std::is_same_v<U, std::int32_t>) return H5T_NATIVE_INT32;
  else if constexpr (std::is_same_v<U, std::int64_t>) return H5T_NATIVE_INT64;
  else static_assert(sizeof(U) == 0, "no HDF5 native type for this element type");
}

/// A dataset's extent, e.g. {n_obs, n_vars} for a dense X.
inline std::vector<hsize_t> dims(const Node& d) {
  Handle space(H5Dget_space(d.id()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  sakura::detail::require(rank >= 0, d.where(), ": not a dataset with a simple shape");
  std::vector<hsize_t> out(static_cast<std::size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), out.data(), nullptr);
  return out;
}

inline Index length_1d(const Node& d) {
  const auto s = dims(d);
  sakura::detail::require(s.size() == 1, d.where(), ": expected a 1-D dataset, found ", s.size(), " dimensions");
  return static_cast<Index>(s[0]);
}

/// Reads a hyperslab (start, count per dimension) of a dataset, converting to memtype.
inline void read_block(const Node& d, hid_t memtype, const std::vector<hsize_t>& start,
                       const std::vector<hsize_t>& count, void* out) {
  Handle fs(H5Dget_space(d.id()), H5Sclose);
  Handle ms(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
  const bool ok = H5Sselect_hyperslab(fs.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) >= 0 &&
                  H5Dread(d.id(), memtype, ms.get(), fs.get(), H5P_DEFAULT, out) >= 0;
  sakura::detail::require(ok, d.where(), ": read failed (corrupt file or a type that cannot convert)");
}

/// Reads a whole 1-D dataset as U (HDF5 converts from the stored integer or float type).
template <class U>
std::vector<U> read_all(const Node& d) {
  std::vector<U> v(static_cast<std::size_t>(length_1d(d)));
  if (!v.empty()) read_block(d, native<U>(), {0}, {v.size()}, v.data());
  return v;
}

/// Reads n strings stored with file type ftype; `read(memtype, buffer)` is H5Dread or H5Aread.
/// Variable-length strings come back as HDF5-allocated pointers, fixed-length ones as padded bytes.
template <class Read>
std::vector<std::string> read_strings(hid_t ftype, std::size_t n, Read&& read, const std::string& where) {
  std::vector<std::string> out(n);
  if (n == 0) return out;
  if (H5Tis_variable_str(ftype) > 0) {
    Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mt.get(), H5T_VARIABLE);
    H5Tset_cset(mt.get(), H5Tget_cset(ftype));
    std::vector<char*> p(n, nullptr);
    const herr_t rc = read(mt.get(), p.data());
    for (std::size_t i = 0; i < n; ++i) {
      if (!p[i]) continue;  // a null pointer is an empty string
      out[i] = p[i];
      H5free_memory(p[i]);
    }
    sakura::detail::require(rc >= 0, where, ": cannot read variable-length strings");
    return out;
  }
  const std::size_t sz = H5Tget_size(ftype);
  Handle mt(H5Tcopy(ftype), H5Tclose);  // same fixed-length type: no conversion
  std::vector<char> buf(n * sz);
  sakura::detail::require(read(mt.get(), buf.data()) >= 0, where, ": cannot read fixed-length strings");
  const bool space_padded = H5Tget_strpad(ftype) == H5T_STR_SPACEPAD;
  for (std::size_t i = 0; i < n; ++i) {
    std::string_view s(buf.data() + i * sz, sz);
    s = s.substr(0, s.find('\0'));
    if (space_padded) s = s.substr(0, s.find_last_not_of(' ') + 1);
    out[i] = std::string(s);
  }
  return out;
}

/// A string attribute (scalar or array). A non-string attribute of zero elements (what h5py writes
/// for an empty column-order) reads as an empty list.
inline std::vector<std::string> attr_strings(const Node& n, const std::string& name) {
  const std::string where = n.where() + " attribute '" + name + "'";
  Handle a(H5Aopen(n.id(), name.c_str(), H5P_DEFAULT), H5Aclose);
  sakura::detail::require(a.ok(), where, ": not found");
  Handle t(H5Aget_type(a.get()), H5Tclose), s(H5Aget_space(a.get()), H5Sclose);
  const auto count = static_cast<std::size_t>(H5Sget_simple_extent_npoints(s.get()));
  if (H5Tget_class(t.get()) != H5T_STRING) {
    sakura::detail::require(count == 0, where, ": expected strings");
    return {};
  }
  return read_strings(t.get(), count, [&](hid_t mt, void* buf) { return H5Aread(a.get(), mt, buf); }, where);
}

inline std::string attr_string(const Node& n, const std::string& name) {
  if (!has_attr(n, name)) return {};
  auto v = attr_strings(n, name);
  return v.empty() ? std::string() : v[0];
}

inline std::vector<std::int64_t> attr_ints(const Node& n, const std::string& name) {
  const std::string where = n.where() + " attribute '" + name + "'";
  Handle a(H5Aopen(n.id(), name.c_str(), H5P_DEFAULT), H5Aclose);
  sakura::detail::require(a.ok(), where, ": not found");
  Handle s(H5Aget_space(a.get()), H5Sclose);
  std::vector<std::int64_t> v(static_cast<std::size_t>(H5Sget_simple_extent_npoints(s.get())));
  sakura::detail::require(v.empty() || H5Aread(a.get(), H5T_NATIVE_INT64, v.data()) >= 0, where,
                          ": expected integers");
  return v;
}

/// One native integer of `size` bytes, widened (endian-neutral: memcpy into a type of that size).
inline std::int64_t widen(const unsigned char* p, std::size_t size, bool is_signed, const Node& d) {
  auto get = [p]<class S, class U>(bool sgn, S s, U u) -> std::int64_t {
    std::memcpy(&s, p, sizeof s);
    std::memcpy(&u, p, sizeof u);
    return sgn ? static_cast<std::int64_t>(s) : static_cast<std::int64_t>(u);
  };
  switch (size) {
    case 1: return get(is_signed, std::int8_t{}, std::uint8_t{});
    case 2: return get(is_signed, std::int16_t{}, std::uint16_t{});
    case 4: return get(is_signed, std::int32_t{}, std::uint32_t{});
    case 8: return get(is_signed, std::int64_t{}, std::uint64_t{});
    default: sakura::detail::fail(d.where(), ": enum of unsupported size ", size);
  }
}

/// Integers of an integer or enum (h5py's bool) dataset. HDF5 does not convert enums to integers,
/// so enums are read in their native form and their bytes widened by hand.
inline std::vector<std::int64_t> read_ints(const Node& d) {
  Handle ft(H5Dget_type(d.id()), H5Tclose);
  if (H5Tget_class(ft.get()) != H5T_ENUM) return read_all<std::int64_t>(d);
  Handle mt(H5Tget_native_type(ft.get(), H5T_DIR_ASCEND), H5Tclose);
  Handle base(H5Tget_super(mt.get()), H5Tclose);
  const std::size_t sz = H5Tget_size(mt.get());
  const bool is_signed = H5Tget_sign(base.get()) == H5T_SGN_2;
  const auto n = static_cast<std::size_t>(length_1d(d));
  std::vector<unsigned char> raw(n * sz);
  if (n) read_block(d, mt.get(), {0}, {n}, raw.data());
  std::vector<std::int64_t> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = widen(raw.data() + i * sz, sz, is_signed, d);
  return out;
}

/// Shortest text that reads back to the same number ("0.1" for float 0.1f); NaN is missing ("").
template <class F>
std::string number_text(F x) {
  if constexpr (std::is_floating_point_v<F>)
    if (std::isnan(x)) return {};
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

template <class U>
std::vector<std::string> numbers_as_text(const Node& d) {
  std::vector<std::string> out;
  for (U x : read_all<U>(d)) out.push_back(number_text(x));
  return out;
}

/// h5py stores numpy bools as an enum {FALSE, TRUE}; we spell them as pandas prints them.
inline std::vector<std::string> enum_as_text(const Node& d) {
  Handle ft(H5Dget_type(d.id()), H5Tclose);
  Handle mt(H5Tget_native_type(ft.get(), H5T_DIR_ASCEND), H5Tclose);
  const std::size_t sz = H5Tget_size(mt.get());
  const auto n = static_cast<std::size_t>(length_1d(d));
  std::vector<unsigned char> raw(n * sz);
  if (n) read_block(d, mt.get(), {0}, {n}, raw.data());
  std::vector<std::string> out(n);
  char name[256];
  for (std::size_t i = 0; i < n; ++i) {
    if (H5Tenum_nameof(mt.get(), raw.data() + i * sz, name, sizeof name) < 0)
      sakura::detail::fail(d.where(), ": value ", i, " is not a member of its enum type");
    const std::string s = name;
    out[i] = s == "TRUE" ? "True" : s == "FALSE" ? "False" : s;
  }
  return out;
}

/// Any 1-D dataset as text: strings as stored, integers and floats printed, bools as True/False.
inline std::vector<std::string> dataset_as_text(const Node& d) {
  Handle ft(H5Dget_type(d.id()), H5Tclose);
  const auto n = static_cast<std::size_t>(length_1d(d));
  switch (H5Tget_class(ft.get())) {
    case H5T_STRING:
      return read_strings(
          ft.get(), n, [&](hid_t mt, void* b) { return H5Dread(d.id(), mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, b); },
          d.where());
    case H5T_INTEGER:
      return numbers_as_text<std::int64_t>(d);
    case H5T_FLOAT:
      return H5Tget_size(ft.get()) <= 4 ? numbers_as_text<float>(d) : numbers_as_text<double>(d);
    case H5T_ENUM:
      return enum_as_text(d);
    default:
      sakura::detail::fail(d.where(), ": unsupported HDF5 type for a column (not string, number or bool)");
  }
}

/// Category codes to labels; code -1 (pandas' NaN) is missing ("").
inline std::vector<std::string> decode_categorical(const Node& codes_node, const std::vector<std::string>& cats) {
  std::vector<std::string> out;
  for (std::int64_t c : read_ints(codes_node)) {
    if (c < -1 || c >= static_cast<std::int64_t>(cats.size()))
      sakura::detail::fail(codes_node.where(), ": category code ", c, " outside [-1, ", cats.size(), ")");
    out.push_back(c < 0 ? std::string() : cats[c]);
  }
  return out;
}

/// anndata's nullable arrays: values plus a mask whose true entries are missing.
inline std::vector<std::string> decode_nullable(const Node& g) {
  auto vals = dataset_as_text(open(g, "values"));
  const auto mask = read_ints(open(g, "mask"));
  sakura::detail::require(mask.size() == vals.size(), g.where(), ": mask and values differ in length");
  for (std::size_t i = 0; i < vals.size(); ++i)
    if (mask[i]) vals[i].clear();
  return vals;
}

/// One obs column in any layout anndata has written: a plain dataset, a categorical group
/// (0.8: categories + codes), a nullable group, or codes with categories in obs/__categories (0.7).
inline std::vector<std::string> column_values(const Node& obs, const std::string& name) {
  const Node c = open(obs, name);
  if (!c.is_group()) {
    if (has(obs, "__categories") && has(open(obs, "__categories"), name))
      return decode_categorical(c, dataset_as_text(open(open(obs, "__categories"), name)));
    return dataset_as_text(c);
  }
  const std::string enc = attr_string(c, "encoding-type");
  if (enc == "categorical") return decode_categorical(open(c, "codes"), dataset_as_text(open(c, "categories")));
  if (enc.rfind("nullable-", 0) == 0) return decode_nullable(c);
  sakura::detail::fail(c.where(), ": unsupported obs column encoding '", enc,
                       "' (expected a 1-D array, categorical or nullable array)");
}

/// The dataframe's index: the dataset its `_index` attribute names, "_index" by default.
inline std::string index_name(const Node& df) {
  const std::string n = attr_string(df, "_index");
  return n.empty() ? "_index" : n;
}

/// Column names in anndata's order (attribute column-order), else every member but the index.
inline std::vector<std::string> column_names(const Node& df) {
  if (has_attr(df, "column-order")) return attr_strings(df, "column-order");
  H5G_info_t info;
  H5Gget_info(df.id(), &info);
  const std::string index = index_name(df);
  std::vector<std::string> out;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    char buf[1024];
    H5Lget_name_by_idx(df.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, buf, sizeof buf, H5P_DEFAULT);
    const std::string name = buf;
    if (name != index && name != "__categories") out.push_back(name);
  }
  return out;
}

inline Node open_dataframe(const Node& root, const std::string& name) {
  Node df = open(root, name);
  sakura::detail::require(df.is_group(), df.where(),
                          ": is a dataset, not a group (anndata < 0.7 layout); re-save the file with a newer anndata");
  return df;
}

inline std::vector<std::string> index_names(const Node& df) { return dataset_as_text(open(df, index_name(df))); }

}  // namespace h5

namespace detail {

/// Dense X, read a block of rows at a time (about 4M values) so only one block is ever dense.
template <class T>
CsrMatrix<T> dense_x(const h5::Node& x) {
  const auto s = h5::dims(x);
  sakura::detail::require(s.size() == 2, x.where(), ": dense X must be 2-D, found ", s.size(), " dimensions");
  CsrMatrix<T> m;
  m.rows = static_cast<Index>(s[0]);
  m.cols = static_cast<Index>(s[1]);
  const hsize_t block = std::max<hsize_t>(1, (hsize_t{1} << 22) / std::max<hsize_t>(1, s[1]));
  std::vector<T> buf;
  for (hsize_t r0 = 0; r0 < s[0]; r0 += block) {
    const hsize_t nr = std::min(block, s[0] - r0);
    buf.resize(nr * s[1]);
    if (!buf.empty()) h5::read_block(x, h5::native<T>(), {r0, 0}, {nr, s[1]}, buf.data());
    for (hsize_t r = 0; r < nr; ++r) {
      for (hsize_t c = 0; c < s[1]; ++c)
        if (buf[r * s[1] + c] != T(0)) {
          m.indices.push_back(static_cast<std::int32_t>(c));
          m.values.push_back(buf[r * s[1] + c]);
        }
      m.indptr.push_back(m.nnz());
    }
  }
  return m;
}

/// Checks a compressed index pointer: `major + 1` entries from 0 to nnz, never decreasing.
inline void check_indptr(const h5::Node& g, const std::vector<std::int64_t>& p, Index major, Index nnz) {
  sakura::detail::require(static_cast<Index>(p.size()) == major + 1, g.where(), "/indptr: ", p.size(),
                          " entries, expected ", major + 1, " for the shape attribute");
  sakura::detail::require(p.front() == 0 && p.back() == nnz, g.where(), "/indptr: runs from ", p.front(), " to ",
                          p.back(), " but data has ", nnz, " values");
  for (std::size_t i = 1; i < p.size(); ++i)
    if (p[i - 1] > p[i]) sakura::detail::fail(g.where(), "/indptr: decreases at position ", i);
}

inline void check_minor(const h5::Node& g, const std::vector<std::int32_t>& idx, Index minor, Index offset = 0) {
  for (std::size_t k = 0; k < idx.size(); ++k)
    if (idx[k] < 0 || idx[k] >= minor)  // `if`, not require(): where() would be built per entry
      sakura::detail::fail(g.where(), "/indices: entry ", offset + static_cast<Index>(k), " is ", idx[k], ", outside [0, ", minor, ")");
}

template <class T>
CsrMatrix<T> csr_x(const h5::Node& g, Index rows, Index cols) {
  CsrMatrix<T> m;
  m.rows = rows;
  m.cols = cols;
  const h5::Node data = h5::open(g, "data"), idx = h5::open(g, "indices");
  m.values = h5::read_all<T>(data);
  sakura::detail::require(h5::length_1d(idx) == m.nnz(), idx.where(), ": ", h5::length_1d(idx),
                          " indices for ", m.nnz(), " values");
  m.indices = h5::read_all<std::int32_t>(idx);
  m.indptr = h5::read_all<std::int64_t>(h5::open(g, "indptr"));
  check_indptr(g, m.indptr, rows, m.nnz());
  check_minor(g, m.indices, cols);
  m.sort_and_sum_duplicates();  // scipy allows unsorted rows; our gathers need them sorted
  return m;
}

/// CSC to CSR by a counting sort over row indices, streaming the CSC arrays in chunks (two passes),
/// so memory holds the CSR result plus one chunk, never a dense matrix or a second full copy.
template <class T>
CsrMatrix<T> csc_x(const h5::Node& g, Index rows, Index cols) {
  const h5::Node data = h5::open(g, "data"), idx = h5::open(g, "indices");
  const auto colptr = h5::read_all<std::int64_t>(h5::open(g, "indptr"));
  const Index nnz = h5::length_1d(data);
  sakura::detail::require(h5::length_1d(idx) == nnz, idx.where(), ": ", h5::length_1d(idx), " indices for ", nnz,
                          " values");
  check_indptr(g, colptr, cols, nnz);
  CsrMatrix<T> m;
  m.rows = rows;
  m.cols = cols;
  m.indptr.assign(static_cast<std::size_t>(rows) + 1, 0);
  constexpr Index kChunk = Index{1} << 20;
  std::vector<std::int32_t> ri;
  for (Index off = 0; off < nnz; off += kChunk) {  // pass 1: entries per row
    ri.resize(static_cast<std::size_t>(std::min(kChunk, nnz - off)));
    h5::read_block(idx, H5T_NATIVE_INT32, {hsize_t(off)}, {ri.size()}, ri.data());
    check_minor(g, ri, rows, off);
    for (std::int32_t r : ri) ++m.indptr[r + 1];
  }
  for (Index r = 0; r < rows; ++r) m.indptr[r + 1] += m.indptr[r];
  m.indices.resize(nnz);
  m.values.resize(nnz);
  std::vector<std::int64_t> next(m.indptr.begin(), m.indptr.end() - 1);
  std::vector<T> v;
  Index col = 0;
  for (Index off = 0; off < nnz; off += kChunk) {  // pass 2: scatter, columns in increasing order
    const auto n = static_cast<std::size_t>(std::min(kChunk, nnz - off));
    ri.resize(n);
    v.resize(n);
    h5::read_block(idx, H5T_NATIVE_INT32, {hsize_t(off)}, {n}, ri.data());
    h5::read_block(data, h5::native<T>(), {hsize_t(off)}, {n}, v.data());
    for (std::size_t k = 0; k < n; ++k) {
      while (colptr[col + 1] <= off + static_cast<Index>(k)) ++col;
      const std::int64_t at = next[ri[k]]++;
      m.indices[at] = static_cast<std::int32_t>(col);
      m.values[at] = v[k];
    }
  }
  m.sort_and_sum_duplicates();  // rows come out sorted; this only merges repeated (row, col) pairs
  return m;
}

/// X in any layout anndata writes: a dense dataset, or a group tagged csr_matrix / csc_matrix
/// (encoding-type in anndata >= 0.7, h5sparse_format before).
template <class T>
CsrMatrix<T> read_x(const h5::Node& root) {
  const h5::Node x = h5::open(root, "X");
  if (!x.is_group()) return dense_x<T>(x);
  std::string enc = h5::attr_string(x, "encoding-type");
  if (enc.empty()) enc = h5::attr_string(x, "h5sparse_format") + "_matrix";
  const std::string shape_key = h5::has_attr(x, "shape") ? "shape" : "h5sparse_shape";
  const auto shape = h5::attr_ints(x, shape_key);
  sakura::detail::require(shape.size() == 2 && shape[0] >= 0 && shape[1] >= 0 &&
                              shape[1] <= std::numeric_limits<std::int32_t>::max() &&
                              shape[0] <= std::numeric_limits<std::int32_t>::max(),
                          x.where(), ": attribute '", shape_key, "' must hold 2 non-negative sizes");
  if (enc == "csr_matrix") return csr_x<T>(x, shape[0], shape[1]);
  if (enc == "csc_matrix") return csc_x<T>(x, shape[0], shape[1]);
  sakura::detail::fail(x.where(), ": unsupported X encoding '", enc, "' (expected csr_matrix or csc_matrix)");
}

}  // namespace detail

/// Reads an AnnData .h5ad file: X as sparse cells x genes (never densified whole), var_names as
/// genes, obs_names as cells, and every obs column as a phenotype column of strings ("" for missing;
/// categorical labels, numbers printed shortest-exact, bools as "True"/"False").
/// Example: `auto ds = sakura::io::read_h5ad<float>("pbmc.h5ad"); ds.column("celltype");`
template <class T = float>
Dataset<T> read_h5ad(const std::string& path) {
  h5::QuietErrors quiet;
  h5::Node root{h5::Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose), path, "/"};
  sakura::detail::require(root.h.ok(), path, ": cannot open as an HDF5 file");
  const h5::Node obs = h5::open_dataframe(root, "obs"), var = h5::open_dataframe(root, "var");
  Dataset<T> ds;
  ds.cells = h5::index_names(obs);
  ds.genes = h5::index_names(var);
  ds.expr = detail::read_x<T>(root);
  sakura::detail::require(ds.expr.rows == ds.n_cells() && ds.expr.cols == ds.n_genes(), path, ": X is ",
                          ds.expr.shape_str(), " but obs has ", ds.n_cells(), " names and var has ", ds.n_genes());
  for (const auto& name : h5::column_names(obs)) {
    PhenoColumn col{name, h5::column_values(obs, name)};
    sakura::detail::require(col.values.size() == ds.cells.size(), obs.where(), "/", name, ": ", col.values.size(),
                            " values for ", ds.cells.size(), " cells");
    ds.pheno.push_back(std::move(col));
  }
  ds.validate(path);
  return ds;
}

}  // namespace sakura::io
