// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// Replaces every global operator new and delete (plain, array, nothrow, aligned, sized) with a
// malloc/free pair that counts allocations while enabled; include in one source file per binary.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace sakura::test {

inline std::atomic<bool> count_allocations{false};
inline std::atomic<long> allocations{0};  ///< operator new calls while count_allocations is set

/// Counts the allocations made during its lifetime.
class CountedAllocations {
 public:
  CountedAllocations() {
    allocations = 0;
    count_allocations = true;
  }
  ~CountedAllocations() { count_allocations = false; }
  CountedAllocations(const CountedAllocations&) = delete;
  CountedAllocations& operator=(const CountedAllocations&) = delete;
  long count() const { return allocations.load(); }
};

namespace counting_new {
inline void* allocate(std::size_t n, std::size_t align) {
  if (count_allocations.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  if (align <= alignof(std::max_align_t)) return std::malloc(n);
  if (n > SIZE_MAX - align) return nullptr;
  return std::aligned_alloc(align, (n + align - 1) & ~(align - 1));  // a multiple of the alignment, as C11 asks
}
inline void* allocate_or_throw(std::size_t n, std::size_t align) {
  if (void* p = allocate(n, align)) return p;
  throw std::bad_alloc();
}
}  // namespace counting_new
}  // namespace sakura::test

// Every form, not only the plain one: a form left to the runtime (Catch2 and libstdc++ use the
// nothrow new) hands this file's free() memory from another allocator, which AddressSanitizer
// reports as alloc-dealloc-mismatch. GCC inlines these into library code and then sees free()
// on operator new's pointer (so the warning is off for the rest of the including file); here both
// sides are this file's malloc/free pair.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) { return sakura::test::counting_new::allocate_or_throw(n, 0); }
void* operator new[](std::size_t n) { return sakura::test::counting_new::allocate_or_throw(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
  return sakura::test::counting_new::allocate_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return sakura::test::counting_new::allocate_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return sakura::test::counting_new::allocate(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return sakura::test::counting_new::allocate(n, 0); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return sakura::test::counting_new::allocate(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return sakura::test::counting_new::allocate(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
