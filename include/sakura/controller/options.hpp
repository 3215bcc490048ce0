// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The options of the controller's calls (train, eval, the compile-time step) and a term's
/// schedule state: plain structs, so that the JSON loader fills them without including the step.
#pragma once

#include "sakura/controller/experiment_spec.hpp"
#include "sakura/controller/selection.hpp"
#include "sakura/error.hpp"

namespace sakura {

/// The flags of upstream's train(); defaults compute and back-propagate everything.
struct TrainOptions {
  bool reconstruction = true;                     ///< backward_reconstruction_loss
  bool main_regularization = true;                ///< backward_main_latent_regularization
  bool pheno = true;                              ///< backward_pheno_loss
  const Selection* selected_pheno = nullptr;      ///< nullptr: every phenotype, every term
  bool signature = true;                          ///< backward_signature_loss
  const Selection* selected_signature = nullptr;  ///< nullptr: every signature, every term
  bool suppress_backward = false;                 ///< compute the record only; change nothing
  DetachFrom detach = DetachFrom::None;           ///< detach + detach_from
  bool save_raw_loss = false;                     ///< fill the *_raw groups
};

/// The flags of upstream's eval(). Upstream defaults every forward flag to False; here they
/// default to true so that eval(batch) evaluates everything.
struct EvalOptions {
  bool reconstruction = true;  ///< forward_reconstruction
  bool main_regularization = true;  ///< forward_main_latent
  bool pheno = true;
  const Selection* selected_pheno = nullptr;
  bool signature = true;
  const Selection* selected_signature = nullptr;
  bool save_raw_loss = false;
};

/// The flags a compile-time step keeps at runtime (its selection is a type).
struct StepOptions {
  bool suppress_backward = false;
  DetachFrom detach = DetachFrom::None;
  bool save_raw_loss = false;
};

/// Which weight schedules next_epoch() advances (upstream's prog_main, prog_pheno, prog_signature
/// and their selections); defaults advance every term.
struct EpochOptions {
  bool main = true;                               ///< prog_main: the main latent's losses and regularizations
  bool pheno = true;                              ///< prog_pheno
  const Selection* selected_pheno = nullptr;      ///< nullptr: every phenotype, every term
  bool signature = true;                          ///< prog_signature
  const Selection* selected_signature = nullptr;  ///< nullptr: every signature, every term
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
