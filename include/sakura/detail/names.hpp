// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Looking things up by name (blocks, terms, targets, columns) and saying what exists when a name
/// is not there: one definition for every list of named items (anything with a `.name`).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "sakura/error.hpp"

namespace sakura::detail {

/// The index of the first item named `name`, or -1. Allocates nothing.
template <class Items>
int index_of_name(const Items& items, std::string_view name) {
  int i = 0;
  for (const auto& item : items) {
    if (item.name == name) return i;
    ++i;
  }
  return -1;
}

/// "a, b, c", or "(none)": what a message lists when a name is not found.
template <class Items>
std::string names_of(const Items& items) {
  std::string known;
  for (const auto& item : items) known += (known.empty() ? "" : ", ") + std::string(item.name);
  return known.empty() ? "(none)" : known;
}

/// The index of the item named `name`; otherwise throws "<where>: no <what> named '<name>';
/// configured: <names>".
template <class Items>
std::size_t find_by_name(const Items& items, std::string_view name, const std::string& where, const char* what) {
  const int i = index_of_name(items, name);
  if (i < 0) fail(where, ": no ", what, " named '", name, "'; configured: ", names_of(items));
  return static_cast<std::size_t>(i);
}

}  // namespace sakura::detail
