// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// A backed .h5ad: X stays on disk and is read a few rows at a time through HDF5 hyperslabs
/// (CSR or dense, chunked or contiguous, uncompressed or gzip), obs and var are read once.
///
/// Memory per cell: the row index (2 bytes: each row's length, plus an offset every 64 rows;
/// 4 bytes when a row stores 65536 entries or more) and the fitted phenotypes; cell names are
/// read from the file when a dump needs them. The file is opened through the hardened reader
/// (h5::InputFile: heaps, headers and extents checked) and every read is followed by a check
/// that the file is still the one opened, so a file replaced, truncated or rewritten during a
/// run stops it with an error naming the file and HDF5 path instead of feeding it wrong cells.
#pragma once

#if !defined(SAKURA_WITH_HDF5)
#error "sakura/io/h5ad_rows.hpp needs HDF5: link the CMake target sakura::hdf5 (it defines SAKURA_WITH_HDF5=1)"
#endif

#include <fcntl.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sakura/data/backed.hpp"
#include "sakura/data/loader.hpp"
#include "sakura/data/pheno.hpp"
#include "sakura/io/h5ad.hpp"

namespace sakura::io {

/// Notices a file changing under a reader: the path must still name the inode that was opened,
/// with the size and modification time it had.
class FileWatch {
 public:
  explicit FileWatch(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    sakura::detail::require(fd_ >= 0 && ::fstat(fd_, &at_open_) == 0, path_, ": cannot open: ", std::strerror(errno));
  }
  FileWatch(const FileWatch&) = delete;
  FileWatch& operator=(const FileWatch&) = delete;
  ~FileWatch() {
    if (fd_ >= 0) ::close(fd_);
  }

  /// What changed since the file was opened, or "" when nothing did.
  std::string changed() const {
    struct stat now {}, open_file {};
    if (::stat(path_.c_str(), &now) != 0) return std::string("the path no longer names a file (") + std::strerror(errno) + ")";
    if (now.st_dev != at_open_.st_dev || now.st_ino != at_open_.st_ino) return "another file was put in its place";
    if (::fstat(fd_, &open_file) != 0) return std::string("it cannot be examined (") + std::strerror(errno) + ")";
    if (open_file.st_size != at_open_.st_size)
      return "its size went from " + std::to_string(at_open_.st_size) + " to " + std::to_string(open_file.st_size) +
             " bytes";
    if (open_file.st_mtim.tv_sec != at_open_.st_mtim.tv_sec || open_file.st_mtim.tv_nsec != at_open_.st_mtim.tv_nsec)
      return "it was written to";
    return {};
  }

 private:
  std::string path_;
  int fd_ = -1;
  struct stat at_open_ {};
};

namespace detail {

/// Each row's first entry, kept in 2 bytes per row: row lengths (16-bit, widened to 32-bit when a
/// row is longer) and the offset of every 64th row.
class RowIndex {
 public:
  void reserve(Index rows) {
    len16_.reserve(static_cast<std::size_t>(rows));
    anchor_.reserve(static_cast<std::size_t>(rows / kStride + 1));
  }
  /// Appends a row of `len` entries.
  void push(std::int64_t len) {
    if (rows_ % kStride == 0) anchor_.push_back(total_);
    if (len > 0xFFFF && len32_.empty() && !len16_.empty()) widen();
    if (len > 0xFFFF || !len32_.empty()) len32_.push_back(static_cast<std::uint32_t>(len));
    else len16_.push_back(static_cast<std::uint16_t>(len));
    total_ += len;
    max_ = std::max(max_, len);
    ++rows_;
  }
  std::int64_t length(Index r) const {
    return len32_.empty() ? len16_[static_cast<std::size_t>(r)] : len32_[static_cast<std::size_t>(r)];
  }
  std::int64_t begin(Index r) const {
    std::int64_t at = anchor_[static_cast<std::size_t>(r / kStride)];
    for (Index i = r - r % kStride; i < r; ++i) at += length(i);
    return at;
  }
  std::int64_t max_length() const { return max_; }
  std::int64_t total() const { return total_; }
  std::size_t bytes() const { return len16_.capacity() * 2 + len32_.capacity() * 4 + anchor_.capacity() * 8; }

 private:
  static constexpr Index kStride = 64;
  void widen() {
    len32_.assign(len16_.begin(), len16_.end());
    len16_ = {};
  }
  std::vector<std::uint16_t> len16_;
  std::vector<std::uint32_t> len32_;
  std::vector<std::int64_t> anchor_;
  Index rows_ = 0;
  std::int64_t total_ = 0, max_ = 0;
};

/// A union of 1-D runs [start, start + count) as one HDF5 selection (runs ascending, disjoint).
inline h5::Handle runs_selection(const h5::Node& d, const std::vector<std::pair<hsize_t, hsize_t>>& runs,
                                 hsize_t width = 0) {
  h5::Handle fs(H5Dget_space(d.id()), H5Sclose);
  bool ok = fs.ok() && H5Sselect_none(fs.get()) >= 0;
  for (std::size_t i = 0; ok && i < runs.size(); ++i) {
    const hsize_t start[2] = {runs[i].first, 0}, count[2] = {runs[i].second, width};
    ok = H5Sselect_hyperslab(fs.get(), i == 0 ? H5S_SELECT_SET : H5S_SELECT_OR, start, nullptr, count, nullptr) >= 0;
  }
  if (!ok) sakura::detail::fail(d.where(), ": cannot select the rows to read (damaged file?)");  // where(): only then
  return fs;
}

/// Reads the selected elements (in file order) into out.
inline void read_selection(const h5::Node& d, hid_t memtype, const h5::Handle& fs, hsize_t n, void* out,
                           hid_t dxpl = H5P_DEFAULT) {
  h5::Handle ms(H5Screate_simple(1, &n, nullptr), H5Sclose);
  const bool ok = ms.ok() && H5Dread(d.id(), memtype, ms.get(), fs.get(), dxpl, out) >= 0;
  if (!ok) sakura::detail::fail(d.where(), ": read failed (corrupt file, or changed while it is read?)");
}

/// A dataset opened again with its own chunk cache: compressed chunks are cached (a block of
/// consecutive cells inflates each chunk once), uncompressed ones are read in place (a few rows
/// never pull in a whole chunk). `checked` is closed first: libhdf5 shares an open dataset, cache
/// settings included, with every later open of it.
inline h5::Node reopen_with_cache(const h5::Node& parent, const std::string& name, h5::Node&& checked) {
  h5::Handle dcpl(H5Dget_create_plist(checked.id()), H5Pclose), dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  const bool filtered = dcpl.ok() && H5Pget_nfilters(dcpl.get()) > 0;
  const std::size_t bytes = filtered ? std::size_t{64} << 20 : 0;
  sakura::detail::require(dapl.ok() && H5Pset_chunk_cache(dapl.get(), 12421, bytes, 1.0) >= 0, checked.where(),
                          ": cannot set up the chunk cache");
  h5::Node n{h5::Handle(), checked.file, checked.path, checked.ctx};
  checked.h = h5::Handle();
  n.h = h5::Handle(H5Dopen2(parent.id(), name.c_str(), dapl.get()), H5Dclose);
  sakura::detail::require(n.h.ok(), n.where(), ": cannot open for reading");
  return n;
}

/// The storage of X's chunked arrays holds numbers only: the heap scan skips it (as it skips
/// contiguous ones), so opening a large file does not read all of it. Chunks are found by their
/// coordinates (H5Dget_chunk_info by index walks the chunk index from the start every call).
inline void skip_chunks(const h5::Node& d) {
  h5::Handle space(H5Dget_space(d.id()), H5Sclose), dcpl(H5Dget_create_plist(d.id()), H5Pclose);
  if (!d.ctx || !space.ok() || !dcpl.ok() || H5Pget_layout(dcpl.get()) != H5D_CHUNKED) return;
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 1 || rank > 2) return;
  hsize_t dims[2] = {1, 1}, chunk[2] = {1, 1};
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  if (H5Pget_chunk(dcpl.get(), rank, chunk) != rank || chunk[0] == 0 || chunk[rank - 1] == 0) return;
  if ((dims[0] / chunk[0] + 1) * (dims[1] / chunk[1] + 1) > (hsize_t{1} << 24)) return;  // extent() judges it
  hsize_t at[2] = {0, 0};
  for (at[0] = 0; at[0] < dims[0]; at[0] += chunk[0])
    for (at[1] = 0; at[1] < (rank == 2 ? dims[1] : 1); at[1] += (rank == 2 ? chunk[1] : 1)) {
      haddr_t addr = HADDR_UNDEF;
      hsize_t size = 0;
      unsigned mask = 0;
      if (H5Dget_chunk_info_by_coord(d.id(), at, &mask, &addr, &size) >= 0 && addr != HADDR_UNDEF)
        d.ctx->skip(addr, addr + size);
    }
}

/// skip_chunks on X (dense) or X's data and indices, before anything reads a string.
inline void skip_x_chunks(const h5::Node& root) {
  if (!h5::has(root, "X")) return;
  const h5::Node x = h5::open(root, "X");
  if (!x.is_group()) return skip_chunks(x);
  for (const char* a : {"data", "indices"})
    if (h5::has(x, a)) skip_chunks(h5::open(x, a));
}

}  // namespace detail

/// X of an .h5ad, read by rows. Example:
///   auto src = std::make_shared<io::H5adRows<float>>("atlas.h5ad");
///   CsrMatrix<float> m;
///   src->read(std::vector<Index>{3, 17, 18}, m);   // 3 x genes, in that order
template <class T = float>
class H5adRows final : public data::RowSource<T> {
 public:
  explicit H5adRows(const std::string& path, const data::NameOptions& names = {})
      : check_(std::make_unique<h5::InputFile>(path)), watch_(path), path_(path) {
    const h5::Node& root = check_->root();
    detail::skip_x_arrays(root);
    detail::skip_x_chunks(root);  // before any string is read: the heap scan then skips X
    obs_ = h5::open_dataframe(root, "obs");
    const h5::Node var = h5::open_dataframe(root, "var");
    obs_index_ = h5::index_node(obs_);
    const h5::Node var_index = h5::index_node(var);
    n_obs_ = h5::length_1d(obs_index_);
    const Index n_var = h5::length_1d(var_index);
    const h5::Node x = h5::open(root, "X");
    const detail::XLayout layout = detail::x_layout(x);
    sakura::detail::require(layout.rows == n_obs_ && layout.cols == n_var, path, ": X is ",
                            shape_str(layout.rows, layout.cols), " but obs has ", n_obs_, " names and var has ", n_var);
    sakura::detail::require(
        layout.kind != detail::XLayout::Kind::Csc, x.where(),
        ": X is stored by genes (csc_matrix), so one cell's values are spread over the whole matrix and a backed run, "
        "which reads cells, cannot read them; write a copy stored by cells once (out of core) with `sakura-train "
        "convert --h5ad ",
        path, " -o cells.h5ad` and train on that, or read the file into memory (drop \"backed\" / --backed)");
    dense_ = layout.kind == detail::XLayout::Kind::Dense;
    cols_ = layout.cols;
    if (dense_) (void)h5::extent(x);  // its storage can hold its shape
    else check_csr(x);
    genes_ = h5::read_strings(var_index);
    repeated_genes_ = data::settle_names(genes_, "gene", var_index.where(), names,
                                   [](Index r) { return std::to_string(r + 1); });
    check_cell_names(names);
    index_name_ = h5::index_name(obs_);
  }

  /// Ends the checks of the open (phenotype fitting included): closes the file they read strings
  /// through, and with it the index of every string in it and libhdf5's cache of them (tens of
  /// bytes per cell), then opens it again for reading. The first read() does it if not done.
  void done_checking() {
    if (in_) return;
    obs_ = h5::Node{};
    obs_index_ = h5::Node{};
    check_.reset();
    H5garbage_collect();
#if defined(__GLIBC__)
    malloc_trim(0);  // the checks' many small blocks lie between live ones: give their pages back
#endif
    open_for_reading();
  }

  Index rows() const override { return n_obs_; }
  Index cols() const override { return cols_; }
  std::int64_t max_row_entries() const override { return dense_ ? cols_ : index_.max_length(); }
  const std::string& path() const override { return path_; }
  const std::vector<std::string>& genes() const { return genes_; }
  const std::vector<data::RepeatedName>& repeated_genes() const { return repeated_genes_; }
  /// Bytes held per cell (the row index), for the memory report.
  std::size_t index_bytes() const { return index_.bytes(); }

  void read(std::span<const Index> rows, CsrMatrix<T>& out) override {
    std::lock_guard lock(mu_);
    const h5::QuietErrors quiet;  // libhdf5's error printing is per thread: this one reads
    done_checking();
    for (std::size_t i = 0; i < rows.size(); ++i)
      sakura::detail::require(rows[i] >= 0 && rows[i] < n_obs_ && (i == 0 || rows[i - 1] < rows[i]), path_,
                              ": backed read of row ", rows[i], " (rows must ascend within [0, ", n_obs_, "))");
    out.rows = static_cast<Index>(rows.size());
    out.cols = cols_;
    out.indptr.assign(1, 0);
    out.indices.clear();
    out.values.clear();
    try {
      if (dense_) read_dense(rows, out);
      else read_csr(rows, out);
    } catch (const Error&) {
      check_unchanged(dense_ ? x_ : data_);  // a read that failed because the file changed says so
      throw;
    }
    check_unchanged(dense_ ? x_ : data_);
  }

  void reserve(Index rows) override {
    std::lock_guard lock(mu_);
    const auto n = static_cast<std::size_t>(rows);
    const auto entries = dense_ ? std::min(n, dense_group()) * static_cast<std::size_t>(cols_)
                                : n * static_cast<std::size_t>(index_.max_length() + kGap);
    runs_.reserve(n);
    row_at_.reserve(n);
    if (!dense_) idx_.reserve(entries);
    val_.reserve(entries);
  }

  void names(std::span<const Index> rows, std::vector<std::string>& out) override {
    std::lock_guard lock(mu_);
    const h5::QuietErrors quiet;  // read through the checking file until done_checking(), then the other
    out.resize(rows.size());
    if (!cells_.empty()) {  // kept in memory (repeated names renamed)
      for (std::size_t i = 0; i < rows.size(); ++i) out[i] = cells_[static_cast<std::size_t>(rows[i])];
      return;
    }
    std::vector<std::pair<Index, std::size_t>> order(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) order[i] = {rows[i], i};
    std::sort(order.begin(), order.end());
    std::vector<Index> sorted;
    for (const auto& o : order)
      if (sorted.empty() || sorted.back() != o.first) sorted.push_back(o.first);
    std::vector<std::string> got;
    check_unchanged(obs_index_);  // the names' heaps were checked at open: only in an unchanged file
    read_names(obs_index_, sorted, got);
    std::size_t j = 0;
    for (const auto& o : order) {
      while (sorted[j] != o.first) ++j;
      out[o.second] = got[j];
    }
    check_unchanged(obs_index_);
  }

  /// obs while the open is being checked (before done_checking()).
  const h5::Node& checking() const {
    sakura::detail::require(check_ != nullptr, path_, ": obs columns are read while the file is opened (a bug)");
    return obs_;
  }
  /// The obs column names (anndata's column-order), for phenotype errors that list them.
  std::vector<std::string> column_names() const { return h5::column_names(checking()); }
  /// One obs column as text per cell (what the in-memory reader keeps for every column).
  std::vector<std::string> column_text(const std::string& name) const {
    return h5::column_values(checking(), name, n_obs_);
  }

  /// A categorical obs column as its categories and, block by block, its codes (-1: missing):
  /// f(first cell, codes). nullopt when the column is not stored categorical.
  std::optional<std::vector<std::string>> categories(const std::string& name) const {
    const h5::Node& obs_ = checking();
    if (!h5::has(obs_, name)) return std::nullopt;
    const h5::Node c = h5::open(obs_, name);
    if (c.is_group()) {
      if (h5::attr_string(c, "encoding-type") != "categorical") return std::nullopt;
      return h5::dataset_as_text(h5::open(c, "categories"));
    }
    if (h5::has(obs_, "__categories") && h5::has(h5::open(obs_, "__categories"), name))
      return h5::dataset_as_text(h5::open(h5::open(obs_, "__categories"), name));
    return std::nullopt;
  }
  template <class F>
  void for_each_code_block(const std::string& name, std::size_t levels, F&& f) const {
    const h5::Node& obs_ = checking();
    const h5::Node c = h5::open(obs_, name);
    const h5::Node codes = c.is_group() ? h5::open(c, "codes") : h5::open(obs_, name);
    h5::require_length(codes, n_obs_, "codes");
    const h5::Extent e = h5::extent_1d(codes);
    std::vector<std::int32_t> buf;
    h5::in_blocks(e, [&](hsize_t off, hsize_t n) {
      buf.resize(static_cast<std::size_t>(n));
      h5::read_block(codes, H5T_NATIVE_INT32, {off}, {n}, buf.data());
      for (std::size_t i = 0; i < buf.size(); ++i)
        if (buf[i] < -1 || buf[i] >= static_cast<std::int64_t>(levels))  // as decode_categorical reports it
          sakura::detail::fail(codes.where(), ": category code ", buf[i], " outside [-1, ", levels, ")");
      f(static_cast<Index>(off), std::span<const std::int32_t>(buf));
    });
  }

 private:
  /// X's arrays: lengths against each other and the shape, indptr read once into the row index.
  void check_csr(const h5::Node& x) {
    const h5::Node data = h5::open(x, "data"), indices = h5::open(x, "indices"), indptr = h5::open(x, "indptr");
    const Index nnz = h5::length_1d(data), n_idx = h5::length_1d(indices), n_ptr = h5::length_1d(indptr);
    sakura::detail::require(n_idx == nnz, indices.where(), ": ", n_idx, " indices for ", nnz, " values");
    sakura::detail::require(n_ptr == n_obs_ + 1, indptr.where(), ": ", n_ptr, " entries, expected ", n_obs_ + 1,
                            " for the shape attribute");
    // indptr: read in blocks and kept as row lengths (RowIndex), checked as the in-memory reader checks it
    const h5::Extent e = h5::extent_1d(indptr);
    std::vector<std::int64_t> buf;
    std::int64_t prev = 0;
    index_.reserve(n_obs_);
    h5::in_blocks(e, [&](hsize_t off, hsize_t n) {
      buf.resize(static_cast<std::size_t>(n));
      h5::read_block(indptr, H5T_NATIVE_INT64, {off}, {n}, buf.data());
      for (std::size_t i = 0; i < buf.size(); ++i) {
        const hsize_t at = off + i;
        if (at == 0) {
          sakura::detail::require(buf[i] == 0, x.where(), "/indptr: runs from ", buf[i], " (not 0)");
        } else {
          if (buf[i] < prev) sakura::detail::fail(x.where(), "/indptr: decreases at position ", at);
          index_.push(buf[i] - prev);
        }
        prev = buf[i];
      }
    });
    sakura::detail::require(prev == nnz, x.where(), "/indptr: runs from 0 to ", prev, " but data has ", nnz,
                            " values");
  }

  /// The file the run reads from: opened again, and no string is read through it (names are read
  /// as checked at open), so its heap index stays empty. Nodes are opened by path.
  void open_for_reading() {
    in_ = std::make_unique<h5::InputFile>(path_);
    const h5::Node& root = in_->root();
    obs_index_ = h5::open(h5::open(root, "obs"), index_name_);
    x_ = h5::open(root, "X");
    if (dense_) {
      x_ = detail::reopen_with_cache(root, "X", std::move(x_));
      return;
    }
    data_ = detail::reopen_with_cache(x_, "data", h5::open(x_, "data"));
    indices_ = detail::reopen_with_cache(x_, "indices", h5::open(x_, "indices"));
  }

  /// Consecutive rows are read as one run, and so are rows kGap entries apart or less.
  /// A gap of this many entries between two rows read is read through rather than starting another
  /// run (fewer, longer reads).
  static constexpr std::int64_t kGap = 512;
  /// Rows of a dense X read at once (about 1M values).
  std::size_t dense_group() const {
    return static_cast<std::size_t>(std::max<Index>(1, (Index{1} << 20) / std::max<Index>(1, cols_)));
  }

  void read_csr(std::span<const Index> rows, CsrMatrix<T>& out) {
    runs_.clear();
    row_at_.resize(rows.size());
    hsize_t total = 0;  // entries read so far: runs are laid out one after the other in the buffers
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto b = static_cast<hsize_t>(index_.begin(rows[i])), e = b + static_cast<hsize_t>(index_.length(rows[i]));
      if (runs_.empty() || b > runs_.back().first + runs_.back().second + kGap) {
        total += runs_.empty() ? 0 : runs_.back().second;
        runs_.emplace_back(b, 0);
      }
      runs_.back().second = e - runs_.back().first;
      row_at_[i] = static_cast<std::size_t>(total + (b - runs_.back().first));
    }
    if (!runs_.empty()) total += runs_.back().second;
    idx_.resize(static_cast<std::size_t>(total));
    val_.resize(static_cast<std::size_t>(total));
    if (total > 0) {
      detail::read_selection(indices_, H5T_NATIVE_INT32, detail::runs_selection(indices_, runs_), total,
                                  idx_.data());
      detail::read_selection(data_, h5::native<T>(), detail::runs_selection(data_, runs_), total,
                                  val_.data());
    }
    for (std::size_t i = 0; i < rows.size(); ++i)
      append_row(rows[i], idx_.data() + row_at_[i], val_.data() + row_at_[i],
                 static_cast<std::size_t>(index_.length(rows[i])), out);
  }

  /// One row into out: columns checked, then sorted with repeats summed if the file left them so.
  void append_row(Index row, const std::int32_t* idx, const T* val, std::size_t n, CsrMatrix<T>& out) {
    const std::size_t at = out.indices.size();
    bool sorted = true;
    for (std::size_t k = 0; k < n; ++k) {
      if (idx[k] < 0 || idx[k] >= cols_)
        sakura::detail::fail(indices_.where(), ": entry ", index_.begin(row) + static_cast<Index>(k), " (cell ", row,
                             ") is ", idx[k], ", outside [0, ", cols_, ")");
      sorted = sorted && (k == 0 || idx[k - 1] < idx[k]);
    }
    out.indices.insert(out.indices.end(), idx, idx + n);
    out.values.insert(out.values.end(), val, val + n);
    if (!sorted) {  // the whole-matrix reader's sort_and_sum_duplicates, on this row alone
      CsrMatrix<T> one;
      one.rows = 1;
      one.cols = cols_;
      one.indptr = {0, static_cast<std::int64_t>(n)};
      one.indices.assign(idx, idx + n);
      one.values.assign(val, val + n);
      one.sort_and_sum_duplicates();
      out.indices.resize(at);
      out.values.resize(at);
      out.indices.insert(out.indices.end(), one.indices.begin(), one.indices.end());
      out.values.insert(out.values.end(), one.values.begin(), one.values.end());
    }
    out.indptr.push_back(static_cast<std::int64_t>(out.indices.size()));
  }

  /// Dense X: runs of consecutive rows, a few rows at a time, kept as their non-zeros (as the
  /// in-memory reader keeps them: -0.0 is a zero there too).
  void read_dense(std::span<const Index> rows, CsrMatrix<T>& out) {
    const std::size_t group = dense_group();
    const auto width = static_cast<hsize_t>(cols_);
    for (std::size_t g0 = 0; g0 < rows.size(); g0 += group) {
      const std::size_t g1 = std::min(rows.size(), g0 + group);
      runs_.clear();
      for (std::size_t i = g0; i < g1; ++i) {
        const auto r = static_cast<hsize_t>(rows[i]);
        if (!runs_.empty() && runs_.back().first + runs_.back().second == r) ++runs_.back().second;
        else runs_.emplace_back(r, 1);
      }
      const hsize_t n = static_cast<hsize_t>(g1 - g0);
      val_.resize(static_cast<std::size_t>(n * width));
      if (n * width > 0)
        detail::read_selection(x_, h5::native<T>(), detail::runs_selection(x_, runs_, width), n * width,
                                    val_.data());
      for (std::size_t i = 0; i < n; ++i) {
        const T* v = val_.data() + i * width;
        for (hsize_t c = 0; c < width; ++c)
          if (v[c] != T(0)) {
            out.indices.push_back(static_cast<std::int32_t>(c));
            out.values.push_back(v[c]);
          }
        out.indptr.push_back(static_cast<std::int64_t>(out.indices.size()));
      }
    }
  }

  void check_unchanged(const h5::Node& where) const {
    const std::string what = watch_.changed();
    if (what.empty()) return;
    sakura::detail::fail(where.where(), ": the file changed while the run reads it (", what,
                         "); cells read from it now could be wrong, so the run stops here. Checkpoints written so far "
                         "are complete: put the original file back and continue from the newest one (sakura-train -r)");
  }

  /// Reads the names of `sorted` rows (ascending, distinct) from the obs index `d`.
  void read_names(const h5::Node& d, const std::vector<Index>& sorted, std::vector<std::string>& out) {
    out.clear();
    runs_.clear();
    for (Index r : sorted) {
      const auto at = static_cast<hsize_t>(r);
      if (!runs_.empty() && runs_.back().first + runs_.back().second == at) ++runs_.back().second;
      else runs_.emplace_back(at, 1);
    }
    if (sorted.empty()) return;
    const auto n = static_cast<hsize_t>(sorted.size());
    const h5::Handle fs = detail::runs_selection(d, runs_);
    h5::Handle ft(H5Dget_type(d.id()), H5Tclose);
    if (H5Tis_variable_str(ft.get()) > 0) {
      h5::Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mt.get(), H5T_VARIABLE);
      H5Tset_cset(mt.get(), H5Tget_cset(ft.get()));
      h5::VlenStrings mem(2 * d.ctx->bytes() + 65536);  // references were checked at open
      std::vector<char*> p(static_cast<std::size_t>(n), nullptr);
      detail::read_selection(d, mt.get(), fs, n, p.data(), mem.dxpl());
      for (char* s : p) out.emplace_back(s ? s : "");
      return;
    }
    const std::size_t sz = H5Tget_size(ft.get());
    const bool space_padded = H5Tget_strpad(ft.get()) == H5T_STR_SPACEPAD;
    h5::Handle mt(H5Tcopy(ft.get()), H5Tclose);
    std::vector<char> buf(static_cast<std::size_t>(n) * sz);
    detail::read_selection(d, mt.get(), fs, n, buf.data());
    for (hsize_t i = 0; i < n; ++i) out.push_back(h5::fixed_text(buf.data() + i * sz, sz, space_padded));
  }

  /// Cell names must be unique, as the in-memory reader requires (or renamed when make_unique):
  /// checked with a 64-bit hash per cell (freed afterwards), names compared only on equal hashes.
  void check_cell_names(const data::NameOptions& o) {
    const h5::Extent e = h5::extent_1d(obs_index_);
    if (e.vlen_string) {
      obs_index_.ctx->scan_heaps();
      h5::check_string_refs(obs_index_, e);
    }
    std::vector<std::uint64_t> hashes;
    hashes.reserve(static_cast<std::size_t>(n_obs_));
    for_each_name_block([&](Index, const std::vector<std::string>& got) {
      for (const auto& s : got) hashes.push_back(std::hash<std::string_view>{}(s));
    });
    std::sort(hashes.begin(), hashes.end());
    std::vector<std::uint64_t> twice;
    for (std::size_t i = 1; i < hashes.size(); ++i)
      if (hashes[i] == hashes[i - 1] && (twice.empty() || twice.back() != hashes[i])) twice.push_back(hashes[i]);
    hashes = {};
    if (twice.empty()) return;
    // the cells whose hash repeats, compared by name: the reader's own check and message on them
    std::vector<Index> candidates;
    for_each_name_block([&](Index r0, const std::vector<std::string>& got) {
      for (std::size_t i = 0; i < got.size(); ++i)
        if (std::binary_search(twice.begin(), twice.end(), std::hash<std::string_view>{}(got[i])))
          candidates.push_back(r0 + static_cast<Index>(i));
    });
    std::vector<std::string> got;
    read_names(obs_index_, candidates, got);
    auto row = [&](Index i) { return std::to_string(candidates[static_cast<std::size_t>(i)] + 1); };
    if (data::detail::repeated_names(got).empty()) return;  // equal hashes, different names
    if (!o.make_unique) (void)data::settle_names(got, "cell", obs_index_.where(), o, row);  // throws
    // make_names_unique must see every name (a repeat is renamed past names that exist): kept in memory
    cells_ = h5::read_strings(obs_index_);
    (void)data::settle_names(cells_, "cell", obs_index_.where(), o, [](Index r) { return std::to_string(r + 1); });
  }

  /// f(first row, names) over the obs index, 65536 names at a time.
  template <class F>
  void for_each_name_block(F&& f) {
    std::vector<Index> block;
    std::vector<std::string> got;
    for (Index r0 = 0; r0 < n_obs_; r0 += 65536) {
      block.resize(static_cast<std::size_t>(std::min<Index>(65536, n_obs_ - r0)));
      for (std::size_t i = 0; i < block.size(); ++i) block[i] = r0 + static_cast<Index>(i);
      read_names(obs_index_, block, got);
      f(r0, got);
    }
  }

  h5::QuietErrors quiet_;  // first: outlives both files (each restores the handler it found when closed)
  std::unique_ptr<h5::InputFile> check_, in_;  ///< the checks read strings through check_; reads use in_
  FileWatch watch_;
  std::string path_;
  std::mutex mu_;
  h5::Node obs_;                              ///< in check_
  h5::Node obs_index_, x_, data_, indices_;  ///< in check_ while checking, then in in_
  Index n_obs_ = 0, cols_ = 0;
  bool dense_ = false;
  detail::RowIndex index_;
  std::vector<std::string> genes_, cells_;
  std::string index_name_;  ///< the obs index dataset's name
  std::vector<data::RepeatedName> repeated_genes_;
  // read buffers (they grow to the largest read, then stay)
  std::vector<std::pair<hsize_t, hsize_t>> runs_;
  std::vector<std::size_t> row_at_;  ///< where each row's entries start in idx_ / val_
  std::vector<std::int32_t> idx_;
  std::vector<T> val_;
};

namespace detail {

/// The obs columns a phenotype's meta names (pheno_df_key or pheno_df_keys), as far as it names
/// them well; fit_pheno reports a malformed meta itself.
inline std::vector<std::string> pheno_keys(const data::PhenoJson& meta) {
  std::vector<std::string> keys;
  if (!meta.is_object()) return keys;
  if (auto k = meta.find("pheno_df_key"); k != meta.end() && k->is_string()) keys.push_back(k->get<std::string>());
  if (auto k = meta.find("pheno_df_keys"); k != meta.end() && k->is_array())
    for (const auto& v : *k)
      if (v.is_string()) keys.push_back(v.get<std::string>());
  return keys;
}

/// True when every procedure maps each value on its own (so fitting the distinct values of a
/// column gives what fitting every cell gives): all but ToKBins with quantile bins, whose edges
/// depend on how often each value occurs.
inline bool per_value(const data::PhenoJson& meta) {
  auto pp = meta.find("post_procedure");
  if (pp == meta.end() || !pp->is_array()) return true;
  for (const auto& p : *pp) {
    if (!p.is_object() || p.value("type", "") != "ToKBins") continue;
    auto st = p.find("strategy");
    if (st == p.end() || st->is_null() || !st->is_string() || st->get<std::string>() != "uniform") return false;
  }
  return true;
}

/// fit_pheno on the cells of one categorical column, fitted once per category present and spread
/// to the cells by their codes: the column is never held as text per cell. nullopt when the
/// column is not categorical, or the fit fails (the caller then fits per cell, which reports the
/// cell and row as the in-memory reader does).
template <class T>
std::optional<data::PhenoTable> fit_categorical(const H5adRows<T>& src, const std::string& name,
                                                const data::PhenoJson& meta, const std::string& where) {
  const auto keys = pheno_keys(meta);
  if (keys.size() != 1 || !per_value(meta)) return std::nullopt;
  const auto cats = src.categories(keys[0]);
  if (!cats) return std::nullopt;
  // the levels that occur (a code of -1 is a missing value, level cats->size())
  std::vector<char> used(cats->size() + 1, 0);
  src.for_each_code_block(keys[0], cats->size(), [&](Index, std::span<const std::int32_t> codes) {
    for (std::int32_t c : codes) used[c < 0 ? cats->size() : static_cast<std::size_t>(c)] = 1;
  });
  data::Dataset<T> levels;
  std::vector<std::int64_t> level_of(used.size(), -1);
  data::PhenoColumn col{keys[0], {}};
  for (std::size_t l = 0; l < used.size(); ++l)
    if (used[l]) {
      level_of[l] = static_cast<std::int64_t>(col.values.size());
      col.values.push_back(l < cats->size() ? (*cats)[l] : std::string());
      levels.cells.push_back("category " + std::to_string(l));
    }
  levels.pheno.push_back(std::move(col));
  data::PhenoTable fitted;
  try {
    fitted = data::fit_pheno(name, meta, levels, where);
  } catch (const Error&) {
    return std::nullopt;
  }
  data::PhenoTable t = fitted;
  t.labels.clear();
  t.values.clear();
  const auto n = static_cast<std::size_t>(src.rows());
  const auto w = static_cast<std::size_t>(fitted.width);
  if (fitted.has_labels()) t.labels.resize(n);
  if (fitted.has_values()) t.values.resize(n * w);
  src.for_each_code_block(keys[0], cats->size(), [&](Index r0, std::span<const std::int32_t> codes) {
    for (std::size_t i = 0; i < codes.size(); ++i) {
      const auto cell = static_cast<std::size_t>(r0) + i;
      const auto l = static_cast<std::size_t>(level_of[codes[i] < 0 ? cats->size() : static_cast<std::size_t>(codes[i])]);
      if (fitted.has_labels()) t.labels[cell] = fitted.labels[l];
      if (fitted.has_values()) std::copy_n(fitted.values.begin() + static_cast<std::ptrdiff_t>(l * w), w,
                                           t.values.begin() + static_cast<std::ptrdiff_t>(cell * w));
    }
  });
  return t;
}

/// fit_pheno on the per-cell text of the columns a phenotype reads (only those: the in-memory
/// reader keeps every obs column), for what fit_categorical cannot fit.
template <class T>
data::PhenoTable fit_per_cell(H5adRows<T>& src, const std::string& name, const data::PhenoJson& meta,
                              const std::string& where) {
  data::Dataset<T> ds;
  const auto keys = pheno_keys(meta);
  for (const auto& c : src.column_names())  // every name, so a missing column is reported with the others
    ds.pheno.push_back(data::PhenoColumn{
        c, std::find(keys.begin(), keys.end(), c) != keys.end() ? src.column_text(c) : std::vector<std::string>{}});
  std::vector<std::string> names;
  if (!ds.pheno.empty()) {  // fit_pheno names cells in its errors
    std::vector<Index> all(static_cast<std::size_t>(src.rows()));
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<Index>(i);
    src.names(all, ds.cells);
  }
  return data::fit_pheno(name, meta, ds, where);
}

}  // namespace detail

/// A backed TrainingData (see data/backed.hpp) of an .h5ad: genes, signatures and phenotypes as
/// prepare_training_data makes them (its checks and messages, on a data set of no cells with the
/// file's genes), X left on disk behind an H5adRows. `pheno_meta` holds the selected phenotypes;
/// `where` prefixes their errors.
/// Example: `auto d = io::read_h5ad_backed<float>("atlas.h5ad", {}, sigs, meta, "pheno.json: ");`
template <class T = float>
data::TrainingData<T> read_h5ad_backed(const std::string& path, const data::NameOptions& names,
                                       const std::vector<data::SignatureRequest>& sigs,
                                       const data::PhenoJson& pheno_meta, const std::string& where) {
  auto src = std::make_shared<H5adRows<T>>(path, names);
  std::vector<data::PhenoTable> phenos;
  for (auto it = pheno_meta.begin(); it != pheno_meta.end(); ++it) {
    auto t = detail::fit_categorical(*src, it.key(), it.value(), where);
    phenos.push_back(t ? std::move(*t) : detail::fit_per_cell(*src, it.key(), it.value(), where));
  }
  src->done_checking();
  data::Dataset<T> genes_only;
  genes_only.genes = src->genes();
  genes_only.repeated_genes = src->repeated_genes();
  genes_only.expr.cols = static_cast<Index>(genes_only.genes.size());
  data::TrainingData<T> d = data::prepare_training_data(std::move(genes_only), sigs, std::move(phenos));
  auto in = std::make_shared<data::BackedInput<T>>();
  std::unordered_map<std::string_view, std::int32_t> file_col;  // gene names are unique once settled
  for (std::size_t g = 0; g < src->genes().size(); ++g) file_col.emplace(src->genes()[g], static_cast<std::int32_t>(g));
  in->to_input.assign(src->genes().size(), -1);
  in->to_signature.assign(src->genes().size(), -1);
  for (std::size_t j = 0; j < d.genes.size(); ++j) in->to_input[file_col.at(d.genes[j])] = static_cast<std::int32_t>(j);
  for (const auto& s : d.signatures)
    for (std::size_t i = 0; i < s.genes.size(); ++i)
      in->to_signature[file_col.at(s.genes[i])] = static_cast<std::int32_t>(s.columns[i]);
  in->input_cols = d.n_genes();
  in->signature_cols = d.signature_expr.cols;
  in->source = std::move(src);
  d.backed = std::move(in);
  return d;
}

}  // namespace sakura::io
