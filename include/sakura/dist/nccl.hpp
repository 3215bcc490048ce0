// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
/// The NCCL transport of dist::Comm, for GPU ranks (link sakura::nccl, built with the CUDA backend
/// when NCCL is found): the data collectives (allgather_rows, sums, GradientSum) move GPU memory
/// through NCCL on a stream of their own, and the sums are added in rank order by one kernel, so
/// they are bit-identical to the MPI engine's host sums. Host collectives (allreduce_sum,
/// broadcast, check_same, abort) go through the host Comm, which also bootstraps NCCL.
///
/// Example (one GPU per rank):
///   dist::Comm host = dist::mpi_comm();
///   dist::Comm gpus = dist::nccl_comm(host, host.rank() % cuda::device_count());
#pragma once

#if !defined(SAKURA_WITH_NCCL) || !SAKURA_WITH_NCCL
#error "sakura/dist/nccl.hpp needs sakura::nccl (built with the CUDA backend when NCCL is found; link sakura::nccl)"
#endif

#include "sakura/dist/comm.hpp"

namespace sakura::dist {

/// A Comm over the same ranks as `host`, with data collectives on GPU `device` (-1: the current
/// one). Select the device before any other GPU work of the library: its stream lives there.
/// Data collectives are ordered on the library's CUDA stream: they start after the work queued
/// before them and the work queued after them sees their results (the host is not blocked).
Comm nccl_comm(const Comm& host, int device = -1);

}  // namespace sakura::dist
