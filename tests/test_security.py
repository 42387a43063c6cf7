"""Security properties of ``pdp serve`` that SECURITY.md promises, beyond what
tests/test_server.py already shows (mTLS refusing a client without a certificate, with one
from another CA, or in plaintext; context.peer not settable by a request; the decision log
without headers and credentials; internal errors without details):

- only loopback by default: the CLI, ServeConfig and a real ``pdp serve`` without --addr;
- mTLS also refuses an expired or not-yet-valid client certificate, a self-signed one that
  copies a trusted client's names, and a client certificate used as a server's; a client
  refuses a server whose certificate another CA signed;
- the decision log redacts secrets wherever a caller puts them (ids, request ids, keys of
  an error), and never holds a credential or header.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
from pathlib import Path

import grpc
import msgpack
import pytest
from serverkit import ALLOWED, WAIT, ServeProcess, engine, make_certs, running, write_policies

from pdp.client import Client
from pdp.server import ServerOptions, TLSConfig
from pdp.server.decision_log import DecisionLog
from pdp.server.lifecycle import ServeConfig
from pdp.v1 import decision_pb2 as pb
from pdp.v1 import decision_pb2_grpc as pb_grpc

# ---- loopback by default ----------------------------------------------------------------------


def test_the_default_address_is_loopback():
    from pdp.cli import build_parser

    args = build_parser().parse_args(["serve", "policies"])
    assert args.addr == "127.0.0.1:50051"
    assert ServeConfig(source=None).address.startswith("127.0.0.1:")  # type: ignore[arg-type]
    assert args.metrics_addr is None and args.tls_cert is None  # nothing else listens unless asked


def _non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (the one a default route would use)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def test_pdp_serve_without_addr_listens_on_loopback_only(tmp_path):
    if not _port_free("127.0.0.1", 50051) or not _port_free("0.0.0.0", 50051):
        pytest.skip("the default port 50051 is in use on this machine")
    policies = write_policies(tmp_path / "policies")
    with ServeProcess(str(policies), "--workers", "1") as server:
        port = server.wait_ready()
        assert port == 50051 and "on 127.0.0.1:50051" in server.lines[-1]
        with Client("127.0.0.1:50051") as client:
            assert client.check(ALLOWED).allowed
        other = _non_loopback_address()
        if other is not None:
            with socket.socket() as s, pytest.raises(OSError):
                s.settimeout(5)
                s.connect((other, 50051))
        assert server.stop() == 0


# ---- mTLS: which client certificates are refused -------------------------------------------


def _extra_certs(root: Path, ca_cert_path: Path, ca_key_path: Path) -> dict[str, tuple[Path, Path]]:
    """Client certificates a server must refuse although they look right."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    spiffe = [x509.UniformResourceIdentifier("spiffe://acme.prod/ns/billing/sa/api")]
    day = datetime.timedelta(days=1)

    def leaf(stem, not_before, not_after, usage=ExtendedKeyUsageOID.CLIENT_AUTH, self_signed=False):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "billing")])
        builder = (x509.CertificateBuilder().subject_name(name)
                   .issuer_name(name if self_signed else ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(not_before)
                   .not_valid_after(not_after).add_extension(x509.SubjectAlternativeName(spiffe), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        cert = builder.sign(key if self_signed else ca_key, hashes.SHA256())
        cert_path, key_path = root / f"{stem}.crt", root / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path

    return {
        "expired": leaf("expired", now - 3 * day, now - day),
        "not yet valid": leaf("future", now + day, now + 3 * day),
        "self-signed with the trusted names": leaf("selfsigned", now - day, now + day, self_signed=True),
        "for servers only": leaf("serveronly", now - day, now + day, usage=ExtendedKeyUsageOID.SERVER_AUTH),
    }


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The shared test PKI plus a CA key kept for signing the odd certificates above."""
    root = tmp_path_factory.mktemp("pki")
    certs = make_certs(root / "main")
    # make_certs does not keep its CA key: sign the odd certificates with a CA of our own that
    # the server trusts too (a bundle of both CAs), so only the certificate's own flaw refuses it.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "second trusted CA")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=10))
          .not_valid_after(now + datetime.timedelta(days=10))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(key, hashes.SHA256()))
    ca_path, ca_key_path = root / "ca2.crt", root / "ca2.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    ca_key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    bundle = root / "trusted.crt"
    bundle.write_bytes(certs.ca.read_bytes() + ca_path.read_bytes())
    odd = _extra_certs(root, ca_path, ca_key_path)
    good = _extra_certs_good(root, ca_path, ca_key_path)
    return certs, bundle, odd, good


def _extra_certs_good(root: Path, ca_path: Path, ca_key_path: Path) -> tuple[Path, Path]:
    """A valid client certificate from the second CA: proves the bundle is trusted."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ok")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = root / "good.crt", root / "good.key"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def _refused(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.check(ALLOWED, timeout=5)
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), info.value
    client.close()


def test_mtls_refuses_client_certificates_that_only_look_right(tmp_path, pki):
    certs, bundle, odd, good = pki
    options = ServerOptions(tls=TLSConfig(certs.server_cert, certs.server_key, bundle))
    with running(engine(tmp_path), options) as (_, port):
        address = f"127.0.0.1:{port}"
        with Client(address, root_ca=certs.ca, cert=good[0], key=good[1]) as client:
            assert client.check(ALLOWED).allowed  # the second CA is trusted
        with Client(address, root_ca=certs.ca, cert=certs.client_cert, key=certs.client_key) as client:
            assert client.check(ALLOWED).allowed
        for cert, key in odd.values():
            _refused(Client(address, root_ca=certs.ca, cert=cert, key=key))


def test_mtls_refuses_a_server_only_certificate_as_a_client(tmp_path, pki):
    certs, bundle, odd, _ = pki
    options = ServerOptions(tls=TLSConfig(certs.server_cert, certs.server_key, bundle))
    with running(engine(tmp_path), options) as (_, port):
        cert, key = odd["for servers only"]
        _refused(Client(f"127.0.0.1:{port}", root_ca=certs.ca, cert=cert, key=key))


def test_a_client_refuses_a_server_it_cannot_verify(tmp_path, pki):
    certs, _, _, _ = pki
    other = make_certs(tmp_path / "other")  # another CA altogether: a man in the middle
    options = ServerOptions(tls=TLSConfig(other.server_cert, other.server_key))
    with running(engine(tmp_path), options) as (_, port):
        _refused(Client(f"127.0.0.1:{port}", root_ca=certs.ca))


# ---- the decision log redacts secrets wherever they are put -----------------------------------

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QtNyJ9.c2lnbmF0dXJlLXNlY3JldA"
TOKEN = "ghp_" + "Z" * 40


def test_the_decision_log_redacts_secrets_wherever_they_are_put(tmp_path):
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    requests = [
        ({"identity": {"type": "workload", "id": JWT}, "action": "charge",
          "resource": {"type": "payment", "id": "p1", "env": "prod"}}, "r-1"),
        ({"identity": {"type": "workload", "id": "billing", "env": "prod", "password": "hunter2",
                       "credential": {"token": TOKEN}},
          "action": "charge", "resource": {"type": "payment", "id": f"Bearer {TOKEN}", "env": "prod"},
          "context": {"headers": {"authorization": f"Bearer {TOKEN}", "x-api-key": "k3y-v4lue"},
                      "cookie": "session=hunter2"}}, JWT),
        ({"identity": {"type": "workload", "id": "billing"}, "action": TOKEN, "resource": {"type": "payment"}},
         "r-3"),
    ]
    try:
        with running(engine(tmp_path), ServerOptions(decision_log=log)) as (_, port):
            with Client(f"127.0.0.1:{port}") as client:
                for request, request_id in requests:
                    client.check(request, request_id=request_id)
                # An unknown top-level key, which the error message names (the client would
                # refuse to send it, so the message is built by hand).
                stub = pb_grpc.DecisionServiceStub(client.channel)
                raw = pb.CheckRequest(request_id="r-4", request_msgpack=msgpack.packb({**ALLOWED, JWT: 1}))
                with pytest.raises(grpc.RpcError) as info:
                    stub.Check(raw, timeout=WAIT)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and JWT in info.value.details()
                client.check_batch([ALLOWED, {"identity": {"type": "x", "id": JWT}}], return_errors=True)
        assert log.flush(WAIT)
    finally:
        log.close()
    text = path.read_text()
    # A key such as "password" may appear in the logged input; its value never does.
    for secret in (JWT, TOKEN, "hunter2", "k3y-v4lue", "Bearer", "c2lnbmF0dXJl"):
        assert secret not in text, secret
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 6, "\n".join(map(json.dumps, lines))
    assert lines[0]["identity"]["id"] == "[REDACTED]" and lines[1]["request_id"] == "[REDACTED]"
    assert lines[1]["resource"]["id"] == "[REDACTED]" and lines[2]["action"] == "[REDACTED]"
    assert lines[3]["decision"] is None and "[REDACTED]" in json.dumps(lines[3])
    assert {"headers", "context", "credential"}.isdisjoint(k for line in lines for k in line)
