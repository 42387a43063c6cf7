"""The wheel the Dockerfile builds, built the same way from the same files, installed in a
fresh virtual environment, serves: the compiled evaluator is in it, `pdp serve policies/`
starts from it, answers health and a Check, and drains on SIGTERM.

This is the slowest test of the suite: it compiles the evaluator and fetches pdp's
dependencies as wheels (from the package index pip is configured with, or its cache), then
installs them offline (--no-index) into a new environment, as the Dockerfile's two stages do.
About 50 s of CPU; on a loaded 2-core machine it has taken up to four minutes."""

from __future__ import annotations

import datetime
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import venv
import zipfile
from pathlib import Path

import pytest
from serverkit import WAIT, ServeProcess
from test_deploy import build_context_paths

from pdp.client import Client

REPO = Path(__file__).resolve().parents[1]
PIP_TIMEOUT = 600  # bounds a stuck download or compiler, far above the usual minute
REQUEST = json.loads((REPO / "examples" / "charge.json").read_text())


def _now_request() -> dict:
    """REQUEST at the current time: pdp serve refuses a context.time off its clock (SPEC §1)."""
    stamp = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat()  # noqa: E731
    now = time.time()
    identity = {**REQUEST["identity"], "credential": {"issued_at": stamp(now - 300)}}
    return {**REQUEST, "identity": identity, "context": {**REQUEST["context"], "time": stamp(now)}}


def _copy_build_context(target: Path) -> None:
    """The files the Dockerfile's build stage copies, without local build products."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.c", "*.egg-info")
    for relative in build_context_paths():
        source = REPO / relative
        if source.is_dir():
            shutil.copytree(source, target / relative, ignore=ignore)
        else:
            shutil.copy2(source, target / relative)


def _run(*command, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT, **kwargs)
    assert out.returncode == 0, f"{command}: exit {out.returncode}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


class _Installed(ServeProcess):
    """``pdp serve`` from the virtual environment's console script, not from this checkout."""

    def __init__(self, pdp_script: Path, *args: str, cwd: Path):
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PDP_PUREPYTHON")}
        self.proc = subprocess.Popen([str(pdp_script), "serve", *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**env, "PYTHONUNBUFFERED": "1"}, cwd=cwd)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


@pytest.mark.skipif(sys.platform != "linux", reason="the Dockerfile's wheel is a Linux wheel")
def test_the_wheel_builds_installs_and_serves(tmp_path):
    timings = {}
    started = time.monotonic()
    context = tmp_path / "context"
    context.mkdir()
    _copy_build_context(context)
    wheels = tmp_path / "wheels"
    env = {**os.environ, "PDP_REQUIRE_EXTENSION": "1"}
    env.pop("PDP_PUREPYTHON", None)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(context), env=env)
    (wheel,) = wheels.glob("pdp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("pdp/runtime/_ceval") and n.endswith(".so") for n in names), names
    assert "pdp/pdl.lark" in names and "pdp/cli/health.py" in names
    timings["wheel"] = time.monotonic() - started

    # As the image's stages do: the dependencies as wheels beside pdp's, then an install that
    # reads nothing but that folder.
    _run(sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), str(wheel), env=env)
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    bin_dir = environment / "bin"
    _run(str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels), "pdp")
    timings["install"] = time.monotonic() - started - timings["wheel"]
    outside = tmp_path / "elsewhere"  # not the checkout: only the installed pdp can be imported
    outside.mkdir()
    backend = _run(str(bin_dir / "python"), "-c", "import pdp, pdp.runtime as r; print(r.BACKEND, pdp.__file__)",
                   cwd=outside).stdout.split()
    assert backend[0] == "compiled" and Path(backend[1]).is_relative_to(environment)

    with _Installed(bin_dir / "pdp", str(REPO / "policies"), "--addr", "127.0.0.1:0", "--workers", "1",
                    cwd=outside) as server:
        port = server.wait_ready()
        health = _run(str(bin_dir / "pdp"), "health", "--addr", f"127.0.0.1:{port}", cwd=outside)
        assert health.stdout == "SERVING\n"
        with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
            decision = client.check(_now_request())
        assert decision.decision == "ALLOW"
        assert [r.rule for r in decision.reasons] == ["payments.billing_may_charge"]
        server.signal(signal.SIGTERM)
        assert server.proc.wait(WAIT) == 0
    timings["serve"] = time.monotonic() - started - timings["wheel"] - timings["install"]
    print("wheel test seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
