// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// sakura_bench_gpu: the tutorial-shape and tiny training steps on the GPU, eager and replayed as
// a CUDA graph, with batches staged from the host or resident on the GPU (data::DeviceMatrix). A plain timing loop (median of many steps, each ending in the record's device-to-
// host read, i.e. synchronised), so it needs no Google Benchmark on the GPU machine.
// Usage: sakura_bench_gpu [--json out.json] [--steps N]
#include "tutorial_case.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

using namespace sakura;
using config::Json;
using bench::TutorialModel;

namespace {

struct Case {
  const char* name;
  bench::Shape shape;
};

template <class Step>
double median_ms(Step&& step, int steps) {
  for (int i = 0; i < 5; ++i) step();  // warm-up: arenas, optimizer state, graph capture
  std::vector<double> t;
  for (int i = 0; i < steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_out;
  int steps = 200;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json_out = argv[++i];
    else if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) steps = std::atoi(argv[++i]);
  }
  if (cuda::device_count() == 0) {
    std::printf("skipped: no CUDA device\n");
    return 0;
  }
  std::printf("device: %s\n", cuda::device_name());
  Json results = Json::array();
  const Case cases[] = {{"tutorial_both", {10000, 200, 50, 100}}, {"tiny_both", {200, 32, 8, 32}}};
  for (const auto& [case_name, c] : cases) {
    auto data = bench::tutorial_batches(c);
    // the same four batches resident on the GPU: the expression is gathered there each step
    Tensor<float> all(4 * c.batch, c.genes);
    for (int b = 0; b < 4; ++b)
      std::copy(data[b].expr.begin(), data[b].expr.end(), all.data() + b * c.batch * c.genes);
    const data::DeviceMatrix<float> resident(all);
    std::vector<Batch<float>> device_data = data;
    for (int b = 0; b < 4; ++b) {
      std::vector<std::int32_t> rows(static_cast<std::size_t>(c.batch));
      for (Index r = 0; r < c.batch; ++r) rows[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(b * c.batch + r);
      device_data[b].expr = Tensor<float>();
      resident.select(device_data[b], rows);
    }
    for (const char* mode : {"cuda_eager", "cuda_graph", "cuda_graph_policy", "cuda_graph_resident",
                             "cuda_graph_resident_policy"}) {
      Controller<float, Cuda> ctl(bench::tutorial_spec(c));
      const bool graph = std::strcmp(mode, "cuda_eager") != 0;
      if (graph) ctl.enable_graphs(true);
      const auto& in = std::strstr(mode, "resident") ? device_data : data;
      std::size_t i = 0;
      double ms;
      if (std::strstr(mode, "policy")) {
        if (c.latent == 50) ms = median_ms([&] { ctl.train<TutorialModel<50>, All>(in[i++ % 4]); }, steps);
        else ms = median_ms([&] { ctl.train<TutorialModel<8>, All>(in[i++ % 4]); }, steps);
      } else {
        ms = median_ms([&] { ctl.train(in[i++ % 4]); }, steps);
      }
      const std::string name = std::string("step/") + case_name + "/" + mode;
      std::printf("%-40s %9.3f ms (median of %d)\n", name.c_str(), ms, steps);
      results.push_back(Json{{"name", name}, {"median_ms", ms}});
    }
  }
  if (!json_out.empty()) std::ofstream(json_out) << Json{{"device", cuda::device_name()}, {"results", results}}.dump(2);
  return 0;
}
