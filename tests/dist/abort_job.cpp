// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// A job in which one rank fails while the others wait for it in a collective; run under mpiexec
// by support/expect_abort.sh, which checks that every rank stops, with the message, in time.
// Modes: throw_in_collective, throw_in_gradient_sum, config_mismatch, die (exits without a word).
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "sakura/dist/gradient_sum.hpp"
#include "sakura/dist/mpi.hpp"

int main(int argc, char** argv) {
  using namespace sakura;
  dist::MpiSession mpi(&argc, &argv);
  const dist::Comm comm = dist::mpi_comm();
  const std::string mode = argc > 1 ? argv[1] : "";
  const int last = comm.size() - 1;
  dist::run_or_abort(comm, [&] {
    if (mode == "throw_in_collective") {
      if (comm.rank() == last) detail::fail("data.h5ad: row 17: injected failure");
      comm.allreduce_sum(1.0);  // the other ranks wait here for the last one
    } else if (mode == "throw_in_gradient_sum") {
      std::vector<float> g(1 << 20, 1.0f);
      dist::GradientSum<float> sum(comm, dist::GradientSum<float>::even_buckets(1 << 20, 1 << 16));
      for (Index b = sum.buckets() - 1; b >= 0; --b) {
        if (comm.rank() == last && b == sum.buckets() / 2) detail::fail("backward: injected failure");
        sum.start(b, g.data());
      }
      sum.wait_all();
    } else if (mode == "config_mismatch") {
      const std::string config = comm.rank() == last ? R"({"seed": 2})" : R"({"seed": 1})";
      comm.check_same(config, "the config (run.json)");
    } else if (mode == "die") {
      if (comm.rank() == last) std::_Exit(9);
      comm.allreduce_sum(1.0);
    } else {
      detail::fail("abort_job: unknown mode '", mode, "'");
    }
  });
  // reached only if nothing failed: the test expects the job to fail
  return 0;
}
