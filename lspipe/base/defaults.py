"""The config schema (``workflow/schemas/config.schema.yaml``) as the one source of defaults.

Code that needs a default (``Recipe.from_dict``, ``ProbeRecorder``, the sub-commands' argparse
options) reads it here instead of spelling it again, so a default is changed in the schema only.
A schema key is named by a dotted path: ``dump.chunk_rows``; ``*`` for a mapping's values
(``recipes.*.batch_size``) and ``[]`` after a list (``teachers[].probe.copies``).

Only ``yaml`` is imported (not ``jsonschema``): every CLI call builds its parser from these.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


@functools.lru_cache(maxsize=None)
def _schema() -> dict:
    return yaml.load(SCHEMA_PATH.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _resolve(node: dict, root: dict) -> dict:
    while "$ref" in node and node["$ref"].startswith("#/"):
        target = root
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def node(path: str) -> dict:
    """The schema of the key at ``path`` (``recipes.*``, ``teachers[].probe``)."""
    root = _schema()
    out = root
    for part in path.split("."):
        items = part.endswith("[]")
        name = part[:-2] if items else part
        out = _resolve(out, root)
        out = out["additionalProperties"] if name == "*" else out["properties"][name]
        if items:
            out = _resolve(out, root)["items"]
    return _resolve(out, root)


def default(path: str) -> Any:
    """The schema's default of the key at ``path`` (a copy); KeyError if it has none."""
    return copy.deepcopy(node(path)["default"])


def _fill(instance: dict, schema: dict, root: dict) -> None:
    for prop, sub in _resolve(schema, root).get("properties", {}).items():
        if "default" in sub and prop not in instance:
            instance[prop] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(prop), dict):
            _fill(instance[prop], sub, root)


def fill(path: str, given: dict | None = None) -> dict:
    """A copy of ``given`` with the schema's defaults of the object at ``path`` filled in, nested
    objects included (as config validation fills them): ``fill("recipes.*", {"steps": 10})``."""
    out = copy.deepcopy(dict(given or {}))
    _fill(out, node(path), _schema())
    return out
