"""Pure mappings the servicers use: Decision ⇒ CheckResponse (``pdp.wire.decision_to_pb``, the
one definition), the mTLS peer ⇒ ``context.peer``, and the per-request limits. No server state;
unit-testable without a server.
"""

from __future__ import annotations

from typing import Any

from ..errors import RequestError
from ..tokens.binding import CNF_CERTIFICATE as CERTIFICATE_THUMBPRINT
from ..tokens.binding import certificate_thumbprint
from ..wire import decision_to_pb

__all__ = ["Decoded", "check_attribute_count", "count_values", "decision_to_pb", "deserializer",
           "peer_attributes", "with_peer"]

#: ``context.peer`` belongs to the server: it is filled from the verified client certificate,
#: and a request that sets it itself is refused (a policy must be able to trust it).
PEER_KEY = "peer"


class Decoded:
    """What the request deserializer hands the servicer: the message, or why there is none,
    and the size on the wire (the attribute-count check needs it)."""

    __slots__ = ("error", "msg", "size")

    def __init__(self, msg: Any, size: int, error: str = ""):
        self.msg = msg
        self.size = size
        self.error = error


def deserializer(message_type):
    """A request deserializer that never raises: bytes that do not parse as ``message_type``
    become a ``Decoded`` with ``error`` set, which the servicer answers with INVALID_ARGUMENT
    (gRPC itself would answer INTERNAL)."""
    parse = message_type.FromString
    name = message_type.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Decoded:
        try:
            return Decoded(parse(data), len(data))
        except Exception:  # DecodeError, or upb's recursion limit
            return Decoded(None, len(data), f"the message is not a valid {name} (or nests more than "
                                            "100 protobuf levels)")

    return deserialize


def count_values(value: Any, limit: int) -> int:
    """How many values ``value`` holds (itself included, at any depth), stopping early once
    the count passes ``limit``.

    >>> count_values({"a": [1, 2, {"b": True}], "c": "x"}, 100)
    7
    """
    stack = [value]
    count = 0
    while stack:
        x = stack.pop()
        count += 1
        if count > limit:
            return count
        t = type(x)
        if t is dict:
            stack.extend(x.values())
        elif t is list:
            stack.extend(x)
    return count


def check_attribute_count(request: dict, size: int, limit: int) -> None:
    """Raise ``RequestError`` when ``request`` carries more than ``limit`` values.

    Every value costs at least one byte on the wire, so a request of at most ``limit``
    bytes cannot exceed the limit and is not walked: the common case costs nothing.
    """
    if size <= limit:
        return
    n = count_values(request, limit + 1) - 1  # the request object itself is not an attribute
    if n > limit:
        raise RequestError("", f"more than {limit} attribute values in one request (the server's limit)")


def peer_attributes(auth_context: dict) -> dict | None:
    """``context.peer`` for a caller that presented a verified client certificate, else None.

    ``spiffe_id`` is the certificate's SPIFFE ID (its one ``spiffe://`` URI SAN, as gRPC
    reports it); ``uri_sans`` every URI SAN, ``dns_sans`` every DNS SAN, and ``common_name``
    the subject CN, each when present; ``x5t#S256`` the certificate's SHA-256 thumbprint
    (what a certificate-bound token names, RFC 8705).
    """
    def texts(key: str) -> list[str]:
        return [v.decode("utf-8", "replace") for v in auth_context.get(key, ())]

    pem = auth_context.get("x509_pem_cert")
    if not pem:
        return None
    peer: dict[str, Any] = {"authenticated": True}
    try:  # what a certificate-bound token's cnf names (RFC 8705; SPEC §8)
        peer[CERTIFICATE_THUMBPRINT] = certificate_thumbprint(pem[0])
    except ValueError:
        pass  # gRPC verified it: cannot happen; without it, bound tokens are refused
    spiffe = texts("peer_spiffe_id")
    uris = texts("x509_uri") or [u for u in texts("x509_subject_alternative_name") if "://" in u]
    if not spiffe:
        spiffe = [u for u in uris if u.startswith("spiffe://")]
    if len(spiffe) == 1:  # a certificate with several SPIFFE IDs has none (SPIFFE X.509-SVID)
        peer["spiffe_id"] = spiffe[0]
    if uris:
        peer["uri_sans"] = uris
    dns = texts("x509_dns")
    if dns:
        peer["dns_sans"] = dns
    cn = texts("x509_common_name")
    if cn:
        peer["common_name"] = cn[0]
    return peer


def with_peer(request: dict, peer: dict | None) -> dict:
    """Refuse a request that sets ``context.peer`` itself; add the server's, when there is one.

    A ``context`` that is not a map is left alone: the engine reports it with its path.
    """
    context = request.get("context")
    if type(context) is dict:
        if PEER_KEY in context:
            raise RequestError("context.peer", "is set by the server from the caller's verified client "
                                               "certificate; a request may not set it")
        if peer is not None:
            context[PEER_KEY] = peer
    elif context is None and peer is not None:
        request["context"] = {PEER_KEY: peer}
    return request
