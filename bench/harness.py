"""The comparison harness: one workload expressed for pdp, Cedar, Rego and Casbin, and each
engine checked to decide like pdp before anything is timed.

A :class:`Workload` is a policy set in four languages plus requests over one vocabulary
(``workloads.requests``): ``types`` policies, each targeted on one resource type, with ten
rule shapes in rotation (scopes, environments, levels, ownership, roles, SPIFFE globs, tags,
a deny list). On these requests every attribute a rule reads is present and well typed, so
the engines' semantics coincide (no fail-closed case, Cedar's ``like`` and Casbin's
``globMatch`` match the same SPIFFE IDs as pdp's ``matches``).

Engines (:data:`ENGINES`) are adapters with one timed entry point ``call(native_request)``;
requests are converted to each engine's native form before timing:

* ``pdp``: ``engine.decide(dict)``, ``engine.decide_many(list)`` (the fastest backend built).
* ``cedar``: cedarpy ``is_authorized`` with a pre-parsed ``PolicySet`` and the request's
  principal and resource entities as a JSON string (Cedar reads attributes from entities).
  The resource type is the Cedar entity type (``resource is type3`` in the policy scope,
  idiomatic and about twice as fast as comparing a ``type`` attribute). The timed call is
  the binding (JSON in, JSON out); :meth:`Cedar.core_us` reads Cedar's own evaluation time
  from cedarpy's metrics.
* ``rego``: regopy (rego-cpp) with the policy built once into a bundle; per request
  ``set_input_term(json)`` then ``query_bundle``.
* ``casbin``: pycasbin's documented ABAC model, ``eval(p.sub_rule)`` per policy line.

:func:`check_agreement` runs every engine on every request and compares the decision and,
where the engine names them (pdp, Cedar, Rego), the rules that determined it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:  # the pdp under test: the installed one (CI), else this checkout's (development)
    import pdp
except ImportError:
    sys.path.insert(0, str(HERE.parent))
    import pdp

import workloads  # noqa: E402

#: Where pdp was imported from: child processes get it on PYTHONPATH, to run the same pdp.
PDP_PATH = str(Path(pdp.__file__).resolve().parent.parent)

# --------------------------------------------------------------------------------------------
# the workload in four languages


@dataclass(frozen=True)
class Shape:
    effect: str  # permit | forbid
    name: str
    pdl: str
    cedar: str
    rego: tuple[str, ...]  # body lines
    casbin: str


SHAPES = (
    Shape("permit", "read",
          'action.name in ["read", "list"] and identity.scopes contains "{t}:read"',
          'action in [Action::"read", Action::"list"] && principal.scopes.contains("{t}:read")',
          ('input.action.name in {{"read", "list"}}', '"{t}:read" in input.identity.scopes'),
          "r.act in ('read', 'list') and '{t}:read' in r.sub.scopes"),
    Shape("permit", "write",
          'action.name in ["write", "update"] and identity.scopes contains "{t}:write" '
          'and identity.env == resource.env',
          'action in [Action::"write", Action::"update"] && principal.scopes.contains("{t}:write") '
          '&& principal.env == resource.env',
          ('input.action.name in {{"write", "update"}}', '"{t}:write" in input.identity.scopes',
           "input.identity.env == input.resource.env"),
          "r.act in ('write', 'update') and '{t}:write' in r.sub.scopes and r.sub.env == r.obj.env"),
    Shape("forbid", "cross_env",
          'identity.env != resource.env and identity.env == "staging"',
          'principal.env != resource.env && principal.env == "staging"',
          ("input.identity.env != input.resource.env", 'input.identity.env == "staging"'),
          "r.sub.env != r.obj.env and r.sub.env == 'staging'"),
    Shape("forbid", "low_level_delete",
          'identity.level < 2 and action.name == "delete"',
          'principal.level < 2 && action == Action::"delete"',
          ("input.identity.level < 2", 'input.action.name == "delete"'),
          "r.sub.level < 2 and r.act == 'delete'"),
    Shape("permit", "owner",
          'resource.owner == identity.id and action.name != "admin"',
          'resource.owner == principal.id && action != Action::"admin"',
          ("input.resource.owner == input.identity.id", 'input.action.name != "admin"'),
          "r.obj.owner == r.sub.id and r.act != 'admin'"),
    Shape("permit", "admin_role",
          'identity.roles contains_any ["admin", "{t}-admin"]',
          'principal.roles.containsAny(["admin", "{t}-admin"])',
          ("some role in input.identity.roles", 'role in {{"admin", "{t}-admin"}}'),
          "'admin' in r.sub.roles or '{t}-admin' in r.sub.roles"),
    Shape("forbid", "foreign_workload",
          'action.name == "admin" and not (identity.spiffe_id matches "spiffe://acme/ns/{t}/sa/*")',
          'action == Action::"admin" && !(principal.spiffe_id like "spiffe://acme/ns/{t}/sa/*")',
          ('input.action.name == "admin"', 'not glob.match("spiffe://acme/ns/{t}/sa/*", ["/"], '
                                           'input.identity.spiffe_id)'),
          "r.act == 'admin' and not globMatch(r.sub.spiffe_id, 'spiffe://acme/ns/{t}/sa/*')"),
    Shape("permit", "public_tags",
          'resource.tags contains_all ["public", "reviewed"] and action.name == "read"',
          'resource.tags.containsAll(["public", "reviewed"]) && action == Action::"read"',
          ('"public" in input.resource.tags', '"reviewed" in input.resource.tags',
           'input.action.name == "read"'),
          "'public' in r.obj.tags and 'reviewed' in r.obj.tags and r.act == 'read'"),
    Shape("forbid", "blocked",
          'identity.id in ["svc-blocked-1", "svc-blocked-2"]',
          '["svc-blocked-1", "svc-blocked-2"].contains(principal.id)',
          ('input.identity.id in {{"svc-blocked-1", "svc-blocked-2"}}',),
          "r.sub.id in ('svc-blocked-1', 'svc-blocked-2')"),
    Shape("permit", "list_all",
          'action.name == "list" and identity.level >= 1',
          'action == Action::"list" && principal.level >= 1',
          ('input.action.name == "list"', "input.identity.level >= 1"),
          "r.act == 'list' and r.sub.level >= 1"),
)

REGO_FOOTER = """
default allow := false

allow if {
  count(forbid) == 0
  count(permit) > 0
}

reasons := forbid if {
  count(forbid) > 0
} else := permit

decision := {"allow": allow, "reasons": reasons}
"""

CASBIN_MODEL = """
[request_definition]
r = sub, obj, act

[policy_definition]
p = id, sub_rule, obj, eft

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = r.obj.type == p.obj && eval(p.sub_rule)
"""


@dataclass
class Workload:
    """A policy set in four languages and the requests to decide with it."""

    name: str
    types: int
    rules_per_type: int
    rule_ids: list[str]
    pdl_policies: list[str]  # one PDL policy block per resource type
    cedar: str
    rego: str
    casbin: list[tuple[str, str, str, str]]  # (id, sub_rule, resource type, allow|deny)
    requests: list[dict] = field(repr=False)

    @property
    def rules(self) -> int:
        return len(self.rule_ids)

    @property
    def pdl(self) -> str:
        return "".join(self.pdl_policies)

    def write_pdl(self, root: Path, policies_per_file: int = 100) -> Path:
        """The PDL policies as files under ``root`` (a file holds at most ``policies_per_file``
        policies, so that large sets stay under pdp's 4 MiB per file); returns ``root``."""
        root.mkdir(parents=True, exist_ok=True)
        chunks = range(0, max(len(self.pdl_policies), 1), policies_per_file)
        for n, start in enumerate(chunks):
            (root / f"bench{n:05d}.pdl").write_text("".join(self.pdl_policies[start:start + policies_per_file]))
        return root


def targeted(types: int, rules_per_type: int = 10, requests: int = 200, seed: int = 7,
             request_fn: Callable[[list[dict]], list[dict]] | None = None) -> Workload:
    """``types * rules_per_type`` rules: ``types`` policies, each targeted on ``type{i}``;
    ``requests`` requests from ``workloads.requests`` (then through ``request_fn``, to pad
    them)."""
    pdl, cedar, rego, casbin, ids = [], [], ["package bench", "", "import rego.v1", ""], [], []
    for i in range(types):
        t = f"type{i}"
        block = [f'policy {t} {{\n  target resource.type == "{t}"']
        for k in range(rules_per_type):
            s = SHAPES[k % len(SHAPES)]
            rule = f"{s.name}_{k}"
            rid = f"{t}.{rule}"
            ids.append(rid)
            block.append(f"  {s.effect} {rule} when {s.pdl.format(t=t)}")
            cedar.append(f'@id("{rid}")\n{s.effect}(principal, action, resource is {t}) when {{\n'
                         f'  {s.cedar.format(t=t)}\n}};')
            body = "\n".join(f"  {line.format(t=t)}" for line in (f'input.resource.type == "{t}"', *s.rego))
            rego.append(f'{s.effect} contains "{rid}" if {{\n{body}\n}}\n')
            casbin.append((rid, s.casbin.format(t=t), t, "allow" if s.effect == "permit" else "deny"))
        block.append("}")
        pdl.append("\n".join(block) + "\n")
    if not ids:  # an empty set still needs the rule heads
        rego += ['forbid := set()', 'permit := set()']
    reqs = workloads.requests(max(types, 1), requests, seed)
    if request_fn is not None:
        reqs = request_fn(reqs)
    return Workload(name=f"{types * rules_per_type} rules ({types} types x {rules_per_type})", types=types,
                    rules_per_type=rules_per_type, rule_ids=ids, pdl_policies=pdl,
                    cedar="\n".join(cedar) + "\n", rego="\n".join(rego) + REGO_FOOTER, casbin=casbin,
                    requests=reqs)


# --------------------------------------------------------------------------------------------
# engines


@dataclass(frozen=True)
class Outcome:
    allowed: bool
    reasons: frozenset | None  # rule ids that determined the decision; None: the engine does not say


class Adapter:
    """One engine on one workload. ``inputs`` are the requests in native form; ``call`` is
    what is timed (one decision); ``outcome`` reads a result of ``call``. Batched engines
    have ``batch_inputs``/``batch_call``/``batch_outcomes``."""

    name = "?"
    module = "?"  # the import that must work
    package = "?"  # the PyPI distribution
    batched = False

    def __init__(self, workload: Workload, workdir: Path | None = None):
        self.workload = workload
        self.workdir = workdir

    @classmethod
    def missing(cls) -> str | None:
        """Why this engine cannot run here (None when it can)."""
        try:
            importlib.import_module(cls.module)
        except ImportError as exc:
            return f"{cls.package} is not installed ({exc})"
        return None

    @classmethod
    def version(cls) -> str:
        try:
            return importlib.metadata.version(cls.package)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    def native(self, request: dict) -> Any:
        return request

    def prepare(self, requests: list[dict]) -> list:
        return [self.native(r) for r in requests]

    def call(self, x: Any) -> Any:
        raise NotImplementedError

    def outcome(self, result: Any) -> Outcome:
        raise NotImplementedError

    def prepare_batch(self, requests: list[dict]) -> Any:
        raise NotImplementedError

    def batch_call(self, batch: Any) -> Any:
        raise NotImplementedError

    def batch_outcomes(self, result: Any) -> list[Outcome]:
        raise NotImplementedError


class Pdp(Adapter):
    name = "pdp"
    module = "pdp"
    package = "pdp"
    batched = True

    def __init__(self, workload: Workload, workdir: Path | None = None, backend: str | None = None):
        super().__init__(workload, workdir)
        self.engine = _load(workload, workdir, backend)
        self.call = self.engine.decide  # type: ignore[method-assign]
        self.batch_call = self.engine.decide_many  # type: ignore[method-assign]

    @classmethod
    def version(cls) -> str:
        return pdp.__version__

    @staticmethod
    def _outcome(d) -> Outcome:
        return Outcome(d.allowed, frozenset(r.rule for r in d.reasons if r.rule != "default"))

    def outcome(self, result) -> Outcome:
        return self._outcome(result)

    def prepare_batch(self, requests):
        return list(requests)

    def batch_outcomes(self, result) -> list[Outcome]:
        return [self._outcome(d) for d in result]


def _load(workload: Workload, workdir: Path | None, backend: str | None) -> pdp.Engine:
    """pdp's engine for the workload, from files in ``workdir`` (kept) or a temporary folder."""
    if workdir is not None:
        return pdp.load(workload.write_pdl(Path(workdir) / "pdp"), backend=backend)
    with tempfile.TemporaryDirectory(prefix="pdp-harness-") as tmp:
        return pdp.load(workload.write_pdl(Path(tmp)), backend=backend)


def _cedar_entities(request: dict, suffix: str = "") -> tuple[dict, list[dict]]:
    ident, res = request["identity"], request["resource"]
    pid, rid = ident["id"] + suffix, res["id"] + suffix
    cedar_request = {"principal": {"type": "Workload", "id": pid},
                     "action": {"type": "Action", "id": request["action"]["name"]},
                     "resource": {"type": res["type"], "id": rid}, "context": {}}
    attrs = {k: v for k, v in ident.items() if k != "type"}  # ids are attributes too (suffix-free)
    entities = [{"uid": {"__entity": {"type": "Workload", "id": pid}}, "attrs": attrs, "parents": []},
                {"uid": {"__entity": {"type": res["type"], "id": rid}},
                 "attrs": {k: v for k, v in res.items() if k != "type"}, "parents": []}]
    return cedar_request, entities


class Cedar(Adapter):
    name = "cedar"
    module = "cedarpy"
    package = "cedarpy"
    batched = True

    @classmethod
    def missing(cls) -> str | None:
        reason = super().missing()
        if reason is None:
            import cedarpy

            if not hasattr(cedarpy, "PolicySet") or not hasattr(cedarpy.Diagnostics, "id_annotations_by_reason"):
                return (f"cedarpy {cls.version()} lacks PolicySet (pre-parsed policies) or @id annotations in "
                        f"reasons; 4.12 has both")
        return reason

    def __init__(self, workload: Workload, workdir: Path | None = None):
        super().__init__(workload, workdir)
        import cedarpy

        self.cedarpy = cedarpy
        self.policies = cedarpy.PolicySet.from_str(workload.cedar)
        is_authorized, policies = cedarpy.is_authorized, self.policies
        self.call = lambda x: is_authorized(x[0], policies, x[1])  # type: ignore[method-assign]

    def native(self, request):
        cedar_request, entities = _cedar_entities(request)
        return cedar_request, json.dumps(entities)

    @staticmethod
    def core_us(result) -> int:
        """Cedar's own authorization time for one call (µs, as cedarpy's metrics report it)."""
        return result.metrics.get("authz_duration_micros", 0)

    def outcome(self, result) -> Outcome:
        if result.diagnostics.errors:
            raise AssertionError(f"cedar evaluation errors: {result.diagnostics.errors}")
        return Outcome(result.allowed, frozenset(result.diagnostics.id_annotations_by_reason.values()))

    def prepare_batch(self, requests):
        cedar_requests, entities = [], []
        for i, r in enumerate(requests):  # ids made unique per item: one entity set per batch
            req, ents = _cedar_entities(r, suffix=f"#{i}")
            cedar_requests.append(req)
            entities += ents
        return cedar_requests, json.dumps(entities)

    def batch_call(self, batch):
        return self.cedarpy.is_authorized_batch(batch[0], self.policies, batch[1])

    def batch_outcomes(self, result) -> list[Outcome]:
        return [self.outcome(r) for r in result]


class Rego(Adapter):
    name = "rego"
    module = "regopy"
    package = "regopy"

    def __init__(self, workload: Workload, workdir: Path | None = None):
        super().__init__(workload, workdir)
        from regopy import Interpreter

        self.interpreter = Interpreter()
        self.interpreter.add_module("bench.rego", workload.rego)
        self.bundle = self.interpreter.build("x := data.bench.decision", [])
        if not self.bundle.ok():
            raise RuntimeError(f"rego build failed: {self.bundle.node()}")
        set_input, query, bundle = self.interpreter.set_input_term, self.interpreter.query_bundle, self.bundle

        def call(x):
            set_input(x)
            return query(bundle)

        self.call = call  # type: ignore[method-assign]

    def native(self, request):
        return json.dumps(request)

    def outcome(self, result) -> Outcome:
        if not result.ok():
            raise AssertionError(f"rego error: {result}")
        d = result[0].bindings["x"]
        return Outcome(bool(d["allow"]), frozenset(d["reasons"]))


class Casbin(Adapter):
    name = "casbin"
    module = "casbin"
    package = "casbin"

    def __init__(self, workload: Workload, workdir: Path | None = None):
        super().__init__(workload, workdir)
        import logging

        import casbin
        from casbin import model as casbin_model

        logging.getLogger("casbin").setLevel(logging.ERROR)
        model = casbin_model.Model()
        model.load_model_from_text(CASBIN_MODEL)
        self.enforcer = casbin.Enforcer(model)
        if workload.casbin:
            self.enforcer.add_policies(workload.casbin)
            enforce = self.enforcer.enforce
            self.call = lambda x: enforce(*x)  # type: ignore[method-assign]
        else:  # casbin refuses eval() in a matcher without policy lines; no rule denies
            self.call = lambda x: False  # type: ignore[method-assign]

    def native(self, request):
        return request["identity"], request["resource"], request["action"]["name"]

    def outcome(self, result) -> Outcome:
        return Outcome(bool(result), None)


ENGINES: dict[str, type[Adapter]] = {"pdp": Pdp, "cedar": Cedar, "rego": Rego, "casbin": Casbin}


def available(names=None) -> tuple[list[str], dict[str, str]]:
    """(engines that can run here, {engine: why not} for the others)."""
    ok, skipped = [], {}
    for name in names or ENGINES:
        reason = ENGINES[name].missing()
        if reason is None:
            ok.append(name)
        else:
            skipped[name] = reason
    return ok, skipped


def versions() -> dict[str, str]:
    return {name: cls.version() for name, cls in ENGINES.items() if cls.missing() is None}


# --------------------------------------------------------------------------------------------
# agreement


class Disagreement(AssertionError):
    pass


def check_agreement(workload: Workload, adapters: dict[str, Adapter], requests: list[dict] | None = None,
                    batch: int = 50, reference: pdp.Engine | None = None) -> dict[str, dict]:
    """Decide ``requests`` (default: the workload's) with pdp's reference evaluator (the
    semantics; ``reference`` if given, else loaded from the workload) and with every adapter,
    one by one and, for batched engines, in batches. Raises :class:`Disagreement` naming the
    first requests decided differently; returns, per engine, how many requests were compared
    and how many were allowed."""
    requests = workload.requests if requests is None else requests
    if reference is None:
        reference = _load(workload, None, "reference")
    expected = [Pdp._outcome(reference.decide(r)) for r in requests]
    report: dict[str, dict] = {}
    problems: list[str] = []
    for name, adapter in adapters.items():
        got = [adapter.outcome(adapter.call(x)) for x in adapter.prepare(requests)]
        if adapter.batched:
            batched: list[Outcome] = []
            for start in range(0, len(requests), batch):
                chunk = requests[start:start + batch]
                batched += adapter.batch_outcomes(adapter.batch_call(adapter.prepare_batch(chunk)))
            for i, (one, many) in enumerate(zip(got, batched)):
                if one != many:
                    problems.append(f"{name}: request {i} decided alone {one} but in a batch {many}")
        reasons_compared = True
        for i, (want, have) in enumerate(zip(expected, got)):
            same = want.allowed == have.allowed and (have.reasons is None or have.reasons == want.reasons)
            if have.reasons is None:
                reasons_compared = False
            if not same:
                problems.append(f"{name}: request {i} {json.dumps(requests[i])}\n    pdp: {_show(want)}\n"
                                f"    {name}: {_show(have)}")
        report[name] = {"requests": len(requests), "allowed": sum(o.allowed for o in got),
                        "reasons_compared": reasons_compared}
    if problems:
        raise Disagreement(f"{workload.name}: {len(problems)} disagreements, e.g.\n  " + "\n  ".join(problems[:5]))
    return report


def _show(o: Outcome) -> str:
    verdict = "ALLOW" if o.allowed else "DENY"
    return verdict if o.reasons is None else f"{verdict} {sorted(o.reasons)}"


def prepare(workload: Workload, names=None, workdir: Path | None = None,
            check_requests: list[dict] | None = None) -> tuple[dict[str, Adapter], dict[str, str], dict]:
    """Adapters for the engines available here, checked for agreement on the workload.
    Returns (adapters, {engine: why skipped}, agreement report)."""
    ok, skipped = available(names)
    adapters = {name: ENGINES[name](workload, workdir) for name in ok}
    agreement = check_agreement(workload, adapters, check_requests)
    return adapters, skipped, agreement
