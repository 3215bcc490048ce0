// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// A 64-bit digest of bytes, for "do all ranks hold the same bytes" checks (not cryptographic).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "sakura/error.hpp"

namespace sakura::dist::detail {
using sakura::detail::fail;  // re-exported: detail::fail means the same whatever was included first
using sakura::detail::require;
/// splitmix64's finaliser: every input bit reaches every output bit.
constexpr std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace sakura::dist::detail

namespace sakura::dist {

/// Digest of `bytes`, word by word (8 bytes at a time: a 16 MB parameter set takes milliseconds),
/// length included, so that buffers of different sizes differ even when one is a prefix.
inline std::uint64_t hash_bytes(std::span<const std::byte> bytes) {
  std::uint64_t h = detail::mix64(0x5a4b5552414b4153ull ^ bytes.size());
  std::size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = detail::mix64(h ^ w) * 0x9e3779b97f4a7c15ull;
  }
  std::uint64_t tail = 0;
  if (i < bytes.size()) std::memcpy(&tail, bytes.data() + i, bytes.size() - i);
  return detail::mix64(h ^ tail ^ (bytes.size() - i));
}

}  // namespace sakura::dist
