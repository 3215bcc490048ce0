// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// AnnData (.h5ad) writer through the HDF5 C API, in the on-disk layout anndata >= 0.8 writes
/// (encoding-type / encoding-version attributes): dataframes, a CSR X appended a block of rows at a
/// time, obsm arrays, uns dicts; written to a temporary file that commit() fsyncs and renames.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "sakura/data/dataset.hpp"
#include "sakura/error.hpp"
#include "sakura/io/h5ad.hpp"

namespace sakura::io {

/// Storage of the datasets a writer creates. Appended datasets are always chunked (they grow);
/// gzip > 0 compresses every non-empty dataset with that deflate level, as h5py's
/// compression="gzip" does.
struct H5adLayout {
  int gzip = 0;
  std::size_t chunk_bytes = std::size_t{1} << 20;  ///< target chunk size (1 MiB: HDF5's default chunk cache)
};

namespace h5w {

using h5::Handle;
using h5::Node;

/// In-memory HDF5 type of an element; also the stored type (little-endian on every host we run on).
template <class U>
hid_t mem_type() {
  if constexpr (std::is_same_v<U, std::int8_t>) return H5T_NATIVE_INT8;
  else if constexpr (std::is_same_v<U, std::int16_t>) return H5T_NATIVE_INT16;
  else return h5::native<U>();
}

inline Handle utf8_strings() {
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

/// h5py's numpy bool: an enum over int8 {FALSE = 0, TRUE = 1}.
inline Handle bool_type() {
  Handle t(H5Tenum_create(H5T_NATIVE_INT8), H5Tclose);
  const std::int8_t f = 0, tr = 1;
  H5Tenum_insert(t.get(), "FALSE", &f);
  H5Tenum_insert(t.get(), "TRUE", &tr);
  return t;
}

inline void written(bool ok, const Node& n, const std::string& what) {
  sakura::detail::require(ok, n.where(), ": cannot write ", what, " (disk full, or not writable?)");
}

inline std::string child_path(const Node& parent, const std::string& name) {
  return (parent.path == "/" ? "/" : parent.path + "/") + name;
}

/// Writes attribute `name` (replacing one of that name) from `count` elements of memtype at data.
inline void put_attr(const Node& n, const std::string& name, hid_t type, bool scalar, hsize_t count,
                     const void* data) {
  if (h5::has_attr(n, name)) H5Adelete(n.id(), name.c_str());
  Handle s(scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &count, nullptr), H5Sclose);
  Handle a(H5Acreate2(n.id(), name.c_str(), type, s.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  written(a.ok() && (count == 0 || H5Awrite(a.get(), type, data) >= 0), n, "attribute '" + name + "'");
}

inline std::vector<const char*> c_strings(std::span<const std::string> v) {
  std::vector<const char*> p;
  p.reserve(v.size());
  for (const auto& s : v) p.push_back(s.c_str());
  return p;
}

inline void set_attr(const Node& n, const std::string& name, const std::string& value) {
  const char* p = value.c_str();
  put_attr(n, name, utf8_strings().get(), true, 1, &p);
}
/// A string-array attribute; zero elements are allowed (what anndata reads as an empty column-order).
inline void set_attr(const Node& n, const std::string& name, const std::vector<std::string>& values) {
  const auto p = c_strings(values);
  put_attr(n, name, utf8_strings().get(), false, values.size(), p.data());
}
inline void set_attr(const Node& n, const std::string& name, const std::vector<std::int64_t>& values) {
  put_attr(n, name, H5T_NATIVE_INT64, false, values.size(), values.data());
}
inline void set_attr(const Node& n, const std::string& name, bool value) {
  const std::int8_t v = value ? 1 : 0;
  put_attr(n, name, bool_type().get(), true, 1, &v);
}

inline void set_encoding(const Node& n, const std::string& type, const std::string& version) {
  set_attr(n, "encoding-type", type);
  set_attr(n, "encoding-version", version);
}

/// A new group tagged with anndata's encoding (a dict unless told otherwise).
inline Node create_group(const Node& parent, const std::string& name, const std::string& type = "dict",
                         const std::string& version = "0.1.0") {
  Node g{Handle(H5Gcreate2(parent.id(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose), parent.file,
         child_path(parent, name)};
  sakura::detail::require(g.h.ok(), g.where(), ": cannot create the group (does it exist already?)");
  set_encoding(g, type, version);
  return g;
}

/// The group `name` of parent, created as an empty dict when absent.
inline Node group(const Node& parent, const std::string& name) {
  return h5::has(parent, name) ? h5::open(parent, name) : create_group(parent, name);
}

/// Copies parent/name of another file (or this one) to dst/name with everything below it.
inline void copy(const Node& src_parent, const std::string& name, const Node& dst, const std::string& dst_name) {
  const Node src = h5::open(src_parent, name);  // names the source when it is missing
  written(H5Ocopy(src_parent.id(), name.c_str(), dst.id(), dst_name.c_str(), H5P_DEFAULT, H5P_DEFAULT) >= 0, dst,
          "a copy of " + src.where());
}

/// A dataset that grows along its first dimension, a block of rows at a time (chunked, so memory
/// holds one block however long the dataset gets). width 0: 1-D; otherwise rows x width.
class Appender {
 public:
  Appender() = default;
  Appender(const Node& parent, const std::string& name, hid_t type, hsize_t width, const H5adLayout& layout)
      : type_(H5Tcopy(type), H5Tclose), width_(width) {
    const int rank = width ? 2 : 1;
    const hsize_t dims[2] = {0, width}, maxdims[2] = {H5S_UNLIMITED, width};
    const std::size_t elem = H5Tis_variable_str(type) > 0 ? sizeof(char*) * 2 : H5Tget_size(type);
    const hsize_t row_bytes = std::max<hsize_t>(1, elem * std::max<hsize_t>(1, width));
    const hsize_t chunk[2] = {std::max<hsize_t>(1, layout.chunk_bytes / row_bytes), std::max<hsize_t>(1, width)};
    Handle space(H5Screate_simple(rank, dims, maxdims), H5Sclose);
    Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    H5Pset_chunk(dcpl.get(), rank, chunk);
    if (layout.gzip > 0) H5Pset_deflate(dcpl.get(), static_cast<unsigned>(std::min(layout.gzip, 9)));
    d_ = Node{Handle(H5Dcreate2(parent.id(), name.c_str(), type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                     H5Dclose),
              parent.file, child_path(parent, name)};
    sakura::detail::require(d_.h.ok(), d_.where(), ": cannot create the dataset (does it exist already?)");
  }

  /// Appends `rows` rows (rows x width elements of the dataset's type, row-major) from data.
  void append(const void* data, hsize_t rows) {
    if (rows == 0) return;
    const int rank = width_ ? 2 : 1;
    const hsize_t extent[2] = {rows_ + rows, width_}, start[2] = {rows_, 0}, count[2] = {rows, width_};
    bool ok = H5Dset_extent(d_.id(), extent) >= 0;
    Handle fs(H5Dget_space(d_.id()), H5Sclose), ms(H5Screate_simple(rank, count, nullptr), H5Sclose);
    ok = ok && H5Sselect_hyperslab(fs.get(), H5S_SELECT_SET, start, nullptr, count, nullptr) >= 0 &&
         H5Dwrite(d_.id(), type_.get(), ms.get(), fs.get(), H5P_DEFAULT, data) >= 0;
    written(ok, d_, "rows " + std::to_string(rows_) + " to " + std::to_string(rows_ + rows));
    rows_ += rows;
  }
  template <class U>
  void append(std::span<const U> v) {
    sakura::detail::require(width_ == 0 || v.size() % width_ == 0, d_.where(), ": appending ", v.size(),
                            " values, not whole rows of ", width_);
    append(v.data(), width_ ? v.size() / width_ : v.size());
  }
  void append_strings(std::span<const std::string> v) {
    const auto p = c_strings(v);
    append(p.data(), v.size());
  }

  hsize_t rows() const { return rows_; }
  const Node& node() const { return d_; }
  /// Closes the dataset (an open object keeps H5adFile::commit from closing the file).
  void close() { d_.h = Handle(); }

 private:
  Node d_;
  Handle type_;
  hsize_t width_ = 0, rows_ = 0;
};

template <class U>
Appender appender(const Node& parent, const std::string& name, hsize_t width, const H5adLayout& layout) {
  return Appender(parent, name, mem_type<U>(), width, layout);
}
inline Appender string_appender(const Node& parent, const std::string& name, const H5adLayout& layout) {
  return Appender(parent, name, utf8_strings().get(), 0, layout);
}

/// anndata's dense "array" (1-D, or rows x width) written in one go.
template <class U>
void write_array(const Node& parent, const std::string& name, std::span<const U> v, hsize_t width,
                 const H5adLayout& layout) {
  Appender a = appender<U>(parent, name, width, layout);
  a.append(v);
  set_encoding(a.node(), "array", "0.2.0");
}

inline void write_strings(const Node& parent, const std::string& name, std::span<const std::string> v,
                          const H5adLayout& layout) {
  Appender a = string_appender(parent, name, layout);
  a.append_strings(v);
  set_encoding(a.node(), "string-array", "0.2.0");
}

/// A scalar string (anndata's "string"), e.g. a JSON text in uns.
inline void write_string(const Node& parent, const std::string& name, const std::string& value) {
  Handle t = utf8_strings();
  Handle s(H5Screate(H5S_SCALAR), H5Sclose);
  Node d{Handle(H5Dcreate2(parent.id(), name.c_str(), t.get(), s.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                H5Dclose),
         parent.file, child_path(parent, name)};
  const char* p = value.c_str();
  written(d.h.ok() && H5Dwrite(d.id(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p) >= 0, d, "a string");
  set_encoding(d, "string", "0.2.0");
}

/// A scalar number (anndata's "numeric-scalar").
template <class U>
void write_scalar(const Node& parent, const std::string& name, U value) {
  Handle s(H5Screate(H5S_SCALAR), H5Sclose);
  Node d{Handle(H5Dcreate2(parent.id(), name.c_str(), mem_type<U>(), s.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                H5Dclose),
         parent.file, child_path(parent, name)};
  written(d.h.ok() && H5Dwrite(d.id(), mem_type<U>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &value) >= 0, d, "a number");
  set_encoding(d, "numeric-scalar", "0.2.0");
}

}  // namespace h5w

/// A pandas column type guessed from text the way pandas.read_csv guesses it: integers when every
/// value is one and none is missing, floats (NaN for missing) when every present value is a number,
/// bools for True/False, otherwise strings, which anndata stores as a categorical.
struct TypedColumn {
  enum class Kind { Int, Float, Bool, Categorical } kind = Kind::Categorical;
  std::vector<std::int64_t> ints;     ///< Int, Bool (0/1)
  std::vector<double> floats;         ///< Float
  std::vector<std::int32_t> codes;    ///< Categorical: index into categories, -1 missing
  std::vector<std::string> categories;  ///< sorted, as pandas.Categorical sorts them

  static TypedColumn infer(const std::vector<std::string>& values) {
    TypedColumn c;
    bool ints = true, floats = true, bools = true, missing = false;
    for (const auto& s : values) {
      if (s.empty()) {
        missing = true;
        continue;
      }
      std::int64_t i = 0;
      double d = 0;
      ints = ints && parse(s, i);
      floats = floats && parse(s, d);
      bools = bools && bool_value(s) >= 0;
    }
    if (ints && !missing && !values.empty()) {
      c.kind = Kind::Int;
      for (const auto& s : values) parse(s, c.ints.emplace_back());
    } else if (floats && !values.empty()) {
      c.kind = Kind::Float;
      for (const auto& s : values)
        if (double& d = c.floats.emplace_back(); s.empty() || !parse(s, d)) d = std::numeric_limits<double>::quiet_NaN();
    } else if (bools && !missing && !values.empty()) {
      c.kind = Kind::Bool;
      for (const auto& s : values) c.ints.push_back(bool_value(s));
    } else {
      c.categories = values;
      std::sort(c.categories.begin(), c.categories.end());
      c.categories.erase(std::unique(c.categories.begin(), c.categories.end()), c.categories.end());
      if (!c.categories.empty() && c.categories.front().empty()) c.categories.erase(c.categories.begin());
      for (const auto& s : values)
        c.codes.push_back(s.empty() ? -1
                                    : static_cast<std::int32_t>(std::lower_bound(c.categories.begin(),
                                                                                 c.categories.end(), s) -
                                                                c.categories.begin()));
    }
    return c;
  }

 private:
  template <class N>
  static bool parse(const std::string& s, N& out) {
    const char* b = s.data() + (!s.empty() && s[0] == '+');
    const auto r = std::from_chars(b, s.data() + s.size(), out);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
  }
  static int bool_value(const std::string& s) {
    if (s == "True" || s == "TRUE" || s == "true") return 1;
    if (s == "False" || s == "FALSE" || s == "false") return 0;
    return -1;
  }
};

/// An anndata dataframe (obs, var, or one in uns): an index and columns in the order added;
/// finish() writes column-order. Columns can be written whole or appended in blocks.
class DataFrameWriter {
 public:
  DataFrameWriter(const h5::Node& parent, const std::string& name, H5adLayout layout = {})
      : g_(h5w::create_group(parent, name, "dataframe", "0.2.0")), layout_(layout) {
    h5w::set_attr(g_, "_index", std::string("_index"));
  }

  const h5::Node& group() const { return g_; }
  void index(std::span<const std::string> names) { h5w::write_strings(g_, "_index", names, layout_); }
  /// The index written block by block (append_strings); the caller closes it before commit.
  h5w::Appender index_appender() {
    h5w::Appender a = h5w::string_appender(g_, "_index", layout_);
    h5w::set_encoding(a.node(), "string-array", "0.2.0");
    return a;
  }

  template <class U>
  void numbers(const std::string& name, std::span<const U> v) {
    h5w::write_array<U>(g_, add(name), v, 0, layout_);
  }
  template <class U>
  h5w::Appender numbers_appender(const std::string& name) {
    h5w::Appender a = h5w::appender<U>(g_, add(name), 0, layout_);
    h5w::set_encoding(a.node(), "array", "0.2.0");
    return a;
  }
  void bools(const std::string& name, std::span<const std::int64_t> v) {
    std::vector<std::int8_t> b(v.begin(), v.end());
    h5w::Appender a(g_, add(name), h5w::bool_type().get(), 0, layout_);
    a.append(b.data(), b.size());
    h5w::set_encoding(a.node(), "array", "0.2.0");
  }
  void strings(const std::string& name, std::span<const std::string> v) {
    h5w::write_strings(g_, add(name), v, layout_);
  }

  /// A categorical: its categories now, codes (-1 missing) appended by the caller.
  h5w::Appender categorical_appender(const std::string& name, std::span<const std::string> categories) {
    const h5::Node c = h5w::create_group(g_, add(name), "categorical", "0.2.0");
    h5w::set_attr(c, "ordered", false);
    h5w::write_strings(c, "categories", categories, layout_);
    h5w::Appender a = h5w::appender<std::int32_t>(c, "codes", 0, layout_);
    h5w::set_encoding(a.node(), "array", "0.2.0");
    return a;
  }
  void categorical(const std::string& name, std::span<const std::int32_t> codes,
                   std::span<const std::string> categories) {
    categorical_appender(name, categories).append(codes);
  }

  /// A phenotype column of text, stored with the type pandas would give it (TypedColumn).
  void column(const data::PhenoColumn& col) {
    const TypedColumn t = TypedColumn::infer(col.values);
    switch (t.kind) {
      case TypedColumn::Kind::Int: return numbers<std::int64_t>(col.name, t.ints);
      case TypedColumn::Kind::Float: return numbers<double>(col.name, t.floats);
      case TypedColumn::Kind::Bool: return bools(col.name, t.ints);
      case TypedColumn::Kind::Categorical: return categorical(col.name, t.codes, t.categories);
    }
  }

  /// Writes column-order and closes the group.
  void finish() {
    h5w::set_attr(g_, "column-order", order_);
    g_.h = h5::Handle();
  }

 private:
  const std::string& add(const std::string& name) {
    sakura::detail::require(name != "_index" && std::find(order_.begin(), order_.end(), name) == order_.end(),
                            g_.where(), ": column '", name, "' is written twice (or is named _index)");
    return order_.emplace_back(name);
  }
  h5::Node g_;
  H5adLayout layout_;
  std::vector<std::string> order_;
};

/// A CSR matrix as anndata's csr_matrix group (data float, indices int32, indptr int64), appended
/// a block of rows at a time; finish() writes the shape. Memory: one block.
class CsrAppender {
 public:
  CsrAppender(const h5::Node& parent, const std::string& name, Index cols, H5adLayout layout = {})
      : g_(h5w::create_group(parent, name, "csr_matrix", "0.1.0")), cols_(cols) {
    data_ = h5w::appender<float>(g_, "data", 0, layout);
    indices_ = h5w::appender<std::int32_t>(g_, "indices", 0, layout);
    indptr_ = h5w::appender<std::int64_t>(g_, "indptr", 0, layout);
    const std::int64_t zero = 0;
    indptr_.append(&zero, 1);
  }

  /// Appends the rows of `block` (its columns must be this matrix's).
  template <class T>
  void append(const CsrMatrix<T>& block) {
    sakura::detail::require(block.cols == cols_, g_.where(), ": appending a block of ", block.cols,
                            " columns to a matrix of ", cols_);
    std::vector<std::int64_t> ptr(block.indptr.begin() + 1, block.indptr.end());
    for (auto& p : ptr) p += nnz_;
    if constexpr (std::is_same_v<T, float>) {
      data_.append(std::span<const float>(block.values));
    } else {
      std::vector<float> v(block.values.begin(), block.values.end());
      data_.append(std::span<const float>(v));
    }
    indices_.append(std::span<const std::int32_t>(block.indices));
    indptr_.append(std::span<const std::int64_t>(ptr));
    nnz_ += block.nnz();
    rows_ += block.rows;
  }

  void finish() {
    h5w::set_attr(g_, "shape", std::vector<std::int64_t>{rows_, cols_});
    data_.close();
    indices_.close();
    indptr_.close();
    g_.h = h5::Handle();
  }
  Index rows() const { return rows_; }
  Index nnz() const { return nnz_; }

 private:
  h5::Node g_;
  h5w::Appender data_, indices_, indptr_;
  Index cols_ = 0, rows_ = 0, nnz_ = 0;
};

/// A whole in-memory CSR matrix, e.g. X of a small data set.
template <class T>
void write_csr(const h5::Node& parent, const std::string& name, const CsrMatrix<T>& m, H5adLayout layout = {}) {
  CsrAppender a(parent, name, m.cols, layout);
  a.append(m);
  a.finish();
}

/// A new .h5ad. Everything goes to `<path>.tmp-<pid>`; commit() adds the groups anndata expects and
/// the caller did not write, closes, fsyncs and renames it over `path`, so a crash or an error leaves
/// a previous file at `path` intact. Dropped without commit(), it removes the temporary file.
/// Every dataset and group handle the caller opened must be closed before commit().
/// Example:
///   io::H5adFile f("out.h5ad");
///   { io::DataFrameWriter obs(f.root(), "obs"); obs.index(cells); obs.finish(); }
///   f.commit();
class H5adFile {
 public:
  explicit H5adFile(std::string path) : path_(std::move(path)) {
    tmp_ = path_ + ".tmp-" + std::to_string(::getpid());
    h5::Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_SEMI);  // closing with objects still open is an error
    root_ = h5::Node{h5::Handle(H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose), path_,
                     "/"};
    sakura::detail::require(root_.h.ok(), "cannot create '", tmp_, "' (the temporary file for '", path_,
                            "'): is its folder writable?");
    h5w::set_encoding(root_, "anndata", "0.1.0");
  }
  H5adFile(const H5adFile&) = delete;
  H5adFile& operator=(const H5adFile&) = delete;
  ~H5adFile() {
    if (committed_) return;
    root_.h = h5::Handle();
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }

  const h5::Node& root() const { return root_; }
  const std::string& path() const { return path_; }

  void commit() {
    for (const char* g : {"obs", "var"})
      sakura::detail::require(h5::has(root_, g), tmp_, ": no ", g, " dataframe was written (a bug)");
    for (const char* g : {"obsm", "varm", "obsp", "varp", "layers", "uns"}) h5w::group(root_, g);
    const hid_t id = root_.h.get();
    const auto open_objects = H5Fget_obj_count(id, H5F_OBJ_ALL | H5F_OBJ_LOCAL) - 1;  // all but the file
    sakura::detail::require(open_objects == 0, tmp_, ": ", open_objects,
                            " HDF5 objects still open when finishing the file (a bug)");
    sakura::detail::require(H5Fflush(id, H5F_SCOPE_GLOBAL) >= 0, "cannot finish writing '", tmp_,
                            "' (disk full?)");
    root_.h = h5::Handle();  // nothing left to write: closing only releases the file
    const int fd = ::open(tmp_.c_str(), O_RDONLY);
    const bool ok = fd >= 0 && ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    sakura::detail::require(ok, "cannot sync '", tmp_, "' to disk");
    sakura::detail::require(std::rename(tmp_.c_str(), path_.c_str()) == 0, "cannot rename '", tmp_, "' to '", path_,
                            "'");
    const auto dir = std::filesystem::absolute(path_).parent_path();
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {  // makes the rename itself durable
      ::fsync(dfd);
      ::close(dfd);
    }
    committed_ = true;
  }

 private:
  h5::QuietErrors quiet_;  // errors are reported through sakura::Error, not HDF5's printout
  std::string path_, tmp_;
  h5::Node root_;
  bool committed_ = false;
};

}  // namespace sakura::io
