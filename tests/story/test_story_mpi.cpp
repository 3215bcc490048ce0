// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The library's story on the ranks of an mpiexec job (each rank in a folder of its own): a Session
// and Runner given the world's Comm train, only rank 0 writes, and a tick allocates nothing once
// warm on any rank. sakura-train's own jobs are tests/story/mpi/.
#include <sakura/story/demo.hpp>  // first: brings config/json.hpp before the io readers

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "dist/world.hpp"
#include "support/counting_new.hpp"

using namespace sakura;
using config::Json;
namespace fs = std::filesystem;

namespace {
/// This rank's folder under a folder of the job (rank 0's process id, shared), with the demo's
/// data and config, the config's paths relative to the folder.
fs::path rank_folder(const dist::Comm& comm) {
  std::string job = std::to_string(::getpid());
  comm.broadcast(job, 0);
  const fs::path dir = fs::temp_directory_path() / ("sakura_story_mpi_" + job) / ("r" + std::to_string(comm.rank()));
  fs::remove_all(dir);
  story::DemoOptions o;
  o.cells = 240;
  o.genes = 60;
  o.ticks = 1000;
  o.segment = 100000;  // no tests or checkpoints: the ticks alone
  o.out_dir = dir.string();
  Json cfg = config::read_json_file(story::write_demo_files(o));
  cfg["log_path"] = "log/";
  for (const char* k : {"gene_expr_MM_path", "gene_name_csv_path", "cell_name_csv_path", "pheno_csv_path"})
    cfg["dataset"][k] = "data/" + fs::path(cfg["dataset"][k].get<std::string>()).filename().string();
  cfg["dataset"]["signature_config_path"] = "signature_config.json";
  std::ofstream(dir / "config.json") << cfg.dump(2) << "\n";
  return dir;
}
}  // namespace

TEST_CASE("a story on N ranks: rank 0 alone writes, a tick allocates nothing once warm", "[mpi][run][alloc]") {
  const dist::Comm& comm = test::world();
  const fs::path dir = rank_folder(comm);
  story::SessionOptions so;
  so.base_dir = dir.string();  // the ranks' paths differ, their files do not: they agree
  so.comm = comm;
  std::vector<long> allocs;
  for (const std::int64_t ticks : {5, 60, 180}) {
    story::Session s((dir / "config.json").string(), so);
    story::RunnerOptions ro;
    ro.max_ticks = ticks;
    story::Runner r(s, ro);
    CHECK(r.writer() == (comm.rank() == 0));
    test::CountedAllocations counted;
    r.run();
    allocs.push_back(counted.count());
  }
  INFO("rank " << comm.rank() << " of " << comm.size() << ": " << allocs[1] << " allocations in 60 ticks, "
                << allocs[2] << " in 180");
  CHECK(allocs[2] == allocs[1]);
  CHECK(fs::exists(dir / "log" / "losses.tsv") == (comm.rank() == 0));
  CHECK(fs::exists(dir / "log") == (comm.rank() == 0));
  fs::remove_all(dir);
  comm.allreduce_sum(0.0);  // every rank's folder is gone: the job's folder goes too
  if (comm.rank() == 0) fs::remove(dir.parent_path());
}
