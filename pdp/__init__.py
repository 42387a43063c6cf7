"""pdp: a policy decision point for machine-to-machine APIs.

>>> import pdp
>>> engine = pdp.load("policies/")                       # doctest: +SKIP
>>> engine.decide({"identity": {...}, "action": "read", "resource": {...}})   # doctest: +SKIP
"""

__version__ = "0.1.0"  # before the imports below: submodules read it

from .bundle import load_bundle, write_bundle
from .decision import Decision, Reason, RuleError
from .engine import Engine, load
from .errors import PolicyError, RequestError
from .explain import Explanation

__all__ = ["Decision", "Engine", "Explanation", "PolicyError", "Reason", "RequestError", "RuleError",
           "__version__", "load", "load_bundle", "write_bundle"]
