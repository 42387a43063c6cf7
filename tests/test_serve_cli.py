"""``pdp serve`` as a real process on loopback port 0: ready line, SIGHUP reload (good and
broken), --watch, SIGTERM drain with a call in flight (exit 0), --workers with SO_REUSEPORT
and summed metrics, and the exit codes of bad starts."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from serverkit import ALLOWED, WAIT, ServeProcess, scrape_until, write_policies

from pdp.cli import main
from pdp.client import Client
from pdp.v1 import decision_pb2_grpc as pb_grpc
from pdp.wire import request_to_pb

V2 = "policy payments {\n  permit all when true reason \"v2\"\n}\n"


@pytest.fixture
def policies(tmp_path):
    return write_policies(tmp_path / "policies")


def test_serve_reloads_on_sighup_and_keeps_the_last_good_revision(policies):
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "1") as server:
        port = server.wait_ready()
        with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
            first = client.check(ALLOWED).revision
            (policies / "policy.pdl").write_text("policy broken {\n", encoding="utf-8")
            server.signal(signal.SIGHUP)
            server.wait_for(r"reload rejected; still serving revision " + first)
            assert client.check(ALLOWED).revision == first
            (policies / "policy.pdl").write_text(V2, encoding="utf-8")
            server.signal(signal.SIGHUP)
            new = server.wait_for(r"reloaded: serving revision (\w+) \(was " + first).group(1)
            decision = client.check(ALLOWED)
            assert decision.revision == new and decision.reasons[0].message == "v2"
        assert server.stop() == 0


def test_serve_watch_reloads_on_file_changes(policies):
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "1", "--watch") as server:
        port = server.wait_ready()
        (policies / "policy.pdl").write_text(V2, encoding="utf-8")
        revision = server.wait_for(r"reloaded: serving revision (\w+)").group(1)
        with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
            assert client.check(ALLOWED).revision == revision
        assert server.stop() == 0


def test_sigterm_drains_a_call_in_flight_and_exits_0(policies):
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "1", "--grace", "20") as server:
        port = server.wait_ready()
        release = threading.Event()

        def requests():
            yield request_to_pb(ALLOWED, "before")
            assert release.wait(WAIT)
            yield request_to_pb(ALLOWED, "after")

        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stream = pb_grpc.DecisionServiceStub(channel).CheckStream(requests(), timeout=WAIT)
            assert next(stream).request_id == "before"
            server.signal(signal.SIGTERM)
            server.wait_for(r"draining: no new calls")
            release.set()  # the open stream is still answered while draining
            assert [r.request_id for r in stream] == ["after"]
        assert server.proc.wait(WAIT) == 0
        server.wait_for(r"stopped")


def test_workers_share_the_port_sum_their_metrics_and_reload_together(policies):
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "2", "--watch", "--metrics-addr",
                      "127.0.0.1:0") as server:
        metrics_port = int(server.wait_for(r"metrics of 2 workers on http://127.0.0.1:(\d+)/metrics").group(1))
        port = int(server.wait_for(r"serving on 127.0.0.1:(\d+) with 2 workers").group(1))
        pids = set(re.findall(r"worker (\d+): serving", "\n".join(server.lines)))
        assert len(pids) == 2
        for _ in range(8):  # separate connections, spread over the workers by the kernel
            with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
                assert client.check(ALLOWED).allowed
        scrape_until(metrics_port, r'pdp_decisions_total\{api="pdp",decision="ALLOW"\} 8\.0')
        # --watch: the parent sees the change, and logs it once every worker serves it
        (policies / "policy.pdl").write_text(V2, encoding="utf-8")
        revision = server.wait_for(r"reloaded: serving revision (\w+)").group(1)
        for _ in range(4):
            with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
                assert client.check(ALLOWED).revision == revision
        assert server.stop() == 0


def test_workers_that_cannot_load_make_the_parent_exit_1(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "p.pdl").write_text("policy p {\n", encoding="utf-8")
    with ServeProcess(str(broken), "--addr", "127.0.0.1:0", "--workers", "2") as server:
        assert server.proc.wait(WAIT) == 1
        server.wait_for(r"cannot load the policies")


#: A ``sitecustomize`` for the worker processes of the tests below: while the file ``hold``
#: exists, a starting worker waits at interpreter start-up (before any pdp code runs, so
#: before it can have a signal handler) and says so with a file ``held-PID``.
HOLD_WORKERS = """\
import os, sys, time
if "--multiprocessing-fork" in sys.argv:
    here = os.path.dirname(os.path.abspath(__file__))
    hold = os.path.join(here, "hold")
    if os.path.exists(hold):
        open(os.path.join(here, f"held-{os.getpid()}"), "w").close()
        deadline = time.monotonic() + 60
        while os.path.exists(hold) and time.monotonic() < deadline:
            time.sleep(0.05)
"""


class HeldWorkers:
    """Holds the workers ``pdp serve --workers`` starts while ``hold()`` is on."""

    def __init__(self, folder, monkeypatch):
        self.folder = folder
        folder.mkdir()
        (folder / "sitecustomize.py").write_text(HOLD_WORKERS, encoding="utf-8")
        monkeypatch.setenv("PYTHONPATH", str(folder))  # ServeProcess adds pdp's own folder before it

    def hold(self) -> None:
        (self.folder / "hold").touch()

    def release(self) -> None:
        (self.folder / "hold").unlink()

    def held(self, count: int) -> list[int]:
        """The pids of the ``count`` workers held so far, once there are that many."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            pids = [int(p.name.split("-")[1]) for p in self.folder.glob("held-*")]
            if len(pids) >= count:
                return pids
            time.sleep(0.05)
        raise AssertionError(f"{count} workers were not held within {WAIT}s")


def wait_for_sigterm(pid: int) -> None:
    """Until ``pid`` has a SIGTERM pending (it blocks it) or is gone (it did not)."""
    bit = 1 << (signal.SIGTERM - 1)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
        except (FileNotFoundError, ProcessLookupError):
            return
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("State", "").startswith("Z") or int(fields["ShdPnd"], 16) & bit:
            return
        time.sleep(0.05)
    raise AssertionError(f"worker {pid} was not sent SIGTERM within {WAIT}s")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the pending signals in /proc")
def test_a_stop_while_the_workers_start_drains_and_exits_0(policies, tmp_path, monkeypatch):
    """SIGTERM to the parent while its workers are still starting (no signal handler yet):
    they stop cleanly once they can, and the server exits 0."""
    workers = HeldWorkers(tmp_path / "hold", monkeypatch)
    workers.hold()
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "2") as server:
        held = workers.held(2)
        server.signal(signal.SIGTERM)
        for pid in held:
            wait_for_sigterm(pid)
        workers.release()
        server.wait_for(r"INFO stopped$")
        assert server.proc.wait(WAIT) == 0, "\n".join(server.lines)
        assert not [line for line in server.lines if "draining" in line]  # they never served


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the pending signals in /proc")
def test_a_stop_while_a_replacement_worker_starts_drains_and_exits_0(policies, tmp_path, monkeypatch):
    """A worker dies; SIGTERM to the parent while its replacement is still starting: the
    replacement stops cleanly once it can, the other worker drains, and the server exits 0."""
    workers = HeldWorkers(tmp_path / "hold", monkeypatch)
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "2") as server:
        server.wait_for(r"serving on 127.0.0.1:(\d+) with 2 workers")
        pid = int(re.search(r"worker (\d+): serving", "\n".join(server.lines)).group(1))
        workers.hold()
        os.kill(pid, signal.SIGKILL)
        server.wait_for(rf"worker {pid} exited with -9; starting a replacement")
        (replacement,) = workers.held(1)
        server.signal(signal.SIGTERM)
        wait_for_sigterm(replacement)
        workers.release()
        server.wait_for(r"INFO stopped$")
        assert server.proc.wait(WAIT) == 0, "\n".join(server.lines)


def test_a_policy_set_that_does_not_load_or_fails_its_suites_is_not_served(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "p.pdl").write_text("policy p {\n", encoding="utf-8")
    with ServeProcess(str(broken), "--addr", "127.0.0.1:0", "--workers", "1") as server:
        assert server.proc.wait(WAIT) == 1
        server.wait_for(r"cannot load the policies")
    failing = write_policies(tmp_path / "failing", V2.replace("when true", "when false"))
    with ServeProcess(str(failing), "--addr", "127.0.0.1:0", "--workers", "1") as server:
        assert server.proc.wait(WAIT) == 1
        server.wait_for(r"fail their own tests")
    with ServeProcess(str(failing), "--addr", "127.0.0.1:0", "--workers", "1", "--skip-tests") as server:
        server.wait_ready()
        assert server.stop() == 0


def test_an_address_in_use_is_an_error(policies):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with ServeProcess(str(policies), "--addr", f"127.0.0.1:{port}", "--workers", "1") as server:
            assert server.proc.wait(WAIT) == 1
            server.wait_for(r"cannot listen on")
        # The metrics port too: nothing is left running (the process exits).
        with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "1", "--metrics-addr",
                          f"127.0.0.1:{port}") as server:
            assert server.proc.wait(WAIT) == 1
            server.wait_for(r"Address already in use")


def test_serve_a_bundle_and_reload_it_on_sighup(policies, tmp_path):
    """`pdp serve --bundle FILE` starts from `pdp build`'s output; SIGHUP reads it again, and a
    corrupt bundle is rejected while the last good revision keeps serving."""
    import pdp

    bundle = tmp_path / "p.bundle"
    pdp.write_bundle(pdp.load(policies), bundle)
    with ServeProcess("--bundle", str(bundle), "--addr", "127.0.0.1:0", "--workers", "1") as server:
        port = server.wait_ready()
        with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
            first = client.check(ALLOWED)
            assert first.revision == pdp.load(policies).revision and first.allowed
            bundle.write_bytes(b"not a bundle")
            server.signal(signal.SIGHUP)
            server.wait_for(r"reload rejected; still serving revision " + first.revision)
            assert client.check(ALLOWED).revision == first.revision
            (policies / "policy.pdl").write_text(V2, encoding="utf-8")
            pdp.write_bundle(pdp.load(policies), bundle)
            server.signal(signal.SIGHUP)
            new = server.wait_for(r"reloaded: serving revision (\w+) \(was " + first.revision).group(1)
            decision = client.check(ALLOWED)
            assert decision.revision == new and decision.reasons[0].message == "v2"
        assert server.stop() == 0


def test_usage_errors_exit_2(capsys, policies):
    assert main(["serve", "--addr", "127.0.0.1:0"]) == 2
    assert "give at least one PATH" in capsys.readouterr().err
    assert main(["serve", str(policies), "--bundle", "x.bundle"]) == 2
    assert "PATHs or --bundle FILE, not both" in capsys.readouterr().err
    assert main(["serve", str(policies), "--client-ca", "ca.pem"]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    assert main(["serve", str(policies), "--addr", "nope"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["serve", str(policies), "--workers", "0"])
    assert info.value.code == 2


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "example:" in out and "pdp serve policies/" in out and "--watch" in out


def test_min_coverage_gates_the_start_and_every_reload(tmp_path):
    from test_reload import COVERED, COVERING_SUITE

    policies = write_policies(tmp_path / "policies", COVERED, COVERING_SUITE)
    request = {"identity": {"type": "workload", "id": "billing", "env": "prod"}, "action": "charge",
               "resource": {"type": "payment", "id": "p1"}}
    untested = COVERED.replace("}\n", '  permit refunds when action.name == "refund"\n}\n')
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "1", "--min-coverage", "100",
                      "--metrics-addr", "127.0.0.1:0") as server:
        port = server.wait_ready()
        metrics_port = int(server.wait_for(r"metrics on http://127.0.0.1:(\d+)/metrics").group(1))
        with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
            first = client.check(request).revision
            (policies / "policy.pdl").write_text(untested, encoding="utf-8")
            server.signal(signal.SIGHUP)
            server.wait_for(r"reload rejected; still serving revision " + first)
            server.wait_for(r"coverage by the policies' own suites is 66\.7% .*below the minimum of 100% "
                            r"\(--min-coverage\); no test makes these apply: payments\.refunds")
            assert client.check(request).revision == first
            scrape_until(metrics_port, r'pdp_reloads_total\{result="rejected"\} 1\.0')
            # a test for the new rule brings the coverage back: the reload is served
            (policies / "policy_test.yaml").write_text(COVERING_SUITE + """\
  - name: anyone may refund
    identity: {type: workload, id: x, env: prod}
    action: refund
    resource: {type: payment, id: p1}
    expect: allow
""", encoding="utf-8")
            server.signal(signal.SIGHUP)
            new = server.wait_for(r"reloaded: serving revision (\w+) \(was " + first).group(1)
            assert client.check(request).revision == new != first
        assert server.stop() == 0
    # at start: exit 1 with the reason, nothing served
    (policies / "policy_test.yaml").write_text(COVERING_SUITE, encoding="utf-8")
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "1", "--min-coverage", "90") as server:
        assert server.proc.wait(WAIT) == 1
        server.wait_for(r"the policies are not served:")
        server.wait_for(r"66\.7% \(2 of 3 rules applied in some test, 1 suite\), below the minimum of 90%")


def test_min_coverage_needs_the_suites(policies, capsys):
    assert main(["serve", str(policies), "--min-coverage", "50", "--skip-tests"]) == 2
    assert "--min-coverage is measured by running the suites" in capsys.readouterr().err
    assert main(["serve", "--bundle", "x.bundle", "--min-coverage", "50"]) == 2
    assert "a bundle carries none" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", str(policies), "--min-coverage", "101"])


def test_workers_reload_count_and_log_once_for_the_server(policies):
    """--workers 2: the parent reloads for the server. Two bad pushes are two rejected reloads
    (not one per worker) and two log lines; no worker logs a "no change" at start; decisions
    and request errors are summed over the workers."""
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "2", "--watch", "--metrics-addr",
                      "127.0.0.1:0", "--http-addr", "127.0.0.1:0") as server:
        metrics_port = int(server.wait_for(r"metrics of 2 workers on http://127.0.0.1:(\d+)/metrics").group(1))
        port = int(server.wait_for(r"serving on 127.0.0.1:(\d+) with 2 workers").group(1))
        http_port = int(server.wait_for(r"AuthZEN over HTTP on http://127.0.0.1:(\d+)").group(1))

        def metrics() -> str:
            return urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=WAIT).read().decode()

        def bad_http_request() -> int:
            request = urllib.request.Request(f"http://127.0.0.1:{http_port}/access/v1/evaluation", data=b"{",
                                             method="POST")
            try:
                urllib.request.urlopen(request, timeout=WAIT)
            except urllib.error.HTTPError as err:
                return err.code
            return 200

        for _ in range(6):  # separate connections: both workers decide and refuse some
            with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
                assert client.check(ALLOWED).allowed
            assert bad_http_request() == 400
        first = re.search(r"revision (\w+) \(", "\n".join(server.lines))
        for n in (1, 2):  # two bad pushes
            (policies / "policy.pdl").write_text(f"policy broken{n} {{\n", encoding="utf-8")
            server.wait_for(r"ERROR reload rejected; still serving revision")
            _until(lambda n=n: re.search(rf'pdp_reloads_total\{{result="rejected"\}} {n}\.0', metrics()))
        (policies / "policy.pdl").write_text(V2, encoding="utf-8")
        revision = server.wait_for(r"INFO reloaded: serving revision (\w+)").group(1)
        for _ in range(4):  # logged once every worker serves it
            with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
                assert client.check(ALLOWED).revision == revision
        text = metrics()
        assert re.search(r'pdp_reloads_total\{result="rejected"\} 2\.0', text), text
        assert re.search(r'pdp_reloads_total\{result="ok"\} 1\.0', text), text
        assert re.search(r'pdp_decisions_total\{api="pdp",decision="ALLOW"\} 10\.0', text), text
        assert re.search(r'pdp_request_errors_total\{api="authzen",code="INVALID_ARGUMENT"\} 6\.0', text), text
        assert server.stop() == 0
    log = "\n".join(server.lines)
    assert len(re.findall(r"reload rejected", log)) == 2, log
    assert len(re.findall(r"reloaded: serving revision", log)) == 1, log
    assert "no change" not in log, log
    assert first is not None


def _until(check, timeout: float = WAIT) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
