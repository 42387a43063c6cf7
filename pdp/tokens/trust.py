"""The trust file (``pdp serve --trust FILE``, ``pdp.load(..., trust=FILE)``), SPEC §8.

YAML text ⇒ ``Trust``: the issuers pdp accepts tokens from, each with its key set, audiences,
algorithms and maximum lifetime, and the clock leeway. Every problem is a ``PolicyError`` at
its line and column, all of them at once, like a policy file's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import Diagnostic, PolicyError
from ..source import SourceFile
from ..syntax.literals import parse_duration
from ..yamlio import MarkedList, MarkedMap, decode_text, load_yaml_marked
from .keys import FileKeys, KeySource, UrlKeys, read_jwks

#: The signature algorithms pdp verifies (RFC 7518 and RFC 8037), each with the key type it needs.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
DEFAULT_ALGORITHMS = ("RS256", "ES256", "PS256", "EdDSA")
DEFAULT_LEEWAY = 30
#: How long a JWKS URL waits for the issuer, by default.
DEFAULT_JWKS_TIMEOUT = 5.0

_TOP_KEYS = ("issuers", "leeway")
_ISSUER_KEYS = ("issuer", "jwks", "audiences", "algorithms", "max_lifetime", "jwt_svid", "jwks_ca", "jwks_timeout")
_CODE = "trust_error"


@dataclass(frozen=True)
class Issuer:
    """One trusted issuer: its ``iss``, where its keys come from, and what its tokens must meet."""

    issuer: str
    keys: KeySource
    audiences: tuple[str, ...]
    algorithms: frozenset[str]
    max_lifetime: float | None = None
    #: A SPIFFE JWT-SVID issuer: ``aud`` holds exactly one audience and ``sub`` is a SPIFFE ID.
    jwt_svid: bool = False


@dataclass(frozen=True)
class Trust:
    """A loaded trust file."""

    path: str
    issuers: dict[str, Issuer] = field(default_factory=dict)
    leeway: float = DEFAULT_LEEWAY
    #: A content hash of the trust file and the JWKS files it names (16 hex digits, like a
    #: policy revision): served beside the policy revision, so that a change to trust alone is
    #: visible, and a reload that changes neither changes nothing.
    revision: str = ""


def load_trust(path: str | os.PathLike) -> Trust:
    """Read and check a trust file; raises ``PolicyError`` with every problem, positioned."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise PolicyError(Diagnostic(name, 0, 0, f"cannot read the trust file: {exc.strerror or exc}", _CODE)) from None
    text = decode_text(raw, name)
    return parse_trust(text, name, os.path.dirname(os.path.abspath(name)))


def parse_trust(text: str, name: str, folder: str) -> Trust:
    """Trust file text ⇒ ``Trust``; a relative ``jwks`` path is read from ``folder``."""
    source = SourceFile(name, text)
    document = load_yaml_marked(text, source)
    reader = _Reader(source, folder)
    trust = reader.document(document)
    if reader.problems:
        raise PolicyError(reader.problems)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass"))
    for issuer in trust.issuers.values():
        if isinstance(issuer.keys, FileKeys):
            digest.update(issuer.keys.keys.digest.encode())
    return dataclasses.replace(trust, revision=digest.hexdigest()[:16])


class _Reader:
    def __init__(self, source: SourceFile, folder: str):
        self.source = source
        self.folder = folder
        self.problems: list[Diagnostic] = []

    def problem(self, where: tuple[int, int], message: str) -> None:
        self.problems.append(self.source.diagnostic(where[0], where[1], message, _CODE))

    def document(self, doc: object) -> Trust:
        if not isinstance(doc, MarkedMap):
            self.problem((1, 1), "a trust file is a map with `issuers` (a list) and optionally `leeway`")
            return Trust(self.source.name)
        self._unknown_keys(doc, _TOP_KEYS, "the trust file")
        leeway = self._duration(doc, "leeway", DEFAULT_LEEWAY)
        issuers: dict[str, Issuer] = {}
        entries = doc.get("issuers")
        if not isinstance(entries, MarkedList) or not entries:
            where = doc.value_marks.get("issuers", (doc.line, doc.column))
            self.problem(where, "`issuers` must be a non-empty list of issuers")
            return Trust(self.source.name, issuers, leeway or 0)
        for i, entry in enumerate(entries):
            issuer = self.issuer(entry, entries.item_marks[i])
            if issuer is None:
                continue
            if issuer.issuer in issuers:
                self.problem(entry.value_marks["issuer"], f"issuer {issuer.issuer!r} is listed twice")
                continue
            issuers[issuer.issuer] = issuer
        return Trust(self.source.name, issuers, leeway or 0)

    def issuer(self, entry: object, where: tuple[int, int]) -> Issuer | None:
        if not isinstance(entry, MarkedMap):
            self.problem(where, "an issuer is a map with `issuer`, `jwks` and `audiences`")
            return None
        before = len(self.problems)
        self._unknown_keys(entry, _ISSUER_KEYS, "an issuer")
        iss = self._string(entry, "issuer", where)
        audiences = self._strings(entry, "audiences", where, required=True)
        algorithms = self._algorithms(entry)
        max_lifetime = self._duration(entry, "max_lifetime", None)
        jwt_svid = entry.get("jwt_svid", False)
        if type(jwt_svid) is not bool:
            self.problem(entry.value_marks["jwt_svid"], "`jwt_svid` must be true or false")
        timeout = self._duration(entry, "jwks_timeout", DEFAULT_JWKS_TIMEOUT)
        if not timeout or timeout <= 0:
            self.problem(entry.value_marks["jwks_timeout"], "`jwks_timeout` must be more than 0s")
        keys = self._keys(entry, where, timeout or DEFAULT_JWKS_TIMEOUT)
        if len(self.problems) > before or iss is None or keys is None:
            return None
        return Issuer(iss, keys, tuple(audiences), frozenset(algorithms), max_lifetime, bool(jwt_svid))

    # ---- members

    def _unknown_keys(self, node: MarkedMap, known: tuple[str, ...], what: str) -> None:
        for key in node:
            if key not in known:
                self.problem(node.key_marks[key], f"unknown key {key!r} in {what}; expected one of {', '.join(known)}")

    def _string(self, node: MarkedMap, key: str, where: tuple[int, int]) -> str | None:
        value = node.get(key)
        if not isinstance(value, str) or not value:
            self.problem(node.value_marks.get(key, where), f"`{key}` must be a non-empty string")
            return None
        return value

    def _strings(self, node: MarkedMap, key: str, where: tuple[int, int], required: bool) -> list[str]:
        if key not in node:
            if required:
                self.problem(where, f"`{key}` is required (a non-empty list of strings)")
            return []
        value = node[key]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            self.problem(node.value_marks[key], f"`{key}` must be a non-empty list of non-empty strings")
            return []
        return list(value)

    def _algorithms(self, node: MarkedMap) -> tuple[str, ...]:
        if "algorithms" not in node:
            return DEFAULT_ALGORITHMS
        names = self._strings(node, "algorithms", (node.line, node.column), required=True)
        marks = node["algorithms"].item_marks if isinstance(node["algorithms"], MarkedList) else []
        for i, alg in enumerate(names):
            if alg not in ALGORITHMS:
                why = ("pdp never accepts unsigned tokens" if alg.lower() == "none" else
                       "shared-secret (HMAC) algorithms are never accepted: an issuer's public key must "
                       "not be usable as a secret" if alg.upper().startswith("HS") else "not a signature "
                       "algorithm pdp verifies")
                self.problem(marks[i], f"algorithm {alg!r}: {why}; expected some of {', '.join(ALGORITHMS)}")
        return tuple(names)

    def _duration(self, node: MarkedMap, key: str, default: float | None) -> float | None:
        if key not in node:
            return default
        value = node[key]
        try:
            if not isinstance(value, str):
                raise ValueError(f"`{key}` must be a duration such as 30s or 1h")
            return float(parse_duration(value))
        except ValueError as exc:
            self.problem(node.value_marks[key], str(exc))
            return default

    def _keys(self, node: MarkedMap, where: tuple[int, int], timeout: float) -> KeySource | None:
        location = self._string(node, "jwks", where)
        ca = None
        if "jwks_ca" in node:
            ca = self._string(node, "jwks_ca", where)
            if ca is not None:
                ca = os.path.join(self.folder, ca)
        if location is None:
            return None
        mark = node.value_marks["jwks"]
        scheme = urlsplit(location).scheme
        if scheme == "https":
            return UrlKeys(location, timeout=timeout, ca_file=ca)
        if "://" in location:
            self.problem(mark, f"`jwks` is a file or an https URL, not {scheme}://")
            return None
        if ca is not None:
            self.problem(node.value_marks["jwks_ca"], "`jwks_ca` is for a JWKS URL; this `jwks` is a file")
        path = os.path.join(self.folder, location)
        try:
            return FileKeys(path, read_jwks(path))
        except ValueError as exc:
            self.problem(mark, f"{location}: {exc}")
            return None
