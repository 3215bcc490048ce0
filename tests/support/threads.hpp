// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Tests that a kernel's result does not depend on the OpenMP thread count.
#pragma once

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace sakura::test {

/// Calls f(threads) with OpenMP set to 1, 2 and 3 threads (once, with 1, without OpenMP), and
/// restores the thread count afterwards.
template <class F>
void on_thread_counts(F&& f) {
#if defined(_OPENMP)
  const int before = omp_get_max_threads();
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    f(threads);
  }
  omp_set_num_threads(before);
#else
  f(1);
#endif
}

}  // namespace sakura::test
