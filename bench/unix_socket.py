"""Sequential ``Check`` latency over a Unix domain socket against loopback TCP, side by side.

Two ``pdp serve --workers 1`` processes serve the same policy (bench_grpc.py's), one on
``127.0.0.1:PORT`` and one on ``unix:PATH``; each round times N sequential unary calls on
each in turn (the order alternates between rounds) with the same grpcio client code and a
request message built once. Prints a Markdown table of medians over rounds and writes every
round to ``--out`` (JSON).

    python bench/unix_socket.py --rounds 7 --calls 2000 --out bench/results/unix-socket-DATE.json
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


def start(policies: Path, address: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    return subprocess.Popen([sys.executable, "-m", "pdp", "serve", str(policies), "--addr", address, "--workers", "1",
                             "--log-level", "WARNING"], env=env, stdin=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per server per round")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--out", type=Path, help="write the rounds as JSON here")
    args = parser.parse_args(argv)

    message = encode(REQUEST)
    with tempfile.TemporaryDirectory(prefix="pdp-unix-bench-") as tmp:
        policies = Path(tmp) / "policies"
        policies.mkdir()
        (policies / "payments.pdl").write_text(PDP_POLICY)
        addresses = {"tcp": f"127.0.0.1:{free_port()}", "unix": f"unix:{tmp}/pdp.sock"}
        procs = {name: start(policies, address) for name, address in addresses.items()}
        rounds, medians = alternate_rounds(addresses, procs, message, rounds=args.rounds,
                                           calls=args.calls, warmup=args.warmup)

    print("| transport | Check p50 µs | p90 µs | p99 µs |\n|---|---|---|---|")
    for name, label in (("tcp", "127.0.0.1 TCP"), ("unix", "Unix socket")):
        m = medians[name]
        print(f"| {label} | {m['p50_us']:.0f} | {m['p90_us']:.0f} | {m['p99_us']:.0f} |")
    if args.out:
        args.out.write_text(json.dumps({
            "command": "python bench/unix_socket.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "grpcio": grpc.__version__,
                        "loadavg": os.getloadavg()},
            "calls": args.calls, "rounds": rounds, "medians": medians}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
