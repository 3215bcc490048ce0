#!/usr/bin/env python3
"""bench/compare_table.py on hand-made JSON: one round, and three interleaved rounds whose
speeds drift (the table must report the median per-round ratio, not a ratio of medians)."""
import json
import os
import subprocess
import sys
import tempfile

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "compare_table.py")


def ours_json(path, ms_by_name):
    bs = []
    for name, ms in ms_by_name.items():
        bs.append({"name": name + "_median", "run_name": name, "run_type": "aggregate",
                   "aggregate_name": "median", "real_time": ms, "time_unit": "ms"})
        bs.append({"name": name + "_mean", "run_name": name, "run_type": "aggregate",
                   "aggregate_name": "mean", "real_time": ms * 10, "time_unit": "ms"})
    with open(path, "w") as f:
        json.dump({"context": {"host_name": "h", "num_cpus": 2}, "benchmarks": bs}, f)


def torch_json(path, rows):
    with open(path, "w") as f:
        json.dump({"device": "cpu", "results": [{"name": n, "threads": t, "median_ms": ms} for n, t, ms in rows]}, f)


def run(*args):
    r = subprocess.run([sys.executable, TABLE, *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def row(out, name):
    lines = [l for l in out.splitlines() if l.startswith(name + " ")]
    assert len(lines) == 1, out
    return lines[0].split()


def main():
    d = tempfile.mkdtemp()
    p = lambda n: os.path.join(d, n)
    # one round: 2 threads ours 10 ms; torch best 40 ms at 1 thread, 50 ms at 2 threads
    ours_json(p("o1.json"), {"step/tiny_both/policy/threads:2/real_time": 10.0, "floor/tiny_both/threads:2/real_time": 4.0})
    torch_json(p("t1.json"), [("step/tiny_both", 1, 40.0), ("step/tiny_both", 2, 50.0)])
    rc, out, err = run("--ours", p("o1.json"), "--torch", p("t1.json"))
    assert rc == 0, err
    r = row(out, "step/tiny_both/policy/threads:2/real_time")
    # ours, ours / floor, torch best, its threads, x_best, torch at 2 threads, x_same
    assert r[1:] == ["10.000", "2.50", "40.000", "1", "4.00", "50.000", "5.00"], r
    assert row(out, "floor/tiny_both/threads:2/real_time")[1:] == ["4.000", "n/a"], out  # no reference case
    assert out.index("floor/tiny_both") < out.index("step/tiny_both"), out  # a case's floor first

    # three rounds; the VM halves its speed in round 2, for both programs:
    # per-round ratios 4, 4, 2 -> median 4 (a ratio of the median times would say 40/12 = 3.33);
    # over the floor 2, 2, 3 -> 2 (the median times would say 12/8 = 1.5)
    for i, (o, t, f) in enumerate([(10.0, 40.0, 5.0), (20.0, 80.0, 10.0), (12.0, 24.0, 4.0)], 1):
        ours_json(p(f"o{i}.json"), {"step/tiny_both/policy/threads:1": o, "floor/tiny_both/threads:1": f})
        torch_json(p(f"t{i}.json"), [("step/tiny_both", 1, t), ("step/tiny_both", 2, t * 2)])
    rc, out, err = run("--ours", *[p(f"o{i}.json") for i in (1, 2, 3)], "--torch", *[p(f"t{i}.json") for i in (1, 2, 3)])
    assert rc == 0, err
    assert "3 interleaved rounds" in out, out
    r = row(out, "step/tiny_both/policy/threads:1")
    assert r[1:] == ["12.000", "2.00", "40.000", "1", "4.00", "40.000", "4.00", "2.00-4.00"], r

    # sparse input: x_dense = dense / csr per round (3, 1.5, 1.6 -> 1.6; the median times would say 8 / 4 = 2)
    for i, (dn, sp) in enumerate([(9.0, 3.0), (6.0, 4.0), (8.0, 5.0)], 1):
        ours_json(p(f"s{i}.json"), {"step/tutorial_both_sparse90/policy/threads:1": dn,
                                    "step/tutorial_both_sparse90/policy_csr/threads:1": sp})
    rc, out, err = run("--ours", *[p(f"s{i}.json") for i in (1, 2, 3)])
    assert rc == 0, err
    assert row(out, "step/tutorial_both_sparse90/policy_csr/threads:1")[-1] == "1.60", out
    assert row(out, "step/tutorial_both_sparse90/policy/threads:1")[-1] != "1.60", out

    # mismatched round counts are an error that says so
    rc, out, err = run("--ours", p("o1.json"), p("o2.json"), "--torch", p("t1.json"))
    assert rc != 0 and "--torch has 1 files for 2 rounds" in err, err
    print("compare_table: ok")


if __name__ == "__main__":
    main()
