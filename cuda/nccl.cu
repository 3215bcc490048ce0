// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// sakura::nccl: dist::Comm's NCCL transport (include/sakura/dist/nccl.hpp). Sums: grouped
/// ncclSend/ncclRecv exchange the chunks (a reduce-scatter that moves bytes only), one kernel adds
/// each rank's N copies in rank order, grouped in-place ncclBroadcast gathers them back; NCCL's
/// own reductions (whose order is NCCL's) are never used.
#include <nccl.h>

#include <cstdlib>
#include <sstream>
#include <string>
#include <utility>

#include "common.cuh"
#include "sakura/dist/nccl.hpp"

namespace sakura::dist {
namespace {

void check_nccl(ncclResult_t r, const char* call, const char* file, int line) {
  if (r == ncclSuccess) return;
  std::ostringstream os;
  os << "NCCL error in " << call << " at " << file << ':' << line << ": " << ncclGetErrorString(r)
     << " (NCCL_DEBUG=WARN in the environment prints NCCL's own diagnosis)";
  throw Error(os.str());
}
#define SAKURA_NCCL_CHECK(call) check_nccl((call), #call, __FILE__, __LINE__)

ncclDataType_t nccl_type(DType d) { return d == DType::F32 ? ncclFloat32 : ncclFloat64; }

template <class T>
__global__ void sum_in_rank_order_kernel(const T* __restrict__ parts, int ranks, Index n, T* __restrict__ out) {
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += Index(gridDim.x) * blockDim.x) {
    T s = parts[i];
    for (int r = 1; r < ranks; ++r) s += parts[Index(r) * n + i];  // rank order, as detail::sum_in_rank_order
    out[i] = s;
  }
}

/// The NCCL communicator and the stream its exchanges run on, shared by the transport and its slots.
struct NcclShared {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int rank = 0, size = 1;
  NcclShared() = default;
  NcclShared(const NcclShared&) = delete;
  NcclShared& operator=(const NcclShared&) = delete;
  ~NcclShared() {
    if (comm) (void)ncclCommDestroy(comm);
    if (stream) (void)cudaStreamDestroy(stream);
  }
  /// The exchange stream waits for the library stream's work queued so far (through `ready`).
  void after_library(cudaEvent_t ready) const {
    SAKURA_CUDA_CHECK(cudaEventRecord(ready, cuda::impl::stream()));
    SAKURA_CUDA_CHECK(cudaStreamWaitEvent(stream, ready, 0));
  }
  /// Throws NCCL's asynchronous error (a peer failed), if any.
  void check_async() const {
    ncclResult_t r = ncclSuccess;
    SAKURA_NCCL_CHECK(ncclCommGetAsyncError(comm, &r));
    SAKURA_NCCL_CHECK(r);
  }
};

struct Event {
  cudaEvent_t e = nullptr;
  Event() { SAKURA_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming)); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() { (void)cudaEventDestroy(e); }
};

char* at(void* p, Index elems, DType t) { return static_cast<char*>(p) + elems * Index(dtype_size(t)); }

class NcclSum final : public SumSlot {
 public:
  NcclSum(std::shared_ptr<NcclShared> nccl, DType type, Index n) : nccl_(std::move(nccl)), type_(type), n_(n) {
    mine_ = balanced_range(n, nccl_->size, nccl_->rank).second;
    scratch_ = cuda::malloc_device(static_cast<std::size_t>(nccl_->size * mine_) * dtype_size(type));
  }
  NcclSum(const NcclSum&) = delete;
  NcclSum& operator=(const NcclSum&) = delete;
  /// Never blocks: a sum still running (a peer failed; the job is about to abort) keeps its scratch.
  ~NcclSum() override {
    if (!in_flight_ || cudaEventQuery(done_.e) == cudaSuccess) cuda::free_device(scratch_);
  }

  void start(void* data) override {
    detail::require(!in_flight_, "GradientSum: a bucket started again before wait()");
    const NcclShared& s = *nccl_;
    s.after_library(ready_.e);
    const ncclDataType_t t = nccl_type(type_);
    SAKURA_NCCL_CHECK(ncclGroupStart());
    for (int r = 0; r < s.size; ++r) {
      const auto [begin, count] = balanced_range(n_, s.size, r);
      if (count > 0) SAKURA_NCCL_CHECK(ncclSend(at(data, begin, type_), size_t(count), t, r, s.comm, s.stream));
      if (mine_ > 0) SAKURA_NCCL_CHECK(ncclRecv(at(scratch_, r * mine_, type_), size_t(mine_), t, r, s.comm, s.stream));
    }
    SAKURA_NCCL_CHECK(ncclGroupEnd());
    if (mine_ > 0) {
      char* own = at(data, balanced_range(n_, s.size, s.rank).first, type_);
      const unsigned grid = cuda::impl::grid_for(mine_);
      if (type_ == DType::F32)
        sum_in_rank_order_kernel<float><<<grid, cuda::impl::kThreads, 0, s.stream>>>(
            static_cast<const float*>(scratch_), s.size, mine_, reinterpret_cast<float*>(own));
      else
        sum_in_rank_order_kernel<double><<<grid, cuda::impl::kThreads, 0, s.stream>>>(
            static_cast<const double*>(scratch_), s.size, mine_, reinterpret_cast<double*>(own));
      SAKURA_CUDA_CHECK(cudaGetLastError());
    }
    SAKURA_NCCL_CHECK(ncclGroupStart());
    for (int r = 0; r < s.size; ++r) {
      const auto [begin, count] = balanced_range(n_, s.size, r);
      if (count > 0)
        SAKURA_NCCL_CHECK(ncclBroadcast(at(data, begin, type_), at(data, begin, type_), size_t(count), t, r, s.comm,
                                        s.stream));
    }
    SAKURA_NCCL_CHECK(ncclGroupEnd());
    SAKURA_CUDA_CHECK(cudaEventRecord(done_.e, s.stream));
    in_flight_ = true;
  }
  bool test() override {
    if (!in_flight_) return true;
    const cudaError_t e = cudaEventQuery(done_.e);
    if (e == cudaErrorNotReady) {
      (void)cudaGetLastError();
      nccl_->check_async();
      return false;
    }
    SAKURA_CUDA_CHECK(e);
    return true;
  }
  void wait() override {
    if (!in_flight_) return;
    SAKURA_CUDA_CHECK(cudaStreamWaitEvent(cuda::impl::stream(), done_.e, 0));
    in_flight_ = false;
  }

 private:
  std::shared_ptr<NcclShared> nccl_;
  DType type_;
  Index n_, mine_ = 0;
  void* scratch_ = nullptr;
  Event ready_, done_;
  bool in_flight_ = false;
};

class NcclTransport final : public Transport {
 public:
  NcclTransport(Comm host, int device)
      : host_(std::move(host)), device_(select(device)), nccl_(std::make_shared<NcclShared>()) {
    nccl_->rank = host_.rank();
    nccl_->size = host_.size();
    ncclUniqueId id{};
    if (host_.rank() == 0) SAKURA_NCCL_CHECK(ncclGetUniqueId(&id));
    host_.broadcast(std::as_writable_bytes(std::span<ncclUniqueId>(&id, 1)), 0);
    SAKURA_NCCL_CHECK(ncclCommInitRank(&nccl_->comm, nccl_->size, id, nccl_->rank));
    SAKURA_CUDA_CHECK(cudaStreamCreateWithFlags(&nccl_->stream, cudaStreamNonBlocking));
  }

  int rank() const override { return nccl_->rank; }
  int size() const override { return nccl_->size; }
  const char* name() const override { return "NCCL"; }
  Memory memory() const override { return Memory::Device; }

  void allgather_bytes(const void* mine, std::size_t n, void* all) override {
    host_.transport().allgather_bytes(mine, n, all);
  }
  void broadcast_bytes(void* data, std::size_t n, int root) override {
    host_.transport().broadcast_bytes(data, n, root);
  }
  [[noreturn]] void abort(int code) override {
    (void)ncclCommAbort(nccl_->comm);  // frees NCCL's kernels waiting for this rank on the peers' side
    nccl_->comm = nullptr;
    host_.transport().abort(code);
    std::_Exit(code);  // not reached; GCC does not carry [[noreturn]] through a virtual call
  }
  void allgather_rows(DType type, const void* mine, std::span<const Index> row_offsets, Index cols,
                      void* all) override {
    const NcclShared& s = *nccl_;
    s.after_library(ready_.e);
    SAKURA_NCCL_CHECK(ncclGroupStart());
    for (int r = 0; r < s.size; ++r) {
      const Index count = (row_offsets[std::size_t(r) + 1] - row_offsets[std::size_t(r)]) * cols;
      if (count == 0) continue;
      char* dst = at(all, row_offsets[std::size_t(r)] * cols, type);
      const void* src = r == s.rank ? mine : dst;
      SAKURA_NCCL_CHECK(ncclBroadcast(src, dst, size_t(count), nccl_type(type), r, s.comm, s.stream));
    }
    SAKURA_NCCL_CHECK(ncclGroupEnd());
    SAKURA_CUDA_CHECK(cudaEventRecord(done_.e, s.stream));
    SAKURA_CUDA_CHECK(cudaStreamWaitEvent(cuda::impl::stream(), done_.e, 0));
  }
  std::unique_ptr<SumSlot> plan_sum(DType type, Index n) override {
    return std::make_unique<NcclSum>(nccl_, type, n);
  }

 private:
  /// Before any CUDA object of ours is made: events and streams belong to the current device.
  static int select(int device) {
    if (device >= 0) SAKURA_CUDA_CHECK(cudaSetDevice(device));
    int current = 0;
    SAKURA_CUDA_CHECK(cudaGetDevice(&current));
    return current;
  }
  Comm host_;
  int device_;
  std::shared_ptr<NcclShared> nccl_;
  Event ready_, done_;  // allgather_rows' ordering with the library stream
};

}  // namespace

Comm nccl_comm(const Comm& host, int device) {
  detail::require(host.memory() == Memory::Host, "dist::nccl_comm: the host communicator must use host memory, not ",
                  host.name());
  return Comm(std::make_shared<NcclTransport>(host, device));
}

}  // namespace sakura::dist
