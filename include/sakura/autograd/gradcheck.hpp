// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// gradcheck(): compares the tape's gradients with central finite differences (double precision).
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "sakura/autograd/tape.hpp"

namespace sakura {

/// Worst relative error |analytic - numeric| / max(|analytic|, |numeric|, floor) over every
/// element of every input. `f` builds a scalar on the tape from the inputs as parameters.
///
/// Example:
///   double err = gradcheck([](Tape<double>& t, std::span<const Var> x) { return t.mse(t.celu(x[0]), x[1]); },
///                          {&a, &b});
inline double gradcheck(const std::function<Var(Tape<double>&, std::span<const Var>)>& f,
                        std::vector<Parameter<double>*> inputs, double h = 1e-6, double floor = 1e-3) {
  Tape<double> tape;
  auto run = [&](bool grad) {
    tape.reset();
    std::vector<Var> vars;
    for (auto* p : inputs) vars.push_back(tape.param(*p));
    Var y = f(tape, vars);
    if (grad) {
      for (auto* p : inputs) p->written = false;
      tape.backward(y);
      for (auto* p : inputs)
        if (!p->written) p->grad.fill(0.0);
    }
    return tape.scalar(y);
  };
  run(true);
  std::vector<Tensor<double>> analytic;
  for (auto* p : inputs) analytic.push_back(p->grad);
  double worst = 0;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    Tensor<double>& v = inputs[k]->value;
    for (Index i = 0; i < v.size(); ++i) {
      const double orig = v[i];
      v[i] = orig + h;
      const double up = run(false);
      v[i] = orig - h;
      const double down = run(false);
      v[i] = orig;
      const double num = (up - down) / (2 * h), an = analytic[k][i];
      worst = std::max(worst, std::abs(an - num) / std::max({std::abs(an), std::abs(num), floor}));
    }
  }
  return worst;
}

}  // namespace sakura
