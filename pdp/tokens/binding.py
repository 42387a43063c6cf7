"""Sender-constrained tokens: certificate binding (RFC 8705) and DPoP proofs (RFC 9449).

A verified token with ``cnf["x5t#S256"]`` is good only with the client certificate it names;
one with ``cnf.jkt`` only with a fresh DPoP proof signed by the key it names. What the
request offers comes from its ``context`` (docs/tokens.md):

- the certificate: ``context.peer["x5t#S256"]`` (set by ``pdp serve`` from its own mTLS peer;
  a request may not set ``context.peer``), else ``context.tls.peer_certificate`` (PEM; the
  Envoy mapping fills it from ``source.certificate``);
- the proof: ``context.dpop`` (the Envoy mapping fills it from the ``dpop`` header), checked
  against ``context.http.method`` and ``context.http.url`` (``htm``, ``htu``).
"""

from __future__ import annotations

import functools
import hashlib
import threading
import warnings
from urllib.parse import urlsplit, urlunsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from joserfc.errors import JoseError
from joserfc.jwk import import_key

from ..limits.store import Budget, StoreUnavailable
from .keys import KEY_TYPES, PublicKey
from .verify import CERTIFICATE_BINDING, DPOP, Rejected, Verified, b64url, check_signature, split_jws

#: The ``cnf`` members pdp checks; a token confirmed some other way cannot be checked: rejected.
CNF_CERTIFICATE, CNF_JKT = "x5t#S256", "jkt"
#: A DPoP proof is fresh for this long after its ``iat`` (plus the leeway).
DPOP_MAX_AGE = 60.0
#: Proofs remembered at once (their ``jti``s, until they are stale); beyond, new proofs are
#: refused rather than an old one forgotten (a forgotten ``jti`` could be replayed).
MAX_REPLAY_ENTRIES = 100_000
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


@functools.lru_cache(maxsize=1024)  # a client presents its certificate on every request
def certificate_thumbprint(pem: str | bytes) -> str:
    """``x5t#S256`` of a PEM certificate: base64url, unpadded, of the SHA-256 of its DER;
    raises ValueError when ``pem`` is not one."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    cert = x509.load_pem_x509_certificate(data)
    return b64url(hashlib.sha256(cert.public_bytes(Encoding.DER)).digest())


class ReplayCache:
    """The ``jti``s of DPoP proofs seen in this process, each until its proof is stale; bounded.
    For ``pdp.load``; ``pdp serve`` keeps them in its limit store instead (``StoreReplays``)."""

    def __init__(self, max_entries: int = MAX_REPLAY_ENTRIES):
        self.max_entries = max_entries
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def first_use(self, key: tuple[str, str], stale_at: float, now: float) -> bool:
        """True the first time ``key`` is seen (and remember it until ``stale_at``); False for a
        replay. Raises ``Rejected`` when the cache is full of proofs that are still fresh."""
        with self._lock:
            seen = self._seen
            if key in seen and seen[key] > now:
                return False
            if len(seen) >= self.max_entries:
                for k in [k for k, until in seen.items() if until <= now]:
                    del seen[k]
                if len(seen) >= self.max_entries:
                    raise Rejected(DPOP, "too many proofs in flight; try again")
            seen[key] = stale_at
            return True


#: One replay cache for the process, kept across reloads: a reload must not let a proof
#: be used twice. A server replaces it with its limit store (``StoreReplays``).
REPLAYS = ReplayCache()

#: The budget name under which a limit store keeps the proofs seen (not a rule id: no policy
#: rule can be named so, and no limit rule can take from it).
REPLAY_BUDGET = "pdp/dpop-jti"


class StoreReplays:
    """The ``jti``s seen, kept in a velocity-limit store (SPEC §9), so that every process that
    shares the store sees them: the parent's store for the workers of ``pdp serve --workers N``,
    Redis for every server of ``--limits redis://``. A proof is a budget of one unit for as long
    as it is fresh: its first use takes the unit, a replay finds none (the store's check and
    take are one atomic step). The store forgets it once it is stale."""

    def __init__(self, store):
        self.store = store

    def first_use(self, key: tuple[str, str], stale_at: float, now: float) -> bool:
        """As ``ReplayCache.first_use``; a store that does not answer in time rejects the proof
        (fail closed: a replay must not pass because the store is down)."""
        # A fixed-size key, whatever the jti's length (the store keeps it for a minute or two).
        name = b64url(hashlib.sha256("\0".join(key).encode("utf-8", "surrogatepass")).digest())
        window_ns = max(1_000_000, int((stale_at - now) * 1e9))
        try:
            return not self.store.take([Budget(REPLAY_BUDGET, name, 1, window_ns)])
        except StoreUnavailable as exc:
            raise Rejected(DPOP, f"the replay store did not answer ({exc}); try again") from None


class Binding:
    """Checks a verified token's ``cnf`` against what a request offers."""

    def __init__(self, leeway: float, replays: ReplayCache = REPLAYS):
        self.leeway = leeway
        self.replays = replays

    def check(self, verified: Verified, context: dict, now: float) -> None:
        """Raise ``Rejected`` unless every confirmation method of the token is met."""
        cnf = verified.cnf
        if cnf is None:
            return
        unknown = [m for m in cnf if m not in (CNF_CERTIFICATE, CNF_JKT)]
        if unknown or not cnf:
            raise Rejected(CERTIFICATE_BINDING, f"unsupported confirmation method {', '.join(unknown) or '{}'}")
        if CNF_CERTIFICATE in cnf:
            offered = self.certificate(context)
            if offered is None:
                raise Rejected(CERTIFICATE_BINDING, "no client certificate")
            if offered != cnf[CNF_CERTIFICATE]:
                raise Rejected(CERTIFICATE_BINDING, "another client certificate")
        if CNF_JKT in cnf:
            self.dpop(verified, context, now)

    def certificate(self, context: dict) -> str | None:
        """The thumbprint of the client certificate the request came with, or None."""
        peer = context.get("peer")
        if type(peer) is dict and isinstance(peer.get(CNF_CERTIFICATE), str):
            return peer[CNF_CERTIFICATE]
        tls = context.get("tls")
        pem = tls.get("peer_certificate") if type(tls) is dict else None
        if not isinstance(pem, str):
            return None
        try:
            return certificate_thumbprint(pem)
        except ValueError:
            raise Rejected(CERTIFICATE_BINDING, "context.tls.peer_certificate is not a PEM certificate") from None

    def dpop(self, verified: Verified, context: dict, now: float) -> None:
        """RFC 9449 §4.3: the proof in ``context.dpop`` for this token and this request."""
        proof = context.get("dpop")
        if proof is None:
            raise Rejected(DPOP, "the token is DPoP-bound and the request carries no proof")
        try:
            header, claims, proof = split_jws(proof, "proof")
        except Rejected as err:
            raise Rejected(DPOP, err.detail) from None
        if header.get("typ") != "dpop+jwt":
            raise Rejected(DPOP, "the proof's typ is not dpop+jwt")
        alg = header.get("alg")
        jwk = header.get("jwk")
        if not isinstance(alg, str) or alg not in KEY_TYPES:
            raise Rejected(DPOP, "the proof's alg is not an accepted signature algorithm")
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC", "OKP"):
            raise Rejected(DPOP, "the proof carries no public jwk")
        if any(m in jwk for m in _PRIVATE_MEMBERS):
            raise Rejected(DPOP, "the proof's jwk is a private key")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imported = import_key(jwk, jwk["kty"])
            thumbprint = imported.thumbprint()
        except (JoseError, ValueError, TypeError, KeyError):
            raise Rejected(DPOP, "the proof's jwk is not a valid public key") from None
        key = PublicKey(None, jwk["kty"], jwk.get("crv"), None, imported)
        if not key.fits(alg):
            raise Rejected(DPOP, f"the proof's alg {alg} does not fit its jwk")
        if thumbprint != verified.cnf.get(CNF_JKT):  # type: ignore[union-attr]
            raise Rejected(DPOP, "the proof's key is not the one the token is bound to (cnf.jkt)")
        try:
            check_signature(proof, key, alg)
        except Rejected:
            raise Rejected(DPOP, "the proof's signature does not verify") from None
        http = context.get("http")
        method = http.get("method") if type(http) is dict else None
        url = http.get("url") if type(http) is dict else None
        if not isinstance(method, str) or not isinstance(url, str):
            raise Rejected(DPOP, "the request has no context.http.method and context.http.url to check the proof against")
        if claims.get("htm") != method:
            raise Rejected(DPOP, "htm is not the request's method")
        if not isinstance(claims.get("htu"), str) or normal_url(claims["htu"]) != normal_url(url):
            raise Rejected(DPOP, "htu is not the request's URL")
        iat = claims.get("iat")
        if type(iat) not in (int, float):
            raise Rejected(DPOP, "the proof has no iat")
        if iat > now + self.leeway or iat < now - DPOP_MAX_AGE - self.leeway:
            raise Rejected(DPOP, f"the proof is not fresh (iat {now - iat:+.0f}s from now; at most "
                                 f"{DPOP_MAX_AGE:g}s old)")
        if claims.get("ath") != verified.ath:
            raise Rejected(DPOP, "ath is not the hash of this token")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise Rejected(DPOP, "the proof has no jti")
        if not self.replays.first_use((thumbprint, jti), iat + DPOP_MAX_AGE + 2 * self.leeway, now):
            raise Rejected(DPOP, "the proof was used before (jti replayed)")


def normal_url(url: str) -> str:
    """An ``htu`` for comparison (RFC 9449 §4.3): no query or fragment, scheme and host in
    lower case, the default port left out, an empty path as ``/``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "\0invalid"
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and (scheme, port) not in (("https", 443), ("http", 80)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", "", ""))
