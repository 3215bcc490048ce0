// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// A story's pieces for N ranks, in one process: each rank's batches hold (and a backed rank reads)
// only its rows, the first difference between two ranks' inputs is named, checkpoints record the
// number of ranks. The jobs under mpirun are tests/story/mpi/.
#include <sakura/story/demo.hpp>  // first: brings config/json.hpp before the io readers

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <numeric>
#include <set>
#include <unistd.h>

#include <sakura/data/synthetic.hpp>
#include <sakura/story/feed.hpp>
#include <sakura/story/ranks.hpp>
#if defined(SAKURA_WITH_HDF5)
#include <sakura/io/h5ad_rows.hpp>
#include <sakura/io/synthetic_h5ad.hpp>
#endif

using namespace sakura;
namespace fs = std::filesystem;
using config::Json;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("sakura_ranks_" + std::to_string(::getpid())) / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

/// A batch's dense input, row by row.
std::vector<std::vector<float>> rows_of(const Batch<float>& b) {
  std::vector<std::vector<float>> out;
  for (Index i = 0; i < b.expr.rows(); ++i) out.emplace_back(b.expr.data() + i * b.expr.cols(), b.expr.data() + (i + 1) * b.expr.cols());
  return out;
}

/// Every batch of one pass and every evaluation chunk as rank `rank` of `ranks` fills them,
/// concatenated in rank order per batch, equals what one process fills; each rank's part is its
/// balanced share, in order.
void check_ranks_fill_their_rows(const data::TrainingData<float>& d, data::SamplingOptions so) {
  const data::RowSet cells = data::RowSet::all(d.n_cells());
  for (const int ranks : {2, 3, 7}) {
    INFO(ranks << " ranks, " << (so.mode == data::SamplingOptions::Mode::Blocks ? "blocks" : "exact"));
    // one process: the reference
    data::Sampler s1(cells, 10, 42, false, so);
    story::Feed one(d);
    one.reset(std::span<const data::Sampler>(&s1, 1));
    std::vector<std::vector<std::vector<float>>> want;
    std::vector<std::vector<Index>> want_rows;
    s1.begin_epoch();
    while (!s1.exhausted()) {
      const Index position = s1.position();
      want.push_back(rows_of(one.next(0, s1)));
      want_rows.emplace_back();
      s1.batch_rows(position, want_rows.back());
    }
    std::vector<std::vector<std::vector<float>>> want_chunks;
    one.chunks(cells, 25, [&](std::span<const Index>, Batch<float>& b) { want_chunks.push_back(rows_of(b)); });
    std::vector<std::vector<std::vector<float>>> got(want.size());
    for (int r = 0; r < ranks; ++r) {
      data::Sampler s(cells, 10, 42, false, so);  // every rank draws the same global batches
      story::Feed feed(d, r, ranks);
      feed.reset(std::span<const data::Sampler>(&s, 1));
      s.begin_epoch();
      for (std::size_t k = 0; !s.exhausted(); ++k) {
        const auto part = rows_of(feed.next(0, s));
        const auto [begin, count] = dist::balanced_range(static_cast<Index>(want_rows[k].size()), ranks, r);
        REQUIRE(static_cast<Index>(part.size()) == count);
        got[k].insert(got[k].end(), part.begin(), part.end());
      }
      // evaluation chunks of 25 cells (the last one short): this rank's rows of each
      Index first = 0;
      std::size_t c = 0;
      feed.chunks(cells, 25, [&](std::span<const Index> chunk, Batch<float>& b) {
        CHECK(chunk.front() == first);  // the whole chunk is passed on, in order
        first += static_cast<Index>(chunk.size());
        const auto [begin, count] = dist::balanced_range(static_cast<Index>(chunk.size()), ranks, r);
        const auto& whole = want_chunks.at(c++);
        CHECK(rows_of(b) == std::vector<std::vector<float>>(whole.begin() + begin, whole.begin() + begin + count));
      });
      CHECK(first == d.n_cells());
    }
    CHECK(got == want);
  }
}

data::TrainingData<float> in_memory(Index cells) {
  auto ds = data::to_dataset(data::make_synthetic({.cells = cells, .genes = 30, .cell_types = 3, .seed = 9}));
  return data::prepare_training_data(std::move(ds), {}, {});
}

}  // namespace

TEST_CASE("on N ranks each rank's batches and chunks hold its balanced share of the global rows", "[ranks]") {
  check_ranks_fill_their_rows(in_memory(93), {});
  CHECK(story::own_rows(std::vector<Index>{5, 6, 7, 8, 9}, 0, 2).size() == 3);
  CHECK(story::own_rows(std::vector<Index>{5, 6, 7, 8, 9}, 1, 2).front() == 8);
  CHECK(story::own_rows(std::vector<Index>{5}, 2, 3).empty());  // a rank may hold none
  CHECK(story::own_capacity(10, 3) == 4);
}

#if defined(SAKURA_WITH_HDF5)
namespace {
/// A RowSource that records every row it is asked to read (the Feed's worker thread reads).
class Recording final : public data::RowSource<float> {
 public:
  explicit Recording(std::shared_ptr<data::RowSource<float>> s) : s_(std::move(s)) {}
  Index rows() const override { return s_->rows(); }
  Index cols() const override { return s_->cols(); }
  std::int64_t max_row_entries() const override { return s_->max_row_entries(); }
  void read(std::span<const Index> rows, CsrMatrix<float>& out) override {
    {
      std::lock_guard lock(mu_);
      read_.insert(read_.end(), rows.begin(), rows.end());
    }
    s_->read(rows, out);
  }
  void reserve(Index rows) override { s_->reserve(rows); }
  void names(std::span<const Index> rows, std::vector<std::string>& out) override { s_->names(rows, out); }
  const std::string& path() const override { return s_->path(); }
  std::vector<Index> take() {
    std::lock_guard lock(mu_);
    return std::exchange(read_, {});
  }

 private:
  std::shared_ptr<data::RowSource<float>> s_;
  std::mutex mu_;
  std::vector<Index> read_;
};
}  // namespace

TEST_CASE("on N ranks a backed rank reads only its rows of each batch and chunk from the .h5ad", "[ranks][stream]") {
  const fs::path w = scratch("backed");
  const std::string file = (w / "atlas.h5ad").string();
  io::SyntheticAtlasOptions o;
  o.model = {.cells = 93, .genes = 30, .cell_types = 3, .seed = 9};
  o.layout.chunk_bytes = 600;
  io::write_synthetic_h5ad(file, o);
  for (const auto mode : {data::SamplingOptions::Mode::Exact, data::SamplingOptions::Mode::Blocks}) {
    const data::SamplingOptions so{.mode = mode, .block_cells = 4, .blocks_per_fetch = 3};
    data::TrainingData<float> d = io::read_h5ad_backed<float>(file, {}, {}, data::PhenoJson::object(), "");
    check_ranks_fill_their_rows(d, so);  // the same batches as in memory, split the same way
    auto rec = std::make_shared<Recording>(d.backed->source);
    d.backed->source = rec;
    const data::RowSet cells = data::RowSet::all(d.n_cells());
    for (const int ranks : {2, 3}) {
      std::vector<std::set<Index>> read(static_cast<std::size_t>(ranks));
      std::vector<Index> globals;
      for (int r = 0; r < ranks; ++r) {
        data::Sampler s(cells, 10, 42, false, so);
        story::Feed feed(d, r, ranks);
        feed.reset(std::span<const data::Sampler>(&s, 1));
        s.begin_epoch();
        std::set<Index> mine;
        std::vector<Index> batch;
        while (!s.exhausted()) {
          s.batch_rows(s.position(), batch);
          const auto own = story::own_rows(batch, r, ranks);
          mine.insert(own.begin(), own.end());
          if (r == 0) globals.insert(globals.end(), batch.begin(), batch.end());
          feed.next(0, s);
        }
        feed.chunks(cells, 25, [&](std::span<const Index> chunk, Batch<float>&) {
          const auto own = story::own_rows(chunk, r, ranks);
          mine.insert(own.begin(), own.end());
        });
        const auto rows = rec->take();
        read[static_cast<std::size_t>(r)].insert(rows.begin(), rows.end());
        INFO("rank " << r << " of " << ranks);
        CHECK(read[static_cast<std::size_t>(r)] == mine);  // its rows, and no others
      }
      std::set<Index> all;
      for (const auto& s : read) all.insert(s.begin(), s.end());
      CHECK(static_cast<Index>(all.size()) == d.n_cells());  // together, every cell
    }
  }
}
#endif

TEST_CASE("the first difference between two ranks' inputs is named by its path and both values", "[ranks]") {
  using story::detail::json_difference;
  const Json a = Json::parse(R"({"config": {"rnd_seed": 3407, "story": [{"ticks": 5}]},
                                 "files": {"./data/x.mtx": {"bytes": 10, "digest": "ab"}}})");
  CHECK(json_difference(a, a, 1).empty());
  Json b = a;
  b["config"]["rnd_seed"] = 7;
  CHECK(json_difference(a, b, 2) == "config.rnd_seed: 3407 on rank 0, 7 on rank 2");
  b = a;
  b["config"]["story"][0]["ticks"] = "5";
  CHECK(json_difference(a, b, 1) == "config.story[0].ticks: 5 on rank 0, \"5\" on rank 1");
  b = a;
  b["files"]["./data/x.mtx"] = story::file_facts("/nonexistent/sakura/x.mtx");
  CHECK(json_difference(a, b, 1) ==
        "files[\"./data/x.mtx\"].bytes: 10 on rank 0, \"cannot open: No such file or directory\" on rank 1");
  b = a;
  b["config"].erase("story");
  CHECK(json_difference(a, b, 1) == "config.story: [{\"ticks\":5}] on rank 0, absent on rank 1");
  // a file's identity: its size and the digest of its ends
  const fs::path w = scratch("facts");
  std::ofstream(w / "a") << "hello";
  std::ofstream(w / "b") << "hellp";
  CHECK(story::file_facts((w / "a").string())["bytes"] == 5);
  CHECK(story::file_facts((w / "a").string()) != story::file_facts((w / "b").string()));
  // one rank agrees with itself
  story::check_inputs_agree(dist::Comm{}, a);
}

TEST_CASE("checkpoints record the number of ranks, single-process files are unchanged", "[ranks][checkpoint]") {
  const fs::path w = scratch("ckpt");
  ExperimentSpec spec = config::experiment_from_json(Json::parse(story::tutorial_config_json()),
                                                     Json::object(), Json::object(), 20);
  Controller<float> ctl(spec);
  io::Checkpoint ck = io::capture(ctl);
  const std::string one = (w / "one.ckpt").string(), three = (w / "three.ckpt").string();
  io::write_checkpoint(one, ck);
  ck.ranks = 3;
  io::write_checkpoint(three, ck);
  auto bytes = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  CHECK(bytes(one).find("DIST") == std::string::npos);
  CHECK(bytes(three).size() == bytes(one).size() + 4 + 8 + 8 + 8);  // tag, length, ranks, checksum
  CHECK(io::read_checkpoint(one).ranks == 1);
  CHECK(io::read_checkpoint(three).ranks == 3);
  // parsing bytes already read (rank 0 reads, every rank parses) is reading the file
  const std::string b = bytes(three);
  const io::Checkpoint parsed =
      io::parse_checkpoint(std::span(reinterpret_cast<const std::uint8_t*>(b.data()), b.size()), three);
  CHECK(parsed.ranks == 3);
  CHECK(parsed.params.size() == ck.params.size());
  CHECK(story::read_checkpoint_on_ranks(dist::Comm{}, three).ranks == 3);
}
