// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// What every example does with its cells: prepare them for training (the CD8 signature target
// included) and visit them in random mini-batches, through the library's Loader and BatchSampler.
#pragma once

#include <sakura/data/loader.hpp>
#include <sakura/data/sampler.hpp>

#include <numeric>
#include <utility>

namespace examples {

namespace sd = sakura::data;

/// CD8A and CD8B: high in the CD8 T cells; the examples' signature head predicts them.
inline const std::vector<std::string> kCd8{"CD8A", "CD8B"};

/// A data set prepared for training, with the "cd8" signature target (its two genes stay input genes).
inline sd::TrainingData<float> with_cd8_target(sakura::data::Dataset<float> cells) {
  return sd::prepare_training_data(std::move(cells), {{.name = "cd8", .genes = kCd8}}, {});
}

/// Every cell once per epoch, in random batches of `size` (the last one smaller).
class Batches {
 public:
  Batches(const sd::TrainingData<float>& data, sakura::Index size, std::uint64_t seed)
      : loader_(data), batch_(loader_.make_batch(size)), sampler_(all(data.n_cells()), size, seed) {}

  /// Calls step(batch) for each batch of one epoch, the batch filled in place (no allocation).
  template <class Step>
  void epoch(Step&& step) {
    for (sampler_.begin_epoch(); !sampler_.exhausted();) {
      loader_.fill(sampler_.take(), batch_);
      step(batch_);
    }
  }
  sakura::Index per_epoch() const { return sampler_.batches(); }

 private:
  static std::vector<sakura::Index> all(sakura::Index n) {
    std::vector<sakura::Index> rows(static_cast<std::size_t>(n));
    std::iota(rows.begin(), rows.end(), 0);
    return rows;
  }
  sd::Loader<float> loader_;
  sakura::Batch<float> batch_;
  sd::BatchSampler sampler_;
};

}  // namespace examples
