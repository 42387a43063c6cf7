"""Data files: ``NAME.data.yaml|yml|json`` text ⇒ the checked value of ``data.NAME``.

The value must be one a request could hold (SPEC §1.1): no null inside a list, integers within
64 bits, nesting within the request limit. ``pdp.request.normalize_value`` is the one judge of
that; when it refuses a value, the value is found again to give the error its line and column.
"""

from __future__ import annotations

from .errors import RequestError
from .request import MAX_DEPTH, normalize_value
from .source import SourceFile
from .yamlio import load_json, load_yaml, value_error


def load_data(name: str, text: str, source: SourceFile, *, is_json: bool) -> object:
    """The value of ``data.NAME`` (an empty file is ``{}``); raises a positioned ``PolicyError``."""
    value = load_json(text, source) if is_json else load_yaml(text, source)
    if value is None:
        return {}
    try:
        return normalize_value(value, f"data.{name}")
    except RequestError as err:
        raise value_error(text, source, _bad_value_keys(value), str(err), "data_value", is_json=is_json) from None


def _bad_value_keys(value: object) -> list[str | int]:
    """The keys from the root down to the value ``normalize_value`` refuses first (error path only).

    It descends into the first child that ``normalize_value`` refuses, as its own walk would
    meet it; a container it refuses whose children all pass is refused for itself (too deep,
    or a key that is not Unicode).
    """
    keys: list[str | int] = []
    depth = 0
    while isinstance(value, (dict, list)) and depth < MAX_DEPTH:
        is_map = isinstance(value, dict)
        for key, child in value.items() if is_map else enumerate(value):
            if is_map and not _encodable(key):
                return [*keys, key]
            if child is None:
                if is_map:
                    continue  # absent
                return [*keys, key]
            try:
                normalize_value(child, "", depth + 1)
            except RequestError:
                keys.append(key)
                value = child
                depth += 1
                break
        else:
            break
    return keys


def _encodable(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
