"""Shared test helpers: write policy files into a temporary folder and load them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import settings

import pdp

# Hypothesis's per-example deadline (200 ms) is a timing assertion: on a busy 2-core machine
# it fails examples that are merely slow. Property tests check answers; speed is benchmarked.
settings.register_profile("pdp", deadline=None)
settings.load_profile("pdp")


def write_files(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


@pytest.fixture
def make_engine(tmp_path):
    """``make_engine("policy p { ... }", data={"inventory": {...}})`` ⇒ a loaded ``pdp.Engine``.

    Each positional source becomes its own file (``p0.pdl``, ``p1.pdl``, …, loaded in that
    order); ``data`` entries become ``NAME.data.json`` files; ``files`` adds any other files.
    """
    counter = iter(range(10_000))

    def make(*sources: str, data: dict | None = None, files: dict | None = None) -> pdp.Engine:
        root = tmp_path / f"set{next(counter)}"
        root.mkdir()
        contents: dict[str, str | bytes] = {f"p{i}.pdl": s for i, s in enumerate(sources)}
        for name, value in (data or {}).items():
            contents[f"{name}.data.json"] = json.dumps(value)
        contents.update(files or {})
        write_files(root, contents)
        return pdp.load(root)

    return make


def request(identity: dict | None = None, action: str | dict = "read", resource: dict | None = None,
            context: dict | None = None) -> dict:
    """A valid request with defaults, overridden where given."""
    req = {
        "identity": {"type": "workload", "id": "svc", **(identity or {})},
        "action": action,
        "resource": {"type": "doc", "id": "d1", **(resource or {})},
    }
    if context is not None:
        req["context"] = context
    return req
