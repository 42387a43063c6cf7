"""Argument types shared by the subcommands (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse


def positive(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def percent(text: str) -> float:
    """A percentage between 0 and 100 (a trailing ``%`` is allowed)."""
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"a percentage is between 0 and 100, got {text}")
    return value


def duration(text: str) -> float:
    """A duration as the policy language writes it (``30s``, ``1m30s``, ``500ms``), in seconds."""
    from ..syntax.literals import parse_duration

    try:
        return float(parse_duration(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
