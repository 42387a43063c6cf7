"""Measurements behind bench/RESULTS.md: per-call latency of each engine (interleaved rounds),
scaling with policy-set size and request size, start time, memory. Every function returns
plain data (lists of dicts) and checks agreement (harness.check_agreement) before timing.

Used by bench/report.py; usable on its own:

    >>> import scaling, harness                                            # doctest: +SKIP
    >>> scaling.policy_size([10, 100, 1000], ["pdp", "cedar"], layout="targeted")
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import harness

from pdp import load_bundle, write_bundle
from pdp.benchmark import percentile, summarize, time_calls

#: Largest policy set each engine is timed on (set by what fits in minutes on a small machine:
#: Rego's build is superlinear, ~26 s at 10,000 rules; Casbin re-parses every rule per request).
MAX_RULES = {"pdp": 100_000, "cedar": 100_000, "rego": 10_000, "casbin": 1_000}
MAX_RULES_FLAT = {"pdp": 10_000, "cedar": 10_000, "rego": 10_000, "casbin": 1_000}


def _stats(samples: list[int], wall: float) -> dict:
    s = summarize(samples, wall)
    return {"calls": s.calls, "p50_ns": s.p50, "p90_ns": s.p90, "p99_ns": s.p99, "p999_ns": s.p999,
            "mean_ns": round(s.mean, 1), "max_ns": s.max, "per_s": round(s.throughput, 1)}


def timed(call, inputs: list, seconds: float, min_calls: int = 5) -> tuple[list[int], float]:
    """Time ``call`` on ``inputs`` for about ``seconds`` but at least ``min_calls`` calls, after
    an untimed warm-up of up to 3 calls (the last one sizes the loop for slow engines)."""
    for x in inputs[:3]:
        t = time.perf_counter()
        call(x)
        last = time.perf_counter() - t
    if last * min_calls >= seconds:
        return time_calls(call, inputs, calls=min_calls)
    return time_calls(call, inputs, seconds=seconds)


# --------------------------------------------------------------------------------------------
# per-call latency, interleaved


def latency(workload: harness.Workload, adapters: dict[str, harness.Adapter], rounds: int, seconds: float,
            batch: int = 100) -> dict:
    """Per-call latency samples of every adapter, in ``rounds`` interleaved rounds of
    ``seconds`` each (every engine runs once per round, so machine noise falls on all alike),
    pooled. Batched engines are also timed on batches of ``batch``. Returns
    {engine: {"single": stats, "batch": stats|None, "samples": [...] (ns, single)}}."""
    inputs = {name: a.prepare(workload.requests) for name, a in adapters.items()}
    batches = {name: [a.prepare_batch(workload.requests[i:i + batch])
                      for i in range(0, len(workload.requests), batch)]
               for name, a in adapters.items() if a.batched}
    single: dict[str, tuple[list, float]] = {name: ([], 0.0) for name in adapters}
    batched: dict[str, tuple[list, float]] = {name: ([], 0.0) for name in batches}
    for _ in range(rounds):
        for name, a in adapters.items():
            s, w = timed(a.call, inputs[name], seconds)
            single[name] = (single[name][0] + s, single[name][1] + w)
            if name in batches:
                s, w = timed(a.batch_call, batches[name], seconds, min_calls=2)
                batched[name] = (batched[name][0] + s, batched[name][1] + w)
    out = {}
    for name, (samples, wall) in single.items():
        entry = {"single": _stats(samples, wall), "samples": samples, "batch": None}
        if name in batched:
            s = summarize(batched[name][0], batched[name][1], batch_size=batch)
            entry["batch"] = {"batch_size": batch, "calls": s.calls, "p50_ns": s.p50, "p99_ns": s.p99,
                              "per_decision_p50_ns": s.p50 / batch, "per_s": round(s.throughput, 1)}
        out[name] = entry
    return out


def cedar_core(workload: harness.Workload, adapter: harness.Cedar) -> dict:
    """Cedar's own authorization time (µs, from cedarpy's metrics) over the workload's requests."""
    xs = sorted(adapter.core_us(adapter.call(x)) for x in adapter.prepare(workload.requests))
    return {"p50_us": percentile(xs, 0.5), "p99_us": percentile(xs, 0.99)}


# --------------------------------------------------------------------------------------------
# policy-set size


def policy_size(sizes: list[int], engines: list[str], layout: str = "targeted", seconds: float = 1.0,
                check: int = 100, progress=print) -> list[dict]:
    """Latency (and the time to build each engine) as the policy set grows.

    ``targeted``: ``n/10`` policies of 10 rules, each targeted on its own resource type
    (a request meets one policy's rules; what an index on targets is for). ``flat``: one
    policy of ``n`` rules on one type (every request meets every rule)."""
    caps = MAX_RULES if layout == "targeted" else MAX_RULES_FLAT
    rows = []
    for n in sizes:
        names = [e for e in engines if n <= caps.get(e, 0)]
        if not names:
            continue
        workload = (harness.targeted(max(n // 10, 1), min(n, 10), requests=200) if layout == "targeted"
                    else harness.targeted(1, n, requests=200))
        adapters, build_s = {}, {}
        for name in names:
            gc.collect()
            t = time.perf_counter()
            adapters[name] = harness.ENGINES[name](workload)
            build_s[name] = time.perf_counter() - t
        reference = None
        if "pdp" in adapters:  # the reference evaluator on the already parsed set (no second parse)
            engine = adapters["pdp"].engine
            reference = type(engine)(engine.program, engine.sources, engine.policy_set, backend="reference")
        requests = workload.requests[:check if n < 10_000 else max(check // 4, 10)]
        harness.check_agreement(workload, adapters, requests, reference=reference)
        for name, a in adapters.items():
            samples, wall = timed(a.call, a.prepare(workload.requests), seconds)
            rows.append({"layout": layout, "rules": workload.rules, "engine": name, "build_s": build_s[name],
                         "checked": len(requests), **_stats(samples, wall)})
            progress(f"  {layout} {workload.rules:>7} rules  {name:<6} p50 {rows[-1]['p50_ns'] / 1e3:10.1f} µs  "
                     f"build {build_s[name]:.2f} s")
        del adapters, reference
    return rows


# --------------------------------------------------------------------------------------------
# start time: load from source, bundles, a new process


#: New-process start is measured up to this many rules (4 runs each; from source at 100,000
#: rules one run takes minutes on a small machine, and load_s already shows it).
COLD_MAX_RULES = 10_000


def start_time(sizes: list[int], progress=print, cold: bool = True) -> list[dict]:
    """pdp's start: ``pdp.load`` from source (parse, check, compile), ``write_bundle``,
    ``load_bundle``, bundle size; with ``cold``, the wall time of a new Python process that
    imports pdp, loads (source or bundle) and makes its first decision (up to
    :data:`COLD_MAX_RULES`)."""
    rows = []
    for n in sizes:
        workload = harness.targeted(max(n // 10, 1), min(n, 10), requests=1)
        with tempfile.TemporaryDirectory(prefix="pdp-start-") as tmp:
            root = workload.write_pdl(Path(tmp) / "policies")
            bundle = Path(tmp) / "set.bundle"
            gc.collect()
            t = time.perf_counter()
            engine = harness.pdp.load(root)
            load_s = time.perf_counter() - t
            t = time.perf_counter()
            size = write_bundle(engine, bundle)
            write_s = time.perf_counter() - t
            del engine
            gc.collect()
            t = time.perf_counter()
            engine = load_bundle(bundle)
            bundle_s = time.perf_counter() - t
            assert engine.decide(workload.requests[0]) is not None
            del engine
            row = {"rules": workload.rules, "load_s": load_s, "bundle_write_s": write_s, "bundle_load_s": bundle_s,
                   "bundle_bytes": size}
            if cold and workload.rules <= COLD_MAX_RULES:
                row["cold_source_s"] = _cold(f"pdp.load({str(root)!r})", workload.requests[0])
                row["cold_bundle_s"] = _cold(f"pdp.load_bundle({str(bundle)!r})", workload.requests[0])
            rows.append(row)
            progress(f"  start {workload.rules:>7} rules  load {load_s:.3f} s  bundle {bundle_s:.3f} s")
    return rows


def _cold(load_expr: str, request: dict, runs: int = 3) -> float:
    """Wall time of ``python -c 'import pdp; <load>; decide'`` in a new process: the best of
    ``runs`` after one untimed run (bytecode cached in a temporary prefix, files in the OS
    cache), as a restarted server would find them."""
    script = f"import pdp, json; e = {load_expr}; e.decide(json.loads({json.dumps(json.dumps(request))}))"
    with tempfile.TemporaryDirectory(prefix="pdp-pyc-") as pyc:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPATH=harness.PDP_PATH, PYTHONPYCACHEPREFIX=pyc)
        best = float("inf")
        for i in range(runs + 1):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=1800)
            if i:
                best = min(best, time.perf_counter() - t)
    return best


# --------------------------------------------------------------------------------------------
# memory


MEMORY_SCRIPT = textwrap.dedent("""
    import gc, json, os, sys
    sys.path.insert(0, sys.argv[1])
    def rss():
        gc.collect()
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    engine, path = sys.argv[2], sys.argv[3]
    import harness
    text = open(path).read() if engine not in ("pdp", "pdp-bundle", "casbin") else None
    rules = json.load(open(path)) if engine == "casbin" else None
    if engine == "cedar":
        import cedarpy
    elif engine == "rego":
        from regopy import Interpreter
    elif engine == "casbin":
        import casbin
    base = rss()
    if engine == "pdp":
        import pdp; keep = pdp.load(path)
        if len(sys.argv) > 4:  # the bundle for the pdp-bundle measurement, written after measuring
            bundle_to = sys.argv[4]
    elif engine == "pdp-bundle":
        import pdp; keep = pdp.load_bundle(path)
    elif engine == "cedar":
        keep = cedarpy.PolicySet.from_str(text)
    elif engine == "rego":
        keep = Interpreter(); keep.add_module("bench.rego", text); b = keep.build("x := data.bench.decision", [])
    elif engine == "casbin":
        from casbin import model as m
        model = m.Model(); model.load_model_from_text(harness.CASBIN_MODEL)
        keep = casbin.Enforcer(model); keep.add_policies([tuple(r) for r in rules]); del rules
    used = rss() - base
    if engine == "pdp" and len(sys.argv) > 4:
        pdp.write_bundle(keep, bundle_to)
    print(json.dumps({"bytes": used}))
""")


def memory(sizes: list[int], engines: list[str], progress=print) -> list[dict]:
    """Resident memory an engine adds to a fresh process to hold ``n`` rules (the policy text
    is read before the baseline, so it is not counted), for ``pdp`` from source (which keeps
    the checked AST and the sources for ``explain``), ``pdp-bundle`` (the compiled program,
    sources kept as bytes), and the other engines."""
    rows = []
    for n in sizes:
        workload = harness.targeted(max(n // 10, 1), min(n, 10), requests=1)
        with tempfile.TemporaryDirectory(prefix="pdp-mem-") as tmp:
            tmp = Path(tmp)
            paths = {"pdp": workload.write_pdl(tmp / "policies"), "cedar": tmp / "set.cedar",
                     "rego": tmp / "set.rego", "casbin": tmp / "casbin.json", "pdp-bundle": tmp / "set.bundle"}
            paths["cedar"].write_text(workload.cedar)
            paths["rego"].write_text(workload.rego)
            paths["casbin"].write_text(json.dumps(workload.casbin))
            if "pdp-bundle" in engines and "pdp" not in engines:
                write_bundle(harness.pdp.load(paths["pdp"]), paths["pdp-bundle"])
            # pdp before pdp-bundle: the pdp measurement writes the bundle (no second parse)
            for name in sorted(engines, key=lambda e: (e != "pdp", e != "pdp-bundle")):
                cap = MAX_RULES.get(name.split("-")[0], 0)
                if n > cap:
                    continue
                env = {**os.environ, "PYTHONPATH": harness.PDP_PATH}
                extra = [str(paths["pdp-bundle"])] if name == "pdp" and "pdp-bundle" in engines else []
                out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(harness.HERE), name,
                                      str(paths[name]), *extra], capture_output=True, text=True, env=env, timeout=3600)
                if out.returncode != 0:
                    raise RuntimeError(f"memory of {name} at {n} rules failed:\n{out.stderr}")
                rows.append({"rules": workload.rules, "engine": name, "bytes": json.loads(out.stdout)["bytes"]})
                progress(f"  memory {workload.rules:>7} rules  {name:<10} {rows[-1]['bytes'] / 2**20:8.1f} MiB")
    return rows


# --------------------------------------------------------------------------------------------
# request size


def pad_lists(length: int):
    """identity.scopes gets ``length`` extra scopes before its real ones (``contains`` must
    look past them)."""
    def pad(reqs):
        out = []
        for r in reqs:
            r = json.loads(json.dumps(r))
            r["identity"]["scopes"] = [f"junk{i}:read" for i in range(length)] + r["identity"]["scopes"]
            out.append(r)
        return out
    return pad


def pad_attributes(count: int):
    """identity gets ``count`` extra attributes no rule reads."""
    def pad(reqs):
        out = []
        for r in reqs:
            r = json.loads(json.dumps(r))
            r["identity"].update({f"attr{i}": i for i in range(count)})
            out.append(r)
        return out
    return pad


def request_size(kind: str, values: list[int], engines: list[str], seconds: float = 1.0, check: int = 50,
                 progress=print) -> list[dict]:
    """Latency as requests grow (on 100 rules, 10 types): ``kind`` is ``list`` (length of
    identity.scopes) or ``attributes`` (extra identity attributes)."""
    rows = []
    for v in values:
        pad = pad_lists(v) if kind == "list" else pad_attributes(v)
        workload = harness.targeted(10, 10, requests=100, request_fn=pad)
        ok, _ = harness.available(engines)
        adapters = {name: harness.ENGINES[name](workload) for name in ok}
        harness.check_agreement(workload, adapters, workload.requests[:check])
        for name, a in adapters.items():
            samples, wall = timed(a.call, a.prepare(workload.requests), seconds)
            rows.append({"kind": kind, "value": v, "engine": name, **_stats(samples, wall)})
            progress(f"  request {kind}={v:<6} {name:<6} p50 {rows[-1]['p50_ns'] / 1e3:10.1f} µs")
    return rows
