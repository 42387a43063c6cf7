"""Sequential Check latency of several running pdp servers, side by side: rounds alternate the
order in which the servers are called, so drifting machine load falls on all of them alike.
Used by bench/unix_socket.py (TCP against a Unix socket) and bench/shadow_cost.py (with and
without --shadow)."""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import time

import grpc

from pdp.v1 import decision_pb2 as pb


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def timed_calls(check, message, calls: int) -> list[int]:
    times = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        check(message, timeout=10)
        times.append(time.perf_counter_ns() - started)
    return times


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # µs




def alternate_rounds(addresses: dict[str, str], procs: dict[str, subprocess.Popen], message, *, rounds: int,
                     calls: int, warmup: int) -> tuple[list[dict], dict]:
    """Time ``calls`` sequential Checks per server per round (after ``warmup``); stops ``procs``.
    Returns every round's percentiles and their medians per server."""
    channels = {}
    try:
        for name, address in addresses.items():
            channels[name] = grpc.insecure_channel(address)
            grpc.channel_ready_future(channels[name]).result(timeout=60)
        checks = {name: channel.unary_unary("/pdp.v1.DecisionService/Check",
                                            request_serializer=pb.CheckRequest.SerializeToString,
                                            response_deserializer=pb.CheckResponse.FromString)
                  for name, channel in channels.items()}
        for name, check in checks.items():
            assert check(message, timeout=10).decision == pb.DECISION_ALLOW, name
            timed_calls(check, message, warmup)
        results = []
        for r in range(rounds):
            order = list(checks) if r % 2 == 0 else list(reversed(checks))
            result = {}
            for name in order:
                times = timed_calls(checks[name], message, calls)
                result[name] = {"p50_us": percentile(times, 0.50), "p90_us": percentile(times, 0.90),
                                "p99_us": percentile(times, 0.99)}
            results.append(result)
            print(f"round {r + 1}: " + ", ".join(f"{n} p50 {v['p50_us']:.0f} µs" for n, v in result.items()),
                  file=sys.stderr)
    finally:
        for channel in channels.values():
            channel.close()
        for proc in procs.values():
            stop(proc)
    medians = {name: {k: statistics.median(r[name][k] for r in results) for k in ("p50_us", "p90_us", "p99_us")}
               for name in addresses}
    return results, medians
