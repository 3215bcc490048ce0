// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// sakura::Experiment: the experiment written in C++ instead of JSON. It builds the same
/// ExperimentSpec as config::experiment_from_json (tests/config compares them field by field); terms
/// are types, options are named structs with upstream's defaults, mistakes throw at the call.
///
/// Example (the pbmc5k tutorial model):
///   auto cd8 = sakura::SignatureBlock("cd8", {.lat_dim = 50, .genes = {"CD8A", "CD8B"}})
///                  .head(sakura::HeadType::FCRegressor, {.width = 5})
///                  .attach_to_main()
///                  .loss<sakura::Mse>("regression_MSE");
///   sakura::ExperimentSpec spec =
///       sakura::Experiment({.genes = 10000, .encoder_neurons = 200, .decoder_neurons = 200, .latent_dim = 50})
///           .loss<sakura::Mse>("L2", {.schedule = {.start_epoch = 100}})
///           .regularizer<sakura::Sw2Uniform>("uniform", {.schedule = {.init_weight = 1e-4, .constant = 1.01,
///                                                                     .max_weight = 1.0},
///                                                        .options = {.low = -10, .high = 10}})
///           .signature(cd8)
///           .optimizer({.lr = 1e-3, .alpha = 0.9})
///           .build();
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sakura/config/json.hpp"
#include "sakura/config/spec.hpp"

namespace sakura {

namespace config::detail {
template <class Fn, class List>
struct listed;
template <class Fn, class... Ts>
struct listed<Fn, sakura::detail::TypeList<Ts...>> : std::bool_constant<(std::is_same_v<Fn, Ts> || ...)> {};
/// Where loss Fn may go (Reconstruction | Head); all slots for a non-loss, whose own assert then fires.
template <class Fn>
constexpr Slots slots_of() {
  if constexpr (listed<Fn, LossTypes>::value) return Fn::slots;
  else return Slot::Reconstruction | Slot::Head;
}
}  // namespace config::detail

/// The group of term type Fn (a loss in LossTypes or a regularizer in RegularizerTypes).
template <class Fn>
inline constexpr TermGroup group_of = config::detail::listed<Fn, LossTypes>::value ? TermGroup::Loss
                                                                                       : TermGroup::Regularization;

/// A term's settings. Example: {.schedule = {.init_weight = 0.0, .constant = 0.01, .start_epoch = 50,
/// .mode = Progressive::Mode::Increment, .max_weight = 1.0}, .options = {.low = -10, .high = 10}}.
template <class Fn>
struct TermOptions {
  Progressive schedule{};           ///< the weight per epoch (SPEC §4); default: 1.0 throughout
  typename Fn::Options options{};   ///< the term's own options, e.g. Sw2Uniform's low/high/projections
  GradFlow flow = GradFlow::Normal; ///< phenotype/signature terms: Reverse (enable_GRL), Neutralize (enable_GNL)
};

/// A stack of hidden layers (upstream's FC module); an unset field keeps the module's default.
struct Layers {
  int count = 0;                         ///< hidden_layers; 0: the module's default
  Index width = 0;                       ///< hidden_neurons, every layer; 0: the module's default
  std::vector<Index> widths{};           ///< or hidden_neurons per layer (not both)
  std::optional<Activation> output{};    ///< output_activation_function; unset: the module's default
  std::optional<double> dropout_input{}; ///< dropout probability on the input; unset: none
  std::optional<double> dropout_hidden{};///< dropout probability on hidden layers; unset: none
};

/// The main autoencoder: input genes and the widths of encoder, decoder and main latent.
struct MainShape {
  Index genes = 0;  ///< input genes (after any signature genes excluded from the input)
  Index encoder_neurons = 50, decoder_neurons = 50, latent_dim = 2;
};

/// An explicit pre-encoder (pre_encoder_config) and its output width (0: encoder_neurons).
struct PreEncoder {
  Layers layers{};
  Index out_dim = 0;
};

/// RMSProp (the only optimizer, as upstream): PyTorch's defaults.
struct RmsPropSettings {
  double lr = 1e-3, alpha = 0.99, weight_decay = 0.0, momentum = 0.0, eps = 1e-8;
};

/// A module the optimizer leaves as it is (optimizer.excludes).
enum class Frozen { PreEncoder, MainCompressor, Decoder, SignatureCompressor, SignatureHead, PhenoCompressor, PhenoHead };

struct SignatureShape {
  Index lat_dim = 0;
  Index out_dim = 0;               ///< 0: the number of genes
  std::vector<std::string> genes{};  ///< marker genes: the data layer builds the target from them
  bool exclude_from_input = false; ///< drop these genes from the model's input
};
struct PhenoShape {
  Index lat_dim = 0, out_dim = 0;  ///< latent width; classes (classifier) or values (regressor)
};

namespace config::detail {
using config::detail::kMaxLayers;
using config::detail::kMaxWidth;
using sakura::detail::fail;
using sakura::detail::require;

inline void check_width(Index w, const std::string& call, const char* what) {
  require(w >= 1 && w <= kMaxWidth, call, ": ", what, " must be in [1, ", kMaxWidth, "], got ", w,
          "; pass a positive layer width");
}

/// Layers -> StackSpec, as the JSON loader reads the same module (`dflt`: its output activation).
inline StackSpec stack(const Layers& l, Activation dflt, const std::string& call) {
  StackSpec s;
  require(l.count >= 0 && l.count <= kMaxLayers, call, ": count must be in [0, ", kMaxLayers, "], got ", l.count,
          " (0 keeps the module's default)");
  if (l.count > 0) s.hidden_layers = l.count;
  require(l.width == 0 || l.widths.empty(), call, ": set either width (every layer) or widths (per layer), not both");
  if (!l.widths.empty()) {
    s.neurons_is_list = true;
    for (Index w : l.widths) check_width(w, call, "every entry of widths");
    s.hidden_neurons = l.widths;
  } else if (l.width != 0) {
    check_width(l.width, call, "width");
    s.hidden_neurons = {l.width};
  }
  s.output_activation = l.output.value_or(dflt);
  auto dropout = [&](const std::optional<double>& p, bool& on, double& prob, const char* what) {
    if (!p) return;
    require(*p >= 0 && *p < 1, call, ": ", what, " must be in [0, 1), got ", *p, "; leave it unset for no dropout");
    on = true;
    prob = *p;
  };
  dropout(l.dropout_input, s.dropout_input, s.dropout_input_p, "dropout_input");
  dropout(l.dropout_hidden, s.dropout_hidden, s.dropout_hidden_p, "dropout_hidden");
  return s;
}

template <class Fn>
std::string call_name(const std::string& owner, const char* method, const std::string& name) {
  return owner + "." + method + "<" + std::string(Fn::names[0]) + ">(\"" + name + "\")";
}

/// Appends a loss term; `slot` is where it goes (Reconstruction on main, Head on blocks).
template <class Fn>
void add_loss(std::vector<LossSpec>& out, const std::string& call, const std::string& name, const TermOptions<Fn>& o,
              bool block_term) {
  static_assert(group_of<Fn> == TermGroup::Loss,
                "loss<Fn>: Fn is not a loss type (see losses/registry.hpp); regularizers go in regularizer<Fn>");
  require(!name.empty(), call, ": a term needs a name (its key in the loss record)");
  for (const auto& t : out) require(t.name != name, call, ": a loss named \"", name, "\" is already there; rename one");
  require(block_term || o.flow == GradFlow::Normal, call,
          ": gradient reversal/neutralisation applies to phenotype and signature terms only; drop .flow");
  if constexpr (requires { Fn::invalid(o.options); })
    if (const char* why = Fn::invalid(o.options)) fail(call, ": ", why);
  Configured<Fn> b;
  b.options = o.options;
  out.push_back(LossSpec{name, b, o.schedule, o.flow, ""});
}

template <class Fn>
void add_regularizer(std::vector<RegularizerSpec>& out, const std::string& call, const std::string& name,
                     const TermOptions<Fn>& o, const std::string& site_prefix, const RegContext& ctx, bool block_term) {
  static_assert(config::detail::listed<Fn, RegularizerTypes>::value,
                "regularizer<Fn>: Fn is not a regularizer type (see regularizers/registry.hpp); losses go in loss<Fn>");
  require(!name.empty(), call, ": a term needs a name (its key in the loss record)");
  for (const auto& t : out)
    require(t.name != name, call, ": a regularizer named \"", name, "\" is already there; rename one");
  require(block_term || o.flow == GradFlow::Normal, call,
          ": gradient reversal/neutralisation applies to phenotype and signature terms only; drop .flow");
  if constexpr (requires { Fn::invalid(o.options, ctx); })
    if (const char* why = Fn::invalid(o.options, ctx)) fail(call, ": ", why);
  Configured<Fn> b;
  b.options = o.options;
  out.push_back(RegularizerSpec{name, b, o.schedule, o.flow, site_prefix + "." + name});
}
}  // namespace config::detail

/// A signature or phenotype block under construction: head, attachment, own compressor, terms.
/// SignatureBlock and PhenoBlock below fix the kind; Experiment::signature/pheno take them.
template <class Self>
class BlockBuilder {
 public:
  /// The head on the block's latent (default: LinRegressor for signatures, LinClassifier for
  /// phenotypes); `layers` shapes FC heads and a regressor's output activation.
  Self& head(HeadType type, const Layers& layers = {}) {
    spec_.head = type;
    spec_.head_stack = config::detail::stack(layers, Activation::Identity, where() + ".head");
    return self();
  }
  /// The block's own compressor from the pre-encoder output (default: one Linear layer + CELU).
  Self& encoder(const Layers& layers) {
    spec_.encoder = config::detail::stack(layers, Activation::Identity, where() + ".encoder");
    return self();
  }
  /// The head reads another latent instead of the block's own compressor.
  Self& attach_to_main() { return attach(AttachTo::MainLat, {}); }
  Self& attach_to_all() { return attach(AttachTo::AllLat, {}); }
  Self& attach_to_signature(const std::string& name) { return attach(AttachTo::SignatureLat, {{BlockKind::Signature, name}}); }
  Self& attach_to_pheno(const std::string& name) { return attach(AttachTo::PhenoLat, {{BlockKind::Pheno, name}}); }
  /// Several latents, concatenated in order, e.g. {{BlockKind::Main, ""}, {BlockKind::Signature, "s_lin"}}.
  Self& attach_to_multiple(std::vector<AttachRef> refs) {
    detail::require(!refs.empty(), where(), ".attach_to_multiple: give at least one latent");
    for (const auto& r : refs)
      detail::require(r.kind == BlockKind::Main || !r.key.empty(), where(),
                      ".attach_to_multiple: a signature or phenotype reference needs the block's name");
    return attach(AttachTo::Multiple, std::move(refs));
  }

  /// A loss on the head's output (e.g. Mse on a signature, Nll on a phenotype).
  template <class Fn>
  Self& loss(const std::string& name, const TermOptions<Fn>& o = {}) {
    static_assert(config::detail::slots_of<Fn>().has(Slot::Head), "loss<Fn>: this loss applies to the reconstruction only");
    config::detail::add_loss(spec_.losses, config::detail::call_name<Fn>(where(), "loss", name), name, o, true);
    return self();
  }
  /// A regularizer on the block's latent.
  template <class Fn>
  Self& regularizer(const std::string& name, const TermOptions<Fn>& o = {}) {
    config::detail::add_regularizer(spec_.regularizations,
                                       config::detail::call_name<Fn>(where(), "regularizer", name), name, o,
                                       site(), RegContext{spec_.lat_dim, spec_.kind == BlockKind::Pheno}, true);
    return self();
  }

  const BlockSpec& spec() const { return spec_; }

 protected:
  BlockBuilder(std::string name, BlockKind kind, Index lat_dim, Index out_dim) {
    spec_.name = std::move(name);
    spec_.kind = kind;
    spec_.lat_dim = lat_dim;
    spec_.out_dim = out_dim;
    spec_.head = kind == BlockKind::Signature ? HeadType::LinRegressor : HeadType::LinClassifier;
    detail::require(!spec_.name.empty(), where(), ": a block needs a name");
    config::detail::check_width(lat_dim, where(), "lat_dim");
    config::detail::check_width(out_dim, where(), "out_dim");
  }
  std::string where() const {
    return std::string(spec_.kind == BlockKind::Signature ? "SignatureBlock(\"" : "PhenoBlock(\"") + spec_.name + "\")";
  }
  std::string site() const {
    return std::string(spec_.kind == BlockKind::Signature ? "signature." : "pheno.") + spec_.name + ".regularization";
  }
  BlockSpec spec_;

 private:
  Self& self() { return static_cast<Self&>(*this); }
  Self& attach(AttachTo to, std::vector<AttachRef> keys) {
    spec_.attach = to;
    spec_.attach_keys = std::move(keys);
    return self();
  }
};

/// A signature block: a head that predicts marker genes' expression.
class SignatureBlock : public BlockBuilder<SignatureBlock> {
 public:
  SignatureBlock(std::string name, const SignatureShape& s)
      : BlockBuilder(std::move(name), BlockKind::Signature, s.lat_dim,
                     s.out_dim != 0 ? s.out_dim : static_cast<Index>(s.genes.size())) {
    detail::require(s.genes.empty() || static_cast<Index>(s.genes.size()) == spec_.out_dim, where(), ": ",
                    s.genes.size(), " genes but out_dim ", spec_.out_dim, "; leave out_dim 0 to take the gene count");
    spec_.genes = s.genes;
    spec_.exclude_from_input = s.exclude_from_input;
  }
};

/// A phenotype block: a head that predicts a cell annotation (classes or values).
class PhenoBlock : public BlockBuilder<PhenoBlock> {
 public:
  PhenoBlock(std::string name, const PhenoShape& s)
      : BlockBuilder(std::move(name), BlockKind::Pheno, s.lat_dim, s.out_dim) {}
};

/// The whole experiment; build() returns the ExperimentSpec a Controller takes.
class Experiment {
 public:
  explicit Experiment(const MainShape& s) {
    ModelSpec& m = spec_.model;
    config::detail::check_width(s.genes, "Experiment", "genes");
    config::detail::check_width(s.encoder_neurons, "Experiment", "encoder_neurons");
    config::detail::check_width(s.decoder_neurons, "Experiment", "decoder_neurons");
    config::detail::check_width(s.latent_dim, "Experiment", "latent_dim");
    m.input_dim = s.genes;
    m.encoder_neurons = s.encoder_neurons;
    m.decoder_neurons = s.decoder_neurons;
    m.latent_dim = s.latent_dim;
  }

  /// Layers between the input and every compressor (default: one Linear to encoder_neurons + CELU).
  Experiment& pre_encoder(const PreEncoder& p) {
    spec_.model.pre_encoder = config::detail::stack(p.layers, Activation::Identity, "Experiment.pre_encoder");
    if (p.out_dim != 0) config::detail::check_width(p.out_dim, "Experiment.pre_encoder", "out_dim");
    spec_.model.pre_encoder_out_dim = p.out_dim;
    return *this;
  }
  /// The main latent's compressor (default: one Linear layer).
  Experiment& main_encoder(const Layers& l) {
    spec_.model.main_encoder = config::detail::stack(l, Activation::Identity, "Experiment.main_encoder");
    return *this;
  }
  /// The decoder from all latents to the genes (output activation default: relu, as upstream).
  Experiment& decoder(const Layers& l) {
    spec_.model.decoder = config::detail::stack(l, Activation::Relu, "Experiment.decoder");
    return *this;
  }

  /// Stores the first layer's weight gene-major, so batches given as sparse rows
  /// (Batch::set_sparse) stream whole weight rows; parameter I/O is unchanged.
  Experiment& sparse_input_layout() {
    spec_.model.first_layer_input_major = true;
    return *this;
  }

  /// A reconstruction loss (x_hat vs x), e.g. Mse, L1, Cosine, L1Norm.
  template <class Fn>
  Experiment& loss(const std::string& name, const TermOptions<Fn>& o = {}) {
    static_assert(config::detail::slots_of<Fn>().has(Slot::Reconstruction),
                  "loss<Fn>: this loss applies to phenotype/signature heads only");
    config::detail::add_loss(spec_.main_losses, config::detail::call_name<Fn>("Experiment", "loss", name), name,
                                o, false);
    return *this;
  }
  /// A regularizer on the main latent, e.g. Sw2Uniform, KlGaussianMixture, L2Regularization.
  template <class Fn>
  Experiment& regularizer(const std::string& name, const TermOptions<Fn>& o = {}) {
    config::detail::add_regularizer(spec_.main_regularizations,
                                       config::detail::call_name<Fn>("Experiment", "regularizer", name), name, o,
                                       "main_latent.regularization", RegContext{spec_.model.latent_dim, false}, false);
    return *this;
  }

  Experiment& signature(const SignatureBlock& b) { return add_block(spec_.model.signatures, b.spec(), "signature"); }
  Experiment& pheno(const PhenoBlock& b) { return add_block(spec_.model.phenos, b.spec(), "pheno"); }

  Experiment& optimizer(const RmsPropSettings& o) {
    detail::require(o.lr > 0 && o.alpha >= 0 && o.eps > 0 && o.weight_decay >= 0 && o.momentum >= 0,
                    "Experiment.optimizer: lr and eps must be positive, alpha, weight_decay and momentum not negative");
    spec_.optimizer.lr = o.lr;
    spec_.optimizer.alpha = o.alpha;
    spec_.optimizer.weight_decay = o.weight_decay;
    spec_.optimizer.momentum = o.momentum;
    spec_.optimizer.eps = o.eps;
    return *this;
  }
  /// Keeps a module as it is (no optimizer state). Block modules name their block.
  Experiment& freeze(Frozen module, const std::string& block = "") {
    constexpr const char* types[] = {"pre_encoder",          "main_latent_compressor",   "decoder",
                                     "signature_latent_compressors", "signature_regressors",
                                     "pheno_latent_compressors",     "pheno_models"};
    const bool per_block = module >= Frozen::SignatureCompressor;
    detail::require(per_block != block.empty(), "Experiment.freeze(", types[static_cast<int>(module)], "): ",
                    per_block ? "name the block to freeze" : "this module has no blocks; drop the block name");
    spec_.optimizer.excludes.emplace_back(types[static_cast<int>(module)], block);
    return *this;
  }
  /// The seed of parameter initialisation and of the draws (rnd_seed; default 3407).
  Experiment& seed(std::uint64_t s) {
    spec_.seed = s;
    return *this;
  }
  /// "cpu" or "cuda": what the experiment asks for (config.device). The device is the
  /// controller's type, Controller<T, Cpu> or Controller<T, Cuda>: the caller picks it.
  Experiment& device(std::string d) {
    detail::require(d == "cpu" || d == "cuda", "Experiment.device(\"", d, "\"): use \"cpu\" or \"cuda\"");
    spec_.device = std::move(d);
    return *this;
  }
  /// Replays upstream's deviations (e.g. SW2 always drawing 50 projections), to match its numbers.
  Experiment& upstream_compat(const UpstreamCompat& c) {
    compat_ = c;
    return *this;
  }

  /// The spec: attachments resolved against the blocks added, the model's size checked.
  ExperimentSpec build() const {
    ExperimentSpec e = spec_;
    for (const auto* group : {&e.model.signatures, &e.model.phenos})
      for (const auto& b : *group)
        for (const auto& r : b.attach_keys) check_attachment(b, r);
    if (compat_.sw2_fixed_projections > 0) {
      auto fix = [&](std::vector<RegularizerSpec>& ts) {
        for (auto& t : ts)
          std::visit([&](auto& bound) {
            if constexpr (requires { bound.options.projections; }) bound.options.projections = compat_.sw2_fixed_projections;
          }, t.configured);
      };
      fix(e.main_regularizations);
      for (auto* group : {&e.model.signatures, &e.model.phenos})
        for (auto& b : *group) fix(b.regularizations);
    }
    try {
      config::detail::check_model_size(e.model);
    } catch (const Error& err) {
      const std::string why = err.what();  // "sakura: the model would have ..."
      detail::fail("Experiment.build(): ", why.substr(why.find(": ") + 2));
    }
    return e;
  }

 private:
  Experiment& add_block(std::vector<BlockSpec>& out, const BlockSpec& b, const char* method) {
    for (const auto& o : out)
      detail::require(o.name != b.name, "Experiment.", method, "(\"", b.name, "\"): a ", method,
                      " block of that name is already there; rename one");
    out.push_back(b);
    return *this;
  }
  void check_attachment(const BlockSpec& b, const AttachRef& r) const {
    if (r.kind == BlockKind::Main) return;
    const bool sig = r.kind == BlockKind::Signature;
    const auto& blocks = sig ? spec_.model.signatures : spec_.model.phenos;
    bool found = false;
    for (const auto& o : blocks) found = found || o.name == r.key;
    detail::require(found, b.kind == BlockKind::Signature ? "SignatureBlock(\"" : "PhenoBlock(\"", b.name,
                    "\") attaches to ", sig ? "signature" : "pheno", " \"", r.key,
                    "\", which is not there; add it with Experiment.", sig ? "signature" : "pheno",
                    "(...) or attach elsewhere");
  }

  ExperimentSpec spec_;
  UpstreamCompat compat_;
};

}  // namespace sakura
