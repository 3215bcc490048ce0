// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Field<Options, M>: a term option's JSON key, its member and whether it is required. Terms
/// declare a tuple of these; config/json.hpp reads them generically, so no term header needs JSON.
#pragma once

#include <string_view>
#include <tuple>

namespace sakura::detail {

template <class Options, class M>
struct Field {
  std::string_view key;
  M Options::*member;
  bool required = false;
};

template <class Options, class M>
constexpr Field<Options, M> field(std::string_view key, M Options::*member, bool required = false) {
  return {key, member, required};
}

}  // namespace sakura::detail
