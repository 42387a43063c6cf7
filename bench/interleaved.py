"""Wall clock of several workloads in one process, their rounds alternated, so that a change
of load on a shared VM hits all of them alike (pytest-benchmark times one after another).

    python bench/interleaved.py targeted10 library library_evaluator mixed300
    ROUNDS=1500 SPLIT_DEPTH_library_d1=1 python bench/interleaved.py targeted10 library library_d1

Prints each workload's median and minimum per decision over the rounds (200 requests each)
and its ratio to the first workload. ``library_evaluator`` decides the library with the
evaluator's own ``decide``, past the engine's limit wrapper (the library has a limit rule);
``SPLIT_DEPTH_<name>`` compiles that workload with ``pdp.compile.split.MAX_DEPTH`` set to it
(names starting with ``library`` are the library). Alternating evicts each workload's
program from the caches between its rounds, so the absolute figures are higher than
pytest-benchmark's; compare ratios.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pdp  # noqa: E402
from pdp.compile import split  # noqa: E402
from instructions import REQUESTS, _workload  # noqa: E402


def _load(name: str, tmp: Path):
    base = "library" if name.startswith("library") else name
    root, reqs = _workload(base, tmp / name)
    depth = os.environ.get(f"SPLIT_DEPTH_{name}")
    kept = split.MAX_DEPTH
    try:
        if depth is not None:
            split.MAX_DEPTH = int(depth)
        engine = pdp.load(root)
    finally:
        split.MAX_DEPTH = kept
    decide = engine._evaluator.decide if name == "library_evaluator" else engine.decide
    return decide, reqs


def main(names: list[str]) -> None:
    rounds = int(os.environ.get("ROUNDS", "1000"))
    with tempfile.TemporaryDirectory() as tmp:
        loaded = {name: _load(name, Path(tmp)) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    gc.disable()
    for _ in range(rounds):
        for name in names:
            decide, reqs = loaded[name]
            started = time.perf_counter()
            for r in reqs:
                decide(r)
            times[name].append((time.perf_counter() - started) / REQUESTS * 1e6)
    first = names[0]
    for name in names:
        median, low = statistics.median(times[name]), min(times[name])
        print(f"{name:20s} median {median:7.2f} µs  min {low:7.2f} µs  "
              f"×{median / statistics.median(times[first]):.2f} (min ×{low / min(times[first]):.2f})")
    print("load average", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main(sys.argv[1:] or ["targeted10", "library"])
