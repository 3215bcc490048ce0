// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// TypeList and helpers: the registries of loss and regularizer types are type lists.
#pragma once

#include <string_view>
#include <variant>

namespace sakura::detail {

template <class... Ts>
struct TypeList {
  static constexpr std::size_t size = sizeof...(Ts);
};

/// Calls f.template operator()<T>() for every T until it returns true.
template <class... Ts, class F>
constexpr bool for_each_type(TypeList<Ts...>, F&& f) {
  return (f.template operator()<Ts>() || ...);
}

template <template <class> class Wrap, class L>
struct variant_of;
template <template <class> class Wrap, class... Ts>
struct variant_of<Wrap, TypeList<Ts...>> {
  using type = std::variant<Wrap<Ts>...>;
};

/// True when `name` is T's JSON type key or one of its aliases.
template <class T>
constexpr bool names_type(std::string_view name) {
  for (std::string_view n : T::names)
    if (n == name) return true;
  return false;
}

}  // namespace sakura::detail
