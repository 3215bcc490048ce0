// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// TypeList and helpers: the registries of loss and regularizer types are type lists.
#pragma once

#include <cstddef>
#include <string_view>
#include <type_traits>
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

template <std::size_t I, class L>
struct type_at;
template <std::size_t I, class T, class... Ts>
struct type_at<I, TypeList<T, Ts...>> : type_at<I - 1, TypeList<Ts...>> {};
template <class T, class... Ts>
struct type_at<0, TypeList<T, Ts...>> {
  using type = T;
};
template <std::size_t I, class L>
using type_at_t = typename type_at<I, L>::type;

/// Position of alternative A in variant V.
template <class V, class A, std::size_t I = 0>
constexpr std::size_t variant_index() {
  if constexpr (std::is_same_v<std::variant_alternative_t<I, V>, A>) return I;
  else return variant_index<V, A, I + 1>();
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
