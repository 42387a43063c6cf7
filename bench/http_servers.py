"""Which HTTP server should carry AuthZEN? One handler, several servers, the same wrk client.

    pip install aiohttp uvicorn[standard] starlette granian; apt-get install wrk
    python bench/http_servers.py --json bench/results/http-servers-DATE.json

The handler is the same everywhere: read the body, map it with ``pdp.authzen.mapping``,
decide with the compiled engine, answer JSON (bench_grpc.py's payments policy). Each server
runs with 1 and with 2 processes sharing the port (SO_REUSEPORT, as ``pdp serve --workers``
does). Measured with wrk: sequential (1 connection) p50 and requests per second with 32
keep-alive connections; rounds alternate over the servers, the medians count.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_grpc import PDP_POLICY, REPO, free_port, wait_port  # noqa: E402
from bench_http import BODY, loadavg, wrk  # noqa: E402

SERVERS = ("aiohttp", "aiohttp+uvloop", "starlette+uvicorn", "uvicorn (bare ASGI)", "granian (RSGI)")


def make_handler(policies: str):
    sys.path.insert(0, str(REPO))
    import pdp
    from pdp.authzen import mapping

    engine = pdp.load(policies)
    dumps = json.JSONEncoder(separators=(",", ":")).encode

    def handle(raw: bytes) -> bytes:
        return dumps(mapping.answer(engine.decide(mapping.to_request(json.loads(raw))))).encode()

    return handle


def _socket(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1024)
    return s


def serve(kind: str, port: int, policies: str) -> None:
    """One server process (run by ``main`` as ``python http_servers.py serve KIND PORT DIR``)."""
    handle = make_handler(policies)
    if kind.startswith("aiohttp"):
        if kind == "aiohttp+uvloop":
            import uvloop

            uvloop.install()
        from aiohttp import web

        async def evaluation(request):
            return web.Response(body=handle(await request.read()), content_type="application/json")

        app = web.Application()
        app.router.add_post("/access/v1/evaluation", evaluation)
        web.run_app(app, sock=_socket(port), print=None, access_log=None)
        return
    import uvicorn

    if kind == "starlette+uvicorn":
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        async def evaluation(request):
            return Response(handle(await request.body()), media_type="application/json")

        app = Starlette(routes=[Route("/access/v1/evaluation", evaluation, methods=["POST"])])
    else:
        async def app(scope, receive, send):
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": handle(body)})

    config = uvicorn.Config(app, loop="uvloop", http="httptools", access_log=False, log_level="warning",
                            lifespan="off")
    uvicorn.Server(config).run(sockets=[_socket(port)])


RSGI_APP = """
import os, sys
sys.path.insert(0, {here!r})
from http_servers import make_handler
handle = make_handler(os.environ["PDP_BENCH_POLICIES"])

async def app(scope, protocol):
    protocol.response_bytes(200, [("content-type", "application/json")], handle(await protocol()))
"""


def start(kind: str, workers: int, work: Path) -> tuple[list[subprocess.Popen], int]:
    port = free_port()
    policies = str(work / "pdp")
    if kind == "granian (RSGI)":
        (work / "rsgi_app.py").write_text(RSGI_APP.format(here=str(HERE)))
        env = {**os.environ, "PYTHONPATH": f"{work}:{HERE}", "PDP_BENCH_POLICIES": policies}
        procs = [subprocess.Popen([sys.executable, "-m", "granian", "--interface", "rsgi", "--host", "127.0.0.1",
                                   "--port", str(port), "--workers", str(workers), "--no-ws", "--log-level",
                                   "warning", "rsgi_app:app"], cwd=work, env=env)]
    else:
        procs = [subprocess.Popen([sys.executable, __file__, "serve", kind, str(port), policies])
                 for _ in range(workers)]
    wait_port(port)
    time.sleep(1.0 + 0.5 * workers)
    return procs, port


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", nargs="*", default=list(SERVERS), choices=SERVERS)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    runs: dict[str, list[dict]] = {}
    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="pdp-bench-servers-") as tmp:
        work = Path(tmp)
        (work / "pdp").mkdir()
        (work / "pdp" / "payments.pdl").write_text(PDP_POLICY)
        script = work / "post.lua"
        script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                          f"wrk.body = [[{json.dumps(BODY)}]]\n")
        for r in range(args.rounds):
            for kind in (args.servers if r % 2 == 0 else args.servers[::-1]):
                for workers in (1, 2):
                    procs, port = start(kind, workers, work)
                    try:
                        wrk(port, 4, 1, script)  # warm up
                        seq = wrk(port, 1, args.seconds, script)
                        c32 = wrk(port, 32, args.seconds, script)
                    finally:
                        stop(procs)
                    row = {"seq_p50_ms": seq["p50_ms"], "seq_rps": seq["rps"], "c32_rps": c32["rps"],
                           "c32_p50_ms": c32["p50_ms"], "c32_p99_ms": c32["p99_ms"]}
                    runs.setdefault(f"{kind}, {workers} process{'es' if workers > 1 else ''}", []).append(row)
                    print(kind, workers, row, file=sys.stderr, flush=True)
    load_after = loadavg()
    summary = {name: {k: statistics.median(x[k] for x in rows) for k in rows[0]} for name, rows in runs.items()}
    print("| server | sequential p50 | sequential req/s | 32 connections req/s | p50 | p99 |")
    print("|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['seq_p50_ms'] * 1000:.0f} µs | {s['seq_rps']:.0f} | {s['c32_rps']:.0f} | "
              f"{s['c32_p50_ms']:.2f} ms | {s['c32_p99_ms']:.2f} ms |")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    if args.json:
        Path(args.json).write_text(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                               "cores": os.cpu_count(), "rounds": args.rounds,
                                               "seconds": args.seconds, "load_before": load_before,
                                               "load_after": load_after, "summary": summary, "runs": runs},
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit(main())
