// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The registry of loss types: adding a loss = its header + one entry in this list.
#pragma once

#include "sakura/detail/fields.hpp"
#include "sakura/detail/type_list.hpp"
#include "sakura/losses/bce.hpp"
#include "sakura/losses/cosine.hpp"
#include "sakura/losses/l1.hpp"
#include "sakura/losses/log_cosh.hpp"
#include "sakura/losses/mse.hpp"
#include "sakura/losses/nll.hpp"
#include "sakura/losses/norms.hpp"
#include "sakura/losses/smooth_l1.hpp"
#include "sakura/schedule/term.hpp"

namespace sakura {

using LossTypes = detail::TypeList<Mse, L1, Cosine, L1Norm, L2Norm, Nll, Bce, SmoothL1, LogCosh>;

/// A configured loss: one of the types above with its options (config/json.hpp, the builder).
using LossVariant = detail::variant_of<Configured, LossTypes>::type;
using LossSpec = TermSpec<LossVariant>;

}  // namespace sakura
