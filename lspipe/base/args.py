"""Argument types shared by the sub-commands' parsers (argparse ``type=`` functions)."""

from __future__ import annotations

import argparse
import json


def json_arg(s: str):
    """A JSON value (a config section passed by a rule); an argparse error naming the text otherwise."""
    try:
        return json.loads(s)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {s!r}") from None


def optional_float(s: str):
    """A number, or None for ``""``, ``none``, ``None`` or ``null`` (a config value that may be null)."""
    return None if s in ("", "none", "None", "null") else float(s)
