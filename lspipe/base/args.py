"""Argument types shared by the sub-commands' parsers (argparse ``type=`` functions)."""

from __future__ import annotations

import argparse
import json
import math


def json_arg(s: str):
    """A JSON value (a config section passed by a rule); an argparse error naming the text otherwise."""
    try:
        return json.loads(s)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {s!r}") from None


def optional_float(s: str):
    """A number, or None for ``""``, ``none``, ``None`` or ``null`` (a config value that may be null)."""
    return None if s in ("", "none", "None", "null") else float(s)


def non_finite(value, where: str = "", _seen: set | None = None) -> list[str]:
    """The key paths (``recipes.tiny.lr``, ``[2]``) of every NaN or infinite float in ``value`` (nested
    mappings and lists): JSON and YAML read ``NaN``, ``.nan`` and ``.inf``, and a JSON schema's bounds let
    NaN through (every comparison with NaN is false), so readers of numbers refuse them here. A list or
    mapping reached again (a YAML alias) is looked at once."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [where or "<value>"]
    if not isinstance(value, (dict, list)):
        return []
    _seen = set() if _seen is None else _seen
    if id(value) in _seen:
        return []
    _seen.add(id(value))
    items = value.items() if isinstance(value, dict) else enumerate(value)
    out = []
    for k, v in items:
        out += non_finite(v, f"{where}[{k}]" if isinstance(k, int) else (f"{where}.{k}" if where else str(k)), _seen)
    return out
