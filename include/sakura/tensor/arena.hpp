// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Arena: a bump allocator for one training step's activations and gradients. reset() frees
/// everything at once; after a step that needed several chunks, reset() merges them into one
/// of the peak size, so every later step of the same shape allocates nothing.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace sakura {

/// Alloc provides static allocate(bytes) / deallocate(p): host memory here, device memory for a
/// GPU tape (Ops<T, Cuda>::Alloc). The arena only does pointer arithmetic on its chunks.
template <class Alloc>
class BasicArena {
 public:
  BasicArena() = default;
  BasicArena(const BasicArena&) = delete;
  BasicArena& operator=(const BasicArena&) = delete;
  ~BasicArena() {
    for (auto& c : chunks_) Alloc::deallocate(c.base);
  }

  template <class U>
  U* alloc(std::size_t count) {
    return static_cast<U*>(alloc_bytes(count * sizeof(U)));
  }

  void* alloc_bytes(std::size_t bytes) {
    bytes = (bytes + 63) & ~std::size_t(63);  // 64-byte alignment for vector loads
    if (chunks_.empty() || chunks_[cur_].used + bytes > chunks_[cur_].cap) next_chunk(bytes);
    Chunk& c = chunks_[cur_];
    void* p = c.base + c.used;
    c.used += bytes;
    in_use_ += bytes;
    if (in_use_ > peak_) peak_ = in_use_;
    return p;
  }

  /// Releases every allocation; merges chunks into one sized for the peak seen so far.
  void reset() {
    if (chunks_.size() > 1) {
      std::size_t want = peak_ + peak_ / 4;
      for (auto& c : chunks_) Alloc::deallocate(c.base);
      chunks_.clear();
      chunks_.push_back(make_chunk(want));
    }
    for (auto& c : chunks_) c.used = 0;
    cur_ = 0;
    in_use_ = 0;
  }

  std::size_t capacity() const {
    std::size_t s = 0;
    for (auto& c : chunks_) s += c.cap;
    return s;
  }
  std::size_t chunk_count() const { return chunks_.size(); }

 private:
  struct Chunk {
    char* base = nullptr;
    std::size_t cap = 0, used = 0;
  };
  static Chunk make_chunk(std::size_t cap) {
    cap = (cap + 63) & ~std::size_t(63);
    return Chunk{static_cast<char*>(Alloc::allocate(cap)), cap, 0};
  }
  void next_chunk(std::size_t bytes) {
    // a later chunk with room (after a reset with several chunks this cannot happen)
    while (cur_ + 1 < chunks_.size()) {
      ++cur_;
      if (chunks_[cur_].cap - chunks_[cur_].used >= bytes) return;
    }
    std::size_t cap = chunks_.empty() ? std::size_t(1) << 20 : chunks_.back().cap * 2;
    if (cap < bytes) cap = bytes;
    chunks_.push_back(make_chunk(cap));
    cur_ = chunks_.size() - 1;
  }
  std::vector<Chunk> chunks_;
  std::size_t cur_ = 0, in_use_ = 0, peak_ = 0;
};

/// 64-byte aligned host memory.
struct HostAlloc {
  static void* allocate(std::size_t bytes) {
    void* p = std::aligned_alloc(64, (bytes + 63) & ~std::size_t(63));
    if (!p) throw std::bad_alloc();
    return p;
  }
  static void deallocate(void* p) { std::free(p); }
};
using Arena = BasicArena<HostAlloc>;

}  // namespace sakura
