// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The single-process transport: one rank, collectives are copies; needs no MPI.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "sakura/dist/transport.hpp"

namespace sakura::dist {

class SelfTransport final : public Transport {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* name() const override { return "single process"; }
  Memory memory() const override { return Memory::Host; }

  void allgather_bytes(const void* mine, std::size_t n, void* all) override { copy(all, mine, n); }
  void broadcast_bytes(void*, std::size_t, int) override {}
  [[noreturn]] void abort(int code) override {
    std::fflush(nullptr);
    std::_Exit(code);
  }
  void allgather_rows(DType type, const void* mine, std::span<const Index> row_offsets, Index cols,
                      void* all) override {
    copy(all, mine, static_cast<std::size_t>(row_offsets[1] * cols) * dtype_size(type));
  }
  void gather_rows(DType type, const void* mine, std::span<const Index> row_offsets, Index cols, void* all,
                   int) override {
    allgather_rows(type, mine, row_offsets, cols, all);
  }
  /// The sum over one rank is the rank's own value: nothing to do.
  std::unique_ptr<SumSlot> plan_sum(DType, Index) override { return std::make_unique<Done>(); }

 private:
  struct Done final : SumSlot {
    void start(void*) override {}
    bool test() override { return true; }
    void wait() override {}
  };
  static void copy(void* dst, const void* src, std::size_t n) {
    if (n && dst != src) std::memmove(dst, src, n);
  }
};

}  // namespace sakura::dist
