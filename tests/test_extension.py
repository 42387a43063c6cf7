"""Compiled extensions are used only when built from the ``.pyx`` beside them (pdp/extension.py).

A stale build once decided in a worktree whose ``_ceval.pyx`` had gained the root ``token``:
the old C code read ``token.claims`` on ``context``, so the compiled evaluator said ``token.claims
is missing`` where the others said ``token is missing`` (tests/test_bundle.py's property test
caught it, intermittently, as only that worktree's build was stale).
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path

import pytest

from pdp import extension

REPO = Path(__file__).resolve().parents[1]
EXTENSIONS = ["pdp.runtime._ceval", "pdp.limits._memory"]


@pytest.mark.parametrize("name", EXTENSIONS)
def test_a_build_carries_the_digest_of_the_source_it_was_built_from(name):
    try:
        module = importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not built here")
    source = REPO / (name.replace(".", "/") + ".pyx")
    assert module.SOURCE_DIGEST == hashlib.sha256(source.read_bytes()).hexdigest()
    assert extension.stale(module) is None


@pytest.fixture
def fake_extension(tmp_path, monkeypatch):
    """``make(module_text, pyx_text or None)`` ⇒ the name of a module importable from tmp_path
    (a Python file standing in for a build) with that ``.pyx`` beside it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made: list[str] = []

    def make(module_text: str, pyx_text: str | None) -> str:
        name = f"fake_ext{len(made)}"
        (tmp_path / f"{name}.py").write_text(module_text)
        if pyx_text is not None:
            (tmp_path / f"{name}.pyx").write_text(pyx_text)
        made.append(name)
        return name

    yield make
    for name in made:
        sys.modules.pop(name, None)
        extension.PROBLEMS.pop(name, None)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_build_of_its_own_source_is_used(fake_extension):
    name = fake_extension(f"SOURCE_DIGEST = {_digest('new')!r}\n", "new")
    assert extension.compiled(name) is sys.modules[name]
    assert name not in extension.PROBLEMS


@pytest.mark.parametrize("module_text", [f"SOURCE_DIGEST = {_digest('old')!r}\n",
                                         "# built before builds carried a digest\n"])
def test_a_build_of_another_source_is_not_used(fake_extension, module_text):
    name = fake_extension(module_text, "new")
    with pytest.warns(RuntimeWarning, match=f"{name} was built from another version of .*{name}.pyx; rebuild it"):
        assert extension.compiled(name) is None
    assert "rebuild it with Cython installed" in extension.PROBLEMS[name]
    assert extension.compiled(name) is None  # said once


def test_a_build_without_its_source_beside_it_is_used(fake_extension):
    """An installed wheel: the build shipped with the Python modules."""
    name = fake_extension("SOURCE_DIGEST = ''\n", None)
    assert extension.compiled(name) is sys.modules[name]


def test_a_missing_build_is_none_with_the_reason(fake_extension):
    assert extension.compiled("fake_ext_not_there") is None
    assert "fake_ext_not_there is not built or does not import" in extension.PROBLEMS.pop("fake_ext_not_there")
