// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Dataset<T>: a whole single-cell data set in memory, expression kept sparse (CSR, cells x genes)
/// with the raw phenotype columns; batches are gathered from it row by row, never densified whole.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "sakura/error.hpp"
#include "sakura/tensor/csr.hpp"
#include "sakura/tensor/tensor.hpp"

namespace sakura::data {

/// One phenotype column as read: the raw per-cell strings, "" for a missing value (NA). Encoding
/// into labels or numbers happens once on the whole column later (SPEC §9: never per mini-batch).
struct PhenoColumn {
  std::string name;
  std::vector<std::string> values;
};

/// A name that occurs more than once in a gene or cell list, with every position (0-based).
struct RepeatedName {
  std::string name;
  std::vector<Index> rows;
};

/// How readers treat repeated gene or cell names.
struct NameOptions {
  /// false: a repeated name is an error. true: repeats are renamed as AnnData's
  /// var_names_make_unique / obs_names_make_unique do: the 2nd "CD8A" becomes "CD8A-1", the 3rd
  /// "CD8A-2", ..., skipping names that already exist. (Config: "make_names_unique" in `dataset`.)
  bool make_unique = false;
};

/// A whole data set: expression (cells x genes, sparse), names, and phenotype columns in file order.
/// Example:
///   auto ds = sakura::io::read_mtx_dataset("counts.mtx", "genes.csv", "cells.csv", "pheno.csv");
///   auto cd8 = ds.gene_indices({"CD8A", "CD8B"});   // throws naming a gene that is absent
///   const auto& ct = ds.column("celltype");
template <class T = float>
struct Dataset {
  std::vector<std::string> genes, cells;
  CsrMatrix<T> expr;  ///< cells x genes
  std::vector<PhenoColumn> pheno;
  /// Names the file repeated and NameOptions::make_unique renamed (original names and rows): a
  /// signature gene among them is ambiguous, whatever it was renamed to.
  std::vector<RepeatedName> repeated_genes, repeated_cells;

  Index n_cells() const { return static_cast<Index>(cells.size()); }
  Index n_genes() const { return static_cast<Index>(genes.size()); }

  /// Position of a gene (the first, if a name repeats), or -1 when absent.
  int gene_index(const std::string& name) const {
    auto it = std::find(genes.begin(), genes.end(), name);
    return it == genes.end() ? -1 : static_cast<int>(it - genes.begin());
  }

  /// Positions of many genes through one hash map (signature lists, exclude_from_input);
  /// throws naming every absent gene, since a typo in a config should be reported in one go.
  std::vector<Index> gene_indices(const std::vector<std::string>& names) const {
    std::unordered_map<std::string, Index> pos;
    for (Index g = n_genes() - 1; g >= 0; --g) pos[genes[g]] = g;  // reverse: the first occurrence wins
    std::vector<Index> out;
    std::string missing;
    for (const auto& n : names) {
      auto it = pos.find(n);
      if (it == pos.end()) missing += (missing.empty() ? "'" : ", '") + n + "'";
      else out.push_back(it->second);
    }
    detail::require(missing.empty(), "gene(s) ", missing, " not among the data set's ", genes.size(), " genes");
    return out;
  }

  const PhenoColumn* find_column(const std::string& name) const {
    for (const auto& c : pheno)
      if (c.name == name) return &c;
    return nullptr;
  }

  /// The phenotype column called `name`; throws naming it and listing the columns that exist.
  const PhenoColumn& column(const std::string& name) const {
    if (const PhenoColumn* c = find_column(name)) return *c;
    std::string have;
    for (const auto& c : pheno) have += (have.empty() ? "'" : ", '") + c.name + "'";
    detail::fail("phenotype column '", name, "' not found; the data set has ",
                 have.empty() ? std::string("no phenotype columns") : have);
  }

  /// Throws when names, matrix and columns disagree in size; readers call it before returning.
  void validate(const std::string& source = "data set") const {
    expr.validate(source + ": expression matrix");
    detail::require(expr.rows == n_cells() && expr.cols == n_genes(), source, ": expression matrix is ",
                    expr.shape_str(), " (cells x genes) but there are ", cells.size(), " cell names and ",
                    genes.size(), " gene names");
    for (const auto& c : pheno)
      detail::require(c.values.size() == cells.size(), source, ": phenotype column '", c.name, "' has ",
                      c.values.size(), " values for ", cells.size(), " cells");
  }
};

namespace detail {
using sakura::detail::fail;
using sakura::detail::require;

/// pandas' default na_values: upstream reads phenotypes with na_filter on, so these become NaN there.
inline bool is_pandas_na(const std::string& s) {
  static const std::array<std::string_view, 19> na{"",     "#N/A", "#N/A N/A", "#NA",  "-1.#IND", "-1.#QNAN", "-NaN",
                                                   "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",    "NA",      "NULL",
                                                   "NaN",  "None", "n/a",      "nan",  "null"};
  return std::find(na.begin(), na.end(), s) != na.end();
}

/// Every name that occurs more than once, with its rows, in order of its first repeat (one hash map).
inline std::vector<RepeatedName> repeated_names(const std::vector<std::string>& names) {
  std::unordered_map<std::string_view, std::size_t> first;  // name -> first row, or repeat slot
  std::unordered_map<std::string_view, std::size_t> slot;
  std::vector<RepeatedName> out;
  first.reserve(names.size());
  for (std::size_t r = 0; r < names.size(); ++r) {
    const auto [it, fresh] = first.try_emplace(names[r], r);
    if (fresh) continue;
    const auto [s, new_repeat] = slot.try_emplace(names[r], out.size());
    if (new_repeat) out.push_back({names[r], {static_cast<Index>(it->second)}});
    out[s->second].rows.push_back(static_cast<Index>(r));
  }
  return out;
}

/// anndata.utils.make_index_unique: each repeat (not the first occurrence) becomes name-k with
/// k counting up per name from 1, skipping candidates already taken.
inline void make_names_unique(std::vector<std::string>& names, const std::vector<RepeatedName>& repeated) {
  std::unordered_set<std::string> taken(names.begin(), names.end());
  std::unordered_map<std::string, int> counter;
  std::vector<Index> later;  // every repeat, in row order (as anndata walks them)
  for (const auto& r : repeated) later.insert(later.end(), r.rows.begin() + 1, r.rows.end());
  std::sort(later.begin(), later.end());
  for (Index row : later) {
    std::string& n = names[static_cast<std::size_t>(row)];
    for (int& k = counter[n];;) {
      std::string candidate = n + "-" + std::to_string(++k);
      if (taken.insert(candidate).second) {
        n = std::move(candidate);
        break;
      }
    }
  }
}
}  // namespace detail

/// Checks the gene or cell names a reader read from `source`: a repeated name throws, naming it,
/// two of its rows (`row(r)` describes 0-based row r, e.g. "3 (line 4)") and the fix, unless
/// `o.make_unique`, which renames the repeats instead. Returns the repeats found (empty if none).
template <class RowText>
std::vector<RepeatedName> settle_names(std::vector<std::string>& names, const std::string& kind,
                                       const std::string& source, const NameOptions& o, RowText&& row) {
  auto rep = detail::repeated_names(names);
  if (rep.empty()) return rep;
  if (o.make_unique) {
    detail::make_names_unique(names, rep);
    return rep;
  }
  const RepeatedName& r = rep.front();
  std::string others;
  for (std::size_t i = 1; i < rep.size() && i < 4; ++i) others += (i == 1 ? "'" : ", '") + rep[i].name + "'";
  detail::fail(source, ": ", kind, " name '", r.name, "' occurs ", r.rows.size(), " times: rows ", row(r.rows[0]),
               " and ", row(r.rows[1]),
               rep.size() > 1 ? " (" + std::to_string(rep.size() - 1) + " more " + kind + " names repeat, e.g. " +
                                    others + ")"
                              : std::string(),
               "; ", kind, " names must be unique. Rename or remove the repeats, or set \"make_names_unique\": true "
               "in the config's dataset section to rename them as AnnData's var_names_make_unique does (the 2nd '",
               r.name, "' becomes '", r.name, "-1')");
}

namespace detail {
/// Builds a CSR matrix from coordinate triplets (0-based) with a counting sort by row: two passes
/// over the triplets and no dense buffer. Duplicates are summed (see sort_and_sum_duplicates).
template <class T>
CsrMatrix<T> csr_from_triplets(Index rows, Index cols, const std::vector<std::int32_t>& r,
                               const std::vector<std::int32_t>& c, const std::vector<T>& v) {
  CsrMatrix<T> m;
  m.rows = rows;
  m.cols = cols;
  m.indptr.assign(static_cast<std::size_t>(rows) + 1, 0);
  for (std::int32_t ri : r) ++m.indptr[ri + 1];
  std::partial_sum(m.indptr.begin(), m.indptr.end(), m.indptr.begin());
  m.indices.resize(v.size());
  m.values.resize(v.size());
  std::vector<std::int64_t> next(m.indptr.begin(), m.indptr.end() - 1);
  for (std::size_t k = 0; k < v.size(); ++k) {
    const std::int64_t at = next[r[k]]++;
    m.indices[at] = c[k];
    m.values[at] = v[k];
  }
  m.sort_and_sum_duplicates();
  return m;
}
}  // namespace detail

}  // namespace sakura::data
