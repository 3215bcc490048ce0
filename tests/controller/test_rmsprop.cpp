// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// RMSProp against PyTorch itself (support/torch_rmsprop.hpp: one torch.optim.RMSprop step for
// four settings on the same 4096 inputs). Every parameter, square average and momentum entry must
// come out bit for bit: a fast approximate sqrt or an fma where PyTorch rounds twice changes ~1%
// of the parameters (and a quarter of the momentum buffer) by one ulp.
#include <catch2/catch.hpp>

#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include <sakura/sakura.hpp>

#include "support/torch_rmsprop.hpp"

using namespace sakura;
using sakura::test::TorchCase, sakura::test::load_torch_rmsprop;

namespace {

/// Tensor [1, len] holding x[o, o + len).
Tensor<float> row(const std::vector<float>& x, std::size_t o, std::size_t len) {
  const auto first = x.begin() + std::ptrdiff_t(o);
  return Tensor<float>::from(std::vector<float>(first, first + std::ptrdiff_t(len)), 1, Index(len));
}

}  // namespace

TEST_CASE("RMSProp rounds every update exactly as PyTorch 1.13's RMSprop", "[optim]") {
  const auto ref = load_torch_rmsprop();
  REQUIRE(ref.cases.size() == 4);
  const std::size_t n = ref.param.size();
  for (const TorchCase& c : ref.cases)
    for (int copies : {1, 10}) {  // uneven parameters, each a serial span; ten copies in one, chunked over threads
      CAPTURE(c.lr, c.alpha, c.weight_decay, c.momentum, copies);
      std::vector<float> g, v, p, b;
      for (int t = 0; t < copies; ++t)
        for (auto [dst, src] : {std::pair{&g, &ref.grad}, {&v, &ref.square_avg}, {&p, &ref.param}, {&b, &ref.momentum_buffer}})
          dst->insert(dst->end(), src->begin(), src->end());
      // the parameters' lengths put every vector width's remainder through the element rule
      std::vector<std::size_t> lengths{1, 7, 15, 16, 17, 33, 1000};
      lengths.push_back(p.size() - 1089);
      if (copies > 1) lengths = {p.size()};
      OptimizerSpec spec;
      spec.lr = c.lr, spec.alpha = c.alpha, spec.weight_decay = c.weight_decay, spec.momentum = c.momentum;
      std::deque<Parameter<float>> params;
      std::size_t o = 0;
      for (std::size_t len : lengths) {
        Parameter<float>& q = params.emplace_back(std::to_string(o), "pre_encoder", "", 1, Index(len));
        q.value = row(p, o, len), q.grad = row(g, o, len), q.has_grad = true;
        o += len;
      }
      RmsProp<float> opt(params, spec);
      o = 0;
      for (std::size_t k = 0; k < lengths.size(); ++k) {  // PyTorch's state after earlier steps
        auto& s = opt.state()[k];
        s.square_avg = row(v, o, lengths[k]);
        if (c.momentum > 0) s.momentum_buffer = row(b, o, lengths[k]);
        s.initialised = true;
        o += lengths[k];
      }
      opt.step();
      std::size_t bad_p = 0, bad_v = 0, bad_b = 0, i = 0;
      for (std::size_t k = 0; k < lengths.size(); ++k)
        for (Index e = 0; e < Index(lengths[k]); ++e, ++i) {
          const auto& s = opt.state()[k];
          bad_p += std::memcmp(&params[k].value.data()[e], &c.param[i % n], sizeof(float)) != 0;
          bad_v += std::memcmp(&s.square_avg.data()[e], &c.square_avg[i % n], sizeof(float)) != 0;
          if (c.momentum > 0) bad_b += std::memcmp(&s.momentum_buffer.data()[e], &c.momentum_buffer[i % n], sizeof(float)) != 0;
        }
      REQUIRE(i == p.size());
      CHECK(bad_p == 0);
      CHECK(bad_v == 0);
      CHECK(bad_b == 0);
    }
}
