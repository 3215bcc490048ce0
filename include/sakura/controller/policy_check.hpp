// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// check_policy<M>(spec): does the compile-time model policy M (controller/policy.hpp) describe
/// the loaded experiment? Every term type, block name, head, latent width and attachment is
/// compared; an error names the first difference.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "sakura/controller/experiment_spec.hpp"
#include "sakura/controller/policy.hpp"
#include "sakura/error.hpp"

namespace sakura {

namespace detail {

template <class Variant, class... Fns, class Spec>
void check_policy_terms(TypeList<Fns...>, const std::vector<Spec>& specs, const std::string& where) {
  require(specs.size() == sizeof...(Fns), "model policy does not match the config: ", where, " has ", specs.size(),
          " terms, the policy ", sizeof...(Fns));
  [[maybe_unused]] std::size_t i = 0;
  (
      [&] {
        constexpr std::size_t want = variant_index<Variant, Configured<Fns>>();
        require(specs[i].configured.index() == want, "model policy does not match the config: ", where, ".", specs[i].name,
                " is not a ", Fns::names[0], " term");
        ++i;
      }(),
      ...);
}

template <class... Bs>
void check_policy_blocks(TypeList<Bs...>, const std::vector<BlockSpec>& specs, const std::string& where) {
  require(specs.size() == sizeof...(Bs), "model policy does not match the config: ", where, " has ", specs.size(),
          " blocks, the policy ", sizeof...(Bs));
  [[maybe_unused]] std::size_t i = 0;
  (
      [&] {
        const BlockSpec& b = specs[i++];
        const std::string w = where + "." + b.name;
        require(b.name == Bs::name, "model policy does not match the config: block ", i - 1, " of ", where, " is '",
                b.name, "', the policy says '", Bs::name, "'");
        require(b.head == Bs::head && b.lat_dim == Bs::latent_dim && b.attach == Bs::attach::to &&
                    b.attach_keys.size() == Bs::attach::n_refs,
                "model policy does not match the config: head, latent width or attachment of ", w);
        for (std::size_t k = 0; k < Bs::attach::n_refs; ++k)
          require(b.attach_keys[k].kind == Bs::attach::kinds[k] && b.attach_keys[k].key == Bs::attach::keys[k],
                  "model policy does not match the config: attach_key of ", w);
        check_policy_terms<LossVariant>(typename Bs::losses::list{}, b.losses, w + ".loss");
        check_policy_terms<RegularizerVariant>(typename Bs::regs::list{}, b.regularizations, w + ".regularization");
      }(),
      ...);
}

}  // namespace detail

/// Throws sakura::Error naming the first place where policy M and the experiment differ.
template <class M>
void check_policy(const ExperimentSpec& spec) {
  detail::check_policy_terms<LossVariant>(typename M::recon::list{}, spec.main_losses, "main_latent.loss");
  detail::check_policy_terms<RegularizerVariant>(typename M::main_regs::list{}, spec.main_regularizations,
                                                 "main_latent.regularization");
  detail::check_policy_blocks(typename M::signatures::list{}, spec.model.signatures, "signature_config");
  detail::check_policy_blocks(typename M::phenos::list{}, spec.model.phenos, "pheno_config");
}

}  // namespace sakura
