"""``pdp health [--addr TARGET]``: ask a running ``pdp serve`` whether it is serving.

Calls ``grpc.health.v1.Health/Check`` and prints the status. Exit 0 when SERVING, 1 otherwise
(NOT_SERVING while starting or draining, an unknown service, unreachable, timed out), so it
can be a container HEALTHCHECK or a Kubernetes exec probe (for a Unix socket, which gRPC
probes cannot reach).
"""

from __future__ import annotations

import argparse
import sys


EXAMPLE = """example:
  $ pdp health --addr 127.0.0.1:50051
  SERVING
  $ pdp health --addr unix:///var/run/pdp/pdp.sock --service envoy.service.auth.v3.Authorization
  SERVING
"""


def register(sub) -> None:
    p = sub.add_parser("health", help="ask a pdp server's gRPC health service (exit 0 when SERVING)",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", default="127.0.0.1:50051", metavar="TARGET",
                   help="the server: HOST:PORT or unix:///PATH (default 127.0.0.1:50051)")
    p.add_argument("--service", default="", metavar="NAME",
                   help="the service to ask about (default '': the server as a whole)")
    p.add_argument("--timeout", type=_timeout, default=2.0, metavar="SECONDS",
                   help="give up after this long (default 2)")
    p.add_argument("--tls", action="store_true", help="connect with TLS (the system's roots unless --root-ca)")
    p.add_argument("--root-ca", metavar="PEM", help="CA certificates to trust (implies --tls)")
    p.add_argument("--cert", metavar="PEM", help="client certificate, for a server that requires mTLS")
    p.add_argument("--key", metavar="PEM", help="client private key (with --cert)")
    p.set_defaults(run=run)


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600 seconds, got {text}")
    return value


def run(args) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from ..client import Client

    if bool(args.cert) != bool(args.key):
        print("pdp health: error: --cert and --key go together", file=sys.stderr)
        return 2
    tls = bool(args.tls or args.root_ca or args.cert)
    try:
        client = Client(args.addr, tls=tls, root_ca=args.root_ca, cert=args.cert, key=args.key)
    except OSError as exc:
        print(f"pdp health: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    with client:
        try:
            response = health_pb2_grpc.HealthStub(client.channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
        except grpc.RpcError as err:
            print(f"{args.addr}: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(status)
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1
