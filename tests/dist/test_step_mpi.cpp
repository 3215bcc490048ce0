// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The exact distributed step under mpiexec (2 and 3 ranks: even, uneven and empty splits): every
// golden case, a mixed case with every kind of term, and the tutorial config give the
// single-process losses and parameters within 1e-5 relative; runs are bit-identical from run to
// run, parameters identical on every rank, a 1-rank MPI communicator is the default path, frozen
// modules' gradients are the single-process ones on every rank, and a warm distributed step
// allocates nothing on any rank.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <sakura/data/synthetic.hpp>

#include "step_checks.hpp"
#include "support/counting_new.hpp"
#include "world.hpp"

using namespace sakura;
using namespace sakura::test;

TEST_CASE("distributed step: every golden case gives the single-process losses and parameters", "[dist][golden]") {
  const dist::Comm& comm = world();
  for (const auto& f : golden_files()) {
    std::vector<float> single, dist1, dist2;
    std::vector<double> single64, dist64;
    replay<float>(f, 1e-5, {}, [&](Controller<float>& c) { single = params_of(c); });
    replay<double>(f, 1e-5, {}, [&](Controller<double>& c) { single64 = params_of(c); });
    auto check = [&](auto& c) {
      c.check_replicas();  // throws on every rank if any rank's parameters or optimizer state differ
    };
    const Worst w = replay<float>(f, 1e-5, comm, [&](Controller<float>& c) {
      check(c);
      dist1 = params_of(c);
    });
    replay<float>(f, 1e-5, comm, [&](Controller<float>& c) { dist2 = params_of(c); });
    const Worst w64 = replay<double>(f, 1e-5, comm, [&](Controller<double>& c) {
      check(c);
      dist64 = params_of(c);
    });
    const double e32 = worst_rel(dist1, single), e64 = worst_rel(dist64, single64);
    if (comm.rank() == 0)
      std::printf("np %d golden %-38s vs upstream: loss %.1e param %.1e | vs 1 process: float %.1e double %.1e\n",
                  comm.size(), f.filename().string().c_str(), w.loss, w.param, e32, e64);
    INFO(f.filename().string());
    for (auto& s : w.failures) UNSCOPED_INFO("float32: " << s);
    for (auto& s : w64.failures) UNSCOPED_INFO("float64: " << s);
    CHECK(w.failures.empty());
    CHECK(w64.failures.empty());
    CHECK(e32 <= 1e-5);
    CHECK(e64 <= 1e-12);
    CHECK(same_bits(dist1, dist2));  // run to run, same N
  }
}

/// The mixed case on `cells` cells, distributed and in one process: worst relative errors of the
/// records and of the parameters; also checks the generator state and the forward views.
template <class T>
std::pair<double, double> mixed_errors(Index cells, int steps) {
  const dist::Comm& comm = world();
  Controller<T> single(mixed_spec());
  const auto expected = run_mixed(single, steps, cells, [](Batch<T> b) { return b; });
  Controller<T> ctl(mixed_spec(), comm);
  const auto got = run_mixed(ctl, steps, cells, [&](const Batch<T>& b) { return rank_rows(b, comm); });
  REQUIRE(got.size() == expected.size());
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, worst_rel(got[i], expected[i]));
  const double wp = worst_rel(params_of(ctl), params_of(single));
  if (comm.rank() == 0)
    std::printf("np %d mixed case, %s, %lld cells, %d steps: worst rel err losses %.1e parameters %.1e\n", comm.size(),
                sizeof(T) == 4 ? "float" : "double", static_cast<long long>(cells), steps, worst, wp);
  CHECK(ctl.rng().state() == single.rng().state());  // the same draws were reserved
  ctl.check_replicas();
  // the forward views hold this rank's rows (the caller gathers them)
  CHECK(ctl.view(ctl.forward().main).rows == ctl.split().count(comm.rank()));
  CHECK(ctl.view(ctl.forward().recon).rows == ctl.split().count(comm.rank()));
  return {worst, wp};
}

TEST_CASE("distributed step: dropout, sparse input, every prior, KL, GRL and heads match one process",
          "[dist][mixed]") {
  // float: the losses of the first 12 calls of the sequence (train, a summed step, a selection
  // with raw values, eval, loss, epochs), uneven at 2 and 3 ranks. Its parameters are compared in
  // double below: in float this small model amplifies the re-associated sums' rounding where
  // RMSProp divides a gradient that cancels to ~eps by its own size (the regime the golden
  // comparison's allowance covers), up to ~1e-3 of a parameter, as any change of summation order in
  // one process would; losses drift past 1e-5 from ~15 steps on (KL's variance of few cells).
  const auto [loss, param] = mixed_errors<float>(29, 12);
  CHECK(loss <= 1e-5);
  // double, 24 steps, where the method's exactness shows (the runs stay within ~1e-12); batches
  // smaller than the ranks (a rank with no rows) and one row per rank are covered too.
  for (Index cells : {Index(29), Index(world().size() - 1), Index(world().size())}) {
    INFO("cells " << cells);
    const auto [l, p] = mixed_errors<double>(cells, 24);
    CHECK(l <= 1e-9);
    CHECK(p <= 1e-9);
  }
}

TEST_CASE("distributed step: the tutorial config, 100 steps", "[dist][tutorial]") {
  const dist::Comm& comm = world();
  Json cfg = config::read_json_file(SAKURA_SOURCE_DIR "/examples/configs/pbmc5k_config.json");
  Json sig = config::read_json_file(SAKURA_SOURCE_DIR "/examples/configs/pbmc5k_signature_config.json");
  // the tutorial's terms and structure at a test's size
  const Index genes = 60, cells = 40;
  cfg["main_latent"]["encoder_neurons"] = 32;
  cfg["main_latent"]["decoder_neurons"] = 32;
  cfg["main_latent"]["latent_dim"] = 8;
  sig["cd8"]["signature_lat_dim"] = 8;
  auto spec = [&] { return config::experiment_from_json(cfg, Json::object(), sig, genes); };
  const auto cells_data = data::make_synthetic({.cells = 4 * cells, .genes = genes, .cell_types = 4, .seed = 11});
  std::vector<Batch<float>> batches;
  for (Index b = 0; b < 4; ++b) {
    Batch<float> batch(Tensor<float>(cells, genes));
    Tensor<float> cd8(cells, 2);
    for (Index r = 0; r < cells; ++r) {
      for (Index g = 0; g < genes; ++g) batch.expr(r, g) = cells_data.expr(b * cells + r, g);
      cd8(r, 0) = batch.expr(r, 0);
      cd8(r, 1) = batch.expr(r, 1);
    }
    batch.set_signature("cd8", std::move(cd8));
    batches.push_back(std::move(batch));
  }
  Controller<float> single(spec()), ctl(spec(), comm);
  std::vector<Batch<float>> mine;
  for (const auto& b : batches) mine.push_back(rank_rows(b, comm));
  double worst = 0;
  for (int s = 0; s < 100; ++s) {
    const Json a = config::to_json(ctl.train(mine[static_cast<std::size_t>(s % 4)]));
    const Json e = config::to_json(single.train(batches[static_cast<std::size_t>(s % 4)]));
    worst = std::max(worst, worst_rel(a, e));
    if (s % 25 == 24) ctl.next_epoch(), single.next_epoch();
  }
  const double wp = worst_rel(params_of(ctl), params_of(single));
  if (comm.rank() == 0)
    std::printf("np %d tutorial config, 100 steps: worst rel err losses %.1e parameters %.1e\n", comm.size(), worst, wp);
  CHECK(worst <= 1e-5);
  CHECK(wp <= 1e-5);
  ctl.check_replicas();
}

TEST_CASE("distributed step: a 1-rank MPI communicator is the default path, bit for bit", "[dist][self]") {
  MPI_Comm alone;
  MPI_Comm_split(MPI_COMM_WORLD, world().rank(), 0, &alone);
  {
    const dist::Comm one = dist::mpi_comm(alone);
    REQUIRE(one.size() == 1);
    Controller<float> a(mixed_spec()), b(mixed_spec(), one);
    const auto ra = run_mixed(a, 8, 13, [](Batch<float> x) { return x; });
    const auto rb = run_mixed(b, 8, 13, [](Batch<float> x) { return x; });
    CHECK(ra == rb);
    CHECK(same_bits(params_of(a), params_of(b)));
  }
  MPI_Comm_free(&alone);
}

TEST_CASE("distributed step: a rank's invalid rows stop the call on every rank, changing nothing",
          "[dist][errors]") {
  const dist::Comm& comm = world();
  Controller<float> ctl(mixed_spec(), comm);
  const Batch<float> good = rank_rows(mixed_batch<float>(2, 11), comm);
  Batch<float> bad = good;
  if (comm.rank() == comm.size() - 1) bad.expr(0, 0) = std::numeric_limits<float>::quiet_NaN();
  const auto before = params_of(ctl);
  const auto rng = ctl.rng().state();
  try {
    ctl.train(bad);
    FAIL("no rank threw");
  } catch (const Error& e) {  // the bad rank names its problem, the others name the bad rank
    const std::string what = e.what();
    INFO(what);
    CHECK((comm.rank() == comm.size() - 1 ? what.find("non-finite") != std::string::npos || what.find("NaN") != std::string::npos
                                          : what.find("rank " + std::to_string(comm.size() - 1)) != std::string::npos));
  }
  CHECK(same_bits(params_of(ctl), before));
  CHECK(ctl.rng().state() == rng);
  ctl.train(good);  // the ranks are still in step
  ctl.check_replicas();
}

TEST_CASE("distributed step: once warm, train, accumulate, eval and loss allocate nothing on any rank",
          "[dist][alloc]") {
  const dist::Comm& comm = world();
  Controller<float> ctl(mixed_spec(), comm);
  const bool overlap = GENERATE(false, true);  // gradient sums started after or during backward
  ctl.set_gradient_overlap(overlap);
  std::vector<Batch<float>> batches;  // dense and sparse, built before counting
  for (std::uint64_t s = 1; s <= 4; ++s) batches.push_back(rank_rows(mixed_batch<float>(s, 13), comm));
  TrainOptions heads;  // another selection: a GRL-free, reconstruction-free step
  heads.scope.reconstruction = false;
  heads.step.save_raw_loss = true;
  auto round = [&] {
    for (const auto& b : batches) ctl.train(b);
    ctl.train(batches[0], heads);
    ctl.accumulate(batches[1]);
    ctl.accumulate(batches[2]);
    ctl.apply_accumulated();
    ctl.eval(batches[3]);
    ctl.loss(batches[1]);
  };
  for (int i = 0; i < 3; ++i) round();  // warm: arenas, plans and buffers sized
  long allocs = 0;
  {
    const CountedAllocations counted;
    for (int i = 0; i < 5; ++i) round();
    allocs = counted.count();
  }
  std::vector<long> all(static_cast<std::size_t>(comm.size()));
  comm.allgather(std::span<const long>(&allocs, 1), std::span<long>(all));
  for (int r = 0; r < comm.size(); ++r) {
    INFO("rank " << r << " of " << comm.size() << ": " << all[static_cast<std::size_t>(r)]
                 << " allocations in 5 warm rounds of 9 calls, overlap " << overlap);
    CHECK(all[static_cast<std::size_t>(r)] == 0);
  }
  ctl.check_replicas();
}

TEST_CASE("distributed step: frozen modules' gradients are summed over ranks, the same on every rank",
          "[dist][frozen]") {
  // frozen gradients are never zero-filled: they add up over steps (and summed steps), and are
  // checkpointed, so every rank must hold the single-process sum, not its own rows' share of it
  const dist::Comm& comm = world();
  ExperimentSpec spec = mixed_spec();
  spec.optimizer.excludes = {{"decoder", ""}, {"pheno_latent_compressors", "p"}};
  Controller<double> single(spec), ctl(spec, comm);
  run_mixed(single, 9, 11, [](Batch<double> b) { return b; });
  run_mixed(ctl, 9, 11, [&](const Batch<double>& b) { return rank_rows(b, comm); });
  ctl.check_replicas();  // gradients included: throws on every rank if any rank's differ
  std::vector<double> got, expected;
  for (const auto* c : {&ctl, &single})
    for (const auto& p : c->model().parameters().all())
      if (!p.trainable) (c == &ctl ? got : expected).insert((c == &ctl ? got : expected).end(), p.grad.begin(), p.grad.end());
  REQUIRE(!expected.empty());
  CHECK(std::any_of(expected.begin(), expected.end(), [](double g) { return g != 0; }));
  CHECK(worst_rel(got, expected) <= 1e-12);
}

TEST_CASE("distributed step: the sharded optimizer gives the replicated step's state bit for bit", "[dist][zero]") {
  // ZeRO stage 1 (the default): each rank updates its chunk of the encoder's and decoder's
  // parameters and gathers the rest. RMSProp is elementwise, so parameters, gradients and state
  // (momentum and weight decay on, a frozen module too) must be the replicated step's bits.
  const dist::Comm& comm = world();
  ExperimentSpec spec = mixed_spec();
  spec.optimizer.momentum = 0.9;
  spec.optimizer.weight_decay = 1e-3;
  spec.optimizer.excludes = {{"pheno_latent_compressors", "p"}};
  Controller<float> sharded(spec, comm), replicated(spec, comm);
  replicated.set_optimizer_sharding(false);
  REQUIRE(sharded.optimizer_sharded());
  REQUIRE(!replicated.optimizer_sharded());
  const auto rows = [&](const Batch<float>& b) { return rank_rows(b, comm); };
  CHECK(run_mixed(sharded, 9, 13, rows) == run_mixed(replicated, 9, 13, rows));
  const auto& sp = sharded.model().parameters().all();  // read before params_of(), which syncs
  const auto& rp = replicated.model().parameters().all();
  bool values_same = true;  // gathered after every step
  for (auto a = sp.begin(), b = rp.begin(); a != sp.end(); ++a, ++b)
    values_same = values_same && std::equal(a->value.begin(), a->value.end(), b->value.begin(), b->value.end());
  CHECK(values_same);

  // before sync_to_host() a rank holds the sum and the state of its own chunk only
  std::size_t stale = 0;
  const auto& so = sharded.optimizer().state();
  const auto& ro = replicated.optimizer().state();
  for (std::size_t i = 0; i < so.size(); ++i)
    if (so[i].initialised)
      for (Index e = 0; e < so[i].square_avg.size(); ++e) stale += so[i].square_avg.data()[e] != ro[i].square_avg.data()[e];
  CHECK(stale > 0);

  const TrainingState a = sharded.capture(), b = replicated.capture();  // capture() gathers (collective)
  REQUIRE(a.params.size() == b.params.size());
  for (std::size_t i = 0; i < a.params.size(); ++i) {
    INFO(a.params[i].name);
    CHECK(a.params[i].value == b.params[i].value);
    CHECK(a.params[i].grad == b.params[i].grad);
    CHECK(a.params[i].square_avg == b.params[i].square_avg);
    CHECK(a.params[i].momentum == b.params[i].momentum);
  }
  sharded.check_replicas();
  // and it goes on from the gathered state exactly as the replicated one
  sharded.train(rows(mixed_batch<float>(77, 13)));
  replicated.train(rows(mixed_batch<float>(77, 13)));
  CHECK(same_bits(params_of(sharded), params_of(replicated)));
}

TEST_CASE("distributed step: summing gradients during backward (overlap) changes no bit", "[dist][overlap]") {
  // each parameter's sum starts from Tape::backward's hook in backward order instead of after
  // backward in registration order: every element is still x_0 + ... + x_{N-1}
  const dist::Comm& comm = world();
  ExperimentSpec spec = mixed_spec();
  spec.optimizer.excludes = {{"decoder", ""}};  // a frozen module's held gradient too
  Controller<float> after(spec, comm), during(spec, comm), during_replicated(spec, comm);
  during.set_gradient_overlap(true);
  during_replicated.set_gradient_overlap(true);
  during_replicated.set_optimizer_sharding(false);
  const auto rows = [&](const Batch<float>& b) { return rank_rows(b, comm); };
  const auto expected = run_mixed(after, 9, 13, rows);
  CHECK(run_mixed(during, 9, 13, rows) == expected);
  CHECK(run_mixed(during_replicated, 9, 13, rows) == expected);
  const auto want = params_of(after);
  CHECK(same_bits(params_of(during), want));
  CHECK(same_bits(params_of(during_replicated), want));
  const TrainingState a = after.capture(), b = during.capture(), c = during_replicated.capture();
  for (std::size_t i = 0; i < a.params.size(); ++i) {
    INFO(a.params[i].name);
    CHECK(b.params[i].grad == a.params[i].grad);
    CHECK(c.params[i].grad == a.params[i].grad);
    CHECK(b.params[i].square_avg == a.params[i].square_avg);
  }
  during.check_replicas();
}
