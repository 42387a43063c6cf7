"""The gRPC server: pdp.v1.DecisionService, Envoy's ext_authz, health and reflection on one port.

``build_server`` (app.py) makes a server and does not start it; ``serve`` (lifecycle.py) runs
one until SIGTERM/SIGINT and drains it; ``EngineHolder`` (holder.py) is the one place the
serving engine lives, so that a reload swaps it atomically.
"""

from .app import build_server
from .holder import EngineHolder
from .options import ServerOptions, TLSConfig

__all__ = ["EngineHolder", "ServerOptions", "TLSConfig", "build_server"]
