// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// What a latent regularizer is (SPEC §3): like a loss term, but it reads one latent block and
/// may draw random arrays (prior samples, projections) through a DrawSource.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

#include "sakura/autograd/tape.hpp"
#include "sakura/detail/fields.hpp"
#include "sakura/tensor/rng.hpp"

namespace sakura {

/// Serves random arrays from the injected queue when it has any, else from the generator. Draws
/// are made on the host (the same counter-based stream for every device) and staged to the tape.
struct DrawSource {
  Rng* rng = nullptr;
  DrawQueue* queue = nullptr;

  /// A rows x cols constant on the tape, filled by gen(MatrixRef<T>, Rng&) unless injected.
  template <class T, class Dev, class Gen>
  Var draw(Tape<T, Dev>& tape, const std::string& site, DrawKind kind, Index rows, Index cols, Gen&& gen) {
    return tape.host_filled(rows, cols, [&](MatrixRef<T> m) {
      if (queue && !queue->empty())
        queue->pop_into(site, kind, m);
      else
        gen(m, *rng);
    });
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
