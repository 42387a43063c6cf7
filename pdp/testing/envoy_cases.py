"""Envoy-shaped test cases: the ``envoy:`` map of a suite test ⇒ an Envoy ``CheckRequest`` ⇒ the
pdp request ``pdp serve`` would decide, through the server's own mapping
(``pdp.server.envoy_authz.envoy_to_request``), so a suite tests what Envoy sends.

The map names the parts of Envoy's ``AttributeContext`` a policy can see (docs/envoy.md)::

    envoy:
      method: POST
      path: /v1/items/sku-1/reservations?dry_run=false
      host: inventory.acme.internal
      headers: {x-request-id: abc}
      principal: spiffe://acme.prod/ns/warehouse/sa/picker      # source.principal
      context_extensions: {resource_type: inventory, tenant: acme}
      certificate: "-----BEGIN CERTIFICATE-----\\n..."          # source.certificate (PEM)
      source_address: "10.1.2.3:41522"                          # source.address (IP, or IP:port)
      time: "2026-11-27T10:05:00Z"                              # request.time
      jwt: {sub: picker, scp: [inventory:write]}                # jwt_authn's verified payload
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any
from urllib.parse import quote

from .suite import _kind  # one wording of a YAML value's kind in suite errors

#: The keys of an ``envoy:`` map, in the order the docs list them.
ENVOY_KEYS = ("method", "path", "host", "headers", "principal", "context_extensions", "certificate",
              "source_address", "time", "jwt")
_STRINGS = ("method", "path", "host", "principal", "certificate")
_STRING_MAPS = ("headers", "context_extensions")
#: The name under which Envoy's jwt_authn filter stores the payload (``payload_in_metadata``).
JWT_PAYLOAD_NAME = "jwt_payload"


class EnvoyCaseError(ValueError):
    """A bad ``envoy:`` entry: ``key`` names it, and ``name`` the entry inside a map, if any."""

    def __init__(self, key: str, message: str, name: str = "", at_key: bool = False):
        super().__init__(message)
        self.key = key
        self.name = name
        self.message = message
        self.at_key = at_key  # the key itself is wrong (unknown), not its value


def to_check_request(fields: dict[str, Any]):
    """Build the ``CheckRequest`` Envoy would send; raises EnvoyCaseError on a bad entry."""
    from envoy.service.auth.v3 import external_auth_pb2 as ext

    from ..server.envoy_authz import JWT_FILTER

    for key in fields:
        if key not in ENVOY_KEYS:
            raise EnvoyCaseError(key, f"unknown key {key!r} in 'envoy'; expected one of: {', '.join(ENVOY_KEYS)}",
                                 at_key=True)
    for key in _STRINGS:
        if key in fields and not isinstance(fields[key], str):
            raise EnvoyCaseError(key, f"'envoy.{key}' must be a string, got {_kind(fields[key])}")
    for key in _STRING_MAPS:
        value = fields.get(key, {})
        if not isinstance(value, dict):
            raise EnvoyCaseError(key, f"'envoy.{key}' must be a mapping of names to strings, got {_kind(value)}")
        for name, item in value.items():
            if not isinstance(item, str):
                raise EnvoyCaseError(key, f"'envoy.{key}' entry {name!r} must be a string (Envoy sends strings; "
                                          f"quote it), got {_kind(item)}", name)
    request = ext.CheckRequest()
    attrs = request.attributes
    http = attrs.request.http
    http.method = fields.get("method", "")
    http.path = fields.get("path", "")
    http.host = fields.get("host", "")
    for name, value in fields.get("headers", {}).items():
        http.headers[name] = value
    for name, value in fields.get("context_extensions", {}).items():
        attrs.context_extensions[name] = value
    if "principal" in fields:
        attrs.source.principal = fields["principal"]
    if "certificate" in fields:
        attrs.source.certificate = _url_encoded(fields["certificate"])
    if "source_address" in fields:
        ip, port = _address(fields["source_address"])
        attrs.source.address.socket_address.address = ip
        attrs.source.address.socket_address.port_value = port
    if "time" in fields:
        _set_time(attrs.request.time, fields["time"])
    if "jwt" in fields:
        payload = fields["jwt"]
        if not isinstance(payload, dict):
            raise EnvoyCaseError("jwt", f"'envoy.jwt' must be a mapping (the verified JWT payload), "
                                        f"got {_kind(payload)}")
        try:
            attrs.metadata_context.filter_metadata[JWT_FILTER].fields[JWT_PAYLOAD_NAME].struct_value.update(payload)
        except (ValueError, TypeError) as exc:
            raise EnvoyCaseError("jwt", f"'envoy.jwt' cannot be a JWT payload: {exc}") from None
    return request


def _url_encoded(certificate: str) -> str:
    """Envoy sends ``source.certificate`` as URL-encoded PEM; a test gives PEM as it reads.
    Text without whitespace is taken as already encoded."""
    if not certificate.strip():
        raise EnvoyCaseError("certificate", "'envoy.certificate' is empty; give the client certificate's PEM")
    if any(c.isspace() for c in certificate):
        return quote(certificate, safe="")
    return certificate


def _address(value: object) -> tuple[str, int]:
    """``10.1.2.3``, ``10.1.2.3:41522``, ``fd00::1`` or ``[fd00::1]:41522`` ⇒ (IP, port)."""
    if not isinstance(value, str):
        raise EnvoyCaseError("source_address", f"'envoy.source_address' must be a string (an IP, or IP:port), "
                                               f"got {_kind(value)}")
    host, port = value, "0"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if rest else "0")
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise EnvoyCaseError("source_address", f"'envoy.source_address' must be an IP address, or IP:port, "
                                               f"got {value!r}") from None
    return host, number


def _set_time(timestamp, value: object) -> None:
    """``request.time`` from an RFC 3339 string or epoch seconds."""
    try:
        if isinstance(value, str):
            timestamp.FromJsonString(value)
            return
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            timestamp.FromNanoseconds(int(round(value * 1_000_000_000)))
            return
    except ValueError:
        pass
    raise EnvoyCaseError("time", f"'envoy.time' must be an RFC 3339 time (2026-11-27T10:05:00Z) or epoch "
                                 f"seconds, got {value!r}")
