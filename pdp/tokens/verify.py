"""One token ⇒ its verified claims, or why it is rejected (SPEC §8).

The order of the checks fixes which ``WHY`` a token with several faults gets: its shape
(``malformed``), the algorithm's name, the issuer, the key, the algorithm against the key,
the signature, then the claims (``exp``, ``nbf``/``iat``, ``aud``, lifetime). The signature is
checked by joserfc (bench/TOKENS.md says why that library); everything else is checked
here, so that every rejection is worded as SPEC §8 words it.

Times are the server's clock (``now``), never the request's ``context.time``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError

from ..errors import RequestError
from ..request import normalize_value
from .keys import KEY_TYPES, PublicKey
from .trust import Issuer, Trust

#: A longer token is malformed (access tokens are a few KB at most); bounds the work.
MAX_TOKEN_BYTES = 16 * 1024

MALFORMED, ALGORITHM, UNKNOWN_ISSUER, UNKNOWN_KEY = "malformed", "algorithm", "unknown issuer", "unknown key"
SIGNATURE, EXPIRED, NOT_YET_VALID, AUDIENCE = "signature", "expired", "not yet valid", "audience"
LIFETIME, CERTIFICATE_BINDING, DPOP = "lifetime", "certificate binding", "dpop"
#: Rejections that depend on the token alone (and the trust file), never on the time or on a
#: key set that a fetch may change: they may be cached like verified tokens.
STABLE = frozenset({MALFORMED, ALGORITHM, UNKNOWN_ISSUER, SIGNATURE, AUDIENCE, LIFETIME})


class Rejected(Exception):
    """A token that does not verify: ``why`` is one of SPEC §8's words, ``detail`` says more."""

    def __init__(self, why: str, detail: str = ""):
        self.why = why
        self.detail = detail
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"token rejected: {self.why}: {self.detail}" if self.detail else f"token rejected: {self.why}"


@dataclass(frozen=True)
class Verified:
    """A token that verified: ``view`` is the root ``token`` of the language; ``cnf`` the
    confirmation claim (RFC 7800) when it has one; ``valid_until`` the server time after which
    it is expired (``exp`` plus the leeway); ``ath`` the base64url SHA-256 of the token (a
    DPoP proof's ``ath``)."""

    view: dict
    cnf: dict | None
    valid_until: float
    ath: str


def b64url_decode(part: str) -> bytes:
    """Unpadded base64url (RFC 7515 §2) ⇒ bytes; raises ValueError on anything else."""
    if "=" in part or not part.isascii():
        raise ValueError("not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def split_jws(token: object, what: str = "token") -> tuple[dict, dict, str]:
    """A compact JWS ⇒ (header, payload, token); raises ``Rejected(MALFORMED)``."""
    if not isinstance(token, str):
        raise Rejected(MALFORMED, f"the {what} is not a string")
    if len(token) > MAX_TOKEN_BYTES:
        raise Rejected(MALFORMED, f"the {what} is longer than {MAX_TOKEN_BYTES} bytes")
    parts = token.split(".")
    if len(parts) != 3:
        raise Rejected(MALFORMED, f"the {what} is not a compact JWS (three base64url parts)")
    try:
        header = json.loads(b64url_decode(parts[0]))
        payload = json.loads(b64url_decode(parts[1]))
        b64url_decode(parts[2])
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Rejected(MALFORMED, f"the {what}'s parts are not base64url JSON") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise Rejected(MALFORMED, f"the {what}'s header and payload must be JSON objects")
    if "crit" in header or header.get("b64") is False:
        raise Rejected(MALFORMED, f"the {what} uses JWS extensions (crit, b64) that pdp does not support")
    return header, payload, token


def check_signature(token: str, key: PublicKey, alg: str) -> None:
    """Raise ``Rejected(SIGNATURE)`` unless ``key`` signed ``token`` with ``alg``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc warns that RFC 9864 deprecates the name EdDSA
            jws.deserialize_compact(token, key.key, algorithms=[alg])  # type: ignore[arg-type]
    except BadSignatureError:
        raise Rejected(SIGNATURE) from None
    except (JoseError, ValueError, TypeError) as exc:
        raise Rejected(SIGNATURE, str(exc)[:200]) from None


def _numeric_date(payload: dict, claim: str) -> float | None:
    value = payload.get(claim)
    if value is None:
        return None
    if type(value) not in (int, float) or value != value or value in (float("inf"), float("-inf")):
        raise Rejected(MALFORMED, f"{claim} is not a number of seconds")
    return float(value)


def rfc3339(seconds: float) -> str:
    """Epoch seconds ⇒ an RFC 3339 UTC string (whole seconds when it is whole)."""
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    spec = "seconds" if float(seconds).is_integer() else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def verify(trust: Trust, token: object, now: float) -> Verified:
    """Verify ``token`` against ``trust`` at server time ``now``; raises ``Rejected``."""
    header, payload, token = split_jws(token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in KEY_TYPES:
        shown = alg if isinstance(alg, str) else type(alg).__name__
        raise Rejected(ALGORITHM, f"{shown[:40]!r} is not accepted")
    iss = payload.get("iss")
    if not isinstance(iss, str):
        raise Rejected(MALFORMED, "iss is missing or not a string")
    issuer = trust.issuers.get(iss)
    if issuer is None:
        raise Rejected(UNKNOWN_ISSUER, iss[:200])
    if alg not in issuer.algorithms:
        raise Rejected(ALGORITHM, f"{alg} is not accepted from this issuer")
    key = _key(issuer, header, alg)
    check_signature(token, key, alg)
    return _claims(trust, issuer, payload, token, now)


def _key(issuer: Issuer, header: dict, alg: str) -> PublicKey:
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise Rejected(MALFORMED, "kid is not a string")
    keys = issuer.keys.current()
    key = keys.find(kid, alg)
    if key is None:
        newer = issuer.keys.refreshed(keys)  # a rotated key set: fetched at most once per interval
        if newer is not None:
            key = newer.find(kid, alg)
    if key is None:
        raise Rejected(UNKNOWN_KEY, f"no key {kid[:100]!r}" if kid is not None
                       else f"no kid, and not exactly one {KEY_TYPES[alg][0]} key")
    if not key.fits(alg):
        raise Rejected(ALGORITHM, f"{alg} does not fit the {key.kty} key {key.kid or ''}".rstrip())
    return key


def _claims(trust: Trust, issuer: Issuer, payload: dict, token: str, now: float) -> Verified:
    leeway = trust.leeway
    exp = _numeric_date(payload, "exp")
    nbf = _numeric_date(payload, "nbf")
    iat = _numeric_date(payload, "iat")
    if exp is None:
        raise Rejected(MALFORMED, "exp is missing")
    if exp + leeway <= now:
        raise Rejected(EXPIRED)
    if nbf is not None and nbf - leeway > now:
        raise Rejected(NOT_YET_VALID, "nbf is in the future")
    if iat is not None and iat - leeway > now:
        raise Rejected(NOT_YET_VALID, "iat is in the future")
    audiences = _audiences(payload)
    if not any(a in issuer.audiences for a in audiences):
        raise Rejected(AUDIENCE)
    if issuer.jwt_svid:
        if len(audiences) != 1:
            raise Rejected(AUDIENCE, "a JWT-SVID carries exactly one audience")
        sub = payload.get("sub")
        if not isinstance(sub, str) or not sub.startswith("spiffe://"):
            raise Rejected(MALFORMED, "a JWT-SVID's sub must be a SPIFFE ID")
    if issuer.max_lifetime is not None:
        if iat is None:
            raise Rejected(LIFETIME, "the token has no iat")
        if exp - iat > issuer.max_lifetime:
            raise Rejected(LIFETIME, f"{exp - iat:g}s; the limit is {issuer.max_lifetime:g}s")
    cnf = payload.get("cnf")
    if cnf is not None and not isinstance(cnf, dict):
        raise Rejected(MALFORMED, "cnf is not an object")
    try:
        view = token_view(payload)
    except RequestError as err:
        raise Rejected(MALFORMED, f"{err.path}: {err.message}") from None
    ath = b64url(hashlib.sha256(token.encode("ascii")).digest())
    return Verified(view, cnf or None, exp + leeway, ath)


def token_view(payload: dict) -> dict:
    """The root ``token`` of the language for a verified payload (SPEC §8): ``iss``, ``sub``,
    ``aud`` (a list), ``scopes``, ``issued_at`` and ``expires_at`` (RFC 3339), ``bound`` (the
    token carries a ``cnf``: a token whose binding did not match never gets this far) and
    ``claims`` (the payload as JSON values). Raises ``RequestError`` for a value that is not
    one (an integer beyond 64 bits)."""
    claims = normalize_value(payload, "claims")
    view: dict = {"scopes": _scopes(claims), "bound": bool(claims.get("cnf")), "claims": claims}
    for claim in ("iss", "sub"):
        if isinstance(claims.get(claim), str):
            view[claim] = claims[claim]
    aud = claims.get("aud")
    view["aud"] = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] \
        if isinstance(aud, list) else []
    for claim, name in (("iat", "issued_at"), ("exp", "expires_at")):
        value = claims.get(claim)
        if type(value) in (int, float):
            try:
                view[name] = rfc3339(value)
            except (OverflowError, OSError, ValueError):
                raise RequestError(f"claims.{claim}", "is not a time") from None
    return view


def _audiences(payload: dict) -> list[str]:
    aud = payload.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        return list(aud)
    if aud is None:
        raise Rejected(AUDIENCE, "the token has no aud")
    raise Rejected(MALFORMED, "aud is not a string or a list of strings")


def _scopes(payload: dict) -> list[str]:
    scope = payload.get("scope")
    if isinstance(scope, str):
        return scope.split()
    scp = payload.get("scp")
    if isinstance(scp, list) and all(isinstance(s, str) for s in scp):
        return list(scp)
    if isinstance(scp, str):
        return scp.split()
    return []
