"""Signed bundles (Ed25519): ``pdp build --sign KEY`` and ``pdp serve --bundle --verify-key PUB``.

A signed bundle wraps the exact bytes of an ordinary bundle (the *payload*) in a msgpack
envelope ``[{"format", "version", "algorithm", "key_id"}, signature, payload]``; the
signature is Ed25519 over the payload bytes. Every field of the envelope must be what this
pdp writes, so no byte of the file can change without an error when a key is given. The key
id (the first 16 hex digits of the SHA-256 of the raw public key) only names keys in messages.

Keys are PEM files, as ``openssl genpkey -algorithm ed25519`` and ``openssl pkey -pubout``
write them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import msgpack

SIGNED_FORMAT = "pdp-signed-bundle"
SIGNED_VERSION = 1
ALGORITHM = "ed25519"


class SigningError(Exception):
    """A key file that cannot be used, or a bundle that does not verify; ``str()`` says why."""


def _read_pem(path: str | os.PathLike, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SigningError(f"{path}: cannot read the {what}: {exc.strerror}") from None


def load_private_key(path: str | os.PathLike):
    """An Ed25519 private key from a PEM file (PKCS#8, unencrypted)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read_pem(path, "signing key")
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise SigningError(f"{path}: the signing key is encrypted; give an unencrypted PEM file") from None
    except ValueError:
        raise SigningError(f"{path}: not a PEM private key (make one with: "
                           "openssl genpkey -algorithm ed25519 -out signing.pem)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path}: the signing key is {type(key).__name__.removeprefix('_')}, not Ed25519")
    return key


def load_public_key(key):
    """An Ed25519 public key: ``key`` is one already, or the path of a PEM file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if isinstance(key, Ed25519PublicKey):
        return key
    data = _read_pem(key, "verify key")
    try:
        public = load_pem_public_key(data)
    except ValueError:
        raise SigningError(f"{key}: not a PEM public key (make one from the signing key with: "
                           "openssl pkey -in signing.pem -pubout -out verify.pem)") from None
    if not isinstance(public, Ed25519PublicKey):
        raise SigningError(f"{key}: the verify key is {type(public).__name__.removeprefix('_')}, not Ed25519")
    return public


def key_id(public_key) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def sign(payload: bytes, private_key) -> bytes:
    """``payload`` (bundle bytes) ⇒ a signed bundle."""
    header = {"format": SIGNED_FORMAT, "version": SIGNED_VERSION, "algorithm": ALGORITHM,
              "key_id": key_id(private_key.public_key())}
    return msgpack.packb([header, private_key.sign(payload), payload], use_bin_type=True)


def unwrap(data: bytes, verify_key=None) -> bytes:
    """The bundle bytes inside ``data``; raises SigningError.

    With ``verify_key`` (an Ed25519 public key) ``data`` must be a signed bundle whose
    signature that key verifies. Without it, a signed bundle's payload is returned unverified
    and an unsigned bundle as it is.
    """
    envelope = _envelope(data)
    if envelope is None:
        if verify_key is not None:
            raise SigningError("the bundle is not signed, and a verify key was given: only a bundle signed "
                               "with 'pdp build --sign KEY' is accepted")
        return data
    header, signature, payload = envelope
    if verify_key is None:
        return payload
    from cryptography.exceptions import InvalidSignature

    expected = key_id(verify_key)
    if header["key_id"] != expected:
        raise SigningError(f"the bundle is signed by key {header['key_id']}, not by the verify key ({expected})")
    try:
        verify_key.verify(signature, payload)
    except InvalidSignature:
        raise SigningError("the bundle's signature does not verify: it was changed after it was signed") from None
    return payload


def _envelope(data: bytes) -> tuple[dict, bytes, bytes] | None:
    """``(header, signature, payload)`` of a signed bundle; None when ``data`` is not one."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    try:
        items = unpacker.read_array_header()
        header = unpacker.unpack()
    except Exception:  # noqa: BLE001 - not msgpack, or not an array: not a signed bundle
        return None
    if not isinstance(header, dict) or header.get("format") != SIGNED_FORMAT:
        return None
    try:
        rest = [unpacker.unpack() for _ in range(items - 1)]
        trailing = unpacker.tell() != len(data)
    except Exception:  # noqa: BLE001 - a cut or damaged envelope
        raise SigningError("damaged signed bundle (its envelope is cut short or malformed)") from None
    damaged = SigningError("damaged signed bundle (its envelope is not [header, signature, payload])")
    if set(header) != {"format", "version", "algorithm", "key_id"}:
        raise damaged
    if header["version"] != SIGNED_VERSION or header["algorithm"] != ALGORITHM:
        raise SigningError(f"unsupported signed bundle (version {header['version']!r}, algorithm "
                           f"{header['algorithm']!r}; this pdp reads version {SIGNED_VERSION}, {ALGORITHM})")
    if items != 3 or trailing or not isinstance(header["key_id"], str) or not all(isinstance(x, bytes) for x in rest):
        raise damaged
    return header, rest[0], rest[1]
