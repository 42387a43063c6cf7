"""The one backend switch: the Cython evaluator (``_ceval``) when it is built, else pure Python.

``PDP_PUREPYTHON=1`` forces the pure-Python evaluator. Both take a compiled Program and
return the same Decisions; ``BACKEND`` says which one runs ("compiled" or "python").
"""

from __future__ import annotations

import os

from .. import extension
from . import pyeval

# Not built, not importable, or built from another _ceval.pyx than the one beside it (stale).
_ceval = None if os.environ.get("PDP_PUREPYTHON") == "1" else extension.compiled("pdp.runtime._ceval")

EVALUATORS = {"python": pyeval.Evaluator}
if _ceval is not None:
    EVALUATORS["compiled"] = _ceval.Evaluator

BACKEND = "compiled" if _ceval is not None else "python"
Evaluator = EVALUATORS[BACKEND]

__all__ = ["BACKEND", "EVALUATORS", "Evaluator"]
