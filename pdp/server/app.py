"""``build_server(holder, address)`` ⇒ ``(server, port)``: every service on one port, not started.

Registered: ``pdp.v1.DecisionService``, Envoy's ``envoy.service.auth.v3.Authorization``,
``grpc.health.v1.Health`` (SERVING for the server and each service, since the engine is
already loaded) and server reflection.

The server is gRPC's synchronous (thread pool) server; bench/GRPC.md has the measurements
that chose it over ``grpc.aio``.
"""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..engine import Engine
from .decision_service import SERVICE as DECISION_SERVICE
from .decision_service import DecisionService
from .envoy_authz import SERVICE as ENVOY_SERVICE
from .envoy_authz import EnvoyAuthorization
from .holder import EngineHolder
from . import unix
from .options import ServerOptions

SERVICES = (DECISION_SERVICE, ENVOY_SERVICE)


class BindError(OSError):
    """The address cannot be bound (in use, or not a local address)."""


def build_server(holder: EngineHolder | Engine, address: str, options: ServerOptions | None = None, *,
                 health_servicer: health.HealthServicer | None = None) -> tuple[grpc.Server, int]:
    """Build a server for ``holder``'s engine on ``address``: ``host:port`` (port 0 picks a free
    one), or a Unix domain socket (``unix:PATH``, ``unix-abstract:NAME``; pdp.server.unix).

    Args:
        holder: the EngineHolder to serve from (an Engine is wrapped in one).
        address: where to listen; TLS when ``options.tls`` is set, plaintext otherwise.
        options: limits, TLS, decision log and metrics.
        health_servicer: the health service to register (lifecycle passes its own, to flip it
            to NOT_SERVING when draining); a new one by default.

    Returns:
        The server, not started, and the port it is bound to (1 for a Unix socket).

    Raises:
        BindError: the address cannot be bound.
    """
    if isinstance(holder, Engine):
        holder = EngineHolder(holder)
    options = options or ServerOptions()
    grpc_options = [
        ("grpc.max_receive_message_length", options.max_message_bytes),
        ("grpc.max_send_message_length", -1),  # an answer is bounded by its request
        ("grpc.so_reuseport", 1 if options.reuse_port else 0),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(options.threads, thread_name_prefix="pdp-rpc"),
                         options=grpc_options, maximum_concurrent_rpcs=options.max_concurrent_rpcs)
    server.add_generic_rpc_handlers((DecisionService(holder, options).handler(),))
    EnvoyAuthorization(holder, options).register(server)

    if health_servicer is None:
        health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    reflection.enable_server_reflection(
        (*SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)

    try:
        unix.prepare(address)
    except OSError as exc:
        raise BindError(str(exc)) from None
    try:
        with unix.socket_mode(address):
            if options.tls is not None:
                port = server.add_secure_port(address, options.tls.credentials())
            else:
                port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc raises RuntimeError("Failed to bind to address ...")
        raise BindError(f"cannot listen on {address}: {exc}") from None
    if port == 0:
        raise BindError(f"cannot listen on {address} (in use, or not an address of this machine)")
    return server, port
