// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// One exception type for every bad input: config, batch, selection, file.
#pragma once

#include <cstdint>
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
/// Class labels index [0, classes): the first one outside fails as "<what>: label L of cell r is
/// outside [0, classes)" (a CPU kernel would read and write past its row otherwise).
template <class... What>
inline void require_labels(const std::int64_t* labels, std::int64_t n, std::int64_t classes, const What&... what) {
  for (std::int64_t r = 0; r < n; ++r)
    if (labels[r] < 0 || labels[r] >= classes)
      fail(what..., ": label ", labels[r], " of cell ", r, " is outside [0, ", classes, ")");
}
}  // namespace detail
}  // namespace sakura
