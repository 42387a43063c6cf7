"""AuthZEN over HTTP: pdp serve --http-addr against Cerbos's own AuthZEN endpoint, side by side.

    apt-get install wrk                                   # the one HTTP client both are measured with
    python bench/bench_http.py --npm-cerbos               # or --cerbos /path/to/cerbos, CERBOS_BIN=...
    python bench/bench_http.py --npm-cerbos --json bench/results/http-cerbos-DATE.json

Both servers get the same policy (bench_grpc.py's payments policy, written for each) and the
same request body (``POST /access/v1/evaluation``, the subject's attributes as AuthZEN
``properties``); each is checked to allow it and to deny a variant before timing. The
client is wrk over keep-alive connections, the same invocation for both:

- sequential: 1 connection, 1 thread: the p50 latency of one evaluation after another;
- throughput: 32 connections on 2 threads: evaluations per second.

Rounds alternate between the servers so that a change in the machine's load hits both; the
figures are the medians over rounds. The load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_grpc import (CERBOS_CONFIG, CERBOS_POLICY, PDP_POLICY, REPO, CerbosServer, Server,  # noqa: E402
                        free_port, npm_cerbos, wait_port)

PATH = "/access/v1/evaluation"
BODY = {
    "subject": {"type": "workload", "id": "billing",
                "properties": {"spiffe_id": "spiffe://acme.prod/ns/billing/sa/api", "env": "prod",
                               "scopes": ["payments:write"], "roles": ["workload"]}},
    "action": {"name": "charge"},
    "resource": {"type": "payment", "id": "pay-42", "properties": {"env": "prod"}},
}
DENIED = {**BODY, "resource": {"type": "payment", "id": "pay-42", "properties": {"env": "dev"}}}


class PdpHttp(Server):
    def __init__(self, workdir: Path, workers: int):
        self.name = f"pdp (aiohttp, workers={workers})"
        policies = workdir / "pdp"
        policies.mkdir(exist_ok=True)
        (policies / "payments.pdl").write_text(PDP_POLICY)
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-m", "pdp", "serve", str(policies), "--addr", "127.0.0.1:0",
                                      "--http-addr", f"127.0.0.1:{self.port}", "--workers", str(workers),
                                      "--log-level", "WARNING"], env=env, stdin=subprocess.DEVNULL)
        wait_port(self.port)
        time.sleep(0.5 * workers)  # let every worker bind


class CerbosHttp(CerbosServer):
    def __init__(self, workdir: Path, binary: str):
        self.name = "cerbos"
        policies = workdir / "cerbos"
        policies.mkdir(exist_ok=True)
        (policies / "payment.yaml").write_text(CERBOS_POLICY)
        self.port = free_port()  # HTTP: where Cerbos serves AuthZEN
        config = workdir / "cerbos.yaml"
        config.write_text(CERBOS_CONFIG.format(http=self.port, grpc=free_port(), policies=policies))
        self.proc = subprocess.Popen([binary, "server", f"--config={config}"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_port(self.port)


def post(port: int, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{PATH}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def verify(server: Server) -> None:
    allowed, denied = post(server.port, BODY), post(server.port, DENIED)
    if allowed.get("decision") is not True or denied.get("decision") is not False:
        raise SystemExit(f"{server.name} does not decide like the others: {allowed} / {denied}")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(port: int, connections: int, seconds: float, script: Path) -> dict:
    threads = 1 if connections == 1 else 2
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--latency",
                          "-s", str(script), f"http://127.0.0.1:{port}{PATH}"],
                         capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec"):
            found["rps"] = float(parts[1])
        elif parts and parts[0] in ("50%", "90%", "99%"):
            found[f"p{parts[0][:-1]}_ms"] = _ms(parts[1])
        elif "Non-2xx" in line or "Socket errors" in line:
            found.setdefault("problems", []).append(line.strip())
    return found


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cerbos", default=os.environ.get("CERBOS_BIN"), help="the cerbos binary")
    ap.add_argument("--npm-cerbos", action="store_true", help="npm install cerbos into ~/.cache/pdp-bench")
    ap.add_argument("--workers", type=int, default=2, help="pdp serve --workers (default 2: the cores)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seq-seconds", type=float, default=5)
    ap.add_argument("--seconds", type=float, default=10, help="each throughput run")
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    binary = args.cerbos or (npm_cerbos(Path.home() / ".cache" / "pdp-bench" / "cerbos") if args.npm_cerbos else None)

    with tempfile.TemporaryDirectory(prefix="pdp-bench-http-") as tmp:
        work = Path(tmp)
        script = work / "post.lua"
        script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                          f"wrk.body = [[{json.dumps(BODY)}]]\n")
        servers: list[Server] = [PdpHttp(work, args.workers)]
        if binary:
            servers.append(CerbosHttp(work, binary))
        else:
            print("no cerbos binary (--cerbos, CERBOS_BIN or --npm-cerbos): pdp only", file=sys.stderr)
        try:
            for s in servers:
                verify(s)
                wrk(s.port, 8, 2, script)  # warm up
            load_before = loadavg()
            runs: dict[str, dict[str, list[dict]]] = {s.name: {"sequential": [], "c32": []} for s in servers}
            for r in range(args.rounds):
                order = servers if r % 2 == 0 else servers[::-1]
                for s in order:
                    runs[s.name]["sequential"].append(wrk(s.port, 1, args.seq_seconds, script))
                    runs[s.name]["c32"].append(wrk(s.port, 32, args.seconds, script))
                    print(f"round {r + 1} {s.name}: seq p50 {runs[s.name]['sequential'][-1]['p50_ms']:.3f} ms, "
                          f"32 conns {runs[s.name]['c32'][-1]['rps']:.0f}/s", file=sys.stderr, flush=True)
            load_after = loadavg()
        finally:
            for s in servers:
                s.stop()

    summary = {name: {"seq_p50_ms": statistics.median(x["p50_ms"] for x in r["sequential"]),
                      "seq_p99_ms": statistics.median(x["p99_ms"] for x in r["sequential"]),
                      "c32_rps": statistics.median(x["rps"] for x in r["c32"]),
                      "c32_p50_ms": statistics.median(x["p50_ms"] for x in r["c32"]),
                      "c32_p99_ms": statistics.median(x["p99_ms"] for x in r["c32"])}
               for name, r in runs.items()}
    print("| server | sequential p50 | sequential p99 | 32 connections: evaluations/s | p50 | p99 |")
    print("|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['seq_p50_ms'] * 1000:.0f} µs | {s['seq_p99_ms'] * 1000:.0f} µs | {s['c32_rps']:.0f} | "
              f"{s['c32_p50_ms']:.2f} ms | {s['c32_p99_ms']:.2f} ms |")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cores": os.cpu_count(),
            "cerbos": CerbosServer.version(binary) if binary else None, "workers": args.workers,
            "rounds": args.rounds, "seq_seconds": args.seq_seconds, "seconds": args.seconds,
            "load_before": load_before, "load_after": load_after, "summary": summary, "runs": runs,
        }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
