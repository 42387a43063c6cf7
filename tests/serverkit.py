"""Helpers for the server tests: a policy set, servers on loopback port 0, test certificates,
and a ``pdp serve`` child process whose log lines are read with bounded waits."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pdp
from pdp.server import EngineHolder, ServerOptions, build_server

#: Where the ``pdp`` under test was imported from: the checkout in development, site-packages
#: when the installed package is tested (CI). Child processes import the same one.
PDP_HOME = Path(pdp.__file__).resolve().parent.parent
#: Upper bound for any one wait in these tests; reached only when something is broken.
WAIT = 30.0

POLICY = """\
policy payments {
  target resource.type == "payment"

  forbid cross_environment
    when identity.env != resource.env
    reason "a {identity.env} identity may not act on {resource.env} resources"

  @control("NHI-1")
  permit billing_may_charge
    when identity.id == "billing" and action.name in ["charge", "refund"]
    reason "billing charges"
}

policy http {
  target resource.type == "http"

  forbid blocked_network
    when context.source_ip in cidr("203.0.113.0/24")
    reason "{context.source_ip} is blocked"

  permit public_read
    when action.name == "GET" and resource.path startswith "/public/"
    reason "anyone may read /public/"

  permit billing_workload
    when identity.type == "workload"
     and identity.spiffe_id matches "spiffe://acme.prod/ns/billing/sa/*"
     and context.headers["x-tenant"] == resource.tenant
    reason "billing calls its own tenant"

  permit jwt_user
    when identity.claims.sub == "user-1" and identity.claims.exp > 1000
    reason "user-1 with a token"
}

policy peer {
  target resource.type == "peer"

  permit billing_peer
    when context.peer.spiffe_id == "spiffe://acme.prod/ns/billing/sa/api"
    reason "the mTLS peer is billing"
}
"""

SUITE = """\
suite: payments
tests:
  - name: billing may charge
    identity: {type: workload, id: billing, env: prod}
    action: charge
    resource: {type: payment, id: p1, env: prod}
    expect: allow
"""

ALLOWED = {"identity": {"type": "workload", "id": "billing", "env": "prod"}, "action": "charge",
           "resource": {"type": "payment", "id": "p1", "env": "prod"}}
DENIED = {"identity": {"type": "workload", "id": "billing", "env": "dev"}, "action": "charge",
          "resource": {"type": "payment", "id": "p1", "env": "prod"}}


def write_policies(root: Path, policy: str = POLICY, suite: str | None = SUITE) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "policy.pdl").write_text(policy, encoding="utf-8")
    if suite is not None:
        (root / "policy_test.yaml").write_text(suite, encoding="utf-8")
    return root


@contextlib.contextmanager
def running(engine_or_holder, options: ServerOptions | None = None, **kwargs):
    """A started server on 127.0.0.1 port 0; yields (holder, port); stops it on exit."""
    holder = engine_or_holder if isinstance(engine_or_holder, EngineHolder) else EngineHolder(engine_or_holder)
    server, port = build_server(holder, "127.0.0.1:0", options, **kwargs)
    server.start()
    try:
        yield holder, port
    finally:
        server.stop(None).wait(WAIT)


def engine(tmp_path: Path, policy: str = POLICY) -> pdp.Engine:
    return pdp.load(write_policies(tmp_path / "policies", policy, None))


# --------------------------------------------------------------------------------------------
# certificates


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_client_cert: Path  # signed by another CA
    other_client_key: Path


def make_certs(root: Path) -> Certs:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    root.mkdir(parents=True, exist_ok=True)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def ca(cn):
        k = key()
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn)).public_key(k.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(k, hashes.SHA256()))
        return k, cert

    def leaf(ca_key, ca_cert, cn, sans, usage):
        k = key()
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca_cert.subject)
                .public_key(k.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return k, cert

    def write(stem, k, cert):
        cert_path, key_path = root / f"{stem}.crt", root / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
        return cert_path, key_path

    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_key, ca_cert = ca("pdp test CA")
    other_key, other_cert = ca("another CA")
    (root / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server = leaf(ca_key, ca_cert, "localhost",
                  [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                  ExtendedKeyUsageOID.SERVER_AUTH)
    spiffe = [x509.UniformResourceIdentifier("spiffe://acme.prod/ns/billing/sa/api")]
    client = leaf(ca_key, ca_cert, "billing", spiffe, ExtendedKeyUsageOID.CLIENT_AUTH)
    other = leaf(other_key, other_cert, "billing", spiffe, ExtendedKeyUsageOID.CLIENT_AUTH)
    server_paths = write("server", *server)
    client_paths = write("client", *client)
    other_paths = write("other", *other)
    return Certs(root / "ca.crt", *server_paths, *client_paths, *other_paths)


# --------------------------------------------------------------------------------------------
# a `pdp serve` child process


class ServeProcess:
    """``python -m pdp serve ARGS`` with its stderr read line by line on a thread."""

    READY = re.compile(r"serving (?:revision \S+ .* )?on (\S+?):(\d+)")

    def __init__(self, *args: str, cwd: Path | None = None, script: str | None = None):
        """``script``: run this Python code with ``args`` instead of ``pdp serve``."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PDP_HOME), os.environ.get("PYTHONPATH", "")]),
               "PYTHONUNBUFFERED": "1"}
        command = ["-c", script] if script is not None else ["-m", "pdp", "serve"]
        self.proc = subprocess.Popen([sys.executable, *command, *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     cwd=cwd or PDP_HOME)  # `-m` puts the cwd first on sys.path
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match:
        """The first new log line matching ``pattern``; AssertionError after ``timeout``."""
        rx = re.compile(pattern)
        deadline = _now() + timeout
        while True:
            remaining = deadline - _now()
            if remaining <= 0:
                raise AssertionError(f"no log line matching {pattern!r} within {timeout}s:\n" + "\n".join(self.lines))
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the process ended (exit {self.proc.wait(WAIT)}) before a line matching "
                                     f"{pattern!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            m = rx.search(line)
            if m:
                return m

    def wait_ready(self) -> int:
        return int(self.wait_for(self.READY.pattern).group(2))

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(WAIT)
            raise

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)


def scrape_until(metrics_port: int, pattern: str, timeout: float = WAIT) -> str:
    """The metrics page once it matches ``pattern``. Counters are updated after the log line or
    the answer a test waits on (and, with workers, reach the parent over a pipe), so a test polls
    instead of reading the page once; AssertionError with the last page after ``timeout``."""
    import time
    import urllib.request

    deadline = _now() + timeout
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=timeout).read().decode()
        if re.search(pattern, text):
            return text
        if _now() > deadline:
            raise AssertionError(f"no metrics matching {pattern!r} within {timeout}s:\n{text}")
        time.sleep(0.05)


def _now() -> float:
    import time

    return time.monotonic()
