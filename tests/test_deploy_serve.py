"""Serving as deployed infrastructure: --workers follows the container's CPU quota, --watch
sees Kubernetes ConfigMap updates, TLS certificates rotate, Unix domain sockets, a warning when
serving on the pure-Python evaluator, and the workers' log level."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from serverkit import ALLOWED, POLICY, SUITE, WAIT, ServeProcess, write_policies

import pdp
from pdp import runtime
from pdp.client import Client
from pdp.server import cpus

V2 = "policy payments {\n  permit all when true reason \"v2\"\n}\n"


@pytest.fixture
def policies(tmp_path):
    return write_policies(tmp_path / "policies")


def _until(condition, timeout: float = WAIT) -> None:
    """Wait (bounded) for ``condition()`` to hold."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# ---- --workers: the cgroup CPU quota --------------------------------------------------------


def _cgroup_tree(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    proc_file = tmp_path / "proc-self-cgroup"
    proc_file.write_text(proc)
    return root, proc_file


@pytest.mark.parametrize("files, proc, quota", [
    ({"cpu.max": "max 100000\n"}, "0::/\n", None),
    ({"cpu.max": "150000 100000\n"}, "0::/\n", 1.5),
    ({"cpu.max": "100000 100000\n"}, "0::/\n", 1.0),
    # nested: the tightest limit on the way up counts
    ({"kubepods/cpu.max": "400000 100000\n", "kubepods/pod1/cpu.max": "max 100000\n"}, "0::/kubepods/pod1\n", 4.0),
    ({"kubepods/cpu.max": "400000 100000\n", "kubepods/pod1/cpu.max": "50000 100000\n"}, "0::/kubepods/pod1\n", 0.5),
    # the host path named in /proc/self/cgroup does not exist in the container: its mount is the cgroup
    ({"cpu.max": "200000 100000\n"}, "0::/kubepods/burstable/pod9/abc\n", 2.0),
    # cgroup v1
    ({"cpu,cpuacct/cpu.cfs_quota_us": "250000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
     "4:cpu,cpuacct:/\n3:memory:/\n", 2.5),
    ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
     "4:cpu,cpuacct:/\n", None),
    ({"cpu/docker/x/cpu.cfs_quota_us": "100000\n", "cpu/docker/x/cpu.cfs_period_us": "100000\n"},
     "1:cpu:/docker/x\n", 1.0),
    # nothing to read: no limit
    ({}, "0::/\n", None),
    ({"cpu.max": "garbage\n"}, "0::/\n", None),
])
def test_the_cgroup_cpu_quota(tmp_path, files, proc, quota):
    root, proc_file = _cgroup_tree(tmp_path, proc, files)
    assert cpus.cgroup_cpu_quota(root, proc_file) == quota


def test_workers_default_to_the_quota_rounded_up_and_never_above_the_affinity(tmp_path):
    cores = cpus.affinity_count()
    root, proc = _cgroup_tree(tmp_path, "0::/\n", {"cpu.max": "50000 100000\n"})
    assert cpus.cpu_count(root, proc) == 1  # half a CPU: one worker, not zero
    (root / "cpu.max").write_text("150000 100000\n")
    assert cpus.cpu_count(root, proc) == min(cores, 2)
    (root / "cpu.max").write_text(f"{(cores + 8) * 100000} 100000\n")
    assert cpus.cpu_count(root, proc) == cores  # a quota above the cores allowed changes nothing
    (root / "cpu.max").write_text("max 100000\n")
    assert cpus.cpu_count(root, proc) == cores
    assert cpus.cpu_count(tmp_path / "missing", tmp_path / "missing-proc") == cores


# ---- the pure-Python evaluator is visible -----------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serving_on_the_pure_python_evaluator_warns_and_shows(policies, monkeypatch, workers):
    monkeypatch.setenv("PDP_PUREPYTHON", "1")  # as when the extension failed to build
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", workers, "--metrics-addr",
                      "127.0.0.1:0") as server:
        metrics_port = int(server.wait_for(r"metrics (?:of \d workers )?on http://127.0.0.1:(\d+)/metrics")
                           .group(1)) if workers == "2" else None
        warning = server.wait_for(r"WARNING serving on the pure-Python evaluator \((.*?)\)")
        assert warning.group(1) == "PDP_PUREPYTHON=1 is set"
        ready = server.wait_for(r"serving .*on 127.0.0.1:(\d+)")
        assert "backend=python" in ready.string
        if metrics_port is None:
            metrics_port = int(server.wait_for(r"metrics on http://127.0.0.1:(\d+)/metrics").group(1))
        port = int(ready.group(1))
        with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
            assert client.check(ALLOWED).allowed
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=WAIT).read().decode()
        assert re.search(r'^pdp_backend_info\{backend="python"\} 1\.0$', text, re.M), text
        assert 'backend="compiled"' not in text
        assert server.stop() == 0


@pytest.mark.skipif("compiled" not in runtime.EVALUATORS, reason="the compiled evaluator is not built")
def test_the_compiled_evaluator_does_not_warn(policies):
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "1") as server:
        ready = server.wait_for(r"serving revision")
        assert "backend=compiled" in ready.string
        assert server.stop() == 0
    assert not any("WARNING" in line for line in server.lines), server.lines


# ---- workers log at the level of their configuration ----------------------------------------

WORKERS_SCRIPT = """
import sys, threading
from pdp.server.lifecycle import ServeConfig, serve_workers
from pdp.server.logs import setup_logging
from pdp.server.reload import PathSource

setup_logging("INFO")  # the parent logs INFO; its workers only ERROR
sys.exit(serve_workers(ServeConfig(PathSource((sys.argv[1],)), address="127.0.0.1:0", workers=2, log_level="ERROR")))
"""


def test_workers_log_at_the_configured_level(policies):
    with ServeProcess(str(policies), script=WORKERS_SCRIPT) as server:
        port = int(server.wait_for(r"serving on 127.0.0.1:(\d+) with 2 workers").group(1))
        (policies / "policy.pdl").write_text("policy broken {\n", encoding="utf-8")
        server.signal(signal.SIGHUP)
        server.wait_for(r"ERROR reload rejected")  # the parent reloads for the server, at its level
        (policies / "policy.pdl").write_text(V2, encoding="utf-8")
        server.signal(signal.SIGHUP)
        with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
            _until(lambda: client.check(ALLOWED).reasons[0].message == "v2")
        assert server.stop() == 0
        server.wait_for(r"INFO stopped")
    # the workers' INFO lines ("draining: ..." as they stop) were not logged
    assert not any("draining:" in line for line in server.lines), server.lines


# ---- --watch on a Kubernetes ConfigMap volume --------------------------------------------------


class ConfigMapVolume:
    """A folder laid out as kubelet lays out a mounted ConfigMap: the files in a hidden
    timestamped folder, ``..data`` a symlink to it, and each key a top-level symlink through
    ``..data``. ``update`` does what kubelet does: a new timestamped folder, a ``..data_tmp``
    symlink renamed over ``..data`` (atomic), then the old folder removed."""

    def __init__(self, root: Path, files: dict[str, str]):
        self.root = root
        root.mkdir(parents=True)
        self.generation = 0
        current = self._write(files)
        (root / "..data").symlink_to(current.name)
        for name in files:
            (root / name).symlink_to(f"..data/{name}")

    def _write(self, files: dict[str, str]) -> Path:
        self.generation += 1
        folder = self.root / f"..2026_12_03_10_00_0{self.generation}.{123 + self.generation}"
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        return folder

    def update(self, files: dict[str, str]) -> None:
        old = (self.root / "..data").resolve()
        new = self._write(files)
        (self.root / "..data_tmp").symlink_to(new.name)
        os.rename(self.root / "..data_tmp", self.root / "..data")
        shutil.rmtree(old)


def test_a_configmap_volume_loads_once_under_its_visible_names(tmp_path):
    from pdp.loader import discover

    volume = ConfigMapVolume(tmp_path / "cm", {"policy.pdl": POLICY, "policy_test.yaml": SUITE})
    plain = write_policies(tmp_path / "plain")
    assert [e.relative for e in discover([volume.root])] == ["policy.pdl", "policy_test.yaml"]
    assert pdp.load(volume.root).revision == pdp.load(plain).revision


def test_a_configmap_key_with_a_sub_path_is_loaded(tmp_path):
    """``items: [{key: ..., path: payments/policy.pdl}]``: kubelet links the visible folder
    ``payments`` through ``..data``; the loader follows it (once, even with a link loop)."""
    from pdp.loader import discover

    volume = ConfigMapVolume(tmp_path / "cm", {})
    data = volume.root / "..data" / "payments"
    data.mkdir()
    (data / "policy.pdl").write_text(POLICY, encoding="utf-8")
    (volume.root / "payments").symlink_to("..data/payments")
    (data / "loop").symlink_to("..")  # a link back up is followed no further
    assert [e.relative for e in discover([volume.root])] == ["payments/policy.pdl"]
    assert pdp.load(volume.root).rule_ids == pdp.load(write_policies(tmp_path / "plain", suite=None)).rule_ids


@pytest.mark.parametrize("given", ["folder", "file"])
def test_watch_reloads_when_kubelet_swaps_a_configmap(tmp_path, given):
    volume = ConfigMapVolume(tmp_path / "cm", {"policy.pdl": POLICY, "policy_test.yaml": SUITE})
    paths = [str(volume.root)] if given == "folder" else [str(volume.root / "policy.pdl")]
    with ServeProcess(*paths, "--addr", "127.0.0.1:0", "--workers", "1", "--watch") as server:
        port = server.wait_ready()
        with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
            first = client.check(ALLOWED).revision
            volume.update({"policy.pdl": V2, "policy_test.yaml": SUITE})
            new = server.wait_for(r"reloaded: serving revision (\w+) \(was " + first).group(1)
            decision = client.check(ALLOWED)
            assert decision.revision == new and decision.reasons[0].message == "v2"
        assert server.stop() == 0


def test_sighup_reloads_a_swapped_configmap(tmp_path):
    volume = ConfigMapVolume(tmp_path / "cm", {"policy.pdl": POLICY})
    with ServeProcess(str(volume.root / "policy.pdl"), "--addr", "127.0.0.1:0", "--workers", "1") as server:
        port = server.wait_ready()
        with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
            first = client.check(ALLOWED).revision
            volume.update({"policy.pdl": V2})
            server.signal(signal.SIGHUP)
            server.wait_for(r"reloaded: serving revision (\w+) \(was " + first)
            assert client.check(ALLOWED).reasons[0].message == "v2"
        assert server.stop() == 0


def test_the_watcher_counts_the_configmap_swap_as_a_change(tmp_path):
    from pdp.server.reload import is_watched, watch_roots

    volume = ConfigMapVolume(tmp_path / "cm", {"policy.pdl": POLICY})
    for given in (volume.root, volume.root / "policy.pdl"):
        roots, folders, files = watch_roots([given])
        assert roots == [volume.root.resolve()]
        assert is_watched(volume.root.resolve() / "..data", folders, files)
        assert not is_watched(volume.root.resolve() / "..data_tmp", folders, files)
        assert not is_watched(volume.root.resolve() / "..2026_12_03_10_00_01.124" / "policy.pdl", folders, files)


# ---- Unix domain sockets ------------------------------------------------------------------------

UNIX_READY = r"serving revision \S+ .* on (unix(?:-abstract)?:\S+) \("


def test_serve_on_a_unix_socket(tmp_path, policies, capsys):
    """One process (the default with a Unix socket, whatever the cores), mode 0660, the clients
    and pdp bench dial ``unix:PATH``, health answers, and the file is gone after the drain."""
    import asyncio
    import json
    import stat as stat_module

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from pdp.cli import main
    from pdp.client import AsyncClient

    path = tmp_path / "run" / "pdp.sock"
    path.parent.mkdir()
    address = f"unix:{path}"
    with ServeProcess(str(policies), "--addr", address) as server:
        assert server.wait_for(UNIX_READY).group(1) == address
        mode = os.stat(path).st_mode
        assert stat_module.S_ISSOCK(mode) and stat_module.S_IMODE(mode) == 0o660
        with Client(address, timeout=WAIT) as client:
            assert client.check(ALLOWED).allowed

        async def check_async():
            async with AsyncClient(address, timeout=WAIT) as client:
                return (await client.check(ALLOWED)).allowed

        assert asyncio.run(check_async())
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=WAIT)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        requests = tmp_path / "requests.jsonl"
        requests.write_text(json.dumps(ALLOWED) + "\n", encoding="utf-8")
        capsys.readouterr()
        assert main(["bench", "--addr", address, "--requests", str(requests), "--iterations", "20", "--json",
                     "--mode", "check"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["addr"] == address and report["revision"]
        assert server.stop() == 0
    assert not path.exists()


def test_serve_on_an_abstract_unix_socket(policies):
    address = f"unix-abstract:pdp-test-{os.getpid()}-{time.monotonic_ns()}"
    with ServeProcess(str(policies), "--addr", address) as server:
        assert server.wait_for(UNIX_READY).group(1) == address
        with Client(address, timeout=WAIT) as client:
            assert client.check(ALLOWED).allowed
        assert server.stop() == 0


def test_what_is_in_the_way_of_a_unix_socket(tmp_path, policies):
    import socket

    # a regular file is never replaced
    path = tmp_path / "pdp.sock"
    path.write_text("not a socket")
    with ServeProcess(str(policies), "--addr", f"unix:{path}") as server:
        assert server.proc.wait(WAIT) == 1
        server.wait_for(r"exists and is not a socket")
    assert path.read_text() == "not a socket"
    path.unlink()
    # a live server keeps its socket
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        with ServeProcess(str(policies), "--addr", f"unix:{path}") as server:
            assert server.proc.wait(WAIT) == 1
            server.wait_for(r"another server is listening on")
        assert path.exists()
    # the socket a dead server left behind (bound, nobody listening) is replaced
    assert path.exists()
    with ServeProcess(str(policies), "--addr", f"unix:{path}") as server:
        server.wait_for(r"removed a stale socket at " + re.escape(str(path)))
        server.wait_for(UNIX_READY)
        with Client(f"unix:{path}", timeout=WAIT) as client:
            assert client.check(ALLOWED).allowed
        assert server.stop() == 0


def test_workers_cannot_share_a_unix_socket(tmp_path, policies, capsys):
    from pdp.cli import main

    assert main(["serve", str(policies), "--addr", f"unix:{tmp_path / 's.sock'}", "--workers", "2"]) == 2
    assert "a Unix socket is served by one process" in capsys.readouterr().err
    assert not (tmp_path / "s.sock").exists()


# ---- TLS certificates rotate ------------------------------------------------------------------


def _replace(target: Path, source: Path | bytes) -> None:
    """Replace ``target`` atomically, as a certificate agent does."""
    temporary = target.with_name(target.name + ".new")
    temporary.write_bytes(source if isinstance(source, bytes) else source.read_bytes())
    os.replace(temporary, target)


def _tls_channel(port: int, certs, client: bool = False):
    import grpc

    credentials = grpc.ssl_channel_credentials(
        certs.ca.read_bytes(), certs.client_key.read_bytes() if client else None,
        certs.client_cert.read_bytes() if client else None)
    # A channel of its own (no subchannel shared with the others): each makes its own handshake.
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=[("grpc.use_local_subchannel_pool", 1)])


def _answers(channel) -> bool:
    import grpc

    from pdp.v1 import decision_pb2_grpc as pb_grpc
    from pdp.wire import request_to_pb

    try:
        reply = pb_grpc.DecisionServiceStub(channel).Check(request_to_pb(ALLOWED, "r"), timeout=5)
    except grpc.RpcError as err:
        assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), err
        return False
    return reply.decision == 1  # ALLOW


def _serving(channel) -> bool:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
def test_rotated_certificates_are_served_to_new_connections(tmp_path, caplog, mutual):
    from serverkit import engine, make_certs, running

    from pdp.server import ServerOptions, TLSConfig

    old, new = make_certs(tmp_path / "old"), make_certs(tmp_path / "new")  # two CAs
    live = tmp_path / "live"
    live.mkdir()
    cert, key, ca = live / "tls.crt", live / "tls.key", live / "ca.crt"
    for target, source in ((cert, old.server_cert), (key, old.server_key), (ca, old.ca)):
        _replace(target, source)
    options = ServerOptions(tls=TLSConfig(cert, key, ca if mutual else None))
    caplog.set_level("INFO", logger="pdp.server")
    with running(engine(tmp_path), options) as (_, port):
        before = _tls_channel(port, old, client=mutual)
        assert _answers(before) and _serving(before)

        for target, source in ((cert, new.server_cert), (key, new.server_key), (ca, new.ca)):
            _replace(target, source)
        after = _tls_channel(port, new, client=mutual)
        assert _answers(after) and _serving(after)  # a new connection gets the new certificate
        stale = _tls_channel(port, old, client=mutual)
        assert not _answers(stale)  # ... so a client that only trusts the old CA cannot connect
        stale.close()
        assert _answers(before) and _serving(before)  # the open connection was not dropped

        # A key that is not the certificate's (an agent half-way through) is not served.
        _replace(key, old.server_key)
        for _ in range(3):
            again = _tls_channel(port, new, client=mutual)
            assert _answers(again) and _serving(again)
            again.close()
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "is not the key of the certificate" in errors[0], errors
        assert "still serving the previous certificate" in errors[0]
        _replace(cert, b"garbage")
        _replace(key, new.server_key)
        with _tls_channel(port, new, client=mutual) as channel:
            assert _answers(channel)
        assert "not a PEM certificate chain" in caplog.records[-1].getMessage()
        before.close()
        after.close()


def test_a_server_does_not_start_on_certificate_files_that_do_not_match(tmp_path):
    from serverkit import make_certs

    certs, other = make_certs(tmp_path / "a"), make_certs(tmp_path / "b")
    with ServeProcess(str(write_policies(tmp_path / "p")), "--addr", "127.0.0.1:0", "--workers", "1",
                      "--tls-cert", str(certs.server_cert), "--tls-key", str(other.server_key)) as server:
        assert server.proc.wait(WAIT) == 1
        server.wait_for(r"is not the key of the certificate")


def test_a_certificate_in_a_kubernetes_secret_volume_rotates(tmp_path):
    """cert-manager renews a Secret; kubelet swaps the volume's ..data link: new connections
    get the new certificate."""
    from serverkit import engine, make_certs, running

    from pdp.server import ServerOptions, TLSConfig

    old, new = make_certs(tmp_path / "old"), make_certs(tmp_path / "new")
    volume = ConfigMapVolume(tmp_path / "secret", {"tls.crt": old.server_cert.read_text(),
                                                   "tls.key": old.server_key.read_text()})
    options = ServerOptions(tls=TLSConfig(volume.root / "tls.crt", volume.root / "tls.key"))
    with running(engine(tmp_path), options) as (_, port):
        with _tls_channel(port, old) as channel:
            assert _answers(channel)
        volume.update({"tls.crt": new.server_cert.read_text(), "tls.key": new.server_key.read_text()})
        with _tls_channel(port, new) as channel:
            assert _answers(channel)
        with _tls_channel(port, old) as channel:
            assert not _answers(channel)
