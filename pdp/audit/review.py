"""``pdp review``: the access review of the machine identities seen in decision logs (SPEC §11).

Per identity (by ``identity.id``): requests, allowed, denied, first and last seen (times from
the log lines), the scopes presented (``identity.scopes`` of the logged inputs, and the
``token.scopes`` of a verified token, whose claims the log keeps), the scopes used (the scope literals that an applying
permit tested true: pdp.audit.scopes reads which literals each permit tests from the policy
AST; for each allowed line, the permits among its reasons are the ones that applied, and each
of their tests is checked against the scopes that line presented), the scopes unused
(presented, never used: least-privilege candidates), and denials by rule. Then the inventory
(``data.identities`` or ``--inventory NAME``): inventoried identities never seen, identities
seen but not inventoried; the credentials seen that break a lifetime rule (a forbid that
judges ``age`` of ``identity.credential.*`` or ``token.*``, among a denial's reasons). Each
finding names the OWASP NHI Top 10 and NIST CSF 2.0 controls it bears on, with the names
``pdp report`` uses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..engine import Engine
from ..errors import RequestError
from ..testing.controls import KNOWN_FRAMEWORKS, control_ids
from .logfile import ReadStats, is_request, records
from ..tokens.verify import token_view
from .scopes import ScopeTest, lifetime_rules, permit_scope_tests

#: The controls a finding that no rule names bears on.
FINDING_CONTROLS = {
    "scopes_unused": {"owasp": ["NHI5"], "nist_csf": ["PR.AA-05"]},
    "never_seen": {"owasp": ["NHI1"], "nist_csf": ["ID.AM-08", "PR.AA-01"]},
    "not_inventoried": {"owasp": ["NHI1"], "nist_csf": ["ID.AM-02", "PR.AA-01"]},
    "credential_lifetime": {"owasp": ["NHI7"], "nist_csf": ["PR.AA-01"]},
}


@dataclass
class IdentityView:
    id: str
    type: str | None = None
    requests: int = 0
    allowed: int = 0
    denied: int = 0
    first_seen: str | None = None
    last_seen: str | None = None
    scopes_presented: set[str] = field(default_factory=set)
    scopes_used: set[str] = field(default_factory=set)
    denials: Counter = field(default_factory=Counter)
    timeline: Counter = field(default_factory=Counter)  # minute (RFC 3339 prefix YYYY-MM-DDTHH:MM) ⇒ requests

    def to_dict(self) -> dict:
        return {
            "id": self.id, "type": self.type, "requests": self.requests, "allowed": self.allowed,
            "denied": self.denied, "first_seen": self.first_seen, "last_seen": self.last_seen,
            "scopes_presented": sorted(self.scopes_presented), "scopes_used": sorted(self.scopes_used),
            "scopes_unused": sorted(self.scopes_presented - self.scopes_used),
            "denials_by_rule": dict(sorted(self.denials.items(), key=lambda kv: (-kv[1], kv[0]))),
        }


@dataclass
class CredentialFinding:
    identity: str
    rule: str
    credential: dict
    requests: int = 0
    first_seen: str | None = None
    last_seen: str | None = None


@dataclass
class Review:
    revision: str
    inventory_name: str
    inventory: list[str] | None  # None: the policies hold no such data collection
    identities: dict[str, IdentityView]
    credentials: list[CredentialFinding]
    rule_annotations: dict[str, dict]
    skipped: int = 0
    lines_without_input: int = 0

    @property
    def never_seen(self) -> list[str]:
        return [] if self.inventory is None else sorted(set(self.inventory) - set(self.identities))

    @property
    def not_inventoried(self) -> list[str]:
        return [] if self.inventory is None else sorted(set(self.identities) - set(self.inventory))

    def findings(self) -> list[dict]:
        """Every finding with the controls it bears on (from the rule's annotations for
        denials and lifetime breaks; from FINDING_CONTROLS otherwise)."""
        out = []
        for view in self.identities.values():
            unused = sorted(view.scopes_presented - view.scopes_used)
            if unused:
                out.append({"kind": "scopes_unused", "identity": view.id, "detail": unused,
                            "controls": FINDING_CONTROLS["scopes_unused"]})
            for rule, n in sorted(view.denials.items()):
                controls = self._rule_controls(rule)
                if controls:
                    out.append({"kind": "denied", "identity": view.id, "detail": {"rule": rule, "requests": n},
                                "controls": controls})
        for name in self.never_seen:
            out.append({"kind": "never_seen", "identity": name, "detail": None,
                        "controls": FINDING_CONTROLS["never_seen"]})
        for name in self.not_inventoried:
            out.append({"kind": "not_inventoried", "identity": name, "detail": None,
                        "controls": FINDING_CONTROLS["not_inventoried"]})
        for c in self.credentials:
            out.append({"kind": "credential_lifetime", "identity": c.identity,
                        "detail": {"rule": c.rule, "credential": c.credential, "requests": c.requests},
                        "controls": self._rule_controls(c.rule) or FINDING_CONTROLS["credential_lifetime"]})
        return out

    def _rule_controls(self, rule: str) -> dict[str, list[str]]:
        annotations = self.rule_annotations.get(rule, {})
        return {key: control_ids(annotations[key]) for key in ("owasp", "nist_csf") if annotations.get(key)}

    def controls(self, findings: list[dict]) -> dict:
        """Framework ⇒ control ⇒ its name and how many findings bear on it."""
        out: dict[str, dict] = {}
        for finding in findings:
            for key, ids in finding["controls"].items():
                framework = KNOWN_FRAMEWORKS[key]
                for cid in ids:
                    entry = out.setdefault(key, {}).setdefault(cid, {"name": framework.name_of(cid), "findings": 0})
                    entry["findings"] += 1
        return out

    def to_dict(self) -> dict:
        findings = self.findings()
        views = sorted(self.identities.values(), key=lambda v: (-v.requests, v.id))
        return {
            "revision": self.revision,
            "inventory": self.inventory_name if self.inventory is not None else None,
            "identities": [v.to_dict() for v in views],
            "never_seen": self.never_seen,
            "not_inventoried": self.not_inventoried,
            "credentials": [{"identity": c.identity, "rule": c.rule, "credential": c.credential,
                             "requests": c.requests, "first_seen": c.first_seen, "last_seen": c.last_seen}
                            for c in self.credentials],
            "findings": findings,
            "controls": self.controls(findings),
            "skipped": self.skipped,
            "lines_without_input": self.lines_without_input,
        }


def review(paths: Iterable[str], engine: Engine, inventory: str = "identities",
           stats: ReadStats | None = None) -> Review:
    """Review the decision logs ``paths`` with the policies of ``engine``. KeyError when
    ``inventory`` is named but not a data collection of the policies (the caller says so)."""
    policy_set = engine.policy_set
    data = policy_set.data.get(inventory)
    inventory_ids = list(data) if isinstance(data, dict) else None
    tests = permit_scope_tests(policy_set)
    lifetime = lifetime_rules(policy_set)
    annotations = {r.id: dict(r.annotations) for _p, r in policy_set.all_rules()}
    identities: dict[str, IdentityView] = {}
    credentials: dict[tuple, CredentialFinding] = {}
    result = Review(engine.revision, inventory, inventory_ids, identities, [], annotations)
    for record in records(paths, stats):
        decision = record.get("decision")
        if decision not in ("ALLOW", "DENY"):
            if is_request(record):
                result.skipped += 1
            continue
        who = record.get("identity") or {}
        ident = who.get("id")
        if not isinstance(ident, str):
            result.skipped += 1
            continue
        view = identities.get(ident)
        if view is None:
            view = identities[ident] = IdentityView(ident, who.get("type"))
        when = record.get("time")
        view.requests += 1
        if isinstance(when, str):
            if view.first_seen is None or when < view.first_seen:
                view.first_seen = when
            if view.last_seen is None or when > view.last_seen:
                view.last_seen = when
            view.timeline[when[:16]] += 1
        reasons = [r for r in record.get("reasons") or () if isinstance(r, str)]
        request = record.get("input")
        presented = _presented(request) if type(request) is dict else {}
        if type(request) is not dict:
            result.lines_without_input += 1
        for scopes in presented.values():
            view.scopes_presented.update(scopes)
        if decision == "ALLOW":
            view.allowed += 1
            for rule in reasons:
                for test in tests.get(rule, ()):
                    view.scopes_used.update(test.used(presented))
        else:
            view.denied += 1
            view.denials.update(reasons)
            for rule in reasons:
                if rule in lifetime:
                    credential = _credential(request)
                    key = (ident, rule, tuple(sorted(credential.items())))
                    finding = credentials.get(key)
                    if finding is None:
                        finding = credentials[key] = CredentialFinding(ident, rule, credential)
                    finding.requests += 1
                    if isinstance(when, str):
                        finding.first_seen = min(finding.first_seen or when, when)
                        finding.last_seen = max(finding.last_seen or when, when)
    result.credentials = sorted(credentials.values(), key=lambda c: (c.identity, c.rule, c.first_seen or ""))
    return result


def _logged_token(request: dict) -> dict | None:
    """The root ``token`` of a logged input: the log keeps a verified token's claims as
    ``context.token`` (SPEC §11), from which the view policies saw is made again."""
    context = request.get("context")
    claims = context.get("token") if type(context) is dict else None
    if type(claims) is not dict:
        return None
    try:
        return token_view(claims)
    except RequestError:
        return None


def _presented(request: dict) -> dict[str, set[str]]:
    out = {}
    for root in ("identity", "token"):
        holder = request.get("identity") if root == "identity" else _logged_token(request)
        scopes = holder.get("scopes") if type(holder) is dict else None
        if type(scopes) is list:
            out[root] = {s for s in scopes if type(s) is str}
    return out


def _credential(request) -> dict:
    """What the log kept about the credential: ``identity.credential``'s scalars (secrets are
    already redacted), or ``token``'s times."""
    if type(request) is not dict:
        return {}
    identity = request.get("identity")
    credential = identity.get("credential") if type(identity) is dict else None
    if type(credential) is not dict:
        token = _logged_token(request)
        credential = {k: token[k] for k in ("iss", "sub", "issued_at", "expires_at") if k in token} \
            if type(token) is dict else {}
    return {k: v for k, v in credential.items() if type(v) in (str, int, float, bool)}


__all__ = ["review", "Review", "IdentityView", "ScopeTest"]
