// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// make_controller(): the runtime path's device choice. A config's "device" ("cpu" or "cuda")
/// picks Controller<float, Cpu> or Controller<float, Cuda> behind one interface.
///
/// Example:
///   auto ctl = sakura::make_controller(sakura::config::experiment_from_json(config, pheno, sig, genes));
///   ctl->train(batch);   // on the GPU when config.device is "cuda" (and sakura::cuda is linked)
#pragma once

#include <memory>

#include "sakura/controller/controller.hpp"

namespace sakura {

class AnyController {
 public:
  virtual ~AnyController() = default;
  virtual const LossRecord& train(const Batch<float>& batch, const TrainOptions& o = {}) = 0;
  virtual const LossRecord& eval(const Batch<float>& batch, const EvalOptions& o = {}) = 0;
  virtual void next_epoch(const Scope& o = {}) = 0;
  virtual void tick() = 0;
  virtual void reset() = 0;
  /// Host copies of parameters and optimizer state (a no-op on the CPU).
  virtual void sync_to_host() = 0;
  virtual void sync_to_device() = 0;
  virtual Extractor<float>& model() = 0;
  virtual const ModelSpec& model_spec() const = 0;
  virtual TermState& term(BlockKind kind, const std::string& block, TermGroup group, const std::string& name) = 0;
  virtual Rng& rng() = 0;
  virtual DrawQueue& injected_draws() = 0;
  virtual const char* device() const = 0;
};

template <class Dev>
class ControllerOn final : public AnyController {
 public:
  explicit ControllerOn(ExperimentSpec spec) : c_(std::move(spec)) {}
  const LossRecord& train(const Batch<float>& b, const TrainOptions& o) override { return c_.train(b, o); }
  const LossRecord& eval(const Batch<float>& b, const EvalOptions& o) override { return c_.eval(b, o); }
  void next_epoch(const Scope& o) override { c_.next_epoch(o); }
  void tick() override { c_.tick(); }
  void reset() override { c_.reset(); }
  void sync_to_host() override { c_.sync_to_host(); }
  void sync_to_device() override { c_.sync_to_device(); }
  Extractor<float>& model() override { return c_.model(); }
  const ModelSpec& model_spec() const override { return c_.model_spec(); }
  TermState& term(BlockKind k, const std::string& b, TermGroup g, const std::string& n) override {
    return c_.term(k, b, g, n);
  }
  Rng& rng() override { return c_.rng(); }
  DrawQueue& injected_draws() override { return c_.injected_draws(); }
  const char* device() const override { return is_cuda_v<Dev> ? "cuda" : "cpu"; }
  Controller<float, Dev>& typed() { return c_; }

 private:
  Controller<float, Dev> c_;
};

/// The controller the spec's device asks for; "cuda" needs the GPU backend (sakura::cuda linked,
/// SAKURA_WITH_CUDA) and a device, else a sakura::Error says which is missing.
inline std::unique_ptr<AnyController> make_controller(ExperimentSpec spec) {
  if (spec.device == "cpu" || spec.device.empty()) return std::make_unique<ControllerOn<Cpu>>(std::move(spec));
  detail::require(spec.device == "cuda", "config.device must be \"cpu\" or \"cuda\", got \"", spec.device, "\"");
#if SAKURA_WITH_CUDA
  detail::require(cuda::device_count() > 0, "config.device is \"cuda\" but no CUDA device is available");
  return std::make_unique<ControllerOn<Cuda>>(std::move(spec));
#else
  detail::fail("config.device is \"cuda\" but this build has no GPU backend: configure with -DSAKURA_CUDA=ON "
               "and link sakura::cuda");
#endif
}

}  // namespace sakura
