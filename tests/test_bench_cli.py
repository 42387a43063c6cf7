"""``pdp bench``: output fields, the JSON shape, budgets and exit codes, request-file errors by
line, usage errors, the progress indicator, and the measurement of a server over gRPC.

Every run here is tiny (a few requests, a few iterations, no warm-up): these tests check the
command, not the figures.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import pdp
from pdp import benchmark
from pdp.cli import main

POLICY = """\
policy payments {
  target resource.type == "payment"

  forbid cross_environment
    when identity.env != resource.env
    reason "a {identity.env} identity may not act on {resource.env} resources"

  permit billing_may_charge
    when identity.id == "billing" and action.name in ["charge", "refund"]
    reason "billing charges"
}
"""

ALLOW = {"identity": {"type": "workload", "id": "billing", "env": "prod"}, "action": {"name": "charge"},
         "resource": {"type": "payment", "id": "p1", "env": "prod"}}
DENY = {"identity": {"type": "workload", "id": "billing", "env": "staging"}, "action": {"name": "charge"},
        "resource": {"type": "payment", "id": "p1", "env": "prod"}}

FAST = ["--iterations", "20", "--warmup", "0", "--batch-size", "4"]


@pytest.fixture
def policies(tmp_path) -> Path:
    root = tmp_path / "policies"
    root.mkdir()
    (root / "payments.pdl").write_text(POLICY)
    return root


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


@pytest.fixture
def requests_file(tmp_path) -> Path:
    return write_lines(tmp_path / "requests.jsonl", [ALLOW, DENY, ALLOW])


def run_json(capsys, *args) -> tuple[int, dict, str]:
    code = main(["bench", *map(str, args), "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


# ---- the local engine -------------------------------------------------------------------------


def test_text_report_names_every_figure(policies, requests_file, capsys):
    assert main(["bench", str(policies), "--requests", str(requests_file), *FAST]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # no progress indicator: stderr is not a terminal
    for field in ("2 rules", "revision", "3 requests (2 ALLOW, 1 DENY)", "p50", "p90", "p99", "p99.9",
                  "decisions/s", "timer overhead", "warm-up: 0 s"):
        assert field in out, field
    lines = out.splitlines()
    assert any(line.startswith("decide ") and " 20 " in line for line in lines), out
    assert any(line.startswith("decide_many (4) ") for line in lines), out
    assert "budget" not in out


def test_json_shape(policies, requests_file, capsys):
    code, report, err = run_json(capsys, policies, "--requests", requests_file, *FAST)
    assert code == 0 and err == ""
    engine = pdp.load(policies)
    assert report["tool"] == "pdp bench" and report["target"] == "local"
    assert report["revision"] == engine.revision and report["rules"] == 2 and report["backend"] == engine.backend
    assert report["requests"] == 3 and report["decisions"] == {"ALLOW": 2, "DENY": 1}
    assert report["paths"] == [str(policies)] and report["requests_file"] == str(requests_file)
    assert report["warmup"] == {"seconds": 0.0, "calls": 0}
    assert set(report["machine"]) >= {"cpu", "cores", "python", "pdp"}
    assert isinstance(report["timer_overhead_ns"], int)
    assert set(report["modes"]) == {"decide", "decide_many"}
    decide, many = report["modes"]["decide"], report["modes"]["decide_many"]
    assert decide["calls"] == decide["decisions"] == 20 and decide["batch_size"] == 1
    assert many["calls"] == 5 and many["decisions"] == 20 and many["batch_size"] == 4  # ceil(20 / 4) batches
    for stats in (decide, many):
        lat = stats["latency_ns"]
        assert set(lat) == {"p50", "p90", "p99", "p99.9", "min", "max", "mean"}
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
        assert stats["throughput_per_s"] > 0 and stats["seconds"] > 0 and stats["errors"] == 0
    assert "budget" not in report


def test_duration_mode_and_warmup(policies, requests_file, capsys):
    code, report, _ = run_json(capsys, policies, "--requests", requests_file, "--duration", "50ms",
                               "--warmup", "20ms", "--mode", "decide")
    assert code == 0
    assert list(report["modes"]) == ["decide"]
    assert report["modes"]["decide"]["seconds"] >= 0.05 and report["modes"]["decide"]["calls"] > 0
    assert report["warmup"]["calls"] > 0 and report["settings"]["duration_s"] == 0.05


def test_backend_choice(policies, requests_file, capsys):
    code, report, _ = run_json(capsys, policies, "--requests", requests_file, *FAST, "--backend", "reference",
                               "--mode", "decide")
    assert code == 0 and report["backend"] == "reference"


def test_budget_met_exits_0(policies, requests_file, capsys):
    code, report, err = run_json(capsys, policies, "--requests", requests_file, *FAST, "--budget-p99", "10s")
    assert code == 0 and err == ""
    budget = report["budget"]
    assert budget["ok"] is True and budget["mode"] == "decide" and budget["budget_ns"] == 10_000_000_000
    assert budget["p99_ns"] == report["modes"]["decide"]["latency_ns"]["p99"]


def test_budget_exceeded_exits_1(policies, requests_file, capsys):
    code, report, err = run_json(capsys, policies, "--requests", requests_file, *FAST, "--budget-p99", "1ns")
    assert code == 1
    assert report["budget"]["ok"] is False and report["budget"]["budget_ns"] == 1
    assert err.startswith("over budget: decide p99 ") and "> 1 ns" in err


def test_budget_in_text_output(policies, requests_file, capsys):
    assert main(["bench", str(policies), "--requests", str(requests_file), *FAST, "--budget-p99", "2us"]) in (0, 1)
    out, _ = capsys.readouterr()
    assert "budget: decide p99 " in out and "2.00 µs" in out


def test_budget_needs_the_single_request_mode(policies, requests_file, capsys):
    assert main(["bench", str(policies), "--requests", str(requests_file), *FAST, "--mode", "decide_many",
                 "--budget-p99", "1ms"]) == 1
    assert "--budget-p99 applies to decide" in capsys.readouterr().err


# ---- request files -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad, message", [
    ('{"identity": ', "14: invalid JSON: Expecting value"),
    ("[1, 2]", "a request is a JSON object, got an array (one request per line)"),
    ('"just a string"', "a request is a JSON object, got a string"),
    ('{"a": NaN}', "invalid JSON: NaN is not a JSON number"),
])
def test_a_malformed_line_is_named(policies, tmp_path, capsys, bad, message):
    path = write_lines(tmp_path / "r.jsonl", [ALLOW, "", bad, DENY])  # the blank line still counts
    assert main(["bench", str(policies), "--requests", str(path), *FAST]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == f"{path}:3:{message}" if message[0].isdigit() else f"{path}:3: {message}"


def test_a_request_the_engine_rejects_is_named_by_line(policies, tmp_path, capsys):
    bad = {"identity": {"id": "x"}, "action": {"name": "read"}, "resource": {"type": "payment"}}
    path = write_lines(tmp_path / "r.jsonl", [ALLOW, bad])
    assert main(["bench", str(policies), "--requests", str(path), *FAST]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:2: request error: identity.type"), err


def test_invalid_utf8_is_named_by_line(policies, tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_bytes(json.dumps(ALLOW).encode() + b"\n" + b'{"identity": "\xff"}\n')
    assert main(["bench", str(policies), "--requests", str(path), *FAST]) == 1
    assert capsys.readouterr().err.startswith(f"{path}:2: not valid UTF-8")


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_no_requests_is_an_error(policies, tmp_path, capsys, content):
    path = tmp_path / "r.jsonl"
    path.write_text(content)
    assert main(["bench", str(policies), "--requests", str(path), *FAST]) == 1
    assert capsys.readouterr().err.strip() == f"{path}: no requests (JSON Lines: one request object per line)"


def test_missing_requests_file(policies, tmp_path, capsys):
    assert main(["bench", str(policies), "--requests", str(tmp_path / "nope.jsonl"), *FAST]) == 1
    assert "nope.jsonl: cannot read the requests" in capsys.readouterr().err


def test_requests_from_stdin(policies, monkeypatch, capsys):
    stdin = io.TextIOWrapper(io.BytesIO((json.dumps(ALLOW) + "\n").encode()))
    monkeypatch.setattr("sys.stdin", stdin)
    code, report, _ = run_json(capsys, policies, "--requests", "-", *FAST)
    assert code == 0 and report["requests_file"] == "<stdin>" and report["requests"] == 1


def test_a_policy_error_exits_1(tmp_path, requests_file, capsys):
    bad = tmp_path / "bad.pdl"
    bad.write_text("policy p {\n  permit x when\n}\n")
    assert main(["bench", str(bad), "--requests", str(requests_file), *FAST]) == 1
    assert f"{bad}:" in capsys.readouterr().err


# ---- usage -------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--budget-p99", "2"], "has no unit"),
    (["--budget-p99", "fast"], "is not a duration"),
    (["--duration", "-1"], "is not a duration"),
    (["--iterations", "0"], "must be at least 1"),
    (["--mode", "check"], "not available without --addr"),
    (["--concurrency", "4"], "use it with --addr"),
])
def test_usage_errors_exit_2(policies, requests_file, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        code = main(["bench", str(policies), "--requests", str(requests_file), *FAST, *args])
        raise SystemExit(code)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_paths_or_addr_is_required(requests_file, capsys):
    assert main(["bench", "--requests", str(requests_file)]) == 2
    assert "give the policies (PATH...) or a server (--addr HOST:PORT)" in capsys.readouterr().err


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert "--requests" in out and "--budget-p99" in out and "$ pdp bench" in out


# ---- library pieces ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, ns", [("2us", 2_000), ("2µs", 2_000), ("1.5ms", 1_500_000), ("500ns", 500),
                                      ("3s", 3_000_000_000), (" 0.25 ms ", 250_000), (".5us", 500)])
def test_parse_duration(text, ns):
    assert benchmark.parse_duration(text) == ns


def test_parse_duration_default_unit_and_errors():
    assert benchmark.parse_duration("3", default_unit="s") == 3_000_000_000
    for bad in ("3", "", "ms", "-1us", "0us", "1 h", "1e3us"):
        with pytest.raises(ValueError):
            benchmark.parse_duration(bad)


def test_percentiles_are_nearest_rank():
    xs = list(range(1, 1001))
    assert [benchmark.percentile(xs, q) for q in (0.5, 0.9, 0.99, 0.999, 1.0)] == [500, 900, 990, 999, 1000]
    assert benchmark.percentile([7], 0.99) == 7
    stats = benchmark.summarize([5, 1, 3], seconds=0.5, batch_size=10)
    assert (stats.min, stats.p50, stats.max, stats.decisions, stats.throughput) == (1, 3, 5, 30, 60.0)


def test_format_ns():
    assert [benchmark.format_ns(x) for x in (850, 2_100, 41_300, 1_200_000, 2e9)] == \
        ["850 ns", "2.10 µs", "41.3 µs", "1.20 ms", "2.00 s"]


def test_time_calls_cycles_through_inputs():
    seen = []
    samples, wall = benchmark.time_calls(seen.append, [1, 2, 3], calls=7)
    assert seen == [1, 2, 3, 1, 2, 3, 1] and len(samples) == 7 and wall > 0


class _Terminal(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_only_on_a_terminal():
    quiet = _Terminal(tty=False)
    benchmark.time_calls(lambda x: None, [1], calls=5_000, progress=benchmark.Progress(quiet, delay=0), label="x")
    assert quiet.getvalue() == ""
    tty = _Terminal(tty=True)
    progress = benchmark.Progress(tty, delay=0)
    progress.start("decide")
    progress.update(0.5, 1234)
    assert "decide" in tty.getvalue() and "50%" in tty.getvalue() and "1,234 calls" in tty.getvalue()
    progress.done()
    assert tty.getvalue().endswith("\r\x1b[K")


# ---- a server over gRPC ------------------------------------------------------------------------


@pytest.fixture
def server(policies):
    from pdp.server import build_server

    srv, port = build_server(pdp.load(policies), "127.0.0.1:0")
    srv.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        srv.stop(None).wait(30)


def test_remote_json_shape(server, policies, requests_file, capsys):
    code, report, err = run_json(capsys, "--addr", server, "--requests", requests_file, *FAST, "--concurrency", "2")
    assert code == 0, err
    assert report["target"] == "remote" and report["addr"] == server
    assert report["revision"] == pdp.load(policies).revision
    assert report["decisions"] == {"ALLOW": 2, "DENY": 1} and "checked_against" not in report
    assert set(report["modes"]) == {"check", "check_batch"}
    check, batch = report["modes"]["check"], report["modes"]["check_batch"]
    assert check["calls"] == 20 and check["concurrency"] == 2 and check["errors"] == 0
    assert batch["calls"] == 5 and batch["decisions"] == 20 and batch["batch_size"] == 4
    assert set(check["latency_ns"]) == {"p50", "p90", "p99", "p99.9", "min", "max", "mean"}


def test_remote_checked_against_local_policies(server, policies, requests_file, capsys):
    assert main(["bench", str(policies), "--addr", server, "--requests", str(requests_file), *FAST,
                 "--mode", "check", "--budget-p99", "10s"]) == 0
    out = capsys.readouterr().out
    assert f"pdp serve at {server}" in out and "checked: the server decides all 3 requests as" in out
    assert "budget: check p99" in out and ": ok" in out


def test_remote_disagreement_is_an_error(server, tmp_path, requests_file, capsys):
    other = tmp_path / "other.pdl"
    other.write_text('policy p {\n  permit everything when true\n}\n')
    assert main(["bench", str(other), "--addr", server, "--requests", str(requests_file), *FAST]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{requests_file}:1: the server decided ALLOW (payments.billing_may_charge) but "
                          f"{other} decide ALLOW (p.everything); server revision ")  # same decision, other reasons


def test_remote_request_error_is_named_by_line(server, tmp_path, capsys):
    bad = {"identity": {"type": "workload", "id": "x"}, "action": {"name": "read"}, "resource": {"id": "r"}}
    path = write_lines(tmp_path / "r.jsonl", [ALLOW, ALLOW, bad])
    assert main(["bench", "--addr", server, "--requests", str(path), *FAST]) == 1
    assert capsys.readouterr().err.startswith(f"{path}:3: request error (from the server): resource.type")


def test_remote_nothing_listening(requests_file, capsys):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["bench", "--addr", f"127.0.0.1:{port}", "--requests", str(requests_file), *FAST,
                 "--timeout", "0.5"]) == 1
    assert f"cannot connect to 127.0.0.1:{port}" in capsys.readouterr().err


def test_remote_mode_names_are_checked(server, requests_file, capsys):
    assert main(["bench", "--addr", server, "--requests", str(requests_file), "--mode", "decide"]) == 2
    assert "--mode decide is not available with --addr" in capsys.readouterr().err
