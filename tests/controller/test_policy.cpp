// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// The compile-time path (train<Model, Selection>) gives bit-identical records and parameters to
// the runtime (JSON) path on the same model, batches and draws; and rejects a policy that does
// not describe the loaded config.
#include <catch2/catch.hpp>

#include <cstring>

#include "support/fixtures.hpp"

using namespace sakura;
using namespace sakura::test;

namespace {

bool same_bits(Controller<float>& a, Controller<float>& b) {
  auto& pa = a.model().parameters().all();
  auto& pb = b.model().parameters().all();
  for (std::size_t i = 0; i < pa.size(); ++i) {
    if (std::memcmp(pa[i].value.data(), pb[i].value.data(), sizeof(float) * pa[i].value.size()) != 0) return false;
    if (pa[i].has_grad != pb[i].has_grad) return false;
  }
  return true;
}

bool same_record(const LossRecord& a, const LossRecord& b) {
  auto group = [](const TermValues& x, const TermValues& y) { return x.values == y.values && x.present == y.present; };
  auto block = [&](const BlockRecord& x, const BlockRecord& y) {
    return x.present == y.present && group(x.loss, y.loss) && group(x.regularization, y.regularization) &&
           group(x.loss_raw, y.loss_raw) && group(x.regularization_raw, y.regularization_raw);
  };
  if (a.total != b.total || !block(a.main, b.main)) return false;
  for (std::size_t i = 0; i < a.pheno.size(); ++i)
    if (!block(a.pheno[i], b.pheno[i])) return false;
  for (std::size_t i = 0; i < a.signature.size(); ++i)
    if (!block(a.signature[i], b.signature[i])) return false;
  return true;
}

/// StaticPlan<M, Sel> against the runtime plan of the same heads: every flag equal.
template <class M, class Sel>
void check_plan(const Controller<float>& ctl, bool recon, bool main_reg, const std::vector<char>& sig_heads,
                const std::vector<char>& ph_heads) {
  using P = StaticPlan<M, Sel>;
  ForwardPlan rp;
  ctl.model().plan(rp, recon, main_reg, sig_heads, ph_heads);
  CHECK(P::main() == rp.main());
  CHECK(P::all() == rp.all());
  CHECK(P::recon() == rp.recon());
  P::for_each_sig([&](auto i) {
    INFO("signature " << i);
    CHECK(P::sig_lat(i) == rp.sig_lat(i));
    CHECK(P::sig_head(i) == rp.sig_head(i));
  });
  P::for_each_ph([&](auto i) {
    INFO("phenotype " << i);
    CHECK(P::ph_lat(i) == rp.ph_lat(i));
    CHECK(P::ph_head(i) == rp.ph_head(i));
  });
}

}  // namespace

TEST_CASE("compile-time and runtime paths are bit-identical, step after step", "[policy]") {
  Controller<float> rt(spec_of(base_config(), base_pheno(), base_signature()));
  Controller<float> ct(spec_of(base_config(), base_pheno(), base_signature()));
  REQUIRE(same_bits(rt, ct));
  const auto only_a = config::selection_from_json(rt.model_spec(), BlockKind::Signature,
                                              Json::parse(R"({"a": {"loss": "*", "regularization": "*"}})"), "sel");
  for (int step = 0; step < 6; ++step) {
    const auto batch = base_batch(100 + step);
    INFO("step " << step);
    switch (step % 3) {
      case 0: {  // everything
        TrainOptions o;
        o.step.save_raw_loss = true;
        const LossRecord r = rt.train(batch, o);
        StepOptions so;
        so.save_raw_loss = true;
        REQUIRE(same_record(r, ct.train<Fixture, All>(batch, so)));
        break;
      }
      case 1: {  // the tutorial's cd8_focused split: one attached signature only
        TrainOptions o;
        o.scope.reconstruction = o.scope.main_regularization = false;
        o.scope.phenos = Selection::none();
        o.scope.signatures = only_a;
        const LossRecord r = rt.train(batch, o);
        REQUIRE(same_record(r, ct.train<Fixture, SignatureOnly<"a">>(batch)));
        break;
      }
      case 2: {  // reconstruction + main regularization only
        TrainOptions o;
        o.scope.phenos = Selection::none();
        o.scope.signatures = Selection::none();
        const LossRecord r = rt.train(batch, o);
        REQUIRE(same_record(r, ct.train<Fixture, MainOnly>(batch)));
        break;
      }
    }
    REQUIRE(same_bits(rt, ct));
    rt.next_epoch();
    ct.next_epoch();
  }
}

TEST_CASE("a model policy that does not describe the config is rejected, naming the difference", "[policy]") {
  Controller<float> ctl(spec_of(base_config(), base_pheno(), base_signature()));
  using WrongTerm = Model<Terms<L1>, Terms<Sw2Uniform>, Fixture::signatures, Fixture::phenos>;
  REQUIRE_THROWS_WITH((ctl.train<WrongTerm, All>(base_batch())), Catch::Contains("main_latent.loss.mse is not a L1"));
  using WrongName = Model<Terms<Mse>, Terms<Sw2Uniform>,
                          Blocks<Block<"s", LinRegressorHead, 2, OwnLatent, Terms<Mse>>,
                                 Block<"b", FCRegressorHead, 3, OnMain, Terms<Mse, Cosine>>>,
                          Fixture::phenos>;
  REQUIRE_THROWS_WITH((ctl.train<WrongName, All>(base_batch())), Catch::Contains("'a', the policy says 'b'"));
  using WrongAttach = Model<Terms<Mse>, Terms<Sw2Uniform>,
                            Blocks<Block<"s", LinRegressorHead, 2, OwnLatent, Terms<Mse>>,
                                   Block<"a", FCRegressorHead, 3, OwnLatent, Terms<Mse, Cosine>>>,
                            Fixture::phenos>;
  REQUIRE_THROWS_WITH((ctl.train<WrongAttach, All>(base_batch())), Catch::Contains("signature_config.a"));
  // the right one works after the wrong ones
  REQUIRE(std::isfinite(ctl.train<Fixture, All>(base_batch()).total));
}

TEST_CASE("the compile-time plan equals the runtime plan for every selection", "[policy]") {
  const Controller<float> ctl(spec_of(base_config(), base_pheno(), base_signature()));
  check_plan<Fixture, All>(ctl, true, true, {1, 1}, {1});
  check_plan<Fixture, MainOnly>(ctl, true, true, {0, 0}, {0});
  check_plan<Fixture, SignatureOnly<"a">>(ctl, false, false, {0, 1}, {0});
  check_plan<Fixture, SignatureOnly<"s">>(ctl, false, false, {1, 0}, {0});
  check_plan<Fixture, SignatureOnly<>>(ctl, false, false, {1, 1}, {0});  // no names: every signature
  check_plan<Fixture, PhenoOnly<>>(ctl, false, false, {0, 0}, {1});
  check_plan<Fixture, Select<false, true, NoBlocks, NoBlocks>>(ctl, false, true, {0, 0}, {0});
}

TEST_CASE("the compile-time plan equals the runtime plan through every attachment mode", "[policy][attach]") {
  // tests/support/fixtures.hpp's attachment_signatures() and attachment_phenos() as a policy
  using Reg = LinRegressorHead;
  using M = Model<Terms<Mse>, Terms<Sw2Uniform>,
                  Blocks<Block<"s", Reg, 2, OwnLatent, Terms<Mse>>, Block<"a", Reg, 2, OnSignature<"s">, Terms<Mse>>,
                         Block<"c", Reg, 7, OnAll, Terms<Mse>>,
                         Block<"d", Reg, 5, OnMultiple<MainRef, SignatureRef<"s">>, Terms<Mse>>,
                         Block<"e", Reg, 3, OnMain, Terms<Mse>>, Block<"f", Reg, 2, OnSignature<"a">, Terms<Mse>>>,
                  Blocks<Block<"p", LinClassifierHead, 2, OwnLatent, Terms<Nll>, Terms<L2Regularization>>,
                         Block<"b", LinClassifierHead, 2, OnPheno<"p">, Terms<Nll>>>>;
  const Controller<float> ctl(spec_of(base_config(), attachment_phenos(), attachment_signatures()));
  check_plan<M, SignatureOnly<"a">>(ctl, false, false, {0, 1, 0, 0, 0, 0}, {0, 0});
  check_plan<M, SignatureOnly<"c">>(ctl, false, false, {0, 0, 1, 0, 0, 0}, {0, 0});
  check_plan<M, SignatureOnly<"d">>(ctl, false, false, {0, 0, 0, 1, 0, 0}, {0, 0});
  check_plan<M, SignatureOnly<"e">>(ctl, false, false, {0, 0, 0, 0, 1, 0}, {0, 0});
  check_plan<M, SignatureOnly<"f">>(ctl, false, false, {0, 0, 0, 0, 0, 1}, {0, 0});
  check_plan<M, PhenoOnly<"b">>(ctl, false, false, {0, 0, 0, 0, 0, 0}, {0, 1});
  check_plan<M, MainOnly>(ctl, true, true, {0, 0, 0, 0, 0, 0}, {0, 0});
  check_plan<M, All>(ctl, true, true, {1, 1, 1, 1, 1, 1}, {1, 1});
  // the closure itself, at compile time: f reads a, which reads s; nothing else
  using F = detail::StaticPlanOf<M, SignatureOnly<"f">>;
  static_assert(F::value.sig_lat_[0] && F::value.sig_lat_[1] && F::value.sig_lat_[5] && !F::value.sig_lat_[2] &&
                !F::value.main_ && !F::value.all_);
}
