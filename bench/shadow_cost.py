"""The cost of ``--shadow`` on the answer: sequential ``Check`` latency with and without it, side by side.

Two ``pdp serve --workers 1 --decision-log FILE`` processes serve the same policy
(bench_grpc.py's); one also has ``--shadow CANDIDATE`` (the same policy with one more
forbid). Each round times N sequential unary calls on each in turn (the order alternates
between rounds) with the same grpcio client code and a request message built once. Prints a
Markdown table of medians over rounds and writes every round to ``--out`` (JSON). The issue's
bar: p50 with ``--shadow`` at most 1.3x without.

    python bench/shadow_cost.py --rounds 7 --calls 2000 --out bench/results/shadow-DATE.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_grpc import PDP_POLICY, REQUEST, free_port  # noqa: E402

from check_rounds import alternate_rounds  # noqa: E402
from pdp.client import encode  # noqa: E402

CANDIDATE_EXTRA = """
policy candidate_extra {
  forbid no_dev_refunds
    when action.name == "refund" and identity.env == "dev"
}
"""


def start(policies: Path, address: str, log: Path, shadow: Path | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    extra = ["--shadow", str(shadow)] if shadow is not None else []
    return subprocess.Popen([sys.executable, "-m", "pdp", "serve", str(policies), "--addr", address, "--workers", "1",
                             "--log-level", "WARNING", "--decision-log", str(log), *extra], env=env,
                            stdin=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per server per round")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--out", type=Path, help="write the rounds as JSON here")
    args = parser.parse_args(argv)

    message = encode(REQUEST)
    with tempfile.TemporaryDirectory(prefix="pdp-shadow-bench-") as tmp:
        policies = Path(tmp) / "policies"
        policies.mkdir()
        (policies / "payments.pdl").write_text(PDP_POLICY)
        candidate = Path(tmp) / "candidate"
        candidate.mkdir()
        (candidate / "payments.pdl").write_text(PDP_POLICY + CANDIDATE_EXTRA)
        addresses = {"plain": f"127.0.0.1:{free_port()}", "shadow": f"127.0.0.1:{free_port()}"}
        procs = {name: start(policies, address, Path(tmp) / f"{name}.jsonl",
                             candidate if name == "shadow" else None) for name, address in addresses.items()}
        rounds, medians = alternate_rounds(addresses, procs, message, rounds=args.rounds,
                                           calls=args.calls, warmup=args.warmup)

    print("| server | Check p50 µs | p90 µs | p99 µs |\n|---|---|---|---|")
    for name, label in (("plain", "--decision-log"), ("shadow", "--decision-log --shadow")):
        m = medians[name]
        print(f"| {label} | {m['p50_us']:.0f} | {m['p90_us']:.0f} | {m['p99_us']:.0f} |")
    if args.out:
        args.out.write_text(json.dumps({
            "command": "python bench/shadow_cost.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "grpcio": grpc.__version__,
                        "loadavg": os.getloadavg()},
            "calls": args.calls, "rounds": rounds, "medians": medians,
            "p50_ratio": medians["shadow"]["p50_us"] / medians["plain"]["p50_us"]}, indent=2) + "\n")
    print(f"p50 with --shadow / without: {medians['shadow']['p50_us'] / medians['plain']['p50_us']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
