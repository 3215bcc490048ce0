#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
"""The include layers of include/sakura, checked: fails when an include runs back up the layer
list or between siblings, or when a header opens a namespace its folder does not own.

Usage: check_layers.py [--root DIR] [--edges] [--known FILE]
  --edges   also prints the folder -> folder include edges
  --known   problems listed there (without line numbers) are tolerated while they are being removed;
            one that no longer occurs is an error, so the list only shrinks
"""
import argparse
import pathlib
import re
import sys

# Lowest first. A header may include its own layer and the layers below it; the members of a
# sibling group (a tuple) may not include each other. sakura.hpp (the umbrella) may include all.
LAYERS = [
    ("error.hpp", "version.hpp", "detail", "tensor"),  # one layer: no sibling rule inside
    (("backend", "dist"),),                            # siblings: devices, and the communicator
    ("autograd",),
    ("schedule",),                                     # weight schedules and the term spec both term kinds share
    (("nn", "losses", "regularizers"),),               # siblings
    ("optim",),
    ("controller",),
    ("config",),
    ("data",),
    ("io",),
    ("story",),
]
TOP = "sakura.hpp"

# The namespace each folder declares its names in (a header may also specialise templates of
# `sakura` itself, e.g. Ops<T, Cuda>); everything else is `sakura`. One `detail` per namespace.
FOLDER_NAMESPACE = {
    "backend/cpu": "sakura::cpu",
    "backend/cuda": "sakura::cuda",
    "config": "sakura",  # the builder's public names (sakura::Experiment); the JSON loader in sakura::config
    "data": "sakura::data",
    "dist": "sakura::dist",
    "io": "sakura::io",
    "story": "sakura::story",
}

# Headers that specialise a template of `sakura` itself (the device interface Ops<T, Dev>).
SPECIALISES_SAKURA = {"backend/cpu/ops.hpp", "backend/cuda/ops.hpp"}

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]sakura/([^">]+)[">]')
NAMESPACE = re.compile(r"^\s*namespace\s+([A-Za-z_][\w:]*)\s*\{")
CLOSE = re.compile(r"^\s*\}\s*//\s*namespace\b")
ADHOC_DETAIL = re.compile(r"(^|::)(detail_\w+|\w+_detail)(::|$)")


def unit_of(rel):
    """The layer unit of a path below include/sakura: a top-level file or a first-level folder."""
    parts = rel.split("/")
    return parts[0]


def position(unit):
    """(layer index, sibling group or None) of a unit; None when the unit is unknown."""
    for i, layer in enumerate(LAYERS):
        for member in layer:
            if isinstance(member, tuple):
                if unit in member:
                    return i, member
            elif unit == member:
                return i, None
    return None


def folder_of(rel):
    parts = rel.split("/")
    if len(parts) >= 3 and parts[0] == "backend":
        return "/".join(parts[:2])
    return parts[0] if len(parts) > 1 else ""


def key(problem):
    """A problem without its line number, so that a known one survives edits above it."""
    return re.sub(r"^([^:]+):\d+:", r"\1:", problem)


def check(root, print_edges, known_file):
    inc = root / "include" / "sakura"
    problems = []
    edges = {}
    files = sorted(p for p in inc.rglob("*.hpp"))
    extra = sorted((root / "cuda").glob("*.cu*")) if (root / "cuda").is_dir() else []
    for path in files + extra:
        if path.is_relative_to(inc):
            rel = path.relative_to(inc).as_posix()
            unit = unit_of(rel)
        else:  # the GPU library implements backend/cuda (and dist's NCCL transport in nccl.cu)
            rel = path.relative_to(root).as_posix()
            unit = "dist" if path.name.startswith("nccl") else "backend"
        where = position(unit) if unit != TOP else (len(LAYERS), None)
        if where is None:
            problems.append(f"{rel}: folder '{unit}' is not in the layer list (scripts/check_layers.py)")
            continue
        stack = []  # the namespaces open at this line (closed by "}  // namespace ...")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = INCLUDE.match(line)
            if m:
                target = m.group(1)
                tunit = unit_of(target)
                there = position(tunit)
                if tunit != unit:
                    edges.setdefault((unit, tunit), []).append(f"{rel}:{n}")
                if there is None:
                    problems.append(f"{rel}:{n}: includes sakura/{target}, whose folder is not in the layer list")
                elif there[0] > where[0]:
                    problems.append(f"{rel}:{n}: includes sakura/{target}: {unit} (layer {where[0]}) must not "
                                    f"include {tunit} (layer {there[0]}, above it)")
                elif there[0] == where[0] and where[1] is not None and tunit != unit:
                    problems.append(f"{rel}:{n}: includes sakura/{target}: {unit} and {tunit} are siblings "
                                    f"and must not include each other")
            if not path.is_relative_to(inc):
                continue
            m = NAMESPACE.match(line)
            if m:
                ns = "::".join(stack + [m.group(1)])
                stack.append(m.group(1))
                own = FOLDER_NAMESPACE.get(folder_of(rel), "sakura")
                others = [v for v in set(FOLDER_NAMESPACE.values()) if v not in (own, "sakura")]
                if ADHOC_DETAIL.search(ns):
                    problems.append(f"{rel}:{n}: namespace {ns}: use the folder's one `detail` namespace")
                elif ns == "sakura" and own != "sakura" and rel not in SPECIALISES_SAKURA:
                    problems.append(f"{rel}:{n}: declares names in namespace sakura; {folder_of(rel)}/ declares "
                                    f"them in {own}")
                elif ns != "sakura" and not (ns == own or ns.startswith(own + "::")) or \
                        any(ns == o or ns.startswith(o + "::") for o in others):
                    problems.append(f"{rel}:{n}: namespace {ns} in {folder_of(rel) or 'include/sakura'}/, whose "
                                    f"namespace is {own}")
            elif CLOSE.match(line) and stack:
                stack.pop()
    if print_edges:
        print("folder -> folder include edges:")
        for (a, b), at in sorted(edges.items()):
            print(f"  {a} -> {b} ({len(at)})")
    known = set()
    if known_file:
        known = {l.strip() for l in pathlib.Path(known_file).read_text().splitlines() if l.strip() and l[0] != "#"}
    found = {key(p) for p in problems}
    fresh = [p for p in problems if key(p) not in known]
    stale = sorted(known - found)
    for p in problems:
        print(("known: " if key(p) in known else "") + p)
    for k in stale:
        print(f"fixed, remove it from {known_file}: {k}")
    print(f"{len(problems)} layer problem(s) in {len(files) + len(extra)} files ({len(problems) - len(fresh)} known)")
    return 1 if fresh or stale else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(pathlib.Path(__file__).resolve().parent.parent))
    ap.add_argument("--edges", action="store_true")
    ap.add_argument("--known")
    a = ap.parse_args()
    return check(pathlib.Path(a.root), a.edges, a.known)


if __name__ == "__main__":
    sys.exit(main())
