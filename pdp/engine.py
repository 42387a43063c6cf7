"""The engine: paths ⇒ loaded, checked policy set; request dicts ⇒ decisions and explanations.

Pipeline: loader (files, revision) → syntax (parse, AST) → check → evaluator.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

from . import reference, runtime
from .check import CheckedPolicySet, check
from .compile import compile_program
from .decision import Decision
from .errors import Diagnostic, PolicyError, RequestError
from .explain import Explanation, explain
from .loader import DATA, POLICY, SourceEntry, discover, read_bytes, revision
from .request import normalize_value, parse_request
from .source import SourceFile
from .syntax import ast
from .syntax.parser import SyntaxProblem
from .syntax.to_ast import parse_module
from .yamlio import decode_text, load_json, load_yaml


# PUBLIC: exported from pdp.
class Engine:
    """A loaded policy set, ready to decide. Immutable: reloading makes a new Engine."""

    def __init__(self, policy_set: CheckedPolicySet, revision: str, files: Sequence[SourceEntry] = (),
                 backend: str | None = None):
        self.policy_set = policy_set
        self.revision = revision
        self.files = tuple(files)
        self.program = compile_program(policy_set, revision)
        self.backend = backend or runtime.BACKEND
        if self.backend == "reference":
            self._evaluator = None
            self.decide = self._decide_reference  # type: ignore[method-assign]
        else:
            self._evaluator = runtime.EVALUATORS[self.backend](self.program)
            self.decide = self._evaluator.decide  # type: ignore[method-assign]

    def decide(self, request: dict) -> Decision:  # replaced per instance by the backend's decide
        """Decide one request (SPEC §3 dict); raises ``RequestError`` when it is malformed."""
        raise NotImplementedError  # pragma: no cover - __init__ always binds a backend

    def _decide_reference(self, request: dict) -> Decision:
        return reference.decide(self.policy_set, parse_request(request), self.revision)

    def decide_many(self, requests: Iterable[dict]) -> list[Decision]:
        """Decide many requests, in order. Every request is validated before any is decided;
        ``RequestError`` names the index of the first malformed one (``[3].identity.type``)."""
        parsed = []
        for i, request in enumerate(requests):
            try:
                parsed.append(parse_request(request))
            except RequestError as err:
                raise RequestError(f"[{i}]{'.' if err.path else ''}{err.path}", err.message) from None
        if self._evaluator is None:
            return [reference.decide(self.policy_set, r, self.revision) for r in parsed]
        decide = self._evaluator.decide_parsed
        return [decide(r.attrs, r.arrival) for r in parsed]

    def explain(self, request: dict) -> Explanation:
        """Decide one request and say, for every rule, why it did or did not apply."""
        return explain(self.policy_set, parse_request(request), self.revision)

    @property
    def rule_ids(self) -> list[str]:
        return [rule.id for _, rule in self.policy_set.all_rules()]

    def __repr__(self) -> str:
        return f"<pdp.Engine revision={self.revision} rules={len(self.rule_ids)} backend={self.backend}>"


def load(*paths: str | os.PathLike | Sequence[str | os.PathLike], backend: str | None = None) -> Engine:
    """Load policies and data from files or folders; raises ``PolicyError`` with every problem.

    ``pdp.load("policies/")``, ``pdp.load("a.pdl", "b.pdl")`` and ``pdp.load(["a", "b"])`` all work.
    ``backend`` picks an evaluator: ``"compiled"`` (the Cython extension), ``"python"`` (the
    same compiled program in pure Python) or ``"reference"`` (the AST evaluator that defines
    the semantics); by default the fastest available.
    """
    flat: list[str | os.PathLike] = []
    for p in paths:
        if isinstance(p, (list, tuple)):
            flat.extend(p)
        else:
            flat.append(p)
    entries = discover(flat)
    diagnostics: list[Diagnostic] = []
    modules: list[ast.Module] = []
    data: dict[str, object] = {}
    data_origin: dict[str, str] = {}
    hashed: list[tuple[str, bytes]] = []
    for entry in entries:
        if entry.kind not in (POLICY, DATA):
            continue
        try:
            raw = read_bytes(entry)
            hashed.append((entry.relative, raw))
            text = decode_text(raw, entry.display)
            source = SourceFile(entry.display, text)
            if entry.kind == POLICY:
                modules.append(parse_module(text, source))
            else:
                name = entry.data_name
                if name in data_origin:
                    diagnostics.append(Diagnostic(entry.display, 0, 0,
                                                  f"data name {name!r} is also defined by {data_origin[name]}",
                                                  "data_duplicate"))
                    continue
                data_origin[name] = entry.display
                data[name] = _load_data(entry, text, source)
        except PolicyError as err:
            diagnostics.extend(err.diagnostics)
        except SyntaxProblem as problem:
            diagnostics.extend(problem.diagnostics)
    policy_set, check_diagnostics = check(modules, data)
    diagnostics.extend(check_diagnostics)
    if diagnostics:
        order = {e.display: i for i, e in enumerate(entries)}
        diagnostics.sort(key=lambda d: (order.get(d.file, -1), d.line, d.column))
        raise PolicyError(diagnostics)
    return Engine(policy_set, revision(hashed), entries, backend)


def _load_data(entry: SourceEntry, text: str, source: SourceFile) -> object:
    value = load_json(text, source) if entry.path.name.endswith(".json") else load_yaml(text, source)
    try:
        return normalize_value(value, f"data.{entry.data_name}") if value is not None else {}
    except RequestError as err:
        raise PolicyError(Diagnostic(entry.display, 0, 0, str(err), "data_value")) from None
