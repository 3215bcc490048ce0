#!/usr/bin/env python3
"""PyTorch speed reference for the SAKURA training step (sakura-cpp benchmarks).

The same network and one training step as upstream SAKURA's
ExtractorController.train (zero_grad, forward, losses, weighted sum, backward,
RMSprop step), written in plain PyTorch. Case names match the Google Benchmark
names of build/bench/sakura_bench (prefix "step/<case>").

Run with Debian's torch 1.13:   /usr/bin/python3 bench/reference_torch.py
(the first python3 on PATH may lack torch).

Cases (see CASES below):
  step/tutorial_main          x:100x10000, pre-encoder 200-200, main latent 50, decoder
                              200-200-10000 ReLU; MSE + L1 (w 1) + SW2_uniform(-10,10,
                              50 projections) on the main latent (w 1e-4)
  step/tutorial_signature     pre-encoder + main compressor + cd8 FCRegressor head
                              (50-5-5-2) on the main latent; MSE + L1 + Cosine vs [100,2]
  step/tutorial_both          all of the above in one step
  step/tutorial_both_sparse90 tutorial_both with 90% zero input (dense tensor unless
                              --sparse-input)
  step/tiny_both              200 genes, hidden 32, latent 8, batch 32, all terms

Threads: each case is run for every count in --threads (torch.set_num_threads and,
because Debian's torch calls OpenBLAS for Linear and set_num_threads does not
reach it, openblas_set_num_threads too). Two thread pools (libgomp and OpenBLAS
pthreads) spin against each other on small machines: run with
OMP_WAIT_POLICY=PASSIVE. This script sets OMP_WAIT_POLICY=PASSIVE itself when the
caller has not set it (it must be set before torch is imported; pass
--omp-wait-policy keep to leave the environment alone).
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

CASES = {
    # name: genes, hidden (pre-encoder = decoder width), latent, batch, terms, input zero fraction
    "step/tutorial_main": dict(G=10000, H=200, L=50, N=100, recon=True, sw2=True, sig=False, zeros=None),
    "step/tutorial_signature": dict(G=10000, H=200, L=50, N=100, recon=False, sw2=False, sig=True, zeros=None),
    "step/tutorial_both": dict(G=10000, H=200, L=50, N=100, recon=True, sw2=True, sig=True, zeros=None),
    "step/tutorial_both_sparse90": dict(G=10000, H=200, L=50, N=100, recon=True, sw2=True, sig=True, zeros=0.9),
    "step/tiny_both": dict(G=200, H=32, L=8, N=32, recon=True, sw2=True, sig=True, zeros=None),
}

# Loss configuration (the pbmc5k tutorial's values)
W_MSE, W_L1, W_SW2 = 1.0, 1.0, 1e-4
W_SIG_MSE, W_SIG_L1, W_SIG_COS = 1.0, 1.0, 1.0
SW2_LOW, SW2_HIGH, SW2_PROJ = -10.0, 10.0, 50
SIG_HIDDEN, SIG_OUT = 5, 2
LR, ALPHA = 1e-3, 0.9
N_BATCHES = 4          # distinct pre-generated batches cycled through
DATA_SEED = 12345


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2",
                   help="comma-separated thread counts for CPU runs (default 1,2)")
    p.add_argument("--cases", default="all",
                   help="comma-separated case names (with or without the 'step/' prefix) or 'all'")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cuda: model and data on the GPU, synchronize around each step, "
                        "thread settings skipped")
    p.add_argument("--quick", action="store_true", help="short smoke run (3 warm-up, >=5 timed steps)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up steps (default 20)")
    p.add_argument("--min-steps", type=int, default=20, help="minimum timed steps (default 20)")
    p.add_argument("--min-time", type=float, default=2.0,
                   help="time each case for about this many seconds (default 2.0)")
    p.add_argument("--sparse-input", action="store_true",
                   help="step/tutorial_both_sparse90: feed the first Linear a sparse (COO) input "
                        "via torch.sparse.addmm instead of a dense tensor")
    p.add_argument("--omp-wait-policy", default="PASSIVE",
                   help="value for OMP_WAIT_POLICY when the caller has not set it "
                        "(default PASSIVE; 'keep' leaves the environment as it is)")
    p.add_argument("--json", metavar="OUT", help="write results as JSON to OUT")
    p.add_argument("--list-cases", action="store_true", help="print the case names and exit")
    a = p.parse_args(argv)
    if a.list_cases:
        print("\n".join(CASES))
        sys.exit(0)
    if a.quick:
        a.warmup, a.min_steps, a.min_time = 3, 5, 0.2
    return a


ARGS = parse_args(sys.argv[1:])
if ARGS.omp_wait_policy != "keep":
    os.environ.setdefault("OMP_WAIT_POLICY", ARGS.omp_wait_policy)

import numpy as np  # noqa: E402  (after the environment is set)
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def _openblas():
    import ctypes
    for name in ("libopenblas.so.0", "libopenblas.so"):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_set_num_threads
            return lib
        except (OSError, AttributeError):
            pass
    return None


OPENBLAS = _openblas()


def openblas_core():
    if OPENBLAS is None:
        return "not found"
    try:
        import ctypes
        OPENBLAS.openblas_get_corename.restype = ctypes.c_char_p
        return OPENBLAS.openblas_get_corename().decode()
    except (AttributeError, OSError):
        return "unknown core"


def set_threads(n):
    torch.set_num_threads(n)
    if OPENBLAS is not None:
        OPENBLAS.openblas_set_num_threads(n)


# ---------------------------------------------------------------- model
class Extractor(nn.Module):
    """Legacy SAKURA shapes: FCPreEncoder, FCCompressor, FCDecoder (relu), FCRegressor."""

    def __init__(self, G, H, L, with_decoder, with_sig):
        super().__init__()
        self.pre_encoder = nn.Sequential(nn.Linear(G, H), nn.CELU(), nn.Linear(H, H), nn.CELU())
        self.main_latent_compressor = nn.Sequential(nn.Linear(H, L), nn.CELU())
        self.decoder = (nn.Sequential(nn.Linear(L, H), nn.CELU(), nn.Linear(H, H), nn.CELU(),
                                      nn.Linear(H, G), nn.ReLU()) if with_decoder else None)
        self.cd8 = (nn.Sequential(nn.Linear(L, SIG_HIDDEN), nn.CELU(), nn.Linear(SIG_HIDDEN, SIG_HIDDEN),
                                  nn.CELU(), nn.Linear(SIG_HIDDEN, SIG_OUT)) if with_sig else None)

    def first_layer_sparse(self, x_sp):
        lin = self.pre_encoder[0]
        h = torch.sparse.addmm(lin.bias.unsqueeze(0).expand(x_sp.shape[0], -1), x_sp, lin.weight.t())
        for m in list(self.pre_encoder)[1:]:
            h = m(h)
        return h


# ---------------------------------------------------------------- data
def make_data(c, device, sparse_input):
    """Log-normalised-like data: log1p(Poisson(gene mean x cell size factor))."""
    rng = np.random.default_rng(DATA_SEED)
    G, N = c["G"], c["N"]
    gene_mean = np.minimum(rng.lognormal(mean=-1.0, sigma=1.5, size=G), 50.0)
    batches = []
    for _ in range(N_BATCHES):
        size = rng.lognormal(0.0, 0.3, size=(N, 1))
        if c["zeros"] is None:
            counts = rng.poisson(gene_mean[None, :] * size)
        else:  # exactly (1 - zeros) * G non-zeros per cell, at random genes
            nnz = int(round((1.0 - c["zeros"]) * G))
            counts = np.zeros((N, G))
            for i in range(N):
                idx = rng.choice(G, size=nnz, replace=False)
                counts[i, idx] = 1 + rng.poisson(gene_mean[idx] * size[i, 0])
        x = np.log1p(counts).astype(np.float32)
        # cd8 signature target: expression of two marker genes (as batch.expr['cd8'])
        marker = np.argsort(-gene_mean)[[10, 20]] if G > 20 else np.array([0, 1])
        y = x[:, marker].copy()
        xt = torch.from_numpy(x).to(device)
        xs = xt.to_sparse().coalesce() if sparse_input else None
        batches.append((xt, xs, torch.from_numpy(y).to(device)))
    zero_frac = float(np.mean([(b[0] == 0).float().mean().item() for b in batches]))
    return batches, zero_frac


# ---------------------------------------------------------------- SW2 (sakura.utils.sliced_wasserstein)
def sw2_uniform(z, device):
    n, l = z.shape
    prior = torch.from_numpy(np.random.uniform(size=(n, l), low=SW2_LOW, high=SW2_HIGH)).float().to(device)
    w = np.random.normal(size=(SW2_PROJ, l))
    proj = torch.from_numpy(w / np.sqrt((w ** 2).sum(axis=1, keepdims=True))).float().to(device)
    ep = z.matmul(proj.t())
    dp = prior.matmul(proj.t())
    d = torch.sort(ep.t(), dim=1)[0] - torch.sort(dp.t(), dim=1)[0]
    return torch.pow(d, 2).mean()


# ---------------------------------------------------------------- one training step
def make_step(model, opt, c, device, sparse_input):
    def step(batch):
        x, xs, y = batch
        model.train()
        h = model.first_layer_sparse(xs) if sparse_input else model.pre_encoder(x)
        z = model.main_latent_compressor(h)
        terms = []
        if c["recon"]:
            re_x = model.decoder(z)
            terms.append(F.mse_loss(x, re_x) * W_MSE)
            terms.append(F.l1_loss(x, re_x) * W_L1)
        if c["sw2"]:
            terms.append(sw2_uniform(z, device) * W_SW2)
        if c["sig"]:
            out = model.cd8(z)
            terms.append(F.mse_loss(out, y) * W_SIG_MSE)
            terms.append(F.l1_loss(out, y) * W_SIG_L1)
            terms.append((1.0 - F.cosine_similarity(out, y)).mean() * W_SIG_COS)
        total = torch.zeros(1, device=device)  # upstream: torch.Tensor([0.]) += each term
        for t in terms:
            total = total + t
        opt.zero_grad()  # torch 1.13 default: fill with zeros (set_to_none=False), as upstream
        total.backward()
        opt.step()
        return total
    return step


def run_case(name, threads, device, args):
    c = CASES[name]
    sparse_input = args.sparse_input and c["zeros"] is not None
    torch.manual_seed(0)
    np.random.seed(0)
    model = Extractor(c["G"], c["H"], c["L"], c["recon"], c["sig"]).to(device)
    opt = torch.optim.RMSprop(model.parameters(), lr=LR, alpha=ALPHA)  # one optimizer, every module
    batches, zero_frac = make_data(c, device, sparse_input)
    step = make_step(model, opt, c, device, sparse_input)
    cuda = device == "cuda"

    def timed(i):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(batches[i % N_BATCHES])
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    t_w = time.perf_counter()
    for i in range(args.warmup):
        last = timed(i)
    t_w = time.perf_counter() - t_w
    est = min(last, t_w / max(args.warmup, 1)) if args.warmup else 0.01
    n = max(args.min_steps, int(math.ceil(args.min_time / max(est, 1e-6))))
    times = [timed(args.warmup + i) for i in range(n)]
    loss = float(step(batches[0]).item())
    if not math.isfinite(loss):
        print(f"warning: {name}: non-finite loss {loss}", file=sys.stderr)
    return dict(name=name, threads=threads, steps=n, median_ms=1e3 * statistics.median(times),
                min_ms=1e3 * min(times), zero_fraction=round(zero_frac, 4),
                sparse_input=bool(sparse_input), last_loss=loss)


def device_description(device):
    if device == "cuda":
        return f"cuda: {torch.cuda.get_device_name(0)}"
    model = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu: {model}, {os.cpu_count()} logical CPUs"


def main(args):
    if args.cases == "all":
        names = list(CASES)
    else:
        names = []
        for s in args.cases.split(","):
            s = s.strip()
            if not s:
                continue
            key = s if s.startswith("step/") else "step/" + s
            if key not in CASES:
                sys.exit(f"unknown case {s!r}; known: {', '.join(CASES)}")
            names.append(key)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("--device cuda: this torch has no usable CUDA device")
        thread_list = [None]
    else:
        thread_list = [int(t) for t in args.threads.split(",") if t.strip()]

    dev = device_description(args.device)
    print(f"# torch {torch.__version__}, {dev}")
    print(f"# OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')} "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')} "
          f"openblas core={openblas_core()}")
    if args.device == "cpu" and OPENBLAS is None:
        # measured 2026-12-01: tutorial_both 854 ms per step on netlib's libblas3 against ~55 ms on OpenBLAS
        print("# warning: no OpenBLAS in this process: Debian's torch then runs the reference BLAS (libblas3), "
              "~15x slower here; install libopenblas0-pthread (scripts/install-deps.sh --bench)", flush=True)
        print("reference_torch.py: warning: PyTorch is on the reference BLAS, not OpenBLAS; its times are not a "
              "fair reference (install libopenblas0-pthread)", file=sys.stderr, flush=True)
    if args.device == "cpu" and openblas_core().lower() in ("prescott", "core2", "atom", "nehalem"):
        print("# warning: OpenBLAS runs generic kernels on this CPU (not recognised); the documented "
              "environment sets OPENBLAS_CORETYPE=Haswell", flush=True)
    print(f"# warm-up {args.warmup} steps, then max({args.min_steps} steps, ~{args.min_time:g} s)")
    hdr = f"{'case':30s} {'threads':>7s} {'steps':>6s} {'median_ms':>10s} {'min_ms':>9s} {'zeros':>6s} {'input':>6s}"
    print(hdr)
    print("-" * len(hdr))
    results = []
    for name in names:
        for th in thread_list:
            if th is not None:
                set_threads(th)
            r = run_case(name, th, args.device, args)
            results.append(r)
            print(f"{name:30s} {str(th) if th else '-':>7s} {r['steps']:6d} {r['median_ms']:10.3f} "
                  f"{r['min_ms']:9.3f} {r['zero_fraction']:6.3f} {'sparse' if r['sparse_input'] else 'dense':>6s}",
                  flush=True)
    print()
    best = {}
    for name in names:
        rs = [r for r in results if r["name"] == name]
        b = min(rs, key=lambda r: r["median_ms"])
        best[name] = dict(threads=b["threads"], median_ms=b["median_ms"], min_ms=b["min_ms"])
        print(f"best {name:30s} {b['median_ms']:10.3f} ms median (threads {b['threads'] or '-'}, "
              f"min {b['min_ms']:.3f} ms)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev, "torch": torch.__version__, "openblas_core": openblas_core(),
                       "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                       "results": results, "best": best}, f, indent=2)
        print(f"# wrote {args.json}")


if __name__ == "__main__":
    main(ARGS)
