"""Access to values — ``x.name`` and ``x[key]`` — and the wording of their errors and of the
boolean checks: one implementation that every evaluator (reference, pure-Python, compiled) and
the compiler's constant folding call, so none can word an error differently."""

from __future__ import annotations

from .errors import EvalError
from .values import quote_key, type_name


def index_value(obj: object, key: object, obj_text: str) -> object:
    """``obj[key]``: a map by string key, or a list by integer position."""
    if isinstance(obj, dict):
        if not isinstance(key, str):
            raise EvalError(f"a map index must be a string, got {type_name(key)}")
        if key not in obj:
            raise EvalError(f"{obj_text}[{quote_key(key)}] is missing")
        return obj[key]
    if isinstance(obj, list):
        if not isinstance(key, int) or isinstance(key, bool):
            raise EvalError(f"a list index must be an integer, got {type_name(key)}")
        if not 0 <= key < len(obj):
            raise EvalError(f"{obj_text}[{key}] is out of range (length {len(obj)})")
        return obj[key]
    raise EvalError(f"{obj_text} is a {type_name(obj)}, not a map or list")


def not_a_map(text: str, value: object) -> str:
    return f"{text} is a {type_name(value)}, not a map"


def missing(text: str) -> str:
    return f"{text} is missing"


def not_boolean(what: str, value: object, plural: bool = False) -> str:
    return f"{what} expects {'booleans' if plural else 'a boolean'}, got {type_name(value)}"
