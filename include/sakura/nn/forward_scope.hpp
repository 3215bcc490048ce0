// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// Forward scope (SPEC §1): which latents, heads and decoder a call computes, closed over the
/// blocks' attachments; one closure serves the runtime plan (Extractor::plan) and the
/// compile-time one (controller/policy.hpp, evaluated in a constant expression).
#pragma once

#include <cstddef>
#include <vector>

#include "sakura/nn/model_spec.hpp"

namespace sakura {

/// Which parts of the model a call computes (runtime form; Extractor::plan() builds it).
/// A compile-time plan (controller/policy.hpp) offers the same accessors returning
/// std::bool_constant, so the same forward() skips unused branches at compile time.
struct ForwardPlan {
  bool main_ = false;   ///< main latent
  bool all_ = false;    ///< concatenated latent (decoder input, all_lat attachments)
  bool recon_ = false;  ///< decoder
  std::vector<char> sig_lat_, sig_head_, ph_lat_, ph_head_;

  bool main() const { return main_; }
  bool all() const { return all_; }
  bool recon() const { return recon_; }
  bool sig_lat(std::size_t i) const { return sig_lat_[i]; }
  bool sig_head(std::size_t i) const { return sig_head_[i]; }
  bool ph_lat(std::size_t i) const { return ph_lat_[i]; }
  bool ph_head(std::size_t i) const { return ph_head_[i]; }
  template <class F>
  void for_each_sig(F&& f) const {
    for (std::size_t i = 0; i < sig_lat_.size(); ++i) f(i);
  }
  template <class F>
  void for_each_ph(F&& f) const {
    for (std::size_t i = 0; i < ph_lat_.size(); ++i) f(i);
  }
};

namespace detail {

/// The forward scope of a call, written into `p` (a ForwardPlan, or the compile-time plan's
/// data: the same members, arrays instead of vectors). On entry p's head flags say which heads
/// the call's terms read and its latent flags are all false, sized n_sig and n_ph. Marks every
/// latent a needed head reads, through the attachments, and, for the reconstruction, the main
/// latent and every non-attached latent (the decoder's input).
/// `block(kind, i)` is block i's attachment: `attach` (AttachTo) and `attach_keys` (each with
/// `kind` and `index`; a negative index, a key the model lacks, is skipped).
template <class Plan, class BlockAt>
constexpr void close_forward_scope(Plan& p, bool recon, bool main_reg, std::size_t n_sig, std::size_t n_ph,
                                   const BlockAt& block) {
  p.recon_ = recon;
  p.main_ = recon || main_reg;
  p.all_ = recon;
  auto mark = [&](BlockKind kind, std::size_t i) {  // false when already needed
    auto set = [](auto& flag) {
      const bool fresh = !flag;
      flag = true;
      return fresh;
    };
    return kind == BlockKind::Signature ? set(p.sig_lat_[i]) : set(p.ph_lat_[i]);
  };
  auto need = [&](auto& self, BlockKind kind, std::size_t i) -> void {
    if (!mark(kind, i)) return;
    const auto& b = block(kind, i);
    switch (b.attach) {
      case AttachTo::None: break;
      case AttachTo::MainLat: p.main_ = true; break;
      case AttachTo::AllLat: p.all_ = true; break;
      default:
        for (const auto& r : b.attach_keys) {
          if (r.kind == BlockKind::Main) p.main_ = true;
          else if (r.index >= 0) self(self, r.kind, static_cast<std::size_t>(r.index));
        }
    }
  };
  for (std::size_t i = 0; i < n_sig; ++i)
    if (p.sig_head_[i]) need(need, BlockKind::Signature, i);
  for (std::size_t i = 0; i < n_ph; ++i)
    if (p.ph_head_[i]) need(need, BlockKind::Pheno, i);
  if (p.all_) {  // the concatenated latent: the main latent and every block with its own latent
    p.main_ = true;
    for (std::size_t i = 0; i < n_sig; ++i)
      if (block(BlockKind::Signature, i).attach == AttachTo::None) p.sig_lat_[i] = true;
    for (std::size_t i = 0; i < n_ph; ++i)
      if (block(BlockKind::Pheno, i).attach == AttachTo::None) p.ph_lat_[i] = true;
  }
}

}  // namespace detail

}  // namespace sakura
