// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Prints the number of usable CUDA devices (0 without a driver or device), for require_gpus.sh.
#include <cstdio>

#include "sakura/backend/cuda/ops.hpp"

int main() { std::printf("%d\n", sakura::cuda::device_count()); }
