"""Signed bundles: `pdp build --sign KEY`, `pdp.load_bundle(FILE, verify_key=PUB)` and
`pdp serve --bundle FILE --verify-key PUB`. Unsigned, altered or otherwise signed bundles are
refused with a clear error; the revision is recomputed from the embedded sources, never taken
from the header, signed or not."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serverkit import ALLOWED, WAIT, ServeProcess, write_policies

import pdp
from pdp import signing
from pdp.cli import main
from pdp.client import Client

REPO = Path(__file__).resolve().parents[1]
REQUEST = json.loads((REPO / "examples" / "charge.json").read_text())


def write_key_pair(folder: Path, stem: str = "signing") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    private, public = folder / f"{stem}.pem", folder / f"{stem}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """(signed bundle bytes, verify key path, source engine) for the example policies."""
    root = tmp_path_factory.mktemp("signed")
    private, public = write_key_pair(root)
    bundle = root / "payments.bundle"
    assert main(["build", str(REPO / "examples" / "payments"), "-o", str(bundle), "--sign", str(private)]) == 0
    return bundle.read_bytes(), public, pdp.load(REPO / "examples" / "payments")


def error_of(path, **kwargs) -> str:
    with pytest.raises(pdp.PolicyError) as info:
        pdp.load_bundle(path, **kwargs)
    return str(info.value)


def test_a_signed_bundle_verifies_and_decides_as_its_sources(signed, tmp_path, capsys):
    data, public, source = signed
    bundle = tmp_path / "p.bundle"
    bundle.write_bytes(data)
    for key in (public, signing.load_public_key(public)):  # a PEM path or a key object
        engine = pdp.load_bundle(bundle, verify_key=key)
        assert engine.revision == source.revision
        assert engine.decide(REQUEST) == source.decide(REQUEST)
    # without a verify key a signed bundle loads too (nothing to check it against)
    assert pdp.load_bundle(bundle).decide(REQUEST) == source.decide(REQUEST)


def test_build_says_which_key_signed(tmp_path, capsys):
    private, public = write_key_pair(tmp_path)
    out = tmp_path / "p.bundle"
    assert main(["build", str(REPO / "examples" / "payments"), "-o", str(out), "--sign", str(private)]) == 0
    kid = signing.key_id(signing.load_public_key(public))
    assert capsys.readouterr().out.strip().endswith(f"bytes, signed by key {kid}")


def test_an_unsigned_bundle_is_refused_when_a_key_is_given(signed, tmp_path):
    _, public, source = signed
    bundle = tmp_path / "plain.bundle"
    pdp.write_bundle(source, bundle)
    assert "the bundle is not signed, and a verify key was given" in error_of(bundle, verify_key=public)
    assert pdp.load_bundle(bundle).revision == source.revision


def test_a_bundle_signed_by_another_key_is_refused(signed, tmp_path):
    data, public, _ = signed
    _, other = write_key_pair(tmp_path, "other")
    bundle = tmp_path / "p.bundle"
    bundle.write_bytes(data)
    signer, verifier = (signing.key_id(signing.load_public_key(k)) for k in (public, other))
    assert error_of(bundle, verify_key=other).endswith(
        f"the bundle is signed by key {signer}, not by the verify key ({verifier})")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255))
def test_any_byte_changed_is_refused(signed, tmp_path, position, flip):
    data, public, _ = signed
    index = int(position * len(data))
    tampered = bytearray(data)
    tampered[index] ^= flip
    bundle = tmp_path / "tampered.bundle"
    bundle.write_bytes(bytes(tampered))
    message = error_of(bundle, verify_key=public)
    assert message.startswith(f"{bundle}:") and "bundle" in message


def test_a_cut_or_extended_signed_bundle_is_refused(signed, tmp_path):
    data, public, _ = signed
    bundle = tmp_path / "p.bundle"
    for changed in (data[:-1], data[: len(data) // 2], data + b"\0", data + data):
        bundle.write_bytes(changed)
        assert "bundle" in error_of(bundle, verify_key=public)


def _repack(data: bytes, change) -> bytes:
    header, body = msgpack.unpackb(data, raw=False, strict_map_key=False)
    change(header, body)
    return msgpack.packb([header, body], use_bin_type=True)


def _set_revision(header, body):
    header["revision"] = "0123456789abcdef"


def _edit_source(header, body):
    body["sources"][0][3] = body["sources"][0][3] + b"\n// edited\n"


@pytest.mark.parametrize("change", [_set_revision, _edit_source], ids=["header revision", "source edited"])
def test_a_header_revision_the_sources_disagree_with_is_refused_signed_or_not(signed, tmp_path, change):
    _, public, source = signed
    plain = tmp_path / "plain.bundle"
    pdp.write_bundle(source, plain)
    altered = _repack(plain.read_bytes(), change)
    plain.write_bytes(altered)
    message = error_of(plain)
    assert "the bundle's header says revision" in message and "the bundle was altered" in message
    # signing an altered bundle does not make it acceptable: the revision is still recomputed
    private, public = write_key_pair(tmp_path)
    resigned = tmp_path / "resigned.bundle"
    resigned.write_bytes(signing.sign(altered, signing.load_private_key(private)))
    assert "the bundle was altered" in error_of(resigned, verify_key=public)


def test_the_revision_is_the_one_pdp_load_computes(signed, tmp_path):
    data, public, source = signed
    bundle = tmp_path / "p.bundle"
    bundle.write_bytes(data)
    assert pdp.load_bundle(bundle, verify_key=public).revision == source.revision == \
        pdp.load(REPO / "examples" / "payments").revision


# ---- keys -----------------------------------------------------------------------------------


def test_keys_made_with_the_documented_openssl_commands_work(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: the README's key commands cannot be run here")
    private, public = tmp_path / "signing.pem", tmp_path / "verify.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private)], check=True, timeout=30)
    subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True, timeout=30)
    bundle = tmp_path / "p.bundle"
    assert main(["build", str(REPO / "examples" / "payments"), "-o", str(bundle), "--sign", str(private)]) == 0
    assert pdp.load_bundle(bundle, verify_key=public).decide(REQUEST).allowed


def _bad_keys(folder: Path) -> dict[str, tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    ed = ed25519.Ed25519PrivateKey.generate()
    encrypted = folder / "encrypted.pem"
    encrypted.write_bytes(ed.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(b"pw")))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_private, ec_public = folder / "ec.pem", folder / "ec.pub.pem"
    ec_private.write_bytes(ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    ec_public.write_bytes(ec_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))
    garbage = folder / "garbage.pem"
    garbage.write_text("not a key\n")
    return {"encrypted": (encrypted, "the signing key is encrypted"),
            "ec private": (ec_private, "not Ed25519"), "ec public": (ec_public, "not Ed25519"),
            "garbage": (garbage, "not a PEM"), "missing": (folder / "nope.pem", "cannot read the")}


def test_build_refuses_unusable_signing_keys(tmp_path, capsys):
    for name, (key, message) in _bad_keys(tmp_path / "keys").items():
        if name == "ec public":
            continue
        out = tmp_path / f"{name}.bundle"
        assert main(["build", str(REPO / "examples" / "payments"), "-o", str(out), "--sign", str(key)]) == 1, name
        err = capsys.readouterr().err
        assert err.startswith(f"pdp build: error: {key}: ") and message in err, (name, err)
        assert not out.exists()


def test_serve_refuses_unusable_verify_keys_and_misuse(tmp_path, capsys):
    policies = write_policies(tmp_path / "policies")
    bundle = tmp_path / "p.bundle"
    pdp.write_bundle(pdp.load(policies), bundle)
    for name, (key, message) in _bad_keys(tmp_path / "keys").items():
        if name in ("encrypted", "ec private"):
            message = "not a PEM public key"  # a private key file given where the public one goes
        assert main(["serve", "--bundle", str(bundle), "--verify-key", str(key)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"pdp serve: error: --verify-key: {key}: ") and message in err, (name, err)
    _, public = write_key_pair(tmp_path)
    assert main(["serve", str(policies), "--verify-key", str(public)]) == 2
    assert "--verify-key checks the signature of a bundle: give it with --bundle FILE" in capsys.readouterr().err


# ---- pdp serve --verify-key -----------------------------------------------------------------


def test_serve_refuses_an_unsigned_bundle_at_start(tmp_path):
    policies = write_policies(tmp_path / "policies")
    bundle = tmp_path / "p.bundle"
    pdp.write_bundle(pdp.load(policies), bundle)
    _, public = write_key_pair(tmp_path)
    with ServeProcess("--bundle", str(bundle), "--verify-key", str(public), "--addr", "127.0.0.1:0",
                      "--workers", "1") as server:
        assert server.proc.wait(WAIT) == 1
        server.wait_for("the bundle is not signed, and a verify key was given")


def test_serve_a_signed_bundle_and_refuse_an_altered_one_on_reload(tmp_path):
    policies = write_policies(tmp_path / "policies")
    private, public = write_key_pair(tmp_path)
    bundle = tmp_path / "p.bundle"
    assert main(["build", str(policies), "-o", str(bundle), "--sign", str(private)]) == 0
    revision = pdp.load(policies).revision
    with ServeProcess("--bundle", str(bundle), "--verify-key", str(public), "--addr", "127.0.0.1:0",
                      "--workers", "1") as server:
        port = server.wait_ready()
        with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
            assert client.check(ALLOWED).revision == revision
            unsigned = tmp_path / "unsigned.bundle"
            pdp.write_bundle(pdp.load(policies), unsigned)
            unsigned.replace(bundle)
            server.signal(signal.SIGHUP)
            server.wait_for(r"reload rejected; still serving revision " + revision)
            server.wait_for(r"p\.bundle: the bundle is not signed, and a verify key was given")
            assert client.check(ALLOWED).revision == revision
        assert server.stop() == 0
