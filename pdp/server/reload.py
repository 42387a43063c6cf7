"""Hot reload: build a new engine in the background, gate it, and swap it in atomically.

A ``PolicySource`` says where policies come from and how to build an engine from them;
``Reloader`` runs builds on its own thread, one at a time, when asked (``--watch`` file
changes, SIGHUP, or ``request()``). A set that fails to load, fails its own
``*_test.yaml`` suites, or is covered by them less than ``--min-coverage`` asks, is
rejected: the previous revision keeps serving and the error is logged. Requests in flight finish on the engine they started with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..engine import Engine, load
from ..errors import PolicyError
from ..tokens import load_trust
from ..tokens.keys import FileKeys
from .holder import EngineHolder

log = logging.getLogger("pdp.server")

#: File kinds whose changes trigger a reload (policies, data, suites).
WATCHED_SUFFIXES = (".pdl", ".yaml", ".yml", ".json")
#: A mounted Kubernetes ConfigMap or Secret: kubelet writes each update to a new hidden
#: timestamped folder and swaps this symlink to it (the visible files are symlinks through
#: it), so the swap is the one change to see there.
KUBERNETES_DATA_LINK = "..data"


class Rejected(Exception):
    """A policy set that loaded but may not serve: its own suites fail, or cover too few rules.
    ``str()`` says why."""


class PolicySource(Protocol):
    """Where a server's policies come from. ``pdp serve PATH...`` uses ``PathSource``; other
    sources (a signed bundle, issue 3) implement the same two members and plug into
    ``pdp.cli.serve.policy_source``. Must be picklable: ``--workers`` sends it to each worker."""

    def build(self) -> Engine:
        """A new engine from the current content; raises PolicyError or Rejected."""

    def watch_paths(self) -> Sequence[Path]:
        """Files or folders whose changes should trigger a reload."""


@dataclass(frozen=True)
class PathSource:
    """Policy and data files or folders, as ``pdp.load`` reads them.

    With ``run_suites`` (the default) the ``*_test.yaml`` suites found under the same paths
    must all pass (``pdp.testing``, as ``pdp test`` runs them) for the set to be accepted;
    with ``min_coverage`` (a percentage, ``--min-coverage``) they must also make at least that
    share of the rules apply, as ``pdp test --coverage`` counts it.
    """

    paths: tuple[str, ...]
    run_suites: bool = True
    min_coverage: float | None = None
    trust: str | None = None  # --trust FILE (SPEC §8): read again on every reload

    def build(self) -> Engine:
        if not self.run_suites:
            return load(list(self.paths), trust=self.trust)
        from ..testing import Tester  # the runner of `pdp test`

        tester = Tester.load(self.paths, trust=self.trust)
        suites = tester.load_suites()  # a broken suite is a PolicyError: rejected too
        result = tester.run(suites) if suites else None
        if result is not None and result.failed:
            first = result.failures[0]
            raise Rejected(f"the policies fail their own tests: {result.failed} of {len(result.results)} policy tests "
                           f"failed; first: "
                           f"{first.case.id}: {'; '.join(first.problems)}")
        if self.min_coverage is not None:
            coverage = result.coverage if result is not None else tester.coverage([])
            if coverage.percent < self.min_coverage:
                untested = [r.rule.id for r in coverage.rules if not r.covered]
                shown = ", ".join(untested[:10]) + (f" and {len(untested) - 10} more" if len(untested) > 10 else "")
                suites_found = (f"{len(suites)} suite{'s' if len(suites) > 1 else ''}" if suites
                                else "no *_test.yaml suites")
                raise Rejected(f"the rule coverage by the policies' own suites is {coverage.percent:.1f}% ({coverage.covered} of "
                               f"{coverage.total} rules applied in some test, {suites_found}), below the "
                               f"minimum of {self.min_coverage:g}% (--min-coverage); no test makes these "
                               f"apply: {shown}")
        return tester.engine

    def watch_paths(self) -> Sequence[Path]:
        return [Path(p) for p in self.paths] + trust_files(self.trust)

    def describe(self) -> str:
        return " ".join(self.paths)


@dataclass(frozen=True)
class BundleSource:
    """A compiled bundle (``pdp build``): starts without parsing; a reload reads the file again.

    A bundle carries no test suites of its own to gate on: it was built from a checked set
    (``pdp build`` runs after ``pdp test`` in a pipeline), so it is accepted when it decodes
    (and, with ``verify_key``, the path of an Ed25519 public key, when that key verifies its
    signature).
    """

    path: str
    verify_key: str | None = None
    trust: str | None = None  # --trust FILE (SPEC §8): read again on every reload

    def build(self) -> Engine:
        from ..bundle import load_bundle

        return load_bundle(self.path, verify_key=self.verify_key, trust=self.trust)

    def watch_paths(self) -> Sequence[Path]:
        return [Path(self.path)] + trust_files(self.trust)

    def describe(self) -> str:
        return f"--bundle {self.path}"


def trust_files(trust: str | None) -> list[Path]:
    """The trust file and the JWKS files it names: a change to any of them reloads (a key
    rotation published as a new JWKS file takes effect without a signal)."""
    if trust is None:
        return []
    files = [Path(trust)]
    try:
        loaded = load_trust(trust)
    except PolicyError:
        return files  # the reload reports it; the file itself is still watched
    files.extend(Path(issuer.keys.path) for issuer in loaded.issuers.values() if isinstance(issuer.keys, FileKeys))
    return files


@dataclass(frozen=True)
class ClockBound:
    """``source``, whose engines bound ``context.time`` to within ``max_clock_skew`` seconds of
    the server clock (pdp.clock). Its suites still run on the unbounded engine, as ``pdp test``
    runs them; the bounded copy is what serves."""

    source: PolicySource
    max_clock_skew: float

    def build(self) -> Engine:
        return self.source.build().with_max_clock_skew(self.max_clock_skew)

    def watch_paths(self) -> Sequence[Path]:
        return self.source.watch_paths()


@dataclass
class ReloadResult:
    """What one reload did: ``result`` is ``ok``, ``unchanged`` or ``rejected``; ``trust`` and
    ``previous_trust`` are the trust file's revisions (None without ``--trust``)."""

    result: str
    revision: str
    previous: str
    error: str = ""
    seconds: float = 0.0
    trust: str | None = None
    previous_trust: str | None = None

    def trust_note(self) -> str:
        """``; trust T (was U)`` for a log line, or nothing without a trust file."""
        if self.trust is None and self.previous_trust is None:
            return ""
        if self.trust == self.previous_trust:
            return f"; trust {self.trust}"
        return f"; trust {self.trust} (was {self.previous_trust})"


@dataclass
class Reloader:
    """Runs reloads of ``source`` into ``holder`` on a background thread.

    ``request()`` is cheap and safe from a signal handler: requests made while a build runs
    coalesce into one more build after it, so the newest content always gets built.
    """

    holder: EngineHolder
    source: PolicySource
    on_result: Callable[[ReloadResult], None] | None = None
    #: Runs on a new revision before it is swapped in (an exception rejects it): warming what
    #: requests would otherwise build, or publishing it to the workers of ``--workers``.
    prepare: Callable[[Engine], None] | None = None
    #: A worker that follows its parent's reloads: the parent logs each reload of the server
    #: once, so this one logs only what went wrong.
    quiet: bool = False
    _wanted: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _catch_up: bool = False  # the next reload is the watcher's start-up check: no "no change" log

    def start(self) -> Reloader:
        t = threading.Thread(target=self._loop, name="pdp-reload", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def request(self) -> None:
        """Ask for a reload (coalesced)."""
        self._wanted.set()

    def reload_now(self) -> ReloadResult:
        """Build, gate and swap now, on the calling thread (one reload at a time)."""
        with self._lock:
            started = time.monotonic()
            previous = self.holder.revision
            previous_trust = self.holder.engine.trust_revision
            try:
                engine = self.source.build()
            except (PolicyError, Rejected) as err:
                result = ReloadResult("rejected", previous, previous, str(err))
            except Exception as err:  # a bug must not take the server down: keep serving
                log.exception("reload: unexpected error")
                result = ReloadResult("rejected", previous, previous, f"internal error: {err!r}")
            else:
                # A new trust file (or key file) alone is a change to serve, like a policy's.
                if engine.revision == previous and engine.trust_revision == previous_trust:
                    result = ReloadResult("unchanged", previous, previous)
                else:
                    result = self._swap(engine, previous)
            result.seconds = time.monotonic() - started
            result.previous_trust = previous_trust
            result.trust = self.holder.engine.trust_revision
        info = log.debug if self.quiet else log.info
        if result.result == "rejected":
            log.error("reload rejected; still serving revision %s%s:\n%s", previous, result.trust_note(), result.error)
        elif result.result == "ok":
            info("reloaded: serving revision %s (was %s) after %.2fs%s", result.revision, previous, result.seconds,
                 result.trust_note())
        elif not self._catch_up:
            info("reload: no change (revision %s%s)", previous, result.trust_note())
        self._catch_up = False
        if self.on_result is not None:
            self.on_result(result)
        return result

    def _swap(self, engine: Engine, previous: str) -> ReloadResult:
        if self.prepare is not None:
            try:
                self.prepare(engine)
            except Exception as err:  # noqa: BLE001 - not served, whatever went wrong
                log.exception("reload: preparing revision %s failed", engine.revision)
                return ReloadResult("rejected", previous, previous, f"preparing revision {engine.revision} "
                                                                    f"failed: {err}")
        self.holder.swap(engine)
        return ReloadResult("ok", engine.revision, previous)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._wanted.wait(0.5):
                continue
            if self._stop.is_set():
                return
            self._wanted.clear()
            self.reload_now()

    def watch(self, debounce_ms: int = 300, ready_timeout: float = 10.0) -> Reloader:
        """Also reload when a watched file changes (watchfiles, on its own thread).

        Returns once the watcher runs (or after ``ready_timeout``), and then asks for one
        reload, so that a change made before the watcher was up is not missed (it is
        ``unchanged`` when there was none).
        """
        ready = threading.Event()

        def on_ready() -> None:
            ready.set()
            self._catch_up = True
            self.request()

        t = threading.Thread(target=watch_changes, name="pdp-watch",
                             args=(self.source, self._stop, self.request, on_ready, debounce_ms), daemon=True)
        t.start()
        self._threads.append(t)
        ready.wait(ready_timeout)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wanted.set()
        for t in self._threads:
            t.join(timeout)


def watch_changes(source: PolicySource, stop: threading.Event, on_change: Callable[[], None],
                  on_ready: Callable[[], None], debounce_ms: int = 300) -> None:
    """Call ``on_change()`` after each batch of changes to ``source``'s files until ``stop``;
    ``on_ready()`` once the watcher is running."""
    import watchfiles

    roots, folders, files = watch_roots(source.watch_paths())
    ready = False
    try:
        # With yield_on_timeout the first yield comes within rust_timeout of the watcher
        # starting, changes or not: that is how we know it runs.
        for changes in watchfiles.watch(*roots, watch_filter=lambda _c, p: is_watched(Path(p), folders, files),
                                        stop_event=stop, debounce=debounce_ms, step=50, rust_timeout=200,
                                        yield_on_timeout=True, raise_interrupt=False):
            if not ready:
                ready = True
                on_ready()
            elif changes:
                on_change()
    except Exception:
        log.exception("watch: stopped watching for changes")


def watch_roots(paths: Sequence[Path]) -> tuple[list[Path], list[Path], set[Path]]:
    """(folders to hand watchfiles, folders given, files given). A file given on its own is
    watched through its folder, so that an editor's write-to-temp-and-rename is seen; its own
    name is kept even when it is a symlink (a ConfigMap key points into a folder that the next
    update deletes)."""
    folders: list[Path] = []
    files: set[Path] = set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            folders.append(p.resolve())
        else:
            files.add(p.absolute().parent.resolve() / p.name)
    roots = list(folders)
    for f in files:
        if f.parent not in roots:
            roots.append(f.parent)
    return roots, folders, files


def is_watched(path: Path, folders: Sequence[Path], files: set[Path]) -> bool:
    """A change that should trigger a reload: a file given by name, or a policy, data or suite
    file under a folder given, outside hidden folders (the loader skips those too), or the
    swap of a Kubernetes volume's ``..data`` link beside them."""
    if path in files:
        return True
    if path.name == KUBERNETES_DATA_LINK:
        return path.parent in folders or any(path.parent == f.parent for f in files)
    if path.suffix not in WATCHED_SUFFIXES or path.name.startswith("."):
        return False
    for folder in folders:
        try:
            relative = path.relative_to(folder)
        except ValueError:
            continue
        if not any(part.startswith(".") for part in relative.parts):
            return True
    return False
