// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// RFC-4180 CSV reading, plus the two table shapes SAKURA's inputs use: name lists and phenotype
/// tables, both read the way upstream reads them with pandas `read_csv(path, index_col=0)`.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sakura/data/dataset.hpp"
#include "sakura/error.hpp"

namespace sakura::io {

/// A parsed CSV file: every field a string, exactly as written (quotes removed, "" unescaped).
struct CsvTable {
  std::string source;                         ///< file name, used in error messages
  std::vector<std::string> header;            ///< empty when read with has_header = false
  std::vector<std::vector<std::string>> rows;
  std::vector<std::size_t> row_lines;         ///< 1-based line where each row starts

  /// "file:line" of row i, for error messages.
  std::string where(std::size_t i) const { return source + ":" + std::to_string(row_lines[i]); }
};

namespace detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;

/// One pass over the text; a small state machine because quoted fields may hold commas, quotes
/// ("" stands for one) and line breaks. Records end at LF, CRLF or a lone CR outside quotes.
class CsvParser {
 public:
  CsvParser(std::string_view text, const std::string& source) : s_(text), src_(source) {
    if (s_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = 3;  // UTF-8 byte order mark, as Excel writes
  }

  /// Reads one record into `out`; false at end of input. Empty lines are skipped (as pandas does).
  bool next(std::vector<std::string>& out, std::size_t& line) {
    while (pos_ < s_.size() && is_eol(s_[pos_])) eat_eol();
    if (pos_ >= s_.size()) return false;
    line = line_;
    out.clear();
    for (;;) {
      out.push_back(field());
      if (pos_ >= s_.size()) return true;
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      eat_eol();  // field() stops only at ',', a line break or the end
      return true;
    }
  }

 private:
  static bool is_eol(char c) { return c == '\n' || c == '\r'; }
  void eat_eol() {
    if (s_[pos_] == '\r' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '\n') ++pos_;
    ++pos_;
    ++line_;
  }
  std::string field() { return pos_ < s_.size() && s_[pos_] == '"' ? quoted() : unquoted(); }
  // Unquoted fields keep a stray quote literally (pandas does the same) instead of failing.
  std::string unquoted() {
    const std::size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != ',' && !is_eol(s_[pos_])) ++pos_;
    return std::string(s_.substr(start, pos_ - start));
  }
  std::string quoted() {
    const std::size_t open_line = line_;
    std::string f;
    for (++pos_;; ++pos_) {
      sakura::detail::require(pos_ < s_.size(), src_, ":", open_line,
                              ": quoted field never closed (missing '\"' before end of file)");
      const char c = s_[pos_];
      if (c == '"' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '"') {
        f += '"';
        ++pos_;
      } else if (c == '"') {
        break;
      } else {
        if (c == '\n' || (c == '\r' && (pos_ + 1 >= s_.size() || s_[pos_ + 1] != '\n'))) ++line_;
        f += c;
      }
    }
    ++pos_;  // the closing quote
    if (pos_ < s_.size() && s_[pos_] != ',' && !is_eol(s_[pos_]))
      sakura::detail::fail(src_, ":", line_, ": unexpected character '", s_[pos_], "' after a closing quote");
    return f;
  }

  std::string_view s_;
  const std::string& src_;
  std::size_t pos_ = 0, line_ = 1;
};

inline std::string slurp(const std::string& path) {
  std::error_code dir;
  sakura::detail::require(!std::filesystem::is_directory(path, dir), path, ": is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  sakura::detail::require(static_cast<bool>(in), path, ": cannot open file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return std::move(ss).str();
}

}  // namespace detail

/// Parses CSV text already in memory; `source` names it in errors.
inline CsvTable parse_csv(std::string_view text, const std::string& source, bool has_header = true) {
  CsvTable t;
  t.source = source;
  detail::CsvParser p(text, t.source);
  std::vector<std::string> rec;
  std::size_t line = 0;
  if (has_header && p.next(rec, line)) t.header = rec;
  while (p.next(rec, line)) {
    t.rows.push_back(rec);
    t.row_lines.push_back(line);
  }
  return t;
}

/// Reads a CSV file. Example: `auto t = sakura::io::read_csv("pheno.csv"); t.header[1];`
inline CsvTable read_csv(const std::string& path, bool has_header = true) {
  return parse_csv(detail::slurp(path), path, has_header);
}

namespace detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;

/// Data columns start after the index column, except when the header is one field shorter than the
/// rows (R's write.table without col.names = NA): pandas then takes the header as data columns only.
inline std::size_t header_offset(const CsvTable& t) {
  sakura::detail::require(!t.header.empty(), t.source, ": empty file (a header row is expected)");
  return (!t.rows.empty() && t.rows[0].size() == t.header.size() + 1) ? 0 : 1;
}

/// pandas' names for blank or repeated headers ("Unnamed: 3", "x.1"), so configs written against
/// upstream find the same columns.
inline std::vector<std::string> pandas_column_names(const CsvTable& t, std::size_t off) {
  std::vector<std::string> names;
  std::unordered_map<std::string, int> seen;
  for (std::size_t i = off; i < t.header.size(); ++i) {
    std::string n = t.header[i].empty() ? "Unnamed: " + std::to_string(i) : t.header[i];
    for (std::string base = n; seen.count(n);) n = base + "." + std::to_string(seen[base]++);
    seen[n] = 1;
    names.push_back(n);
  }
  return names;
}

inline void require_width(const CsvTable& t, std::size_t i, std::size_t width) {
  if (t.rows[i].size() != width)  // not require(): t.where(i) would be built for every row
    sakura::detail::fail(t.where(i), ": ", t.rows[i].size(), " fields, expected ", width, " (the header has ",
                         t.header.size(), ")");
}

}  // namespace detail

/// Reads a gene or cell name list the way upstream does (`pd.read_csv(path, index_col=0).iloc[:, 0]`):
/// a header row, then an index column and the names. R's write.csv gives `"","x"` then `"1","CD8A"`.
/// `lines`, when given, receives the line each name starts on (for error messages).
inline std::vector<std::string> read_name_csv(const std::string& path, std::vector<std::size_t>* lines = nullptr) {
  const CsvTable t = read_csv(path);
  const std::size_t off = detail::header_offset(t);
  const std::size_t width = t.header.size() + 1 - off;  // index column + header's data columns
  sakura::detail::require(width >= 2, path, ": a name list needs an index column and a name column "
                          "(as R's write.csv writes), found a single column");
  std::vector<std::string> names;
  names.reserve(t.rows.size());
  for (std::size_t i = 0; i < t.rows.size(); ++i) {
    detail::require_width(t, i, width);
    names.push_back(t.rows[i][1]);
  }
  if (lines) *lines = t.row_lines;
  return names;
}

/// Reads a phenotype table: rows are cells (first column the cell name), the header names the columns.
/// Upstream raises unless the rows are exactly `cells` in order; we say which row differs. Values
/// pandas reads as NaN ("", "NA", "nan", ...) become "".
inline std::vector<data::PhenoColumn> read_pheno_csv(const std::string& path, const std::vector<std::string>& cells) {
  const CsvTable t = read_csv(path);
  const std::size_t off = detail::header_offset(t);
  const auto names = detail::pandas_column_names(t, off);
  sakura::detail::require(t.rows.size() == cells.size(), path, ": ", t.rows.size(), " phenotype rows but ",
                          cells.size(), " cells in the expression data");
  std::vector<data::PhenoColumn> cols(names.size());
  for (std::size_t j = 0; j < names.size(); ++j) cols[j].name = names[j];
  for (std::size_t i = 0; i < t.rows.size(); ++i) {
    detail::require_width(t, i, names.size() + 1);
    if (t.rows[i][0] != cells[i])
      sakura::detail::fail(t.where(i), ": phenotype row ", i + 1, " is cell '", t.rows[i][0], "' but cell ", i + 1,
                           " of the expression data is '", cells[i],
                           "' (rows must list the same cells in the same order)");
    for (std::size_t j = 0; j < names.size(); ++j) {
      const std::string& v = t.rows[i][j + 1];
      cols[j].values.push_back(data::detail::is_pandas_na(v) ? std::string() : v);
    }
  }
  return cols;
}

}  // namespace sakura::io
