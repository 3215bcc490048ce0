// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The shape of a SAKURA model (SPEC §1, §2): layer stacks, latents, heads and attachments, as
/// the Extractor builds it; config/json.hpp and the builder fill it, the terms are added above.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sakura/tensor/tensor.hpp"

namespace sakura {

/// Output activations a config may ask for (SPEC §1).
enum class Activation { Identity, Relu, Softmax, Sigmoid };

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

/// A signature or phenotype block's shape: its latent (own compressor or attached) and head.
/// The experiment's BlockSpec adds its terms (controller/experiment_spec.hpp).
struct BlockShape {
  std::string name;
  BlockKind kind = BlockKind::Signature;
  Index lat_dim = 0, out_dim = 0;
  HeadType head = HeadType::LinRegressor;
  StackSpec head_stack;                 ///< FC heads: hidden layers; regressors: output activation
  std::optional<StackSpec> encoder;     ///< compressor shape (unset: Linear + CELU)
  AttachTo attach = AttachTo::None;
  std::vector<AttachRef> attach_keys;   ///< SignatureLat / PhenoLat: one; Multiple: the list
  // signature only: marker genes (the data layer builds the target from them)
  std::vector<std::string> genes;
  bool exclude_from_input = false;

  bool attached() const { return attach != AttachTo::None; }
};

/// Where a step cuts the graph before the main latent (upstream's detach / detach_from).
enum class DetachFrom { None, PreEncoder, Encoder };

/// The model's shape apart from its blocks (upstream's config keys in the comments).
struct ModelLayout {
  Index input_dim = 0;
  Index encoder_neurons = 50, decoder_neurons = 50, latent_dim = 2;
  std::optional<StackSpec> pre_encoder;  ///< pre_encoder_config
  Index pre_encoder_out_dim = 0;         ///< 0: encoder_neurons
  std::optional<StackSpec> main_encoder; ///< main_latent.encoder_config
  std::optional<StackSpec> decoder;      ///< main_latent.decoder_config (output_activation defaults to relu)
  Activation decoder_output = Activation::Relu;
  /// Store the first pre-encoder weight [genes, hidden] instead of PyTorch's [hidden, genes]:
  /// the sparse-input products then stream whole rows. Invisible to parameter I/O (torch_at).
  bool first_layer_input_major = false;
};

/// A model: its layout and its blocks in config order. Block is BlockShape for what nn/ builds
/// and BlockSpec (the shape with its terms) in an experiment.
template <class Block>
struct ModelOf : ModelLayout {
  std::vector<Block> signatures;  ///< config order
  std::vector<Block> phenos;      ///< config order
};
using ModelShape = ModelOf<BlockShape>;

/// The shape of a model whose blocks carry more (their terms).
template <class Block>
ModelShape shape_of(const ModelOf<Block>& m) {
  return ModelShape{static_cast<const ModelLayout&>(m), {m.signatures.begin(), m.signatures.end()},
                    {m.phenos.begin(), m.phenos.end()}};
}

}  // namespace sakura
