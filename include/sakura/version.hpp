// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Library version.
#pragma once

#define SAKURA_VERSION_MAJOR 0
#define SAKURA_VERSION_MINOR 1
#define SAKURA_VERSION_PATCH 0

namespace sakura {
inline constexpr const char* version = "0.1.0";
}
