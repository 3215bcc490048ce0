// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// LossRecord: what train() / eval() return (SPEC §5.6): for the main latent and every block,
/// four groups (loss, regularization and their *_raw twins) keyed by term name, plus the total.
/// Preallocated once per controller and refilled in place, so a step allocates nothing.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sakura/error.hpp"

namespace sakura {

/// Values of one group, in config order; `present` marks the terms computed by the last call.
struct TermValues {
  std::vector<std::string> names;
  std::vector<double> values;
  std::vector<char> present;

  void reset(const std::vector<std::string>& n) {
    names = n;
    values.assign(n.size(), 0.0);
    present.assign(n.size(), 0);
  }
  void clear() { std::fill(present.begin(), present.end(), 0); }
  void set(std::size_t i, double v) {
    values[i] = v;
    present[i] = 1;
  }
  /// The value of a term computed by the last call, if it was.
  std::optional<double> get(const std::string& name) const {
    for (std::size_t i = 0; i < names.size(); ++i)
      if (names[i] == name && present[i]) return values[i];
    return std::nullopt;
  }
  /// Like get(), but throws naming the term when it was not computed.
  double at(const std::string& name) const {
    auto v = get(name);
    detail::require(v.has_value(), "no value for term '", name, "' in this record");
    return *v;
  }
  std::size_t count() const {
    std::size_t c = 0;
    for (char p : present) c += p != 0;
    return c;
  }
};

struct BlockRecord {
  std::string name;
  bool present = false;  ///< the block was selected in the last call
  TermValues loss, regularization, loss_raw, regularization_raw;
  void clear() {
    present = false;
    loss.clear();
    regularization.clear();
    loss_raw.clear();
    regularization_raw.clear();
  }
};

struct LossRecord {
  BlockRecord main;
  std::vector<BlockRecord> pheno, signature;
  double total = 0.0;  ///< total_loss_backwarded (float sum, SPEC §4)

  const BlockRecord& pheno_block(const std::string& n) const { return find(pheno, n, "phenotype"); }
  const BlockRecord& signature_block(const std::string& n) const { return find(signature, n, "signature"); }

 private:
  static const BlockRecord& find(const std::vector<BlockRecord>& v, const std::string& n, const char* what) {
    for (auto& b : v)
      if (b.name == n) return b;
    detail::fail("no ", what, " named '", n, "' in this record");
  }
};

}  // namespace sakura
