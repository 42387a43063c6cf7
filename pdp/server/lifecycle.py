"""``serve(config)``: load, build, start, then run until SIGTERM/SIGINT and drain.

One process (``--workers 1``) serves itself. With ``--workers N`` a parent process starts N
workers that each bind the same port (SO_REUSEPORT: the kernel spreads connections over
them), forwards SIGTERM/SIGINT/SIGHUP to them, and serves their summed metrics. The parent
also builds and gates every revision, once for the server (``_Published``): it watches the
files, logs and counts each reload once, and hands the revisions it accepts to the workers
as a bundle they load, so that every worker serves what was checked.

Shutdown: health turns NOT_SERVING for every service, new calls are still answered for
``shutdown_delay`` seconds (so load balancers that poll health stop sending), then the
server stops accepting and calls in flight get ``grace`` seconds to finish; exit 0.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.resource_tracker
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .. import extension
from ..bundle import write_bundle
from ..errors import PolicyError
from . import unix
from .app import SERVICES, BindError, build_server
from .decision_log import DecisionLog
from .holder import EngineHolder
from .logs import setup_logging
from .metrics import MULTIPROC_ENV, Metrics, ServerReloads, mark_dead, serve_multiprocess, split_address
from .options import ServerOptions
from ..clock import DEFAULT_MAX_SKEW
from ..limits.once import MAX_ONCE_MARKS
from .reload import BundleSource, ClockBound, PolicySource, Rejected, Reloader, ReloadResult

log = logging.getLogger("pdp.server")


@dataclass(frozen=True)
class ServeConfig:
    """Everything a serving process needs; picklable (it is sent to each worker)."""

    source: PolicySource
    address: str = "127.0.0.1:50051"
    options: ServerOptions = ServerOptions()
    watch: bool = False
    decision_log: str | None = None
    decision_log_queue: int = 10_000
    decision_log_input: bool = True  # each line carries the request as decided (SPEC §11)
    metrics_addr: str | None = None
    grace: float = 10.0
    shutdown_delay: float = 0.0
    workers: int = 1
    log_level: str = "INFO"  # each worker process sets up its logging at this level
    http_address: str | None = None  # AuthZEN over HTTP (SPEC §10), beside gRPC
    shadow: PolicySource | None = None  # --shadow: a candidate set that decides every request too (SPEC §11)
    shadow_queue: int = 10_000
    #: A worker of ``--workers N``: its parent builds, gates, logs and counts each reload once
    #: for the server, and publishes the revisions it accepts as bundles that this worker
    #: loads (``source`` and ``shadow`` are then those bundles).
    follower: bool = False
    # --max-clock-skew: a context.time further than this from the server clock makes `now` an
    # evaluation error (pdp.clock, SPEC §1); a caller must not be able to move the clock. The
    # engines that serve have the bound; the suites that gate a revision run without it.
    max_clock_skew: float = DEFAULT_MAX_SKEW
    # Velocity limits (SPEC §9): None keeps budgets in this process (a --workers parent passes
    # its own store's pdp-parent: URL to its workers); redis://HOST:PORT/DB shares them. Budgets
    # run on the store's clock, never on context.time.
    limits: str | None = None
    limits_timeout: float = 0.05
    # --max-once-marks: DPoP proofs remembered at once by this server's limit store (memory,
    # the --workers parent's, or the shared Redis set).
    max_once_marks: int = MAX_ONCE_MARKS


class Running:
    """A started server and what goes with it; ``stop()`` drains and releases everything."""

    def __init__(self, config: ServeConfig, on_reload: Callable[[ReloadResult], None] | None = None,
                 serve_metrics: bool = True):
        self.config = config
        source = ClockBound(config.source, config.max_clock_skew)
        engine = source.build()  # PolicyError / Rejected: nothing was started yet
        from ..limits import open_store

        self.limits = open_store(config.limits, config.limits_timeout, config.max_once_marks)
        prepare = _warm_search if config.http_address else None
        if prepare is not None:
            prepare(engine)
        self.holder = EngineHolder(engine, self.limits)
        self.metrics = Metrics() if (config.metrics_addr or os.environ.get(MULTIPROC_ENV)) else None
        self.decision_log = None
        if config.decision_log:
            self.decision_log = DecisionLog(config.decision_log, config.decision_log_queue,
                                            on_drop=self.metrics.dropped if self.metrics else None,
                                            include_input=config.decision_log_input)
        holder = self.holder
        token_claims = lambda request: holder.engine.token_claims(request)  # noqa: E731
        if self.decision_log is not None:
            self.decision_log.token_claims = token_claims
        self.shadow = None
        self.shadow_reloader = None
        if config.shadow is not None:
            from .shadow import ShadowLog

            shadow_source = ClockBound(config.shadow, config.max_clock_skew)
            # The candidate looks at the live budgets and never takes a unit (SPEC §11).
            shadow_holder = EngineHolder(shadow_source.build(), self.limits, take=False)
            self.shadow = ShadowLog(shadow_holder, self.decision_log, self.metrics, config.shadow_queue)
            self.shadow.token_claims = token_claims
            self.shadow_reloader = Reloader(shadow_holder, shadow_source, quiet=config.follower,
                                            on_result=None if config.follower else _shadow_reloaded)
            if not config.follower:
                log.info("shadow: every request is decided by the candidate revision %s too", shadow_holder.revision)
        options = replace(config.options, decision_log=self.shadow or self.decision_log, metrics=self.metrics)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self._on_reload = on_reload
        self.reloader = Reloader(self.holder, source, on_result=self._reloaded, prepare=prepare,
                                 quiet=config.follower)
        self.metrics_http = None
        self.metrics_port = None
        self.server = None
        self.http = None
        self.http_port = None
        try:
            # Everything that can fail (binding either port) happens before anything starts,
            # and what was made is released when it does.
            self.server, self.port = build_server(self.holder, config.address, options,
                                                  health_servicer=self.health)
            if config.http_address:
                from .http import HttpServer  # aiohttp is imported only by servers that serve HTTP

                self.http = HttpServer(self.holder, config.http_address, options, grace=config.grace)
                self.http_port = self.http.start()
            if self.metrics is not None and serve_metrics and config.metrics_addr:
                self.metrics_http, self.metrics_port = self.metrics.serve_http(config.metrics_addr)
        except BaseException:
            self._release()
            raise
        self.server.start()
        self.reloader.start()
        if config.watch:
            self.reloader.watch()
        if self.shadow_reloader is not None:
            self.shadow_reloader.start()
            if config.watch:
                self.shadow_reloader.watch()
        if self.metrics is not None:
            self.metrics.serving(engine.revision)
            self.metrics.trusting(engine.trust_revision)
            self.metrics.backend(engine.backend)

    def hangup(self) -> None:
        """SIGHUP: reload the policies and reopen the decision log (logrotate's postrotate)."""
        self.reloader.request()
        if self.shadow_reloader is not None:
            self.shadow_reloader.request()
        if self.decision_log is not None:
            self.decision_log.reopen()

    def _release(self) -> None:
        if self.server is not None:
            self.server.stop(None)
        if self.http is not None:
            self.http.stop()
        if self.metrics_http is not None:
            self.metrics_http.shutdown()
        self._close_logs()
        self.limits.close()

    def _close_logs(self) -> None:
        """Shadow what is queued, then write every line still queued (nothing lost at drain)."""
        if self.shadow is not None:
            self.shadow.close()  # closes the decision log after it
        elif self.decision_log is not None:
            self.decision_log.close()

    def _reloaded(self, result: ReloadResult) -> None:
        if self.metrics is not None:
            if not self.config.follower:  # a follower's parent counts the server's reloads
                self.metrics.reloaded(result.result)
            if result.result == "ok":
                self.metrics.serving(result.revision, result.previous)
                self.metrics.trusting(result.trust, result.previous_trust)
        if self._on_reload is not None:
            self._on_reload(result)

    def describe(self) -> str:
        engine = self.holder.engine
        tls = self.config.options.tls
        mode = "plaintext" if tls is None else ("mTLS" if tls.mutual else "TLS")
        trust = "" if engine.trust_revision is None else f", trust {engine.trust_revision}"
        return (f"serving revision {engine.revision} ({len(engine.rule_ids)} rules, backend={engine.backend}{trust}) "
                f"on {self.where} ({mode}, pid {os.getpid()})")

    @property
    def where(self) -> str:
        """The address served: ``host:port`` with the port bound, or the Unix socket's address."""
        if unix.is_unix(self.config.address):
            return self.config.address
        return _join(split_address(self.config.address)[0], self.port)

    def stop(self, grace: float | None = None, shutdown_delay: float | None = None) -> None:
        grace = self.config.grace if grace is None else grace
        delay = self.config.shutdown_delay if shutdown_delay is None else shutdown_delay
        self.health.enter_graceful_shutdown()  # every service NOT_SERVING, and stays so
        if delay > 0:
            log.info("draining: health is NOT_SERVING; still answering for %.1fs", delay)
            time.sleep(delay)
        log.info("draining: no new calls; %.1fs for calls in flight", grace)
        stopped = self.server.stop(grace)
        if self.http is not None:
            self.http.stop()
        stopped.wait(grace + 5)
        self.reloader.stop()
        if self.shadow_reloader is not None:
            self.shadow_reloader.stop()
        self._close_logs()
        if self.metrics_http is not None:
            self.metrics_http.shutdown()
        self.limits.close()


def _warm_search(engine) -> None:
    """Build the AuthZEN search catalog of a revision before it serves, not in the first search
    request (for an engine from a bundle it parses the embedded sources)."""
    from ..authzen.search import catalog

    catalog(engine)


def _shadow_reloaded(result: ReloadResult) -> None:
    if result.result == "ok":
        log.info("shadow: the candidate is now revision %s", result.revision)
    elif result.result == "rejected":
        log.error("shadow: candidate reload rejected; still shadowing with revision %s", result.revision)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _http_url(config: ServeConfig, port: int) -> str:
    scheme = "https" if config.options.tls is not None else "http"
    return f"{scheme}://{_join(split_address(config.http_address)[0], port)}"


def _install(signals: dict[int, Callable[[], None]]) -> None:
    for signum, action in signals.items():
        signal.signal(signum, lambda _n, _f, action=action: action())


def serve(config: ServeConfig, *, ready: Callable[[Running], None] | None = None,
          stop: threading.Event | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set); returns the exit code.

    Must run on the main thread when ``stop`` is None (it installs signal handlers).
    """
    if config.workers > 1:
        if unix.is_unix(config.address):
            log.error("%s", unix.ONE_PROCESS)
            return 1
        return serve_workers(config)
    stop = stop or threading.Event()
    running = _start(config)
    if running is None:
        return 1
    if threading.current_thread() is threading.main_thread():
        _install({signal.SIGTERM: stop.set, signal.SIGINT: stop.set, signal.SIGHUP: running.hangup})
    warn_if_pure_python(running.holder.engine.backend)
    log.info("%s", running.describe())
    if running.http_port is not None:
        log.info("AuthZEN over HTTP on %s", _http_url(config, running.http_port))
    if running.metrics_port is not None:
        log.info("metrics on http://%s/metrics", _join(split_address(config.metrics_addr)[0], running.metrics_port))
    if ready is not None:
        ready(running)
    while not stop.wait(1.0):
        pass
    log.info("stopping (revision %s)", running.holder.revision)
    running.stop()
    log.info("stopped")
    return 0


def warn_if_pure_python(backend: str) -> None:
    """Serving on the pure-Python evaluator is a deployment mistake worth a warning: it
    decides several times slower than the compiled one (README, "How decisions are made fast")."""
    if backend != "python":
        return
    why = ("PDP_PUREPYTHON=1 is set" if os.environ.get("PDP_PUREPYTHON") == "1"
           else extension.PROBLEMS.get("pdp.runtime._ceval", "the compiled extension is not in use"))
    log.warning("serving on the pure-Python evaluator (%s): decisions are several times slower; "
                "reinstall pdp with a C compiler to build the extension", why)


def _start(config: ServeConfig, **kwargs) -> Running | None:
    try:
        return Running(config, **kwargs)
    except (PolicyError, Rejected) as err:
        _not_served(err)
    except (BindError, OSError, ValueError) as err:
        log.error("%s", err)
    return None


def _not_served(err: Exception) -> None:
    if isinstance(err, PolicyError):
        log.error("cannot load the policies:\n%s", err)
    else:
        log.error("the policies are not served:\n%s", err)


# --------------------------------------------------------------------------------------------
# --workers N


def _worker_main(config: ServeConfig, events) -> None:
    """A worker process: serve ``config`` and report on ``events`` (its own pipe): readiness,
    then the revision each reload left it serving (the parent waits for those)."""
    setup_logging(config.log_level)
    stop = threading.Event()
    _install({signal.SIGTERM: stop.set, signal.SIGINT: stop.set})
    # Started with these blocked (_WorkerEvents.start): one that came meanwhile is handled now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if stop.is_set():  # stopped before it served anything
        raise SystemExit(0)
    sending = threading.Lock()  # the reload thread reports too

    def report(kind: str, text: str) -> None:
        with sending:
            try:
                events.send((kind, os.getpid(), text))
            except (OSError, ValueError):  # the parent is gone: SIGTERM follows
                pass

    def reloaded(result: ReloadResult) -> None:
        report(*(("rejected", result.error) if result.result == "rejected" else ("revision", result.revision)))

    running = _start(config, serve_metrics=False, on_reload=reloaded)
    if running is None:
        report("failed", "")
        raise SystemExit(1)
    _install({signal.SIGTERM: stop.set, signal.SIGINT: stop.set, signal.SIGHUP: running.hangup})
    report("revision", running.holder.revision)  # before "ready": the parent checks it is the latest
    report("ready", running.describe())
    while not stop.wait(1.0):
        pass
    running.stop()
    raise SystemExit(0)


def _reserve(address: str) -> tuple[socket.socket, int]:
    """Bind (without listening) a SO_REUSEPORT socket: picks the port when it is 0, and fails
    early when another program holds it."""
    host, port = split_address(address)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {address}: {exc.strerror}") from None
    return sock, sock.getsockname()[1]


#: What stops a worker: the parent forwards them (a terminal's Ctrl-C reaches them directly).
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

#: A worker that dies is replaced; more than MAX_RESTARTS replacements within RESTART_WINDOW
#: seconds means something is wrong that restarting will not fix, and the parent exits 1.
MAX_RESTARTS = 5
RESTART_WINDOW = 60


class _WorkerEvents:
    """What the workers report to the parent ("ready", "failed"), each over a pipe of its own.

    Not one shared ``multiprocessing.Queue``: its writers share a lock, and a worker killed
    between writing its message and releasing that lock (SIGKILL right after "ready" was read)
    would leave every later worker blocked on it, so no replacement could ever report ready.
    """

    def __init__(self, ctx):
        self._ctx = ctx
        self._readers: list = []

    def start(self, config: ServeConfig, name: str):
        """Start a worker process serving ``config`` that reports here."""
        reader, writer = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_worker_main, args=(config, writer), name=name)
        # A worker inherits this thread's signal mask across exec: it starts with SIGTERM and
        # SIGINT blocked and unblocks them once its handlers are in place (_worker_main). Without
        # that, a stop while it starts up (interpreter, imports) would kill it (exit -15),
        # which the parent must count as a failure. multiprocessing's resource tracker, when it
        # starts, unblocks these signals in the calling thread: it is started first.
        multiprocessing.resource_tracker.ensure_running()
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        writer.close()  # the worker has its own copy; when it dies its pipe reads as ended
        self._readers.append(reader)
        return proc

    def get(self, timeout: float) -> tuple | None:
        """The next event, or None when none came within ``timeout`` seconds."""
        for reader in multiprocessing.connection.wait(self._readers, timeout):
            try:
                return reader.recv()
            except (EOFError, OSError):  # that worker is gone: its pipe says no more
                self._readers.remove(reader)
                reader.close()
        return None


def _log_worker_events(events: _WorkerEvents, loaded: _Loaded) -> list[int]:
    """Log what replacement workers report, and note the revisions workers loaded; returns the
    pids that became ready."""
    ready = []
    while True:
        event = events.get(timeout=0)
        if event is None:
            return ready
        kind, pid, text = event
        if kind == "ready":
            log.info("worker %d: %s", pid, text)
            ready.append(pid)
        elif kind == "revision":
            loaded.report(pid, text, "")
        elif kind == "rejected":
            loaded.report(pid, "", text)
        else:
            log.error("worker %d could not start%s", pid, f": {text}" if text else "")


class _Loaded:
    """What each worker reported loading after a reload, for the parent to wait on."""

    def __init__(self):
        self._changed = threading.Condition()
        self._reports: dict[int, tuple[str, str]] = {}  # pid: (revision, error)

    def report(self, pid: int, revision: str, error: str) -> None:
        with self._changed:
            self._reports[pid] = (revision, error)
            self._changed.notify_all()

    def revision(self, pid: int) -> str:
        with self._changed:
            return self._reports.get(pid, ("", ""))[0]

    def forget(self, pids: list[int]) -> None:
        with self._changed:
            for pid in pids:
                self._reports.pop(pid, None)

    def wait(self, revision: str, live: Callable[[], set[int]], pids: list[int], timeout: float) -> dict[int, str]:
        """Until each of ``pids`` serves ``revision``, failed to load it or is gone; returns
        what went wrong, by pid."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                waiting = [pid for pid in pids if pid in live() and self._reports.get(pid, ("", ""))[0] != revision
                           and not self._reports.get(pid, ("", ""))[1]]
                left = deadline - time.monotonic()
                if not waiting or left <= 0:
                    break
                self._changed.wait(min(left, 0.5))
            failed = {pid: self._reports[pid][1] for pid in pids if self._reports.get(pid, ("", ""))[1]}
            failed.update({pid: f"no answer within {timeout:.0f}s" for pid in waiting})
        return failed


@dataclass
class _Published:
    """One policy set of a ``--workers`` server as the parent keeps it. The parent builds and
    gates every revision once, for the server (so each reload is logged and counted once),
    and publishes the revisions it accepts as a bundle in its private run folder, which the
    workers load on SIGHUP: they serve exactly what the parent checked, without parsing."""

    holder: EngineHolder
    path: Path
    trust: str | None = None  # --trust FILE: the workers read it too (a bundle does not carry it)

    @classmethod
    def first(cls, source: PolicySource, path: Path) -> _Published:
        engine = source.build()  # PolicyError / Rejected: nothing is served
        write_bundle(engine, path)
        return cls(EngineHolder(engine), path, getattr(source, "trust", None))

    def follower_source(self) -> BundleSource:
        return BundleSource(str(self.path), trust=self.trust)

    def publisher(self, workers: Callable[[], set[int]], loaded: _Loaded | None,
                  timeout: float = 60.0) -> Callable:
        """A ``Reloader.prepare`` that publishes a revision to the live workers; with ``loaded``
        it returns when each serves it (so the parent's one log line is true of the server)."""
        def publish(engine) -> None:
            write_bundle(engine, self.path)  # atomically: a worker started now loads it too
            pids = sorted(workers())
            if loaded is not None:
                loaded.forget(pids)
            for pid in pids:
                _hangup(pid)
            if loaded is not None:
                for pid, error in loaded.wait(engine.revision, workers, pids, timeout).items():
                    log.error("worker %d did not load revision %s: %s", pid, engine.revision, error)
        return publish


def _hangup(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:  # it just died: its replacement starts from the latest bundle
        pass


def _not_serving_placeholder(address: str, options: ServerOptions) -> grpc.Server | None:
    """While no worker can answer, the parent answers health on the port with NOT_SERVING
    (SO_REUSEPORT, like the workers); other calls get UNIMPLEMENTED. None if it cannot bind."""
    server = grpc.server(futures.ThreadPoolExecutor(2, thread_name_prefix="pdp-placeholder"),
                         options=[("grpc.so_reuseport", 1)])
    servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ("", *SERVICES):
        servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        port = (server.add_secure_port(address, options.tls.credentials()) if options.tls is not None
                else server.add_insecure_port(address))
    except (RuntimeError, ValueError):  # ValueError: the TLS files do not check out any more
        port = 0
    if port == 0:
        return None
    server.start()
    return server


def serve_workers(config: ServeConfig, *, ready: Callable[[int], None] | None = None,
                  stop: threading.Event | None = None, start_timeout: float = 600.0) -> int:
    """The parent of ``config.workers`` worker processes on one port."""
    stop = stop or threading.Event()
    hup = threading.Event()
    try:
        reservation, port = _reserve(config.address)
    except (BindError, ValueError) as err:
        log.error("%s", err)
        return 1
    host, _ = split_address(config.address)
    http_reservation = http_port = None
    if config.http_address:
        try:
            http_reservation, http_port = _reserve(config.http_address)
        except (BindError, ValueError) as err:
            reservation.close()
            log.error("%s", err)
            return 1
        config = replace(config, http_address=_join(split_address(config.http_address)[0], http_port))
    run_dir = Path(tempfile.mkdtemp(prefix="pdp-run-"))  # private (0700): the published bundles, metrics
    try:
        live = _Published.first(config.source, run_dir / "live.bundle")
        shadow = _Published.first(config.shadow, run_dir / "shadow.bundle") if config.shadow is not None else None
    except Exception as err:  # noqa: BLE001 - PolicyError, Rejected, or a bundle that cannot be written
        reservation.close()
        if http_reservation is not None:
            http_reservation.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(err, (PolicyError, Rejected)):
            _not_served(err)
        else:
            log.error("cannot publish the policies to the workers: %s", err)
        return 1
    metrics_dir = None
    server_reloads = None
    if config.metrics_addr:
        metrics_dir = str(run_dir / "metrics")
        os.mkdir(metrics_dir)
        os.environ[MULTIPROC_ENV] = metrics_dir  # read by each worker's prometheus_client at import
        server_reloads = ServerReloads()
    parent_store = None
    if config.limits is None:
        # One budget per key for the whole server: the workers take units from the parent.
        from ..limits.shared import ParentStore

        parent_store = ParentStore(str(run_dir / "limits.sock"), config.max_once_marks)
    worker_config = replace(config, address=_join(host, port), watch=False, workers=1, follower=True,
                            source=live.follower_source(), shadow=shadow and shadow.follower_source(),
                            options=replace(config.options, reuse_port=True),
                            limits=parent_store.url if parent_store is not None else config.limits)
    ctx = multiprocessing.get_context("spawn")
    events = _WorkerEvents(ctx)
    if threading.current_thread() is threading.main_thread():
        _install({signal.SIGTERM: stop.set, signal.SIGINT: stop.set, signal.SIGHUP: hup.set})
    procs = [events.start(worker_config, f"pdp-worker-{i}") for i in range(config.workers)]
    loaded = _Loaded()
    answering: set[int] = set()  # workers that are ready and alive (a starting one has no SIGHUP handler yet)

    def workers() -> set[int]:
        return {p.pid for p in procs if p.exitcode is None and p.pid in answering}

    def counted(result: ReloadResult) -> None:
        if server_reloads is not None:
            server_reloads.reloaded(result.result)

    reloader = Reloader(live.holder, config.source, on_result=counted, prepare=live.publisher(workers, loaded))
    shadow_reloader = None
    if shadow is not None:
        shadow_reloader = Reloader(shadow.holder, config.shadow, on_result=_shadow_reloaded,
                                   prepare=shadow.publisher(workers, None))
    code = 0
    metrics_http = None
    placeholder = None  # the parent's NOT_SERVING health while no worker answers
    try:
        ready_count = 0
        deadline = time.monotonic() + start_timeout
        while ready_count < len(procs):
            if stop.is_set():  # asked to stop while starting: not a failure
                break
            if time.monotonic() > deadline:
                log.error("the workers did not start within %.0fs", start_timeout)
                code = 1
                break
            event = events.get(timeout=0.5)
            if event is None:
                if any(p.exitcode is not None for p in procs):
                    log.error("a worker exited while starting")
                    code = 1
                    break
                continue
            kind, pid, text = event
            if kind == "revision":
                loaded.report(pid, text, "")
                continue
            if kind != "ready":
                code = 1
                break
            ready_count += 1
            answering.add(pid)
            log.info("worker %d: %s", pid, text)
        reservation.close()
        if http_reservation is not None:
            http_reservation.close()
        if code == 0 and not stop.is_set():
            if metrics_dir is not None:
                metrics_http, mport = serve_multiprocess(config.metrics_addr, metrics_dir, server_reloads)
                log.info("metrics of %d workers on http://%s/metrics", len(procs),
                         _join(split_address(config.metrics_addr)[0], mport))
            for r in (reloader, shadow_reloader):
                if r is not None:
                    r.start()
                    if config.watch:  # the candidate is watched too; SIGHUP reloads both sets
                        r.watch()
            from ..runtime import BACKEND  # what each worker's engine runs on: they share the environment

            warn_if_pure_python(BACKEND)
            trust = live.holder.engine.trust_revision
            log.info("serving on %s with %d workers (backend=%s%s, pid %d)", _join(host, port), len(procs), BACKEND,
                     "" if trust is None else f", trust {trust}", os.getpid())
            if http_port is not None:
                log.info("AuthZEN over HTTP on %s", _http_url(config, http_port))
            if ready is not None:
                ready(port)
            restarts: list[float] = []  # when replacements were started, for the give-up rule
            while not stop.wait(0.5):
                if hup.is_set():  # SIGHUP: the workers reopen their decision logs; the parent reloads
                    hup.clear()
                    for pid in workers():
                        _hangup(pid)
                    for r in (reloader, shadow_reloader):
                        if r is not None:
                            r.request()
                for pid in _log_worker_events(events, loaded):
                    answering.add(pid)
                    if loaded.revision(pid) != live.holder.revision:  # it started from a bundle since replaced
                        _hangup(pid)
                answering.intersection_update(p.pid for p in procs if p.exitcode is None)
                if answering and placeholder is not None:
                    placeholder.stop(None)
                    placeholder = None
                    log.info("a worker answers again: health is back with the workers")
                elif not answering and placeholder is None:
                    placeholder = _not_serving_placeholder(worker_config.address, worker_config.options)
                    log.error("no worker can answer: health is NOT_SERVING on the port until one is back")
                for i, p in enumerate(procs):
                    if p.exitcode is None:
                        continue
                    now = time.monotonic()
                    restarts = [t for t in restarts if now - t < RESTART_WINDOW]
                    if len(restarts) >= MAX_RESTARTS:
                        log.error("worker %d exited with %s; %d workers were restarted in the last %ds: "
                                  "giving up", p.pid, p.exitcode, len(restarts), RESTART_WINDOW)
                        code = 1
                        break
                    # The port keeps answering on the other workers meanwhile (SO_REUSEPORT).
                    log.error("worker %d exited with %s; starting a replacement", p.pid, p.exitcode)
                    if metrics_dir is not None:
                        mark_dead(p.pid, metrics_dir)
                    restarts.append(now)
                    procs[i] = events.start(worker_config, f"pdp-worker-{i}")
                if code:
                    break
    finally:
        if placeholder is not None:
            placeholder.stop(None)
        for p in procs:
            if p.exitcode is None and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)
        limit = time.monotonic() + config.shutdown_delay + config.grace + 15
        for p in procs:
            p.join(max(0.1, limit - time.monotonic()))
            if p.exitcode is None:
                log.error("worker %d did not stop; killing it", p.pid)
                p.kill()
                p.join(5)
            if p.exitcode not in (0, None):
                log.error("worker %d exited with %s while stopping", p.pid, p.exitcode)
                code = 1
            if metrics_dir is not None and p.pid is not None:
                mark_dead(p.pid, metrics_dir)
        for r in (reloader, shadow_reloader):
            if r is not None:
                r.stop()
        if metrics_http is not None:
            metrics_http.shutdown()
        if parent_store is not None:
            parent_store.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    log.info("stopped")
    return code
