// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Umbrella header: everything needed to build, train and evaluate a SAKURA model on the CPU.
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
#include "sakura/data/batch.hpp"
#include "sakura/controller/controller.hpp"
#include "sakura/controller/any_controller.hpp"
#include "sakura/config/json.hpp"
// GPU: device-resident expression for Controller<T, Cuda> (link sakura::cuda to use it)
#include "sakura/backend/cuda/device_matrix.hpp"
