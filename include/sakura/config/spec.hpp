// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The plain C++ description of an experiment that config/json.hpp and the builder produce. Its
/// parts live with what reads them: the model's shape in nn/model_spec.hpp, term specs beside the
/// terms (losses/, regularizers/, schedule/term.hpp), the optimizer's options in optim/options.hpp
/// and the whole experiment in controller/experiment_spec.hpp.
#pragma once

#include "sakura/controller/experiment_spec.hpp"
