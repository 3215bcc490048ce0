// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Phenotype metadata (upstream's pheno_meta JSON, which is also the model's pheno_config) and the
/// encoding of phenotype columns into what train() reads: class labels and/or numbers per cell.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sakura/config/json.hpp"
#include "sakura/data/dataset.hpp"
#include "sakura/error.hpp"

namespace sakura::data {

using PhenoJson = nlohmann::ordered_json;

/// A phenotype fitted once on the whole data set (SPEC §9: upstream fits its categorical and
/// binning transforms per mini-batch, so codes and bin edges could change between batches).
struct PhenoTable {
  std::string name;                   ///< the phenotype's key in pheno_meta / pheno_config
  std::vector<std::string> columns;   ///< pheno_df_key(s) it was read from
  std::vector<std::int64_t> labels;   ///< one class index per cell, or empty
  std::vector<float> values;          ///< cells x width numbers, row-major, or empty
  Index width = 0;                    ///< columns of `values`
  std::vector<std::string> classes;   ///< categories in code order (ToOrdinal / ToOnehot), else empty
  bool has_labels() const { return !labels.empty(); }
  bool has_values() const { return !values.empty(); }
};

namespace detail {
using sakura::detail::fail;
using sakura::detail::require;

/// Parses a whole field as a finite number within float32's range, the type phenotype values are
/// kept in ("" and NA spellings, "inf" and 1e39 are not numbers here).
inline bool parse_double(const std::string& s, double& out) {
  std::size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  if (b < e && s[b] == '+') ++b;
  if (b == e) return false;
  const auto [p, ec] = std::from_chars(s.data() + b, s.data() + e, out);
  return ec == std::errc() && p == s.data() + e && std::isfinite(out) &&
         std::fabs(out) <= static_cast<double>(std::numeric_limits<float>::max());
}

/// A string option of a procedure, `dflt` when absent.
inline std::string opt_text(const PhenoJson& p, const char* key, const std::string& pw, const char* dflt) {
  auto it = p.find(key);
  if (it == p.end() || it->is_null()) return dflt;
  require(it->is_string(), pw, ".", key, " must be a string, got ", it->dump());
  return it->get<std::string>();
}

/// Most bins or classes a phenotype may encode to: every cell gets a row of this many numbers.
inline constexpr long long kMaxClasses = 1 << 16;

/// An `order` entry as the text a CSV holds: strings as is, integers without a decimal point.
inline std::string order_text(const PhenoJson& v, const std::string& where) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<long long>());
  if (v.is_number()) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v.get<double>());
    return std::string(buf, r.ptr);
  }
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  fail(where, ": order entries must be strings or numbers, got ", v.dump());
}

/// The encoding in progress: text (one column), class codes, or a numeric matrix.
struct Work {
  enum class Kind { Text, Codes, Numbers } kind = Kind::Text;
  std::vector<std::string> text;
  std::vector<std::int64_t> codes;
  std::vector<double> numbers;  // cells x width
  Index width = 0;
  std::vector<std::string> classes;
};

struct Ctx {
  const std::string& where;   // e.g. "pheno_meta.celltype"
  const std::vector<std::string>& cells;
  const std::vector<std::string>& column_names;
};

inline void to_numbers(Work& w, const Ctx& c, const char* step) {
  if (w.kind == Work::Kind::Numbers) return;
  if (w.kind == Work::Kind::Codes) {
    w.numbers.assign(w.codes.begin(), w.codes.end());
    w.width = 1;
  } else {
    w.numbers.resize(w.text.size());
    for (std::size_t i = 0; i < w.text.size(); ++i)
      if (!parse_double(w.text[i], w.numbers[i]))
        fail(c.where, ": ", step, " needs numbers but column '", c.column_names[0], "' has ",
             w.text[i].empty() ? std::string("a missing value (NA)") : "'" + w.text[i] + "'", " for cell '", c.cells[i],
             "' (row ", i + 1, ")");
    w.width = 1;
  }
  w.kind = Work::Kind::Numbers;
}

/// Categories: the configured `order`, or (upstream's 'auto') the sorted distinct values of the
/// whole column. A missing value matches an order entry spelled as pandas' NA ("NA", "nan", ...).
inline std::vector<std::string> categories(const Work& w, const PhenoJson& meta, const Ctx& c) {
  std::vector<std::string> cats;
  if (auto it = meta.find("order"); it != meta.end() && !it->is_null()) {
    require(it->is_array() && !it->empty(), c.where, ".order must be a non-empty list of categories");
    for (std::size_t i = 0; i < it->size(); ++i)
      cats.push_back(order_text((*it)[i], c.where + ".order[" + std::to_string(i) + "]"));
    for (std::size_t i = 0; i < cats.size(); ++i)
      for (std::size_t j = 0; j < i; ++j)
        require(cats[i] != cats[j], c.where, ".order lists '", cats[i], "' twice");
  } else {
    cats = w.text;
    std::sort(cats.begin(), cats.end());
    cats.erase(std::unique(cats.begin(), cats.end()), cats.end());
    require(cats.empty() || !cats.front().empty(), c.where, ": column '", c.column_names[0],
            "' has missing values (NA); give an `order` that lists how NA is spelled, or drop those cells");
  }
  return cats;
}

inline std::vector<std::int64_t> encode(const Work& w, const std::vector<std::string>& cats, const Ctx& c) {
  std::map<std::string, std::int64_t> pos;
  for (std::size_t i = 0; i < cats.size(); ++i) {
    pos.emplace(cats[i], static_cast<std::int64_t>(i));
    if (detail::is_pandas_na(cats[i])) pos.emplace(std::string(), static_cast<std::int64_t>(i));
  }
  std::vector<std::int64_t> out(w.text.size());
  for (std::size_t i = 0; i < w.text.size(); ++i) {
    auto it = pos.find(w.text[i]);
    if (it == pos.end()) {
      std::string known;
      for (std::size_t k = 0; k < cats.size() && k < 20; ++k) known += (k ? ", '" : "'") + cats[k] + "'";
      fail(c.where, ": column '", c.column_names[0], "' has ",
           w.text[i].empty() ? std::string("a missing value (NA)") : "'" + w.text[i] + "'", " for cell '", c.cells[i],
           "' (row ", i + 1, "), which is not in its order [", known, cats.size() > 20 ? ", ..." : "", "]");
    }
    out[i] = it->second;
  }
  return out;
}

/// sklearn's KBinsDiscretizer ('uniform' or 'quantile'), fitted on the whole column.
inline std::vector<double> bin_edges(std::vector<double> col, int n_bins, const std::string& strategy,
                                     const std::string& where) {
  std::sort(col.begin(), col.end());
  const double lo = col.front(), hi = col.back();
  std::vector<double> edges;
  if (lo == hi) return {lo - 0.5, hi + 0.5};  // sklearn: a constant feature gets one bin
  for (int b = 0; b <= n_bins; ++b) {
    if (strategy == "uniform") {
      edges.push_back(lo + (hi - lo) * b / n_bins);
    } else {  // quantile: numpy.percentile's linear interpolation
      const double q = static_cast<double>(b) / n_bins * static_cast<double>(col.size() - 1);
      const std::size_t k = static_cast<std::size_t>(std::floor(q));
      const double f = q - static_cast<double>(k);
      edges.push_back(k + 1 < col.size() ? col[k] + (col[k + 1] - col[k]) * f : col[k]);
    }
  }
  // sklearn drops bins narrower than 1e-8 (repeated quantiles) with a warning
  std::vector<double> kept{edges.front()};
  for (std::size_t i = 1; i < edges.size(); ++i)
    if (edges[i] - kept.back() > 1e-8) kept.push_back(edges[i]);
  if (kept.size() < 2) kept.push_back(edges.back() + 1);
  (void)where;
  return kept;
}

inline void kbins(Work& w, const PhenoJson& p, const Ctx& c, const std::string& pw) {
  to_numbers(w, c, "ToKBins");
  const auto nb = p.find("n_bins");
  const int n_bins = nb == p.end() || nb->is_null()  // sklearn's default 5
                         ? 5
                         : static_cast<int>(config::detail::integer_in(*nb, pw + ".n_bins", 2, kMaxClasses));
  const std::string encode = opt_text(p, "encode", pw, "onehot");
  const std::string strategy = opt_text(p, "strategy", pw, "quantile");
  require(encode == "ordinal" || encode == "onehot" || encode == "onehot-dense", pw,
          ".encode must be ordinal, onehot or onehot-dense, got '", encode, "'");
  require(strategy == "uniform" || strategy == "quantile", pw, ".strategy '", strategy,
          "' is not supported (uniform or quantile; kmeans is not)");
  const std::size_t n = w.numbers.size() / static_cast<std::size_t>(w.width);
  std::vector<std::vector<std::int64_t>> codes(static_cast<std::size_t>(w.width));
  std::vector<Index> nbins(static_cast<std::size_t>(w.width));
  for (Index j = 0; j < w.width; ++j) {
    std::vector<double> col(n);
    for (std::size_t i = 0; i < n; ++i) col[i] = w.numbers[i * w.width + j];
    const auto e = bin_edges(col, n_bins, strategy, pw);
    nbins[j] = static_cast<Index>(e.size()) - 1;
    codes[j].resize(n);
    for (std::size_t i = 0; i < n; ++i) {  // searchsorted(edges[1:-1], x, side='right')
      const auto it = std::upper_bound(e.begin() + 1, e.end() - 1, col[i]);
      codes[j][i] = it - (e.begin() + 1);
    }
  }
  if (encode == "ordinal") {
    if (w.width == 1) {
      w.codes = std::move(codes[0]);
      w.kind = Work::Kind::Codes;
      w.classes.clear();
      return;
    }
    for (std::size_t i = 0; i < n; ++i)
      for (Index j = 0; j < w.width; ++j) w.numbers[i * w.width + j] = static_cast<double>(codes[j][i]);
    return;
  }
  Index total = 0;
  for (Index b : nbins) total += b;
  std::vector<double> out(n * static_cast<std::size_t>(total), 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    Index off = 0;
    for (Index j = 0; j < w.width; ++j) {
      out[i * total + off + codes[j][i]] = 1.0;
      off += nbins[j];
    }
  }
  w.numbers = std::move(out);
  w.width = total;
}

inline void binary(Work& w, const PhenoJson& p, const Ctx& c, const std::string& pw) {
  to_numbers(w, c, "ToBinary");
  auto num = [&](const char* k, double d) {
    auto it = p.find(k);
    if (it == p.end() || it->is_null()) return d;
    require(it->is_number(), pw, ".", k, " must be a number, got ", it->dump());
    return it->get<double>();
  };
  const double threshold = num("threshold", 1e-6), scale = num("scale_factor", 1.0);
  const bool inverse = config::detail::opt_bool(p, "inverse", pw);
  for (double& v : w.numbers) {
    double b = v > threshold ? 1.0 : 0.0;
    if (inverse) b = 1.0 - b;
    v = b * scale;
  }
}

inline void to_tensor(Work& w, const PhenoJson& p, const Ctx& c, const std::string& pw) {
  const std::string force = opt_text(p, "force_tensor_type", pw, "");
  require(force.empty() || force == "float" || force == "double" || force == "int", pw,
          ".force_tensor_type must be float, double or int, got '", force, "'");
  if (w.kind == Work::Kind::Text) to_numbers(w, c, "ToTensor");
  if (w.kind == Work::Kind::Codes && (force == "float" || force == "double")) to_numbers(w, c, "ToTensor");
  if (w.kind == Work::Kind::Numbers && force == "int") {
    require(w.width == 1, pw, ": force_tensor_type int on ", w.width, " columns is not supported");
    w.codes.resize(w.numbers.size());
    for (std::size_t i = 0; i < w.numbers.size(); ++i) {
      require(std::fabs(w.numbers[i]) < 0x1p62, pw, ": force_tensor_type int: value ", w.numbers[i], " of cell '",
              c.cells[i], "' (row ", i + 1, ") does not fit an int64");
      w.codes[i] = static_cast<std::int64_t>(w.numbers[i]);
    }
    w.kind = Work::Kind::Codes;
  }
}
}  // namespace detail

/// Phenotype names and the data columns they read, checked against the data set.
/// `meta` is one entry of upstream's pheno_meta JSON:
///   {"type": "categorical", "pheno_df_key": "cell_type", "order": [...],
///    "post_procedure": [{"type": "ToOrdinal"}, ...], ...model keys...}
///   {"type": "numerical", "pheno_df_keys": ["nCount_RNA"], "post_procedure": [{"type": "ToTensor"}]}
/// Procedures: ToOrdinal, ToOnehot (categorical), ToKBins (uniform | quantile), ToBinary, ToTensor
/// (force_tensor_type). Every fit (categories, bin edges) sees the whole column once.
/// A value outside `order`, a missing value (unless `order` names NA) and a non-number where a
/// number is needed are errors naming the phenotype, column, cell and row.
template <class T>
PhenoTable fit_pheno(const std::string& name, const PhenoJson& meta, const Dataset<T>& ds,
                     const std::string& where_prefix = "pheno_meta.") {
  using namespace detail;
  const std::string where = where_prefix + name;
  require(meta.is_object(), where, " must be an object");
  auto type_it = meta.find("type");
  require(type_it != meta.end() && type_it->is_string(), "missing required key ", where,
          ".type (\"categorical\" or \"numerical\")");
  const std::string type = type_it->get<std::string>();
  PhenoTable t;
  t.name = name;
  Work w;
  if (type == "categorical") {
    auto k = meta.find("pheno_df_key");
    require(k != meta.end() && k->is_string(), "missing required key ", where, ".pheno_df_key (a phenotype column)");
    t.columns = {k->get<std::string>()};
    w.text = ds.column(t.columns[0]).values;
  } else if (type == "numerical") {
    auto k = meta.find("pheno_df_keys");
    require(k != meta.end() && k->is_array() && !k->empty(), "missing required key ", where,
            ".pheno_df_keys (a list of phenotype columns)");
    for (std::size_t i = 0; i < k->size(); ++i) {
      require((*k)[i].is_string(), where, ".pheno_df_keys[", i, "] must be a column name");
      t.columns.push_back((*k)[i].get<std::string>());
    }
    w.kind = Work::Kind::Numbers;
    w.width = static_cast<Index>(t.columns.size());
    w.numbers.resize(ds.cells.size() * t.columns.size());
    for (std::size_t j = 0; j < t.columns.size(); ++j) {
      const auto& col = ds.column(t.columns[j]).values;
      for (std::size_t i = 0; i < col.size(); ++i)
        if (!parse_double(col[i], w.numbers[i * t.columns.size() + j]))
          fail(where, ": numerical column '", t.columns[j], "' has ",
               col[i].empty() ? std::string("a missing value (NA)") : "'" + col[i] + "'", " for cell '", ds.cells[i],
               "' (row ", i + 1, ")");
    }
  } else {
    fail(where, ".type must be \"categorical\" or \"numerical\", got \"", type, "\"");
  }
  const Ctx c{where, ds.cells, t.columns};
  const PhenoJson empty = PhenoJson::array();
  auto pp = meta.find("post_procedure");
  const PhenoJson& procs = pp == meta.end() || pp->is_null() ? empty : *pp;
  require(procs.is_array(), where, ".post_procedure must be a list of {\"type\": ...}");
  for (std::size_t i = 0; i < procs.size(); ++i) {
    const std::string pw = where + ".post_procedure[" + std::to_string(i) + "]";
    const PhenoJson& p = procs[i];
    require(p.is_object() && p.contains("type") && p["type"].is_string(), pw, " must be {\"type\": ...}");
    const std::string pt = p["type"].get<std::string>();
    const bool text = w.kind == Work::Kind::Text;
    if (pt == "ToOrdinal" || pt == "ToOnehot") {
      require(text, pw, ": ", pt, " applies to the text of a categorical column (it must come first)");
      w.classes = categories(w, meta, c);
      w.codes = encode(w, w.classes, c);
      w.kind = Work::Kind::Codes;
      if (pt == "ToOnehot") {
        require(static_cast<long long>(w.classes.size()) <= kMaxClasses, pw, ": column '", t.columns[0], "' has ",
                w.classes.size(), " categories, more than the ", kMaxClasses,
                " a one-hot phenotype may have (each cell gets one number per category)");
        w.width = static_cast<Index>(w.classes.size());
        w.numbers.assign(w.codes.size() * w.classes.size(), 0.0);
        for (std::size_t r = 0; r < w.codes.size(); ++r) w.numbers[r * w.classes.size() + w.codes[r]] = 1.0;
        w.kind = Work::Kind::Numbers;
      }
    } else if (pt == "ToKBins") {
      kbins(w, p, c, pw);
    } else if (pt == "ToBinary") {
      binary(w, p, c, pw);
    } else if (pt == "ToTensor") {
      to_tensor(w, p, c, pw);
    } else {
      fail(pw, ".type: unknown transformation \"", pt, "\"; known: ToTensor, ToOrdinal, ToOnehot, ToKBins, ToBinary");
    }
  }
  require(w.kind != Work::Kind::Text, where, ": post_procedure leaves the column '", t.columns[0],
          "' as text; add {\"type\": \"ToOrdinal\"} (class labels) or {\"type\": \"ToTensor\"} (numbers)");
  t.classes = w.classes;
  if (w.kind == Work::Kind::Codes) {
    t.labels = std::move(w.codes);
    return t;
  }
  t.width = w.width;
  t.values.assign(w.numbers.begin(), w.numbers.end());
  // a single column of non-negative whole numbers also serves as class labels (NLL, supervised priors)
  if (w.width == 1) {
    bool whole = true;
    for (double v : w.numbers) whole = whole && v >= 0 && v == std::floor(v) && v < 9.0e15;
    if (whole) t.labels.assign(w.numbers.begin(), w.numbers.end());
  }
  return t;
}

}  // namespace sakura::data
