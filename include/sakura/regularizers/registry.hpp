// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The registry of regularizer types: adding one = its header + one entry in this list.
#pragma once

#include "sakura/detail/type_list.hpp"
#include "sakura/regularizers/kl_gaussian_mixture.hpp"
#include "sakura/regularizers/row_norm.hpp"
#include "sakura/regularizers/sliced_wasserstein.hpp"
#include "sakura/schedule/term.hpp"

namespace sakura {

using RegularizerTypes = detail::TypeList<Sw2Uniform, Sw2UniformSupervised, Sw2GaussianMixture,
                                          Sw2GaussianMixtureSupervised, Sw2Ring2d, L1Regularization,
                                          L2Regularization, KlGaussianMixture>;

/// A configured regularization: one of the types above with its options (config/json.hpp, the builder).
using RegularizerVariant = detail::variant_of<Configured, RegularizerTypes>::type;
using RegularizerSpec = TermSpec<RegularizerVariant>;

}  // namespace sakura
