// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The options of the controller's calls (which terms: Scope; how a training step runs:
/// StepOptions) and a term's schedule state: plain structs, so that the JSON loader fills them
/// without including the step.
#pragma once

#include <optional>
#include <string>

#include "sakura/controller/experiment_spec.hpp"
#include "sakura/controller/selection.hpp"
#include "sakura/error.hpp"

namespace sakura {

/// Which terms a call computes (train, loss, accumulate, eval) or whose weights it advances
/// (next_epoch): upstream's reconstruction / main-latent flags and its selected_pheno /
/// selected_signature. Defaults: every term of every block.
///
/// Example: the cd8 signature's terms only (`cd8` a Selection naming that block):
///   ctl.train(batch, {.scope = {.reconstruction = false, .main_regularization = false,
///                               .phenos = sakura::Selection::none(), .signatures = cd8}});
struct Scope {
  bool reconstruction = true;       ///< the main latent's losses (upstream: backward_reconstruction_loss)
  bool main_regularization = true;  ///< the main latent's regularizations
  /// The phenotype blocks and their terms: std::nullopt is every block (upstream's None),
  /// Selection::none() no block (upstream's backward_pheno_loss=False).
  std::optional<Selection> phenos = std::nullopt;
  std::optional<Selection> signatures = std::nullopt;  ///< the same for the signature blocks

  /// One group from upstream's pair of arguments (train_pheno + selected_pheno, ...): no block
  /// when `on` is false, else `selected` (std::nullopt: every block).
  static std::optional<Selection> group(bool on, const std::optional<Selection>& selected) {
    return on ? selected : std::optional<Selection>(Selection::none());
  }
};

/// How a training-mode call runs, whatever its scope: the whole options of a compile-time step
/// (train<Model, Policy>), whose scope is a type.
struct StepOptions {
  bool suppress_backward = false;  ///< compute the record only; change nothing
  DetachFrom detach = DetachFrom::None;  ///< upstream's detach + detach_from
  bool save_raw_loss = false;      ///< also fill the record's *_raw groups
};

/// The options of train(), loss() and accumulate(): which terms, and how the step runs.
struct TrainOptions {
  Scope scope = {};
  StepOptions step = {};
};

/// The options of eval(): which terms (upstream's forward_* flags and selections; here everything
/// by default, where upstream defaults every forward flag to False), and the raw record groups.
struct EvalOptions {
  Scope scope = {};
  bool save_raw_loss = false;  ///< also fill the record's *_raw groups
};

/// The two groups of a block's terms (upstream's "loss" and "regularization" keys).
enum class TermGroup { Loss, Regularization };

/// "loss" or "regularization", as configs and checkpoints spell the groups.
inline const char* term_group_name(TermGroup g) { return g == TermGroup::Loss ? "loss" : "regularization"; }
/// The group a config or checkpoint names; throws naming `where` for anything else.
inline TermGroup term_group(const std::string& name, const std::string& where) {
  if (name == "loss") return TermGroup::Loss;
  if (name == "regularization") return TermGroup::Regularization;
  detail::fail(where, ": term group must be loss or regularization, not '", name, "'");
}

/// Current weight and epoch counter of one term (SPEC §4).
struct TermState {
  double weight = 1.0;
  int epoch = 0;
};

}  // namespace sakura
