"""``pdp bench PATH... --requests FILE``: latency percentiles and throughput of pdp on your
policies and your traffic.

FILE is JSON Lines: one request object per line (blank lines are skipped). Every request is
decided once first (a malformed one is an error naming its line), then the engine warms up,
then two timed loops run: ``decide`` (one request per call) and ``decide_many`` (batches of
--batch-size). Each call is timed on its own; the report gives p50, p90, p99, p99.9 and max
latency per call and the throughput in decisions per second.

With --addr, the same is measured over gRPC against a running ``pdp serve``: ``check`` (one
request per call) and ``check_batch`` (CheckBatch of --batch-size), with --concurrency calls
in flight. PATHs are then optional; when given, the server's decisions are checked against
theirs before timing.

Exit codes: 0 done (and within budget), 1 a policy, request-file or connection error, or p99
over --budget-p99, 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..benchmark import (
    Progress,
    RequestsFileError,
    format_ns,
    machine_info,
    parse_duration,
    read_requests,
    summarize,
    time_calls,
    time_remote,
    timer_overhead_ns,
)
from ..errors import PolicyError, RequestError
from .args import positive

EXAMPLE = """examples:
  $ pdp bench policies/ --requests traffic.jsonl
  $ pdp bench policies/ --requests traffic.jsonl --budget-p99 50us --json > bench.json
  $ pdp bench --addr 127.0.0.1:50051 --requests traffic.jsonl --concurrency 8 --duration 10s

--budget-p99 applies to single-request latency (decide, or check with --addr); the run
exits 1 when that p99 is over budget, so a deploy can be gated on it.
"""

LOCAL_MODES = ("decide", "decide_many")
REMOTE_MODES = ("check", "check_batch")


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure latency percentiles and throughput on your policies and requests",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH", help="policy and data files or folders")
    p.add_argument("--requests", "-r", required=True, metavar="FILE",
                   help="JSON Lines, one request per line ('-': standard input)")
    p.add_argument("--duration", type=_duration_s, default=None, metavar="S",
                   help="how long each timed loop runs (seconds, or 500ms, 2s, ...; default 3s)")
    p.add_argument("--iterations", "-n", type=positive, default=None, metavar="N",
                   help="time N single-request calls and N/batch-size batches instead of a duration")
    p.add_argument("--warmup", type=_duration_s, default=1.0, metavar="S",
                   help="warm-up before timing (seconds, or 200ms, ...; default 1s; 0 for none)", )
    p.add_argument("--batch-size", type=positive, default=100, metavar="N",
                   help="requests per decide_many / CheckBatch call (default 100)")
    p.add_argument("--mode", action="append", choices=LOCAL_MODES + REMOTE_MODES, metavar="MODE",
                   help="time only this loop (repeatable): decide, decide_many; with --addr: check, check_batch")
    p.add_argument("--backend", choices=("compiled", "python", "reference"), default=None,
                   help="the evaluator (default: the fastest available)")
    p.add_argument("--addr", metavar="HOST:PORT", help="measure a running pdp serve over gRPC instead")
    p.add_argument("--concurrency", "-c", type=positive, default=None, metavar="N",
                   help="with --addr: calls in flight at once (default 1)")
    p.add_argument("--timeout", type=_duration_s, default=10.0, metavar="S",
                   help="with --addr: deadline per call (default 10s)")
    p.add_argument("--budget-p99", type=_budget, default=None, metavar="DURATION",
                   help="exit 1 when the single-request p99 is over DURATION (2us, 500us, 1ms)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(run=run)


def _duration_s(text: str) -> float:
    if text.strip() in ("0", "0s"):
        return 0.0
    try:
        return parse_duration(text, default_unit="s") / 1e9
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _budget(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Fail(Exception):
    """An error to print (to stderr) before exiting 1."""


def run(args) -> int:
    remote = args.addr is not None
    if not remote and not args.paths:
        return _usage(args, "give the policies (PATH...) or a server (--addr HOST:PORT)")
    if args.concurrency is not None and not remote:
        return _usage(args, "--concurrency measures a server: use it with --addr")
    if args.duration is not None and args.duration <= 0:
        return _usage(args, "--duration must be positive")
    modes = tuple(dict.fromkeys(args.mode or (REMOTE_MODES if remote else LOCAL_MODES)))
    wrong = [m for m in modes if m not in (REMOTE_MODES if remote else LOCAL_MODES)]
    if wrong:
        allowed = ", ".join(REMOTE_MODES if remote else LOCAL_MODES)
        return _usage(args, f"--mode {wrong[0]} is not available {'with' if remote else 'without'} --addr "
                            f"(choose from {allowed})")
    if args.iterations is None and args.duration is None:
        args.duration = 3.0
    try:
        report = _remote(args, modes) if remote else _local(args, modes)
    except (PolicyError, RequestsFileError, _Fail) as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else _render(report))
    budget = report.get("budget")
    if budget is not None and not budget["ok"]:
        print(f"over budget: {budget['mode']} p99 {format_ns(budget['p99_ns'])} > "
              f"{format_ns(budget['budget_ns'])}", file=sys.stderr)
        return 1
    return 0


def _usage(args, message: str) -> int:
    print(f"usage: pdp bench PATH... --requests FILE [options]\npdp bench: error: {message}", file=sys.stderr)
    return 2


# --------------------------------------------------------------------------------------------
# local engine


def _local(args, modes: tuple[str, ...]) -> dict:
    from ..engine import load

    engine = load(args.paths, backend=args.backend)
    lines = read_requests(args.requests)
    requests = [r for _, r in lines]
    decided = {"ALLOW": 0, "DENY": 0}
    for number, request in lines:  # every request once: errors by line, and the decision mix
        try:
            decided[engine.decide(request).decision] += 1
        except RequestError as err:
            raise RequestsFileError(_name(args.requests), number, f"request error: {err}") from None
    report = _header(args, "local", requests, decided)
    report.update(backend=engine.backend, revision=engine.revision, rules=len(engine.rule_ids))
    progress = Progress()
    decide = engine.decide
    batches = _batches(requests, args.batch_size)
    report["warmup"] = _warmup(args.warmup, lambda: time_calls(decide, requests, seconds=args.warmup,
                                                                progress=progress, label="warm-up"))
    results = {}
    for mode in modes:
        if mode == "decide":
            samples, wall = time_calls(decide, requests, calls=args.iterations, seconds=args.duration,
                                       progress=progress, label=mode)
            results[mode] = summarize(samples, wall).to_dict()
        else:
            calls = None if args.iterations is None else max(1, -(-args.iterations // args.batch_size))
            samples, wall = time_calls(engine.decide_many, batches, calls=calls, seconds=args.duration,
                                       progress=progress, label=mode, unit="batches")
            results[mode] = summarize(samples, wall, batch_size=args.batch_size).to_dict()
    report["modes"] = results
    _budget_verdict(report, args.budget_p99, "decide")
    return report


# --------------------------------------------------------------------------------------------
# a server over gRPC


def _remote(args, modes: tuple[str, ...]) -> dict:
    try:
        import grpc

        from ..client import Client
    except ImportError as exc:  # pragma: no cover - grpcio is a dependency
        raise _Fail(f"--addr needs the gRPC client: {exc}") from None
    lines = read_requests(args.requests)
    requests = [r for _, r in lines]
    client = Client(args.addr, timeout=args.timeout)
    try:
        try:
            grpc.channel_ready_future(client.channel).result(timeout=min(args.timeout, 10.0))
        except grpc.FutureTimeoutError:
            raise _Fail(f"cannot connect to {args.addr}: nothing answered within "
                        f"{min(args.timeout, 10.0):g}s (is pdp serve running there?)") from None
        decided = {"ALLOW": 0, "DENY": 0}
        remote_decisions = []
        for start in range(0, len(lines), 500):  # every request once, in batches: errors by line
            chunk = lines[start:start + 500]
            try:
                answers = client.check_batch([r for _, r in chunk], return_errors=True)
            except grpc.RpcError as err:
                raise _Fail(f"{args.addr}: CheckBatch failed: {err.code().name}: {err.details()}") from None
            for (number, _), answer in zip(chunk, answers):
                if isinstance(answer, RequestError):
                    raise RequestsFileError(_name(args.requests), number, f"request error (from the server): {answer}")
                decided[answer.decision] += 1
                remote_decisions.append(answer)
        report = _header(args, "remote", requests, decided)
        report.update(addr=args.addr, revision=remote_decisions[0].revision if remote_decisions else None)
        if args.paths:
            report["checked_against"] = _compare_with_local(args, lines, remote_decisions)
        concurrency = args.concurrency or 1
        progress = Progress()
        batches = _batches(requests, args.batch_size)
        check, check_batch = client.check, client.check_batch
        report["warmup"] = _warmup(args.warmup, lambda: time_remote(check, requests, concurrency=concurrency,
                                                                     seconds=args.warmup, progress=progress,
                                                                     label="warm-up")[:2])
        results = {}
        for mode in modes:
            if mode == "check":
                fn, inputs, size, calls, unit = check, requests, 1, args.iterations, "calls"
            else:
                fn, inputs, size, unit = check_batch, batches, args.batch_size, "batches"
                calls = None if args.iterations is None else max(1, -(-args.iterations // args.batch_size))
            samples, wall, failed, errors = time_remote(fn, inputs, concurrency=concurrency, calls=calls,
                                                        seconds=args.duration, progress=progress, label=mode,
                                                        unit=unit)
            if not samples:
                raise _Fail(f"{args.addr}: every {mode} call failed, e.g. {_rpc_error(errors[0])}")
            stats = summarize(samples, wall, batch_size=size, concurrency=concurrency, errors=failed).to_dict()
            if errors:
                stats["first_error"] = _rpc_error(errors[0])
            results[mode] = stats
        report["modes"] = results
    finally:
        client.close()
    _budget_verdict(report, args.budget_p99, "check")
    return report


def _compare_with_local(args, lines, remote_decisions) -> dict:
    from ..clock import DEFAULT_MAX_SKEW
    from ..engine import load

    # pdp serve bounds context.time to its clock (pdp.clock): decide here as it does, or a
    # request with an old fixed time would look like a different policy set.
    engine = load(args.paths, backend=args.backend, max_clock_skew=DEFAULT_MAX_SKEW)
    for (number, request), theirs in zip(lines, remote_decisions):
        ours = engine.decide(request)
        if ours.decision != theirs.decision or [r.rule for r in ours.reasons] != [r.rule for r in theirs.reasons]:
            raise _Fail(f"{_name(args.requests)}:{number}: the server decided {theirs.decision} "
                        f"({', '.join(r.rule for r in theirs.reasons)}) but {' '.join(args.paths)} decide "
                        f"{ours.decision} ({', '.join(r.rule for r in ours.reasons)}); server revision "
                        f"{theirs.revision}, local revision {engine.revision}")
    return {"paths": list(args.paths), "revision": engine.revision, "requests": len(lines), "agree": True}


def _rpc_error(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            return f"{code().name}: {exc.details()}"  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001
            pass
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------
# shared


def _name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _batches(requests: list, size: int) -> list[list]:
    """Batches of ``size`` requests cycling through ``requests`` (each request used equally)."""
    n = len(requests)
    count = max(1, -(-n // size))
    return [[requests[(k * size + j) % n] for j in range(size)] for k in range(count)]


def _warmup(seconds: float, run) -> dict:
    if seconds <= 0:
        return {"seconds": 0.0, "calls": 0}
    samples, wall = run()
    return {"seconds": round(wall, 3), "calls": len(samples)}


def _header(args, target: str, requests: list, decided: dict) -> dict:
    return {"tool": "pdp bench", "target": target, "paths": list(args.paths), "requests_file": _name(args.requests),
            "requests": len(requests), "decisions": decided,
            "settings": {"duration_s": args.duration, "iterations": args.iterations, "warmup_s": args.warmup,
                         "batch_size": args.batch_size, "concurrency": args.concurrency or 1},
            "timer_overhead_ns": timer_overhead_ns(), "machine": machine_info()}


def _budget_verdict(report: dict, budget_ns: int | None, mode: str) -> None:
    if budget_ns is None:
        return
    stats = report["modes"].get(mode)
    if stats is None:
        raise _Fail(f"--budget-p99 applies to {mode}, which this run did not time (see --mode)")
    p99 = stats["latency_ns"]["p99"]
    report["budget"] = {"mode": mode, "budget_ns": budget_ns, "p99_ns": p99, "ok": p99 <= budget_ns}


def _render(report: dict) -> str:
    out = []
    if report["target"] == "local":
        out.append(f"pdp bench: {' '.join(report['paths'])}: {report['rules']} rules, revision {report['revision']}, "
                   f"{report['backend']} evaluator")
    else:
        out.append(f"pdp bench: pdp serve at {report['addr']} (revision {report['revision']}), "
                   f"{report['settings']['concurrency']} in flight")
        checked = report.get("checked_against")
        if checked:
            out.append(f"checked: the server decides all {checked['requests']} requests as "
                       f"{' '.join(checked['paths'])} do")
    d = report["decisions"]
    out.append(f"requests: {report['requests_file']}: {report['requests']:,} requests "
               f"({d['ALLOW']:,} ALLOW, {d['DENY']:,} DENY)")
    m = report["machine"]
    out.append(f"machine: {m['cpu']}, {m['cores']} cores, {m['python']}; "
               f"timer overhead {report['timer_overhead_ns']} ns per call (included)")
    w = report["warmup"]
    out.append(f"warm-up: {w['seconds']:g} s ({w['calls']:,} calls)")
    out.append("")
    header = ("", "calls", "decisions", "p50", "p90", "p99", "p99.9", "max", "decisions/s")
    rows = [header]
    for mode, s in report["modes"].items():
        lat = s["latency_ns"]
        name = mode if s["batch_size"] == 1 else f"{mode} ({s['batch_size']})"
        rows.append((name, f"{s['calls']:,}", f"{s['decisions']:,}", format_ns(lat["p50"]), format_ns(lat["p90"]),
                     format_ns(lat["p99"]), format_ns(lat["p99.9"]), format_ns(lat["max"]),
                     f"{s['throughput_per_s']:,.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        out.append("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip())
    if any(s["batch_size"] > 1 for s in report["modes"].values()):
        out.append("(latency is per call: per batch for the batched modes)")
    for mode, s in report["modes"].items():
        if s.get("errors"):
            out.append(f"{mode}: {s['errors']:,} calls failed, e.g. {s.get('first_error', '?')}")
    budget = report.get("budget")
    if budget is not None:
        verdict = "ok" if budget["ok"] else "OVER BUDGET"
        sign = "<=" if budget["ok"] else ">"
        out.append(f"budget: {budget['mode']} p99 {format_ns(budget['p99_ns'])} {sign} "
                   f"{format_ns(budget['budget_ns'])}: {verdict}")
    return "\n".join(out)
