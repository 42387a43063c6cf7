"""Issuers' public keys: a JWKS from a file or an https URL ⇒ keys by ``kid`` and by type.

A file is read when the trust file loads (and again on every reload). A URL is fetched when
a key is first needed, kept for ``CACHE_SECONDS``, fetched again early when a token names a
``kid`` the set lacks, but at most once per ``REFETCH_INTERVAL`` (random ``kid``s must not make
pdp hammer the issuer), and the last good set is kept when a fetch fails. Fetches run in the
background: a request waits for one at most ``FETCH_WAIT``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import ssl
import threading
import time
import urllib.request
import warnings
from dataclasses import dataclass

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

log = logging.getLogger("pdp.tokens")

#: A fetched JWKS is used this long before it is fetched again.
CACHE_SECONDS = 300.0
#: At most one fetch per this many seconds, whatever tokens arrive.
REFETCH_INTERVAL = 30.0
#: A request that needs a key the set lacks waits at most this long for the fetch it starts
#: or joins; the fetch itself goes on in the background (for up to the issuer's timeout).
FETCH_WAIT = 0.25
#: A JWKS larger than this is refused (a key set is a few KB).
MAX_JWKS_BYTES = 1 << 20

#: The key type (and curve) each algorithm needs (RFC 7518 §3, RFC 8037 §3.1).
KEY_TYPES = {
    "RS256": ("RSA", None), "RS384": ("RSA", None), "RS512": ("RSA", None),
    "PS256": ("RSA", None), "PS384": ("RSA", None), "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}
_KEY_CLASSES = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


@dataclass(frozen=True)
class PublicKey:
    """One usable key of a set: its ``kid`` (or None), type, curve, ``alg`` (or None), and
    the imported joserfc key."""

    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    key: object

    def fits(self, alg: str) -> bool:
        """Can this key verify ``alg``? The key type decides, never the token: an RSA or EC
        public key never verifies an HMAC token, whatever its header says."""
        kty, crv = KEY_TYPES.get(alg, (None, None))
        if kty != self.kty or (crv is not None and crv != self.crv):
            return False
        if self.kty == "OKP" and self.crv not in ("Ed25519", "Ed448"):
            return False  # X25519 keys agree keys; they do not sign
        return self.alg is None or self.alg == alg


class KeySet:
    """Parsed keys, by ``kid``."""

    def __init__(self, keys: list[PublicKey]):
        self.keys = tuple(keys)
        self.by_kid = {k.kid: k for k in keys if k.kid is not None}
        self.digest = ""  # of the file it was read from (a reload compares them)

    def find(self, kid: str | None, alg: str) -> PublicKey | None:
        """The key for a token: by ``kid``; without one, the only key of the type ``alg``
        needs (SPEC §8). Whether it fits ``alg`` is checked after."""
        if kid is not None:
            return self.by_kid.get(kid)
        kty = KEY_TYPES.get(alg, (None, None))[0]
        of_type = [k for k in self.keys if k.kty == kty]
        return of_type[0] if len(of_type) == 1 else None


def parse_jwks(document: object) -> KeySet:
    """A JWKS (``{"keys": [...]}``) ⇒ ``KeySet``; raises ValueError saying what is wrong.

    Keys for encryption (``use: enc``) are skipped; a private key is refused: a JWKS for pdp
    holds public keys only."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('a JWKS is a JSON object {"keys": [...]}')
    keys: list[PublicKey] = []
    kids: set[str] = set()
    for i, jwk in enumerate(document["keys"]):
        if not isinstance(jwk, dict):
            raise ValueError(f"keys[{i}] is not an object")
        kty = jwk.get("kty")
        if kty not in _KEY_CLASSES:
            if kty == "oct":
                raise ValueError(f"keys[{i}] is a shared secret (kty oct): pdp verifies with public keys only")
            raise ValueError(f"keys[{i}]: unsupported key type {kty!r}; expected RSA, EC or OKP")
        if any(m in jwk for m in _PRIVATE_MEMBERS):
            raise ValueError(f"keys[{i}] holds a private key: a JWKS for pdp must hold public keys only")
        if jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise ValueError(f"keys[{i}].kid must be a string")
        if kid is not None:
            if kid in kids:
                raise ValueError(f"keys[{i}]: kid {kid!r} is used twice")
            kids.add(kid)
        alg = jwk.get("alg")
        if alg is not None and alg not in KEY_TYPES:
            raise ValueError(f"keys[{i}]: alg {alg!r} is not a signature algorithm pdp verifies")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                key = import_key(jwk, kty)
        except (JoseError, ValueError, TypeError) as exc:
            raise ValueError(f"keys[{i}] is not a valid {kty} public key: {exc}") from None
        keys.append(PublicKey(kid, kty, jwk.get("crv"), alg, key))
    return KeySet(keys)


def read_jwks(path: str) -> KeySet:
    """A JWKS file ⇒ ``KeySet`` (its ``digest`` the SHA-256 of the file); raises ValueError."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JWKS_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read the key set: {exc.strerror or exc}") from None
    if len(data) > MAX_JWKS_BYTES:
        raise ValueError(f"the key set is larger than {MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"the key set is not JSON: {exc}") from None
    keys = parse_jwks(document)
    keys.digest = hashlib.sha256(data).hexdigest()
    return keys


class KeySource:
    """Where an issuer's keys come from."""

    def current(self) -> KeySet:  # pragma: no cover - interface
        raise NotImplementedError

    def refreshed(self, seen: KeySet) -> KeySet | None:
        """A set newer than ``seen`` (which lacked a key), when one may and can be had now;
        else None."""
        return None


class FileKeys(KeySource):
    """A JWKS file, read when the trust file loads."""

    def __init__(self, path: str, keys: KeySet):
        self.path = path
        self.keys = keys

    def current(self) -> KeySet:
        return self.keys


class UrlKeys(KeySource):
    """A JWKS URL: fetched when first needed, cached, refetched at most once per interval.

    Fetches run on a thread of their own, one at a time: a request never waits for the issuer
    longer than ``wait`` seconds (``FETCH_WAIT``). A request whose key is not in the set joins
    the fetch in flight (or starts one, when the interval allows) and waits that long for it;
    when the fetch takes longer, the request is answered without the key (``unknown key``) and
    the requests after the fetch find it. A set older than ``cache_seconds`` is fetched again
    in the background while it goes on serving.
    """

    def __init__(self, url: str, timeout: float, ca_file: str | None = None,
                 cache_seconds: float = CACHE_SECONDS, refetch_interval: float = REFETCH_INTERVAL,
                 clock=time.monotonic, wait: float = FETCH_WAIT):
        self.url = url
        self.timeout = timeout
        self.ca_file = ca_file
        self.cache_seconds = cache_seconds
        self.refetch_interval = refetch_interval
        self.clock = clock
        self.wait = wait
        self.fetches = 0  # attempts, for tests and logs
        self._keys = KeySet([])
        self._fetched_at: float | None = None  # the last good fetch
        self._tried_at: float | None = None  # the last attempt, good or not
        self._in_flight: threading.Event | None = None  # set when the running fetch ends
        self._lock = threading.Lock()

    def current(self) -> KeySet:
        fetched_at = self._fetched_at
        if fetched_at is None or self.clock() - fetched_at >= self.cache_seconds:
            self._start_fetch()  # this request goes on with what there is
        return self._keys

    def refreshed(self, seen: KeySet) -> KeySet | None:
        if self._keys is seen and self._start_fetch() is not None and _may_wait():
            self.settle(self.wait)
        return self._keys if self._keys is not seen else None

    def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the fetch in flight; True when none is left."""
        in_flight = self._in_flight
        return in_flight is None or in_flight.wait(timeout)

    def _start_fetch(self) -> threading.Event | None:
        """The fetch in flight, or a new one when the interval allows; None when neither."""
        with self._lock:
            if self._in_flight is not None:
                return self._in_flight
            now = self.clock()
            if self._tried_at is not None and now - self._tried_at < self.refetch_interval:
                return None
            self._tried_at = now
            self.fetches += 1
            done = self._in_flight = threading.Event()
        threading.Thread(target=self._fetch, args=(done,), name="pdp-jwks-fetch", daemon=True).start()
        return done

    def _fetch(self, done: threading.Event) -> None:
        try:
            keys = parse_jwks(json.loads(self._download()))
        except Exception as exc:  # noqa: BLE001 - OSError, ValueError, http.client's errors: all a failed fetch
            log.warning("JWKS %s: fetch failed, keeping the last good key set (%d keys): %s",
                        self.url, len(self._keys.keys), exc)
        else:
            self._keys = keys
            self._fetched_at = self.clock()
        finally:
            with self._lock:
                self._in_flight = None
            done.set()

    def _download(self) -> bytes:
        context = ssl.create_default_context(cafile=self.ca_file)
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirects())
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        with opener.open(request, timeout=self.timeout) as response:
            data = response.read(MAX_JWKS_BYTES + 1)
        if len(data) > MAX_JWKS_BYTES:
            raise ValueError(f"the key set is larger than {MAX_JWKS_BYTES} bytes")
        return data


def _may_wait() -> bool:
    """False on a thread that runs an asyncio event loop (AuthZEN over HTTP decides on its
    loop): waiting there would hold every request of the loop, so such a request does not."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    return False


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A JWKS URL answers itself: a redirect (perhaps to plain http) is a failed fetch."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise OSError(f"the JWKS URL answered a redirect ({code}) to {newurl}; pdp does not follow it")
