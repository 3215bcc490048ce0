// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// PyTorch's own RMSProp results (PyTorch 1.13 on the CPU): one torch.optim.RMSprop step for four
// settings (plain, weight decay, momentum, both) on the same 4096 float32 inputs. Read by the CPU
// and GPU optimizer tests, which require every output bit for bit.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace sakura::test {

struct TorchCase {
  double lr, alpha, weight_decay, momentum;
  std::vector<float> param, square_avg, momentum_buffer;  // after the step
};
struct TorchReference {
  std::vector<float> grad, square_avg, param, momentum_buffer;  // before
  std::vector<TorchCase> cases;
};

/// tests/data/rmsprop_torch113.bin, written by tests/data/make_rmsprop_reference.py.
inline TorchReference load_torch_rmsprop() {
  const std::string path = std::string(SAKURA_TEST_DATA_DIR) + "/rmsprop_torch113.bin";
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  char magic[4];
  std::uint32_t n = 0, cases = 0;
  in.read(magic, 4);
  in.read(reinterpret_cast<char*>(&n), 4);
  in.read(reinterpret_cast<char*>(&cases), 4);
  REQUIRE(std::memcmp(magic, "RMS1", 4) == 0);
  auto floats = [&] {
    std::vector<float> x(n);
    in.read(reinterpret_cast<char*>(x.data()), std::streamsize(sizeof(float) * n));
    return x;
  };
  TorchReference r;
  r.grad = floats(), r.square_avg = floats(), r.param = floats(), r.momentum_buffer = floats();
  for (std::uint32_t c = 0; c < cases; ++c) {
    TorchCase t;
    double h[4];
    in.read(reinterpret_cast<char*>(h), sizeof(h));
    t.lr = h[0], t.alpha = h[1], t.weight_decay = h[2], t.momentum = h[3];
    t.param = floats(), t.square_avg = floats(), t.momentum_buffer = floats();
    r.cases.push_back(std::move(t));
  }
  REQUIRE(in.good());
  return r;
}

}  // namespace sakura::test
