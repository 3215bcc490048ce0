// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// StepGraphs: CUDA graphs of a Controller<T, Cuda>'s steps. Each distinct step (selection, batch
/// shape and layout, set of stepped parameters, input kind) runs eagerly the first time (it sizes
/// the arenas and creates optimizer state), is captured the second, and afterwards re-runs only its
/// host logic (staging fills, bookkeeping; Ops launch nothing in a dry run) and replays the graph.
/// Weights, the learning rate and random draws reach the graph through device or pinned buffers.
#pragma once

#include <cstdint>
#include <deque>
#include <tuple>

#include "sakura/backend/cuda/ops.hpp"
#include "sakura/controller/selection.hpp"
#include "sakura/nn/model_spec.hpp"

namespace sakura {

/// What makes two steps the same graph. The selections are compared by content: a call's
/// options hold them by value, so one address may hold different selections over time.
struct StepGraphKey {
  const Selection* phenos;
  const Selection* signatures;
  bool recon, main_reg, save_raw;
  DetachFrom detach;
  Index cells;
  std::uint64_t layout, has_grad_generation;
  int input;  ///< 0 dense host, 1 sparse host (densified), 2 device rows: the first kernels differ
  bool operator==(const StepGraphKey& o) const {
    return *phenos == *o.phenos && *signatures == *o.signatures &&
           std::tie(recon, main_reg, save_raw, detach, cells, layout, has_grad_generation, input) ==
               std::tie(o.recon, o.main_reg, o.save_raw, o.detach, o.cells, o.layout, o.has_grad_generation, o.input);
  }
};

/// Dev = Cpu holds nothing (a CPU step has no graphs); only Dev = Cuda calls into the GPU library.
template <class Dev>
class StepGraphs {
 public:
  StepGraphs() = default;
  StepGraphs(const StepGraphs&) = delete;
  StepGraphs& operator=(const StepGraphs&) = delete;
  ~StepGraphs() {
    if constexpr (is_cuda_v<Dev>)
      for (auto& g : graphs_) cuda::destroy_graph(g.exec);
  }

  /// One step. `guarded(f)` runs f and undoes the random stream on an exception; `compute` is the
  /// forward and terms, `update` the backward and optimizer step.
  template <class Guarded, class Compute, class Update>
  void run(const StepGraphKey& key, Guarded&& guarded, Compute&& compute, Update&& update) {
    static_assert(is_cuda_v<Dev>, "CUDA graphs need Controller<T, Cuda>");
    Entry* entry = nullptr;
    for (auto& g : graphs_)
      if (g.key == key) entry = &g;
    if (!entry) {  // first occurrence: eager; the entry keeps its own copies of the selections
      Entry& e = graphs_.emplace_back(Entry{*key.phenos, *key.signatures, key, nullptr});
      e.key.phenos = &e.phenos;
      e.key.signatures = &e.signatures;
      guarded(compute);
      update();
    } else if (!entry->exec) {  // second: capture, then launch
      guarded([&] {
        cuda::begin_capture();
        try {
          compute();
          update();
        } catch (...) {
          cuda::destroy_graph(cuda::end_capture());
          throw;
        }
        entry->exec = cuda::end_capture();
      });
      cuda::launch_graph(entry->exec);
    } else {  // replay
      cuda::dry_run() = true;
      try {
        guarded(compute);
        update();
      } catch (...) {
        cuda::dry_run() = false;
        throw;
      }
      cuda::dry_run() = false;
      cuda::launch_graph(entry->exec);
    }
  }

 private:
  struct Entry {
    Selection phenos, signatures;  ///< what key points to
    StepGraphKey key;
    void* exec;
  };
  std::deque<Entry> graphs_;  // a deque: entries never move, so their keys' pointers stay valid
};

}  // namespace sakura
