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
import warnings
from urllib.parse import urlsplit, urlunsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from joserfc.errors import JoseError
from joserfc.jwk import import_key

from ..limits.once import OnceMarks
from ..limits.store import StoreFull, StoreUnavailable
from .keys import KEY_TYPES, PublicKey
from .verify import CERTIFICATE_BINDING, DPOP, Rejected, Verified, b64url, check_signature, split_jws

#: The ``cnf`` members pdp checks; a token confirmed some other way cannot be checked: rejected.
CNF_CERTIFICATE, CNF_JKT = "x5t#S256", "jkt"
#: A DPoP proof is fresh for this long after its ``iat`` (plus the leeway).
DPOP_MAX_AGE = 60.0
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


@functools.lru_cache(maxsize=1024)  # a client presents its certificate on every request
def certificate_thumbprint(pem: str | bytes) -> str:
    """``x5t#S256`` of a PEM certificate: base64url, unpadded, of the SHA-256 of its DER;
    raises ValueError when ``pem`` is not one."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    cert = x509.load_pem_x509_certificate(data)
    return b64url(hashlib.sha256(cert.public_bytes(Encoding.DER)).digest())


#: The proofs seen by ``pdp.load`` engines, for the whole process and across reloads (a
#: reload must not let a proof be used twice); bounded (``OnceMarks``). A server keeps them
#: in its limit store instead (``TokenGate.share_replays``): a ``--workers`` parent's, or Redis.
REPLAYS = OnceMarks()


class Binding:
    """Checks a verified token's ``cnf`` against what a request offers."""

    def __init__(self, leeway: float, replays=REPLAYS):
        self.leeway = leeway
        #: Where the proofs' ``jti``s are kept: anything with ``first_use(key, ttl_ns)``: this
        #: process's ``OnceMarks`` or a limit store (pdp/limits/once.py).
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
        # Remembered until no clock within the leeway of this one accepts the proof any more.
        if not self.first_use(thumbprint, jti, iat + DPOP_MAX_AGE + 2 * self.leeway - now):
            raise Rejected(DPOP, "the proof was used before (jti replayed)")

    def first_use(self, thumbprint: str, jti: str, seconds: float) -> bool:
        """Is this the first use of the proof ``jti`` of the key ``thumbprint``? Remembered for
        ``seconds``. A full store or one that does not answer in time rejects the proof (fail
        closed: a replay must never pass because the store forgot or is down)."""
        # A fixed-size key, whatever the jti's length.
        name = b64url(hashlib.sha256(f"{thumbprint}\0{jti}".encode("utf-8", "surrogatepass")).digest())
        try:
            return self.replays.first_use(name, max(1_000_000, int(seconds * 1e9)))
        except StoreFull:
            raise Rejected(DPOP, "too many proofs in flight; try again") from None
        except StoreUnavailable as exc:
            raise Rejected(DPOP, f"the replay store did not answer ({exc}); try again") from None


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
