// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Selection: which phenotype / signature blocks and which of their terms a call computes
/// (SPEC §5.3), compiled once from names into indices so training does no string lookups.
#pragma once

#include <string>
#include <vector>

#include "sakura/controller/experiment_spec.hpp"
#include "sakura/detail/names.hpp"

namespace sakura {

struct Selection {
  struct Entry {
    int block = -1;            ///< index in config order
    std::vector<int> losses;   ///< term indices, evaluation order
    std::vector<int> regs;
    bool operator==(const Entry&) const = default;
  };
  std::vector<Entry> entries;  ///< evaluation order (upstream iterates the selection dict)
  bool operator==(const Selection&) const = default;

  /// Every block with every term, in config order ("all", upstream's None).
  static Selection all(const std::vector<BlockSpec>& blocks) {
    Selection s;
    for (std::size_t b = 0; b < blocks.size(); ++b) {
      Entry e;
      e.block = static_cast<int>(b);
      for (std::size_t i = 0; i < blocks[b].losses.size(); ++i) e.losses.push_back(static_cast<int>(i));
      for (std::size_t i = 0; i < blocks[b].regularizations.size(); ++i) e.regs.push_back(static_cast<int>(i));
      s.entries.push_back(std::move(e));
    }
    return s;
  }
  /// No block at all.
  static Selection none() { return {}; }

  /// Adds a block by name with "*" or listed terms; errors name the unknown key and what exists.
  /// `regs` empty with `all_regs` false means "no regularization" (upstream: None, which raises).
  Selection& add(const std::vector<BlockSpec>& blocks, const std::string& block, bool all_losses,
                 const std::vector<std::string>& losses, bool all_regs, const std::vector<std::string>& regs,
                 const std::string& where) {
    const auto b = static_cast<int>(detail::find_by_name(blocks, block, where, "block"));
    Entry e;
    e.block = b;
    pick(e.losses, blocks[b].losses, all_losses, losses, where + "." + block + ".loss");
    pick(e.regs, blocks[b].regularizations, all_regs, regs, where + "." + block + ".regularization");
    for (auto& existing : entries)
      if (existing.block == b) {
        existing = std::move(e);
        return *this;
      }
    entries.push_back(std::move(e));
    return *this;
  }

 private:
  template <class Term>
  static void pick(std::vector<int>& out, const std::vector<Term>& terms, bool all,
                   const std::vector<std::string>& names, const std::string& where) {
    if (all) {
      for (std::size_t i = 0; i < terms.size(); ++i) out.push_back(static_cast<int>(i));
      return;
    }
    for (const std::string& n : names) {
      const auto found = static_cast<int>(detail::find_by_name(terms, n, where, "term"));
      bool dup = false;
      for (int o : out) dup = dup || o == found;
      if (!dup) out.push_back(found);
    }
  }
};

}  // namespace sakura
