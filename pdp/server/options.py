"""Server settings: limits, TLS and the optional decision log and metrics, as frozen records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily: each pulls in a dependency only some servers need
    from .decision_log import DecisionLog
    from .metrics import Metrics

#: gRPC's own default, kept: a request larger than this is refused with RESOURCE_EXHAUSTED.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Values (scalars, lists and maps, at every depth) one request may carry.
DEFAULT_MAX_ATTRIBUTES = 10_000
#: Requests one CheckBatch may carry.
DEFAULT_MAX_BATCH = 10_000
#: RPC threads. Each open CheckStream holds one for its lifetime (sync gRPC server). More
#: threads than cores cost throughput to GIL contention (bench/GRPC.md: 32 threads served a
#: third fewer calls per second than 8 or 16).
DEFAULT_THREADS = 16
#: What the body of an Envoy 403 may carry (``--envoy-deny-body``): ``reasons`` is SPEC §7.1
#: (each reason's rule id and message); ``rules`` only the rule ids (a message may interpolate
#: request values, or tell the caller more about the policies than it should learn); ``none``
#: no body at all.
ENVOY_DENY_BODIES = ("reasons", "rules", "none")
#: RPCs in progress beyond which new ones get RESOURCE_EXHAUSTED instead of queueing.
DEFAULT_MAX_CONCURRENT_RPCS = 1024


@dataclass(frozen=True)
class TLSConfig:
    """PEM files. With ``client_ca`` every client must present a certificate it signed (mTLS).
    The files are read again when they change (certificate rotation)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self):
        """Server credentials that pick up rewritten files on new connections (pdp.server.tls);
        raises ValueError when the files do not make a certificate and its key."""
        from .tls import CertificateFiles

        return CertificateFiles(self.cert, self.key, self.client_ca).credentials()

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None


@dataclass(frozen=True)
class ServerOptions:
    """Everything ``build_server`` needs besides the engine and the address.

    Attributes:
        max_message_bytes: the largest request message accepted (and answer sent).
        max_attributes: the most values one request may carry, counting every scalar, list
            and map at any depth (a CheckBatch item counts on its own).
        max_batch: the most requests one CheckBatch may carry.
        threads: RPC worker threads.
        max_concurrent_rpcs: beyond this, new RPCs are refused with RESOURCE_EXHAUSTED.
        reuse_port: let other processes bind the same port (``--workers``); off otherwise, so
            that a port already in use is an error instead of a silent second listener.
        tls: serve TLS (and mTLS with ``client_ca``) instead of plaintext.
        envoy_deny_body: what the body of an Envoy 403 carries: ``reasons`` (SPEC §7.1: rule
            ids and messages), ``rules`` (rule ids only) or ``none``.
        decision_log: where decisions are logged, if anywhere.
        metrics: Prometheus metrics to record into, if any.
    """

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_attributes: int = DEFAULT_MAX_ATTRIBUTES
    max_batch: int = DEFAULT_MAX_BATCH
    threads: int = DEFAULT_THREADS
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS
    reuse_port: bool = False
    tls: TLSConfig | None = None
    envoy_deny_body: str = "reasons"
    decision_log: DecisionLog | None = field(default=None, compare=False)
    metrics: Metrics | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.envoy_deny_body not in ENVOY_DENY_BODIES:
            raise ValueError(f"envoy_deny_body must be one of {', '.join(ENVOY_DENY_BODIES)}, "
                             f"got {self.envoy_deny_body!r}")
