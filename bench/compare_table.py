#!/usr/bin/env python3
"""The table of bench/compare.sh: our Google Benchmark times against the PyTorch reference.

    compare_table.py --ours R1.json [R2.json ...] [--torch T1.json [T2.json ...]]

Round i pairs ours Ri with torch Ti (same count). Per benchmark of ours it prints our time, our
time over the same case's floor/ benchmark (the step's GEMMs alone) at the same thread count, the
reference's best time over its thread counts (and its time at our thread count),
x = torch / ours (> 1: we are faster), and for a sparse-input (*_csr) benchmark x_dense, the
dense-input benchmark of the same case and API over ours. With several rounds, the times are medians over rounds
and each x is the median of the per-round ratios, followed by their range: the ratio of two
runs taken back to back survives a VM whose speed drifts between rounds; either time alone
does not. Our benchmark names match the reference by their first two '/'-separated
components: step/tutorial_both/runtime/threads:2 -> step/tutorial_both.
"""
import argparse
import json
import re
import statistics
import sys

UNIT = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def load_ours(path):
    """(ordered names, {run_name: ms}) from a Google Benchmark JSON: the median aggregate when
    repetitions were reported as aggregates, else the median of the plain runs."""
    with open(path) as f:
        gb = json.load(f)
    order, med, runs = [], {}, {}
    for b in gb.get("benchmarks", []):
        name = b.get("run_name") or re.sub(r"_(mean|median|stddev|cv)$", "", b["name"])
        if b.get("error_occurred"):
            print(f"# {name}: error: {b.get('error_message', '')}")
            continue
        ms = b["real_time"] * UNIT[b.get("time_unit", "ns")]
        if name not in order:
            order.append(name)
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                med[name] = ms
        else:
            runs.setdefault(name, []).append(ms)
    for name, v in runs.items():
        med.setdefault(name, statistics.median(v))
    return order, med, gb.get("context", {})


def load_torch(path):
    """({case: (best ms, threads)}, {(case, threads): ms}, device) from reference_torch.py JSON."""
    with open(path) as f:
        tj = json.load(f)
    best, by_thr = {}, {}
    for r in tj.get("results", []):
        by_thr[(r["name"], r.get("threads"))] = r["median_ms"]
        if r["name"] not in best or r["median_ms"] < best[r["name"]][0]:
            best[r["name"]] = (r["median_ms"], r.get("threads"))
    return best, by_thr, tj.get("device", "n/a")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ours", nargs="+", required=True, metavar="JSON", help="sakura_bench JSON, one per round")
    p.add_argument("--torch", nargs="*", default=[], metavar="JSON", help="reference_torch.py JSON, one per round")
    a = p.parse_args(argv)
    if a.torch and len(a.torch) != len(a.ours):
        p.error(f"--torch has {len(a.torch)} files for {len(a.ours)} rounds of --ours")

    rounds = [load_ours(f) for f in a.ours]
    order = []
    for o, _, _ in rounds:
        order += [n for n in o if n not in order]
    # by case, its floor first (random interleaving shuffles the JSON's order)
    order.sort(key=lambda n: (n.split("/")[1:2], not n.startswith("floor/"), n))
    refs = [load_torch(f) for f in a.torch]
    device = refs[0][2] if refs else "n/a"
    ctx = rounds[0][2]
    n = len(rounds)

    print()
    print(f"# ours : {ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} CPUs, "
          f"{ctx.get('library_build_type', '?')} Google Benchmark; median of repetitions (real time)")
    print(f"# torch: {device}; best median over thread counts; x = torch / ours (>1: we are faster)")
    if n > 1:
        print(f"# {n} interleaved rounds: times are medians over rounds, x the median of the per-round "
              f"ratios [min-max]")
    w = max([len(s) for s in order] + [9])
    hdr = (f"{'benchmark':{w}s} {'ours_ms':>10s} {'/floor':>7s} {'torch_ms':>10s} {'thr':>4s} {'x_best':>7s}"
           f" {'torch_same_thr':>14s} {'x_same':>7s}" + (f" {'x_best range':>14s}" if n > 1 else "")
           + (f" {'x_dense':>7s}" if any("_csr/" in s for s in order) else ""))
    print(hdr)
    print("-" * len(hdr))
    for name in order:
        ours = [r[1][name] for r in rounds if name in r[1]]
        if not ours:
            continue
        prefix = "/".join(name.split("/")[:2])
        m = re.search(r"threads:(\d+)", name)
        thr = int(m.group(1)) if m else None
        x_best, x_same, t_best, t_same, t_thrs = [], [], [], [], []
        for (o_round, ref) in zip(rounds, refs):
            o = o_round[1].get(name)
            tb = ref[0].get(prefix)
            if o is None or tb is None:
                continue
            x_best.append(tb[0] / o)
            t_best.append(tb[0])
            t_thrs.append(tb[1])
            ts = ref[1].get((prefix, thr))
            if ts is not None:
                x_same.append(ts / o)
                t_same.append(ts)
        # our time over the same case's floor (its GEMMs alone) at the same thread count, per round
        over_floor = []
        if name.startswith("step/") and thr:
            want = ["floor", name.split("/")[1], f"threads:{thr}"]
            for r in rounds:
                floors = [v for k, v in r[1].items() if k.split("/")[:3] == want and v > 0]
                if name in r[1] and floors:
                    over_floor.append(r[1][name] / floors[0])
        line = f"{name:{w}s} {statistics.median(ours):10.3f}"
        line += f" {statistics.median(over_floor):7.2f}" if over_floor else f" {'':>7s}"
        if x_best:
            t_thr = statistics.mode(t_thrs)  # the reference's usual best thread count
            line += (f" {statistics.median(t_best):10.3f} {str(t_thr if t_thr is not None else '-'):>4s}"
                     f" {statistics.median(x_best):7.2f}")
        else:
            line += f" {'n/a':>10s} {'':>4s} {'':>7s}"
        if x_same:
            line += f" {statistics.median(t_same):14.3f} {statistics.median(x_same):7.2f}"
        else:
            line += f" {'':>14s} {'':>7s}"
        if n > 1:
            line += f" {min(x_best):6.2f}-{max(x_best):<7.2f}" if x_best else f" {'':>14s}"
        # sparse input: the dense-input step of the same case and API over ours, per round
        dense = name.replace("_csr/", "/")
        x_dense = [r[1][dense] / r[1][name] for r in rounds if dense != name and name in r[1] and dense in r[1]]
        if x_dense:
            line += f" {statistics.median(x_dense):7.2f}"
        print(line.rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
