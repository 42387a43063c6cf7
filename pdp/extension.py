"""The compiled extensions (the Cython modules setup.py builds from ``pdp/**/*.pyx``), used only
when they were built from the source beside them.

In a checkout, a ``.pyx`` that changed without a rebuild (no Cython in the venv, a branch
switched or rebased) leaves the old build in place, and Python imports it as if it were
current: old C code then runs against the current Python modules, and decides differently
without a word. (A build from before the root ``token`` read ``token.claims`` on the request's
``context`` that way: ``token.claims is missing`` where every other evaluator said ``token is
missing``.) So setup.py embeds the sha256 of each ``.pyx`` in its build (``SOURCE_DIGEST``),
and a build whose digest is not that of the ``.pyx`` beside it is not used: pdp warns and runs
pure Python, as when the extension is not built. Without a ``.pyx`` beside it (an installed
wheel) a build is the one that shipped with the Python modules.
"""

from __future__ import annotations

import hashlib
import importlib
import warnings
from pathlib import Path
from types import ModuleType

#: Why an extension is not used, by module name (for the server's warning).
PROBLEMS: dict[str, str] = {}


def compiled(name: str) -> ModuleType | None:
    """The extension module ``name`` (``"pdp.runtime._ceval"``), or None when it is not built,
    does not import, or is stale (a RuntimeWarning says so, once: rebuild it)."""
    if name in PROBLEMS:
        return None
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        PROBLEMS[name] = f"the compiled extension {name} is not built or does not import ({exc})"
        return None
    problem = stale(module)
    if problem is not None:
        PROBLEMS[name] = problem
        warnings.warn(f"{problem}; using pure Python instead", RuntimeWarning, stacklevel=2)
        return None
    return module


def stale(module: ModuleType) -> str | None:
    """Why ``module`` is not a build of the ``.pyx`` beside it, or None when it is one (or when
    no ``.pyx`` is there to compare with)."""
    source = Path(module.__file__ or "").with_name(module.__name__.rpartition(".")[2] + ".pyx")
    try:
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
    except OSError:
        return None
    if getattr(module, "SOURCE_DIGEST", None) == digest:
        return None
    return (f"the compiled extension {module.__name__} was built from another version of {source}; "
            f"rebuild it with Cython installed (python setup.py build_ext --inplace)")
