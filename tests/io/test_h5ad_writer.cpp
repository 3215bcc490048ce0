// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The .h5ad writer, the out-of-core converter and the synthetic atlas, read back with the .h5ad and
// MatrixMarket readers (anndata's own view of the same files is tests/io/check_anndata.py).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "sakura/io/h5ad_convert.hpp"
#include "sakura/io/mtx_writer.hpp"
#include "sakura/io/synthetic_h5ad.hpp"

using namespace sakura;
using Catch::Contains;
using Strings = std::vector<std::string>;

namespace {

const std::string kData = SAKURA_IO_DATA_DIR;
std::string fixture(const std::string& name) { return kData + "/" + name; }

std::string temp_path(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("sakura_h5w_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

/// Numbers compare by value ("1.50" and "1.5" are the same number to pandas), text exactly.
bool same_value(const std::string& a, const std::string& b) {
  if (a == b) return true;
  char* ea = nullptr;
  char* eb = nullptr;
  const double x = std::strtod(a.c_str(), &ea), y = std::strtod(b.c_str(), &eb);
  return !a.empty() && !b.empty() && *ea == 0 && *eb == 0 && x == y;
}

void check_same(const data::Dataset<float>& got, const data::Dataset<float>& want) {
  CHECK(got.cells == want.cells);
  CHECK(got.genes == want.genes);
  CHECK(got.expr.indptr == want.expr.indptr);
  CHECK(got.expr.indices == want.expr.indices);
  CHECK(got.expr.values == want.expr.values);
  REQUIRE(got.pheno.size() == want.pheno.size());
  for (std::size_t c = 0; c < got.pheno.size(); ++c) {
    CHECK(got.pheno[c].name == want.pheno[c].name);
    REQUIRE(got.pheno[c].values.size() == want.pheno[c].values.size());
    for (std::size_t i = 0; i < got.pheno[c].values.size(); ++i) {
      INFO(got.pheno[c].name << " row " << i << ": '" << got.pheno[c].values[i] << "' vs '" << want.pheno[c].values[i]
                             << "'");
      CHECK(same_value(got.pheno[c].values[i], want.pheno[c].values[i]));
    }
  }
}

/// A random cells x genes matrix, ~80% zeros, with names and columns of every pandas type.
data::Dataset<float> random_dataset(Index cells, Index genes, unsigned seed) {
  std::mt19937 rng(seed);
  data::Dataset<float> ds;
  std::vector<float> dense(static_cast<std::size_t>(cells * genes), 0.0f);
  for (auto& v : dense)
    if (rng() % 5 == 0) v = static_cast<float>(rng() % 1000) / 8.0f + 0.125f;
  ds.expr = CsrMatrix<float>::from_dense({dense.data(), cells, genes});
  for (Index c = 0; c < cells; ++c) ds.cells.push_back("c" + std::to_string(c) + (c % 7 == 0 ? ",\"q\"" : ""));
  for (Index g = 0; g < genes; ++g) ds.genes.push_back("G" + std::to_string(g));
  data::PhenoColumn type{"type", {}}, n{"n", {}}, score{"score", {}}, flag{"flag", {}};
  for (Index c = 0; c < cells; ++c) {
    type.values.push_back(c % 5 == 4 ? "" : "t" + std::to_string(rng() % 3));
    n.values.push_back(std::to_string(static_cast<int>(rng() % 100) - 50));
    score.values.push_back(c % 3 == 0 ? "" : std::to_string(rng() % 100) + ".25");
    flag.values.push_back(rng() % 2 ? "True" : "False");
  }
  ds.pheno = {type, n, score, flag};
  return ds;
}

}  // namespace

TEST_CASE("h5ad writer: obs/var columns of every type and a CSR X in blocks read back", "[io][h5ad_writer]") {
  const auto ds = random_dataset(23, 9, 1);
  const auto path = temp_path("written.h5ad");
  {
    io::H5adFile f(path);
    io::write_obs_var(f.root(), ds.cells, ds.genes, ds.pheno);
    io::CsrAppender x(f.root(), "X", ds.genes.size());
    for (Index r0 = 0; r0 < 23; r0 += 10) {  // blocks of 10, 10 and 3 rows
      CsrMatrix<float> b;
      b.rows = std::min<Index>(10, 23 - r0);
      b.cols = 9;
      for (Index r = r0; r < r0 + b.rows; ++r) {
        for (auto k = ds.expr.indptr[r]; k < ds.expr.indptr[r + 1]; ++k) {
          b.indices.push_back(ds.expr.indices[k]);
          b.values.push_back(ds.expr.values[k]);
        }
        b.indptr.push_back(b.nnz());
      }
      x.append(b);
    }
    x.finish();
    f.commit();
  }
  check_same(io::read_h5ad(path), ds);
  CHECK_FALSE(std::filesystem::exists(path + ".tmp-" + std::to_string(::getpid())));
}

TEST_CASE("h5ad writer: pandas types of text columns", "[io][h5ad_writer]") {
  using K = io::TypedColumn::Kind;
  CHECK(io::TypedColumn::infer({"1", "-2", "+3"}).kind == K::Int);
  CHECK(io::TypedColumn::infer({"1", "", "3"}).kind == K::Float);  // a missing integer makes floats
  CHECK(io::TypedColumn::infer({"1.5", "1e-7", "inf"}).kind == K::Float);
  CHECK(io::TypedColumn::infer({"True", "false"}).kind == K::Bool);
  const auto c = io::TypedColumn::infer({"b", "", "a", "b", "1"});
  CHECK(c.kind == K::Categorical);
  CHECK(c.categories == Strings{"1", "a", "b"});
  CHECK(c.codes == std::vector<std::int32_t>{2, -1, 1, 2, 0});
}

TEST_CASE("h5ad writer: an unfinished file never replaces the previous one", "[io][h5ad_writer]") {
  const auto path = temp_path("kept.h5ad");
  std::ofstream(path) << "previous results";
  REQUIRE_THROWS_WITH(
      [&] {
        io::H5adFile f(path);
        io::DataFrameWriter obs(f.root(), "obs");
        obs.index(Strings{"a", "b"});
        obs.numbers<double>("x", std::vector<double>{1, 2});
        obs.numbers<double>("x", std::vector<double>{3, 4});  // a bug: throws mid-file
      }(),
      Contains("/obs") && Contains("column 'x' is written twice"));
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  CHECK(text == "previous results");
  CHECK_FALSE(std::filesystem::exists(path + ".tmp-" + std::to_string(::getpid())));
  io::H5adFile f(path);
  { io::DataFrameWriter obs(f.root(), "obs"); }
  REQUIRE_THROWS_WITH(f.commit(), Contains("no var dataframe"));
}

TEST_CASE("convert: upstream's mtx layout round-trips through the mtx reader", "[io][convert]") {
  struct Case {
    const char* mtx;
    bool rows_in_order;  // scipy's _gxc files list genes in order (cells unordered): counted, then gathered
  };
  for (const Case c : {Case{"counts_gxc.mtx", false}, Case{"counts_cxg.mtx", true}, Case{"dense_gxc.mtx", true},
                       Case{"pattern_gxc.mtx", false}}) {
    for (std::size_t budget : {std::size_t{24}, std::size_t{48}, std::size_t{1} << 20}) {
      INFO(c.mtx << ", budget " << budget << " bytes");
      const auto want = io::read_mtx_dataset(fixture(c.mtx), fixture("genes.csv"), fixture("cells.csv"), fixture("pheno.csv"));
      const auto out = temp_path("conv.h5ad");
      const auto rep = io::convert_mtx_to_h5ad(fixture(c.mtx), fixture("genes.csv"), fixture("cells.csv"), fixture("pheno.csv"),
                                               out, {.memory_bytes = budget});
      CHECK(rep.rows_in_order == c.rows_in_order);
      CHECK(rep.nnz == want.expr.nnz());
      // one block per pass of 1 (24 bytes) or 2 entries, every cell in one when the budget is large
      if (!c.rows_in_order) CHECK(rep.passes == (budget == 24 ? 5 : budget == 48 ? 4 : 2));
      check_same(io::read_h5ad(out), want);
    }
  }
}

TEST_CASE("convert: unordered entries with duplicates, many gather passes, gzip", "[io][convert]") {
  auto ds = random_dataset(40, 13, 2);
  ds.pheno.clear();
  // genes x cells in gene order (cells unordered), every entry split in two halves that the reader
  // sums back, and the whole list shuffled
  struct E {
    Index g, c;
    float v;
  };
  std::vector<E> es;
  for (Index c = 0; c < 40; ++c)
    for (auto k = ds.expr.indptr[c]; k < ds.expr.indptr[c + 1]; ++k) {
      const float half = ds.expr.values[k] / 2;  // exact: the values are multiples of 1/8
      es.push_back({ds.expr.indices[k], c, half});
      es.push_back({ds.expr.indices[k], c, ds.expr.values[k] - half});
    }
  std::shuffle(es.begin(), es.end(), std::mt19937(5));
  const auto mtx = temp_path("dup.mtx");
  {
    std::ofstream f(mtx);
    f << "%%MatrixMarket matrix coordinate real general\n13 40 " << es.size() << "\n";
    for (const E& e : es) f << e.g + 1 << " " << e.c + 1 << " " << e.v << "\n";
  }
  io::write_name_csv(temp_path("g.csv"), ds.genes);
  io::write_name_csv(temp_path("c.csv"), ds.cells);
  const auto want = io::read_mtx_dataset(mtx, temp_path("g.csv"), temp_path("c.csv"));
  check_same(want, ds);  // the reader itself sums the halves back
  const auto out = temp_path("dup.h5ad");
  Strings notes;
  const auto rep = io::convert_mtx_to_h5ad(mtx, temp_path("g.csv"), temp_path("c.csv"), "", out,
                                           {.memory_bytes = 24 * 30,
                                            .layout = {.gzip = 4, .chunk_bytes = 64},
                                            .note = [&](const std::string& m) { notes.push_back(m); }});
  CHECK_FALSE(rep.rows_in_order);
  CHECK(rep.passes > 5);
  CHECK(notes.front() == "counting entries per cell");
  check_same(io::read_h5ad(out), want);
  io::h5::QuietErrors quiet;
  const io::h5::Node root{io::h5::Handle(H5Fopen(out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose), out, "/"};
  const auto d = io::h5::open(io::h5::open(root, "X"), "data");
  io::h5::Handle dcpl(H5Dget_create_plist(d.id()), H5Pclose);
  CHECK(H5Pget_nfilters(dcpl.get()) == 1);  // deflate
}

TEST_CASE("convert: CSC, dense and CSR .h5ad to CSR, every other member copied", "[io][convert]") {
  for (const char* in : {"x_csc.h5ad", "x_dense.h5ad", "x_csr.h5ad", "legacy_fixed.h5ad"}) {
    for (std::size_t budget : {std::size_t{24}, std::size_t{1} << 20}) {
      INFO(in << ", budget " << budget);
      const auto out = temp_path("x.h5ad");
      const auto rep = io::convert_h5ad_to_csr(fixture(in), out, {.memory_bytes = budget});
      CHECK(rep.rows_in_order == (std::string(in) != "x_csc.h5ad"));
      const auto want = io::read_h5ad(fixture(in));
      check_same(io::read_h5ad(out), want);
      io::h5::QuietErrors quiet;
      const io::h5::Node root{io::h5::Handle(H5Fopen(out.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose), out, "/"};
      CHECK(io::h5::attr_string(io::h5::open(root, "X"), "encoding-type") == "csr_matrix");
    }
  }
  REQUIRE_THROWS_WITH(io::convert_h5ad_to_csr(fixture("genes.csv"), temp_path("never.h5ad")),
                      Contains("genes.csv: cannot open as an HDF5 file"));
  CHECK_FALSE(std::filesystem::exists(temp_path("never.h5ad")));
}

TEST_CASE("synthetic atlas: blocks and threads do not change the file, types have their markers", "[io][synthetic]") {
  io::SyntheticAtlasOptions o{.model = {.cells = 300, .genes = 60, .cell_types = 5, .seed = 11}, .block_cells = 300};
  io::write_synthetic_h5ad(temp_path("a.h5ad"), o);
  o.block_cells = 7;
  Index seen = 0;
  o.progress = [&](Index done) { seen = done; };
  io::write_synthetic_h5ad(temp_path("b.h5ad"), o);
  CHECK(seen == 300);
  const auto a = io::read_h5ad(temp_path("a.h5ad")), b = io::read_h5ad(temp_path("b.h5ad"));
  check_same(a, b);
  CHECK(a.cells.front() == "cell0");
  CHECK(a.genes[0] == "CD8A");
  const double zeros = 1.0 - static_cast<double>(a.expr.nnz()) / (300.0 * 60.0);
  CHECK(zeros > 0.8);
  CHECK(zeros < 0.95);
  // CD8A is high in "CD8 T" cells: a marker's mean is far above its mean in the other types
  const auto& type = a.column("cell_type").values;
  double in = 0, out = 0, n_in = 0;
  for (Index c = 0; c < 300; ++c) {
    const double v = a.expr.indptr[c] < a.expr.indptr[c + 1] && a.expr.indices[a.expr.indptr[c]] == 0
                         ? a.expr.values[a.expr.indptr[c]]
                         : 0.0;
    (type[c] == "CD8 T" ? in : out) += v;
    n_in += type[c] == "CD8 T";
  }
  CHECK(n_in > 30);
  CHECK(in / n_in > 3 * out / (300 - n_in));
  CHECK(a.column("total_counts").values.size() == 300);
}
