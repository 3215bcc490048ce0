// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// dist::Comm over NCCL, one GPU per rank under mpiexec: allgather_rows and the bucketed sums on
// GPU memory against the same serial rank-order references as the MPI test, to the bit (so the
// NCCL and MPI engines agree bitwise); host collectives go through the MPI host communicator.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "dist/reference.hpp"
#include "dist/world.hpp"
#include "sakura/backend/cuda/ops.hpp"
#include "sakura/dist/gradient_sum.hpp"
#include "sakura/dist/nccl.hpp"

using namespace sakura;
using dist::Comm;

namespace {

const Comm& host() { return test::world(); }
const Comm& gpus() {
  static const Comm comm = dist::nccl_comm(host(), host().rank() % std::max(1, cuda::device_count()));
  return comm;
}

/// A device copy of a host vector, downloaded back by get().
template <class T>
class DeviceVector {
 public:
  explicit DeviceVector(const std::vector<T>& h)
      : n_(h.size()), p_(static_cast<T*>(cuda::malloc_device(std::max<std::size_t>(n_, 1) * sizeof(T)))) {
    cuda::copy_h2d(p_, h.data(), n_ * sizeof(T));
    cuda::synchronize();
  }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  ~DeviceVector() { cuda::free_device(p_); }
  T* data() { return p_; }
  std::vector<T> get() const {
    std::vector<T> h(n_);
    cuda::copy_d2h(h.data(), p_, n_ * sizeof(T));  // after everything on the library stream
    return h;
  }

 private:
  std::size_t n_;
  T* p_;
};

}  // namespace

TEST_CASE("the NCCL communicator has the host's ranks and works on device memory") {
  CHECK(gpus().rank() == host().rank());
  CHECK(gpus().size() == host().size());
  CHECK(std::string(gpus().name()) == "NCCL");
  CHECK(gpus().memory() == dist::Memory::Device);
  CHECK(gpus().allreduce_sum(1.0) == double(host().size()));  // host collectives through MPI
  CHECK_NOTHROW(gpus().check_same(std::string("same config"), "the config"));
}

TEMPLATE_TEST_CASE("NCCL allgather_rows gathers uneven splits on the GPU", "", float, double) {
  const Comm& comm = gpus();
  const int n = comm.size();
  constexpr Index cols = 50;
  std::vector<Index> with_empty(static_cast<std::size_t>(n), 3);
  with_empty[std::size_t(n - 1)] = 0;
  for (const auto& split : {dist::RowSplit::balanced(7, n), dist::RowSplit::balanced(400, n), dist::RowSplit(with_empty)}) {
    const auto global = test::rank_values<TestType>(5, 99, split.total() * cols);
    const std::vector<TestType> own(global.begin() + split.begin(comm.rank()) * cols,
                                    global.begin() + (split.begin(comm.rank()) + split.count(comm.rank())) * cols);
    DeviceVector<TestType> mine(own), all(std::vector<TestType>(global.size(), TestType(-1)));
    comm.allgather_rows<TestType>(MatrixRef<const TestType>(mine.data(), split.count(comm.rank()), cols), split,
                                  MatrixRef<TestType>(all.data(), split.total(), cols));
    CHECK(test::same_bits(all.get(), global));
  }
}

TEMPLATE_TEST_CASE("NCCL sums are the rank-order sum to the bit, bucketed and overlapped", "", float, double) {
  const Comm& comm = gpus();
  const std::vector<Index> layout = {20000, 200, 1, 0, 4000, 2};
  Index total = 0;
  for (Index s : layout) total += s;
  const auto ref = test::serial_sum<TestType>(21, comm.size(), total);
  DeviceVector<TestType> g(test::rank_values<TestType>(21, comm.rank(), total));
  comm.sum(std::span<TestType>(g.data(), std::size_t(total)));
  CHECK(test::same_bits(g.get(), ref));
  for (const auto& buckets : {layout, dist::GradientSum<TestType>::even_buckets(total, 1000)}) {
    dist::GradientSum<TestType> sum(comm, buckets);
    for (int round = 0; round < 4; ++round) {
      DeviceVector<TestType> d(test::rank_values<TestType>(21, comm.rank(), total));
      for (Index b = sum.buckets() - 1; b >= 0; --b) {
        sum.start(b, d.data());
        sum.progress();
      }
      sum.wait_all();
      CHECK(test::same_bits(d.get(), ref));
    }
  }
}
