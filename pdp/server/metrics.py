"""Prometheus metrics (``--metrics-addr``): decisions by result and by rule, latency, request
errors, AuthZEN searches, reloads and the serving revision (and trust file revision),
decision-log drops.

Each ``Metrics`` has its own registry, so several servers in one process (tests) never share
counters. With ``--workers N`` the workers write to a shared multiprocess directory and the
parent process serves the sum (``serve_multiprocess``), with the reloads it counts itself
(``ServerReloads``): the parent reloads for the server, the workers follow.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

#: Latency buckets in seconds: 50 µs to 1 s, dense where a decision's answer time lives.
BUCKETS = (50e-6, 100e-6, 200e-6, 300e-6, 500e-6, 750e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 50e-3, 0.1, 0.25,
           1.0)
RELOADS_HELP = "Policy reloads, by result (ok, rejected, unchanged)"


#: A limited denial's reason carries its key in this annotation (pdp.limits.LIMIT_KEY).
LIMIT_KEY = "limit_key"
#: The reason message of a limit met while its store did not answer.
STORE_DOWN = "failed closed: limit store unavailable"


class Metrics:
    """The counters the server records into. Hot-path methods use pre-bound label children."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter("pdp_decisions", "Decisions made, by API (pdp, envoy) and result (ALLOW, DENY)",
                                 ["api", "decision"], registry=r)
        self.rules = Counter("pdp_rule_reasons", "Decisions in which the rule was among the reasons",
                             ["rule"], registry=r)
        self.latency = Histogram("pdp_request_seconds",
                                 "Time to answer one request in the server (decode, decide, encode), by API",
                                 ["api"], buckets=BUCKETS, registry=r)
        self.errors = Counter("pdp_request_errors",
                              "Requests that got no decision, by API and gRPC status code name",
                              ["api", "code"], registry=r)
        self.searches = Counter("pdp_searches",
                                "AuthZEN searches, by kind (subject, resource, action) and outcome (found: one "
                                "result or more, empty: none, invalid: a 400, failed: a 500)",
                                ["kind", "outcome"], registry=r)
        self.search_latency = Histogram("pdp_search_seconds", "Time to answer one AuthZEN search in the server, "
                                        "by kind", ["kind"], buckets=BUCKETS, registry=r)
        self.reloads = Counter("pdp_reloads", RELOADS_HELP, ["result"], registry=r)
        self.revision = Gauge("pdp_policy_revision", "1 for the revision being served", ["revision"],
                              registry=r, multiprocess_mode="livemax")
        self.trust = Gauge("pdp_trust_revision", "1 for the revision of the --trust file (and the key files it "
                           "names) being served", ["revision"], registry=r, multiprocess_mode="livemax")
        self._backend = Gauge("pdp_backend_info", "1 for the evaluator deciding: compiled (the Cython "
                              "extension) or python (the slower pure-Python fallback)", ["backend"],
                              registry=r, multiprocess_mode="livemax")
        self.log_drops = Counter("pdp_decision_log_dropped",
                                 "Decision log records dropped because the writer fell behind", registry=r)
        self.shadow = Counter("pdp_shadow_decisions",
                              "Requests the --shadow candidate decided too, by outcome against the live decision "
                              "(agree, allow_to_deny, deny_to_allow)", ["outcome"], registry=r)
        self.shadow_drops = Counter("pdp_shadow_dropped",
                                    "Requests not shadowed because the shadow queue was full", registry=r)
        self.limited = Counter("pdp_limited_decisions",
                               "Requests denied by a velocity limit, by limit rule (its budget was empty, or its "
                               "store did not answer)", ["rule"], registry=r)
        self.limit_store_errors = Counter("pdp_limit_store_errors",
                                          "Requests that met a limit while the limit store did not answer in time "
                                          "(denied: failed closed)", registry=r)
        self._limited = {}
        self._decided = {}
        self._rule = {}
        self._latency = {}

    def decided(self, api: str, decision: str, reasons: Iterable, seconds: float) -> None:
        """Count one decision and its reasons' rules, and observe its latency."""
        key = (api, decision)
        child = self._decided.get(key)
        if child is None:
            child = self._decided[key] = self.decisions.labels(api, decision)
        child.inc()
        rule = self._rule
        store_down = False
        for reason in reasons:
            c = rule.get(reason.rule)
            if c is None:
                c = rule[reason.rule] = self.rules.labels(reason.rule)
            c.inc()
            if LIMIT_KEY in reason.annotations:
                store_down |= self._limit(reason)
        if store_down:  # once per request, however many of its limits the store left unanswered
            self.limit_store_errors.inc()
        self.observe(api, seconds)

    def _limit(self, reason) -> bool:
        """Count a limited denial's reason by rule; True when the store did not answer."""
        c = self._limited.get(reason.rule)
        if c is None:
            c = self._limited[reason.rule] = self.limited.labels(reason.rule)
        c.inc()
        return reason.message == STORE_DOWN

    def observe(self, api: str, seconds: float) -> None:
        h = self._latency.get(api)
        if h is None:
            h = self._latency[api] = self.latency.labels(api)
        h.observe(seconds)

    def error(self, api: str, code: str) -> None:
        self.errors.labels(api, code).inc()

    def searched(self, kind: str, outcome: str, seconds: float | None = None) -> None:
        """Count one search; observe its latency when it was answered."""
        self.searches.labels(kind, outcome).inc()
        if seconds is not None:
            self.search_latency.labels(kind).observe(seconds)

    def reloaded(self, result: str) -> None:
        self.reloads.labels(result).inc()

    def serving(self, revision: str, previous: str | None = None) -> None:
        if previous and previous != revision:
            self.revision.labels(previous).set(0)
        self.revision.labels(revision).set(1)

    def trusting(self, revision: str | None, previous: str | None = None) -> None:
        """The trust file's revision being served (nothing without ``--trust``)."""
        if previous and previous != revision:
            self.trust.labels(previous).set(0)
        if revision:
            self.trust.labels(revision).set(1)

    def backend(self, name: str) -> None:
        self._backend.labels(name).set(1)

    def dropped(self, n: int = 1) -> None:
        self.log_drops.inc(n)

    def shadowed(self, outcome: str) -> None:
        self.shadow.labels(outcome).inc()

    def shadow_dropped(self) -> None:
        self.shadow_drops.inc()

    def serve_http(self, address: str):
        """Serve ``/metrics`` on ``host:port``; returns (http server, port)."""
        host, port = split_address(address)
        server, _thread = start_http_server(port, host, registry=self.registry)
        return server, server.server_address[1]


class ServerReloads:
    """``pdp_reloads_total`` of a ``--workers`` server, kept by the parent: it reloads for the
    server (each worker then loads what it accepted), so each reload counts once, not once per
    worker. A collector of plain counts, whatever prometheus_client's multiprocess mode does
    with the parent's own metrics."""

    def __init__(self):
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def searched(self, kind: str, outcome: str, seconds: float | None = None) -> None:
        """Count one search; observe its latency when it was answered."""
        self.searches.labels(kind, outcome).inc()
        if seconds is not None:
            self.search_latency.labels(kind).observe(seconds)

    def reloaded(self, result: str) -> None:
        with self._lock:
            self._counts[result] = self._counts.get(result, 0) + 1

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily("pdp_reloads", RELOADS_HELP, labels=["result"])
        with self._lock:
            for result, count in sorted(self._counts.items()):
                family.add_metric([result], count)
        yield family


def serve_multiprocess(address: str, directory: str, *collectors):
    """Serve the sum of the workers' metrics written under ``directory``, and ``collectors``
    (the parent's own); returns (server, port)."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    for collector in collectors:
        registry.register(collector)
    host, port = split_address(address)
    server, _thread = start_http_server(port, host, registry=registry)
    return server, server.server_address[1]


def mark_dead(pid: int, directory: str) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) ⇒ (host, port); raises ValueError."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV)
