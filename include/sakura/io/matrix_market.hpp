// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Streaming MatrixMarket (.mtx, or gzip-compressed .mtx.gz) reader straight into CSR, and
/// read_mtx_dataset(): upstream's sparse input (SCRNASeqCountDataSparse: an .mtx from Seurat's
/// writeMM plus gene, cell and phenotype CSVs).
///
/// What is accepted, exactly: the banner `%%MatrixMarket matrix coordinate|array
/// real|double|integer|pattern general`, '%' comment lines and blank lines anywhere after it, a
/// size line of exactly 3 (coordinate) or 2 (array) non-negative integers, then one entry per line
/// with exactly its fields (`row column value`, `row column` for pattern, `value` for array) and
/// nothing after them. Every line that holds data must end with a line break: a last line without
/// one is taken as a file cut mid-line (`3 7 12.5` cut to `3 7 12` would be a different number),
/// never silently read. Values must be finite in the element type (NaN, Inf and 1e39 for float are
/// errors naming the line, gene and cell). A file whose first bytes are gzip's magic number is
/// decompressed on the fly (needs zlib: the CMake target sakura::zlib), whatever its name; line
/// numbers in errors are those of the decompressed text.
#pragma once

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#if defined(SAKURA_WITH_ZLIB)
#include <zlib.h>
#endif

#include "sakura/data/dataset.hpp"
#include "sakura/error.hpp"
#include "sakura/io/csv.hpp"

namespace sakura::io {

/// The banner and size line of an .mtx file.
struct MtxHeader {
  enum class Field { Real, Integer, Pattern };
  bool coordinate = true;  ///< false: the dense `array` format (column-major values)
  Field field = Field::Real;
  Index rows = 0, cols = 0;
  Index entries = 0;  ///< declared stored entries; rows * cols for `array`
};

/// Largest row or column count accepted (2^27 = 134,217,728): more than any single-cell matrix
/// has, and small enough that a damaged size line cannot demand gigabytes for the row pointers.
inline constexpr Index kMaxMtxDim = Index{1} << 27;

/// What the file's rows and columns are, so errors say "gene 'CD8A' (row 3)" instead of "row 3".
struct MtxAxes {
  std::string row_kind = "row", col_kind = "column";
  const std::vector<std::string>* row_names = nullptr;  ///< names of the file's rows, if known
  const std::vector<std::string>* col_names = nullptr;

  /// Entry (i, j), 0-based, as words: "gene 'CD8A' (row 3), cell 'AAAC-1' (column 1)".
  std::string describe(Index i, Index j) const {
    return one(row_kind, row_names, i, "row") + ", " + one(col_kind, col_names, j, "column");
  }

 private:
  static std::string one(const std::string& kind, const std::vector<std::string>* names, Index k, const char* axis) {
    const std::string pos = std::string(axis) + " " + std::to_string(k + 1);
    if (!names || k < 0 || k >= static_cast<Index>(names->size())) return pos;
    return kind + " '" + (*names)[static_cast<std::size_t>(k)] + "' (" + pos + ")";
  }
};

namespace detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;

inline bool is_blank(char c) { return c == ' ' || c == '\t'; }

// Plain loops: string_view::find_first_of calls memchr once per character, a third of the read time.
inline std::string_view next_token(std::string_view& s) {
  std::size_t b = 0;
  while (b < s.size() && is_blank(s[b])) ++b;
  std::size_t e = b;
  while (e < s.size() && !is_blank(s[e])) ++e;
  const auto tok = s.substr(b, e - b);
  s.remove_prefix(e);
  return tok;
}

/// File text for an error message: control and non-ASCII bytes as \xNN, at most 60 characters.
inline std::string printable(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < 60; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  if (s.size() > 60) out += "...";
  return out;
}

/// The bytes of a plain or gzip-compressed file, in large blocks. Compression is told by the
/// magic number, never the name; formats we do not decompress are named with the fix.
class ByteSource {
 public:
  explicit ByteSource(const std::string& path) : path_(path) {
    std::error_code dir;
    sakura::detail::require(!std::filesystem::is_directory(path, dir), path, ": is a directory, not a file");
    f_ = std::fopen(path.c_str(), "rb");
    sakura::detail::require(f_ != nullptr, path, ": cannot open file");
    std::error_code ec;
    size_ = std::filesystem::file_size(path, ec);
    if (ec) size_ = 0;
    unsigned char m[6] = {};
    const std::size_t n = std::fread(m, 1, sizeof m, f_);
    std::rewind(f_);
    auto magic = [&](std::initializer_list<unsigned char> b) {
      return n >= b.size() && std::equal(b.begin(), b.end(), m);
    };
    if (magic({0x1f, 0x8b})) {
      open_gzip();
    } else if (const char* other = magic({'B', 'Z', 'h'})                          ? "bzip2"
                                   : magic({0xfd, '7', 'z', 'X', 'Z', 0x00})       ? "xz"
                                   : magic({0x28, 0xb5, 0x2f, 0xfd})              ? "zstd"
                                   : magic({'P', 'K', 0x03, 0x04})                 ? "zip"
                                                                                  : nullptr) {
      close();
      sakura::detail::fail(path, ": is ", other, "-compressed; decompress it first (only plain and gzip-compressed "
                           "MatrixMarket files are read)");
    }
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;
  ~ByteSource() { close(); }

  bool gzip() const { return gzip_; }
  /// Size of the file on disk (compressed size for gzip).
  std::uintmax_t size_on_disk() const { return size_; }

  /// Up to n bytes into buf; 0 only at the end. `line` (the last complete line) is for errors.
  std::size_t read(char* buf, std::size_t n, Index line) {
#if defined(SAKURA_WITH_ZLIB)
    if (gz_) return read_gzip(buf, n, line);
#endif
    const std::size_t got = std::fread(buf, 1, n, f_);
    if (got == 0 && std::ferror(f_)) sakura::detail::fail(path_, ": read error after line ", line);
    return got;
  }

 private:
  void open_gzip() {
    gzip_ = true;
#if defined(SAKURA_WITH_ZLIB)
    std::fclose(f_);
    f_ = nullptr;
    gz_ = gzopen(path_.c_str(), "rb");
    sakura::detail::require(gz_ != nullptr, path_, ": cannot open file");
    gzbuffer(gz_, 1u << 18);
#else
    close();
    sakura::detail::fail(path_, ": is gzip-compressed, but this build of sakura has no zlib; install zlib (Debian: "
                         "zlib1g-dev) and reconfigure (the CMake target sakura::zlib), or decompress the file first "
                         "(gunzip -k)");
#endif
  }
#if defined(SAKURA_WITH_ZLIB)
  std::size_t read_gzip(char* buf, std::size_t n, Index line) {
    const int got = gzread(gz_, buf, static_cast<unsigned>(std::min<std::size_t>(n, 1u << 30)));
    int err = Z_OK;
    const char* msg = gzerror(gz_, &err);
    if (got < 0 || (err != Z_OK && err != Z_BUF_ERROR))
      sakura::detail::fail(path_, ": damaged gzip data after line ", line, " of the decompressed text (zlib: ", msg,
                           ")");
    if (got == 0 && err == Z_BUF_ERROR)
      sakura::detail::fail(path_, ": the gzip stream ends early after line ", line,
                           " of the decompressed text: the file looks truncated");
    return static_cast<std::size_t>(got);
  }
  gzFile gz_ = nullptr;
#endif
  void close() {
    if (f_) std::fclose(f_);
    f_ = nullptr;
#if defined(SAKURA_WITH_ZLIB)
    if (gz_) gzclose(gz_);
    gz_ = nullptr;
#endif
  }

  std::string path_;
  std::FILE* f_ = nullptr;
  bool gzip_ = false;
  std::uintmax_t size_ = 0;
};

/// Line source: skips '%' comment lines and blank lines, knows the current line number, and
/// rejects a data line that the file ends in without a line break (a file cut mid-line).
/// Reads 1 MiB blocks and finds line ends with memchr; a line may be at most that long.
class MtxLines {
 public:
  static constexpr std::size_t kMaxLine = std::size_t{1} << 20;

  explicit MtxLines(const std::string& path) : path_(path), src_(path), buf_(kMaxLine) {}

  /// The raw first line (the banner), which starts with '%' and so is not skipped.
  std::string_view banner() {
    std::string_view s;
    bool terminated = false;
    return raw(s, terminated) ? s : std::string_view();
  }
  /// The next line holding data; false at the end of the file.
  bool next(std::string_view& out) {
    bool terminated = false;
    while (raw(out, terminated)) {
      std::size_t i = 0;
      while (i < out.size() && is_blank(out[i])) ++i;
      if (i == out.size() || out[0] == '%') continue;
      if (!terminated)
        sakura::detail::fail(where(), ": the last line '", printable(out), "' has no line break: the file looks "
                             "truncated (cut mid-line). If it is complete, end it with a newline");
      return true;
    }
    return false;
  }
  std::string where() const { return path_ + ":" + std::to_string(line_); }
  const std::string& path() const { return path_; }
  Index line() const { return line_; }
  const ByteSource& source() const { return src_; }

 private:
  bool raw(std::string_view& out, bool& terminated) {
    for (;;) {
      const char* b = buf_.data() + begin_;
      if (const void* nl = std::memchr(b, '\n', end_ - begin_)) {
        const auto len = static_cast<std::size_t>(static_cast<const char*>(nl) - b);
        begin_ += len + 1;
        return line(b, len, true, out, terminated);
      }
      if (eof_) {
        if (begin_ == end_) return false;
        const std::size_t len = end_ - begin_;
        begin_ = end_;
        return line(b, len, false, out, terminated);
      }
      if (begin_ > 0) {  // keep the partial line, make room behind it
        std::memmove(buf_.data(), b, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      if (end_ == buf_.size())
        sakura::detail::fail(path_, ":", line_ + 1, ": line longer than ", kMaxLine,
                             " bytes: not a MatrixMarket text file");
      const std::size_t got = src_.read(buf_.data() + end_, buf_.size() - end_, line_);
      eof_ = got == 0;
      end_ += got;
    }
  }
  bool line(const char* b, std::size_t len, bool nl, std::string_view& out, bool& terminated) {
    ++line_;
    if (len > 0 && b[len - 1] == '\r') --len;
    out = std::string_view(b, len);
    terminated = nl;
    return true;
  }

  std::string path_;
  ByteSource src_;
  std::vector<char> buf_;
  std::size_t begin_ = 0, end_ = 0;
  bool eof_ = false;
  Index line_ = 0;
};

inline std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

template <class N>
N parse_number(std::string_view& s, MtxLines& src, const char* what) {
  std::string_view tok = next_token(s);
  if (!tok.empty() && tok[0] == '+') tok.remove_prefix(1);  // from_chars rejects a leading '+'
  N v{};
  const auto [p, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), v);
  if (tok.empty() || ec != std::errc() || p != tok.data() + tok.size())
    sakura::detail::fail(src.where(), ": expected ", what, ", found '", printable(tok), "'",
                         ec == std::errc::result_out_of_range ? " (out of range)" : "");
  return v;
}

/// The rest of a line must be blank: a line with more fields than its format is an error.
inline void expect_end(std::string_view rest, MtxLines& src, const char* fields) {
  const std::string_view extra = next_token(rest);
  if (!extra.empty())
    sakura::detail::fail(src.where(), ": unexpected '", printable(extra), "' after the fields of this line (expected ",
                         fields, ")");
}

inline MtxHeader::Field parse_field(const std::string& f, const MtxLines& src) {
  if (f == "real" || f == "double") return MtxHeader::Field::Real;
  if (f == "integer") return MtxHeader::Field::Integer;
  if (f == "pattern") return MtxHeader::Field::Pattern;
  sakura::detail::fail(src.path(), ":1: unsupported MatrixMarket field '", printable(f),
                       "' (real, integer or pattern)");
}

inline MtxHeader parse_header(MtxLines& src) {
  const std::string_view b = src.banner();
  std::string_view rest = b;
  const std::string magic(next_token(rest)), object = lower(next_token(rest)), format = lower(next_token(rest)),
      field = lower(next_token(rest)), symmetry = lower(next_token(rest));
  sakura::detail::require(magic == "%%MatrixMarket" && object == "matrix" &&
                              (format == "coordinate" || format == "array"),
                          src.path(), ":1: not a MatrixMarket matrix; expected '%%MatrixMarket matrix "
                          "coordinate|array real|integer|pattern general', found '", printable(b), "'");
  sakura::detail::require(symmetry == "general", src.path(), ":1: MatrixMarket symmetry '", printable(symmetry),
                          "' is not supported (only 'general', which Seurat and scipy write)");
  MtxHeader h;
  h.coordinate = format == "coordinate";
  h.field = parse_field(field, src);
  sakura::detail::require(h.coordinate || h.field != MtxHeader::Field::Pattern, src.path(),
                          ":1: 'array pattern' is not a valid MatrixMarket type");
  std::string_view size;
  sakura::detail::require(src.next(size), src.path(), ": no size line after the banner");
  h.rows = parse_number<Index>(size, src, "the row count");
  h.cols = parse_number<Index>(size, src, "the column count");
  if (h.coordinate) h.entries = parse_number<Index>(size, src, "the entry count");
  expect_end(size, src, h.coordinate ? "rows columns entries" : "rows columns");
  // Checked before any product: rows * cols of two unchecked counts can overflow.
  sakura::detail::require(h.rows >= 0 && h.cols >= 0 && h.entries >= 0, src.where(), ": bad size line: ", h.rows,
                          " x ", h.cols, ", ", h.entries, " entries (counts must not be negative)");
  sakura::detail::require(h.rows <= kMaxMtxDim && h.cols <= kMaxMtxDim, src.where(), ": the size line declares a ",
                          h.rows, " x ", h.cols, " matrix; at most ", kMaxMtxDim,
                          " rows and columns are supported (the file is damaged or not a count matrix)");
  if (!h.coordinate) h.entries = h.rows * h.cols;  // <= 2^54: no overflow
  return h;
}

/// Stored entries as coordinates of the output (transposed if asked), kept until the counting sort.
template <class T>
struct Triplets {
  std::vector<std::int32_t> r, c;
  std::vector<T> v;
  bool transpose = false;
  void reserve(Index n) {
    const auto k = static_cast<std::size_t>(n);
    r.reserve(k);
    c.reserve(k);
    v.reserve(k);
  }
  void add(Index i, Index j, T x) {
    r.push_back(static_cast<std::int32_t>(transpose ? j : i));
    c.push_back(static_cast<std::int32_t>(transpose ? i : j));
    v.push_back(x);
  }
};

/// A value that is not finite in T (NaN, Inf, or beyond T's range): named with its line and place.
template <class T>
[[noreturn]] void non_finite(MtxLines& src, const MtxAxes& ax, Index i, Index j, std::string_view tok, bool overflow) {
  sakura::detail::fail(src.where(), ": value '", printable(tok), "' at ", ax.describe(i, j), " is not a finite ",
                       sizeof(T) == 4 ? "float32" : "float64", " number", overflow ? " (it overflows the type)" : "",
                       "; expression values must be finite: fix or remove this entry");
}

/// One value of entry (i, j), 0-based. Reals are parsed as double then rounded once to T: what
/// scipy.io.mmread followed by a float32 cast gives (a value that underflows is read as 0, as there).
template <class T>
T parse_value(std::string_view& s, MtxLines& src, MtxHeader::Field f, const MtxAxes& ax, Index i, Index j) {
  if (f == MtxHeader::Field::Pattern) return T(1);
  if (f == MtxHeader::Field::Integer) return static_cast<T>(parse_number<std::int64_t>(s, src, "an integer value"));
  std::string_view tok = next_token(s);
  const std::string_view shown = tok;
  if (!tok.empty() && tok[0] == '+') tok.remove_prefix(1);
  double d = 0;
  const auto [p, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), d);
  if (tok.empty() || p != tok.data() + tok.size() || (ec != std::errc() && ec != std::errc::result_out_of_range))
    sakura::detail::fail(src.where(), ": expected a real value, found '", printable(shown), "'");
  if (ec == std::errc::result_out_of_range) d = std::strtod(std::string(tok).c_str(), nullptr);  // +-HUGE_VAL or ~0
  if (!std::isfinite(d)) non_finite<T>(src, ax, i, j, shown, std::isinf(d) && tok.find_first_of("iI") == tok.npos);
  // Compared before the cast: converting a double beyond T's range is undefined behaviour.
  if (std::fabs(d) > static_cast<double>(std::numeric_limits<T>::max())) non_finite<T>(src, ax, i, j, shown, true);
  return static_cast<T>(d);
}

/// Calls add(i, j, x) (0-based, the file's orientation) for every stored entry in file order, with
/// every check of the format: coordinates in range, whole lines, finite values, the declared count.
/// The `array` format's zeros are not stored, so they are skipped. The one loop over an .mtx body:
/// read_mtx and the out-of-core converter (io/h5ad_convert.hpp) both read through it.
template <class T, class Add>
void for_each_entry(MtxLines& src, const MtxHeader& h, const MtxAxes& ax, Add&& add) {
  const bool pattern = h.field == MtxHeader::Field::Pattern;
  std::string_view line;
  Index n = 0;
  for (; src.next(line); ++n) {
    // `if` rather than require(): its message (src.where()) would be built for every line.
    if (n >= h.entries) {
      if (h.coordinate) sakura::detail::fail(src.where(), ": more entries than the ", h.entries, " the size line declares");
      sakura::detail::fail(src.where(), ": more values than the ", h.rows, " x ", h.cols, " = ", h.entries,
                           " the size line declares");
    }
    if (h.coordinate) {
      const Index i = parse_number<Index>(line, src, "a row index");
      const Index j = parse_number<Index>(line, src, "a column index");
      if (i < 1 || i > h.rows || j < 1 || j > h.cols)
        sakura::detail::fail(src.where(), ": entry (", i, ", ", j, ") outside the declared ", h.rows, " x ", h.cols,
                             " matrix (indices are 1-based)");
      const T x = parse_value<T>(line, src, h.field, ax, i - 1, j - 1);
      expect_end(line, src, pattern ? "row column" : "row column value");
      add(i - 1, j - 1, x);
    } else {  // column by column, one value per line; rows > 0 here: entries = rows * cols > n
      const Index i = n % h.rows, j = n / h.rows;
      const T x = parse_value<T>(line, src, h.field, ax, i, j);
      expect_end(line, src, "one value");
      if (x != T(0)) add(i, j, x);
    }
  }
  if (h.coordinate)
    sakura::detail::require(n == h.entries, src.path(), ": the size line declares ", h.entries,
                            " entries but the file has ", n, " (the file looks truncated)");
  else
    sakura::detail::require(n == h.entries, src.path(), ": a ", h.rows, " x ", h.cols, " array needs ", h.entries,
                            " values but the file has ", n, " (the file looks truncated)");
}

}  // namespace detail

/// Reads only the banner and size line (cheap: used to decide the orientation before the body).
inline MtxHeader read_mtx_header(const std::string& path) {
  detail::MtxLines src(path);
  return detail::parse_header(src);
}

/// Reads an .mtx file (plain or gzip) as CSR, transposed when asked, one line at a time. Memory:
/// the stored entries (as triplets, then as CSR), never rows x cols. Entries listed twice are
/// summed, as scipy does when upstream converts mmread's COO matrix; explicit zeros of the
/// coordinate format are kept. `axes` only names rows and columns in error messages.
/// Example: `auto m = sakura::io::read_mtx<float>("counts.mtx", true);  // genes x cells file -> cells x genes`
template <class T = float>
CsrMatrix<T> read_mtx(const std::string& path, bool transpose = false, const MtxAxes& axes = {}) {
  detail::MtxLines src(path);
  const MtxHeader h = detail::parse_header(src);
  detail::Triplets<T> t;
  t.transpose = transpose;
  // What the header declares, but no more than the file can hold (an entry line is >= 2 bytes,
  // and gzip rarely shrinks text 8-fold), so a damaged size line cannot reserve gigabytes.
  const auto disk = static_cast<Index>(std::min<std::uintmax_t>(src.source().size_on_disk(), Index{1} << 40));
  t.reserve(std::min<Index>(h.entries, src.source().gzip() ? disk * 4 : disk / 2) + 1);
  detail::for_each_entry<T>(src, h, axes, [&](Index i, Index j, T x) { t.add(i, j, x); });
  return transpose ? data::detail::csr_from_triplets(h.cols, h.rows, t.r, t.c, t.v)
                   : data::detail::csr_from_triplets(h.rows, h.cols, t.r, t.c, t.v);
}

/// Reads upstream's sparse input: expression .mtx (or .mtx.gz), gene and cell name CSVs (R
/// write.csv layout, see read_name_csv) and an optional phenotype CSV whose rows must be the
/// cells in the same order. Orientation comes from the name lists: a (genes x cells) matrix,
/// what Seurat's writeMM writes, is transposed to cells x genes; a (cells x genes) one is taken as
/// is. When there are as many genes as cells the two cannot be told apart and, like upstream
/// (which always indexes rows by gene), we take the file as genes x cells. Repeated gene or cell
/// names are an error unless `names.make_unique` (see settle_names).
template <class T = float>
data::Dataset<T> read_mtx_dataset(const std::string& mtx_path, const std::string& gene_names_csv,
                            const std::string& cell_names_csv, const std::string& pheno_csv = "",
                            const data::NameOptions& names = {}) {
  data::Dataset<T> ds;
  std::vector<std::size_t> gene_lines, cell_lines;
  ds.genes = read_name_csv(gene_names_csv, &gene_lines);
  ds.cells = read_name_csv(cell_names_csv, &cell_lines);
  const MtxHeader h = read_mtx_header(mtx_path);
  const Index ng = ds.n_genes(), nc = ds.n_cells();
  const bool genes_by_cells = h.rows == ng && h.cols == nc;
  sakura::detail::require(genes_by_cells || (h.rows == nc && h.cols == ng), mtx_path, ": matrix is ",
                          shape_str(h.rows, h.cols), " but '", gene_names_csv, "' lists ", ng, " genes and '",
                          cell_names_csv, "' lists ", nc, " cells; expected ", shape_str(ng, nc),
                          " (genes x cells) or ", shape_str(nc, ng), " (cells x genes)");
  MtxAxes axes{"gene", "cell", &ds.genes, &ds.cells};
  if (!genes_by_cells) axes = MtxAxes{"cell", "gene", &ds.cells, &ds.genes};
  ds.expr = read_mtx<T>(mtx_path, genes_by_cells, axes);
  if (!pheno_csv.empty()) ds.pheno = read_pheno_csv(pheno_csv, ds.cells);  // rows name the cells as written
  auto row = [](const std::vector<std::size_t>& lines) {
    return [&lines](Index r) { return std::to_string(r + 1) + " (line " + std::to_string(lines[r]) + ")"; };
  };
  ds.repeated_genes = data::settle_names(ds.genes, "gene", gene_names_csv, names, row(gene_lines));
  ds.repeated_cells = data::settle_names(ds.cells, "cell", cell_names_csv, names, row(cell_lines));
  ds.validate(mtx_path);
  return ds;
}

}  // namespace sakura::io
