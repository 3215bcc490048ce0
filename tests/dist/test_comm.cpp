// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// dist::Comm on one process (no MPI): splits, digests, every collective as the identity or a copy,
// bucketed sums, errors, and abort's message and exit status.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "dist/reference.hpp"
#include "sakura/dist/gradient_sum.hpp"

using namespace sakura;
using dist::Comm;

TEST_CASE("balanced_range and RowSplit cover n items in order, the first n % parts one longer") {
  CHECK(dist::balanced_range(10, 3, 0) == std::pair<Index, Index>{0, 4});
  CHECK(dist::balanced_range(10, 3, 1) == std::pair<Index, Index>{4, 3});
  CHECK(dist::balanced_range(10, 3, 2) == std::pair<Index, Index>{7, 3});
  CHECK(dist::balanced_range(2, 3, 2) == std::pair<Index, Index>{2, 0});
  for (Index n : {0, 1, 7, 100, 401})
    for (int parts : {1, 2, 3, 8}) {
      Index next = 0;
      for (int i = 0; i < parts; ++i) {
        const auto [begin, count] = dist::balanced_range(n, parts, i);
        CHECK(begin == next);
        CHECK((count == n / parts || count == n / parts + 1));
        next = begin + count;
      }
      CHECK(next == n);
    }
  const auto split = dist::RowSplit::balanced(7, 3);
  CHECK(split.ranks() == 3);
  CHECK(split.total() == 7);
  CHECK(split.count(0) == 3);
  CHECK(split.begin(2) == 5);
  const dist::RowSplit explicit_split({2, 0, 5});
  CHECK(explicit_split.begin(2) == 2);
  CHECK(explicit_split.count(1) == 0);
  CHECK_THROWS_WITH(dist::RowSplit({3, -1}), Catch::Contains("rank 1 has a negative row count -1"));
}

TEST_CASE("hash_bytes tells apart one flipped bit, a different length and a moved byte") {
  std::vector<std::byte> a(1000);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::byte(i * 7 % 251);
  const auto h = dist::hash_bytes(a);
  CHECK(h == dist::hash_bytes(a));
  for (std::size_t at : {0, 7, 8, 500, 999}) {
    auto b = a;
    b[at] ^= std::byte{1};
    CHECK(dist::hash_bytes(b) != h);
  }
  CHECK(dist::hash_bytes(std::span(a).first(999)) != h);
  auto c = a;
  c.push_back(std::byte{0});  // a trailing zero changes the length, hence the digest
  CHECK(dist::hash_bytes(c) != h);
  auto d = a;
  std::swap(d[3], d[4]);
  CHECK(dist::hash_bytes(d) != h);
  CHECK(dist::hash_bytes({}) != dist::hash_bytes(std::span(a).first(1)));
}

TEST_CASE("the default Comm is one process whose collectives are identities and copies") {
  const Comm comm;
  CHECK(comm.rank() == 0);
  CHECK(comm.size() == 1);
  CHECK(std::string(comm.name()) == "single process");
  CHECK(comm.memory() == dist::Memory::Host);

  std::vector<double> v = {1.5, -2.25, 1e300};
  comm.allreduce_sum(std::span(v));
  CHECK(v == std::vector<double>{1.5, -2.25, 1e300});
  CHECK(comm.allreduce_sum(3.5f) == 3.5f);

  const std::vector<int> mine = {4, 5, 6};
  std::vector<int> all(3);
  comm.allgather(std::span<const int>(mine), std::span<int>(all));
  CHECK(all == mine);
  std::vector<int> wrong(4);
  CHECK_THROWS_WITH(comm.allgather(std::span<const int>(mine), std::span<int>(wrong)),
                    Catch::Contains("4 slots for 1 ranks of 3 values"));

  std::string text = "config";
  comm.broadcast(text);
  CHECK(text == "config");
  CHECK_NOTHROW(comm.check_same(text, "the config"));
  CHECK_THROWS_WITH(comm.broadcast(text, 1), Catch::Contains("root 1 outside [0, 1)"));

  Tensor<float> rows(3, 2, {1, 2, 3, 4, 5, 6}), gathered(3, 2);
  comm.allgather_rows<float>(rows.ref(), dist::RowSplit::balanced(3, 1), gathered.ref());
  CHECK(test::same_bits(rows.data(), gathered.data(), 6));
  comm.allgather_rows<float>(gathered.ref(), dist::RowSplit::balanced(3, 1), gathered.ref());  // in place
  CHECK(test::same_bits(rows.data(), gathered.data(), 6));
  CHECK_THROWS_WITH(comm.allgather_rows<float>(rows.ref(), dist::RowSplit::balanced(3, 2), gathered.ref()),
                    Catch::Contains("a split over 2 ranks on a communicator of 1"));
  CHECK_THROWS_WITH(comm.allgather_rows<float>(rows.ref(), dist::RowSplit::balanced(4, 1), gathered.ref()),
                    Catch::Contains("the split wants 4 of 4 rows"));

  auto g = test::rank_values<float>(1, 0, 1000);
  const auto before = g;
  comm.sum(std::span(g));
  CHECK(test::same_bits(g, before));
}

TEST_CASE("GradientSum lays out buckets back to back and checks its use") {
  const Comm comm;
  CHECK(dist::GradientSum<float>::even_buckets(10, 4) == std::vector<Index>{4, 3, 3});
  CHECK(dist::GradientSum<float>::even_buckets(0, 4) == std::vector<Index>{0});
  CHECK(dist::GradientSum<float>::even_buckets(8, 8) == std::vector<Index>{8});
  dist::GradientSum<double> sum(comm, {5, 0, 7});
  CHECK(sum.buckets() == 3);
  CHECK(sum.offset(2) == 5);
  CHECK(sum.total() == 12);
  auto g = test::rank_values<double>(2, 0, 12);
  const auto before = g;
  sum.start(2, g.data());
  CHECK_THROWS_WITH(sum.start(2, g.data()), Catch::Contains("bucket 2 started again before wait()"));
  sum.progress();
  sum.wait_all();
  sum.run(g.data());
  CHECK(test::same_bits(g, before));
  CHECK_THROWS_WITH(sum.start(3, g.data()), Catch::Contains("bucket 3 outside [0, 3)"));
}

TEST_CASE("run_or_abort on one process lets the exception through, and abort writes the message and exits") {
  const Comm comm;
  CHECK(dist::run_or_abort(comm, [] { return 7; }) == 7);
  CHECK_THROWS_WITH(dist::run_or_abort(comm, []() -> int { throw Error("bad input x.json"); }),
                    Catch::Contains("bad input x.json"));

  int pipe_fd[2];
  REQUIRE(pipe(pipe_fd) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // child: stderr into the pipe, then abort
    dup2(pipe_fd[1], 2);
    comm.abort("sakura: config.json: line 3: bad key", 3);
  }
  close(pipe_fd[1]);
  std::string out;
  char buf[256];
  for (ssize_t k; (k = read(pipe_fd[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(k));
  close(pipe_fd[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 3);
  CHECK(out == "sakura: config.json: line 3: bad key\n");
}
