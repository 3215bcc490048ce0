// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Plain C++ descriptions of a model, its terms and its optimizer (SPEC §1, §2, §3, §6, §7).
/// config/json.hpp fills them from upstream's JSON; C++ users may fill them directly.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "sakura/losses/registry.hpp"
#include "sakura/nn/sequential.hpp"
#include "sakura/regularizers/registry.hpp"
#include "sakura/schedule/progressive.hpp"

namespace sakura {

/// A term type bound to its options: the runtime form of a compile-time term.
template <class Fn>
struct Bound {
  using fn = Fn;
  typename Fn::Options options{};
};
using LossVariant = detail::variant_of<Bound, LossTypes>::type;
using RegularizerVariant = detail::variant_of<Bound, RegularizerTypes>::type;

/// How gradients pass from a term back into its block's latent (SPEC §3).
enum class GradFlow { Normal, Reverse /* enable_GRL */, Neutralize /* enable_GNL: no gradient */ };

template <class Variant>
struct TermSpec {
  std::string name;  ///< the key in the config, e.g. "regression_MSE"
  Variant fn;
  Progressive schedule;
  GradFlow flow = GradFlow::Normal;
  std::string site;  ///< where its random draws are recorded, e.g. "signature.cd8.regularization.sw2"
};
using LossSpec = TermSpec<LossVariant>;
using RegularizerSpec = TermSpec<RegularizerVariant>;

/// A stack of hidden layers as upstream's FC modules describe it. `hidden_layers` unset is the
/// legacy shape of that module; `hidden_neurons` with one entry means "this many in every layer".
struct StackSpec {
  std::optional<int> hidden_layers;
  std::vector<Index> hidden_neurons;
  bool neurons_is_list = false;
  Activation output_activation = Activation::Identity;
  bool dropout_input = false, dropout_hidden = false;
  double dropout_input_p = 0.5, dropout_hidden_p = 0.5;

  /// Width of hidden layer i (0-based).
  Index neurons(std::size_t i) const {
    return neurons_is_list ? hidden_neurons.at(i) : (hidden_neurons.empty() ? 50 : hidden_neurons[0]);
  }
};

enum class HeadType { LinClassifier, FCClassifier, LinRegressor, FCRegressor, Identity };
enum class BlockKind { Main, Signature, Pheno };
enum class AttachTo { None, MainLat, SignatureLat, PhenoLat, AllLat, Multiple };

struct AttachRef {
  BlockKind kind = BlockKind::Main;
  std::string key;  ///< block name (empty for main)
  int index = -1;   ///< resolved by the Extractor (no name lookups while training)
};

/// A signature or phenotype block: its latent (own compressor or attached), head and terms.
struct BlockSpec {
  std::string name;
  BlockKind kind = BlockKind::Signature;
  Index lat_dim = 0, out_dim = 0;
  HeadType head = HeadType::LinRegressor;
  StackSpec head_stack;                 ///< FC heads: hidden layers; regressors: output activation
  std::optional<StackSpec> encoder;     ///< compressor shape (unset: Linear + CELU)
  AttachTo attach = AttachTo::None;
  std::vector<AttachRef> attach_keys;   ///< SignatureLat / PhenoLat: one; Multiple: the list
  std::vector<LossSpec> losses;
  std::vector<RegularizerSpec> regularizations;
  // signature only: marker genes (the data layer builds the target from them)
  std::vector<std::string> genes;
  bool exclude_from_input = false;

  bool attached() const { return attach != AttachTo::None; }
};

struct ModelSpec {
  Index input_dim = 0;
  Index encoder_neurons = 50, decoder_neurons = 50, latent_dim = 2;
  std::optional<StackSpec> pre_encoder;  ///< pre_encoder_config
  Index pre_encoder_out_dim = 0;         ///< 0: encoder_neurons
  std::optional<StackSpec> main_encoder; ///< main_latent.encoder_config
  std::optional<StackSpec> decoder;      ///< main_latent.decoder_config (output_activation defaults to relu)
  Activation decoder_output = Activation::Relu;
  std::vector<BlockSpec> signatures;     ///< config order
  std::vector<BlockSpec> phenos;         ///< config order
  /// Store the first pre-encoder weight [genes, hidden] instead of PyTorch's [hidden, genes]:
  /// the sparse-input products then stream whole rows. Invisible to parameter I/O (torch_at).
  bool first_layer_input_major = false;
};

struct OptimizerSpec {
  double lr = 1e-3, alpha = 0.99, weight_decay = 0.0, momentum = 0.0, eps = 1e-8;
  /// Frozen modules: {pre_encoder | main_latent_compressor | decoder} or {<group>, <block>}.
  std::vector<std::pair<std::string, std::string>> excludes;
};

/// Deliberate deviations from our fixes, to replay upstream numbers bit for bit.
struct UpstreamCompat {
  /// Upstream ignores SW2_num_projections and always draws 50 (SPEC §9); 0 honours the config.
  int sw2_fixed_projections = 0;
};

/// Everything the controller needs: model, terms, optimizer.
struct ExperimentSpec {
  ModelSpec model;
  std::vector<LossSpec> main_losses;
  std::vector<RegularizerSpec> main_regularizations;
  OptimizerSpec optimizer;
  std::string device = "cpu";
  std::uint64_t seed = 3407;
};

}  // namespace sakura
