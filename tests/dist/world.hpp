// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The MPI_COMM_WORLD Comm of the tests run under mpiexec, made once (inside support/mpi_catch_main's MpiSession).
#pragma once

#include "sakura/dist/mpi.hpp"

namespace sakura::test {

inline const dist::Comm& world() {
  static const dist::Comm comm = dist::mpi_comm();
  return comm;
}

}  // namespace sakura::test
