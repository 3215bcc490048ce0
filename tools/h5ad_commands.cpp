// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// `sakura-train convert` (upstream's .mtx layout or a CSC/dense .h5ad to a CSR .h5ad, out of core)
// and `sakura-train synth` (a large synthetic atlas for benchmarks): the tool's AnnData commands.
#include "h5ad_commands.hpp"

#include <charconv>
#include <chrono>
#include <exception>
#include <tuple>
#include <cstdio>
#include <string>
#include <vector>

#if defined(SAKURA_WITH_HDF5)
#include <sakura/io/h5ad_convert.hpp>
#include <sakura/io/synthetic_h5ad.hpp>
#include <sakura/story/session.hpp>
#endif

namespace sakura::tools {
namespace {

const char* kConvertUsage = R"(usage: sakura-train convert --mtx M --genes G --cells C [--pheno P] -o OUT.h5ad [options]
       sakura-train convert --h5ad IN.h5ad -o OUT.h5ad [options]
       sakura-train convert -c CONFIG -o OUT.h5ad [options]

Writes a CSR .h5ad (cells x genes, what scanpy/anndata and a streaming reader read row by row) from
upstream's layout (genes x cells or cells x genes .mtx, R write.csv name lists, phenotype CSV: its
columns become obs columns typed as pandas reads them), from an .h5ad whose X is CSC, dense or CSR
(obs, var, obsm, uns, layers, raw are copied unchanged), or from a config's dataset section.
Out of core: memory holds one block of entries (--memory) plus 8 bytes per cell; an input that lists
cells in order (Seurat's writeMM, a dense or CSR X) is read twice at most, others once per block.

  --memory SIZE     bytes for one block of entries, e.g. 512M, 4G (default 1G)
  --gzip LEVEL      compress the written datasets with gzip 1-9 (default: none, the fastest to read)
  -C, --base-dir D  resolve the config's relative paths against D
  -q, --quiet       no progress messages
)";

const char* kSynthUsage = R"(usage: sakura-train synth -o OUT.h5ad [--cells N] [--genes G] [options]

Writes a synthetic atlas drawn from the demo's model (cell types, 8 marker genes per type at 20x,
CD8A/CD8B high in 'CD8 T', ~90% zeros, Seurat-style log-normalised) as a CSR .h5ad, a block of
cells at a time (memory stays at one block for any N): obs cell_type and total_counts, var marker_of.

  --cells N       cells (default 10000)       --genes G      genes (default 2000)
  --types K       cell types (default 8)      --seed S       random seed (default 3407)
  --counts        raw counts instead of log-normalised values
  --gzip LEVEL    gzip 1-9 (default: none)    --block N      cells per block (default 8192)
  -q, --quiet     no progress messages
)";

struct Args {
  std::vector<std::string> v;
  std::size_t i = 0;
  std::string flag;
  bool next() {
    if (i >= v.size()) return false;
    flag = v[i++];
    return true;
  }
  std::string value() {
    if (i >= v.size()) throw UsageError(flag + " needs a value");
    return v[i++];
  }
  long long number() {
    const std::string s = value();
    long long x = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), x);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size() || x < 0)
      throw UsageError(flag + " needs a non-negative integer, got '" + s + "'");
    return x;
  }
  /// 123, 512K, 512M, 4G
  std::size_t bytes() {
    const std::string s = value();
    std::size_t x = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), x);
    const std::string unit(r.ptr, s.data() + s.size());
    const int shift = unit.empty() ? 0 : unit == "K" ? 10 : unit == "M" ? 20 : unit == "G" ? 30 : -1;
    if (r.ec != std::errc() || shift < 0 || x == 0) throw UsageError(flag + " needs a size like 512M or 4G, got '" + s + "'");
    return x << shift;
  }
};

Args args_of(int argc, char** argv) {
  Args a;
  a.v.assign(argv, argv + argc);
  return a;
}

void progress_line(bool quiet, const std::string& m) {
  if (!quiet) std::fprintf(stderr, "sakura-train: %s\n", m.c_str());
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

#if defined(SAKURA_WITH_HDF5)

int convert_command(int argc, char** argv) {
  Args a = args_of(argc, argv);
  std::string mtx, genes, cells, pheno, h5ad, config, out, base_dir;
  io::ConvertOptions o;
  bool quiet = false;
  while (a.next()) {
    if (a.flag == "-h" || a.flag == "--help") {
      std::fputs(kConvertUsage, stdout);
      return 0;
    } else if (a.flag == "--mtx") mtx = a.value();
    else if (a.flag == "--genes") genes = a.value();
    else if (a.flag == "--cells") cells = a.value();
    else if (a.flag == "--pheno") pheno = a.value();
    else if (a.flag == "--h5ad") h5ad = a.value();
    else if (a.flag == "-c" || a.flag == "--config") config = a.value();
    else if (a.flag == "-C" || a.flag == "--base-dir") base_dir = a.value();
    else if (a.flag == "-o" || a.flag == "--out") out = a.value();
    else if (a.flag == "--memory") o.memory_bytes = a.bytes();
    else if (a.flag == "--gzip") o.layout.gzip = static_cast<int>(a.number());
    else if (a.flag == "-q" || a.flag == "--quiet") quiet = true;
    else throw UsageError("convert: unknown option '" + a.flag + "'");
  }
  if (out.empty()) throw UsageError("convert needs -o OUT.h5ad");
  if (o.layout.gzip > 9) throw UsageError("--gzip takes a level from 1 to 9");
  if ((!mtx.empty()) + (!h5ad.empty()) + (!config.empty()) != 1)
    throw UsageError("convert needs exactly one input: --mtx (with --genes and --cells), --h5ad or -c");
  if (!config.empty()) {
    story::SessionOptions so;
    so.base_dir = base_dir;
    const story::Setup setup = story::load_setup(config, so);
    const auto& d = setup.dataset;
    if (d.type == story::DatasetConfig::Type::H5ad) h5ad = d.h5ad;
    else std::tie(mtx, genes, cells, pheno) = std::tie(d.mtx, d.gene_names, d.cell_names, d.pheno_csv);
  }
  if (!mtx.empty() && (genes.empty() || cells.empty())) throw UsageError("--mtx needs --genes and --cells");
  o.note = [quiet](const std::string& m) { progress_line(quiet, m); };
  const auto t0 = std::chrono::steady_clock::now();
  const io::ConvertReport r = mtx.empty() ? io::convert_h5ad_to_csr(h5ad, out, o)
                                          : io::convert_mtx_to_h5ad(mtx, genes, cells, pheno, out, o);
  progress_line(quiet, "wrote " + out + ": " + std::to_string(r.cells) + " cells x " + std::to_string(r.genes) +
                           " genes, " + std::to_string(r.nnz) + " stored values, " + std::to_string(r.passes) +
                           " pass(es) over the input, " + std::to_string(seconds_since(t0)) + " s");
  return 0;
}

int synth_command(int argc, char** argv) {
  Args a = args_of(argc, argv);
  io::SyntheticAtlasOptions o;
  o.model.cells = 10000;
  o.model.genes = 2000;
  o.model.cell_types = 8;
  std::string out;
  bool quiet = false;
  while (a.next()) {
    if (a.flag == "-h" || a.flag == "--help") {
      std::fputs(kSynthUsage, stdout);
      return 0;
    } else if (a.flag == "-o" || a.flag == "--out") out = a.value();
    else if (a.flag == "--cells") o.model.cells = a.number();
    else if (a.flag == "--genes") o.model.genes = a.number();
    else if (a.flag == "--types") o.model.cell_types = static_cast<int>(a.number());
    else if (a.flag == "--seed") o.model.seed = static_cast<std::uint64_t>(a.number());
    else if (a.flag == "--counts") o.counts = true;
    else if (a.flag == "--gzip") o.layout.gzip = static_cast<int>(a.number());
    else if (a.flag == "--block") o.block_cells = a.number();
    else if (a.flag == "-q" || a.flag == "--quiet") quiet = true;
    else throw UsageError("synth: unknown option '" + a.flag + "'");
  }
  if (out.empty()) throw UsageError("synth needs -o OUT.h5ad");
  if (o.layout.gzip > 9) throw UsageError("--gzip takes a level from 1 to 9");
  const auto t0 = std::chrono::steady_clock::now();
  Index reported = 0;
  o.progress = [&](Index done) {
    if (done - reported >= 100000 || done == o.model.cells) {
      progress_line(quiet, std::to_string(done) + " cells written, " + std::to_string(seconds_since(t0)) + " s");
      reported = done;
    }
  };
  io::write_synthetic_h5ad(out, o);
  return 0;
}

#else

int convert_command(int, char**) {
  throw sakura::Error("convert needs HDF5: rebuild sakura-train with libhdf5 (Debian: libhdf5-dev)");
}
int synth_command(int, char**) {
  throw sakura::Error("synth needs HDF5: rebuild sakura-train with libhdf5 (Debian: libhdf5-dev)");
}

#endif

}  // namespace sakura::tools

namespace sakura::tools {

int run_subcommand(const std::string& name, int argc, char** argv) {
  if (name != "convert" && name != "synth") return -1;
  try {
    return name == "convert" ? convert_command(argc, argv) : synth_command(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "sakura-train %s: %s\n(see sakura-train %s --help)\n", name.c_str(), e.what(), name.c_str());
    return 2;
  } catch (const std::exception& e) {
    const std::string m = e.what();
    std::fprintf(stderr, "sakura-train %s: error: %s\n", name.c_str(), m.substr(m.rfind("sakura: ", 0) == 0 ? 8 : 0).c_str());
    return 1;
  }
}

}  // namespace sakura::tools
