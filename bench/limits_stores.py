"""How should the workers of one ``pdp serve`` share budgets? The cost of one check-and-take
in each design, measured from one client thread (median of rounds; µs per take):

- ``memory``: MemoryStore in the process itself (what a single process does; the floor).
- ``parent-socket``: the parent keeps a MemoryStore and answers over a Unix socket
  (pdp.limits.shared: what ``--workers N`` does).
- ``shared-memory``: a prototype of budgets in a shared array under a multiprocessing.Lock
  (fixed table, keys hashed into slots: no eviction, collisions merge budgets; measured as the
  floor of that design, not shipped).
- ``manager``: a multiprocessing.Manager dict and lock (proxies: one round trip per operation).
- ``redis`` and ``redis-pipelined-100``: RedisStore, one script per take, and a batch of 100
  takes in one pipeline (per take).

    python bench/limits_stores.py --out bench/results/limits-stores-DATE.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from pdp.limits import Budget, MemoryStore  # noqa: E402
from pdp.limits.redis_store import RedisStore  # noqa: E402
from pdp.limits.shared import ParentStore, SharedStore  # noqa: E402

BIG = Budget("bench.limit", "billing", 10**9, 10**9)  # never runs out
KEYS = [Budget("bench.limit", f"id-{i}", 10**9, 10**9) for i in range(64)]


class SharedArrayStore:
    """The shared-memory prototype: TATs in a shared int64 array, one lock for all."""

    def __init__(self, slots: int = 1 << 16):
        self.tats = multiprocessing.Array(ctypes.c_int64, slots, lock=False)
        self.lock = multiprocessing.Lock()
        self.slots = slots

    def take(self, budgets, take=True):
        with self.lock:
            now = time.monotonic_ns()
            short, moved = [], []
            for i, (rule, key, count, period) in enumerate(budgets):
                slot = zlib.crc32(f"{rule}\0{key}".encode()) % self.slots
                tat = max(self.tats[slot], now) + period // count
                if tat - now > period:
                    short.append(i)
                else:
                    moved.append((slot, tat))
            if not short and take:
                for slot, tat in moved:
                    self.tats[slot] = tat
            return short


class ManagerStore:
    def __init__(self, manager):
        self.tats = manager.dict()
        self.lock = manager.Lock()

    def take(self, budgets, take=True):
        with self.lock:
            now = time.monotonic_ns()
            (rule, key, count, period), = budgets
            tat = max(self.tats.get((rule, key), now), now) + period // count
            if tat - now > period:
                return [0]
            if take:
                self.tats[(rule, key)] = tat
            return []


def per_take_us(take, n: int, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        for i in range(n):
            take([KEYS[i & 63]])
        out.append((time.perf_counter_ns() - started) / n / 1000)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--takes", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out")
    args = p.parse_args()
    from rediskit import RedisServer

    results = {}
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as redis, \
            multiprocessing.Manager() as manager:
        parent = ParentStore(os.path.join(tmp, "store.sock"))
        redis_store = RedisStore(redis.url, 1.0)
        designs = {
            "memory": MemoryStore().take,
            "parent-socket": SharedStore(parent.path, 1.0).take,
            "shared-memory": SharedArrayStore().take,
            "manager": ManagerStore(manager).take,
            "redis": redis_store.take,
        }
        for name, take in designs.items():
            n = args.takes if name not in ("manager", "redis") else args.takes // 4
            take([BIG])
            results[name] = per_take_us(take, n, args.rounds)
            print(f"{name:22s} {statistics.median(results[name]):8.2f} µs/take", file=sys.stderr)
        batches = []
        for _ in range(args.rounds):
            started = time.perf_counter_ns()
            for _ in range(50):
                redis_store.take_many([[KEYS[i & 63]] for i in range(100)])
            batches.append((time.perf_counter_ns() - started) / 5000 / 1000)
        results["redis-pipelined-100"] = batches
        print(f"{'redis-pipelined-100':22s} {statistics.median(batches):8.2f} µs/take", file=sys.stderr)
        parent.close()
    summary = {name: round(statistics.median(v), 2) for name, v in results.items()}
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps({
            "what": "µs per check-and-take from one client thread, per round; median over rounds in 'median_us'",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_before": os.getloadavg()},
            "rounds_us": results, "median_us": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
