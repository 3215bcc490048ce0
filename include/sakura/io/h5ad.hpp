// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// AnnData (.h5ad) reader through the HDF5 C API: X (dense, CSR or CSC) as sparse cells x genes,
/// var/obs names, and the obs columns as phenotype columns.
///
/// A damaged file ends in a sakura::Error naming the file and the HDF5 path, never in a huge
/// allocation, a hang or a crash inside libhdf5: every dataset's extent is checked against what
/// its storage can hold before anything is allocated (h5::extent), shapes, indptr and indices are
/// checked against each other and against obs/var before X is read, arrays are read in blocks
/// (memory grows with data actually read), and variable-length strings are only handed to libhdf5
/// after the global heaps that hold them, and the heap references of string datasets, have been
/// validated here (libhdf5 1.10 trusts both and reads out of bounds on a damaged one).
#pragma once

#if !defined(SAKURA_WITH_HDF5)
#error "sakura/io/h5ad.hpp needs HDF5: link the CMake target sakura::hdf5 (it defines SAKURA_WITH_HDF5=1)"
#endif

#include <hdf5.h>
#if defined(SAKURA_HDF5_ZLIB)
#include <zlib.h>
#endif

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
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

/// Little-endian unsigned integer of `n` <= 8 bytes (HDF5's on-disk encoding of sizes and addresses).
inline std::uint64_t le(const unsigned char* p, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = n; i-- > 0;) v = (v << 8) | p[i];
  return v;
}

/// The all-ones address HDF5 writes for "undefined" (for `n`-byte addresses).
inline std::uint64_t undefined_address(std::size_t n) {
  return n >= 8 ? ~std::uint64_t{0} : (std::uint64_t{1} << (8 * n)) - 1;
}

/// Bounds-checked little-endian reads over the bytes of one on-disk structure: running past its
/// end, or a failed check, is a sakura::Error naming the place (file and HDF5 path) and the structure.
class Cursor {
 public:
  Cursor(const unsigned char* p, std::size_t n, const std::string& where, const char* what)
      : p_(p), n_(n), where_(where), what_(what) {}
  [[noreturn]] void bad(const char* why) const {
    sakura::detail::fail(where_, ": damaged ", what_, ": ", why, "; the file is corrupt, write it again from its source");
  }
  void need(bool ok, const char* why) const {
    if (!ok) bad(why);
  }
  const unsigned char* take(std::uint64_t k) {
    need(k <= n_ - at_, "it ends early");
    const unsigned char* q = p_ + at_;
    at_ += static_cast<std::size_t>(k);
    return q;
  }
  std::uint64_t get(std::size_t k) { return le(take(k), k); }
  /// The length (with its NUL) of the NUL-terminated name that starts here.
  std::size_t name_length() const {
    const void* z = std::memchr(p_ + at_, '\0', n_ - at_);
    need(z != nullptr, "a name without its terminator");
    return static_cast<std::size_t>(static_cast<const unsigned char*>(z) - (p_ + at_)) + 1;
  }
  std::size_t left() const { return n_ - at_; }

 private:
  const unsigned char* p_;
  std::size_t n_, at_ = 0;
  const std::string& where_;
  const char* what_;
};

/// The file behind a reader: its size and layout facts (for bounds), a plain read handle, and
/// the global heap collections (where variable-length strings live), validated once.
class FileCtx {
 public:
  /// One heap object: where its bytes start in the file and how many there are.
  struct HeapObject {
    std::uint64_t offset = 0, size = 0;
  };

  /// Opens the file and reads its superblock here, not through libhdf5: sizes, base address,
  /// B-tree fan-outs and the root group's header address (check_file() walks from there before
  /// H5Fopen, which loads the root header and trusts it).
  explicit FileCtx(std::string path) : path_(std::move(path)) {
    std::error_code ec;
    bytes_ = std::filesystem::file_size(path_, ec);
    sakura::detail::require(!ec, path_, ": cannot read the file size (", ec.message(), ")");
    raw_.reset(std::fopen(path_.c_str(), "rb"));
    sakura::detail::require(raw_ != nullptr, path_, ": cannot open file");
    read_superblock();
  }
  /// The same, for callers that opened the file already (the handle is not needed).
  FileCtx(std::string path, hid_t /*file*/) : FileCtx(std::move(path)) {}
  FileCtx(const FileCtx&) = delete;
  FileCtx& operator=(const FileCtx&) = delete;

  const std::string& path() const { return path_; }
  std::uint64_t bytes() const { return bytes_; }
  std::uint64_t base() const { return base_; }
  std::size_t sizeof_addr() const { return sizeof_addr_; }
  std::size_t sizeof_size() const { return sizeof_size_; }
  /// B-tree fan-outs (superblock): group nodes, symbol table nodes, chunk index nodes.
  unsigned group_internal_k() const { return group_internal_k_; }
  unsigned group_leaf_k() const { return group_leaf_k_; }
  unsigned chunk_k() const { return chunk_k_; }
  void set_k(unsigned chunk, unsigned internal, unsigned leaf) {  // a superblock extension's K message
    chunk_k_ = chunk;
    group_internal_k_ = internal;
    group_leaf_k_ = leaf;
  }
  /// Address (relative to base()) of the root group's object header, and of its superblock
  /// extension and cached symbol table (B-tree, local heap) where those are defined.
  std::uint64_t root_header() const { return root_; }
  std::optional<std::uint64_t> extension() const { return ext_; }
  std::optional<std::pair<std::uint64_t, std::uint64_t>> root_cached_stab() const { return root_stab_; }
  bool defined(std::uint64_t addr) const { return addr != undefined_address(sizeof_addr_); }
  /// Whether a structure of n bytes at addr (relative to base()) lies within the file and below
  /// its end-of-file address (libhdf5 refuses reads past that; its error paths then leaked).
  bool within(std::uint64_t addr, std::uint64_t n) const {
    const std::uint64_t end = std::min(eof_, bytes_ - std::min(base_, bytes_));
    return addr <= end && n <= end - addr;
  }

  /// Reads n bytes at a file offset (bounds already checked by the caller).
  void read_at(std::uint64_t off, void* buf, std::size_t n) const {
    const bool ok = off <= bytes_ && n <= bytes_ - off && fseeko(raw_.get(), static_cast<off_t>(off), SEEK_SET) == 0 &&
                    std::fread(buf, 1, n, raw_.get()) == n;
    sakura::detail::require(ok, path_, ": cannot read ", n, " bytes at byte ", off, " (the file is truncated?)");
  }

  /// Marks [begin, end) as numbers only (X's arrays): the heap scan skips it.
  void skip(std::uint64_t begin, std::uint64_t end) { skip_.emplace_back(begin, std::min(end, bytes_)); }

  /// The validated heap object a string reference points to, or null.
  const HeapObject* heap_object(std::uint64_t addr, std::uint32_t idx) {
    scan_heaps();
    const auto h = heaps_.find(base_ + addr);
    if (h == heaps_.end()) return nullptr;
    const auto o = std::lower_bound(h->second.begin(), h->second.end(), idx,
                                    [](const auto& e, std::uint32_t i) { return e.first < i; });
    return o == h->second.end() || o->first != idx ? nullptr : &o->second;
  }

  /// Finds every global heap collection ("GCOL", version 1) and checks its object list the way
  /// libhdf5 walks it; a damaged one throws. Runs once, before libhdf5 reads any string.
  void scan_heaps() {
    if (scanned_) return;
    scanned_ = true;
    std::sort(skip_.begin(), skip_.end());
    std::vector<std::uint64_t> found;
    std::vector<unsigned char> buf;
    std::uint64_t from = 0;
    auto segment = [&](std::uint64_t a, std::uint64_t b) {  // scan [a, b), blocks overlapping by 4 bytes
      constexpr std::uint64_t kBlock = std::uint64_t{8} << 20;
      for (std::uint64_t pos = a; pos + 5 <= b;) {
        const auto n = static_cast<std::size_t>(std::min(kBlock, b - pos));
        buf.resize(n);
        read_at(pos, buf.data(), n);
        for (std::size_t i = 0; i + 5 <= n; ++i) {
          const auto* hit = static_cast<const unsigned char*>(std::memchr(buf.data() + i, 'G', n - 4 - i));
          if (!hit) break;
          i = static_cast<std::size_t>(hit - buf.data());
          if (std::memcmp(hit, "GCOL\x01", 5) == 0) found.push_back(pos + i);
        }
        if (pos + n >= b) break;
        pos += n - 4;
      }
    };
    for (const auto& [b, e] : skip_) {
      if (b > from) segment(from, b);
      from = std::max(from, e);
    }
    segment(from, bytes_);
    for (std::uint64_t off : found) add_heap(off);
  }

 private:
  /// Superblock versions 0-3 (format spec III.A). Versions 2 and 3 carry a checksum that libhdf5
  /// verifies; the fields read here are checked by what uses them.
  void read_superblock() {
    static constexpr unsigned char kSig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    std::uint64_t at = 0;  // the signature is at 0, 512, 1024, 2048, ... (after a user block)
    unsigned char sig[8];
    for (;; at = at ? 2 * at : 512) {
      sakura::detail::require(at <= bytes_ && bytes_ - at >= 8, path_,
                              ": cannot open as an HDF5 file (no HDF5 signature)");
      read_at(at, sig, 8);
      if (std::memcmp(sig, kSig, 8) == 0) break;
    }
    unsigned char b[128] = {};
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(sizeof b, bytes_ - at));
    read_at(at, b, n);
    Cursor c(b, n, path_, "HDF5 superblock");
    c.take(8);
    const auto version = c.get(1);
    c.need(version <= 3, "unknown version");
    if (version <= 1) c.take(4);  // free-space, root group and shared-header versions, reserved
    sizeof_addr_ = c.get(1);
    sizeof_size_ = c.get(1);
    c.need((sizeof_addr_ == 2 || sizeof_addr_ == 4 || sizeof_addr_ == 8) &&
               (sizeof_size_ == 2 || sizeof_size_ == 4 || sizeof_size_ == 8),
           "address or length sizes other than 2, 4 or 8 bytes");
    const std::size_t A = sizeof_addr_;
    base_ = at;  // libhdf5 takes the signature's position as the base address
    if (version >= 2) {
      c.take(1);  // flags
      const std::uint64_t base = c.get(A), ext = c.get(A);
      set_eof(base, c.get(A));
      root_ = c.get(A);
      if (defined(ext)) ext_ = ext;
      return;
    }
    c.take(1);
    group_leaf_k_ = static_cast<unsigned>(c.get(2));
    group_internal_k_ = static_cast<unsigned>(c.get(2));
    c.take(4);  // file consistency flags
    if (version == 1) {
      chunk_k_ = static_cast<unsigned>(c.get(2));
      c.take(2);
    }
    c.need(group_leaf_k_ > 0 && group_internal_k_ > 0 && chunk_k_ > 0, "a B-tree fan-out of 0");
    const std::uint64_t base = c.get(A), ext = c.get(A);
    set_eof(base, c.get(A));
    c.need(!defined(c.get(A)), "a driver information block: the file was written for the family or multi "
                               "driver, which this reader does not use");
    if (defined(ext)) ext_ = ext;
    c.take(sizeof_size_);  // the root's link name offset
    root_ = c.get(A);
    const std::uint64_t cache = c.get(4);
    c.take(4);
    const unsigned char* scratch = c.take(16);
    if (cache == 1) root_stab_.emplace(le(scratch, A), le(scratch + A, A));
  }

  /// The end-of-file address as libhdf5 uses it: a base address other than the signature's
  /// position is replaced by that position, and the end address shifted by the difference.
  void set_eof(std::uint64_t base, std::uint64_t eof) {
    if (base >= base_) eof_ = eof - std::min(eof, base - base_);
    else eof_ = eof + std::min(base_ - base, ~eof);
  }

  void add_heap(std::uint64_t off) {
    const std::size_t L = sizeof_size_, hdr = 8 + L, objhdr = 8 + L;
    if (heaps_.count(off) || off + hdr > bytes_) return;
    std::vector<unsigned char> h(hdr);
    read_at(off, h.data(), hdr);
    const std::uint64_t size = le(h.data() + 8, L);
    if (size < hdr || size > bytes_ - off) return;  // not a heap (libhdf5 rejects one it is pointed at)
    auto damaged = [&](std::uint64_t at, const char* why) {
      sakura::detail::fail(path_, ": damaged global heap (the storage of variable-length strings) at byte ", off,
                           ": ", why, " at byte ", off + at, "; the file is corrupt, write it again from its source");
    };
    std::vector<unsigned char> c(static_cast<std::size_t>(size));
    read_at(off, c.data(), c.size());
    auto& objects = heaps_[off];
    for (std::uint64_t p = hdr; p < size;) {
      if (p + objhdr > size) break;  // a tail too small for an object header is free space
      const auto idx = static_cast<std::uint32_t>(le(c.data() + p, 2));
      const std::uint64_t osize = le(c.data() + p + 8, L);
      if (osize > size - p) damaged(p, "an object larger than its collection");
      const std::uint64_t need = idx == 0 ? osize : objhdr + (osize + 7) / 8 * 8;
      if (need < (idx == 0 ? objhdr : 1) || need > size - p) damaged(p, "an object overrunning its collection");
      if (idx != 0) objects.emplace_back(idx, HeapObject{off + p + objhdr, osize});
      p += need;
    }
    std::stable_sort(objects.begin(), objects.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    const auto twice = std::adjacent_find(objects.begin(), objects.end(),
                                          [](const auto& a, const auto& b) { return a.first == b.first; });
    if (twice != objects.end()) damaged(twice[1].second.offset - off - objhdr, "an object index used twice");
  }

  std::string path_;
  struct Close {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Close> raw_;  // closed also when the constructor throws (a damaged superblock)
  std::uint64_t bytes_ = 0, base_ = 0;
  std::size_t sizeof_addr_ = 8, sizeof_size_ = 8;
  unsigned group_internal_k_ = 16, group_leaf_k_ = 4, chunk_k_ = 32;  // libhdf5's defaults
  std::uint64_t root_ = 0, eof_ = 0;  // eof_: the superblock's end-of-file address (libhdf5's limit)
  std::optional<std::uint64_t> ext_;
  std::optional<std::pair<std::uint64_t, std::uint64_t>> root_stab_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> skip_;
  bool scanned_ = false;
  // by file offset; each heap's objects sorted by index (24 bytes an object: an atlas's names are millions)
  std::unordered_map<std::uint64_t, std::vector<std::pair<std::uint32_t, HeapObject>>> heaps_;

 public:
  std::unordered_map<std::uint64_t, bool> headers_checked;  ///< object header address -> walked
  std::unordered_set<std::uint64_t> trees_checked;  ///< B-tree roots (groups, chunk indexes) checked
  std::unordered_map<std::uint64_t, std::vector<unsigned char>> local_heaps;  ///< checked, by address
  std::unordered_set<std::uint64_t> filtered_checked;  ///< datasets whose filtered chunks were checked
};

/// An open group or dataset with the file and HDF5 path that error messages name. `ctx` (set by
/// read_h5ad) bounds reads by the file; without it only libhdf5's own checks apply.
struct Node {
  Handle h;
  std::string file, path;
  FileCtx* ctx = nullptr;
  hid_t id() const { return h.get(); }
  std::string where() const { return file + ": HDF5 path '" + path + "'"; }
  bool is_group() const { return H5Iget_type(id()) == H5I_GROUP; }
};

inline bool has(const Node& n, const std::string& name) {
  return name.find('/') == std::string::npos && H5Lexists(n.id(), name.c_str(), H5P_DEFAULT) > 0;
}
/// The file address of a node's object header.
inline std::uint64_t header_address(const Node& n) {
#if H5_VERSION_GE(1, 12, 0)
  H5O_info2_t info;
  haddr_t addr = HADDR_UNDEF;
  const bool ok = H5Oget_info3(n.id(), &info, H5O_INFO_BASIC) >= 0 &&
                  H5VLnative_token_to_addr(n.id(), info.token, &addr) >= 0;
#else
  H5O_info_t info;
  const bool ok = H5Oget_info2(n.id(), &info, H5O_INFO_BASIC) >= 0;
  const haddr_t addr = info.addr;
#endif
  sakura::detail::require(ok && addr != HADDR_UNDEF, n.where(), ": unreadable object header (damaged file)");
  return addr;
}

/// Checks an encoded datatype (with its members and base types: format spec IV.A.2.d) and returns
/// its size in bytes. libhdf5 1.10 trusts these fields: a damaged size or base type made it
/// allocate gigabytes converting variable-length strings (H5T__conv_vlen).
inline std::uint64_t check_datatype(Cursor& c, int depth = 0) {
  c.need(depth < 8, "datatypes nested too deeply");
  const auto cv = static_cast<unsigned>(c.get(1));
  const unsigned cls = cv & 15, version = cv >> 4;
  const unsigned char* bits = c.take(3);
  const std::uint64_t size = c.get(4), nbits = 8 * size;
  c.need(version >= 1 && version <= 4, "a datatype of unknown version");
  c.need(size >= 1 && size <= (std::uint64_t{1} << 24), "a datatype of 0 or more than 16 MiB per element");
  auto padded = [&](std::size_t k) { return version >= 3 ? k : (k + 7) / 8 * 8; };
  switch (cls) {
    case 0:
    case 4: {  // integer, bitfield
      const std::uint64_t offset = c.get(2), precision = c.get(2);
      c.need(precision >= 1 && offset + precision <= nbits, "integer bits outside its size");
      break;
    }
    case 1: {  // floating point
      const std::uint64_t offset = c.get(2), precision = c.get(2), epos = c.get(1), esize = c.get(1), mpos = c.get(1),
                          msize = c.get(1);
      c.get(4);  // exponent bias
      c.need(precision >= 1 && offset + precision <= nbits && esize >= 1 && msize >= 1 && epos + esize <= precision &&
                 mpos + msize <= precision && bits[1] < precision,
             "floating-point fields outside its size");
      break;
    }
    case 2: c.get(2); break;  // time
    case 3:                   // fixed-length string
    case 7: break;            // reference
    case 5: c.take(bits[0]); break;  // opaque: its tag
    case 6: {                        // compound
      const std::size_t members = le(bits, 2);
      c.need(members >= 1, "a compound of no members");
      std::size_t offset_bytes = 1;  // version 3: as few bytes as the size needs
      while (offset_bytes < 4 && (size >> (8 * offset_bytes)) != 0) ++offset_bytes;
      for (std::size_t m = 0; m < members; ++m) {
        c.take(padded(c.name_length()));
        const std::uint64_t offset = c.get(version >= 3 ? offset_bytes : 4);
        double count = 1;
        if (version == 1) {  // dimensionality, reserved, permutation, reserved, four dimension sizes
          const std::uint64_t rank = c.get(1);
          c.take(3 + 4 + 4);
          c.need(rank <= 4, "a compound member of more than 4 dimensions");
          for (std::uint64_t r = 0; r < 4; ++r) {
            const std::uint64_t dim = c.get(4);
            if (r < rank) count *= static_cast<double>(dim);
          }
        }
        const double member = count * static_cast<double>(check_datatype(c, depth + 1));
        c.need(static_cast<double>(offset) + member <= static_cast<double>(size), "a compound member outside its size");
      }
      break;
    }
    case 8: {  // enumeration: base type, names, values
      const std::uint64_t base = check_datatype(c, depth + 1);
      c.need(base == size, "an enumeration of another size than its base type");  // libhdf5 copies size x members
      const std::size_t members = le(bits, 2);
      for (std::size_t m = 0; m < members; ++m) c.take(padded(c.name_length()));
      c.take(members * base);
      break;
    }
    case 9: {  // variable length: a sequence, or a string of 1-byte characters
      const unsigned kind = bits[0] & 15;
      c.need(kind <= 1, "a variable-length type of unknown kind");
      const std::uint64_t base = check_datatype(c, depth + 1);
      c.need(kind == 0 || base == 1, "a variable-length string of characters wider than 1 byte");
      c.need(base <= (std::uint64_t{1} << 16), "a variable-length sequence of elements over 64 KiB");
      break;
    }
    case 10: {  // array
      const std::uint64_t rank = c.get(1);
      c.need(rank >= 1 && rank <= 32, "an array type of 0 or more than 32 dimensions");
      if (version < 3) c.take(3);
      double count = 1;
      for (std::uint64_t r = 0; r < rank; ++r) {
        const std::uint64_t dim = c.get(4);
        c.need(dim >= 1, "an array type with a dimension of 0");
        count *= static_cast<double>(dim);
      }
      if (version < 3) c.take(4 * rank);  // permutation
      c.need(count * static_cast<double>(check_datatype(c, depth + 1)) == static_cast<double>(size),
             "an array type of another size than its elements");
      break;
    }
    default: c.bad("a datatype of unknown class");
  }
  return size;
}

/// A dataspace message (IV.A.2.b): rank, sizes and maximum sizes. Returns the rank, and the
/// number of elements when `elements` is given.
inline unsigned check_dataspace(Cursor& c, std::size_t L, double* elements = nullptr) {
  const std::uint64_t version = c.get(1), rank = c.get(1), flags = c.get(1);
  c.need(version == 1 || version == 2, "a dataspace of unknown version");
  c.need(rank <= 32, "a dataspace of more than 32 dimensions");
  const bool null = version == 2 && c.get(1) == 2;  // version 2: the dataspace type (2: null)
  if (version == 1) c.take(5);
  std::uint64_t dims[32];
  double n = null ? 0 : 1;
  for (std::uint64_t r = 0; r < rank; ++r) n *= static_cast<double>(dims[r] = c.get(L));
  if (elements) *elements = n;
  if (flags & 1)
    for (std::uint64_t r = 0; r < rank; ++r) {
      const std::uint64_t max = c.get(L);
      c.need(max >= dims[r] || max == undefined_address(L), "a maximum size below the size");
    }
  return static_cast<unsigned>(rank);
}

/// A filter pipeline message (IV.A.2.l): every filter's name and parameters within the message.
inline void check_filters(Cursor& c) {
  const std::uint64_t version = c.get(1), n = c.get(1);
  c.need((version == 1 || version == 2) && n <= 32, "a filter pipeline of unknown version or over 32 filters");
  if (version == 1) c.take(6);
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t id = c.get(2);
    const std::uint64_t name_length = version == 1 || id >= 256 ? c.get(2) : 0;
    c.take(2);  // flags
    const std::uint64_t values = c.get(2);
    if (name_length > 0) {
      const unsigned char* name = c.take(name_length);
      c.need(std::memchr(name, '\0', static_cast<std::size_t>(name_length)) != nullptr,
             "a filter name without its terminator");
    }
    c.take(4 * values + (version == 1 && values % 2 ? 4 : 0));
  }
}

/// A local heap (III.D): its header, its data within the file, and its free list (a cycle there
/// made libhdf5 allocate list entries forever; a damaged size made it allocate gigabytes).
/// Returns the heap's data, kept for the names that symbol tables point into.
inline const std::vector<unsigned char>& check_local_heap(FileCtx& f, std::uint64_t addr, const std::string& where) {
  if (const auto it = f.local_heaps.find(addr); it != f.local_heaps.end()) return it->second;
  const std::size_t A = f.sizeof_addr(), L = f.sizeof_size(), n = 8 + 2 * L + A;
  unsigned char h[8 + 2 * 8 + 8];
  Cursor head(h, n, where, "local heap (a group's link names)");
  head.need(f.within(addr, n), "beyond the end of the file");
  f.read_at(f.base() + addr, h, n);
  head.need(std::memcmp(head.take(4), "HEAP", 4) == 0, "no heap signature");
  head.need(head.get(1) == 0, "unknown version");
  head.take(3);
  const std::uint64_t size = head.get(L), free_list = head.get(L), data_at = head.get(A);
  head.need(f.within(data_at, size), "its data beyond the end of the file");
  std::vector<unsigned char> data(static_cast<std::size_t>(size));
  f.read_at(f.base() + data_at, data.data(), data.size());
  Cursor c(data.data(), data.size(), where, "local heap (a group's link names)");
  std::unordered_set<std::uint64_t> seen;
  for (std::uint64_t at = free_list; at != 1;) {  // 1: the end of the list
    c.need(at < size && size - at >= 2 * L && seen.insert(at).second, "a broken free list");
    const std::uint64_t next = le(&data[at], L), bytes = le(&data[at + L], L);
    c.need(bytes >= 2 * L && bytes <= size - at, "a free block outside the heap");
    at = next;
  }
  return f.local_heaps.emplace(addr, std::move(data)).first->second;
}

/// The NUL-terminated name at `offset` of a local heap's data.
inline std::string heap_name(const std::vector<unsigned char>& heap, std::uint64_t offset, const Cursor& c) {
  c.need(offset < heap.size(), "a name offset beyond its local heap");
  const void* end = std::memchr(heap.data() + offset, '\0', heap.size() - static_cast<std::size_t>(offset));
  c.need(end != nullptr, "a name running past its local heap");
  const auto* begin = reinterpret_cast<const char*>(heap.data() + offset);
  return std::string(begin, static_cast<const char*>(end));
}

/// The place of a group's member: "<file>: HDF5 path '/obs'" and "celltype" give ".../obs/celltype'".
inline std::string member_where(const std::string& where, const std::string& name) {
  if (where.empty() || where.back() != '\'') return where + "/" + name;
  const std::string head = where.substr(0, where.size() - 1);
  return head + (head.back() == '/' ? "" : "/") + name + "'";
}

/// A hard-linked object found while walking a group (or a committed datatype a header refers to).
struct Child {
  std::uint64_t addr;
  std::string name;
};

/// One version-1 B-tree node (III.A.1): `key` bytes per key, read whole as libhdf5 reads it.
/// Calls child(i, key_i, address_i, level) for each of its entries.
template <class F>
void check_btree_node(FileCtx& f, std::uint64_t addr, unsigned type, unsigned k, std::size_t key, int level,
                      std::unordered_set<std::uint64_t>& seen, const std::string& where, F&& child) {
  const char* what = type == 0 ? "group B-tree" : "chunk index B-tree";
  const std::size_t A = f.sizeof_addr(), n = 8 + 2 * A + (2 * std::size_t{k} + 1) * key + 2 * std::size_t{k} * A;
  std::vector<unsigned char> b(n);
  Cursor c(b.data(), n, where, what);
  c.need(f.within(addr, n), "a node beyond the end of the file");
  c.need(seen.insert(addr).second, "a node reached twice");
  f.read_at(f.base() + addr, b.data(), n);
  c.need(std::memcmp(c.take(4), "TREE", 4) == 0 && c.get(1) == type, "no node signature");
  const auto node_level = static_cast<int>(c.get(1));
  const std::uint64_t entries = c.get(2);
  c.need(level < 0 || node_level == level, "a node at the wrong level");
  c.need(entries <= 2 * std::uint64_t{k}, "more entries than a node holds");
  c.take(2 * A);  // siblings
  for (std::uint64_t i = 0; i < entries; ++i) {
    const unsigned char* key_i = c.take(key);
    child(key_i, c.get(A), node_level, c);
  }
}

/// A group's symbol table (III.B-C, D): B-tree, symbol table nodes, link names. Collects the
/// linked objects when `children` is given.
inline void check_stab(FileCtx& f, std::uint64_t btree, std::uint64_t heap_addr, const std::string& where,
                       std::vector<Child>* children) {
  if (!children && f.trees_checked.count(btree)) return;
  f.trees_checked.insert(btree);  // now: a member caching its own group's table must not recurse
  const auto& heap = check_local_heap(f, heap_addr, where);
  const std::size_t A = f.sizeof_addr(), L = f.sizeof_size(), entry = L + A + 24;
  const unsigned leaf_k = f.group_leaf_k();
  std::unordered_set<std::uint64_t> seen;
  auto snod = [&](std::uint64_t addr) {
    const std::size_t n = 8 + 2 * std::size_t{leaf_k} * entry;
    std::vector<unsigned char> b(n);
    Cursor c(b.data(), n, where, "symbol table node");
    c.need(f.within(addr, n), "beyond the end of the file");
    c.need(seen.insert(addr).second, "a node reached twice");
    f.read_at(f.base() + addr, b.data(), n);
    c.need(std::memcmp(c.take(4), "SNOD", 4) == 0 && c.get(1) == 1, "no node signature");
    c.take(1);
    const std::uint64_t symbols = c.get(2);
    c.need(symbols <= 2 * std::uint64_t{leaf_k}, "more entries than a node holds");
    for (std::uint64_t i = 0; i < symbols; ++i) {
      const std::string name = heap_name(heap, c.get(L), c);
      const std::uint64_t header = c.get(A), cache = c.get(4);
      c.take(4);
      const unsigned char* scratch = c.take(16);
      c.need(cache <= 2, "an entry of unknown cache type");
      if (cache == 2) heap_name(heap, le(scratch, 4), c);  // a soft link's value
      if (cache == 1) check_stab(f, le(scratch, A), le(scratch + A, A), member_where(where, name), nullptr);
      if (cache != 2 && children) children->push_back({header, name});
    }
  };
  std::function<void(std::uint64_t, int)> node = [&](std::uint64_t addr, int level) {
    check_btree_node(f, addr, 0, f.group_internal_k(), L, level, seen, where,
                     [&](const unsigned char* key, std::uint64_t child, int at_level, const Cursor& c) {
                       heap_name(heap, le(key, L), c);
                       if (at_level == 0) snod(child);
                       else node(child, at_level - 1);
                     });
  };
  node(btree, -1);
}

/// A chunked dataset's version-1 B-tree index (III.A.1, node type 1): nodes within the file at
/// the right levels, every chunk within the file.
inline void check_chunk_index(FileCtx& f, std::uint64_t btree, unsigned ndims, const std::string& where) {
  if (!f.defined(btree) || f.trees_checked.count(btree)) return;
  std::unordered_set<std::uint64_t> seen;
  std::function<void(std::uint64_t, int)> node = [&](std::uint64_t addr, int level) {
    check_btree_node(f, addr, 1, f.chunk_k(), 8 + 8 * std::size_t{ndims}, level, seen, where,
                     [&](const unsigned char* key, std::uint64_t child, int at_level, const Cursor& c) {
                       if (at_level > 0) return node(child, at_level - 1);
                       const std::uint64_t bytes = le(key, 4);
                       c.need(bytes > 0 && f.within(child, bytes), "a chunk beyond the end of the file");
                     });
  };
  node(btree, -1);
  f.trees_checked.insert(btree);
}

/// A data layout message (IV.A.2.i), versions 3 and 4 (HDF5 >= 1.6.3): storage within the file,
/// chunks of no zero extent (libhdf5 divided by it: SIGFPE) and at most 4 GiB, a sound chunk index.
/// What a layout message says: the chunk rank (with the element dimension; 0 when not chunked) and
/// the element size the chunks are laid out for, or the bytes of contiguous or compact data.
struct LayoutInfo {
  unsigned chunk_rank = 0;
  std::uint64_t chunk_elem = 0;
  std::optional<std::uint64_t> bytes;
};

inline LayoutInfo check_layout(Cursor& c, FileCtx& f, const std::string& where) {
  const std::size_t A = f.sizeof_addr(), L = f.sizeof_size();
  const std::uint64_t version = c.get(1);
  c.need(version == 3 || version == 4, "a data layout of a version before HDF5 1.6.3 or unknown");
  const std::uint64_t cls = c.get(1);
  if (cls == 0) {  // compact: the data is in the message
    const std::uint64_t bytes = c.get(2);
    c.take(bytes);
    return {0, 0, bytes};
  }
  if (cls == 1) {  // contiguous
    const std::uint64_t addr = c.get(A), size = c.get(L);
    c.need(!f.defined(addr) || f.within(addr, size), "contiguous data beyond the end of the file");
    return {0, 0, size};
  }
  c.need(cls == 2, "virtual or unknown storage (anndata writes contiguous or chunked data)");
  const std::uint64_t flags = version == 4 ? c.get(1) : 0, ndims = c.get(1);
  c.need(flags <= 3 && ndims >= 2 && ndims <= 33, "a chunk of 0 or more than 32 dimensions");
  const std::size_t dim_bytes = version == 4 ? c.get(1) : 0;
  c.need(version == 3 || (dim_bytes >= 1 && dim_bytes <= 8), "chunk sizes of an unknown width");
  std::uint64_t addr = version == 3 ? c.get(A) : 0;
  double bytes = 1;
  std::uint64_t dim = 0;
  for (std::uint64_t i = 0; i < ndims; ++i) {
    dim = c.get(version == 3 ? 4 : dim_bytes);
    c.need(dim >= 1, "a chunk of extent 0");
    bytes *= static_cast<double>(dim);
  }
  c.need(bytes < 0x1p32, "chunks of 4 GiB or more");
  if (version == 3) {
    check_chunk_index(f, addr, static_cast<unsigned>(ndims), where);
    return {static_cast<unsigned>(ndims), dim, std::nullopt};
  }
  const std::uint64_t index = c.get(1);  // version 4: the index structures carry checksums
  switch (index) {
    case 1: if (flags & 2) c.take(L + 4); break;  // single chunk: its filtered size and mask
    case 2: break;                                // implicit
    case 3: c.need(c.get(1) > 0, "a fixed array index of 0 page bits"); break;
    case 4: c.take(5); break;  // extensible array parameters
    case 5: c.take(6); break;  // version-2 B-tree parameters
    default: c.bad("an unknown chunk index type");
  }
  addr = c.get(A);
  c.need(!f.defined(addr) || f.within(addr, 0), "a chunk index beyond the end of the file");
  return {static_cast<unsigned>(ndims), dim, std::nullopt};
}

/// The object a shared message (IV.A.2, "shared") lives in, when it is another object header.
inline std::optional<std::uint64_t> shared_header(Cursor& c, std::size_t A) {
  const std::uint64_t version = c.get(1), type = c.get(1);
  c.need(version >= 1 && version <= 3, "a shared message of unknown version");
  if (version == 1) c.take(6);
  if (version == 3 && type == 1) return std::nullopt;  // in the shared message heap (checksummed)
  return c.get(A);
}

/// An attribute message (IV.A.2.m): name, datatype and dataspace within it, and the data as large
/// as they say (libhdf5 copies elements x size bytes without comparing). Returns {name, data}.
inline std::pair<std::string_view, std::string_view> check_attribute(const unsigned char* d, std::size_t size,
                                                                     const FileCtx& f, const std::string& where) {
  Cursor c(d, size, where, "object header (attribute message)");
  const std::uint64_t version = c.get(1), flags = c.get(1);
  c.need(version >= 1 && version <= 3, "unknown version");
  const std::size_t name_len = c.get(2), dt_len = c.get(2), ds_len = c.get(2);
  if (version == 3) c.take(1);  // name encoding
  auto part = [&](std::size_t n) { return c.take(version == 1 ? (n + 7) / 8 * 8 : n); };
  const unsigned char* name = part(name_len);
  c.need(name_len > 0 && std::memchr(name, '\0', name_len) != nullptr, "a name without its terminator");
  const unsigned char* dt = part(dt_len);
  const unsigned char* ds = part(ds_len);
  const unsigned shared = version == 1 ? 0 : static_cast<unsigned>(flags);
  double bytes = 1;
  if (!(shared & 1)) {
    Cursor t(dt, dt_len, where, "object header (attribute datatype)");
    bytes = static_cast<double>(check_datatype(t));
  }
  if (!(shared & 2)) {
    Cursor s(ds, ds_len, where, "object header (attribute dataspace)");
    std::uint64_t dims[32];
    const std::uint64_t ds_version = ds_len >= 4 ? ds[0] : 0;
    const unsigned rank = check_dataspace(s, f.sizeof_size());
    const std::size_t dims_at = ds_version == 1 ? 8 : 4;
    if (ds_version >= 2 && ds[3] == 2) bytes = 0;  // the null dataspace
    for (unsigned r = 0; r < rank; ++r) {
      dims[r] = le(ds + dims_at + r * f.sizeof_size(), f.sizeof_size());
      bytes *= static_cast<double>(dims[r]);
    }
  }
  c.need(bytes <= static_cast<double>(c.left()), "more data than the message holds");
  return {std::string_view(reinterpret_cast<const char*>(name), std::strlen(reinterpret_cast<const char*>(name))),
          std::string_view(reinterpret_cast<const char*>(d) + (size - c.left()), c.left())};
}

/// What libhdf5 1.10 refuses in a version-1 message's header while it loads an object header (its
/// error path then leaked the header: H5Fopen on the root group, H5Oopen): sizes not a multiple
/// of 8, contradictory flags, a reference count message (version 2 only), a type it does not know
/// flagged "fail if unknown", "shared" or "shareable" on a type that cannot be shared.
template <class Bad>
void check_message_flags(std::uint64_t type, std::uint64_t size, unsigned flags, Bad&& bad) {
  const bool shareable = type == 0x01 || type == 0x03 || type == 0x05 || type == 0x0b || type == 0x0c;
  const bool known = type <= 0x17 && type != 0x09;
  if (size % 8 != 0) bad("a message size that is not a multiple of 8");
  if ((flags & 0x02) && (flags & 0x04)) bad("a message flagged both shared and not shareable");
  if ((flags & 0x20) && ((flags & 0x08) || !(flags & 0x10))) bad("contradictory 'unknown message' flags");
  if ((flags & 0x42) && !shareable) bad("a message of a type that cannot be shared flagged as shared");
  if (type == 0x16) bad("a reference count message in a version-1 header");
  if (!known && (flags & 0x80)) bad("a message of unknown type that readers must not ignore");
}

/// Walks the version-1 object header at `addr` (what h5py writes by default) and checks every
/// message libhdf5 decodes when it opens the object: framing, continuation blocks and the message
/// count, dataspace, datatype, fill value, data layout (with its chunk index), filters,
/// attributes, links, external files, and a group's symbol table (B-tree, nodes, heap). libhdf5
/// 1.10 trusts these: damaged ones crashed, hung, leaked or allocated gigabytes inside it.
/// Returns the raw data of attribute `want` when found; adds the objects a group links to (and
/// committed datatypes) to `children` when given. Version-2 headers ("OHDR") carry checksums that
/// libhdf5 verifies, so random damage cannot get past them: not walked.
inline std::optional<std::vector<unsigned char>> walk_header_at(FileCtx& f, std::uint64_t addr, const std::string& where,
                                                                const std::string& want = {},
                                                                std::vector<Child>* children = nullptr) {
  std::optional<std::vector<unsigned char>> out;
  auto bad = [&](const char* why) { sakura::detail::fail(where, ": damaged object header (", why, ")"); };
  unsigned char prefix[16];
  if (!f.within(addr, sizeof prefix)) bad("beyond the end of the file");
  f.read_at(f.base() + addr, prefix, sizeof prefix);
  if (std::memcmp(prefix, "OHDR", 4) == 0) return out;  // version 2, checksummed
  if (prefix[0] != 1) bad("unknown version");
  const std::size_t A = f.sizeof_addr(), L = f.sizeof_size();
  std::vector<std::pair<std::uint64_t, std::uint64_t>> chunks{{addr + 16, le(prefix + 8, 4)}};
  std::uint64_t messages = 0;
  int space_rank = -1;
  std::uint64_t type_size = 0;
  double elements = -1;
  LayoutInfo layout;
  std::uint32_t present = 0;  // bit t: a message of type t (< 32) was seen
  std::vector<unsigned char> c;
  for (std::size_t k = 0; k < chunks.size(); ++k) {
    const auto [start, len] = chunks[k];
    if (k >= 64 || !f.within(start, len)) bad("a header block beyond the file");
    c.resize(static_cast<std::size_t>(len));
    f.read_at(f.base() + start, c.data(), c.size());
    std::size_t p = 0;
    for (; p + 8 <= c.size(); ++messages) {
      const auto type = le(&c[p], 2), size = le(&c[p + 2], 2);
      const unsigned flags = c[p + 4];
      if (size > c.size() - p - 8) bad("a message overrunning its block");
      check_message_flags(type, size, flags, bad);
      if (type < 32) present |= std::uint32_t{1} << type;
      const unsigned char* d = c.data() + p + 8;
      Cursor m(d, static_cast<std::size_t>(size), where, "object header");
      if (flags & 0x02) {  // shared: stored in another header (a committed datatype) or the shared heap
        if (const auto at = shared_header(m, A); at && children) children->push_back({*at, "(committed datatype)"});
        p += 8 + size;
        continue;
      }
      switch (type) {
        case 0x01: space_rank = static_cast<int>(check_dataspace(m, L, &elements)); break;
        case 0x03: type_size = check_datatype(m); break;
        case 0x04: m.take(m.get(4)); break;  // old fill value
        case 0x05: {                          // fill value
          const std::uint64_t version = m.get(1);
          m.need(version >= 1 && version <= 3, "a fill value of unknown version");
          bool defined = true;
          if (version < 3) {
            m.take(2);  // allocation and write times
            defined = m.get(1) != 0 || version == 1;
          } else {
            defined = (m.get(1) & 0x20) != 0;
          }
          if (defined && m.left() >= 4) {
            const std::uint64_t bytes = m.get(4);
            if (bytes != 0xffffffffu) m.take(bytes);
          }
          break;
        }
        case 0x06: {  // link (new-style groups)
          const std::uint64_t version = m.get(1), lflags = m.get(1);
          m.need(version == 1, "a link of unknown version");
          const std::uint64_t ltype = lflags & 0x08 ? m.get(1) : 0;
          if (lflags & 0x04) m.take(8);  // creation order
          if (lflags & 0x10) m.take(1);  // name encoding
          const std::uint64_t name_len = m.get(std::size_t{1} << (lflags & 3));
          m.need(name_len >= 1, "a link of an empty name");
          const unsigned char* name = m.take(name_len);
          if (ltype == 0) {
            const std::uint64_t target = m.get(A);
            if (children) children->push_back({target, std::string(reinterpret_cast<const char*>(name), name_len)});
          } else {
            m.take(m.get(2));  // soft, external or user-defined: its value
          }
          break;
        }
        case 0x07: {  // external file list: slots naming files in a local heap
          m.need(m.get(1) == 1, "an external file list of unknown version");
          m.take(3);
          const std::uint64_t allocated = m.get(2), used = m.get(2);
          m.need(used <= allocated, "more external files used than allocated");
          const auto& heap = check_local_heap(f, m.get(A), where);
          for (std::uint64_t i = 0; i < used; ++i) {
            heap_name(heap, m.get(L), m);
            m.take(2 * L);
          }
          break;
        }
        case 0x08: layout = check_layout(m, f, where); break;
        case 0x0b: check_filters(m); break;
        case 0x0c: {  // an attribute
          const auto [name, data] = check_attribute(d, static_cast<std::size_t>(size), f, where);
          if (!want.empty() && name == want) out.emplace(data.begin(), data.end());
          break;
        }
        case 0x0d: m.name_length(); break;  // comment: a NUL-terminated string
        case 0x0e: m.take(14); break;       // old modification time
        case 0x10: {                        // continuation: another block of messages
          const std::uint64_t at = m.get(A), n = m.get(L);
          chunks.emplace_back(at, n);
          break;
        }
        case 0x11: {  // symbol table (old-style groups)
          const std::uint64_t btree = m.get(A), heap = m.get(A);
          check_stab(f, btree, heap, where, children);
          break;
        }
        case 0x12: m.take(8); break;  // modification time
        case 0x13: {                  // B-tree fan-outs (superblock extension)
          m.need(m.get(1) == 0, "a B-tree 'K' message of unknown version");
          const auto chunk = static_cast<unsigned>(m.get(2)), internal = static_cast<unsigned>(m.get(2)),
                     leaf = static_cast<unsigned>(m.get(2));
          m.need(chunk > 0 && internal > 0 && leaf > 0, "a B-tree fan-out of 0");
          f.set_k(chunk, internal, leaf);
          break;
        }
        default: break;  // nothing libhdf5 reads beyond the message (link and attribute info: checksummed heaps)
      }
      p += 8 + size;
    }
    if (p != c.size()) bad("a header block not filled by its messages");
  }
  if (messages != le(prefix + 2, 2)) bad("a message count that disagrees with its messages");
  // a datatype and a dataspace make a dataset for libhdf5, which then leaked on a missing layout
  const auto has = [&](unsigned t) { return (present >> t) & 1u; };
  if (has(0x01) && has(0x03) && !has(0x08)) bad("a dataset without a data layout message");
  const int chunk_rank = static_cast<int>(layout.chunk_rank);
  if (chunk_rank > 0 && space_rank >= 0 && chunk_rank != space_rank + 1) bad("chunks of another rank than the data");
  // libhdf5 sizes a chunk by the layout and copies out by the datatype: a heap overflow if they differ
  if (chunk_rank > 0 && type_size > 0 && layout.chunk_elem != type_size) bad("chunks laid out for another element size");
  const double data_bytes = elements * static_cast<double>(type_size);
  if (layout.bytes && type_size > 0 && elements >= 0 && static_cast<double>(*layout.bytes) != data_bytes)
    bad("data of another size than its shape and type");  // libhdf5 refuses it opening the dataset, and leaked
  return out;
}

/// Checks every object reachable from the root group through hard links (old-style symbol
/// tables and link messages), the superblock extension and the root's cached symbol table, before
/// libhdf5 opens the file: H5Fopen already loads the root's header, and opening or looking up any
/// object loads its header, layout, chunk index and its group's B-tree and heap, trusting them.
inline void check_file(FileCtx& f) {
  if (const auto ext = f.extension()) walk_header_at(f, *ext, f.path() + ": superblock extension");
  if (const auto stab = f.root_cached_stab())
    check_stab(f, stab->first, stab->second, f.path() + ": HDF5 path '/'", nullptr);
  std::vector<std::pair<std::uint64_t, std::string>> todo{{f.root_header(), "/"}};
  for (std::size_t i = 0; i < todo.size(); ++i) {
    const auto [addr, path] = todo[i];
    auto& done = f.headers_checked[addr];
    if (done) continue;
    done = true;
    sakura::detail::require(todo.size() < (std::size_t{1} << 20), f.path(),
                            ": more than a million objects (damaged file?)");
    std::vector<Child> children;
    walk_header_at(f, addr, f.path() + ": HDF5 path '" + path + "'", {}, &children);
    for (auto& c : children) todo.emplace_back(c.addr, (path == "/" ? "/" : path + "/") + c.name);
  }
}

inline std::optional<std::vector<unsigned char>> walk_header(const Node& n, const std::string& want = {}) {
  return walk_header_at(*n.ctx, header_address(n), n.where(), want);
}

/// Checks a node's header once (see walk_header_at) before libhdf5 decodes its attributes.
inline void check_header(const Node& n) {
  if (!n.ctx) return;
  auto& done = n.ctx->headers_checked[header_address(n)];
  if (!done) walk_header(n);
  done = true;
}

/// Checks the header a hard link points to before libhdf5 loads it (H5Oopen).
inline void check_link_target(const Node& parent, const std::string& name, const std::string& where) {
  if (!parent.ctx) return;
#if H5_VERSION_GE(1, 12, 0)
  H5L_info2_t info;
  haddr_t addr = HADDR_UNDEF;
  const bool ok = H5Lget_info2(parent.id(), name.c_str(), &info, H5P_DEFAULT) >= 0 &&
                  (info.type != H5L_TYPE_HARD || H5VLnative_token_to_addr(parent.id(), info.u.token, &addr) >= 0);
#else
  H5L_info_t info;
  const bool ok = H5Lget_info(parent.id(), name.c_str(), &info, H5P_DEFAULT) >= 0;
  const haddr_t addr = info.u.address;
#endif
  sakura::detail::require(ok, where, ": unreadable link (damaged file)");
  if (info.type != H5L_TYPE_HARD) return;  // soft and external links: libhdf5 resolves and checks them
  auto& done = parent.ctx->headers_checked[addr];
  if (!done) walk_header_at(*parent.ctx, addr, where);
  done = true;
}

inline bool has_attr(const Node& n, const std::string& name) {
  check_header(n);
  return H5Aexists(n.id(), name.c_str()) > 0;
}

inline Node open(const Node& parent, const std::string& name) {
  const std::string path = (parent.path == "/" ? "/" : parent.path + "/") + name;
  const bool exists = has(parent, name);
  if (exists) check_link_target(parent, name, parent.file + ": HDF5 path '" + path + "'");
  Node n{Handle(exists ? H5Oopen(parent.id(), name.c_str(), H5P_DEFAULT) : -1, H5Oclose), parent.file, path,
         parent.ctx};
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

/// A dataset's shape, checked against what its storage can hold.
struct Extent {
  std::vector<hsize_t> dims;
  hsize_t n = 0;                ///< elements
  std::size_t elem_bytes = 0;   ///< bytes per element on disk
  hsize_t block = 1 << 20;      ///< elements per read: a multiple of the chunk (1-D), so no chunk is inflated twice
  bool vlen_string = false;
  bool contiguous = false;
};

/// Filters whose output can expand at most ~1032-fold (deflate's limit): shuffle, fletcher32, lzf.
inline bool bounded_filter(H5Z_filter_t f) {
  return f == H5Z_FILTER_DEFLATE || f == H5Z_FILTER_SHUFFLE || f == H5Z_FILTER_FLETCHER32 || f == 32000;
}

#if defined(SAKURA_HDF5_ZLIB)
/// The bytes a zlib stream inflates to, counted up to `cap` + 1 (no buffer of that size is kept);
/// nullopt when the stream is damaged or cut short.
inline std::optional<std::uint64_t> inflated_size(const unsigned char* p, std::uint64_t n, std::uint64_t cap) {
  z_stream z{};
  if (inflateInit(&z) != Z_OK) return std::nullopt;
  unsigned char out[1 << 16];
  z.next_in = const_cast<unsigned char*>(p);
  z.avail_in = static_cast<uInt>(std::min<std::uint64_t>(n, std::numeric_limits<uInt>::max()));
  int rc = Z_OK;
  while (rc == Z_OK && z.total_out <= cap) {
    z.next_out = out;
    z.avail_out = sizeof out;
    rc = inflate(&z, Z_NO_FLUSH);
  }
  const std::uint64_t total = z.total_out;
  inflateEnd(&z);
  if (rc != Z_STREAM_END && total <= cap) return std::nullopt;
  return total;
}
#endif

/// libhdf5 1.10 copies a whole chunk out of what its filters return without checking that they
/// returned a whole chunk: a deflate stream that inflates short made it read past its buffer. So
/// each chunk of a filtered dataset is read raw (H5Dread_chunk) and its filters undone by size,
/// deflate inflated here (counting bytes only), once per dataset before libhdf5 decompresses it.
/// Filters whose size we cannot follow (szip, n-bit, scale-offset, plugins) are left to libhdf5;
/// without zlib (SAKURA_HDF5_ZLIB, sakura::hdf5 adds it when found) nothing is checked here.
inline void check_filtered_chunks(const Node& d, hid_t dcpl, hid_t space, std::uint64_t chunk_bytes) {
#if defined(SAKURA_HDF5_ZLIB)
  if (!d.ctx || !d.ctx->filtered_checked.insert(header_address(d)).second) return;
  const int nfilters = H5Pget_nfilters(dcpl);
  std::vector<H5Z_filter_t> ids;
  for (int i = 0; i < nfilters; ++i) {
    unsigned flags = 0, cd[8];
    std::size_t nelem = 8;
    ids.push_back(H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &nelem, cd, 0, nullptr, nullptr));
  }
  hsize_t chunks = 0;
  if (H5Dget_num_chunks(d.id(), space, &chunks) < 0) return;
  std::vector<hsize_t> offset(static_cast<std::size_t>(std::max(1, H5Sget_simple_extent_ndims(space))));
  std::vector<unsigned char> raw;
  for (hsize_t k = 0; k < chunks; ++k) {
    unsigned mask = 0;
    haddr_t at = HADDR_UNDEF;
    hsize_t size = 0;
    std::uint32_t read_mask = 0;
    sakura::detail::require(H5Dget_chunk_info(d.id(), space, k, offset.data(), &mask, &at, &size) >= 0 &&
                                size <= d.ctx->bytes(),
                            d.where(), ": unreadable chunk ", k, " (damaged file)");
    raw.resize(static_cast<std::size_t>(size));
    sakura::detail::require(H5Dread_chunk(d.id(), H5P_DEFAULT, offset.data(), &read_mask, raw.data()) >= 0, d.where(),
                            ": cannot read chunk ", k, " (damaged file)");
    std::uint64_t n = size;
    bool bytes_known = true;  // whether raw still holds the data at this stage (it does until deflate)
    for (int i = nfilters - 1; i >= 0; --i) {
      if (mask & (1u << i)) continue;  // this filter was skipped for this chunk
      if (ids[static_cast<std::size_t>(i)] == H5Z_FILTER_FLETCHER32) {
        sakura::detail::require(n >= 4, d.where(), ": chunk ", k, " is shorter than its checksum (damaged file)");
        n -= 4;
      } else if (ids[static_cast<std::size_t>(i)] == H5Z_FILTER_DEFLATE && bytes_known) {
        const auto inflated = inflated_size(raw.data(), n, chunk_bytes);
        sakura::detail::require(inflated.has_value(), d.where(), ": chunk ", k,
                                " holds a damaged deflate stream; the file is corrupt, write it again from its source");
        n = *inflated;
        bytes_known = false;
      } else if (ids[static_cast<std::size_t>(i)] != H5Z_FILTER_SHUFFLE) {
        return;
      }
    }
    sakura::detail::require(n >= chunk_bytes, d.where(), ": chunk ", k, " holds ", n, " bytes once decompressed, not the ",
                            chunk_bytes, " of a chunk; the file is corrupt, write it again from its source");
  }
#else
  (void)d, (void)dcpl, (void)space, (void)chunk_bytes;
#endif
}

/// The extent of a dataset, after checking that its storage can hold it: uncompressed storage
/// must be as large as the extent, compressed storage (deflate, lzf) no more than 1100 times
/// smaller, every chunk stored, chunks at most 256 MiB, storage within the file. So a damaged
/// shape is an error here, before anything is allocated for it.
inline Extent extent(const Node& d) {
  Handle space(H5Dget_space(d.id()), H5Sclose), type(H5Dget_type(d.id()), H5Tclose),
      dcpl(H5Dget_create_plist(d.id()), H5Pclose);
  const int rank = space.ok() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  sakura::detail::require(type.ok() && dcpl.ok() && rank >= 0 && rank <= 32, d.where(),
                          ": not a dataset with a simple shape (or a damaged one)");
  Extent e;
  e.dims.resize(static_cast<std::size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), e.dims.data(), nullptr);
  e.vlen_string = H5Tget_class(type.get()) == H5T_STRING && H5Tis_variable_str(type.get()) > 0;
  const std::size_t addr = d.ctx ? d.ctx->sizeof_addr() : 8;
  e.elem_bytes = e.vlen_string ? 8 + addr : H5Tget_size(type.get());
  sakura::detail::require(e.elem_bytes > 0 && e.elem_bytes <= (std::size_t{1} << 20), d.where(),
                          ": elements of ", e.elem_bytes, " bytes (damaged type?)");
  double need = static_cast<double>(e.elem_bytes);  // double: never overflows, exact far enough
  e.n = 1;
  for (hsize_t x : e.dims) {
    need *= static_cast<double>(x);
    e.n *= x;  // unsigned: wraps harmlessly when huge, and `need` rejects that below
  }
  const std::string shape = [&] {
    std::string s;
    for (hsize_t x : e.dims) s += (s.empty() ? "" : " x ") + std::to_string(x);
    return s.empty() ? std::string("a scalar") : s;
  }();
  sakura::detail::require(need < 0x1p62, d.where(), ": declared shape ", shape, " is impossibly large (damaged file)");
  if (e.n == 0) return e;
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  sakura::detail::require(layout == H5D_CONTIGUOUS || layout == H5D_CHUNKED || layout == H5D_COMPACT, d.where(),
                          ": unsupported storage layout (virtual or damaged); anndata writes contiguous or chunked data");
  sakura::detail::require(H5Pget_external_count(dcpl.get()) == 0, d.where(),
                          ": data kept in external files is not read (anndata never writes it)");
  e.contiguous = layout == H5D_CONTIGUOUS;
  if (!d.ctx) return e;
  const double stored = static_cast<double>(H5Dget_storage_size(d.id()));
  const double file = static_cast<double>(d.ctx->bytes());
  sakura::detail::require(stored <= file, d.where(), ": claims ", static_cast<std::uint64_t>(stored),
                          " bytes of storage in a ", d.ctx->bytes(), "-byte file (damaged file)");
  const int nfilters = H5Pget_nfilters(dcpl.get());
  bool bounded = true;
  for (int i = 0; i < nfilters; ++i) {
    unsigned flags = 0;
    std::size_t nelem = 0;
    unsigned cd[8];
    bounded = bounded && bounded_filter(H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &nelem, cd, 0,
                                                       nullptr, nullptr));
  }
  const auto need_b = static_cast<std::uint64_t>(need), stored_b = static_cast<std::uint64_t>(stored);
  if (nfilters <= 0) {
    sakura::detail::require(stored >= need, d.where(), ": declares ", shape, " (", need_b, " bytes) but stores only ",
                            stored_b, " bytes; the file is damaged or was not completely written");
  } else if (bounded) {
    sakura::detail::require(need <= 1100.0 * stored + 4096.0, d.where(), ": declares ", shape, " (", need_b,
                            " bytes) in ", stored_b, " compressed bytes, more than the 1100-fold that deflate can "
                            "expand; the file is damaged");
  }
  if (layout == H5D_CHUNKED) {
    std::vector<hsize_t> chunk(e.dims.size());
    sakura::detail::require(H5Pget_chunk(dcpl.get(), rank, chunk.data()) == rank, d.where(), ": unreadable chunk shape");
    double chunk_bytes = static_cast<double>(e.elem_bytes), chunks = 1;
    for (std::size_t i = 0; i < chunk.size(); ++i) {
      sakura::detail::require(chunk[i] > 0, d.where(), ": chunk of extent 0 (damaged file)");
      chunk_bytes *= static_cast<double>(chunk[i]);
      chunks *= std::ceil(static_cast<double>(e.dims[i]) / static_cast<double>(chunk[i]));
    }
    sakura::detail::require(chunk_bytes <= 0x1p28, d.where(), ": chunks of ", static_cast<std::uint64_t>(chunk_bytes),
                            " bytes, more than 256 MiB (damaged file?)");
    hsize_t have = 0;
    sakura::detail::require(H5Dget_num_chunks(d.id(), space.get(), &have) >= 0 && static_cast<double>(have) >= chunks,
                            d.where(), ": declares ", shape, " (", static_cast<std::uint64_t>(chunks),
                            " chunks) but stores ", have,
                            " chunks; the file is damaged or was not completely written");
    if (rank == 1) e.block = std::max<hsize_t>(1, (hsize_t{1} << 20) / chunk[0]) * chunk[0];
    if (nfilters > 0) check_filtered_chunks(d, dcpl.get(), space.get(), static_cast<std::uint64_t>(chunk_bytes));
  }
  return e;
}

/// A 1-D dataset's extent.
inline Extent extent_1d(const Node& d) {
  Extent e = extent(d);
  sakura::detail::require(e.dims.size() == 1, d.where(), ": expected a 1-D dataset, found ", e.dims.size(),
                          " dimensions");
  return e;
}
inline Index length_1d(const Node& d) { return static_cast<Index>(extent_1d(d).dims[0]); }

/// Reads a hyperslab (start, count per dimension) of a dataset, converting to memtype.
inline void read_block(const Node& d, hid_t memtype, const std::vector<hsize_t>& start,
                       const std::vector<hsize_t>& count, void* out, hid_t dxpl = H5P_DEFAULT) {
  Handle fs(H5Dget_space(d.id()), H5Sclose);
  Handle ms(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
  const bool ok = fs.ok() && ms.ok() &&
                  H5Sselect_hyperslab(fs.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) >= 0 &&
                  H5Dread(d.id(), memtype, ms.get(), fs.get(), dxpl, out) >= 0;
  sakura::detail::require(ok, d.where(), ": read failed (corrupt file or a type that cannot convert)");
}

/// Calls f(offset, count) over a 1-D extent in blocks.
template <class F>
void in_blocks(const Extent& e, F&& f) {
  for (hsize_t off = 0; off < e.n; off += e.block) f(off, std::min(e.block, e.n - off));
}

/// Reads a whole 1-D dataset as U (HDF5 converts from the stored integer or float type), block by
/// block, so memory grows with what is actually read.
template <class U>
std::vector<U> read_all(const Node& d, hid_t memtype = native<U>()) {
  const Extent e = extent_1d(d);
  std::vector<U> v;
  v.reserve(static_cast<std::size_t>(std::min<hsize_t>(e.n, e.block)));
  in_blocks(e, [&](hsize_t off, hsize_t n) {
    v.resize(static_cast<std::size_t>(off + n));
    read_block(d, memtype, {off}, {n}, v.data() + off);
  });
  return v;
}

/// Checks the heap references of a variable-length string dataset against the validated heaps,
/// reading the raw references ourselves, so libhdf5 never follows a damaged one (it trusts them).
/// Possible for contiguous and uncompressed chunked storage; compressed strings rely on the heap
/// validation alone.
/// One stored string reference (length, heap address, object index) checked against the heaps.
inline void check_string_ref(FileCtx& f, const unsigned char* p, std::uint64_t i, const std::string& where) {
  const auto len = static_cast<std::uint32_t>(le(p, 4));
  if (len == 0) return;  // empty or null: libhdf5 reads no heap object
  const std::size_t addr_size = f.sizeof_addr();
  const std::uint64_t addr = le(p + 4, addr_size);
  const auto idx = static_cast<std::uint32_t>(le(p + 4 + addr_size, 4));
  const FileCtx::HeapObject* o = f.heap_object(addr, idx);
  if (!o || o->size != len)
    sakura::detail::fail(where, ": string ", i, " refers to ", o ? "a heap object of another size" :
                         "no valid heap object", " (length ", len, ", heap ", addr, ", object ", idx,
                         "); the file is damaged");
}

inline void check_string_refs(const Node& d, const Extent& e) {
  FileCtx& f = *d.ctx;
  const std::size_t esz = e.elem_bytes;
  const std::string where = d.where();
  auto check = [&](const unsigned char* p, std::uint64_t i) { check_string_ref(f, p, i, where); };
  auto raw = [&](std::uint64_t at, std::uint64_t first, std::uint64_t count) {
    std::vector<unsigned char> buf;
    for (std::uint64_t k = 0; k < count; k += 65536) {
      const std::uint64_t m = std::min<std::uint64_t>(65536, count - k);
      buf.resize(static_cast<std::size_t>(m * esz));
      f.read_at(f.base() + at + k * esz, buf.data(), buf.size());
      for (std::uint64_t j = 0; j < m; ++j) check(buf.data() + j * esz, first + k + j);
    }
  };
  if (e.contiguous) {
    const haddr_t at = H5Dget_offset(d.id());
    sakura::detail::require(at != HADDR_UNDEF, d.where(), ": strings declared but never written (damaged file)");
    raw(at - f.base(), 0, e.n);  // H5Dget_offset includes the base address
    return;
  }
  Handle dcpl(H5Dget_create_plist(d.id()), H5Pclose);
  if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED || H5Pget_nfilters(dcpl.get()) != 0) return;
  Handle space(H5Dget_space(d.id()), H5Sclose);  // libhdf5 1.10 refuses H5S_ALL here
  hsize_t chunks = 0, chunk = 0;
  H5Dget_num_chunks(d.id(), space.get(), &chunks);
  H5Pget_chunk(dcpl.get(), 1, &chunk);
  for (hsize_t k = 0; k < chunks; ++k) {
    hsize_t off = 0, size = 0;
    haddr_t at = HADDR_UNDEF;
    unsigned mask = 0;
    sakura::detail::require(H5Dget_chunk_info(d.id(), space.get(), k, &off, &mask, &at, &size) >= 0 &&
                                at != HADDR_UNDEF && off < e.n && size == chunk * esz,
                            d.where(), ": damaged chunk ", k, " of a string dataset");
    raw(at, off, std::min<hsize_t>(chunk, e.n - off));
  }
}

/// Variable-length strings of one read, from an allocator we own: every string libhdf5 makes is
/// freed here, also when the read fails halfway (no leak), and their total stays within the file's
/// size (a damaged length cannot make libhdf5 allocate gigabytes through us).
class VlenStrings {
 public:
  explicit VlenStrings(std::uint64_t budget) : budget_(budget) {
    dxpl_ = Handle(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
    H5Pset_vlen_mem_manager(dxpl_.get(), &VlenStrings::alloc, this, &VlenStrings::release, this);
  }
  VlenStrings(const VlenStrings&) = delete;
  VlenStrings& operator=(const VlenStrings&) = delete;
  ~VlenStrings() { clear(); }
  hid_t dxpl() const { return dxpl_.get(); }
  void clear() {
    for (void* p : owned_) std::free(p);
    owned_.clear();
  }

 private:
  static void* alloc(std::size_t n, void* self) {
    auto* s = static_cast<VlenStrings*>(self);
    if (n > s->budget_) return nullptr;  // libhdf5 then fails the read, which we report
    void* p = std::malloc(n ? n : 1);
    if (p) {
      s->budget_ -= n;
      s->owned_.push_back(p);
    }
    return p;
  }
  static void release(void* p, void* self) {
    auto& v = static_cast<VlenStrings*>(self)->owned_;
    if (auto it = std::find(v.begin(), v.end(), p); it != v.end()) {
      std::free(p);
      v.erase(it);
    }
  }
  Handle dxpl_;
  std::uint64_t budget_;
  std::vector<void*> owned_;
};

/// Fixed-length string bytes to text: cut at the first NUL, space padding removed when declared.
inline std::string fixed_text(const char* p, std::size_t sz, bool space_padded) {
  std::string_view s(p, sz);
  s = s.substr(0, s.find('\0'));
  if (space_padded) s = s.substr(0, s.find_last_not_of(' ') + 1);
  return std::string(s);
}

/// A 1-D string dataset (variable or fixed length), block by block.
inline std::vector<std::string> read_strings(const Node& d) {
  const Extent e = extent_1d(d);
  Handle ft(H5Dget_type(d.id()), H5Tclose);
  std::vector<std::string> out;
  out.reserve(static_cast<std::size_t>(std::min<hsize_t>(e.n, e.block)));
  if (e.vlen_string) {
    if (d.ctx) {
      d.ctx->scan_heaps();
      check_string_refs(d, e);
    }
    Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mt.get(), H5T_VARIABLE);
    H5Tset_cset(mt.get(), H5Tget_cset(ft.get()));
    // Every string is a heap object in the file, plus a terminator: twice the file bounds them all.
    VlenStrings mem(d.ctx ? 2 * d.ctx->bytes() + 65536 : std::numeric_limits<std::uint64_t>::max());
    std::vector<char*> p;
    in_blocks(e, [&](hsize_t off, hsize_t n) {
      p.assign(static_cast<std::size_t>(n), nullptr);
      read_block(d, mt.get(), {off}, {n}, p.data(), mem.dxpl());
      for (char* s : p) out.emplace_back(s ? s : "");  // a null pointer is an empty string
      mem.clear();
    });
    return out;
  }
  const std::size_t sz = e.elem_bytes;
  const bool space_padded = H5Tget_strpad(ft.get()) == H5T_STR_SPACEPAD;
  Handle mt(H5Tcopy(ft.get()), H5Tclose);  // same fixed-length type: no conversion
  std::vector<char> buf;
  in_blocks(e, [&](hsize_t off, hsize_t n) {
    buf.resize(static_cast<std::size_t>(n) * sz);
    read_block(d, mt.get(), {off}, {n}, buf.data());
    for (hsize_t i = 0; i < n; ++i) out.push_back(fixed_text(buf.data() + i * sz, sz, space_padded));
  });
  return out;
}

/// A string attribute (scalar or array). A non-string attribute of zero elements (what h5py writes
/// for an empty column-order) reads as an empty list. Attributes hold few bytes: their element
/// count is checked against their storage before anything is allocated.
inline std::vector<std::string> attr_strings(const Node& n, const std::string& name) {
  const std::string where = n.where() + " attribute '" + name + "'";
  check_header(n);
  Handle a(H5Aopen(n.id(), name.c_str(), H5P_DEFAULT), H5Aclose);
  sakura::detail::require(a.ok(), where, ": not found (or damaged)");
  Handle t(H5Aget_type(a.get()), H5Tclose), s(H5Aget_space(a.get()), H5Sclose);
  const hssize_t points = s.ok() ? H5Sget_simple_extent_npoints(s.get()) : -1;
  sakura::detail::require(t.ok() && points >= 0 && static_cast<hsize_t>(points) <= H5Aget_storage_size(a.get()),
                          where, ": damaged attribute (", points, " elements in ", H5Aget_storage_size(a.get()),
                          " bytes)");
  const auto count = static_cast<std::size_t>(points);
  if (H5Tget_class(t.get()) != H5T_STRING) {
    sakura::detail::require(count == 0, where, ": expected strings");
    return {};
  }
  std::vector<std::string> out(count);
  if (count == 0) return out;
  if (H5Tis_variable_str(t.get()) > 0) {
    if (n.ctx) {  // the references, checked in the header's bytes before libhdf5 follows them
      const std::size_t esz = 8 + n.ctx->sizeof_addr();
      if (const auto raw = walk_header(n, name)) {
        if (raw->size() < count * esz) sakura::detail::fail(where, ": damaged attribute (its data is cut short)");
        for (std::size_t i = 0; i < count; ++i) check_string_ref(*n.ctx, raw->data() + i * esz, i, where);
      }
    }
    Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mt.get(), H5T_VARIABLE);
    H5Tset_cset(mt.get(), H5Tget_cset(t.get()));
    std::vector<char*> p(count, nullptr);
    const herr_t rc = H5Aread(a.get(), mt.get(), p.data());
    for (std::size_t i = 0; i < count; ++i) {
      if (!p[i]) continue;  // a null pointer is an empty string
      out[i] = p[i];
      H5free_memory(p[i]);
    }
    sakura::detail::require(rc >= 0, where, ": cannot read variable-length strings");
    return out;
  }
  const std::size_t sz = H5Tget_size(t.get());
  sakura::detail::require(sz > 0 && sz * count <= H5Aget_storage_size(a.get()), where, ": damaged string attribute");
  Handle mt(H5Tcopy(t.get()), H5Tclose);
  std::vector<char> buf(count * sz);
  sakura::detail::require(H5Aread(a.get(), mt.get(), buf.data()) >= 0, where, ": cannot read fixed-length strings");
  const bool space_padded = H5Tget_strpad(t.get()) == H5T_STR_SPACEPAD;
  for (std::size_t i = 0; i < count; ++i) out[i] = fixed_text(buf.data() + i * sz, sz, space_padded);
  return out;
}

inline std::string attr_string(const Node& n, const std::string& name) {
  if (!has_attr(n, name)) return {};
  auto v = attr_strings(n, name);
  return v.empty() ? std::string() : v[0];
}

inline std::vector<std::int64_t> attr_ints(const Node& n, const std::string& name) {
  const std::string where = n.where() + " attribute '" + name + "'";
  check_header(n);
  Handle a(H5Aopen(n.id(), name.c_str(), H5P_DEFAULT), H5Aclose);
  sakura::detail::require(a.ok(), where, ": not found (or damaged)");
  Handle s(H5Aget_space(a.get()), H5Sclose);
  const hssize_t points = s.ok() ? H5Sget_simple_extent_npoints(s.get()) : -1;
  sakura::detail::require(points >= 0 && points <= 64, where, ": expected a few integers, found ", points);
  std::vector<std::int64_t> v(static_cast<std::size_t>(points));
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

/// An enum dataset (h5py's bool) in its native form, as raw bytes of `sz` per element.
inline std::vector<unsigned char> enum_bytes(const Node& d, hid_t mt, std::size_t sz) {
  sakura::detail::require(sz == 1 || sz == 2 || sz == 4 || sz == 8, d.where(), ": enum of unsupported size ", sz);
  const Extent e = extent_1d(d);
  std::vector<unsigned char> raw;
  in_blocks(e, [&](hsize_t off, hsize_t n) {
    raw.resize(static_cast<std::size_t>((off + n) * sz));
    read_block(d, mt, {off}, {n}, raw.data() + off * sz);
  });
  return raw;
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
  const auto raw = enum_bytes(d, mt.get(), sz);
  std::vector<std::int64_t> out(raw.size() / sz);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = widen(raw.data() + i * sz, sz, is_signed, d);
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
  const auto raw = enum_bytes(d, mt.get(), sz);
  std::vector<std::string> out(raw.size() / sz);
  char name[256];
  for (std::size_t i = 0; i < out.size(); ++i) {
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
  switch (H5Tget_class(ft.get())) {
    case H5T_STRING:
      return read_strings(d);
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

/// Requires a 1-D dataset of `n` entries (one per cell) before it is read.
inline void require_length(const Node& d, Index n, const char* what) {
  const Index len = length_1d(d);
  sakura::detail::require(len == n, d.where(), ": ", len, " ", what, " for ", n, " cells");
}

/// anndata's nullable arrays: values plus a mask whose true entries are missing.
inline std::vector<std::string> decode_nullable(const Node& g, Index n_cells) {
  const Node values = open(g, "values"), mask_node = open(g, "mask");
  require_length(values, n_cells, "values");
  require_length(mask_node, n_cells, "mask entries");
  auto vals = dataset_as_text(values);
  const auto mask = read_ints(mask_node);
  for (std::size_t i = 0; i < vals.size(); ++i)
    if (mask[i]) vals[i].clear();
  return vals;
}

/// One obs column in any layout anndata has written: a plain dataset, a categorical group
/// (0.8: categories + codes), a nullable group, or codes with categories in obs/__categories (0.7).
/// Its length is checked against the number of cells before it is read.
inline std::vector<std::string> column_values(const Node& obs, const std::string& name, Index n_cells) {
  const Node c = open(obs, name);
  if (!c.is_group()) {
    require_length(c, n_cells, "values");
    if (has(obs, "__categories") && has(open(obs, "__categories"), name))
      return decode_categorical(c, dataset_as_text(open(open(obs, "__categories"), name)));
    return dataset_as_text(c);
  }
  const std::string enc = attr_string(c, "encoding-type");
  if (enc == "categorical") {
    const Node codes = open(c, "codes");
    require_length(codes, n_cells, "codes");
    return decode_categorical(codes, dataset_as_text(open(c, "categories")));
  }
  if (enc.rfind("nullable-", 0) == 0) return decode_nullable(c, n_cells);
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
  sakura::detail::require(H5Gget_info(df.id(), &info) >= 0, df.where(), ": unreadable group (damaged file)");
  const std::string index = index_name(df);
  std::vector<std::string> out;
  for (hsize_t i = 0; i < info.nlinks; ++i) {  // a damaged count fails at the first missing link
    const ssize_t len = H5Lget_name_by_idx(df.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    sakura::detail::require(len >= 0 && len < 65536, df.where(), ": unreadable member ", i, " (damaged file)");
    std::string name(static_cast<std::size_t>(len) + 1, '\0');
    H5Lget_name_by_idx(df.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
    name.resize(static_cast<std::size_t>(len));
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

inline Node index_node(const Node& df) { return open(df, index_name(df)); }

/// An .h5ad opened for reading the guarded way: its heaps and object headers are checked (FileCtx)
/// before libhdf5 follows them, and its errors are quiet. Every reader of untrusted files uses it.
/// Example: `h5::InputFile in("a.h5ad"); auto obs = h5::open_dataframe(in.root(), "obs");`
class InputFile {
 public:
  explicit InputFile(const std::string& path)
      : ctx_(path), file_(opened(path, ctx_)), root_{Handle(H5Oopen(file_.get(), "/", H5P_DEFAULT), H5Oclose), path, "/", &ctx_} {
    sakura::detail::require(root_.h.ok(), path, ": cannot open the root group (damaged file)");
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  const Node& root() const { return root_; }

 private:
  /// H5Fopen, after every object of the file has been checked (check_file).
  static Handle opened(const std::string& path, FileCtx& ctx) {
    check_file(ctx);
    Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    sakura::detail::require(file.ok(), path, ": cannot open as an HDF5 file");
    return file;
  }
  QuietErrors quiet_;
  FileCtx ctx_;
  Handle file_;
  Node root_;
};

}  // namespace h5

namespace detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;

/// X as the reader sees it before reading: its layout, declared shape and arrays.
struct XLayout {
  enum class Kind { Dense, Csr, Csc } kind = Kind::Dense;
  Index rows = 0, cols = 0;
};

/// Dense X, read a block of rows at a time (about 4M values) so only one block is ever dense.
template <class T>
CsrMatrix<T> dense_x(const h5::Node& x, Index rows, Index cols) {
  CsrMatrix<T> m;
  m.rows = rows;
  m.cols = cols;
  const auto r_all = static_cast<hsize_t>(rows), c_all = static_cast<hsize_t>(cols);
  const hsize_t block = std::max<hsize_t>(1, (hsize_t{1} << 22) / std::max<hsize_t>(1, c_all));
  m.indptr.reserve(static_cast<std::size_t>(rows) + 1);
  std::vector<T> buf;
  for (hsize_t r0 = 0; r0 < r_all; r0 += block) {
    const hsize_t nr = std::min(block, r_all - r0);
    buf.resize(nr * c_all);
    if (!buf.empty()) h5::read_block(x, h5::native<T>(), {r0, 0}, {nr, c_all}, buf.data());
    for (hsize_t r = 0; r < nr; ++r) {
      for (hsize_t c = 0; c < c_all; ++c)
        if (buf[r * c_all + c] != T(0)) {
          m.indices.push_back(static_cast<std::int32_t>(c));
          m.values.push_back(buf[r * c_all + c]);
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

inline void check_minor(const h5::Node& g, const std::int32_t* idx, std::size_t n, Index minor, Index offset = 0) {
  for (std::size_t k = 0; k < n; ++k)
    if (idx[k] < 0 || idx[k] >= minor)  // `if`, not require(): where() would be built per entry
      sakura::detail::fail(g.where(), "/indices: entry ", offset + static_cast<Index>(k), " is ", idx[k],
                           ", outside [0, ", minor, ")");
}

/// The three arrays of a sparse X, with every length checked against the others and the shape
/// before anything but indptr (major + 1 entries, bounded by obs/var) is read.
struct SparseArrays {
  h5::Node data, indices;
  std::vector<std::int64_t> indptr;
  Index nnz = 0;
};

inline SparseArrays sparse_arrays(const h5::Node& g, Index major) {
  SparseArrays a{h5::open(g, "data"), h5::open(g, "indices"), {}, 0};
  const h5::Node ptr = h5::open(g, "indptr");
  a.nnz = h5::length_1d(a.data);
  const Index n_idx = h5::length_1d(a.indices), n_ptr = h5::length_1d(ptr);
  sakura::detail::require(n_idx == a.nnz, a.indices.where(), ": ", n_idx, " indices for ", a.nnz, " values");
  sakura::detail::require(n_ptr == major + 1, ptr.where(), ": ", n_ptr, " entries, expected ", major + 1,
                          " for the shape attribute");
  a.indptr = h5::read_all<std::int64_t>(ptr);
  check_indptr(g, a.indptr, major, a.nnz);
  return a;
}

template <class T>
CsrMatrix<T> csr_x(const h5::Node& g, Index rows, Index cols) {
  SparseArrays a = sparse_arrays(g, rows);
  CsrMatrix<T> m;
  m.rows = rows;
  m.cols = cols;
  m.indptr = std::move(a.indptr);
  m.values = h5::read_all<T>(a.data);
  m.indices = h5::read_all<std::int32_t>(a.indices);
  check_minor(g, m.indices.data(), m.indices.size(), cols);
  m.sort_and_sum_duplicates();  // scipy allows unsorted rows; our gathers need them sorted
  return m;
}

/// CSC to CSR by a counting sort over row indices, streaming the CSC arrays in chunks (two passes),
/// so memory holds the CSR result plus one chunk, never a dense matrix or a second full copy.
template <class T>
CsrMatrix<T> csc_x(const h5::Node& g, Index rows, Index cols) {
  const SparseArrays a = sparse_arrays(g, cols);
  const auto& colptr = a.indptr;
  const Index nnz = a.nnz;
  CsrMatrix<T> m;
  m.rows = rows;
  m.cols = cols;
  m.indptr.assign(static_cast<std::size_t>(rows) + 1, 0);
  constexpr Index kChunk = Index{1} << 20;
  std::vector<std::int32_t> ri;
  for (Index off = 0; off < nnz; off += kChunk) {  // pass 1: entries per row
    ri.resize(static_cast<std::size_t>(std::min(kChunk, nnz - off)));
    h5::read_block(a.indices, H5T_NATIVE_INT32, {hsize_t(off)}, {ri.size()}, ri.data());
    check_minor(g, ri.data(), ri.size(), rows, off);
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
    h5::read_block(a.indices, H5T_NATIVE_INT32, {hsize_t(off)}, {n}, ri.data());
    check_minor(g, ri.data(), n, rows, off);  // the file may change between passes
    h5::read_block(a.data, h5::native<T>(), {hsize_t(off)}, {n}, v.data());
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

/// X's layout and declared shape, read without touching its arrays: a dense dataset, or a group
/// tagged csr_matrix / csc_matrix (encoding-type in anndata >= 0.7, h5sparse_format before).
inline XLayout x_layout(const h5::Node& x) {
  XLayout l;
  if (!x.is_group()) {
    const h5::Extent e = h5::extent(x);
    sakura::detail::require(e.dims.size() == 2, x.where(), ": dense X must be 2-D, found ", e.dims.size(),
                            " dimensions");
    sakura::detail::require(e.dims[0] <= hsize_t{1} << 31 && e.dims[1] <= hsize_t{1} << 31, x.where(),
                            ": dense X of shape ", e.dims[0], " x ", e.dims[1], " is too large");
    l.rows = static_cast<Index>(e.dims[0]);
    l.cols = static_cast<Index>(e.dims[1]);
    return l;
  }
  std::string enc = h5::attr_string(x, "encoding-type");
  if (enc.empty()) enc = h5::attr_string(x, "h5sparse_format") + "_matrix";
  if (enc == "csr_matrix") l.kind = XLayout::Kind::Csr;
  else if (enc == "csc_matrix") l.kind = XLayout::Kind::Csc;
  else sakura::detail::fail(x.where(), ": unsupported X encoding '", enc, "' (expected csr_matrix or csc_matrix)");
  const std::string shape_key = h5::has_attr(x, "shape") ? "shape" : "h5sparse_shape";
  const auto shape = h5::attr_ints(x, shape_key);
  sakura::detail::require(shape.size() == 2 && shape[0] >= 0 && shape[1] >= 0 &&
                              shape[1] <= std::numeric_limits<std::int32_t>::max() &&
                              shape[0] <= std::numeric_limits<std::int32_t>::max(),
                          x.where(), ": attribute '", shape_key, "' must hold 2 non-negative sizes");
  l.rows = shape[0];
  l.cols = shape[1];
  return l;
}

template <class T>
CsrMatrix<T> read_x(const h5::Node& x, const XLayout& l) {
  switch (l.kind) {
    case XLayout::Kind::Csr: return csr_x<T>(x, l.rows, l.cols);
    case XLayout::Kind::Csc: return csc_x<T>(x, l.rows, l.cols);
    default: return dense_x<T>(x, l.rows, l.cols);
  }
}

/// Tells the heap scan where X's numbers are (contiguous arrays): no string lives there, and
/// skipping them keeps the scan to the file's small parts.
inline void skip_x_arrays(const h5::Node& root) {
  if (!root.ctx || !h5::has(root, "X")) return;
  const h5::Node x = h5::open(root, "X");
  auto skip = [&](const h5::Node& d) {
    const haddr_t at = H5Dget_offset(d.id());
    if (at != HADDR_UNDEF) root.ctx->skip(at, at + H5Dget_storage_size(d.id()));
  };
  if (!x.is_group()) return skip(x);
  for (const char* a : {"data", "indices", "indptr"})
    if (h5::has(x, a)) skip(h5::open(x, a));
}

}  // namespace detail

/// Reads an AnnData .h5ad file: X as sparse cells x genes (never densified whole), var_names as
/// genes, obs_names as cells, and every obs column as a phenotype column of strings ("" for missing;
/// categorical labels, numbers printed shortest-exact, bools as "True"/"False"). Repeated gene or
/// cell names are an error unless `names.make_unique` (see settle_names).
/// Example: `auto ds = sakura::io::read_h5ad<float>("pbmc.h5ad"); ds.column("celltype");`
template <class T = float>
data::Dataset<T> read_h5ad(const std::string& path, const data::NameOptions& names = {}) {
  const h5::InputFile in(path);
  const h5::Node& root = in.root();
  detail::skip_x_arrays(root);
  const h5::Node obs = h5::open_dataframe(root, "obs"), var = h5::open_dataframe(root, "var");
  const h5::Node obs_index = h5::index_node(obs), var_index = h5::index_node(var);
  const Index n_obs = h5::length_1d(obs_index), n_var = h5::length_1d(var_index);
  const h5::Node x = h5::open(root, "X");
  const detail::XLayout layout = detail::x_layout(x);
  sakura::detail::require(layout.rows == n_obs && layout.cols == n_var, path, ": X is ",
                          shape_str(layout.rows, layout.cols), " but obs has ", n_obs, " names and var has ", n_var);
  data::Dataset<T> ds;
  ds.cells = h5::read_strings(obs_index);
  ds.genes = h5::read_strings(var_index);
  auto row = [](Index r) { return std::to_string(r + 1); };
  ds.repeated_genes = data::settle_names(ds.genes, "gene", var_index.where(), names, row);
  ds.repeated_cells = data::settle_names(ds.cells, "cell", obs_index.where(), names, row);
  ds.expr = detail::read_x<T>(x, layout);
  for (const auto& name : h5::column_names(obs))
    ds.pheno.push_back(data::PhenoColumn{name, h5::column_values(obs, name, n_obs)});
  ds.validate(path);
  return ds;
}

}  // namespace sakura::io
