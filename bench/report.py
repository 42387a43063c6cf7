"""Regenerate bench/RESULTS.md (tables, machine, versions, the command) and bench/plots/*.png.

    python bench/report.py                  # the full run: about 20 minutes on 2 cores
    python bench/report.py --quick          # a smoke run of every section, small sizes (~1 minute)
    python bench/report.py --render-only    # rewrite RESULTS.md and the plots from RESULTS.json

What it measures (every engine checked to decide like pdp before it is timed; see harness.py):

1. in process, 100 rules: per-call latency of pdp decide / decide_many, Cedar (cedarpy),
   Rego (regopy), Casbin (pycasbin), in interleaved rounds; and the pytest-benchmark suite
   bench/test_compare.py (100 and 1,000 rules);
2. policy-set size, 10 → 100,000 rules (targeted on resource types, and one flat policy);
3. request size: list length and attribute count;
4. start: pdp.load from source, bundles, a new process to its first decision;
5. memory per 10,000 rules;
6. over the wire: pdp serve with pdp.client (the code of ``pdp bench --addr``), and
   bench/bench_grpc.py (pdp serve against Cerbos, same client) when a Cerbos binary is found
   (--cerbos, CERBOS_BIN, or --npm-cerbos to install the npm package's).

Raw data goes to RESULTS.json beside RESULTS.md, so the page can be re-rendered without
measuring again. Engines whose package is missing are skipped and named in the page.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402  (finds the pdp under test: installed, else this checkout)
import scaling  # noqa: E402

import pdp  # noqa: E402
from pdp.benchmark import format_ns, machine_info, summarize, time_remote  # noqa: E402

FULL = {
    "rounds": 5, "seconds": 0.4, "point_seconds": 1.0,
    "sizes": [10, 100, 1_000, 10_000, 100_000], "flat_sizes": [10, 100, 1_000, 10_000],
    "start_sizes": [10, 100, 1_000, 10_000, 100_000], "memory_sizes": [1_000, 10_000, 100_000],
    "list_lengths": [0, 10, 100, 1_000, 9_990], "attribute_counts": [0, 10, 100, 1_000, 10_000],
    "wire_seconds": 3.0, "concurrency": [1, 8], "cold": True,
}
QUICK = {
    "rounds": 1, "seconds": 0.05, "point_seconds": 0.05,
    "sizes": [10, 100], "flat_sizes": [10, 100], "start_sizes": [10, 100], "memory_sizes": [100],
    "list_lengths": [0, 10], "attribute_counts": [0, 10],
    "wire_seconds": 0.3, "concurrency": [1, 4], "cold": False,
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# measuring


def measure(args) -> dict:
    cfg = dict(QUICK if args.quick else FULL)
    started = time.time()
    engines, skipped = harness.available()
    data: dict = {"command": "python bench/report.py" + "".join(f" {shlex.quote(a)}" for a in args.argv),
                  "quick": args.quick, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  "machine": machine_info(), "versions": _versions(), "engines": engines, "skipped": skipped,
                  "config": cfg}
    data["machine"]["load_average_at_start"] = data["machine"].pop("load_average_1m")

    log("1. in process, 100 rules")
    workload = harness.targeted(10, 10, requests=500)
    adapters, _, agreement = harness.prepare(workload, engines)
    lat = scaling.latency(workload, adapters, cfg["rounds"], cfg["seconds"])
    data["inprocess"] = {
        "workload": workload.name, "requests": len(workload.requests), "agreement": agreement,
        "engines": {name: {k: v for k, v in entry.items() if k != "samples"} for name, entry in lat.items()},
        "cedar_core": scaling.cedar_core(workload, adapters["cedar"]) if "cedar" in adapters else None,
    }
    data["samples"] = {name: _thin(entry["samples"]) for name, entry in lat.items()}
    del adapters
    if not args.no_pytest_benchmark:
        data["pytest_benchmark"] = _pytest_benchmark(args.quick)

    log("2. policy-set size")
    data["policy_size"] = (scaling.policy_size(cfg["sizes"], engines, "targeted", cfg["point_seconds"], progress=log)
                           + scaling.policy_size(cfg["flat_sizes"], engines, "flat", cfg["point_seconds"],
                                                 progress=log))
    log("3. request size")
    data["request_size"] = (scaling.request_size("list", cfg["list_lengths"], engines, cfg["point_seconds"],
                                                 progress=log)
                            + scaling.request_size("attributes", cfg["attribute_counts"], engines,
                                                   cfg["point_seconds"], progress=log))
    log("4. start time")
    data["start"] = scaling.start_time(cfg["start_sizes"], progress=log, cold=cfg["cold"])
    log("5. memory")
    data["memory"] = scaling.memory(cfg["memory_sizes"], ["pdp", "pdp-bundle"] + [e for e in engines if e != "pdp"],
                                    progress=log)
    if not args.no_wire:
        log("6. over the wire")
        data["wire"] = _wire(cfg, workload)
        data["grpc"] = _bench_grpc(args)
    data["machine"]["load_average_at_end"] = round(os.getloadavg()[0], 2)
    data["seconds"] = round(time.time() - started)
    return data


def _versions() -> dict:
    import grpc

    v = {"pdp": pdp.__version__, "backend": pdp.load(_tiny_policy()).backend, "grpcio": grpc.__version__,
         "commit": _commit()}
    v.update(harness.versions())
    return v


def _commit() -> str:
    """The checkout measured: short commit, and whether pdp/ had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pdp"], cwd=REPO, capture_output=True,
                               text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (head or "?") + (" with uncommitted changes in pdp/" if dirty else "")


def _tiny_policy() -> Path:
    root = Path(tempfile.mkdtemp(prefix="pdp-report-"))
    (root / "p.pdl").write_text("policy p {\n  permit x when true\n}\n")
    return root


def _thin(samples: list[int], keep: int = 2_000) -> list[int]:
    """Every k-th of the sorted samples, for the distribution plot (keeps RESULTS.json small)."""
    s = sorted(samples)
    step = max(1, len(s) // keep)
    return s[::step]


def _pytest_benchmark(quick: bool) -> dict | None:
    """Run bench/test_compare.py under pytest-benchmark; its JSON, or None when not installed."""
    try:
        import pytest_benchmark  # noqa: F401
    except ImportError:
        log("  pytest-benchmark is not installed: skipping bench/test_compare.py")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "pytest", str(HERE / "test_compare.py"), "--benchmark-only", "-q",
               "-p", "no:cacheprovider", f"--benchmark-json={out}"]
        if quick:
            cmd += ["-k", "100-rules", "--benchmark-min-rounds=2", "--benchmark-max-time=0.02",
                    "--benchmark-warmup=off"]
        log("  " + " ".join(cmd[1:3]) + " " + " ".join(cmd[3:]))
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"bench/test_compare.py failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        raw = json.loads(out.read_text())
    rows = []
    for b in raw["benchmarks"]:
        info = b["extra_info"]
        n = info["decisions_per_call"]
        rows.append({"group": b["group"], "engine": info["engine"], "rules": info["rules"], "per_call": n,
                     "median_s": b["stats"]["median"], "min_s": b["stats"]["min"], "iqr_s": b["stats"]["iqr"],
                     "rounds": b["stats"]["rounds"], "decisions_per_s": n / b["stats"]["median"]})
    return {"command": "pytest bench/test_compare.py --benchmark-only" + (" (quick)" if quick else ""),
            "rows": rows}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wire(cfg: dict, workload: harness.Workload) -> dict:
    """pdp serve (1 worker) on loopback with the 100-rule workload, measured with pdp.client as
    ``pdp bench --addr`` does: Check at each concurrency, and CheckBatch of 100."""
    import grpc

    from pdp.client import Client

    with tempfile.TemporaryDirectory(prefix="pdp-wire-") as tmp:
        root = workload.write_pdl(Path(tmp) / "policies")
        port = _free_port()
        env = {**os.environ, "PYTHONPATH": harness.PDP_PATH}
        proc = subprocess.Popen([sys.executable, "-m", "pdp", "serve", str(root), "--addr", f"127.0.0.1:{port}",
                                 "--workers", "1", "--log-level", "WARNING", "--skip-tests"], env=env,
                                stdin=subprocess.DEVNULL)
        try:
            client = Client(f"127.0.0.1:{port}", timeout=30)
            grpc.channel_ready_future(client.channel).result(timeout=60)
            local = pdp.load(root)
            for r in workload.requests:  # the server decides like the engine, before timing
                assert client.check(r).decision == local.decide(r).decision
            out = {"server": "pdp serve --workers 1", "checks": {}, "samples": {}}
            for c in cfg["concurrency"]:
                time_remote(client.check, workload.requests, concurrency=c, seconds=min(0.5, cfg["wire_seconds"]))
                samples, wall, failed, _ = time_remote(client.check, workload.requests, concurrency=c,
                                                       seconds=cfg["wire_seconds"])
                s = summarize(samples, wall, concurrency=c, errors=failed)
                out["checks"][f"check c={c}"] = s.to_dict()
                out["samples"][f"check c={c}"] = _thin(samples)
                log(f"  wire check c={c}: p50 {format_ns(s.p50)}  {s.throughput:,.0f}/s")
            batches = [workload.requests[i:i + 100] for i in range(0, len(workload.requests), 100)]
            samples, wall, failed, _ = time_remote(client.check_batch, batches, seconds=cfg["wire_seconds"])
            out["checks"]["check_batch 100 c=1"] = summarize(samples, wall, batch_size=100, errors=failed).to_dict()
            client.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    return out


def _bench_grpc(args) -> dict | None:
    """bench/bench_grpc.py (issue 4's pdp serve vs Cerbos harness), run as its own command."""
    cmd = [sys.executable, str(HERE / "bench_grpc.py"), "--out"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "grpc.json"
        cmd.append(str(out))
        if args.cerbos:
            cmd += ["--cerbos", args.cerbos]
        elif args.npm_cerbos:
            cmd.append("--npm-cerbos")
        if args.quick:
            cmd.append("--quick")
        log("  " + " ".join(Path(c).name if c.endswith(".py") else c for c in cmd[1:]))
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            log(f"  bench_grpc.py failed (exit {done.returncode}); the wire comparison is left out:\n"
                f"{done.stderr[-2000:]}")
            return {"error": done.stderr[-2000:], "command": " ".join(cmd)}
        result = json.loads(out.read_text())
    result["command"] = "python bench/bench_grpc.py" + (" --npm-cerbos" if args.npm_cerbos else
                                                         " --cerbos BIN" if args.cerbos else "") + \
        (" --quick" if args.quick else "")
    return result


# --------------------------------------------------------------------------------------------
# rendering


def us(ns: float) -> str:
    return format_ns(ns)


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render(data: dict, plots: dict[str, str], out_dir: Path) -> str:
    m, v = data["machine"], data["versions"]
    ip = data["inprocess"]
    eng = ip["engines"]
    lines = [
        "# pdp benchmark results",
        "",
        f"Generated by `{data['command']}` on {data['date']} in {data['seconds'] // 60} min {data['seconds'] % 60} s"
        + (" — **a quick smoke run: small sizes, few rounds; do not quote these figures**" if data["quick"] else "")
        + ". Run the same command to regenerate this page, its data (`RESULTS.json`) and the plots "
          "(`plots/`); `--render-only` re-renders from the data.",
        "",
        "## Machine",
        "",
        _table(["", ""], [
            ["CPU", f"{m['cpu']} ({m['machine']})"],
            ["cores usable", m["cores"]],
            ["OS", m["os"]],
            ["Python", m["python"]],
            ["load average (1 min) at start / end", f"{m['load_average_at_start']} / {m.get('load_average_at_end', '?')}"],
            ["pdp", f"{v['pdp']} ({v['backend']} evaluator), commit {v.get('commit', '?')}"],
            *[[name, v[name]] for name in ("cedar", "rego", "casbin") if name in v],
            ["grpcio", v["grpcio"]],
        ]),
        "",
        "cedar = `cedarpy` (Cedar's Rust engine through PyO3), rego = `regopy` (rego-cpp, C++), casbin = "
        "`casbin` (pycasbin, pure Python). All run in this Python process, one call at a time.",
    ]
    if data["skipped"]:
        lines += ["", "Not measured here: " + "; ".join(f"{k}: {r}" for k, r in data["skipped"].items()) + "."]
    lines += ["", "## Headline", "", *_headline(data), ""]

    # 1. in process
    agree = ip["agreement"]
    lines += [
        "## 1. In process: one policy set, four engines",
        "",
        f"Workload: {ip['workload']} — each policy targets one resource type and mixes ten rule shapes "
        "(scopes, environments, levels, ownership, roles with `contains_any`, SPIFFE globs, tags with "
        "`contains_all`, a deny list); "
        f"{ip['requests']} requests over the same vocabulary (`bench/harness.py`, `bench/workloads.py`).",
        "",
        "**Checked before timing:** " + ", ".join(
            f"{name} {a['allowed']}/{a['requests']} allowed" + (" (same determining rules)" if a["reasons_compared"]
                                                               else " (decision only: casbin names no rules)")
            for name, a in agree.items())
        + " — the same decisions as pdp's reference evaluator on every request, one by one and in batches.",
        "",
        f"Per-call latency: {data['config']['rounds']} interleaved rounds of {data['config']['seconds']} s per engine, "
        "every call timed on its own with `perf_counter_ns` (timer cost included, ~50 ns), samples pooled. "
        "Requests are converted to each engine's native input before timing (Cedar: entities JSON; Rego: "
        "input JSON; Casbin: dicts).",
        "",
        _table(["engine", "call", "p50", "p90", "p99", "p99.9", "decisions/s (1 thread)"],
               [[name, _call_name(name), us(e["single"]["p50_ns"]), us(e["single"]["p90_ns"]),
                 us(e["single"]["p99_ns"]), us(e["single"]["p999_ns"]), f"{e['single']['per_s']:,.0f}"]
                for name, e in eng.items()]
               + [[f"{name} batch of {e['batch']['batch_size']}", _batch_name(name),
                   f"{us(e['batch']['p50_ns'])} ({us(e['batch']['per_decision_p50_ns'])} / decision)", "",
                   us(e["batch"]["p99_ns"]), "", f"{e['batch']['per_s']:,.0f}"]
                  for name, e in eng.items() if e.get("batch")]),
        "",
    ]
    if ip.get("cedar_core"):
        c = ip["cedar_core"]
        lines += [f"Cedar's own evaluation time (cedarpy's `authz_duration_micros`) is p50 {c['p50_us']} µs, "
                  f"p99 {c['p99_us']} µs of that: the rest is the binding (request and entities as JSON in, "
                  "diagnostics as JSON out). A Rust service calling Cedar directly pays only the core time.", ""]
    if "latency_cdf" in plots:
        lines += [f"![per-call latency, 100 rules]({plots['latency_cdf']})", ""]
    pb = data.get("pytest_benchmark")
    if pb:
        lines += [f"pytest-benchmark (`{pb['command']}`): median of rounds, each round many calls.", "",
                  _table(["group", "engine", "median per call", "min", "decisions/s", "rounds"],
                         [[r["group"], r["engine"], us(r["median_s"] * 1e9), us(r["min_s"] * 1e9),
                           f"{r['decisions_per_s']:,.0f}", r["rounds"]]
                          for r in sorted(pb["rows"], key=lambda r: (r["rules"], r["per_call"], r["median_s"]))]), ""]

    # 2. policy-set size
    ps = data["policy_size"]
    lines += ["## 2. Policy-set size", "",
              "**targeted**: n/10 policies of 10 rules, each targeted on its own resource type — a request meets "
              "one policy's rules, as with per-service or per-resource-type policies; pdp indexes policy targets, "
              "the other engines evaluate every rule (Cedar's scope check `resource is typeN` is per policy). "
              "**flat**: one policy of n rules that all apply to every request — nothing to index. "
              "Each point is checked for agreement on up to 100 requests, then timed for "
              f"{data['config']['point_seconds']} s (at least 5 calls). *build* is the time to make the engine "
              "from source (pdp: parse, check, compile; cedar: PolicySet.from_str; rego: add_module + build; "
              "casbin: add_policies).", ""]
    for layout in ("targeted", "flat"):
        rows = [r for r in ps if r["layout"] == layout]
        sizes = sorted({r["rules"] for r in rows})
        names = [n for n in ("pdp", "cedar", "rego", "casbin") if any(r["engine"] == n for r in rows)]
        table_rows = []
        for n in sizes:
            cells = [f"{n:,}"]
            for name in names:
                r = next((r for r in rows if r["rules"] == n and r["engine"] == name), None)
                cells.append("—" if r is None else f"{us(r['p50_ns'])} / {us(r['p99_ns'])} ({_secs(r['build_s'])})")
            table_rows.append(cells)
        lines += [f"{layout}: p50 / p99 per decision (build)", "",
                  _table(["rules"] + names, table_rows), ""]
    lines += ["— : not run at that size (Rego's build takes ~20–26 s at 10,000 rules and grows faster than "
              "linearly; Casbin's ABAC model re-parses every rule on every request, ~50 ms a decision at 1,000 "
              "rules). Casbin stops at the first deny that applies, so where denies come early (flat) its p50 "
              "stays low while its p99 grows with the rules.", ""]
    if "policy_size" in plots:
        lines += [f"![latency vs policy-set size]({plots['policy_size']})", ""]

    # 3. request size
    rs = data["request_size"]
    lines += ["## 3. Request size", "",
              "On the 100-rule set. **list**: `identity.scopes` gets N extra entries before the real ones "
              "(the `contains` rules must look past them; pdp accepts at most 10,000 items per list, so the "
              "last point is 9,990 plus the real ones). **attributes**: `identity` gets N extra attributes "
              "no rule reads. pdp checks the whole request (SPEC §3) on every call; Cedar parses every "
              "entity attribute; Rego parses the whole input.", ""]
    for kind, label in (("list", "list length"), ("attributes", "extra attributes")):
        rows = [r for r in rs if r["kind"] == kind]
        values = sorted({r["value"] for r in rows})
        names = [n for n in ("pdp", "cedar", "rego", "casbin") if any(r["engine"] == n for r in rows)]
        lines += [f"p50 per decision by {label}", "",
                  _table([label] + names,
                         [[f"{v:,}"] + [us(next(r["p50_ns"] for r in rows if r["value"] == v and r["engine"] == n))
                                        for n in names] for v in values]), ""]
    if "request_size" in plots:
        lines += [f"![latency vs request size]({plots['request_size']})", ""]

    # 4. start
    st = data["start"]
    lines += ["## 4. Start time", "",
              "`pdp.load` from source (read, parse, check, compile) against a bundle (`pdp build` / "
              "`pdp.write_bundle`, then `pdp.load_bundle`: the compiled program, no parsing). *new process* is "
              "the wall time of `python -c 'import pdp; load; decide one request'` (best of 3 after a warm run; "
              "includes ~0.3–0.5 s of interpreter start and imports).", "",
              _table(["rules", "load from source", "write bundle", "load bundle", "bundle size",
                      "new process, source", "new process, bundle"],
                     [[f"{r['rules']:,}", _secs(r["load_s"]), _secs(r["bundle_write_s"]), _secs(r["bundle_load_s"]),
                       _bytes(r["bundle_bytes"]), _secs(r["cold_source_s"]) if "cold_source_s" in r else "—",
                       _secs(r["cold_bundle_s"]) if "cold_bundle_s" in r else "—"] for r in st]), ""]
    if "start_time" in plots:
        lines += [f"![start time]({plots['start_time']})", ""]

    # 5. memory
    mem = data["memory"]
    sizes = sorted({r["rules"] for r in mem})
    names = list(dict.fromkeys(r["engine"] for r in mem))
    lines += ["## 5. Memory", "",
              "Resident memory an engine adds to a fresh process to hold the policy set (the policy text is "
              "read before the baseline). `pdp` from source keeps the checked AST and the sources (for "
              "`explain`); `pdp-bundle` holds the compiled program and the sources as bytes (the AST is parsed "
              "only if `explain` is called).", "",
              _table(["rules"] + names,
                     [[f"{n:,}"] + [_mib(next((r["bytes"] for r in mem if r["rules"] == n and r["engine"] == e), None))
                                    for e in names] for n in sizes]), ""]
    per10k = _per_10k(mem)
    if per10k:
        lines += ["Per 10,000 rules (slope between the two largest sizes measured): "
                  + ", ".join(f"{e} {_mib(b)}" for e, b in per10k.items()) + ".", ""]
    if "memory" in plots:
        lines += [f"![memory]({plots['memory']})", ""]

    # 6. wire
    lines += ["## 6. Over the wire (loopback)", ""]
    wire = data.get("wire")
    if wire:
        lines += [f"`{wire['server']}` with the 100-rule set, measured with `pdp.client.Client` (msgpack requests) "
                  "exactly as `pdp bench --addr` does: one thread per call in flight on one channel; client and "
                  "server share the machine's cores. The server's decisions were checked against the local "
                  "engine first.", "",
                  _table(["call", "in flight", "p50", "p90", "p99", "p99.9", "decisions/s"],
                         [[name.split(" c=")[0], s["concurrency"], us(s["latency_ns"]["p50"]), us(s["latency_ns"]["p90"]),
                           us(s["latency_ns"]["p99"]), us(s["latency_ns"]["p99.9"]), f"{s['throughput_per_s']:,.0f}"]
                          for name, s in wire["checks"].items()]), ""]
        if "wire_cdf" in plots:
            lines += [f"![latency over the wire]({plots['wire_cdf']})", ""]
    grpc_res = data.get("grpc")
    if grpc_res and "results" in grpc_res:
        meta = grpc_res["meta"]
        lines += [f"pdp serve against Cerbos (`{grpc_res['command']}`, issue 4's harness; one equivalent payments "
                  "policy, one Python grpcio client for both, interleaved rounds, medians; see bench/GRPC.md):", "",
                  _table(["server", "Check p50", "Check p99", "64 in flight, calls/s", "batch of 100, decisions/s"],
                         [[name, f"{r['check_p50_us']} µs", f"{r['check_p99_us']} µs", f"{r['inflight64_per_s']:,}",
                           f"{r['batch100_decisions_per_s']:,}"] for name, r in grpc_res["results"].items()]),
                  "", f"Cerbos {meta.get('cerbos') or 'not run'}; {meta.get('rounds')} rounds.", ""]
    elif grpc_res and "error" in grpc_res:
        lines += [f"bench/bench_grpc.py failed here, so the Cerbos comparison is missing: `{grpc_res['error'][-300:]}`",
                  ""]
    elif not wire:
        lines += ["Not run (`--no-wire`).", ""]

    lines += ["## Caveats", "",
              "- One machine, shared: other jobs may run at the same time (see the load average above). "
              "Rounds are interleaved so that noise falls on every engine alike, and percentiles pool all rounds; "
              "the p99 and p99.9 columns are the most sensitive to it.",
              "- Python bindings are measured as Python users call them; Cedar and Rego run native code behind a "
              "JSON boundary, pdp's compiled evaluator (Cython) reads Python dicts directly. A service in Rust, "
              "Go or C++ calling those engines natively avoids the boundary (see Cedar's own time above).",
              "- The workload suits all four engines; it is not each engine's best case. pdp's targeted layout "
              "profits from its target index; the flat layout shows the cost without it.",
              ""]
    return "\n".join(lines)


def _call_name(engine: str) -> str:
    return {"pdp": "`engine.decide(dict)`", "cedar": "`cedarpy.is_authorized`", "rego": "`set_input_term` + "
            "`query_bundle`", "casbin": "`enforcer.enforce(sub, obj, act)`"}.get(engine, "")


def _batch_name(engine: str) -> str:
    return {"pdp": "`engine.decide_many(list)`", "cedar": "`cedarpy.is_authorized_batch`"}.get(engine, "")


def _secs(s: float) -> str:
    return format_ns(s * 1e9)


def _bytes(n: int) -> str:
    return f"{n / 1024:,.0f} KiB" if n < 2**20 else f"{n / 2**20:,.1f} MiB"


def _mib(n) -> str:
    return "—" if n is None else f"{n / 2**20:,.1f} MiB"


def _per_10k(mem: list[dict]) -> dict:
    out = {}
    for e in dict.fromkeys(r["engine"] for r in mem):
        pts = sorted((r["rules"], r["bytes"]) for r in mem if r["engine"] == e)
        if len(pts) >= 2:
            (n0, b0), (n1, b1) = pts[-2], pts[-1]
            out[e] = (b1 - b0) / (n1 - n0) * 10_000
        elif pts:
            out[e] = pts[0][1] / pts[0][0] * 10_000
    return out


def _headline(data: dict) -> list[str]:
    ip = data["inprocess"]["engines"]
    m = data["machine"]
    out = [f"On {m['cores']} cores of an {m['cpu']} ({m['python']}), one thread, on the synthetic workloads "
           "below (each policy targets one resource type: a best case for pdp's index). The shipped library "
           "with a realistic traffic mix, many untargeted rules, 10,000 rules with varied conditions and random "
           "policy sets against Cedar are in bench/ENGINE.md.", ""]
    p = ip["pdp"]["single"]
    out.append(f"- **pdp decides in {us(p['p50_ns'])} p50, {us(p['p99_ns'])} p99** (100 rules, in process; "
               f"{p['per_s']:,.0f} decisions/s on one thread"
               + (f"; {ip['pdp']['batch']['per_s']:,.0f}/s with `decide_many`" if ip["pdp"].get("batch") else "") + ").")
    others = [f"{name} {us(e['single']['p50_ns'])} ({e['single']['p50_ns'] / p['p50_ns']:,.0f}×)"
              for name, e in ip.items() if name != "pdp"]
    if others:
        core = data["inprocess"].get("cedar_core")
        out.append("- Same policies and requests, same decisions, p50 per call from Python: " + ", ".join(others)
                   + (f" (Cedar's own evaluation inside that call: {core['p50_us']} µs)" if core else "") + ".")
    ps = data["policy_size"]
    big = max((r for r in ps if r["engine"] == "pdp" and r["layout"] == "targeted"), key=lambda r: r["rules"])
    flat = max((r for r in ps if r["engine"] == "pdp" and r["layout"] == "flat"), key=lambda r: r["rules"])
    out.append(f"- At {big['rules']:,} rules (targeted) pdp still decides in {us(big['p50_ns'])} p50; with "
               f"{flat['rules']:,} rules that all apply (flat) in {us(flat['p50_ns'])}.")
    st = max(data["start"], key=lambda r: r["rules"])
    out.append(f"- Start with {st['rules']:,} rules: {_secs(st['load_s'])} from source, {_secs(st['bundle_load_s'])} "
               "from a bundle.")
    per10k = _per_10k(data["memory"])
    if "pdp" in per10k:
        out.append(f"- Memory per 10,000 rules: {_mib(per10k['pdp'])} from source, "
                   f"{_mib(per10k.get('pdp-bundle'))} from a bundle.")
    wire = data.get("wire")
    if wire and "check c=1" in wire["checks"]:
        c = wire["checks"]["check c=1"]
        out.append(f"- Over gRPC on loopback with the Python client: Check p50 {us(c['latency_ns']['p50'])}, "
                   f"p99 {us(c['latency_ns']['p99'])} — gRPC and Python at both ends, not the decision "
                   f"({us(p['p50_ns'])}), make the latency of a remote call.")
    g = data.get("grpc")
    if g and "results" in g:
        r = g["results"]
        names = list(r)
        out.append("- pdp serve against Cerbos (one small policy, same client): Check p50 "
                   + " vs ".join(f"{r[n]['check_p50_us']:.0f} µs" for n in names) + "; 64 in flight "
                   + " vs ".join(f"{r[n]['inflight64_per_s']:,}" for n in names) + " calls/s; batches of 100 "
                   + " vs ".join(f"{r[n]['batch100_decisions_per_s']:,}" for n in names)
                   + " decisions/s (" + " vs ".join(names) + ").")
    return out


def plot(data: dict, out_dir: Path) -> dict[str, str]:
    """PNG plots in out_dir/plots; returns {name: relative path}. Empty without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plots (pip install '.[bench]')")
        return {}
    pdir = out_dir / "plots"
    pdir.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    colors = {"pdp": "C0", "cedar": "C1", "rego": "C2", "casbin": "C3", "pdp-bundle": "C4"}

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(pdir / f"{name}.png", dpi=110)
        plt.close(fig)
        made[name] = f"plots/{name}.png"

    def cdf(ax, samples, label, color=None, style="-"):
        s = sorted(samples)
        n = len(s)
        ax.plot([x / 1e3 for x in s], [(i + 1) / n for i in range(n)], style, label=label, color=color)

    # latency distribution
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, samples in data["samples"].items():
        cdf(ax, samples, name, colors.get(name))
    ax.set_xscale("log")
    ax.set_xlabel("latency per decision (µs, log scale)")
    ax.set_ylabel("fraction of calls")
    ax.set_title(f"Per-call latency, {data['inprocess']['workload']}, in process")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save(fig, "latency_cdf")

    # policy size
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for layout, style in (("targeted", "-o"), ("flat", "--s")):
        for name in ("pdp", "cedar", "rego", "casbin"):
            rows = sorted((r for r in data["policy_size"] if r["engine"] == name and r["layout"] == layout),
                          key=lambda r: r["rules"])
            if rows:
                ax.plot([r["rules"] for r in rows], [r["p50_ns"] / 1e3 for r in rows], style, color=colors[name],
                        label=f"{name} ({layout})", markersize=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rules in the policy set")
    ax.set_ylabel("p50 latency per decision (µs)")
    ax.set_title("Latency vs policy-set size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    save(fig, "policy_size")

    # request size
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, (kind, label) in zip(axes, (("list", "entries in identity.scopes"), ("attributes", "extra identity attributes"))):
        for name in ("pdp", "cedar", "rego", "casbin"):
            rows = sorted((r for r in data["request_size"] if r["engine"] == name and r["kind"] == kind),
                          key=lambda r: r["value"])
            if rows:
                ax.plot([max(r["value"], 1) for r in rows], [r["p50_ns"] / 1e3 for r in rows], "-o", color=colors[name],
                        label=name, markersize=4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"{label} (0 plotted at 1)")
        ax.set_ylabel("p50 latency (µs)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Latency vs request size (100 rules)")
    save(fig, "request_size")

    # start time
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    st = data["start"]
    n = [r["rules"] for r in st]
    ax.plot(n, [r["load_s"] for r in st], "-o", label="pdp.load (source)", color="C0")
    ax.plot(n, [r["bundle_load_s"] for r in st], "-s", label="pdp.load_bundle", color="C4")
    cold = [r for r in st if "cold_bundle_s" in r]
    if cold:
        ax.plot([r["rules"] for r in cold], [r["cold_source_s"] for r in cold], ":o", label="new process, source",
                color="C0")
        ax.plot([r["rules"] for r in cold], [r["cold_bundle_s"] for r in cold], ":s", label="new process, bundle",
                color="C4")
    for name in ("cedar", "rego", "casbin"):
        rows = sorted((r for r in data["policy_size"] if r["engine"] == name and r["layout"] == "targeted"),
                      key=lambda r: r["rules"])
        if rows:
            ax.plot([r["rules"] for r in rows], [r["build_s"] for r in rows], "--^", color=colors[name],
                    label=f"{name} build", markersize=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rules")
    ax.set_ylabel("seconds")
    ax.set_title("Start: from policy text (or a bundle) to a ready engine")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "start_time")

    # memory
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name in dict.fromkeys(r["engine"] for r in data["memory"]):
        rows = sorted((r for r in data["memory"] if r["engine"] == name), key=lambda r: r["rules"])
        ax.plot([r["rules"] for r in rows], [max(r["bytes"], 1) / 2**20 for r in rows], "-o", color=colors.get(name),
                label=name, markersize=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rules")
    ax.set_ylabel("resident memory added (MiB)")
    ax.set_title("Memory to hold the policy set")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "memory")

    # over the wire
    wire = data.get("wire")
    if wire and wire.get("samples"):
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        cdf(ax, data["samples"]["pdp"], "decide, in process", "C0")
        for i, (name, samples) in enumerate(wire["samples"].items()):
            cdf(ax, samples, f"pdp serve, {name}", f"C{5 + i}")
        ax.set_xscale("log")
        ax.set_xlabel("latency per call (µs, log scale)")
        ax.set_ylabel("fraction of calls")
        ax.set_title("pdp in process vs over gRPC on loopback (Python client)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "wire_cdf")
    return made


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, few rounds: checks the whole pipeline")
    ap.add_argument("--render-only", action="store_true", help="re-render RESULTS.md and plots from RESULTS.json")
    ap.add_argument("--out-dir", type=Path, default=HERE, help="where RESULTS.md, RESULTS.json, plots/ go (default bench/)")
    ap.add_argument("--no-wire", action="store_true", help="skip the over-the-wire section")
    ap.add_argument("--no-pytest-benchmark", action="store_true", help="skip running bench/test_compare.py")
    ap.add_argument("--cerbos", default=os.environ.get("CERBOS_BIN"), help="a Cerbos binary for bench_grpc.py")
    ap.add_argument("--npm-cerbos", action="store_true",
                    help="let bench_grpc.py npm install cerbos (cached); the default when npm is on PATH")
    ap.add_argument("--no-cerbos", action="store_true", help="over the wire, measure pdp serve only")
    args = ap.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.no_cerbos:
        args.cerbos, args.npm_cerbos = None, False
    elif not args.cerbos and shutil.which("npm"):
        args.npm_cerbos = True
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    data_path = out_dir / "RESULTS.json"
    if args.render_only:
        data = json.loads(data_path.read_text())
    else:
        data = measure(args)
        data_path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    plots = plot(data, out_dir)
    (out_dir / "RESULTS.md").write_text(render(data, plots, out_dir))
    log(f"wrote {out_dir / 'RESULTS.md'}, {data_path.name} and {len(plots)} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
