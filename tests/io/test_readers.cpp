// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The data input layer: CSV edge cases, CsrMatrix helpers, MatrixMarket and .h5ad readers against the
// fixtures of tests/io/data (one 4 cells x 5 genes matrix in every format), and their error messages.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "sakura/data/dataset.hpp"
#include "sakura/io/csv.hpp"
#include "sakura/io/matrix_market.hpp"
#if defined(SAKURA_WITH_ZLIB)
#include <zlib.h>
#endif
#if defined(SAKURA_WITH_HDF5)
#include "sakura/io/h5ad.hpp"
#endif

using namespace sakura;
using Catch::Contains;
using Strings = std::vector<std::string>;

namespace {

const std::string kData = SAKURA_IO_DATA_DIR;
std::string data_file(const std::string& name) { return kData + "/" + name; }

const Strings kGenes{"CD8A", "CD8B", "CD4", "MT-CO1", "GENE5"};
const Strings kCells{"AAAC-1", "AAAG-1", "cell,3", "cell\"4"};

/// make_fixtures.py's X (cells x genes); row 1 is empty.
std::vector<double> expected_x() {
  return {1, 0, 0, 2.5, 0, 0, 0, 0, 0, 0, 0, 3, 0.1, 0, 7, 4, 0, 0, 0, 123456};
}
std::vector<double> expected_xi() { return {1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 1, 0, 7, 4, 0, 0, 0, 123456}; }

/// Every row of m, densified (the matrices here are 4 x 5).
template <class T>
std::vector<T> dense(const CsrMatrix<T>& m) {
  std::vector<Index> rows(static_cast<std::size_t>(m.rows));
  for (Index r = 0; r < m.rows; ++r) rows[r] = r;
  std::vector<T> out(static_cast<std::size_t>(m.rows * m.cols), T(-1));
  m.gather_dense(rows, out.data());
  return out;
}

template <class T, class U>
std::vector<T> cast(const std::vector<U>& v) {
  return std::vector<T>(v.begin(), v.end());
}

/// Writes `content` to a fresh file in a per-process temp folder and returns its path.
std::string temp_file(const std::string& name, const std::string& content) {
  const auto dir = std::filesystem::temp_directory_path() / ("sakura_io_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto p = (dir / name).string();
  std::ofstream(p, std::ios::binary) << content;
  return p;
}

CsrMatrix<float> small_csr() {  // [[1 0 2], [0 0 0], [0 3 4]]
  CsrMatrix<float> m;
  m.rows = 3;
  m.cols = 3;
  m.indptr = {0, 2, 2, 4};
  m.indices = {0, 2, 1, 2};
  m.values = {1, 2, 3, 4};
  return m;
}

}  // namespace

// ---------------------------------------------------------------- CSV

TEST_CASE("CSV: quoted fields, embedded commas, quotes and newlines, CRLF, BOM", "[io][csv]") {
  const std::string text =
      "\xEF\xBB\xBF" "id,\"na,me\",note\r\n"
      "1,\"a \"\"quoted\"\" word\",plain\r\n"
      "\r\n"
      "2,\"two\nlines\",\r\n"
      "3,,\"\"\n"
      "4,last,no newline";
  const auto t = io::parse_csv(text, "mem.csv");
  CHECK(t.header == Strings{"id", "na,me", "note"});
  REQUIRE(t.rows.size() == 4);
  CHECK(t.rows[0] == Strings{"1", "a \"quoted\" word", "plain"});
  CHECK(t.rows[1] == Strings{"2", "two\nlines", ""});
  CHECK(t.rows[2] == Strings{"3", "", ""});
  CHECK(t.rows[3] == Strings{"4", "last", "no newline"});
  CHECK(t.row_lines == std::vector<std::size_t>{2, 4, 6, 7});  // the blank line 3 is skipped
  CHECK(t.where(3) == "mem.csv:7");
}

TEST_CASE("CSV: lone CR ends a record, stray quotes in unquoted fields are kept", "[io][csv]") {
  const auto t = io::parse_csv("a,b\rx\"y,2\r", "mem.csv");
  CHECK(t.header == Strings{"a", "b"});
  REQUIRE(t.rows.size() == 1);
  CHECK(t.rows[0] == Strings{"x\"y", "2"});
}

TEST_CASE("CSV: errors name the file and line", "[io][csv]") {
  REQUIRE_THROWS_WITH(io::parse_csv("a,b\n1,\"open\nstill open", "bad.csv"),
                      Contains("bad.csv:2") && Contains("never closed"));
  REQUIRE_THROWS_WITH(io::parse_csv("a,b\n1,2\n3,\"x\"y\n", "bad.csv"),
                      Contains("bad.csv:3") && Contains("after a closing quote"));
  REQUIRE_THROWS_WITH(io::read_csv(data_file("no_such_file.csv")), Contains("no_such_file.csv") && Contains("cannot open"));
}

TEST_CASE("Name lists are read like pandas read_csv(index_col=0): R's write.csv layout", "[io][csv]") {
  CHECK(io::read_name_csv(data_file("genes.csv")) == kGenes);
  CHECK(io::read_name_csv(data_file("cells.csv")) == kCells);
  // write.table without col.names = NA: the header is one field short, the index column is implicit.
  CHECK(io::read_name_csv(temp_file("implicit.csv", "x\n1,A\n2,B\n")) == Strings{"A", "B"});
  REQUIRE_THROWS_WITH(io::read_name_csv(temp_file("single.csv", "gene\nA\nB\n")),
                      Contains("single.csv") && Contains("index column and a name column"));
  REQUIRE_THROWS_WITH(io::read_name_csv(temp_file("ragged.csv", "\"\",\"x\"\n1,A\n2,B,extra\n")),
                      Contains("ragged.csv:3") && Contains("3 fields, expected 2"));
}

TEST_CASE("Phenotype CSV: columns, pandas NA markers, pandas header names", "[io][csv]") {
  const auto cols = io::read_pheno_csv(data_file("pheno.csv"), kCells);
  REQUIRE(cols.size() == 4);
  CHECK(cols[0].name == "celltype");
  CHECK(cols[0].values == Strings{"T", "B", "", "T"});
  CHECK(cols[1].values == Strings{"s1", "s2", "s3", "s4"});
  CHECK(cols[2].values == Strings{"10", "0", "3", "2"});
  CHECK(cols[3].values == Strings{"0.5", "", "-1.25", "1e-07"});

  const auto p = temp_file("names.csv", ",x,,x,NA_col\nc1,NA,a,b,nan\nc2,n/a,,NULL,ok\n");
  const auto odd = io::read_pheno_csv(p, {"c1", "c2"});
  REQUIRE(odd.size() == 4);
  CHECK(odd[0].name == "x");
  CHECK(odd[1].name == "Unnamed: 2");
  CHECK(odd[2].name == "x.1");
  CHECK(odd[3].name == "NA_col");
  CHECK(odd[0].values == Strings{"", ""});
  CHECK(odd[3].values == Strings{"", "ok"});
}

TEST_CASE("Phenotype CSV: rows must be the cells in order, the first mismatch is named", "[io][csv]") {
  REQUIRE_THROWS_WITH(io::read_pheno_csv(data_file("pheno_swapped.csv"), kCells),
                      Contains("pheno_swapped.csv:4") && Contains("row 3 is cell 'cell\"4'") &&
                          Contains("'cell,3'"));
  REQUIRE_THROWS_WITH(io::read_pheno_csv(data_file("pheno.csv"), {"AAAC-1"}),
                      Contains("pheno.csv") && Contains("4 phenotype rows but 1 cells"));
}

// ---------------------------------------------------------------- CsrMatrix and Dataset

TEST_CASE("CsrMatrix: gather_dense, gather_columns, drop_columns", "[io][dataset]") {
  const auto m = small_csr();
  REQUIRE_NOTHROW(m.validate());
  CHECK(m.nnz() == 4);

  const std::vector<Index> rows{2, 0, 1, 2};
  std::vector<float> out(12, -1.f);
  m.gather_dense(rows, out.data());
  CHECK(out == std::vector<float>{0, 3, 4, 1, 0, 2, 0, 0, 0, 0, 3, 4});

  const std::vector<Index> cols{2, 1, 2};
  std::vector<float> sig(12, -1.f);
  m.gather_columns(rows, cols, sig.data());
  CHECK(sig == std::vector<float>{4, 3, 4, 2, 0, 2, 0, 0, 0, 4, 3, 4});

  const std::vector<Index> drop{1, 1};
  const auto d = m.drop_columns(drop);
  CHECK(d.kept == std::vector<Index>{0, 2});
  CHECK(d.matrix.cols == 2);
  REQUIRE_NOTHROW(d.matrix.validate());
  CHECK(dense(d.matrix) == std::vector<float>{1, 2, 0, 0, 0, 4});

  const std::vector<Index> bad_row{3}, bad_col{5};
  REQUIRE_THROWS_WITH(m.gather_dense(bad_row, out.data()), Contains("row 3") && Contains("[3, 3]"));
  REQUIRE_THROWS_WITH(m.gather_columns(rows, bad_col, out.data()), Contains("column 5"));
  REQUIRE_THROWS_WITH(m.drop_columns(bad_col), Contains("column 5"));
}

TEST_CASE("CsrMatrix: sort_and_sum_duplicates and validate", "[io][dataset]") {
  CsrMatrix<float> m;
  m.rows = 2;
  m.cols = 4;
  m.indptr = {0, 4, 5};
  m.indices = {3, 0, 3, 1, 2};
  m.values = {1, 2, 10, 3, 5};
  REQUIRE_THROWS_WITH(m.validate("demo"), Contains("demo") && Contains("row 0"));
  m.sort_and_sum_duplicates();
  REQUIRE_NOTHROW(m.validate());
  CHECK(m.indptr == std::vector<std::int64_t>{0, 3, 4});
  CHECK(m.indices == std::vector<std::int32_t>{0, 1, 3, 2});
  CHECK(m.values == std::vector<float>{2, 3, 11, 5});
}

TEST_CASE("Dataset: gene lookup and phenotype columns name what is missing", "[io][dataset]") {
  data::Dataset<float> ds;
  ds.genes = {"A", "B", "C", "B"};
  ds.cells = {"c1"};
  ds.pheno = {{"celltype", {"T"}}, {"donor", {"d1"}}};
  CHECK(ds.gene_index("B") == 1);
  CHECK(ds.gene_index("Z") == -1);
  CHECK(ds.gene_indices({"C", "B"}) == std::vector<Index>{2, 1});
  REQUIRE_THROWS_WITH(ds.gene_indices({"A", "X", "Y"}), Contains("'X', 'Y'") && Contains("4 genes"));
  CHECK(ds.column("donor").values == Strings{"d1"});
  REQUIRE_THROWS_WITH(ds.column("cluster"), Contains("'cluster'") && Contains("'celltype', 'donor'"));
}

// ---------------------------------------------------------------- MatrixMarket

TEST_CASE("MatrixMarket: both orientations, integer/real/pattern, dense array", "[io][mtx]") {
  const auto genes = data_file("genes.csv"), cells = data_file("cells.csv");
  SECTION("genes x cells integer (Seurat writeMM) is transposed") {
    const auto ds = io::read_mtx_dataset(data_file("counts_gxc.mtx"), genes, cells, data_file("pheno.csv"));
    CHECK(ds.genes == kGenes);
    CHECK(ds.cells == kCells);
    CHECK(ds.expr.rows == 4);
    CHECK(ds.expr.cols == 5);
    CHECK(ds.expr.nnz() == 7);
    CHECK(dense(ds.expr) == cast<float>(expected_xi()));
    CHECK(ds.column("celltype").values == Strings{"T", "B", "", "T"});
  }
  SECTION("cells x genes real is taken as is, exact in float and double") {
    const auto f = io::read_mtx_dataset<float>(data_file("counts_cxg.mtx"), genes, cells);
    CHECK(dense(f.expr) == cast<float>(expected_x()));
    CHECK(f.pheno.empty());
    const auto d = io::read_mtx_dataset<double>(data_file("counts_cxg.mtx"), genes, cells);
    CHECK(dense(d.expr) == expected_x());
  }
  SECTION("pattern stores ones") {
    const auto ds = io::read_mtx_dataset(data_file("pattern_gxc.mtx"), genes, cells);
    std::vector<float> want;
    for (double v : expected_x()) want.push_back(v != 0 ? 1.f : 0.f);
    CHECK(dense(ds.expr) == want);
  }
  SECTION("dense array format, zeros not stored") {
    const auto ds = io::read_mtx_dataset<double>(data_file("dense_gxc.mtx"), genes, cells);
    CHECK(ds.expr.nnz() == 7);
    CHECK(dense(ds.expr) == expected_x());
    const auto raw = io::read_mtx<double>(data_file("dense_gxc.mtx"));  // file orientation
    CHECK(raw.rows == 5);
    CHECK(raw.cols == 4);
  }
}

TEST_CASE("MatrixMarket: duplicates are summed, comments and blank lines skipped", "[io][mtx]") {
  const auto p = temp_file("dup.mtx",
                           "%%MatrixMarket matrix coordinate real general\r\n% a comment\r\n\r\n2 3 4\r\n"
                           "1 3 1.5\r\n2 1 -1\r\n1 3 +2.5e0\r\n1 1 0\r\n");
  const auto m = io::read_mtx<double>(p);
  REQUIRE_NOTHROW(m.validate());
  CHECK(m.nnz() == 3);  // the explicit zero at (1, 1) is kept, the two (1, 3) entries merged
  CHECK(dense(m) == std::vector<double>{0, 0, 4, -1, 0, 0});
  const auto t = io::read_mtx<double>(p, true);
  CHECK(dense(t) == std::vector<double>{0, -1, 0, 0, 4, 0});
}

TEST_CASE("MatrixMarket: bad files are rejected naming file and line", "[io][mtx]") {
  auto mtx = [](const std::string& name, const std::string& body) { return io::read_mtx(temp_file(name, body)); };
  REQUIRE_THROWS_WITH(mtx("hdr.mtx", "hello\n1 1 0\n"), Contains("hdr.mtx:1") && Contains("not a MatrixMarket"));
  REQUIRE_THROWS_WITH(mtx("cplx.mtx", "%%MatrixMarket matrix coordinate complex general\n1 1 0\n"),
                      Contains("cplx.mtx:1") && Contains("'complex'"));
  REQUIRE_THROWS_WITH(mtx("sym.mtx", "%%MatrixMarket matrix coordinate real symmetric\n1 1 0\n"),
                      Contains("sym.mtx:1") && Contains("'symmetric'"));
  REQUIRE_THROWS_WITH(mtx("size.mtx", "%%MatrixMarket matrix coordinate real general\n2 x 1\n"),
                      Contains("size.mtx:2") && Contains("the column count"));
  REQUIRE_THROWS_WITH(mtx("range.mtx", "%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1\n3 1 1\n"),
                      Contains("range.mtx:4") && Contains("(3, 1)") && Contains("2 x 2"));
  REQUIRE_THROWS_WITH(mtx("zero.mtx", "%%MatrixMarket matrix coordinate real general\n2 2 1\n0 1 1\n"),
                      Contains("zero.mtx:3") && Contains("1-based"));
  REQUIRE_THROWS_WITH(mtx("few.mtx", "%%MatrixMarket matrix coordinate real general\n2 2 3\n1 1 1\n2 2 1\n"),
                      Contains("few.mtx") && Contains("declares 3 entries but the file has 2"));
  REQUIRE_THROWS_WITH(mtx("many.mtx", "%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 1\n2 2 1\n"),
                      Contains("many.mtx:4") && Contains("more entries than the 1"));
  REQUIRE_THROWS_WITH(mtx("val.mtx", "%%MatrixMarket matrix coordinate integer general\n2 2 1\n1 1 1.5\n"),
                      Contains("val.mtx:3") && Contains("an integer value") && Contains("'1.5'"));
  REQUIRE_THROWS_WITH(mtx("arr.mtx", "%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n"),
                      Contains("arr.mtx") && Contains("needs 4 values but the file has 3"));
  REQUIRE_THROWS_WITH(io::read_mtx(data_file("missing.mtx")), Contains("missing.mtx") && Contains("cannot open"));
  REQUIRE_THROWS_WITH(io::read_mtx(kData), Contains("is a directory"));
  REQUIRE_THROWS_WITH(io::read_name_csv(kData), Contains("is a directory"));
}

TEST_CASE("MatrixMarket: size lines are checked before any product or allocation", "[io][mtx]") {
  auto mtx = [](const std::string& name, const std::string& body) { return io::read_mtx(temp_file(name, body)); };
  // rows x cols of these overflowed int64 (UB) before the counts were checked.
  REQUIRE_THROWS_WITH(mtx("huge_arr.mtx", "%%MatrixMarket matrix array real general\n4294967296 4294967296\n"),
                      Contains("huge_arr.mtx:2") && Contains("4294967296 x 4294967296") && Contains("at most 134217728"));
  // 2^31 - 1 rows and no entries asked for 16 GiB of row pointers.
  REQUIRE_THROWS_WITH(mtx("huge_rows.mtx", "%%MatrixMarket matrix coordinate real general\n2147483647 1 0\n"),
                      Contains("huge_rows.mtx:2") && Contains("at most 134217728"));
  REQUIRE_THROWS_WITH(mtx("neg.mtx", "%%MatrixMarket matrix coordinate real general\n2 -2 0\n"),
                      Contains("neg.mtx:2") && Contains("must not be negative"));
  REQUIRE_THROWS_WITH(mtx("big_idx.mtx", "%%MatrixMarket matrix coordinate real general\n2 2 1\n"
                                         "99999999999999999999 1 1\n"),
                      Contains("big_idx.mtx:3") && Contains("a row index") && Contains("out of range"));
  // A huge declared entry count with a tiny body: the reserve is bounded by the file, the count
  // mismatch is reported.
  REQUIRE_THROWS_WITH(mtx("many_decl.mtx", "%%MatrixMarket matrix coordinate real general\n2 2 4000000000\n1 1 1\n"),
                      Contains("declares 4000000000 entries but the file has 1") && Contains("truncated"));
}

TEST_CASE("MatrixMarket: every line is parsed whole, and a last line without a line break is a truncation",
          "[io][mtx]") {
  auto mtx = [](const std::string& name, const std::string& body) { return io::read_mtx<double>(temp_file(name, body)); };
  const std::string coord = "%%MatrixMarket matrix coordinate real general\n";
  REQUIRE_THROWS_WITH(mtx("extra.mtx", coord + "2 2 2\n1 1 1\n2 2 1 5\n"),
                      Contains("extra.mtx:4") && Contains("unexpected '5'") && Contains("row column value"));
  REQUIRE_THROWS_WITH(mtx("extra_size.mtx", coord + "2 2 1 7\n1 1 1\n"),
                      Contains("extra_size.mtx:2") && Contains("unexpected '7'"));
  REQUIRE_THROWS_WITH(mtx("extra_pat.mtx", "%%MatrixMarket matrix coordinate pattern general\n2 2 1\n1 1 1\n"),
                      Contains("extra_pat.mtx:3") && Contains("unexpected '1'") && Contains("row column)"));
  REQUIRE_THROWS_WITH(mtx("extra_arr.mtx", "%%MatrixMarket matrix array real general\n1 2\n1 2\n3\n"),
                      Contains("extra_arr.mtx:3") && Contains("unexpected '2'") && Contains("one value"));
  // `3 7 12.5` cut to `3 7 12`: a valid-looking number, but the line has no line break.
  REQUIRE_THROWS_WITH(mtx("cut.mtx", coord + "3 7 2\n1 1 4\n3 7 12"),
                      Contains("cut.mtx:4") && Contains("'3 7 12'") && Contains("looks truncated"));
  REQUIRE_THROWS_WITH(mtx("cut_size.mtx", coord + "3 7 2"), Contains("cut_size.mtx:2") && Contains("truncated"));
  REQUIRE_THROWS_WITH(mtx("cut_crlf.mtx", coord + "3 7 1\r\n1 1 4\r"), Contains("cut_crlf.mtx:3") &&
                                                                         Contains("truncated"));
  // Cut at a line end: the entry count says so.
  REQUIRE_THROWS_WITH(mtx("cut_line.mtx", coord + "3 7 2\n1 1 4\n"),
                      Contains("declares 2 entries but the file has 1") && Contains("truncated"));
  // A trailing comment or blank line without a line break holds no data: accepted.
  const auto m = mtx("tail.mtx", coord + "3 7 1\n3 7 12.5\n% written by hand");
  CHECK(m.nnz() == 1);
  CHECK(m.values[0] == 12.5);
  CHECK(mtx("tail_blank.mtx", coord + "3 7 1\n3 7 12.5\n  ").nnz() == 1);
  REQUIRE_THROWS_WITH(mtx("empty.mtx", ""), Contains("empty.mtx:1") && Contains("not a MatrixMarket matrix"));
  REQUIRE_THROWS_WITH(mtx("binary.mtx", std::string("\x01\x02\xff\n", 4)), Contains("found '\\x01\\x02\\xff'"));
  REQUIRE_THROWS_WITH(mtx("long.mtx", coord + "1 1 1\n" + std::string(3 << 20, '1') + "\n"),
                      Contains("long.mtx:3") && Contains("line longer than"));
}

TEST_CASE("MatrixMarket: NaN, Inf and values beyond the element type are rejected at load, naming the place",
          "[io][mtx]") {
  const std::string coord = "%%MatrixMarket matrix coordinate real general\n";
  for (const char* v : {"nan", "NaN", "-inf", "Infinity", "1e400", "-1e39"}) {
    INFO(v);
    const auto p = temp_file("nonfinite.mtx", coord + "2 3 2\n1 1 1\n2 3 " + std::string(v) + "\n");
    REQUIRE_THROWS_WITH(io::read_mtx<float>(p), Contains("nonfinite.mtx:4") && Contains(std::string("'") + v + "'") &&
                                                    Contains("row 2, column 3") && Contains("not a finite float32"));
  }
  // 1e39 overflows float but not double; 1e-400 underflows to 0, as scipy reads it.
  const auto p = temp_file("wide.mtx", coord + "2 3 2\n1 1 1e39\n2 3 1e-400\n");
  REQUIRE_THROWS_WITH(io::read_mtx<float>(p), Contains("wide.mtx:3") && Contains("overflows"));
  const auto d = io::read_mtx<double>(p);
  CHECK(d.values == std::vector<double>{1e39, 0.0});
  const auto arr = temp_file("nonfinite_arr.mtx", "%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\nnan\n");
  REQUIRE_THROWS_WITH(io::read_mtx<float>(arr), Contains("nonfinite_arr.mtx:6") && Contains("row 2, column 2"));
  SECTION("with the name lists, the gene and the cell are named (both orientations)") {
    const auto gxc = temp_file("nan_gxc.mtx", coord + "5 4 2\n1 1 1\n4 3 nan\n");  // gene 4 = MT-CO1, cell 3
    REQUIRE_THROWS_WITH(io::read_mtx_dataset(gxc, data_file("genes.csv"), data_file("cells.csv")),
                        Contains("nan_gxc.mtx:4") && Contains("gene 'MT-CO1' (row 4)") &&
                            Contains("cell 'cell,3' (column 3)"));
    const auto cxg = temp_file("inf_cxg.mtx", coord + "4 5 1\n2 5 inf\n");
    REQUIRE_THROWS_WITH(io::read_mtx_dataset(cxg, data_file("genes.csv"), data_file("cells.csv")),
                        Contains("inf_cxg.mtx:3") && Contains("cell 'AAAG-1' (row 2)") &&
                            Contains("gene 'GENE5' (column 5)"));
  }
}

namespace {
std::string slurp_file(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
}  // namespace

#if defined(SAKURA_WITH_ZLIB)
namespace {
/// `text` gzip-compressed into a fresh temp file.
std::string temp_gzip(const std::string& name, const std::string& text) {
  const std::string p = temp_file(name, "");
  gzFile g = gzopen(p.c_str(), "wb");
  REQUIRE(g != nullptr);
  REQUIRE(gzwrite(g, text.data(), static_cast<unsigned>(text.size())) == static_cast<int>(text.size()));
  REQUIRE(gzclose(g) == Z_OK);
  return p;
}
}  // namespace

TEST_CASE("MatrixMarket: gzip-compressed files are told by their magic bytes and read with the same checks",
          "[io][mtx][gzip]") {
  const std::string text = slurp_file(data_file("counts_gxc.mtx"));
  const auto gz = temp_gzip("counts_gxc.mtx.gz", text);
  const auto ds = io::read_mtx_dataset(gz, data_file("genes.csv"), data_file("cells.csv"), data_file("pheno.csv"));
  CHECK(dense(ds.expr) == cast<float>(expected_xi()));
  // the name does not matter: a gzip file called .mtx is still decompressed
  const auto plain_name = temp_gzip("looks_plain.mtx", text);
  CHECK(dense(io::read_mtx(plain_name, true)) == cast<float>(expected_xi()));
  // concatenated members (gzip -c a b > c) are one text
  const std::string half = text.substr(0, text.size() / 2);
  const std::string both = slurp_file(temp_gzip("h1.gz", half)) + slurp_file(temp_gzip("h2.gz", text.substr(half.size())));
  CHECK(dense(io::read_mtx(temp_file("members.mtx.gz", both), true)) == cast<float>(expected_xi()));

  const std::string coord = "%%MatrixMarket matrix coordinate real general\n";
  REQUIRE_THROWS_WITH(io::read_mtx(temp_gzip("nan.mtx.gz", coord + "2 2 2\n1 1 1\n2 2 nan\n")),
                      Contains("nan.mtx.gz:4") && Contains("row 2, column 2") && Contains("not a finite"));
  REQUIRE_THROWS_WITH(io::read_mtx(temp_gzip("cut_text.mtx.gz", coord + "2 2 1\n2 2 12")),
                      Contains("cut_text.mtx.gz:3") && Contains("looks truncated"));
  const std::string packed = slurp_file(gz);
  SECTION("a gzip stream cut short") {
    REQUIRE_THROWS_WITH(io::read_mtx(temp_file("cut.mtx.gz", packed.substr(0, packed.size() - 12))),
                        Contains("cut.mtx.gz") && Contains("truncated"));
  }
  SECTION("damaged compressed bytes or checksum") {
    std::string bad = packed;
    bad[bad.size() - 6] = static_cast<char>(bad[bad.size() - 6] ^ 0x55);  // the CRC-32 of the text
    REQUIRE_THROWS_WITH(io::read_mtx(temp_file("crc.mtx.gz", bad)), Contains("crc.mtx.gz: damaged gzip data"));
  }
}
#else
TEST_CASE("MatrixMarket: without zlib a gzip file is an error naming the fix", "[io][mtx][gzip]") {
  REQUIRE_THROWS_WITH(io::read_mtx(temp_file("x.mtx.gz", std::string("\x1f\x8b\x08\x00", 4))),
                      Contains("x.mtx.gz: is gzip-compressed") && Contains("zlib1g-dev"));
}
#endif

TEST_CASE("MatrixMarket: other compressed formats are named, not parsed as text", "[io][mtx]") {
  REQUIRE_THROWS_WITH(io::read_mtx(temp_file("x.mtx.bz2", "BZh91AY&SY")), Contains("is bzip2-compressed"));
  REQUIRE_THROWS_WITH(io::read_mtx(temp_file("x.mtx.zst", std::string("\x28\xb5\x2f\xfd\x00", 5))),
                      Contains("is zstd-compressed"));
}

TEST_CASE("Repeated gene or cell names are an error naming both rows, unless made unique as AnnData does",
          "[io][names]") {
  const auto g = temp_file("dup_genes.csv", "\"\",\"x\"\n\"1\",\"A\"\n\"2\",\"B\"\n\"3\",\"A\"\n\"4\",\"A-1\"\n"
                                            "\"5\",\"A\"\n\"6\",\"B\"\n");
  const auto c = temp_file("dup_cells.csv", "\"\",\"x\"\n\"1\",\"c\"\n\"2\",\"c\"\n");
  const auto c_ok = temp_file("ok_cells.csv", "\"\",\"x\"\n\"1\",\"c1\"\n\"2\",\"c2\"\n");
  const auto m = temp_file("dup.mtx", "%%MatrixMarket matrix coordinate real general\n6 2 2\n1 1 1\n5 2 2\n");
  REQUIRE_THROWS_WITH(io::read_mtx_dataset(m, g, c_ok),
                      Contains("dup_genes.csv: gene name 'A' occurs 3 times: rows 1 (line 2) and 3 (line 4)") &&
                          Contains("1 more gene names repeat, e.g. 'B'") && Contains("\"make_names_unique\": true"));
  REQUIRE_THROWS_WITH(io::read_mtx_dataset(m, temp_file("ok_genes.csv", "\"\",\"x\"\n1,a\n2,b\n3,c\n4,d\n5,e\n6,f\n"), c),
                      Contains("dup_cells.csv: cell name 'c' occurs 2 times: rows 1 (line 2) and 2 (line 3)"));
  // make_unique: the 2nd 'A' becomes 'A-2' because 'A-1' exists; the 3rd 'A-3'; the 2nd 'B' 'B-1'.
  const auto p = temp_file("dup_pheno.csv", ",t\nc,x\nc,y\n");  // rows name the cells as the file did
  const auto ds = io::read_mtx_dataset(m, g, c, p, data::NameOptions{true});
  CHECK(ds.genes == Strings{"A", "B", "A-2", "A-1", "A-3", "B-1"});
  CHECK(ds.cells == Strings{"c", "c-1"});
  REQUIRE(ds.repeated_genes.size() == 2);
  CHECK(ds.repeated_genes[0].name == "A");
  CHECK(ds.repeated_genes[0].rows == std::vector<Index>{0, 2, 4});
  CHECK(ds.repeated_genes[1].name == "B");
  CHECK(ds.repeated_genes[1].rows == std::vector<Index>{1, 5});
  CHECK(ds.column("t").values == Strings{"x", "y"});
}

TEST_CASE("MatrixMarket dataset: orientation from the name lists", "[io][mtx]") {
  const auto g2 = temp_file("g2.csv", "\"\",\"x\"\n\"1\",\"G1\"\n\"2\",\"G2\"\n");
  const auto c2 = temp_file("c2.csv", "\"\",\"x\"\n\"1\",\"C1\"\n\"2\",\"C2\"\n");
  const auto sq = temp_file("sq.mtx", "%%MatrixMarket matrix coordinate real general\n2 2 1\n1 2 5\n");
  SECTION("as many genes as cells: taken as genes x cells, like upstream") {
    const auto ds = io::read_mtx_dataset(sq, g2, c2);
    CHECK(dense(ds.expr) == std::vector<float>{0, 0, 5, 0});  // file (gene 1, cell 2) -> (cell 2, gene 1)
  }
  SECTION("neither orientation fits: both shapes and both files are named") {
    REQUIRE_THROWS_WITH(io::read_mtx_dataset(sq, data_file("genes.csv"), data_file("cells.csv")),
                        Contains("sq.mtx") && Contains("matrix is [2, 2]") && Contains("genes.csv' lists 5 genes") &&
                            Contains("cells.csv' lists 4 cells") && Contains("[5, 4] (genes x cells)") &&
                            Contains("[4, 5] (cells x genes)"));
  }
  SECTION("phenotype rows in another order") {
    REQUIRE_THROWS_WITH(io::read_mtx_dataset(data_file("counts_gxc.mtx"), data_file("genes.csv"), data_file("cells.csv"),
                                             data_file("pheno_swapped.csv")),
                        Contains("pheno_swapped.csv:4") && Contains("same order"));
  }
}

// ---------------------------------------------------------------- AnnData

#if defined(SAKURA_WITH_HDF5)

namespace {
void check_obs_columns(const data::Dataset<float>& ds) {
  Strings names;
  for (const auto& c : ds.pheno) names.push_back(c.name);
  CHECK(names == Strings{"celltype", "barcode", "n_genes", "score", "pct", "doublet", "n_umi"});
  CHECK(ds.column("celltype").values == Strings{"T", "B", "", "T"});  // categorical, NaN code -1
  CHECK(ds.column("barcode").values == Strings{"s1", "s2", "s3", "s4"});
  CHECK(ds.column("n_genes").values == Strings{"10", "0", "3", "2"});
  CHECK(ds.column("score").values == Strings{"0.5", "", "-1.25", "1e-07"});
  CHECK(ds.column("pct").values == Strings{"0.1", "0.2", "0.3", "0.4"});  // float32, shortest text
  CHECK(ds.column("doublet").values == Strings{"False", "True", "False", "False"});
  CHECK(ds.column("n_umi").values == Strings{"5", "", "7", "8"});  // nullable integer
}
}  // namespace

TEST_CASE("h5ad: dense, CSR and CSC X with anndata 0.8 obs columns", "[io][h5ad]") {
  for (const char* kind : {"dense", "csr", "csc"}) {
    INFO(kind);
    const auto ds = io::read_h5ad<float>(data_file(std::string("x_") + kind + ".h5ad"));
    CHECK(ds.genes == kGenes);  // x_csc names its var index "gene_symbols" through the _index attribute
    CHECK(ds.cells == kCells);
    CHECK(ds.expr.rows == 4);
    CHECK(ds.expr.cols == 5);
    CHECK(ds.expr.nnz() == 7);
    CHECK(dense(ds.expr) == cast<float>(expected_x()));
    check_obs_columns(ds);
  }
  const auto d = io::read_h5ad<double>(data_file("x_csc.h5ad"));  // float32 on disk, widened exactly
  CHECK(dense(d.expr) == cast<double>(cast<float>(expected_x())));
}

TEST_CASE("h5ad: legacy layout, fixed-length strings, unsorted and repeated CSR entries", "[io][h5ad]") {
  const auto ds = io::read_h5ad(data_file("legacy_fixed.h5ad"));
  CHECK(ds.genes == kGenes);
  CHECK(ds.cells == kCells);
  REQUIRE_NOTHROW(ds.expr.validate());
  CHECK(dense(ds.expr) == cast<float>(expected_x()));
  REQUIRE(ds.pheno.size() == 2);  // no column-order: members by name, index and __categories skipped
  CHECK(ds.pheno[0].name == "batch");
  CHECK(ds.pheno[0].values == Strings{"b1", "b22", "b1", "b333"});  // space padding removed
  CHECK(ds.pheno[1].name == "celltype");
  CHECK(ds.pheno[1].values == Strings{"T", "B", "", "T"});
}

TEST_CASE("h5ad: errors name the file and the HDF5 path", "[io][h5ad]") {
  REQUIRE_THROWS_WITH(io::read_h5ad(data_file("bad_shape.h5ad")),
                      Contains("bad_shape.h5ad") && Contains("X is [3, 5]") && Contains("obs has 4 names"));
  REQUIRE_THROWS_WITH(io::read_h5ad(data_file("obs_compound.h5ad")),
                      Contains("obs_compound.h5ad: HDF5 path '/obs'") && Contains("anndata < 0.7"));
  REQUIRE_THROWS_WITH(io::read_h5ad(data_file("genes.csv")), Contains("genes.csv: cannot open as an HDF5 file"));
  REQUIRE_THROWS_WITH(io::read_h5ad(data_file("missing.h5ad")), Contains("missing.h5ad"));
  io::h5::QuietErrors quiet;
  io::h5::Node root{io::h5::Handle(H5Fopen(data_file("x_csr.h5ad").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose),
                    data_file("x_csr.h5ad"), "/"};
  REQUIRE_THROWS_WITH(io::h5::open(io::h5::open(root, "obs"), "cluster"),
                      Contains("x_csr.h5ad: HDF5 path '/obs/cluster': not found"));
}

TEST_CASE("h5ad: declared shapes beyond what the file stores are errors before any allocation", "[io][h5ad]") {
  // Each of these asked for gigabytes (or read fill values for hours) before the checks.
  REQUIRE_THROWS_WITH(io::read_h5ad(data_file("csc_huge_shape.h5ad")),
                      Contains("csc_huge_shape.h5ad: X is [2147483647, 5] but obs has 4 names"));
  REQUIRE_THROWS_WITH(io::read_h5ad(data_file("indptr_huge.h5ad")),
                      Contains("indptr_huge.h5ad: HDF5 path '/X/indptr'") && Contains("declares 4294967296 (34359738368 bytes)") &&
                          Contains("stores only 0 bytes"));
  REQUIRE_THROWS_WITH(io::read_h5ad(data_file("data_huge.h5ad")),
                      Contains("data_huge.h5ad: HDF5 path '/X/data'") && Contains("declares 8589934592"));
  REQUIRE_THROWS_WITH(io::read_h5ad(data_file("index_huge.h5ad")),
                      Contains("index_huge.h5ad: HDF5 path '/obs/_index'") && Contains("declares 1099511627776"));
  REQUIRE_THROWS_WITH(io::read_h5ad(data_file("obs_short_column.h5ad")),
                      Contains("obs_short_column.h5ad: HDF5 path '/obs/n': 3 values for 4 cells"));
}

TEST_CASE("h5ad: gzip-compressed arrays and strings read like uncompressed ones", "[io][h5ad]") {
  const auto ds = io::read_h5ad<float>(data_file("x_gzip.h5ad"));
  CHECK(ds.genes == kGenes);
  CHECK(ds.cells == kCells);
  CHECK(dense(ds.expr) == cast<float>(expected_x()));
  check_obs_columns(ds);
}

namespace {
/// A copy of a fixture with `bytes` written at `offset`.
std::string patched(const std::string& fixture, std::size_t offset, const std::string& bytes) {
  std::string content = slurp_file(data_file(fixture));
  REQUIRE(offset + bytes.size() <= content.size());
  content.replace(offset, bytes.size(), bytes);
  return temp_file("patched_" + fixture, content);
}
std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}
}  // namespace

TEST_CASE("h5ad: a damaged string heap or string reference is an error, not a crash inside libhdf5",
          "[io][h5ad]") {
  const std::string file = slurp_file(data_file("x_csr.h5ad"));
  const std::size_t heap = file.find("GCOL\x01");
  REQUIRE(heap != std::string::npos);
  // The first object's size (8 bytes after its index, refcount and reserved field): libhdf5 1.10
  // copied that many bytes out of the heap (an AddressSanitizer report; a SIGSEGV without it).
  const std::size_t first_object = heap + 16;
  REQUIRE_THROWS_WITH(io::read_h5ad(patched("x_csr.h5ad", first_object + 8, le64(1u << 30))),
                      Contains("damaged global heap") && Contains("at byte " + std::to_string(heap)));
  // The second object given the first one's index (objects are kept sorted by index: a repeat is
  // found after the sort, named at the later object's place).
  std::uint64_t first_size = 0;
  std::memcpy(&first_size, file.data() + first_object + 8, 8);  // little-endian, as the test host
  const std::size_t second = first_object + 16 + (first_size + 7) / 8 * 8;
  REQUIRE_THROWS_WITH(io::read_h5ad(patched("x_csr.h5ad", second, file.substr(first_object, 2))),
                      Contains("an object index used twice at byte " + std::to_string(second)));
  // A heap reference of obs/_index pointing at an object index that does not exist.
  io::h5::QuietErrors quiet;
  haddr_t at = HADDR_UNDEF;
  {
    io::h5::Handle f(H5Fopen(data_file("x_csr.h5ad").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    io::h5::Handle d(H5Dopen2(f.get(), "/obs/_index", H5P_DEFAULT), H5Dclose);
    at = H5Dget_offset(d.get());
  }
  REQUIRE(at != HADDR_UNDEF);
  REQUIRE_THROWS_WITH(io::read_h5ad(patched("x_csr.h5ad", at + 12, std::string("\xff\x7f\x00\x00", 4))),
                      Contains("HDF5 path '/obs/_index': string 0 refers to no valid heap object"));
  // A string length that disagrees with its heap object (libhdf5 would copy past its buffer).
  REQUIRE_THROWS_WITH(io::read_h5ad(patched("x_csr.h5ad", at, std::string("\x00\x00\x01\x00", 4))),
                      Contains("string 0 refers to a heap object of another size"));
}

TEST_CASE("h5ad: damaged attribute messages and attribute string references are errors", "[io][h5ad]") {
  const std::string file = slurp_file(data_file("x_csr.h5ad"));
  // obs's attribute message 'column-order' (version 1): name, datatype and dataspace sizes at +2/+4/+6,
  // its name at +8, then the three parts padded to 8 bytes, then the data (string references).
  const std::size_t name = file.find(std::string("column-order\0", 13));
  REQUIRE(name != std::string::npos);
  const std::size_t msg = name - 8;
  auto u16 = [&](std::size_t at) { return std::size_t(static_cast<unsigned char>(file[at])) | std::size_t(static_cast<unsigned char>(file[at + 1])) << 8; };
  auto pad8 = [](std::size_t x) { return (x + 7) / 8 * 8; };
  REQUIRE(u16(msg + 2) == 13);
  const std::size_t data_at = msg + 8 + pad8(u16(msg + 2)) + pad8(u16(msg + 4)) + pad8(u16(msg + 6));
  // a name length past the message: libhdf5 1.10 read past its buffer (AddressSanitizer report)
  REQUIRE_THROWS_WITH(io::read_h5ad(patched("x_csr.h5ad", msg + 2, std::string("\xff\x7f", 2))),
                      Contains("HDF5 path '/obs': damaged object header"));
  // the first string reference's object index: libhdf5 1.10 followed it (SIGSEGV)
  REQUIRE_THROWS_WITH(io::read_h5ad(patched("x_csr.h5ad", data_at + 12, std::string("\xff\x7f\x00\x00", 4))),
                      Contains("HDF5 path '/obs' attribute 'column-order': string 0 refers to no valid heap object"));
}

namespace {
/// The file offset of the first message of `type` in the version-1 object header of `object`
/// (its first block), found through libhdf5 on the intact fixture.
std::size_t message_offset(const std::string& fixture, const char* object, unsigned type) {
  io::h5::QuietErrors quiet;
  io::h5::Handle f(H5Fopen(data_file(fixture).c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  H5O_info_t info;
  REQUIRE(H5Oget_info_by_name2(f.get(), object, &info, H5O_INFO_BASIC, H5P_DEFAULT) >= 0);
  const std::string file = slurp_file(data_file(fixture));
  const auto u16 = [&](std::size_t at) { return unsigned(static_cast<unsigned char>(file[at])) | unsigned(static_cast<unsigned char>(file[at + 1])) << 8; };
  REQUIRE(file[info.addr] == 1);  // version 1
  const std::size_t end = info.addr + 16 + (u16(info.addr + 8) | std::size_t(u16(info.addr + 10)) << 16);
  for (std::size_t p = info.addr + 16; p + 8 <= end; p += 8 + u16(p + 2))
    if (u16(p) == type) return p;
  FAIL("no message of type " << type << " in " << object);
  return 0;
}
}  // namespace

TEST_CASE("h5ad: damaged metadata is a named error before libhdf5 reads it (fuzz findings inside libhdf5)",
          "[io][h5ad]") {
  // The root group's B-tree (its address is cached in the superblock): H5Fopen loaded it and
  // allocated gigabytes or leaked on a damaged one.
  CHECK_THROWS_WITH(io::read_h5ad(patched("x_csc.h5ad", 0x88, "XXXX")),
                      Contains("x_csc.h5ad: HDF5 path '/': damaged group B-tree: no node signature"));
  // The root group's local heap: a free list that points at itself made libhdf5 allocate list
  // entries forever (a hang); a data size beyond the file, a multi-GB allocation.
  const std::string file = slurp_file(data_file("x_csc.h5ad"));
  REQUIRE(file.substr(0x2a8, 4) == "HEAP");
  const std::size_t heap_data = 30168, free_head = 80;  // the fixture's heap: data address, first free block
  REQUIRE(file.substr(0x2a8 + 16, 16) == le64(free_head) + le64(heap_data));
  CHECK_THROWS_WITH(io::read_h5ad(patched("x_csc.h5ad", heap_data + free_head, le64(free_head))),
                      Contains("HDF5 path '/': damaged local heap") && Contains("a broken free list"));
  CHECK_THROWS_WITH(io::read_h5ad(patched("x_csc.h5ad", 0x2a8 + 8, le64(std::uint64_t{1} << 40))),
                      Contains("its data beyond the end of the file"));
  // The superblock's end-of-file address (at 0x28) before the root header's continuation block:
  // libhdf5 refused that read inside H5Fopen and leaked what it had loaded of the root header.
  REQUIRE(file.substr(0x28, 8) == le64(file.size()));
  CHECK_THROWS_WITH(io::read_h5ad(patched("x_csc.h5ad", 0x28, le64(0x390))),
                    Contains("HDF5 path '/': damaged") && Contains("beyond the end of the file"));
  // A base address (at 0x18) past the signature's position: libhdf5 moves the end-of-file address
  // down by the difference, and that leaked the same way.
  CHECK_THROWS_WITH(io::read_h5ad(patched("x_csc.h5ad", 0x18, le64(0x7000))),
                    Contains("HDF5 path '/': damaged") && Contains("beyond the end of the file"));
  // A chunked layout (version 3: class, rank + 1, B-tree address, then the chunk sizes) with a
  // chunk of extent 0: libhdf5 divided by it when opening the dataset (SIGFPE).
  const std::size_t layout = message_offset("x_csc.h5ad", "/X/indptr", 0x08) + 8;
  REQUIRE(file[layout] == 3);
  REQUIRE(file[layout + 1] == 2);
  CHECK_THROWS_WITH(io::read_h5ad(patched("x_csc.h5ad", layout + 3 + 8, std::string(4, '\0'))),
                      Contains("HDF5 path '/X/indptr': damaged object header: a chunk of extent 0"));
  // The same layout's element size (its last chunk dimension) other than the datatype's: libhdf5
  // sized the chunk by one and copied out by the other (heap-buffer-overflow).
  CHECK_THROWS_WITH(io::read_h5ad(patched("x_csc.h5ad", layout + 3 + 8 + 4, std::string("\x08", 1))),
                    Contains("HDF5 path '/X/indptr': damaged object header (chunks laid out for another element size)"));
  // A variable-length string whose characters claim 4096 bytes: libhdf5 allocated length x 4096
  // bytes per string converting them (25 GB).
  const std::size_t type = message_offset("x_csc.h5ad", "/obs/_index", 0x03) + 8;
  REQUIRE((file[type] & 15) == 9);
  REQUIRE(static_cast<unsigned char>(file[type + 8 + 4]) == 1);  // the base type's size
  CHECK_THROWS_WITH(io::read_h5ad(patched("x_csc.h5ad", type + 8 + 4, std::string("\x00\x10", 2))),
                      Contains("HDF5 path '/obs/_index': damaged object header: a variable-length string of "
                               "characters wider than 1 byte"));
}

#if defined(SAKURA_HDF5_ZLIB)
TEST_CASE("h5ad: a compressed chunk that inflates to less than a chunk is an error, not a read past libhdf5's buffer",
          "[io][h5ad]") {
  // X/data of the gzip fixture is one deflate-compressed chunk of 7 floats; a valid stream of one
  // float written over it (the index still gives the old size; inflate stops at the stream's end).
  haddr_t at = HADDR_UNDEF;
  hsize_t size = 0;
  {
    io::h5::QuietErrors quiet;
    io::h5::Handle f(H5Fopen(data_file("x_gzip.h5ad").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    io::h5::Handle d(H5Dopen2(f.get(), "/X/data", H5P_DEFAULT), H5Dclose);
    io::h5::Handle space(H5Dget_space(d.get()), H5Sclose);
    hsize_t offset = 0;
    unsigned mask = 0;
    REQUIRE(H5Dget_chunk_info(d.get(), space.get(), 0, &offset, &mask, &at, &size) >= 0);
  }
  const float one = 1.0f;
  unsigned char packed[64];
  uLongf packed_size = sizeof packed;
  REQUIRE(compress2(packed, &packed_size, reinterpret_cast<const Bytef*>(&one), sizeof one, 6) == Z_OK);
  REQUIRE(packed_size <= size);
  const std::string file = patched("x_gzip.h5ad", at, std::string(reinterpret_cast<const char*>(packed), packed_size));
  REQUIRE_THROWS_WITH(io::read_h5ad(file), Contains("HDF5 path '/X/data': chunk 0 holds 4 bytes once decompressed, not "
                                                    "the 28 of a chunk"));
}
#endif

TEST_CASE("h5ad: a file rejected at its superblock leaves no descriptor open", "[io][h5ad]") {
  if (!std::filesystem::is_directory("/proc/self/fd")) return;  // Linux only: nothing to count elsewhere
  auto open_fds = [] {
    return std::distance(std::filesystem::directory_iterator("/proc/self/fd"), std::filesystem::directory_iterator{});
  };
  const std::string bad = patched("x_csc.h5ad", 13, std::string(1, '\x03'));  // 3-byte addresses
  const auto before = open_fds();
  for (int i = 0; i < 10; ++i)
    REQUIRE_THROWS_WITH(io::read_h5ad(bad), Contains("damaged HDF5 superblock: address or length sizes"));
  CHECK(open_fds() == before);
}

TEST_CASE("h5ad: repeated names are an error naming both positions, or made unique on request", "[io][h5ad][names]") {
  REQUIRE_THROWS_WITH(io::read_h5ad(data_file("dup_names.h5ad")),
                      Contains("dup_names.h5ad: HDF5 path '/var/_index': gene name 'CD4' occurs 2 times: rows 2 and 3") &&
                          Contains("make_names_unique"));
  const auto ds = io::read_h5ad(data_file("dup_names.h5ad"), data::NameOptions{true});
  CHECK(ds.genes == Strings{"CD8A", "CD4", "CD4-2", "MT-CO1", "CD4-1"});  // CD4-1 exists: the repeat becomes CD4-2
  CHECK(ds.cells == Strings{"AAAC-1", "B", "AAAC-1-1", "C"});
  REQUIRE(ds.repeated_genes.size() == 1);
  CHECK(ds.repeated_genes[0].rows == std::vector<Index>{1, 2});
}

#endif  // SAKURA_WITH_HDF5
