// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// One exception type for every bad input: config, batch, selection, file.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace sakura {

/// Thrown for every user-facing error. The message names the offending key, file or shape.
/// A throwing train() leaves parameters, optimizer state and the random stream untouched.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error("sakura: " + what) {}
};

namespace detail {
template <class... Args>
[[noreturn]] inline void fail(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  throw Error(os.str());
}
template <class... Args>
inline void require(bool ok, Args&&... args) {
  if (!ok) fail(std::forward<Args>(args)...);
}
}  // namespace detail
}  // namespace sakura
