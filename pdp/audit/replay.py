"""``pdp replay``: decide every logged input again with a candidate policy set, at its logged
time, and say what would change (SPEC §11).

Inputs are decided in chunks with ``Engine.decide_many`` (one validation pass and one
evaluator call per chunk); a chunk that holds a request the engine refuses is decided one by
one, so one bad line costs only itself. A change is a different decision (ALLOW ⇄ DENY); the
rules behind a change are the candidate's reasons for its new decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..engine import Engine
from ..errors import RequestError
from .logfile import ReadStats, is_request, logged_input, records

CHUNK = 2048
ALLOW_TO_DENY = "allow_to_deny"
DENY_TO_ALLOW = "deny_to_allow"


@dataclass
class ReplayResult:
    """The SPEC §11 figures, the rules behind the changes and the first examples."""

    revision: str
    decisions: int = 0
    changed: int = 0
    allow_to_deny: int = 0
    deny_to_allow: int = 0
    skipped: int = 0  # decided lines without an input (logged with --decision-log-input off), error lines
    invalid: int = 0  # inputs the candidate refuses as malformed (not counted in decisions)
    unreadable: int = 0  # lines that are not JSON objects
    logged_revisions: Counter = field(default_factory=Counter)
    rules: dict[str, Counter] = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        rules = sorted(self.rules.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        return {
            "decisions": self.decisions,
            "changed": self.changed,
            "allow_to_deny": self.allow_to_deny,
            "deny_to_allow": self.deny_to_allow,
            "skipped": self.skipped,
            "invalid": self.invalid,
            "unreadable": self.unreadable,
            "revision": self.revision,
            "logged_revisions": dict(self.logged_revisions.most_common()),
            "rules": [{"rule": rule, ALLOW_TO_DENY: c[ALLOW_TO_DENY], DENY_TO_ALLOW: c[DENY_TO_ALLOW]}
                      for rule, c in rules],
            "examples": self.examples,
            "seconds": round(self.seconds, 3),
        }


def replay(paths: Iterable[str], candidate: Engine, *, examples: int = 10, stats: ReadStats | None = None,
           on_progress: Callable[[int], None] | None = None, chunk: int = CHUNK) -> ReplayResult:
    """Replay the decision logs ``paths`` against ``candidate``. OSError when a file cannot be read."""
    import time

    started = time.perf_counter()
    stats = stats if stats is not None else ReadStats()
    result = ReplayResult(candidate.revision)
    pending_lines: list[dict] = []
    pending_requests: list[dict] = []
    for record in records(paths, stats):
        request = logged_input(record)
        if request is None:
            if is_request(record):
                result.skipped += 1
            continue
        pending_lines.append(record)
        pending_requests.append(request)
        if len(pending_requests) >= chunk:
            _decide(candidate, pending_lines, pending_requests, result, examples)
            pending_lines, pending_requests = [], []
            if on_progress is not None:
                on_progress(result.decisions)
    if pending_requests:
        _decide(candidate, pending_lines, pending_requests, result, examples)
    result.unreadable = stats.unreadable
    result.seconds = time.perf_counter() - started
    return result


def decide_logged(engine: Engine, request: dict):
    """Decide a logged input: a verified token was logged as its claims (SPEC §11), and the
    candidate decides on those claims as the live engine did on the token."""
    context = request.get("context")
    claims = context.get("token") if type(context) is dict else None
    if type(claims) is not dict:
        return engine.decide(request)
    rest = {k: v for k, v in context.items() if k != "token"}
    return engine.decide_verified({**request, "context": rest}, claims)


def _with_claims(request: dict) -> bool:
    context = request.get("context")
    return type(context) is dict and type(context.get("token")) is dict


def _decide(engine: Engine, lines: list[dict], requests: list[dict], result: ReplayResult, examples: int) -> None:
    try:
        if any(_with_claims(r) for r in requests):
            raise RequestError("", "decided one by one")  # decide_many takes no claims
        decisions = engine.decide_many(requests)
    except RequestError:
        decisions = []
        for request in requests:
            try:
                decisions.append(decide_logged(engine, request))
            except RequestError:
                decisions.append(None)
    revisions = result.logged_revisions
    for line, request, new in zip(lines, requests, decisions):
        if new is None:
            result.invalid += 1
            continue
        result.decisions += 1
        revisions[line.get("revision")] += 1
        was = line["decision"]
        now = new.decision
        if was == now:
            continue
        result.changed += 1
        direction = ALLOW_TO_DENY if was == "ALLOW" else DENY_TO_ALLOW
        if direction == ALLOW_TO_DENY:
            result.allow_to_deny += 1
        else:
            result.deny_to_allow += 1
        for reason in new.reasons:
            counter = result.rules.get(reason.rule)
            if counter is None:
                counter = result.rules[reason.rule] = Counter({ALLOW_TO_DENY: 0, DENY_TO_ALLOW: 0})
            counter[direction] += 1
        if len(result.examples) < examples:
            result.examples.append({
                "time": line.get("time"), "request_id": line.get("request_id"), "change": direction,
                "logged": {"decision": was, "reasons": line.get("reasons", []), "revision": line.get("revision")},
                "candidate": {"decision": now, "reasons": [r.rule for r in new.reasons],
                              "messages": [r.message for r in new.reasons]},
                "input": request,
            })


def render_text(result: ReplayResult) -> str:
    """The human summary: the figures, then the rules behind the changes, then examples."""
    d = result.to_dict()
    rate = d["decisions"] / result.seconds if result.seconds else 0.0
    out = [f"Replayed {d['decisions']:,} decisions against revision {d['revision']} in {result.seconds:.1f}s "
           f"({rate:,.0f}/s).",
           f"  changed: {d['changed']:,}  (allow_to_deny {d['allow_to_deny']:,}, deny_to_allow "
           f"{d['deny_to_allow']:,})",
           f"  skipped: {d['skipped']:,} lines without input"]
    if d["invalid"]:
        out.append(f"  invalid: {d['invalid']:,} inputs the candidate refuses as malformed")
    if d["unreadable"]:
        out.append(f"  unreadable: {d['unreadable']:,} lines that are not JSON objects")
    if d["logged_revisions"]:
        out.append("  logged revisions: " + ", ".join(f"{rev} ({n:,})" for rev, n in d["logged_revisions"].items()))
    if d["rules"]:
        out += ["", "Rules behind the changes (the candidate's reasons):"]
        for r in d["rules"]:
            out.append(f"  {r['rule']}: allow_to_deny {r[ALLOW_TO_DENY]:,}, deny_to_allow {r[DENY_TO_ALLOW]:,}")
    if d["examples"]:
        out += ["", "Examples:"]
        for e in d["examples"]:
            inp = e["input"]
            who = inp.get("identity", {}).get("id")
            what = inp.get("action", {}).get("name")
            res = inp.get("resource", {})
            out.append(f"  {e['time']} {e['request_id'] or '-'}: {who} {what} {res.get('type')}/{res.get('id', '')}: "
                       f"{e['logged']['decision']} -> {e['candidate']['decision']} "
                       f"({', '.join(e['candidate']['reasons'])})")
    return "\n".join(out)
