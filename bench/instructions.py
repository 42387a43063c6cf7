"""Instructions per decision under callgrind: a count that stays put on a loaded machine, so
engine changes can be compared while other jobs share the cores.

    python bench/instructions.py [WORKLOAD ...]          # all workloads by default
    python bench/instructions.py --profile library       # and the top functions inside Evaluator.decide, per decision
    python bench/instructions.py --cache varied10k       # and data-cache misses per decision

Each workload is decided in two runs under ``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0``),
one round and three rounds of its requests after a warm-up of three rounds (the program read
from a bundle made beforehand); the difference of the two totals divided by the extra
decisions is the cost of one ``decide`` (loading and start-up cancel).
``--cache`` adds callgrind's cache simulation: reads and writes of data that miss the first
level (D1, the host's geometry) and miss a second level sized as this VM's per-core L2
(2 MiB, 16-way); each of the latter is a trip to the shared L3 or to memory. It also
counts mispredicted conditional and indirect branches (callgrind's branch simulator). None of
these is wall clock: on this VM decisions are bound by first-level misses (bench/ENGINE.md,
session 10), so time a change side by side too.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

REQUESTS = 200
WARM_ROUNDS = 3  # 600 decisions: past two windows of every path group


def _workload(name: str, tmp: Path):
    """(policy path, requests) of a named workload (the ones test_engine_speed.py times)."""
    import workloads

    if name == "library":
        import pdp
        data = dict(pdp.load(workloads.LIBRARY, backend="reference").policy_set.data)
        return workloads.LIBRARY, workloads.library_requests(data, REQUESTS)
    if name == "targeted10":
        return workloads.write_pdl(tmp, workloads.targeted(1, 10)[0]), workloads.requests(1, REQUESTS, seed=11)
    if name == "targeted10k":
        return workloads.write_pdl(tmp, workloads.targeted(1000, 10)[0]), workloads.requests(1000, REQUESTS, seed=11)
    if name == "mixed300":
        return workloads.write_pdl(tmp, workloads.mixed(30, 10)), workloads.requests(30, REQUESTS, seed=13)
    if name == "varied10":
        return workloads.write_varied(tmp, 1, 10), workloads.varied_requests(1, REQUESTS)
    if name == "varied10k":
        return workloads.write_varied(tmp, 1000, 10), workloads.varied_requests(1000, REQUESTS)
    if name == "random350" or name.startswith("random350-"):  # random350-SEED: another random set
        import random_sets
        seed = int(name.partition("-")[2] or 1)
        model = random_sets.policy_set(seed=seed)
        reqs = random_sets.requests(REQUESTS, seed=2 if seed == 1 else seed + 1)
        return workloads.write_pdl(tmp, model.pdl()), [r.pdl() for r in reqs]
    if name in ("velocity", "velocity_unlimited"):
        # bench/test_limits_speed.py's policy, with and without its limit rule; every request
        # meets the limit (200 identities, budgets that never run out).
        from test_limits_speed import CHARGE, POLICY, UNLIMITED
        reqs = [{**CHARGE, "identity": {"type": "workload", "id": f"billing-{i}"}} for i in range(REQUESTS)]
        return workloads.write_pdl(tmp, POLICY if name == "velocity" else UNLIMITED), reqs
    raise SystemExit(f"unknown workload {name!r}")


WORKLOADS = ("targeted10", "library", "mixed300", "random350", "targeted10k", "varied10", "varied10k")
#: Run when named: the cost of a velocity limit (bench/LIMITS.md), side by side.
EXTRA_WORKLOADS = ("velocity_unlimited", "velocity")


def prepare(name: str, tmp: Path) -> Path:
    """The workload's compiled bundle and requests in ``tmp`` (the runs under callgrind only
    read them: compiling 10,000 rules under valgrind would take minutes)."""
    import pdp

    root, _ = _workload(name, tmp / name)
    pdp.write_bundle(pdp.load(root), tmp / f"{name}.bundle")
    return tmp


def child(name: str, rounds: int, tmp: Path) -> None:
    import pdp

    engine = pdp.load_bundle(tmp / f"{name}.bundle")
    with tempfile.TemporaryDirectory() as scratch:
        _, reqs = _workload(name, Path(scratch))
    decide = engine.decide
    # Warm: caches, interned strings, and the path groups' choices (a group counts its hits
    # over windows of 256 look-ups and may turn itself off at a window's end, once: left to
    # the rounds measured, that one-off cost was counted as every decision's).
    for _ in range(WARM_ROUNDS):
        for r in reqs:
            decide(r)
    for _ in range(rounds):
        for r in reqs:
            decide(r)


#: The C functions ``--profile`` collects inside: ``Evaluator.decide``, and the C entry a limit
#: wrapper calls instead (workloads with ``limit`` rules, such as the shipped library).
DECIDE = ("__pyx_f_3pdp_7runtime_6_ceval_9Evaluator_decide", "__pyx_f_3pdp_7runtime_6_ceval__decide_into")


#: callgrind's cache simulation with the VM's per-core L2 as the last level it models.
CACHE_SIM = ("--cache-sim=yes", "--branch-sim=yes", "--LL=2097152,16,64")


def _events(name: str, rounds: int, out: Path, *options: str) -> dict[str, int]:
    """callgrind's totals of one run: Ir (instructions), and with CACHE_SIM the misses."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    subprocess.run(["valgrind", "--tool=callgrind", *options, f"--callgrind-out-file={out}", sys.executable, __file__,
                    "--child", name, str(rounds), str(out.parent)], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    text = out.read_text(errors="replace")
    names = re.search(r"^events: (.*)$", text, re.M).group(1).split()
    totals = re.search(r"^(?:summary|totals): (.*)$", text, re.M).group(1).split()
    return dict(zip(names, map(int, totals)))


def _count(name: str, rounds: int, out: Path, *options: str) -> int:
    return _events(name, rounds, out, *options)["Ir"]


def _functions(out: Path) -> dict[str, int]:
    """Instructions per function (self cost, its inlined header code included) of one
    callgrind file, by callgrind_annotate."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", str(out)],
                          check=True, capture_output=True, text=True).stdout
    costs = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*?)(?: \[.*\])?$", line)
        if m and "PROGRAM TOTALS" not in m.group(2):
            function = m.group(2).rpartition(":")[2]
            costs[function] = costs.get(function, 0) + int(m.group(1).replace(",", ""))
    return costs


def _profile(name: str, tmp: Path, top: int = 40) -> None:
    """The functions inside Evaluator.decide, per decision: like the headline count, the
    difference of a one-round and a three-round run, so the warm-up's one-off work (groups
    turned off, caches filled) drops out."""
    inside = [tmp / f"{name}.decide{rounds}" for rounds in (1, 3)]
    for rounds, out in zip((1, 3), inside):
        _count(name, rounds, out, "--collect-atstart=no", *(f"--toggle-collect={f}" for f in DECIDE))
    one, three = _functions(inside[0]), _functions(inside[1])
    per = {f: (three.get(f, 0) - one.get(f, 0)) / (2 * REQUESTS) for f in three.keys() | one.keys()}
    print(f"  inside Evaluator.decide: {sum(per.values()):,.0f} per decision (callgrind files {inside[0]}, {inside[1]})")
    for f, cost in sorted(per.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {cost:8,.0f}  {f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workloads", nargs="*", default=list(WORKLOADS))
    parser.add_argument("--profile", action="store_true", help="also profile inside Evaluator.decide (one round)")
    parser.add_argument("--cache", action="store_true", help="also count data-cache misses per decision")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), Path(args.child[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.workloads:
            prepare(name, Path(tmp))
            one = _count(name, 1, Path(tmp) / f"{name}.1")
            three = _count(name, 3, Path(tmp) / f"{name}.3")
            print(f"{name}: {(three - one) / (2 * REQUESTS):,.0f} instructions per decision", flush=True)
            if args.cache:
                one = _events(name, 1, Path(tmp) / f"{name}.c1", *CACHE_SIM)
                three = _events(name, 3, Path(tmp) / f"{name}.c3", *CACHE_SIM)
                per = {k: (three[k] - one[k]) / (2 * REQUESTS) for k in three}
                print(f"  data-cache misses per decision: first level {per['D1mr'] + per['D1mw']:,.0f}, "
                      f"2 MiB second level {per['DLmr'] + per['DLmw']:,.0f}; mispredicted branches "
                      f"{per['Bcm']:,.0f} conditional, {per['Bim']:,.0f} indirect", flush=True)
            if args.profile:
                _profile(name, Path(tmp))


if __name__ == "__main__":
    main()
