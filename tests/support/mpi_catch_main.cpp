// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Catch2's main for tests run under mpiexec: MPI around the session, one exit status for the job.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "sakura/dist/mpi.hpp"

int main(int argc, char** argv) {
  sakura::dist::MpiSession mpi(&argc, &argv);
  const int failed = Catch::Session().run(argc, argv);
  // a failure on any rank fails every rank (max of ints: the order of MPI's reduction is irrelevant)
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any ? 1 : 0;
}
