// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The exact distributed step on GPU ranks (Controller<T, Cuda> with N > 1) under mpiexec, on
// either engine: NCCL, one GPU per rank ("[nccl]"), or the MPI host engine, whose ranks may share
// one GPU ("[mpi]"). Every golden case and the mixed case (dropout, sparse input, every prior, KL,
// GRL, heads, summed steps, eval, loss; uneven and empty splits) against the single-process GPU
// controller and against the same ranks on the CPU, within test_step_mpi's bounds; runs are
// bit-identical from run to run, parameters identical on every rank, and the NCCL and MPI engines
// give the same bits. ctest runs a variant only where its GPUs exist (support/require_gpus.sh) and
// reports it as skipped elsewhere.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "sakura/backend/cuda/ops.hpp"
#include "sakura/dist/nccl.hpp"
#include "step_checks.hpp"
#include "world.hpp"

using namespace sakura;
using namespace sakura::test;

namespace {

/// world()'s ranks with NCCL data collectives, rank r on GPU r % devices (made on first use, before
/// any other GPU work of the test: it selects the device).
const dist::Comm& nccl() {
  static const dist::Comm comm = dist::nccl_comm(world(), world().rank() % std::max(1, cuda::device_count()));
  return comm;
}

const char* engine(const dist::Comm& comm) { return comm.memory() == dist::Memory::Device ? "NCCL" : "MPI"; }

/// Every golden case on GPU ranks of `comm` against one process on the GPU, the same ranks on the
/// CPU, upstream's numbers (the GPU golden tolerance) and itself (run to run, host engine).
void golden_cases(const dist::Comm& comm) {
  const auto files = golden_files();
  REQUIRE(!files.empty());
  for (const auto& f : files) {
    std::vector<float> single, gpus, again, host_engine, cpus;
    std::vector<double> single64, gpus64, cpus64;
    replay<float, Cuda>(f, 1e-4, {}, [&](auto& c) { single = params_of(c); });
    const Worst w = replay<float, Cuda>(f, 1e-4, comm, [&](auto& c) {
      c.check_replicas();  // throws on every rank if any rank's parameters or optimizer state differ
      gpus = params_of(c);
    });
    replay<float, Cuda>(f, 1e-4, comm, [&](auto& c) { again = params_of(c); });
    replay<float, Cuda>(f, 1e-4, world(), [&](auto& c) { host_engine = params_of(c); });
    replay<float, Cpu>(f, 1e-5, world(), [&](auto& c) { cpus = params_of(c); });
    replay<double, Cuda>(f, 1e-5, {}, [&](auto& c) { single64 = params_of(c); });
    const Worst w64 = replay<double, Cuda>(f, 1e-5, comm, [&](auto& c) {
      c.check_replicas();
      gpus64 = params_of(c);
    });
    replay<double, Cpu>(f, 1e-5, world(), [&](auto& c) { cpus64 = params_of(c); });
    const double e32 = worst_rel(gpus, single), c32 = worst_rel(gpus, cpus);
    const double e64 = worst_rel(gpus64, single64), c64 = worst_rel(gpus64, cpus64);
    if (comm.rank() == 0)
      std::printf("%s np %d golden %-38s vs upstream: loss %.1e param %.1e | vs 1 GPU: float %.1e double %.1e | "
                  "vs CPU ranks: float %.1e double %.1e\n",
                  engine(comm), comm.size(), f.filename().string().c_str(), w.loss, w.param, e32, e64, c32, c64);
    INFO(engine(comm) << " " << f.filename().string());
    for (auto& s : w.failures) UNSCOPED_INFO("float32: " << s);
    for (auto& s : w64.failures) UNSCOPED_INFO("float64: " << s);
    CHECK(w.failures.empty());
    CHECK(w64.failures.empty());
    CHECK(e32 <= 1e-5);  // test_step_mpi's bounds against one process
    CHECK(e64 <= 1e-12);
    CHECK(c32 <= 1e-4);  // the GPU's float tolerance (test_gpu_controller)
    CHECK(c64 <= 1e-9);
    CHECK(same_bits(gpus, again));        // run to run, same N
    CHECK(same_bits(gpus, host_engine));  // NCCL and MPI move the same bits and add in the same order
  }
}

/// The mixed case on `cells` cells: GPU ranks of `comm` against one process on the GPU and the
/// same ranks on the CPU. Returns the worst relative errors {records vs 1 GPU, parameters vs 1
/// GPU, records vs CPU ranks, parameters vs CPU ranks}; checks the generator, the replicas and
/// the forward views.
template <class T>
std::vector<double> mixed_errors(const dist::Comm& comm, Index cells, int steps) {
  Controller<T, Cuda> single(mixed_spec());
  const auto expected = run_mixed(single, steps, cells, [](Batch<T> b) { return b; });
  Controller<T, Cuda> gpus(mixed_spec(), comm);
  const auto got = run_mixed(gpus, steps, cells, [&](const Batch<T>& b) { return rank_rows(b, comm); });
  Controller<T, Cpu> cpus(mixed_spec(), world());
  const auto on_cpu = run_mixed(cpus, steps, cells, [&](const Batch<T>& b) { return rank_rows(b, comm); });
  REQUIRE(got.size() == expected.size());
  REQUIRE(got.size() == on_cpu.size());
  double vs_single = 0, vs_cpu = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    vs_single = std::max(vs_single, worst_rel(got[i], expected[i]));
    vs_cpu = std::max(vs_cpu, worst_rel(got[i], on_cpu[i]));
  }
  const auto p = params_of(gpus);
  const std::vector<double> e = {vs_single, worst_rel(p, params_of(single)), vs_cpu, worst_rel(p, params_of(cpus))};
  if (comm.rank() == 0)
    std::printf("%s np %d mixed case, %s, %lld cells, %d steps: vs 1 GPU losses %.1e parameters %.1e | vs CPU ranks "
                "losses %.1e parameters %.1e\n",
                engine(comm), comm.size(), sizeof(T) == 4 ? "float" : "double", static_cast<long long>(cells), steps,
                e[0], e[1], e[2], e[3]);
  CHECK(gpus.rng().state() == single.rng().state());  // the same draws were reserved
  gpus.check_replicas();
  // the forward views hold this rank's rows (the caller gathers them)
  CHECK(gpus.view(gpus.forward().main).rows == gpus.split().count(comm.rank()));
  CHECK(gpus.view(gpus.forward().recon).rows == gpus.split().count(comm.rank()));
  return e;
}

void mixed_case(const dist::Comm& comm) {
  // float: the losses of the first 12 calls, as test_step_mpi (its comment says why parameters
  // are compared in double); against the CPU ranks with the GPU's float tolerance
  const auto f = mixed_errors<float>(comm, 29, 12);
  CHECK(f[0] <= 1e-5);
  CHECK(f[2] <= 1e-4);
  // double, 24 steps, a rank with no rows and one row per rank included
  for (Index cells : {Index(29), Index(comm.size() - 1), Index(comm.size())}) {
    INFO(engine(comm) << ", cells " << cells);
    const auto d = mixed_errors<double>(comm, cells, 24);
    for (double e : d) CHECK(e <= 1e-9);
  }
}

/// Graphs requested on GPU ranks: the step runs eagerly (a graph cannot hold the host collectives)
/// and gives the eager step's bits.
void graphs_off(const dist::Comm& comm) {
  Controller<float, Cuda> eager(mixed_spec(), comm), asked(mixed_spec(), comm);
  asked.enable_graphs(true);
  for (int s = 0; s < 4; ++s) {  // a graph would be captured on the second step and replayed after
    const Batch<float> b = rank_rows(mixed_batch<float>(7, 17), comm);
    const double a = eager.train(b).total;
    CHECK(asked.train(b).total == a);
  }
  CHECK(same_bits(params_of(eager), params_of(asked)));
}

}  // namespace

TEST_CASE("GPU ranks over NCCL: every golden case", "[nccl][golden]") { golden_cases(nccl()); }
TEST_CASE("GPU ranks over NCCL: the mixed case", "[nccl][mixed]") { mixed_case(nccl()); }
TEST_CASE("GPU ranks over NCCL: graphs stay off", "[nccl][graph]") { graphs_off(nccl()); }

TEST_CASE("GPU ranks over MPI (host staging): every golden case", "[mpi][golden]") { golden_cases(world()); }
TEST_CASE("GPU ranks over MPI (host staging): the mixed case", "[mpi][mixed]") { mixed_case(world()); }
TEST_CASE("GPU ranks over MPI (host staging): graphs stay off", "[mpi][graph]") { graphs_off(world()); }
