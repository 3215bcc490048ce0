// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// sakura_bench: one SAKURA training step at the pbmc5k tutorial's shapes (10,000 genes, 200 hidden,
// latent 50, batch 100, MSE + L1 + SW2_uniform, cd8 signature head on the main latent) and at a
// tiny shape, plus the "GEMM floor": the same step's GEMMs replayed back to back.
// Names: step/<case>/<api>/threads:<n> with api runtime (JSON config), policy (compile-time
// train<Model, Selection>), and *_csr (sparse CSR input) for the sparse case; floor/<case>/threads:<n>
// is the dense step's GEMMs alone; first_layer/<sparse case>/<kernel>/threads:<n> times the sparse
// first-layer kernels next to the dense products they replace. Counters: GFLOP/s (2mnk per GEMM
// issued; 2 x non-zeros x width for the sparse kernels) and MFLOP/step.
#define SAKURA_GEMM_STATS 1
#include <benchmark/benchmark.h>

#include "tutorial_case.hpp"

#include <functional>
#include <memory>
#include <string>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

using namespace sakura;
using bench::TutorialModel;

struct Case {
  std::string name;
  Index genes, hidden, latent, batch;
  bool recon, main_reg, signature;
  double zeros;  // < 0: synthetic data as generated (~60-90% zeros)
};
bench::Shape shape(const Case& c) { return {c.genes, c.hidden, c.latent, c.batch}; }

const Case kCases[] = {
    {"tutorial_main", 10000, 200, 50, 100, true, true, false, -1},
    {"tutorial_signature", 10000, 200, 50, 100, false, false, true, -1},
    {"tutorial_both", 10000, 200, 50, 100, true, true, true, -1},
    {"tutorial_both_sparse90", 10000, 200, 50, 100, true, true, true, 0.9},
    {"tiny_both", 200, 32, 8, 32, true, true, true, -1},
};

TrainOptions options(const Case& c) {
  return {.scope = {.reconstruction = c.recon,
                    .main_regularization = c.main_reg,
                    .phenos = Selection::none(),
                    .signatures = Scope::group(c.signature, std::nullopt)}};
}

void set_threads(int n) {
#if defined(_OPENMP)
  omp_set_num_threads(n);
#endif
}

/// The step's GEMM calls (shapes), recorded while it runs.
std::vector<cpu::GemmCall> record_step(const std::function<void()>& step) {
  std::vector<cpu::GemmCall> calls;
  cpu::gemm_recorder() = &calls;
  step();
  cpu::gemm_recorder() = nullptr;
  return calls;
}
double flops_of(const std::vector<cpu::GemmCall>& calls) {
  double f = 0;
  for (auto& c : calls) f += 2.0 * double(c.m) * double(c.n) * double(c.k);
  return f;
}

void report(benchmark::State& st, double flops) {
  st.counters["GFLOP/s"] = benchmark::Counter(flops * double(st.iterations()) * 1e-9, benchmark::Counter::kIsRate);
  st.counters["MFLOP/step"] = flops * 1e-6;
}

enum class Api { Runtime, Policy };

/// A controller, four batches and one step function for a case and an API.
struct Setup {
  Case c;
  std::unique_ptr<Controller<float>> ctl;
  std::vector<Batch<float>> data;
  std::size_t i = 0;
  std::function<double()> step;

  Setup(const Case& cs, Api api, bool csr) : c(cs) {
    auto spec = bench::tutorial_spec(shape(c));
    spec.model.first_layer_input_major = csr;
    ctl = std::make_unique<Controller<float>>(std::move(spec));
    data = bench::tutorial_batches(shape(c), c.zeros);
    if (csr)
      for (auto& b : data) {  // CSR only: the reconstruction target is densified per step
        b.set_sparse(CsrMatrix<float>::from_dense(b.expr));
        b.expr = Tensor<float>();
      }
    const TrainOptions o = options(c);
    if (api == Api::Runtime) step = [this, o] { return ctl->train(data[i++ % 4], o).total; };
    else step = policy_step();
    for (int w = 0; w < 3; ++w) step();
  }
  template <Index L>
  std::function<double()> policy_for() {
    using M = TutorialModel<L>;
    if (c.recon && c.signature) return [this] { return ctl->train<M, All>(data[i++ % 4]).total; };
    if (c.recon) return [this] { return ctl->train<M, MainOnly>(data[i++ % 4]).total; };
    return [this] { return ctl->train<M, SignatureOnly<"cd8">>(data[i++ % 4]).total; };
  }
  std::function<double()> policy_step() { return c.latent == 50 ? policy_for<50>() : policy_for<8>(); }
};

void step_bench(benchmark::State& st, const Case& c, Api api, bool csr, int threads) {
  set_threads(threads);
  Setup s(c, api, csr);
  const double flops = flops_of(record_step([&] { s.step(); }));
  for (auto _ : st) benchmark::DoNotOptimize(s.step());
  report(st, flops);
}

/// The dense step's GEMMs alone, same shapes, back to back, on distinct buffers.
void gemm_floor(benchmark::State& st, const Case& c, int threads) {
  set_threads(threads);
  Setup s(c, Api::Runtime, false);
  const auto calls = record_step([&] { s.step(); });
  struct Bufs {
    std::vector<float> a, b, c;
  };
  std::vector<Bufs> bufs;
  Rng rng(1);
  for (auto& g : calls) {
    Bufs b;
    b.a.resize(static_cast<std::size_t>((g.ta ? g.k : g.m) * g.lda));
    b.b.resize(static_cast<std::size_t>((g.tb ? g.n : g.k) * g.ldb));
    b.c.resize(static_cast<std::size_t>(g.m * g.ldc));
    for (auto* v : {&b.a, &b.b, &b.c})
      for (auto& x : *v) x = static_cast<float>(rng.uniform(-1, 1));
    bufs.push_back(std::move(b));
  }
  for (auto _ : st)
    for (std::size_t k = 0; k < calls.size(); ++k) {
      const auto& g = calls[k];
      cpu::gemm<float>(g.ta, g.tb, g.m, g.n, g.k, 1.0f, bufs[k].a.data(), g.lda, bufs[k].b.data(), g.ldb,
                       g.accumulate ? 1.0f : 0.0f, bufs[k].c.data(), g.ldc);
      benchmark::ClobberMemory();
    }
  report(st, flops_of(calls));
  st.SetLabel(std::string(cpu::gemm_provider()) + ", " + std::to_string(calls.size()) + " GEMMs");
}

/// The sparse case's first layer alone, each kernel against the dense product it replaces, on the
/// first batch (100 x 10,000 at 90% zeros; W' input-major 10,000 x 200). Warm caches: inside the
/// step, where RMSProp streams ~80 MB between two uses, these kernels took 1.1-1.5x longer.
enum class FirstLayer { DenseForward, CsrForward, CsrToCsc, CscWeightGrad, DenseWeightGrad };
void first_layer_bench(benchmark::State& st, const Case& c, FirstLayer k, int threads) {
  set_threads(threads);
  const Tensor<float> x = bench::tutorial_batches(shape(c), c.zeros)[0].expr;
  const auto csr = CsrMatrix<float>::from_dense(x);
  const Index n = x.rows(), in = x.cols(), out = c.hidden;
  Tensor<float> w(in, out), y(n, out), dy(n, out), dw(in, out);
  Rng rng(2);
  for (auto* t : {&w, &dy})
    for (auto& v : *t) v = static_cast<float>(rng.uniform(-1, 1));
  std::vector<std::int64_t> colptr(static_cast<std::size_t>(in + 1));
  std::vector<std::int32_t> rowidx(static_cast<std::size_t>(csr.nnz()));
  std::vector<float> vals(static_cast<std::size_t>(csr.nnz()));
  cpu::Csc<float> csc{n, in, colptr.data(), rowidx.data(), vals.data()};
  cpu::csr_to_csc(csc, csr.ref());
  const bool dense = k == FirstLayer::DenseForward || k == FirstLayer::DenseWeightGrad;
  for (auto _ : st) {
    switch (k) {
      case FirstLayer::DenseForward:
        cpu::gemm<float>(false, false, n, out, in, 1.0f, x.data(), in, w.data(), out, 0.0f, y.data(), out);
        break;
      case FirstLayer::CsrForward:
        y.fill(0.0f);
        cpu::csr_linear_fwd_inmajor(y.data(), csr.ref(), w.data(), out);
        break;
      case FirstLayer::CsrToCsc: cpu::csr_to_csc(csc, csr.ref()); break;
      case FirstLayer::CscWeightGrad: cpu::csc_weight_grad_inmajor(dw.data(), csc, dy.data(), out, false); break;
      case FirstLayer::DenseWeightGrad:
        cpu::gemm<float>(true, false, in, out, n, 1.0f, x.data(), in, dy.data(), out, 0.0f, dw.data(), out);
        break;
    }
    benchmark::ClobberMemory();
  }
  // useful multiply-adds: every entry for the dense products, the non-zeros for the sparse ones
  if (k != FirstLayer::CsrToCsc) {
    const double fma = double(dense ? n * in : csr.nnz()) * double(out);
    st.counters["GFLOP/s"] = benchmark::Counter(2 * fma * double(st.iterations()) * 1e-9, benchmark::Counter::kIsRate);
  }
  st.SetLabel(std::to_string(csr.nnz()) + " non-zeros");
}

int register_all() {
  auto add = [](const std::string& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)->Unit(benchmark::kMillisecond)->UseRealTime();
  };
  for (const Case& c : kCases)
    for (int t : {1, 2}) {
      const std::string th = "/threads:" + std::to_string(t);
      add("step/" + c.name + "/runtime" + th, [c, t](benchmark::State& s) { step_bench(s, c, Api::Runtime, false, t); });
      add("step/" + c.name + "/policy" + th, [c, t](benchmark::State& s) { step_bench(s, c, Api::Policy, false, t); });
      if (c.zeros >= 0) {
        add("step/" + c.name + "/runtime_csr" + th,
            [c, t](benchmark::State& s) { step_bench(s, c, Api::Runtime, true, t); });
        add("step/" + c.name + "/policy_csr" + th,
            [c, t](benchmark::State& s) { step_bench(s, c, Api::Policy, true, t); });
      }
      add("floor/" + c.name + th, [c, t](benchmark::State& s) { gemm_floor(s, c, t); });
      if (c.zeros >= 0)
        for (auto [k, what] : {std::pair{FirstLayer::DenseForward, "dense_forward"}, {FirstLayer::CsrForward, "csr_forward"},
                               {FirstLayer::CsrToCsc, "csr_to_csc"}, {FirstLayer::CscWeightGrad, "csc_weight_grad"},
                               {FirstLayer::DenseWeightGrad, "dense_weight_grad"}})
          add("first_layer/" + c.name + "/" + what + th,
              [c, t, k = k](benchmark::State& s) { first_layer_bench(s, c, k, t); });
    }
  return 0;
}
const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
