// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// What a latent regularizer is (SPEC §3): like a loss term, but it reads one latent block and
/// may draw random arrays (prior samples, projections) through a DrawSource.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sakura/autograd/tape.hpp"
#include "sakura/detail/fields.hpp"
#include "sakura/tensor/rng.hpp"

namespace sakura {

/// Serves random arrays from the injected queue when it has any (staged from the host), else
/// draws them where the tape lives from the generator's reserved counters (tensor/draw.hpp).
struct DrawSource {
  Rng* rng = nullptr;
  DrawQueue* queue = nullptr;

  /// The array `spec` as a constant on the tape. `labels` (host, one per row) supervise a
  /// mixture or pick a uniform prior's `offsets` row (n_labels rows of spec.cols).
  template <class T, class Dev>
  Var draw(Tape<T, Dev>& tape, const std::string& site, DrawKind kind, DrawSpec spec,
           const std::int64_t* labels = nullptr, const std::vector<std::vector<double>>* offsets = nullptr) {
    if (queue && !queue->empty())
      return tape.host_filled(spec.rows, spec.cols, [&](MatrixRef<T> m) { queue->pop_into(site, kind, m); });
    const bool uses_labels = spec.form == DrawSpec::GaussianMixture || offsets;
    const std::int64_t* lab = uses_labels && labels ? tape.labels(labels, spec.rows) : nullptr;
    const T* off = nullptr;
    if (offsets) {
      Var o = tape.host_filled(static_cast<Index>(offsets->size()), spec.cols, [&](MatrixRef<T> m) {
        for (Index r = 0; r < m.rows; ++r)
          for (Index c = 0; c < m.cols; ++c) m(r, c) = static_cast<T>((*offsets)[r][c]);
      });
      off = tape.data(o).data;
    }
    rng->reserve(spec, spec.form == DrawSpec::GaussianMixture && !lab);
    return tape.drawn(spec, lab, off);
  }
};

/// What a regularizer knows when a config is loaded: the latent width and whether the block
/// supplies labels (only phenotypes do).
struct RegContext {
  Index latent_dim = 0;
  bool has_labels = false;
};

template <class T, class Dev = Cpu>
struct RegArgs {
  Tape<T, Dev>& tape;
  Var z;
  const std::int64_t* labels = nullptr;  // the phenotype's class indices (host memory), if any
  DrawSource& draws;
  const std::string& site;  // "main_latent.regularization.<key>", recorded with each draw
};

/// Whether a regularizer reads the block's class labels. Declared by a term as
/// `static constexpr LabelUse label_use`; absent means None.
enum class LabelUse { None, Optional, Required };
template <class R>
constexpr LabelUse label_use_of() {
  if constexpr (requires { R::label_use; }) return R::label_use;
  else return LabelUse::None;
}

template <class R, class T = float>
concept RegularizerFn = requires(RegArgs<T>& a, const typename R::Options& o) {
  { R::names } -> std::convertible_to<decltype(R::names)>;
  { R::fields };
  { R::apply(a, o) } -> std::same_as<Var>;
};

}  // namespace sakura
