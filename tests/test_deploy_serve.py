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
        server.wait_for(r"ERROR reload rejected")  # each worker logs its errors
        server.wait_for(r"ERROR reload rejected")
        (policies / "policy.pdl").write_text(V2, encoding="utf-8")
        server.signal(signal.SIGHUP)
        with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
            _until(lambda: client.check(ALLOWED).reasons[0].message == "v2")
        assert server.stop() == 0
        server.wait_for(r"INFO stopped")
    # the workers' INFO lines ("reloaded: serving revision ...") were not logged
    assert not any("reloaded:" in line for line in server.lines), server.lines


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
