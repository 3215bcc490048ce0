// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// sakura-train --write-h5ad: latents, head outputs, losses and config in anndata's layout.
#include "results_h5ad.hpp"

#include <charconv>
#include <fstream>
#include <numeric>
#include <optional>
#include <set>
#include <vector>

#if defined(SAKURA_WITH_HDF5)
#include <sakura/io/h5ad_convert.hpp>
#include <sakura/version.hpp>
#endif

namespace sakura::tools {

#if defined(SAKURA_WITH_HDF5)
namespace {

/// One obsm key and the forward variable whose rows it holds.
struct Output {
  std::string key;
  Var var;
  io::h5w::Appender rows;
};

/// obsm keys in the CSV dump's order: main, then per phenotype and per signature block its latent
/// and head output. A key already taken (a block called "main", a phenotype and a signature of
/// one name) gets the block's kind appended.
std::vector<Output> outputs(const Controller<float>& ctl) {
  const ForwardVars& f = ctl.forward();
  const ModelSpec& m = ctl.model_spec();
  std::vector<Output> out;
  std::set<std::string> taken;
  auto add = [&](const Var& v, std::string key, const std::string& kind) {
    if (!v) return;
    if (!taken.insert(key).second) taken.insert(key += "_" + kind);
    out.push_back({key, v, {}});
  };
  add(f.main, "X_sakura_main", "main");
  for (std::size_t b = 0; b < m.phenos.size(); ++b) {
    add(f.ph_lat[b], "X_sakura_" + m.phenos[b].name, "pheno");
    add(f.ph_out[b], "X_sakura_" + m.phenos[b].name + "_out", "pheno");
  }
  for (std::size_t b = 0; b < m.signatures.size(); ++b) {
    add(f.sig_lat[b], "X_sakura_" + m.signatures[b].name, "signature");
    add(f.sig_out[b], "X_sakura_" + m.signatures[b].name + "_out", "signature");
  }
  return out;
}

/// losses.tsv (tick, name, value) as a dataframe: what upstream shows in TensorBoard, for pandas.
void write_losses(const io::h5::Node& parent, const std::string& tsv) {
  std::ifstream in(tsv);
  std::vector<std::int64_t> ticks;
  std::vector<double> values;
  std::vector<std::string> names, index;
  std::string line;
  std::getline(in, line);  // header
  for (std::size_t n = 2; std::getline(in, line); ++n) {
    const auto a = line.find('\t'), b = line.rfind('\t');
    std::int64_t t = 0;
    double v = 0;
    const bool ok = a != std::string::npos && b > a &&
                    std::from_chars(line.data(), line.data() + a, t).ec == std::errc() &&
                    std::from_chars(line.data() + b + 1, line.data() + line.size(), v).ec == std::errc();
    sakura::detail::require(ok, tsv, ":", n, ": not a 'tick<TAB>name<TAB>value' line");
    ticks.push_back(t);
    names.push_back(line.substr(a + 1, b - a - 1));
    values.push_back(v);
    index.push_back(std::to_string(index.size()));
  }
  io::DataFrameWriter df(parent, "losses");
  df.index(index);
  df.numbers<std::int64_t>("tick", ticks);
  df.column({"name", names});
  df.numbers<double>("value", values);
  df.finish();
}

void write_obs_var(story::Session& s, const io::h5::Node& root, const ResultsH5ad& o) {
  const auto& data = s.data();
  const auto& ds = s.setup().dataset;
  if (o.results_only) return io::write_obs_var(root, data.cells, {}, {});
  if (ds.type != story::DatasetConfig::Type::H5ad) {
    io::write_obs_var(root, data.cells, data.genes, data.columns);
    if (o.with_x) io::write_csr(root, "X", data.input);
    return;
  }
  io::h5::QuietErrors quiet;
  const io::h5::Node in{io::h5::Handle(H5Fopen(ds.h5ad.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose), ds.h5ad,
                        "/"};
  sakura::detail::require(in.h.ok(), ds.h5ad, ": cannot open the input again to copy its obs and var");
  for (const char* g : {"obs", "var"}) io::h5w::copy(in, g, root, g);
  if (o.with_x) io::h5w::copy(in, "X", root, "X");
}

}  // namespace

void write_results_h5ad(story::Session& s, story::Runner& r, const ResultsH5ad& o) {
  sakura::detail::require(!(o.results_only && o.with_x), "--write-h5ad: results only and with X exclude each other");
  std::vector<Index> rows(static_cast<std::size_t>(s.data().n_cells()));
  std::iota(rows.begin(), rows.end(), Index{0});
  if (!r.writer()) {  // another rank: evaluates its rows of every chunk, gathered on rank 0
    r.evaluate(rows, EvalOptions{}, [&](std::span<const Index>) {
      std::size_t k = 0;
      for (const auto& out : outputs(s.controller())) r.outputs(out.var, k++);
    });
    return;
  }
  io::H5adFile f(o.path);
  write_obs_var(s, f.root(), o);
  {  // every node is closed before commit
    const io::h5::Node obsm = io::h5w::group(f.root(), "obsm");
    std::vector<Output> outs;
    std::vector<float> buf;
    Controller<float>& ctl = s.controller();
    r.evaluate(rows, EvalOptions{}, [&](std::span<const Index> chunk) {
      const bool first = outs.empty();
      if (first) outs = outputs(ctl);
      std::size_t k = 0;
      for (auto& out : outs) {  // rows of a tape matrix may be padded (ld): copied densely
        const auto m = r.outputs(out.var, k++);  // the whole chunk's, in cell order
        if (first) {
          out.rows = io::h5w::appender<float>(obsm, out.key, static_cast<hsize_t>(m.cols), {});
          io::h5w::set_encoding(out.rows.node(), "array", "0.2.0");
        }
        buf.resize(static_cast<std::size_t>(m.rows * m.cols));
        for (Index i = 0; i < m.rows; ++i)
          std::copy(m.data + i * m.ld, m.data + i * m.ld + m.cols, buf.begin() + i * m.cols);
        out.rows.append(buf.data(), static_cast<hsize_t>(chunk.size()));
      }
    });
  }
  {
    const io::h5::Node uns = io::h5w::create_group(io::h5w::group(f.root(), "uns"), "sakura");
    io::h5w::write_string(uns, "config", s.config_text());
    io::h5w::write_string(uns, "version", sakura::version);
    write_losses(uns, r.loss_log_path());
    const io::h5::Node classes = io::h5w::create_group(uns, "classes");
    for (const auto& p : s.data().phenos)
      if (!p.classes.empty()) io::h5w::write_strings(classes, p.name, p.classes, {});
  }
  f.commit();
}

#else

void write_results_h5ad(story::Session&, story::Runner&, const ResultsH5ad&) {
  throw sakura::Error("--write-h5ad needs HDF5: rebuild sakura-train with libhdf5 (Debian: libhdf5-dev)");
}

#endif

}  // namespace sakura::tools
