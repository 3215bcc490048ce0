// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// sakura_stream_read: what a backed .h5ad costs and delivers.
//   sakura_stream_read FILE.h5ad [--batch N] [--seconds S] [--block-cells B] [--blocks-per-fetch F]
//     the loader alone: the memory the open file holds, and the cells per second the loader
//     (story::Feed: read, stage, fill a batch) hands over, drawing batches as a backed run does
//     (exact: random cells; blocks: shuffled blocks).
//   sakura_stream_read train CONFIG [--h5ad FILE] [--ticks N] [--rounds R]
//     the reference and the backed runs in one process: ticks/s and CPU time per tick (all threads)
//     of CONFIG's story (Runner::run only, data set up before the clock starts) in memory, backed
//     exact and backed blocks, R rounds alternating, and the medians of the backed/in-memory ratios.
// Timings only: no pass/fail (bench/stream.sh runs both).
#include <malloc.h>
#include <sys/resource.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <algorithm>
#include <filesystem>

#include <sakura/io/h5ad_rows.hpp>
#include <sakura/story/feed.hpp>
#include <sakura/story/runner.hpp>
#include <sakura/story/session.hpp>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// Peak and current resident memory of this process (kB), from /proc/self/status.
std::pair<long, long> rss_kb() {
  std::ifstream in("/proc/self/status");
  long hwm = 0, rss = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmHWM:", 0) == 0) hwm = std::stol(line.substr(6));
    if (line.rfind("VmRSS:", 0) == 0) rss = std::stol(line.substr(6));
  }
  return {hwm, rss};
}

long arg(int argc, char** argv, const char* name, long dflt) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) {
      long v = 0;
      std::from_chars(argv[i + 1], argv[i + 1] + std::strlen(argv[i + 1]), v);
      return v;
    }
  return dflt;
}

/// Batches from a sampler through a Feed for about `secs` seconds; cells per second.
double cells_per_second(sakura::story::Feed& feed, sakura::data::Sampler& s, double secs) {
  std::vector<sakura::data::Sampler> one{s};
  feed.reset(one);
  const auto t0 = Clock::now();
  long cells = 0;
  double t = 0;
  do {
    if (one[0].exhausted()) one[0].begin_epoch();
    cells += feed.next(0, one[0]).expr.rows();
    t = seconds_since(t0);
  } while (t < secs);
  return static_cast<double>(cells) / t;
}

const char* str_arg(int argc, char** argv, const char* name, const char* dflt) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return dflt;
}

/// CPU seconds this process (all its threads) has used.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

struct Rate {
  double ticks_per_s, cpu_ms_per_tick;
};

/// Ticks per second (and CPU time per tick, all threads: what a run costs on a machine without a
/// spare core) of `config`'s story for `ticks` ticks: in memory (backed false) or backed with
/// `mode`; only Runner::run is timed.
Rate rate(const std::string& config, const std::string& h5ad, bool backed, sakura::data::SamplingOptions::Mode mode,
          std::int64_t ticks) {
  namespace story = sakura::story;
  story::SessionOptions so;
  so.base_dir = std::filesystem::path(config).parent_path().string();
  story::Setup setup = story::load_setup(config, so);
  if (!h5ad.empty()) setup.dataset.h5ad = h5ad;
  setup.dataset.backed = backed;
  setup.dataset.sampling.mode = mode;
  story::Session session(std::move(setup), so);
  story::RunnerOptions ro;
  ro.max_ticks = ticks;
  story::Runner r(session, ro);
  const auto t0 = Clock::now();
  const double c0 = cpu_seconds();
  r.run();
  const double n = static_cast<double>(ticks);
  return {n / seconds_since(t0), 1e3 * (cpu_seconds() - c0) / n};
}

int train(int argc, char** argv) {
  using Mode = sakura::data::SamplingOptions::Mode;
  const std::string config = argv[2], h5ad = str_arg(argc, argv, "--h5ad", "");
  const long ticks = arg(argc, argv, "--ticks", 500), rounds = arg(argc, argv, "--rounds", 3);
  std::printf("train %s%s%s, %ld ticks per run, %ld rounds\n", config.c_str(), h5ad.empty() ? "" : " on ",
              h5ad.c_str(), ticks, rounds);
  std::vector<double> exact_ratio, blocks_ratio, exact_cpu, blocks_cpu;
  for (long round = 0; round < rounds; ++round) {
    const Rate memory = rate(config, h5ad, false, Mode::Exact, ticks);
    const Rate exact = rate(config, h5ad, true, Mode::Exact, ticks);
    const Rate blocks = rate(config, h5ad, true, Mode::Blocks, ticks);
    exact_ratio.push_back(exact.ticks_per_s / memory.ticks_per_s);
    blocks_ratio.push_back(blocks.ticks_per_s / memory.ticks_per_s);
    exact_cpu.push_back(exact.cpu_ms_per_tick / memory.cpu_ms_per_tick);
    blocks_cpu.push_back(blocks.cpu_ms_per_tick / memory.cpu_ms_per_tick);
    std::printf("round %ld     ticks/s (CPU ms/tick): in memory %.1f (%.1f)  backed exact %.1f (%.1f)  backed blocks "
                "%.1f (%.1f)\n",
                round, memory.ticks_per_s, memory.cpu_ms_per_tick, exact.ticks_per_s, exact.cpu_ms_per_tick,
                blocks.ticks_per_s, blocks.cpu_ms_per_tick);
    std::fflush(stdout);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf("median      ticks/s: backed exact / in memory %.2fx  backed blocks / in memory %.2fx\n",
              median(exact_ratio), median(blocks_ratio));
  std::printf("median      CPU per tick: backed exact / in memory %.2fx  backed blocks / in memory %.2fx\n",
              median(exact_cpu), median(blocks_cpu));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "train") == 0) {
    try {
      return train(argc, argv);
    } catch (const sakura::Error& e) {
      std::fprintf(stderr, "sakura_stream_read: %s\n", e.what());
      return 1;
    }
  }
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: sakura_stream_read FILE.h5ad [--batch N] [--seconds S] [--block-cells B] "
                         "[--blocks-per-fetch F]\n       sakura_stream_read train CONFIG [--h5ad FILE] [--ticks N] [--rounds R]\n");
    return 2;
  }
  const std::string file = argv[1];
  const long batch = arg(argc, argv, "--batch", 100), secs = arg(argc, argv, "--seconds", 5);
  namespace data = sakura::data;
  try {
    const auto t0 = Clock::now();
    const std::size_t heap0 = mallinfo2().uordblks;
    data::TrainingData<float> d = sakura::io::read_h5ad_backed<float>(file, {}, {}, sakura::data::PhenoJson::object(), "");
    const double open_s = seconds_since(t0);
    const auto [hwm, rss] = rss_kb();
    const double cells = static_cast<double>(d.n_cells());
    std::printf("open        %.2f s  %lld cells x %lld genes  heap held %.1f bytes/cell  peak RSS %.1f MiB (%.1f now)\n",
                open_s, static_cast<long long>(d.n_cells()), static_cast<long long>(d.n_genes()),
                static_cast<double>(mallinfo2().uordblks - heap0) / cells, hwm / 1024.0, rss / 1024.0);
    const data::RowSet all = data::RowSet::all(d.n_cells());
    sakura::story::Feed feed(d);
    data::Sampler exact(all, batch, 1);
    std::printf("exact       %.0f cells/s (random cells, batches of %ld)\n", cells_per_second(feed, exact, secs), batch);
    data::SamplingOptions b{data::SamplingOptions::Mode::Blocks, arg(argc, argv, "--block-cells", 64),
                            arg(argc, argv, "--blocks-per-fetch", 16)};
    data::Sampler blocks(all, batch, 1, false, b);
    std::printf("blocks      %.0f cells/s (blocks of %lld cells, %lld per fetch)\n", cells_per_second(feed, blocks, secs),
                static_cast<long long>(b.block_cells), static_cast<long long>(b.blocks_per_fetch));
  } catch (const sakura::Error& e) {
    std::fprintf(stderr, "sakura_stream_read: %s\n", e.what());
    return 1;
  }
  return 0;
}
