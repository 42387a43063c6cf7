"""``pdp serve PATH...``: serve decisions over gRPC until SIGTERM/SIGINT, then drain.

One port serves ``pdp.v1.DecisionService`` (Check, CheckBatch, CheckStream), Envoy's
``envoy.service.auth.v3.Authorization/Check``, ``grpc.health.v1.Health`` and server
reflection; with ``--http-addr`` another port serves the AuthZEN Authorization API over HTTP
(docs/authzen.md). Exit 0 after a clean drain, 1 when the policies do not load (or fail their own
suites) or the address cannot be bound, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..limits.once import MAX_ONCE_MARKS
from .args import duration, percent, positive

EXAMPLE = """example:
  $ pdp serve policies/ --addr 127.0.0.1:50051 --watch
  2026-11-27 10:00:00 pdp[4242] INFO serving revision 14723ea29afcadc2 (12 rules, backend=compiled) on 127.0.0.1:50051 (plaintext, pid 4242)
  $ grpcurl -plaintext -d @ 127.0.0.1:50051 pdp.v1.DecisionService/Check <<'EOF'
  {"identity": {"type": {"string_value": "workload"}, "id": {"string_value": "billing"}},
   "action": {"name": {"string_value": "charge"}}, "resource": {"type": {"string_value": "payment"}}}
  EOF
  $ kill -HUP $(pgrep -f 'pdp serve')      # reload now (--watch reloads on file changes)
  $ pdp serve policies/ --addr unix:/run/pdp/pdp.sock   # for a sidecar: a Unix socket, mode 0660

A reload builds the new policy set in the background and runs its *_test.yaml suites; a set
that fails to load, fails a test or (with --min-coverage) is covered too little by them is
rejected and the running revision keeps serving.
With --client-ca (mTLS) the client certificate's SPIFFE ID is context.peer.spiffe_id.
With --trust FILE a token in context.token is verified first: one that does not verify is
DENY (pdp.token: token rejected: WHY) before any rule.
The TLS files are read again when they change (certificate rotation), for new connections.
"""


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve decisions over gRPC (pdp.v1, Envoy ext_authz, health, reflection)",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    # PATH... or --bundle FILE: policy_source() below checks that exactly one is given.
    p.add_argument("paths", nargs="*", metavar="PATH", help="policy and data files or folders")
    p.add_argument("--bundle", metavar="FILE",
                   help="serve a compiled bundle (pdp build) instead of PATHs: starts without parsing")
    p.add_argument("--verify-key", metavar="PEM",
                   help="with --bundle: serve only a bundle signed (pdp build --sign) by the private key of this "
                        "Ed25519 public key; an unsigned or altered bundle is refused, also on reload")
    p.add_argument("--addr", default="127.0.0.1:50051", metavar="HOST:PORT",
                   help="where to listen (default 127.0.0.1:50051; port 0 picks a free port), or a Unix "
                        "domain socket: unix:/PATH (mode 0660; one process) or unix-abstract:NAME")
    p.add_argument("--http-addr", metavar="HOST:PORT",
                   help="also serve the AuthZEN Authorization API 1.0 over HTTP here (same policies, TLS, "
                        "decision log and metrics; README: AuthZEN over HTTP)")
    p.add_argument("--trust", metavar="FILE",
                   help="verify each request's bearer token (context.token; Envoy: authorization: Bearer) "
                        "against the issuers this trust file names (docs/tokens.md); policies read it as the "
                        "root `token`; re-read with the policies on every reload")
    p.add_argument("--watch", action="store_true",
                   help="reload when a policy, data or suite file changes (SIGHUP always reloads)")
    p.add_argument("--skip-tests", action="store_true",
                   help="serve a policy set without running its *_test.yaml suites first (also on reload)")
    p.add_argument("--min-coverage", type=percent, metavar="PCT",
                   help="refuse a policy set whose own *_test.yaml suites make less than PCT%% of its rules apply "
                        "(the coverage of pdp test --coverage): at start (exit 1) and on every reload (rejected; "
                        "the running revision keeps serving)")
    p.add_argument("--workers", type=positive, default=None, metavar="N",
                   help="processes sharing the port (SO_REUSEPORT); default: the CPUs this process may use (its "
                        "affinity, capped by the container's cgroup CPU quota, rounded up). 1 serves in this process")
    p.add_argument("--threads", type=positive, default=16, metavar="N",
                   help="RPC threads per process (default 16); each open CheckStream holds one, so give more "
                        "than the streams you expect")
    p.add_argument("--grace", type=_seconds, default=10.0, metavar="SECONDS",
                   help="on SIGTERM/SIGINT, how long calls in flight may take to finish (default 10)")
    p.add_argument("--shutdown-delay", type=_seconds, default=0.0, metavar="SECONDS",
                   help="on SIGTERM/SIGINT, keep answering this long after health turns NOT_SERVING (default 0)")
    p.add_argument("--decision-log", metavar="FILE", help="append one JSON line per decision to FILE ('-': stdout)")
    p.add_argument("--decision-log-queue", type=positive, default=10_000, metavar="N",
                   help="decisions waiting to be logged beyond which new ones are dropped and counted")
    p.add_argument("--decision-log-input", choices=["on", "off"], default="on",
                   help="write each request as decided in its log line as 'input' (default on; secrets "
                        "redacted), which pdp replay and pdp review need")
    p.add_argument("--shadow", nargs="+", metavar="CANDIDATE",
                   help="decide every request with these candidate policy files or folders too, off the answer's "
                        "path: the log line gets 'shadow', metrics count pdp_shadow_decisions_total{outcome}; the "
                        "candidate reloads like the live set (put --shadow after the PATHs)")
    p.add_argument("--shadow-queue", type=positive, default=10_000, metavar="N",
                   help="requests waiting to be shadowed beyond which new ones are not (counted in "
                        "pdp_shadow_dropped_total)")
    p.add_argument("--max-clock-skew", type=duration, default=30.0, metavar="DURATION",
                   help="a request's context.time further than this from the server clock, either way, makes "
                        "`now` an evaluation error: forbids that read it fail closed (default 30s; a duration as "
                        "policies write it: 30s, 2m, 1m30s)")
    p.add_argument("--limits", metavar="URL",
                   help="where limit rules keep their budgets: redis://HOST:PORT/DB shares them with every pdp "
                        "server using that Redis; default: in memory, one budget per key for this server and "
                        "all its workers (README: Velocity limits)")
    p.add_argument("--limits-timeout", type=_deadline, default=0.05, metavar="DURATION",
                   help="how long the limit store may take to answer before the requests that meet a limit "
                        "are denied (failed closed; default 50ms)")
    p.add_argument("--max-once-marks", type=positive, default=MAX_ONCE_MARKS, metavar="N",
                   help="most DPoP proofs remembered at once to refuse replays, per store (this server, its "
                        "--workers parent, or the shared Redis); when every one is still fresh a new proof is "
                        "refused, never an old one forgotten (default 100000)")
    p.add_argument("--metrics-addr", metavar="HOST:PORT", help="serve Prometheus metrics at http://HOST:PORT/metrics")
    p.add_argument("--tls-cert", metavar="PEM", help="server certificate chain (with --tls-key): serve TLS only")
    p.add_argument("--tls-key", metavar="PEM", help="server private key")
    p.add_argument("--client-ca", metavar="PEM",
                   help="require client certificates signed by this CA (mTLS); needs --tls-cert")
    p.add_argument("--max-message-bytes", type=positive, default=4 * 1024 * 1024, metavar="N",
                   help="largest request message (default 4 MiB)")
    p.add_argument("--max-attributes", type=positive, default=10_000, metavar="N",
                   help="most values in one request, at any depth (default 10000)")
    p.add_argument("--max-batch", type=positive, default=10_000, metavar="N",
                   help="most requests in one CheckBatch (default 10000)")
    # pdp.server.options.ENVOY_DENY_BODIES (not imported: it would load grpc for every command)
    p.add_argument("--envoy-deny-body", choices=["reasons", "rules", "none"], default="reasons",
                   help="what the body of an Envoy ext_authz 403 carries: the reasons' rule ids and messages "
                        "(default), the rule ids only, or nothing")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="server log level (logs go to stderr)")
    p.set_defaults(run=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds, got {text}")
    return value


def _deadline(text: str) -> float:
    """A deadline: a duration (``50ms``, ``1s``) or a number of seconds."""
    from ..syntax.literals import parse_duration

    try:
        value = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (write 50ms, 1s, ...)") from None
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 60s, got {text}")
    return value


class UsageError(Exception):
    pass


def policy_source(args):
    """The ``PolicySource`` that ``args`` name (pdp.server.reload).

    PATH... (with their suites as a gate) or ``--bundle FILE``; everything after this function
    is source-agnostic.
    """
    from ..server.reload import BundleSource, PathSource

    trust = str(args.trust) if args.trust else None
    if trust is not None and not Path(trust).is_file():
        raise UsageError(f"--trust: no such file: {trust}")
    if args.bundle:
        if args.paths:
            raise UsageError("give PATHs or --bundle FILE, not both")
        if args.min_coverage is not None:
            raise UsageError("--min-coverage is measured by the suites beside the policies; a bundle carries none "
                             "(gate with pdp test --min-coverage before pdp build)")
        if args.verify_key:
            from .. import signing

            try:
                signing.load_public_key(args.verify_key)
            except signing.SigningError as err:
                raise UsageError(f"--verify-key: {err}") from None
        return BundleSource(str(args.bundle), args.verify_key, trust)
    if args.verify_key:
        raise UsageError("--verify-key checks the signature of a bundle: give it with --bundle FILE")
    if not args.paths:
        raise UsageError("give at least one PATH (policy and data files or folders), or --bundle FILE")
    if args.min_coverage is not None and args.skip_tests:
        raise UsageError("--min-coverage is measured by running the suites: it cannot go with --skip-tests")
    return PathSource(tuple(str(p) for p in args.paths), run_suites=not args.skip_tests,
                      min_coverage=args.min_coverage, trust=trust)


def server_options(args):
    from ..server.options import ServerOptions, TLSConfig

    tls = None
    if args.tls_cert or args.tls_key or args.client_ca:
        if not (args.tls_cert and args.tls_key):
            raise UsageError("--tls-cert and --tls-key go together (and --client-ca needs them)")
        for name in ("tls_cert", "tls_key", "client_ca"):
            value = getattr(args, name)
            if value and not Path(value).is_file():
                raise UsageError(f"--{name.replace('_', '-')}: no such file: {value}")
        tls = TLSConfig(Path(args.tls_cert), Path(args.tls_key), Path(args.client_ca) if args.client_ca else None)
    return ServerOptions(max_message_bytes=args.max_message_bytes, max_attributes=args.max_attributes,
                         max_batch=args.max_batch, threads=args.threads, tls=tls,
                         envoy_deny_body=args.envoy_deny_body)


def run(args) -> int:
    from ..server.cpus import cpu_count
    from ..server.lifecycle import ServeConfig, serve
    from ..server.logs import setup_logging
    from ..server.metrics import split_address
    from ..server.unix import ONE_PROCESS, is_unix

    try:
        source = policy_source(args)
        shadow = None
        if args.shadow:
            from ..server.reload import PathSource

            shadow = PathSource(tuple(str(p) for p in args.shadow), run_suites=not args.skip_tests,
                                trust=str(args.trust) if args.trust else None)
        options = server_options(args)
        workers = args.workers
        if is_unix(args.addr):
            if (workers or 1) > 1:
                raise UsageError(f"--workers {workers}: {ONE_PROCESS}")
            workers = 1
        if args.limits is not None and not args.limits.startswith(("redis://", "rediss://", "memory")):
            raise UsageError(f"--limits {args.limits}: expected redis://HOST:PORT/DB")
        for flag, value in (("--addr", args.addr), ("--metrics-addr", args.metrics_addr),
                            ("--http-addr", args.http_addr)):
            if value is not None and not (flag == "--addr" and is_unix(value)):
                try:
                    split_address(value)
                except ValueError as err:
                    raise UsageError(f"{flag}: {err}") from None
    except UsageError as err:
        print(f"pdp serve: error: {err}", file=sys.stderr)
        return 2
    setup_logging(args.log_level)
    config = ServeConfig(source=source, address=args.addr, options=options, watch=args.watch,
                         decision_log=args.decision_log, decision_log_queue=args.decision_log_queue,
                         decision_log_input=args.decision_log_input == "on",
                         metrics_addr=args.metrics_addr, grace=args.grace, shutdown_delay=args.shutdown_delay,
                         workers=workers or cpu_count(), log_level=args.log_level,
                         http_address=args.http_addr, shadow=shadow, shadow_queue=args.shadow_queue,
                         max_clock_skew=args.max_clock_skew,
                         limits=None if args.limits == "memory" else args.limits,
                         limits_timeout=args.limits_timeout, max_once_marks=args.max_once_marks)
    return serve(config)
