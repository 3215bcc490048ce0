// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// sakura-train: the command-line program. Runs an upstream SAKURA config (data, splits, story) end
// to end, resumes from checkpoints, runs inference stories, and has a built-in demo. Started by
// mpirun (built with MPI), its processes run one story together, rank 0 writing every file.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sakura/story/demo.hpp>
#include <sakura/story/runner.hpp>
#include <sakura/version.hpp>
#if defined(SAKURA_WITH_MPI)
#include <sakura/dist/mpi.hpp>
#endif

#include "h5ad_commands.hpp"
#include "results_h5ad.hpp"
#include "tensorboard.hpp"

namespace {

const char* kUsage = R"(usage: sakura-train -c CONFIG [options]
       sakura-train --demo [--demo-out DIR]
       sakura-train convert ...   (to a CSR .h5ad; see sakura-train convert --help)
       sakura-train synth ...     (a synthetic atlas .h5ad; see sakura-train synth --help)

Runs a SAKURA config (upstream's JSON format: dataset, splits, model, story) on the CPU.

  -c, --config PATH          config JSON (default ./config.json, as upstream)
  -r, --resume CKPT          continue the story from a checkpoint, bit-identically
  -i, --inference CKPT       load a checkpoint's model and run an inference story
  -y, --inference_story PATH the inference story (test items; default ./inference.json)
  -s, --suppress_train       set up data and model, then stop
  -v, --verbose              more messages
  -x, --suppress_tensorboardX  no TensorBoard event files (the losses still go to losses.tsv)
      --write-h5ad PATH      also write the results as AnnData: latents and head outputs in obsm
                             (X_sakura_main, X_sakura_<block>, X_sakura_<block>_out), losses and
                             config in uns["sakura"], obs/var copied from the input (X only with
                             --h5ad-with-x); --h5ad-results-only: obs holds only the cell names
      --backed               read the .h5ad's X from disk as it trains (the config's dataset.backed);
                             dataset.sampling "exact" (default: the batches of an in-memory run) or
                             "blocks" (blocks of consecutive cells, for throughput on disk)
  -C, --base-dir DIR         resolve relative paths of the config against DIR
                             (default: the working directory, as upstream)
      --max-ticks N          stop after N training ticks (checkpoints already written stay valid)
      --eval-chunk N         evaluate test splits N cells at a time (default 2048)
      --progress MODE        bar, lines or none (default: bar on a terminal, else lines)
      --demo                 synthetic tutorial-shaped data (cell types, CD8A/CD8B markers, ~90% zeros)
                             trained with the tutorial's config at reduced size: 2000 cells x 2000
                             genes, 2000 ticks instead of ~5k x 10k and 5000 ticks (same 100 passes
                             per split, so the same weight schedule); prints the cd8 head's
                             correlation with held-out CD8A/CD8B and the main latent's k-NN
                             cell-type accuracy on held-out cells, untrained vs trained
      --demo-out DIR         where the demo writes data, configs and logs (default $TMPDIR/sakura-demo)
      --demo-cells N, --demo-genes N, --demo-ticks N   demo sizes
  -h, --help                 this text
      --version              the version

Outputs under the config's log_path: losses.tsv (tick, upstream scalar name, value), the same
scalars as TensorBoard event files (events.out.tfevents.*; point TensorBoard at log_path),
<epoch>_<latent_prefix>.csv latents (cell names first), <log_path><checkpoint_prefix>_tick_<N>.ckpt.
Each file is written to <file>.tmp, synced and renamed; losses.tsv is synced at each checkpoint.
SIGINT/SIGTERM stop the run at the next tick, naming the checkpoint to resume from.
Exit status: 0 on success, 1 on bad input or a failed run (message on stderr), 2 on bad usage,
128+N when stopped by signal N (130 for SIGINT, 143 for SIGTERM).

Many processes (built with MPI): mpirun -np N sakura-train -c CONFIG [options] trains one model on
N ranks, each holding its share of every batch (OMP_NUM_THREADS threads each). Every rank must be
started with the same arguments, config and data files (checked at start); rank 0 writes every
output and reads the checkpoint of -r/-i; an error on any rank ends all of them with its message.
)";

struct Usage : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::string config = "./config.json", resume, inference, inference_story = "./inference.json", base_dir;
  std::string demo_out, progress;
  bool verbose = false, suppress_train = false, demo = false, suppress_tensorboard = false, backed = false;
  sakura::tools::ResultsH5ad h5ad;
  long long max_ticks = -1, eval_chunk = 2048, demo_cells = 2000, demo_genes = 2000, demo_ticks = 2000;
  std::vector<std::string> argv;  ///< as given: every rank of a job must have the same
};

/// The signal that asked the run to stop (0: none); the runner polls it at every tick.
std::atomic<int> g_interrupt{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler stores into it");

extern "C" void on_signal(int sig) { g_interrupt.store(sig, std::memory_order_relaxed); }

/// SIGINT/SIGTERM stop the run cleanly at the next tick (a second one kills at once: SA_RESETHAND);
/// SIGXFSZ (a file-size limit, like a full disk) becomes a write error that names the file.
void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGXFSZ, SIG_IGN);
}

long long to_int(const std::string& flag, const std::string& v) {
  long long x = 0;
  const auto r = std::from_chars(v.data(), v.data() + v.size(), x);
  if (r.ec != std::errc() || r.ptr != v.data() + v.size()) throw Usage(flag + " needs an integer, got '" + v + "'");
  return x;
}

Args parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> v(argv + 1, argv + argc);
  a.argv = v;
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::string f = v[i], val;
    bool has_val = false;
    if (f.rfind("--", 0) == 0 && f.find('=') != std::string::npos) {
      val = f.substr(f.find('=') + 1);
      f = f.substr(0, f.find('='));
      has_val = true;
    }
    auto value = [&]() -> std::string {
      if (has_val) return val;
      if (i + 1 >= v.size()) throw Usage(f + " needs a value");
      return v[++i];
    };
    // upstream's boolean flags take an optional value (argparse type=bool)
    auto flag = [&]() {
      if (has_val) return val != "False" && val != "0" && val != "false";
      if (i + 1 < v.size() && (v[i + 1] == "True" || v[i + 1] == "False" || v[i + 1] == "1" || v[i + 1] == "0"))
        return v[++i] == "True" || v[i] == "1";
      return true;
    };
    if (f == "-h" || f == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (f == "--version") {
      std::printf("sakura-train %s\n", sakura::version);
#if defined(SAKURA_WITH_MPI)
      std::printf("many processes: MPI; distributed step: %s\n", sakura::story::kDistributedStep ? "yes" : "no");
#else
      std::printf("many processes: no (built without MPI)\n");
#endif
      std::exit(0);
    } else if (f == "-c" || f == "--config") a.config = value();
    else if (f == "-r" || f == "--resume") a.resume = value();
    else if (f == "-i" || f == "--inference") a.inference = value();
    else if (f == "-y" || f == "--inference_story") a.inference_story = value();
    else if (f == "-C" || f == "--base-dir") a.base_dir = value();
    else if (f == "-v" || f == "--verbose") a.verbose = flag();
    else if (f == "-s" || f == "--suppress_train") a.suppress_train = flag();
    else if (f == "-x" || f == "--suppress_tensorboardX") a.suppress_tensorboard = flag();
    else if (f == "--write-h5ad") a.h5ad.path = value();
    else if (f == "--h5ad-with-x") a.h5ad.with_x = true;
    else if (f == "--h5ad-results-only") a.h5ad.results_only = true;
    else if (f == "--backed") a.backed = true;
    else if (f == "-e" || f == "--external_module" || f == "-E" || f == "--external_module_path")
      throw Usage(f + ": inserting external (PyTorch) modules is not supported");
    else if (f == "--max-ticks") a.max_ticks = to_int(f, value());
    else if (f == "--eval-chunk") a.eval_chunk = to_int(f, value());
    else if (f == "--progress") a.progress = value();
    else if (f == "--demo") a.demo = true;
    else if (f == "--demo-out") a.demo_out = value();
    else if (f == "--demo-cells") a.demo_cells = to_int(f, value());
    else if (f == "--demo-genes") a.demo_genes = to_int(f, value());
    else if (f == "--demo-ticks") a.demo_ticks = to_int(f, value());
    else throw Usage("unknown option '" + v[i] + "'");
  }
  if (!a.progress.empty() && a.progress != "bar" && a.progress != "lines" && a.progress != "none")
    throw Usage("--progress must be bar, lines or none, got '" + a.progress + "'");
  if (a.eval_chunk <= 0) throw Usage("--eval-chunk must be positive");
  if (a.max_ticks != -1 && a.max_ticks <= 0) throw Usage("--max-ticks must be positive");
  if (!a.resume.empty() && !a.inference.empty()) throw Usage("-r/--resume and -i/--inference exclude each other");
  if ((a.h5ad.with_x || a.h5ad.results_only) && a.h5ad.path.empty())
    throw Usage("--h5ad-with-x and --h5ad-results-only need --write-h5ad PATH");
  if (a.h5ad.with_x && a.h5ad.results_only) throw Usage("--h5ad-with-x and --h5ad-results-only exclude each other");
  if (a.demo && (a.demo_cells < 100 || a.demo_genes < 60 || a.demo_ticks < 1))
    throw Usage("--demo needs at least 100 cells, 60 genes and 1 tick");
  return a;
}

int run(const Args& a, const sakura::dist::Comm& comm) {
  using namespace sakura::story;
  const bool rank0 = comm.rank() == 0;
  Progress::Style style = isatty(fileno(stderr)) ? Progress::Style::Bar : Progress::Style::Lines;
  if (a.progress == "bar") style = Progress::Style::Bar;
  if (a.progress == "lines") style = Progress::Style::Lines;
  if (a.progress == "none") style = Progress::Style::None;
  Progress progress(rank0 ? style : Progress::Style::None);
  RunnerOptions ro;
  ro.max_ticks = a.max_ticks;
  ro.progress = &progress;
  ro.log = rank0 ? &std::cerr : nullptr;
  ro.verbose = a.verbose;
  ro.eval_chunk = a.eval_chunk;
  ro.interrupt = &g_interrupt;

  if (a.demo) {
    sakura::detail::require(comm.size() == 1, "--demo runs in one process; start it without mpirun");
    DemoOptions o;
    o.cells = a.demo_cells;
    o.genes = a.demo_genes;
    o.ticks = a.demo_ticks;
    o.segment = std::max<long long>(1, a.demo_ticks / 4);
    o.out_dir = a.demo_out.empty() ? (std::filesystem::temp_directory_path() / "sakura-demo").string() : a.demo_out;
    std::printf("sakura-train --demo: synthetic data, %lld cells x %lld genes (%d cell types, CD8A/CD8B high in "
                "'CD8 T'),\nthe pbmc5k tutorial config for %lld ticks (the tutorial: ~5k cells x 10k genes, 5000 "
                "ticks)\n",
                static_cast<long long>(o.cells), static_cast<long long>(o.genes), o.cell_types,
                static_cast<long long>(o.ticks));
    std::fflush(stdout);
    const DemoReport r = run_demo(o, ro);
    std::printf("\nheld-out cells (overall_test)                    untrained   trained\n");
    std::printf("cd8 head vs CD8A/CD8B expression, Pearson r       %8.3f  %8.3f\n", r.untrained.signature_r,
                r.trained.signature_r);
    std::printf("main latent %d-NN cell-type accuracy               %8.3f  %8.3f\n", o.knn_k, r.untrained.knn_accuracy,
                r.trained.knn_accuracy);
    std::printf("\ntrained %lld ticks in %.1f s (%.0f ticks/s); config %s\nlosses, latents and checkpoints in %s\n",
                static_cast<long long>(r.ticks), r.train_seconds, r.ticks / std::max(r.train_seconds, 1e-9),
                r.config_path.c_str(), r.log_path.c_str());
    return 0;
  }

  SessionOptions so;
  so.base_dir = a.base_dir;
  so.log = rank0 ? &std::cerr : nullptr;
  so.comm = comm;
  so.launch = sakura::config::Json{{"arguments", a.argv}};
  if (comm.size() > 1 && !kDistributedStep && rank0)
    std::fprintf(stderr, "sakura-train: warning: this build's controller has no distributed step yet: each of the "
                         "%d ranks trains on its own rows of every batch, and rank 0's model is the one written\n",
                 comm.size());
  so.verbose = a.verbose;
  so.backed = a.backed;
  Setup setup = load_setup(a.config, so);  // validates config and story before any data is read
  std::vector<TestConfig> inference;
  if (!a.inference.empty())
    inference = inference_from_json(setup.probe.model, sakura::config::read_json_file(a.inference_story),
                                    setup.split_names, a.inference_story);
  Session session(std::move(setup), so);
  std::vector<std::int32_t> signals;
  if (const int sig = agreed_signal(comm, g_interrupt.load(), signals))
    throw Interrupted(sig, "interrupted by signal " + std::to_string(sig) + " before training started");
  if (a.suppress_train) {
    if (rank0)
      std::fprintf(stderr, "sakura-train: set up %lld cells x %lld genes; training suppressed (-s)\n",
                 static_cast<long long>(session.data().n_cells()), static_cast<long long>(session.data().n_genes()));
    return 0;
  }
  sakura::tools::tensorboard::Sink events(session.setup().log_path);
  if (!a.suppress_tensorboard) ro.scalars = &events;
  Runner runner(session, ro);
  if (!a.inference.empty()) runner.inference(a.inference, inference);
  else if (!a.resume.empty()) runner.resume(a.resume);
  else runner.run();
  if (!a.h5ad.path.empty()) sakura::tools::write_results_h5ad(session, runner, a.h5ad);
  if (!rank0) return 0;
  if (runner.stopped())
    std::fprintf(stderr, "sakura-train: stopped after %lld ticks (--max-ticks)\n",
                 static_cast<long long>(runner.ticks_run()));
  else if (a.verbose)
    std::fprintf(stderr, "sakura-train: done; losses in %s\n", runner.loss_log_path().c_str());
  return 0;
}

/// The processes of this job: MPI's when started by a launcher (mpirun, srun) and built with MPI,
/// else this one alone. Started as several processes without MPI support is an error (each would
/// run the whole story alone, all writing the same files).
class Ranks {
 public:
  Ranks(int* argc, char*** argv) {
    const char* size = nullptr;
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"})
      if (!size) size = std::getenv(v);
    const bool launched = size || std::getenv("PMIX_RANK") || std::getenv("PMI_RANK");
#if defined(SAKURA_WITH_MPI)
    if (launched) {
      mpi_.emplace(argc, argv);
      comm_ = sakura::dist::mpi_comm();
    }
#else
    (void)argc, (void)argv;
    sakura::detail::require(!launched || !size || std::string_view(size) == "1", "started as ", size ? size : "?",
                            " processes (by mpirun or srun), but this sakura-train was built without MPI: each process "
                            "would run the whole story alone. Rebuild it with an MPI library (Debian: libopenmpi-dev "
                            "openmpi-bin), or start one process");
#endif
  }
  sakura::dist::Comm comm() const { return comm_; }

 private:
#if defined(SAKURA_WITH_MPI)
  std::optional<sakura::dist::MpiSession> mpi_;  // finalised last: declared before the comm
#endif
  sakura::dist::Comm comm_;
};

/// An error's message without the library's "sakura: " prefix (the program names itself).
const char* text(const sakura::Error& e) { return e.what() + (std::strncmp(e.what(), "sakura: ", 8) == 0 ? 8 : 0); }

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1)
    if (const int rc = sakura::tools::run_subcommand(argv[1], argc - 2, argv + 2); rc >= 0) return rc;
  Args a;
  try {
    a = parse(argc, argv);
  } catch (const Usage& e) {
    std::fprintf(stderr, "sakura-train: %s\n(see sakura-train --help)\n", e.what());
    return 2;
  }
  std::optional<Ranks> ranks;
  sakura::dist::Comm comm;
  try {
    ranks.emplace(&argc, &argv);
    comm = ranks->comm();
  } catch (const sakura::Error& e) {
    std::fprintf(stderr, "sakura-train: error: %s\n", text(e));
    return 1;
  }
  install_signal_handlers();
  std::string error;
  int speaker = -1;  // an error every rank agreed on is written by this rank alone
  try {
    return run(a, comm);
  } catch (const sakura::story::Interrupted& e) {  // on every rank at the same tick (agreed)
    if (comm.rank() == 0) std::fprintf(stderr, "\nsakura-train: %s\n", text(e));
    return 128 + e.signal();
  } catch (const sakura::Error& e) {
    error = text(e);
    speaker = sakura::dist::speaker_of(e);
  } catch (const std::bad_alloc&) {
    error = "out of memory";
  } catch (const std::exception& e) {
    error = e.what();
  }
  // one rank failed: the others may be waiting for it in a collective, so the job ends here (MPI_Abort)
  if (comm.size() > 1) comm.abort("sakura-train: error: " + error, 1, speaker);
  std::fprintf(stderr, "\nsakura-train: error: %s\n", error.c_str());
  return 1;
}
