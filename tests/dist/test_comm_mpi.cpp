// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// dist::Comm over MPI, run under mpiexec at 2 and 3 ranks: every collective against a serial
// reference (every rank generates every rank's data), uneven splits, sums bit-identical to the
// rank-order sum whatever the bucketing, blocking or not, and however the ranks are delayed.
// No REQUIRE before a collective: a rank that stopped early would leave the others waiting.
#include <catch2/catch.hpp>

#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "dist/reference.hpp"
#include "dist/world.hpp"
#include "sakura/dist/gradient_sum.hpp"

using namespace sakura;
using dist::Comm;
using test::world;

namespace {

/// Sleeps 0 to max_us microseconds, differently on every rank and call: the ranks reach each
/// step of a collective in varying orders.
void jitter(std::mt19937& gen, int max_us) {
  std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, max_us)(gen)));
}

}  // namespace

TEST_CASE("rank and size are MPI_COMM_WORLD's; the communicator is a duplicate") {
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  CHECK(world().rank() == rank);
  CHECK(world().size() == size);
  CHECK(std::string(world().name()) == "MPI");
  auto& t = static_cast<dist::MpiTransport&>(world().transport());
  int cmp = 0;
  MPI_Comm_compare(t.handle(), MPI_COMM_WORLD, &cmp);
  CHECK(cmp == MPI_CONGRUENT);  // same ranks, separate message space
}

TEST_CASE("allgather puts every rank's values in rank order") {
  const Comm& comm = world();
  const std::vector<std::int64_t> mine = {comm.rank() * 10, comm.rank() * 10 + 1};
  std::vector<std::int64_t> all(2 * static_cast<std::size_t>(comm.size()));
  comm.allgather(std::span<const std::int64_t>(mine), std::span<std::int64_t>(all));
  for (int r = 0; r < comm.size(); ++r) {
    CHECK(all[2 * std::size_t(r)] == r * 10);
    CHECK(all[2 * std::size_t(r) + 1] == r * 10 + 1);
  }
}

TEMPLATE_TEST_CASE("allreduce_sum adds in rank order: the serial rank-order sum, to the bit", "", float, double) {
  const Comm& comm = world();
  constexpr Index n = 257;
  auto v = test::rank_values<TestType>(11, comm.rank(), n);
  comm.allreduce_sum(std::span(v));
  const auto ref = test::serial_sum<TestType>(11, comm.size(), n);
  CHECK(test::same_bits(v, ref));
  if (comm.size() >= 3)  // another order gives other bits for this data: the check above can fail
    CHECK_FALSE(test::same_bits(ref, test::serial_sum<TestType>(11, comm.size(), n, true)));
  const TestType one = comm.allreduce_sum(TestType(comm.rank() + 1));
  CHECK(one == TestType(comm.size() * (comm.size() + 1) / 2));
  std::vector<std::int64_t> counts = {comm.rank() == 1 ? 5 : 2};
  comm.allreduce_sum(std::span(counts));
  CHECK(counts[0] == 2 * comm.size() + 3);
}

TEST_CASE("broadcast sends the root's bytes and text, of a length only the root knows") {
  const Comm& comm = world();
  for (int root = 0; root < comm.size(); ++root) {
    std::vector<std::byte> bytes(1001, std::byte(comm.rank()));
    comm.broadcast(std::span(bytes), root);
    CHECK(bytes == std::vector<std::byte>(1001, std::byte(root)));
    std::string text = comm.rank() == root ? std::string(3000 + root, 'a' + char(root)) : "other";
    comm.broadcast(text, root);
    CHECK(text == std::string(3000 + root, 'a' + char(root)));
  }
}

TEST_CASE("check_same passes equal bytes and throws on every rank when one rank differs") {
  const Comm& comm = world();
  const std::string config = R"({"main_latent": {"latent_dim": 50}})";
  CHECK_NOTHROW(comm.check_same(config, "the config"));
  const int last = comm.size() - 1;
  std::string mine = config;
  if (comm.rank() == last) mine[20] = '6';  // one byte, same length
  CHECK_THROWS_WITH(comm.check_same(mine, "the config (run.json)"),
                    Catch::Contains("the config (run.json) differs between the " + std::to_string(comm.size()) +
                                    " ranks") &&
                        Catch::Contains("rank " + std::to_string(last) + " has 35 bytes") &&
                        Catch::Contains("Start every rank with the same inputs"));
  if (comm.rank() == last) mine += ' ';  // a longer text
  CHECK_THROWS_WITH(comm.check_same(mine, "the config"),
                    Catch::Contains("rank 0 has 35 bytes") && Catch::Contains("has 36 bytes"));
  std::vector<float> params = test::rank_values<float>(3, 0, 1000);  // the same on every rank
  CHECK_NOTHROW(comm.check_same(std::as_bytes(std::span(params)), "the parameters"));
  if (comm.rank() == 0) params[999] = std::nextafter(params[999], 1e9f);  // one ulp
  CHECK_THROWS_WITH(comm.check_same(std::as_bytes(std::span(params)), "the parameters"),
                    Catch::Contains("the parameters differs"));
}

TEMPLATE_TEST_CASE("allgather_rows gathers uneven splits, a rank with no rows, and in place", "", float, double) {
  const Comm& comm = world();
  const int n = comm.size();
  constexpr Index cols = 5;
  std::vector<dist::RowSplit> splits = {dist::RowSplit::balanced(7, n), dist::RowSplit::balanced(400, n),
                                        dist::RowSplit::balanced(1, n)};
  std::vector<Index> with_empty(static_cast<std::size_t>(n), 3);
  with_empty[1] = 0;  // rank 1 holds no rows
  splits.emplace_back(with_empty);
  for (const auto& split : splits) {
    const auto global = test::rank_values<TestType>(5, 99, split.total() * cols);  // the global batch
    Tensor<TestType> mine(split.count(comm.rank()), cols), all(split.total(), cols);
    std::copy_n(global.data() + split.begin(comm.rank()) * cols, mine.size(), mine.data());
    comm.allgather_rows<TestType>(mine.ref(), split, all.ref());
    CHECK(test::same_bits(all.data(), global.data(), global.size()));

    Tensor<TestType> in_place(split.total(), cols);  // own rows already in place, the rest garbage
    in_place.fill(TestType(-7));
    std::copy_n(mine.data(), mine.size(), in_place.data() + split.begin(comm.rank()) * cols);
    const MatrixRef<const TestType> own(in_place.data() + split.begin(comm.rank()) * cols, mine.rows(), cols);
    comm.allgather_rows<TestType>(own, split, in_place.ref());
    CHECK(test::same_bits(in_place.data(), global.data(), global.size()));
  }
  Tensor<TestType> mine(1, cols), all(n + 1, cols);
  CHECK_THROWS_WITH(comm.allgather_rows<TestType>(mine.ref(), dist::RowSplit::balanced(n + 1, n + 1), all.ref()),
                    Catch::Contains("a split over " + std::to_string(n + 1) + " ranks on a communicator of " +
                                    std::to_string(n)));
}

TEMPLATE_TEST_CASE("sums over ranks: the rank-order sum to the bit, for any bucketing, blocking or not", "", float,
                   double) {
  const Comm& comm = world();
  // the tutorial's parameter blocks in miniature: a large one, small ones, one smaller than the
  // rank count (some ranks own an empty chunk), and an empty one
  const std::vector<Index> layout = {20000, 200, 1, 0, 4000, 2};
  Index total = 0;
  for (Index s : layout) total += s;
  const auto ref = test::serial_sum<TestType>(21, comm.size(), total);
  if (comm.size() >= 3) CHECK_FALSE(test::same_bits(ref, test::serial_sum<TestType>(21, comm.size(), total, true)));

  auto g = test::rank_values<TestType>(21, comm.rank(), total);
  comm.sum(std::span(g));
  CHECK(test::same_bits(g, ref));

  std::mt19937 gen(1234u + 17u * unsigned(comm.rank()));
  for (const auto& buckets : {layout, dist::GradientSum<TestType>::even_buckets(total, 1000),
                              dist::GradientSum<TestType>::even_buckets(total, total)}) {
    dist::GradientSum<TestType> sum(comm, buckets);
    REQUIRE(sum.total() == total);  // the same on every rank: a failure stops them all here
    for (int round = 0; round < 6; ++round) {
      g = test::rank_values<TestType>(21, comm.rank(), total);
      if (round % 2 == 0) {
        sum.run(g.data());
      } else {  // as backward: last bucket first, work between starts, then the waits in order
        for (Index b = sum.buckets() - 1; b >= 0; --b) {
          jitter(gen, 300);
          sum.start(b, g.data());
          sum.progress();
        }
        jitter(gen, 300);
        for (Index b = 0; b < sum.buckets(); ++b) sum.wait(b);
      }
      CHECK(test::same_bits(g, ref));
    }
  }
}

TEST_CASE("a mistaken start is refused on every rank alike and the sum still completes") {
  const Comm& comm = world();
  dist::GradientSum<float> sum(comm, {100});
  auto g = test::rank_values<float>(4, comm.rank(), 100);
  sum.start(0, g.data());
  CHECK_THROWS_WITH(sum.start(0, g.data()), Catch::Contains("bucket 0 started again before wait()"));
  sum.wait(0);
  CHECK(test::same_bits(g, test::serial_sum<float>(4, comm.size(), 100)));
}

TEMPLATE_TEST_CASE("a reduce-scatter sums each rank's own chunk; gather_chunks brings the others' chunks", "", float,
                   double) {
  // the sharded optimizer's two halves: after wait() this rank's chunk(b) holds the rank-order sum
  // (the rest is not sent back: half the bytes), and gather_chunks() completes any per-chunk result
  const Comm& comm = world();
  const std::vector<Index> layout = {20000, 200, 1, 0, 4000, 2};  // chunks empty on some ranks too
  Index total = 0;
  for (Index s : layout) total += s;
  const auto ref = test::serial_sum<TestType>(33, comm.size(), total);
  dist::GradientSum<TestType> sum(comm, layout, dist::Result::OwnChunk);
  std::mt19937 gen(99u + 7u * unsigned(comm.rank()));
  for (int round = 0; round < 3; ++round) {
    auto g = test::rank_values<TestType>(33, comm.rank(), total);
    for (Index b = sum.buckets() - 1; b >= 0; --b) {
      jitter(gen, 200);
      sum.start(b, g.data());
    }
    sum.wait_all();
    Index covered = 0;
    for (Index b = 0; b < sum.buckets(); ++b) {
      const auto [first, count] = sum.chunk(b);
      CHECK(count == dist::balanced_range(sum.size(b), comm.size(), comm.rank()).second);
      const std::size_t at = static_cast<std::size_t>(sum.offset(b) + first);
      CHECK(test::same_bits(g.data() + at, ref.data() + at, static_cast<std::size_t>(count)));
      covered += count;
    }
    CHECK(comm.allreduce_sum(covered) == total);  // the chunks tile every bucket
    if (comm.size() > 1) CHECK_FALSE(test::same_bits(g, ref));  // the others' chunks were not sent back
    for (Index b = 0; b < sum.buckets(); ++b) sum.gather_chunks(b, g.data() + sum.offset(b));
    CHECK(test::same_bits(g, ref));
  }
}

TEMPLATE_TEST_CASE("gather_rows brings uneven splits to the root only, in place or not", "", float, double) {
  const Comm& comm = world();
  const int n = comm.size();
  std::vector<Index> counts(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r) counts[static_cast<std::size_t>(r)] = r == 1 ? 0 : 2 + r;  // rank 1 has no rows
  const dist::RowSplit split(counts);
  const Index cols = 3;
  auto value = [](Index row, Index c) { return static_cast<TestType>(row * 10 + c) + TestType(0.25); };
  for (int root : {0, n - 1}) {
    Tensor<TestType> mine(split.count(comm.rank()), cols);
    for (Index i = 0; i < mine.rows(); ++i)
      for (Index c = 0; c < cols; ++c) mine(i, c) = value(split.begin(comm.rank()) + i, c);
    Tensor<TestType> all(comm.rank() == root ? split.total() : 0, cols);
    comm.gather_rows<TestType>(mine.ref(), split, comm.rank() == root ? all.ref() : MatrixRef<TestType>(), root);
    if (comm.rank() == root) {
      bool same = true;
      for (Index i = 0; i < split.total(); ++i)
        for (Index c = 0; c < cols; ++c) same = same && all(i, c) == value(i, c);
      CHECK(same);
    }
    Tensor<TestType> in_place(split.total(), cols);  // the root's own rows already in place
    for (Index i = 0; i < split.count(comm.rank()); ++i)
      for (Index c = 0; c < cols; ++c) in_place(split.begin(comm.rank()) + i, c) = value(split.begin(comm.rank()) + i, c);
    const MatrixRef<const TestType> own(in_place.data() + split.begin(comm.rank()) * cols, split.count(comm.rank()), cols);
    comm.gather_rows<TestType>(own, split, in_place.ref(), root);
    if (comm.rank() == root) {
      bool same = true;
      for (Index i = 0; i < split.total(); ++i)
        for (Index c = 0; c < cols; ++c) same = same && in_place(i, c) == value(i, c);
      CHECK(same);
    }
  }
}
