// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// KL_gaussian_mixture: sum over latent dims of KL(N(mu_z, var_z) || N(mu_s, var_s)), both
/// diagonal Gaussians fitted (mean, biased variance + 1e-8) to the latent Z and to samples S of
/// the gaussian-mixture prior. Fixes upstream, where this term always raises (SPEC §9).
#pragma once

#include <array>

#include "sakura/regularizers/concepts.hpp"
#include "sakura/regularizers/priors.hpp"

namespace sakura {

struct KlGaussianMixture {
  static constexpr std::array<std::string_view, 1> names{"KL_gaussian_mixture"};
  static constexpr LabelUse label_use = LabelUse::Optional;
  struct Options {
    int n_labels = 10;
    double x_std = 0.5, y_std = 0.1;
  };
  static constexpr std::tuple fields{detail::field("gaussian_mixture_n_labels", &Options::n_labels, true),
                                     detail::field("gaussian_mixture_x_var", &Options::x_std),
                                     detail::field("gaussian_mixture_y_var", &Options::y_std)};
  static const char* invalid(const Options& o, const RegContext&) {
    return o.n_labels < 1 ? "gaussian_mixture_n_labels must be at least 1" : nullptr;
  }
  template <class T, class Dev>
  static Var apply(RegArgs<T, Dev>& a, const Options& o) {
    Tape<T, Dev>& t = a.tape;
    if (a.labels) sakura::detail::require_labels(a.labels, t.rows(a.z), o.n_labels, a.site);
    Var prior = a.draws.draw(t, a.site, DrawKind::prior_samples,
                             priors::gaussian_mixture(t.rows(a.z), t.cols(a.z), o.n_labels, o.x_std, o.y_std), a.labels);
    return t.kl_gauss(a.z, prior);
  }
};

}  // namespace sakura
