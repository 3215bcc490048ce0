// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// sakura_bench_dist: what the distributed step will exchange, timed under mpiexec: the gradient
// sum of the tutorial model's parameters (one bucket and smaller ones, blocking and overlapped
// with stand-in backward work, MPI_Allreduce as an unordered reference), the allgather of the
// B x 50 latents, and the rank-order allreduce of a few partial sums. Also (--step) the
// single-process training step at the tutorial shape, timed on every rank at once, as the
// ranks of a job would compute. Plain timing loops: every rank runs the same iterations (a
// benchmark library choosing iteration counts per rank would deadlock the collectives).
// Times are per operation, the slowest rank's, median over --iters (min in brackets), and the
// process CPU time per call (mean over ranks): on a loaded machine, what an idle core would take.
// --dist-step times the distributed training step itself (ticks/s, share spent exchanging).
// Usage: mpiexec -np 2 sakura_bench_dist [--iters N] [--step | --dist-step]
#include "tutorial_case.hpp"

#include <sakura/dist/gradient_sum.hpp>
#include <sakura/dist/mpi.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

namespace {

using namespace sakura;

struct Stats {
  double median, min;
  double cpu = 0;  // process CPU seconds per call, mean over ranks (what an idle core would take)
};

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

/// The op's time per call: each iteration starts together (barrier) and counts the slowest rank.
Stats time_op(const dist::Comm& comm, int iters, const std::function<void()>& op) {
  for (int w = 0; w < 2; ++w) op();
  std::vector<double> mine(static_cast<std::size_t>(iters));
  double cpu = 0;
  for (double& t : mine) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime(), c0 = cpu_seconds();
    op();
    t = MPI_Wtime() - t0;
    cpu += cpu_seconds() - c0;
  }
  cpu = comm.allreduce_sum(cpu) / (double(iters) * comm.size());
  std::vector<double> all(mine.size() * static_cast<std::size_t>(comm.size()));
  comm.allgather(std::span<const double>(mine), std::span<double>(all));
  std::vector<double> slowest(mine.size(), 0.0);
  for (std::size_t r = 0; r < std::size_t(comm.size()); ++r)
    for (std::size_t i = 0; i < mine.size(); ++i) slowest[i] = std::max(slowest[i], all[r * mine.size() + i]);
  std::sort(slowest.begin(), slowest.end());
  return {slowest[slowest.size() / 2], slowest.front(), cpu};
}

void row(const dist::Comm& comm, const std::string& what, double bytes, double bus_factor, Stats s) {
  if (comm.rank() != 0) return;
  const double algbw = bytes / s.median * 1e-9;
  std::printf("%-46s %10.3f ms [%8.3f]  cpu %8.3f ms  %8.3f MB  %6.2f GB/s alg  %6.2f GB/s bus\n", what.c_str(),
              s.median * 1e3, s.min * 1e3, s.cpu * 1e3, bytes * 1e-6, algbw, algbw * bus_factor);
}

/// Stand-in for a piece of backward: streaming arithmetic over a private buffer (memory- and
/// core-bound like the step's kernels), about `ms` milliseconds.
struct Work {
  std::vector<float> buf = std::vector<float>(1 << 20, 1.0f);
  double per_pass = 0;
  void pass() {
    for (float& x : buf) x = x * 0.999f + 0.001f;
  }
  void calibrate() {
    const double t0 = MPI_Wtime();
    for (int i = 0; i < 20; ++i) pass();
    per_pass = (MPI_Wtime() - t0) / 20;
  }
  void run(double ms) {
    for (int i = 0, n = std::max(1, int(ms * 1e-3 / per_pass + 0.5)); i < n; ++i) pass();
  }
};

Index tutorial_parameters() {
  Controller<float> ctl(bench::tutorial_spec({10000, 200, 50, 100}));
  Index n = 0;
  for (const auto& p : ctl.model().parameters().all()) n += p.value.size();
  return n;
}

/// The single-process step (runtime API, tutorial_both) at two batch sizes, on every rank at once;
/// the two CPU times give the model's compute per cell and fixed cost per step (optimizer, ...).
void step_times(const dist::Comm& comm, int iters) {
  const Index batches[2] = {100, 400};
  double cpu[2];
  for (int k = 0; k < 2; ++k) {
    const bench::Shape shape{10000, 200, 50, batches[k]};
    Controller<float> ctl(bench::tutorial_spec(shape));
    auto data = bench::tutorial_batches(shape);
    std::size_t i = 0;
    const Stats s = time_op(comm, iters, [&] { (void)ctl.train(data[i++ % data.size()]); });
    cpu[k] = s.cpu;
    if (comm.rank() == 0)
      std::printf("%-46s %10.3f ms [%8.3f]  cpu %8.3f ms\n",
                  ("step/tutorial_both B=" + std::to_string(batches[k]) + ", 1 thread x " +
                   std::to_string(comm.size()) + " ranks at once")
                      .c_str(),
                  s.median * 1e3, s.min * 1e3, s.cpu * 1e3);
  }
  const double per_cell = (cpu[1] - cpu[0]) / double(batches[1] - batches[0]);
  if (comm.rank() == 0)
    std::printf("step model (cpu): %.1f us per cell + %.2f ms per step\n", per_cell * 1e6,
                (cpu[0] - per_cell * double(batches[0])) * 1e3);
}

/// This rank's rows of a tutorial batch (dense expression and the cd8 targets), as the
/// distributed step's contract splits a global batch.
Batch<float> rank_rows(const Batch<float>& b, const dist::Comm& comm) {
  const auto [first, count] = dist::balanced_range(b.cells(), comm.size(), comm.rank());
  auto rows = [&](const Tensor<float>& t) {
    Tensor<float> out(count, t.cols());
    std::copy_n(t.data() + first * t.cols(), count * t.cols(), out.data());
    return out;
  };
  Batch<float> out(rows(b.expr));
  for (const auto& s : b.signatures()) out.set_signature(s.name, rows(s.values));
  return out;
}

/// The distributed training step itself (Controller(spec, comm)) at the tutorial shape, each rank
/// on its rows of a global batch of 100 and 400 cells: ticks per second (slowest rank) and the
/// share of a step the ranks spend in the step's exchanges. Run at 1 rank x 2 threads and at
/// 2 ranks x 1 thread to compare (one rank is the single-process step); on N ranks with the
/// sharded optimizer (the default), the replicated one, and gradient sums started during backward.
void dist_step_times(const dist::Comm& comm, int iters) {
  struct Variant {
    const char* name;
    bool sharded, overlap;
  };
  const Variant variants[] = {{"sharded optimizer", true, false},
                              {"replicated optimizer", false, false},
                              {"sharded, sums during backward", true, true}};
  for (Index batch : {Index(100), Index(400)})
    for (const Variant& v : variants) {
      if (comm.size() == 1 && &v != variants) continue;  // one rank: nothing to shard or sum
      const bench::Shape shape{10000, 200, 50, batch};
      Controller<float> ctl(bench::tutorial_spec(shape), comm);
      ctl.set_optimizer_sharding(v.sharded);
      ctl.set_gradient_overlap(v.overlap);
      std::vector<Batch<float>> data;
      for (const auto& b : bench::tutorial_batches(shape)) data.push_back(rank_rows(b, comm));
      std::size_t i = 0;
      double exchange = 0;
      const Stats s = time_op(comm, iters, [&] {
        const double e0 = ctl.exchange_seconds();
        (void)ctl.train(data[i++ % data.size()]);
        exchange += ctl.exchange_seconds() - e0;
      });
      const double share = comm.allreduce_sum(exchange) / comm.size() / (iters + 2) / s.median;
      if (comm.rank() == 0)
        std::printf("%-56s %10.3f ms [%8.3f]  cpu %8.3f ms  %6.2f ticks/s [%6.2f]  exchange %4.1f%%\n",
                    ("train B=" + std::to_string(batch) + ", " + std::to_string(comm.size()) + " rank(s)" +
                     (comm.size() > 1 ? std::string(", ") + v.name : std::string()))
                        .c_str(),
                    s.median * 1e3, s.min * 1e3, s.cpu * 1e3, 1.0 / s.median, 1.0 / s.min, 100 * share);
    }
}

}  // namespace

int main(int argc, char** argv) {
  dist::MpiSession mpi(&argc, &argv);
  const dist::Comm comm = dist::mpi_comm();
  int iters = 30;
  bool step = false, dist_step = false;
  for (int a = 1; a < argc; ++a) {
    if (!std::strcmp(argv[a], "--iters") && a + 1 < argc) iters = std::max(1, std::atoi(argv[++a]));
    else if (!std::strcmp(argv[a], "--step")) step = true;
    else if (!std::strcmp(argv[a], "--dist-step")) dist_step = true;
  }
  return dist::run_or_abort(comm, [&] {
    if (dist_step) {  // only the distributed step
      dist_step_times(comm, iters);
      return 0;
    }
    const int n = comm.size();
    const double ring = 2.0 * (n - 1) / n;  // bytes each rank sends per byte of an allreduce
    const Index params = tutorial_parameters();
    if (comm.rank() == 0)
      std::printf("%d ranks (%s), %d iterations; tutorial model: %lld parameters (%.2f MB of float gradients)\n", n,
                  comm.name(), iters, static_cast<long long>(params), double(params) * 4e-6);

    std::vector<float> grad(static_cast<std::size_t>(params), 1.0f / float(comm.rank() + 1));
    const double bytes = double(params) * 4;
    for (Index bucket : {params, Index(1) << 20, Index(1) << 18, Index(1) << 16}) {
      dist::GradientSum<float> sum(comm, dist::GradientSum<float>::even_buckets(params, bucket));
      const std::string what = "gradient sum, " + std::to_string(sum.buckets()) + " bucket" +
                               (sum.buckets() > 1 ? "s of " + std::to_string(bucket * 4 >> 10) + " KiB" : "");
      row(comm, what, bytes, ring, time_op(comm, iters, [&] { sum.run(grad.data()); }));
    }
    row(comm, "MPI_Allreduce (unordered; reference only)", bytes, ring, time_op(comm, iters, [&] {
          MPI_Allreduce(MPI_IN_PLACE, grad.data(), int(params), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        }));

    // overlap: backward pieces (stand-ins) with a bucket started after each, as the step will do
    Work work;
    work.calibrate();
    dist::GradientSum<float> sum(comm, dist::GradientSum<float>::even_buckets(params, Index(1) << 18));
    const double backward_ms = 20;
    const double piece = backward_ms / double(sum.buckets());
    const Stats alone = time_op(comm, iters, [&] { work.run(backward_ms); });
    const Stats both = time_op(comm, iters, [&] {
      for (Index b = sum.buckets() - 1; b >= 0; --b) {
        work.run(piece);
        sum.start(b, grad.data());
        sum.progress();
      }
      sum.wait_all();
    });
    row(comm, "stand-in backward alone (20 ms of work)", 0, 0, alone);
    row(comm, "  same, each 1 MiB bucket started when ready", bytes, ring, both);

    for (Index batch : {Index(100), Index(400)}) {
      const auto split = dist::RowSplit::balanced(batch, n);
      Tensor<float> mine(split.count(comm.rank()), 50), all(batch, 50);
      mine.fill(float(comm.rank()));
      row(comm, "allgather_rows " + std::to_string(batch) + " x 50 latents", double(batch * 50 * 4),
          double(n - 1) / n, time_op(comm, iters * 10, [&] { comm.allgather_rows<float>(mine.ref(), split, all.ref()); }));
    }
    std::vector<double> partials(8, 1.0);
    row(comm, "allreduce_sum of 8 doubles (rank order)", 64, ring,
        time_op(comm, iters * 10, [&] { comm.allreduce_sum(std::span(partials)); }));
    if (step) step_times(comm, iters);
    return 0;
  });
}
