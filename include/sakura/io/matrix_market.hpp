// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Streaming MatrixMarket (.mtx) reader straight into CSR, and read_mtx_dataset(): upstream's sparse
/// input (SCRNASeqCountDataSparse: an .mtx from Seurat's writeMM plus gene, cell and phenotype CSVs).
#pragma once

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

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

namespace detail {

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

/// Line source that skips '%' comments and blank lines and knows the current line number.
class MtxLines {
 public:
  explicit MtxLines(const std::string& path) : path_(path), in_(path, std::ios::binary) {
    sakura::detail::require(static_cast<bool>(in_), path, ": cannot open file");
  }
  /// The raw first line (the banner), which starts with '%' and so is not skipped.
  std::string banner() {
    std::string s;
    std::getline(in_, s);
    line_ = 1;
    return s;
  }
  bool next(std::string_view& out) {
    while (std::getline(in_, buf_)) {
      ++line_;
      if (!buf_.empty() && buf_.back() == '\r') buf_.pop_back();
      std::string_view rest = buf_;
      if (next_token(rest).empty() || buf_[0] == '%') continue;
      out = buf_;
      return true;
    }
    return false;
  }
  std::string where() const { return path_ + ":" + std::to_string(line_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ifstream in_;
  std::string buf_;
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
    sakura::detail::fail(src.where(), ": expected ", what, ", found '", tok, "'");
  return v;
}

inline MtxHeader::Field parse_field(const std::string& f, const MtxLines& src) {
  if (f == "real" || f == "double") return MtxHeader::Field::Real;
  if (f == "integer") return MtxHeader::Field::Integer;
  if (f == "pattern") return MtxHeader::Field::Pattern;
  sakura::detail::fail(src.path(), ":1: unsupported MatrixMarket field '", f, "' (real, integer or pattern)");
}

inline MtxHeader parse_header(MtxLines& src) {
  const std::string banner = src.banner();
  std::string_view b = banner;
  if (!b.empty() && b.back() == '\r') b.remove_suffix(1);
  std::string_view rest = b;
  const std::string magic(next_token(rest)), object = lower(next_token(rest)), format = lower(next_token(rest)),
      field = lower(next_token(rest)), symmetry = lower(next_token(rest));
  sakura::detail::require(magic == "%%MatrixMarket" && object == "matrix" &&
                              (format == "coordinate" || format == "array"),
                          src.path(), ":1: not a MatrixMarket matrix; expected '%%MatrixMarket matrix "
                          "coordinate|array real|integer|pattern general', found '", b, "'");
  sakura::detail::require(symmetry == "general", src.path(), ":1: MatrixMarket symmetry '", symmetry,
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
  h.entries = h.coordinate ? parse_number<Index>(size, src, "the entry count") : h.rows * h.cols;
  constexpr Index kMax = std::numeric_limits<std::int32_t>::max();
  sakura::detail::require(h.rows >= 0 && h.cols >= 0 && h.entries >= 0 && h.rows <= kMax && h.cols <= kMax,
                          src.where(), ": bad size line: ", h.rows, " x ", h.cols, ", ", h.entries, " entries");
  return h;
}

/// Stored entries as coordinates of the output (transposed if asked), kept until the counting sort.
template <class T>
struct Triplets {
  std::vector<std::int32_t> r, c;
  std::vector<T> v;
  bool transpose = false;
  void reserve(Index n) {
    const auto k = static_cast<std::size_t>(std::min<Index>(n, Index{1} << 26));  // a bad header can't OOM us
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

template <class T>
T parse_value(std::string_view& s, MtxLines& src, MtxHeader::Field f) {
  if (f == MtxHeader::Field::Pattern) return T(1);
  if (f == MtxHeader::Field::Integer) return static_cast<T>(parse_number<std::int64_t>(s, src, "an integer value"));
  // Parse as double then round once to T: what scipy.io.mmread followed by a float32 cast gives.
  return static_cast<T>(parse_number<double>(s, src, "a real value"));
}

template <class T>
void read_coordinate(MtxLines& src, const MtxHeader& h, Triplets<T>& t) {
  std::string_view line;
  Index n = 0;
  for (; src.next(line); ++n) {
    // `if` rather than require(): its message (src.where()) would be built for every line.
    if (n >= h.entries)
      sakura::detail::fail(src.where(), ": more entries than the ", h.entries, " the size line declares");
    const Index i = parse_number<Index>(line, src, "a row index");
    const Index j = parse_number<Index>(line, src, "a column index");
    if (i < 1 || i > h.rows || j < 1 || j > h.cols)
      sakura::detail::fail(src.where(), ": entry (", i, ", ", j, ") outside the declared ", h.rows, " x ", h.cols,
                           " matrix (indices are 1-based)");
    t.add(i - 1, j - 1, parse_value<T>(line, src, h.field));
  }
  sakura::detail::require(n == h.entries, src.path(), ": the size line declares ", h.entries,
                          " entries but the file has ", n);
}

/// Dense `array` values come column by column; zeros are not stored.
template <class T>
void read_array(MtxLines& src, const MtxHeader& h, Triplets<T>& t) {
  std::string_view line;
  Index n = 0;
  for (; src.next(line); ++n) {
    if (n >= h.entries)
      sakura::detail::fail(src.where(), ": more values than the ", h.rows, " x ", h.cols, " = ", h.entries,
                           " the size line declares");
    const T x = parse_value<T>(line, src, h.field);
    if (x != T(0)) t.add(n % h.rows, n / h.rows, x);
  }
  sakura::detail::require(n == h.entries, src.path(), ": a ", h.rows, " x ", h.cols, " array needs ", h.entries,
                          " values but the file has ", n);
}

}  // namespace detail

/// Reads only the banner and size line (cheap: used to decide the orientation before the body).
inline MtxHeader read_mtx_header(const std::string& path) {
  detail::MtxLines src(path);
  return detail::parse_header(src);
}

/// Reads an .mtx file as CSR, transposed when asked, one line at a time. Memory: the stored entries
/// (as triplets, then as CSR), never rows x cols. Entries listed twice are summed, as scipy does when
/// upstream converts mmread's COO matrix; explicit zeros of the coordinate format are kept.
/// Example: `auto m = sakura::io::read_mtx<float>("counts.mtx", true);  // genes x cells file -> cells x genes`
template <class T = float>
CsrMatrix<T> read_mtx(const std::string& path, bool transpose = false) {
  detail::MtxLines src(path);
  const MtxHeader h = detail::parse_header(src);
  detail::Triplets<T> t;
  t.transpose = transpose;
  t.reserve(h.entries);
  if (h.coordinate) detail::read_coordinate(src, h, t);
  else detail::read_array(src, h, t);
  return transpose ? sakura::detail::csr_from_triplets(h.cols, h.rows, t.r, t.c, t.v)
                   : sakura::detail::csr_from_triplets(h.rows, h.cols, t.r, t.c, t.v);
}

/// Reads upstream's sparse input: expression .mtx, gene and cell name CSVs (R write.csv layout, see
/// read_name_csv) and an optional phenotype CSV whose rows must be the cells in the same order.
/// Orientation comes from the name lists: a (genes x cells) matrix, what Seurat's writeMM writes, is
/// transposed to cells x genes; a (cells x genes) one is taken as is. When there are as many genes as
/// cells the two cannot be told apart and, like upstream (which always indexes rows by gene), we
/// take the file as genes x cells.
template <class T = float>
Dataset<T> read_mtx_dataset(const std::string& mtx_path, const std::string& gene_names_csv,
                            const std::string& cell_names_csv, const std::string& pheno_csv = "") {
  Dataset<T> ds;
  ds.genes = read_name_csv(gene_names_csv);
  ds.cells = read_name_csv(cell_names_csv);
  const MtxHeader h = read_mtx_header(mtx_path);
  const Index ng = ds.n_genes(), nc = ds.n_cells();
  const bool genes_by_cells = h.rows == ng && h.cols == nc;
  sakura::detail::require(genes_by_cells || (h.rows == nc && h.cols == ng), mtx_path, ": matrix is ",
                          shape_str(h.rows, h.cols), " but '", gene_names_csv, "' lists ", ng, " genes and '",
                          cell_names_csv, "' lists ", nc, " cells; expected ", shape_str(ng, nc),
                          " (genes x cells) or ", shape_str(nc, ng), " (cells x genes)");
  ds.expr = read_mtx<T>(mtx_path, genes_by_cells);
  if (!pheno_csv.empty()) ds.pheno = read_pheno_csv(pheno_csv, ds.cells);
  ds.validate(mtx_path);
  return ds;
}

}  // namespace sakura::io
