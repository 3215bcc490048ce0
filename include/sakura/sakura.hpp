// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Umbrella header: everything needed to build, train and evaluate a SAKURA model; the GPU parts
/// only when compiled for the GPU backend (SAKURA_WITH_CUDA, set by linking sakura::cuda).
#pragma once

#include "sakura/version.hpp"
#include "sakura/error.hpp"
#include "sakura/tensor/tensor.hpp"
#include "sakura/tensor/rng.hpp"
#include "sakura/autograd/tape.hpp"
#include "sakura/autograd/gradcheck.hpp"
#include "sakura/nn/extractor.hpp"
#include "sakura/losses/registry.hpp"
#include "sakura/regularizers/registry.hpp"
#include "sakura/schedule/progressive.hpp"
#include "sakura/optim/rmsprop.hpp"
#include "sakura/controller/batch.hpp"
#include "sakura/controller/controller.hpp"
#include "sakura/config/json.hpp"
#if defined(SAKURA_WITH_CUDA) && SAKURA_WITH_CUDA
// GPU: device-resident expression for Controller<T, Cuda>
#include "sakura/data/device_matrix.hpp"
#endif
