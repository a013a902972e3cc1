"""Configuration validation: the JSON schema in ``workflow/schemas/config.schema.yaml`` plus the
cross-references a schema cannot express (a teacher's dataset and recipe must exist, ...).

Errors name the offending key as a dotted path (``teachers[0].alphas[2]``), what was found and
what is allowed, so the fix is obvious. Defaults from the schema are filled in. The experiments'
own checks come after these, in :func:`lspipe.workflow.plan.build`, where validation starts.
"""

from __future__ import annotations

import copy
import os
import reprlib
from pathlib import Path
from typing import Any, Iterable

import yaml
from jsonschema import Draft202012Validator, validators

from lspipe.base.args import non_finite
from lspipe.base.defaults import SCHEMA_PATH, _resolve  # the schema file and its one $ref resolver
from lspipe.base.errors import ConfigError
from lspipe.core.recipe import Recipe


def _with_defaults(cls):
    validate_props = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return validators.extend(cls, {"properties": set_defaults})


_Validator = _with_defaults(Draft202012Validator)


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last one
    silently: a second ``recipes:`` block would replace the first). Keys merged in with ``<<`` may
    be overridden, as YAML intends."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                mark = key_node.start_mark
                try:
                    seen = first.setdefault(key, (mark.line, mark.column))
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if seen != (mark.line, mark.column):  # another node (one node may be constructed twice)
                    at = f"line {mark.line + 1}" if seen[0] != mark.line else f"line {mark.line + 1}, column {mark.column + 1}"
                    was = f"line {seen[0] + 1}" if seen[0] != mark.line else f"column {seen[1] + 1}"
                    raise ConfigError(
                        f"duplicate key {excerpt(key)} in {mark.name}, {at} (first at {was}): YAML would silently "
                        "keep only the second; merge the two into one"
                    )
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path):
    """The content of a YAML (or JSON) config file, refusing duplicate keys (:class:`ConfigError`)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_StrictLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None


def _path(error) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


_EXCERPT = reprlib.Repr()
for _k, _v in dict(maxlevel=2, maxtuple=3, maxlist=3, maxarray=3, maxdict=3, maxset=3, maxstring=40, maxother=40,
                   maxlong=40).items():
    setattr(_EXCERPT, _k, _v)
MAX_MESSAGE = 300  # characters of one problem's line: a value is quoted as a short excerpt (a YAML bomb expands to MBs)


def excerpt(value) -> str:
    """A short ``repr`` of ``value`` (nested lists and mappings cut with ``...``), for error messages."""
    return _EXCERPT.repr(value)


def _short_message(error) -> str:
    """``error.message`` with the value it quotes cut to an :func:`excerpt`, and at most
    :data:`MAX_MESSAGE` characters."""
    message = error.message
    if len(message) > MAX_MESSAGE:
        message = message.replace(repr(error.instance), excerpt(error.instance))
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE - 5] + " ..."


def _describe(error) -> str:
    where = _path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        if allowed:
            return f"unknown key(s) {extra} under '{where}'; allowed keys: {allowed}"
        return f"'{where}': {error.message}"
    if error.validator == "enum":
        return f"'{where}' is {excerpt(error.instance)}; allowed values: {error.validator_value}"
    if error.validator == "required":
        return f"'{where}' is missing a required key: {_short_message(error)}"
    hint = " ".join(str(error.schema.get("description") or "").split())  # a folded description ends in a newline
    return f"'{where}': {_short_message(error)}" + (f" ({hint})" if hint else "")


_SCALARS = {"number": (int, float), "integer": (int,), "boolean": (bool,), "null": (type(None),),
            "array": (list,), "object": (dict,)}


def coerce(instance, schema: dict, root: dict | None = None):
    """Turn strings into the numbers, booleans, lists or mappings the schema expects.

    Snakemake passes nested ``--config`` values (``--config 'calibration={bins: 10}'``) as
    strings; a string is parsed as YAML only where the schema does not allow a string there and
    the parsed value has an allowed type. Everything else is returned unchanged.
    """
    root = schema if root is None else root
    schema = _resolve(schema, root)
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if isinstance(instance, str) and types and "string" not in types and "enum" not in schema:
        try:
            parsed = yaml.safe_load(instance)
        except yaml.YAMLError:
            return instance
        if any(isinstance(parsed, _SCALARS[t]) and not (t in ("number", "integer") and isinstance(parsed, bool))
               for t in types if t in _SCALARS):
            instance = parsed
    if isinstance(instance, str) and not types:  # a choice of schemas (oneOf / anyOf): the first that converts it
        for branch in schema.get("oneOf", []) + schema.get("anyOf", []):
            converted = coerce(instance, branch, root)
            if converted is not instance:
                return converted
    if isinstance(instance, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        return {k: coerce(v, props[k], root) if k in props else
                (coerce(v, extra, root) if isinstance(extra, dict) else v) for k, v in instance.items()}
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [coerce(v, schema["items"], root) for v in instance]
    return instance


def validate(config: dict, schema: dict | None = None) -> dict:
    """Validate ``config`` against the schema and check the references between its sections, in place
    (filling defaults); return it or raise :class:`ConfigError`. The experiments' own checks are
    :func:`lspipe.workflow.plan.build`'s, which calls this first.

    Strings where the schema wants numbers, booleans or lists (from ``--config``) are converted
    first (:func:`coerce`).
    """
    schema = load_schema() if schema is None else schema
    _check_size(config)
    coerced = coerce(config, schema)
    config.clear()
    config.update(coerced)
    _check_size(config)
    _check_numbers(config)
    _check_renamed_keys(config)
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n  - ".join(_describe(e) for e in errors)
        raise ConfigError(f"invalid lspipe config ({len(errors)} problem(s)):\n  - {lines}")
    _check_references(config)
    return config


def _zeros(value, seen: set | None = None) -> None:
    """Write every -0.0 of a config (nested mappings and lists, each looked at once) as 0.0: one number,
    one run name (-0.0 would name a run ``a-0``)."""
    seen = set() if seen is None else seen
    if not isinstance(value, (dict, list)) or id(value) in seen:
        return
    seen.add(id(value))
    for k, v in list(value.items() if isinstance(value, dict) else enumerate(value)):
        if isinstance(v, float) and v == 0.0:
            value[k] = 0.0
        else:
            _zeros(v, seen)


MAX_VALUES = 100_000  # values in a whole config: far more than any grid, far fewer than a YAML bomb expands to


def _expanded(value, memo: dict) -> int:
    """How many values ``value`` holds once YAML aliases are expanded (each shared list counted each
    time it is reached, but computed once)."""
    if not isinstance(value, (dict, list)):
        return 1
    if id(value) not in memo:
        memo[id(value)] = 0  # a cycle (not from YAML) counts once
        memo[id(value)] = 1 + sum(_expanded(v, memo) for v in (value.values() if isinstance(value, dict) else value))
    return memo[id(value)]


def _check_size(cfg: dict) -> None:
    """Refuse a config that expands to more than :data:`MAX_VALUES` values (a "billion laughs" YAML bomb:
    a 1 KB file of nested aliases), naming where, before anything walks or quotes the expansion."""
    memo: dict = {}
    total = _expanded(cfg, memo)
    if total <= MAX_VALUES:
        return
    path, node = "", cfg
    while isinstance(node, dict):  # down the keys of the largest expansion, to the key that holds it
        big = max(node.items(), key=lambda kv: _expanded(kv[1], memo), default=None)
        if big is None or _expanded(big[1], memo) <= MAX_VALUES:
            break
        k, node = big
        path = f"{path}.{k}" if path else str(k)
    raise ConfigError(f"invalid lspipe config: '{path or '<top level>'}' expands to {_expanded(node, memo):,} values "
                      f"(nested YAML aliases: the whole config to {total:,}; at most {MAX_VALUES:,} are read); write "
                      "the values out")


def _check_numbers(cfg: dict) -> None:
    """Refuse NaN and infinity wherever the config holds a number (:func:`lspipe.base.args.non_finite`),
    and write -0.0 as 0.0."""
    bad = non_finite(cfg)
    if bad:
        lines = "\n  - ".join(f"'{p}' is not a finite number (NaN or infinity): give a number" for p in bad)
        raise ConfigError(f"invalid lspipe config ({len(bad)} problem(s)):\n  - {lines}")
    _zeros(cfg)


def check_config_args(entries: Iterable[str] | None) -> None:
    """Refuse duplicate keys in Snakemake's ``--config KEY=VALUE`` arguments, as in config files: a key
    given twice in one value (``recipes={tiny: {steps: 5, steps: 7}}``) or one top-level key given in two
    arguments. Snakemake reads them itself and keeps the last silently. Values that are not YAML are
    left to Snakemake (it reads them as text)."""
    first: dict[str, str] = {}
    for entry in entries or ():
        key, sep, value = str(entry).partition("=")
        if not sep:
            continue
        if key in first:
            raise ConfigError(f"--config gives {key!r} twice ({excerpt(first[key])} and {excerpt(entry)}): Snakemake "
                              "would silently keep only the second; give it once")
        first[key] = entry
        try:
            yaml.load(value, Loader=_StrictLoader)
        except ConfigError as err:
            raise ConfigError(f"--config {key}=...: {err}".replace(" in <unicode string>,", " in its value,")) from None
        except yaml.YAMLError:
            pass


def _check_renamed_keys(cfg: dict) -> None:
    """Keys of earlier versions get an error naming their replacement (not just "unknown key")."""
    entries = cfg.get("distillation")
    for i, d in enumerate(entries if isinstance(entries, list) else []):
        if isinstance(d, dict) and "hinton" in d:
            raise ConfigError(
                f"distillation[{i}].hinton was replaced by distillation[{i}].form: write 'form: hinton' for "
                f"hinton: true (student at T, soft term x T^2) or 'form: teacher' for hinton: false (the default: "
                f"only the teacher at T); 'form: slides' is the slides' formula (student at T, no T^2)"
            )
    claims = cfg.get("claims")
    if isinstance(claims, dict) and "mi_margin" in claims:
        raise ConfigError(
            "claims.mi_margin was replaced: claim 5's margin is now claims.mi_noise_multiple times the MI noise sd "
            "the probe measures (two independent augmentation draws at each step); remove claims.mi_margin"
        )


def _check_references(cfg: dict) -> None:
    from lspipe.core import models  # torch: only when a config is checked, not for every command

    problems = []
    results = cfg["results"]
    if os.path.abspath(results) == os.sep or (os.path.exists(results) and os.path.samefile(results, os.sep)):
        problems.append(f"results {cfg['results']!r} is the file system's root: every output would be written "
                        "(and deleted) there; set results to a folder of its own, e.g. results: results")
    else:
        problems += _shared_results_folder(results)
    datasets, recipes = cfg["datasets"], cfg["recipes"]
    for name, d in datasets.items():
        if d["source"] in ("cifar10", "cifar100", "mnist", "imagefolder") and not d.get("root"):
            problems.append(f"datasets.{name}.root is required for source {d['source']!r} (the data folder)")
    for name, r in recipes.items():
        problem = Recipe(**r).schedule_problem()  # the keys are the schema's, checked above
        if problem:
            problems.append(f"recipes.{name}: {problem}")
    groups = {}
    for i, t in enumerate(cfg["teachers"]):
        key = (t["dataset"], t["arch"])
        if key in groups:
            problems.append(f"teachers[{i}] repeats dataset/arch {key} of teachers[{groups[key]}]; merge their alphas and seeds")
        groups[key] = i
        if t["dataset"] not in datasets:
            problems.append(f"teachers[{i}].dataset {t['dataset']!r} is not defined under datasets (have: {sorted(datasets)})")
        if t["recipe"] not in recipes:
            problems.append(f"teachers[{i}].recipe {t['recipe']!r} is not defined under recipes (have: {sorted(recipes)})")
        if not models.is_known(t["arch"]):
            problems.append(f"teachers[{i}].arch {t['arch']!r} is unknown; available: {models.available()}")
    for i, d in enumerate(cfg.get("distillation", [])):
        where = f"distillation[{i}]"
        key = (d["dataset"], d["teacher_arch"])
        if key not in groups:
            problems.append(f"{where}: no teacher grid for dataset {d['dataset']!r} and arch {d['teacher_arch']!r} under teachers")
        else:
            t = cfg["teachers"][groups[key]]
            missing = sorted(set(d["teacher_alphas"]) - set(t["alphas"]))
            if missing:
                problems.append(f"{where}.teacher_alphas {missing} are not in teachers[{groups[key]}].alphas {t['alphas']}; add them there")
            if 0 not in t["alphas"]:
                problems.append(f"{where}: the hard-target teacher (alpha 0) is missing from teachers[{groups[key]}].alphas")
            missing_seeds = sorted(set(d["seeds"]) - set(t["seeds"]))
            if missing_seeds:
                problems.append(f"{where}.seeds {missing_seeds} have no teacher of the same seed in teachers[{groups[key]}].seeds")
        if d["student_recipe"] not in recipes:
            problems.append(f"{where}.student_recipe {d['student_recipe']!r} is not defined under recipes")
        if not models.is_known(d["student_arch"]):
            problems.append(f"{where}.student_arch {d['student_arch']!r} is unknown; available: {models.available()}")
    for i, r in enumerate(cfg.get("projections", {}).get("rows", [])):
        key = (r["dataset"], r["arch"])
        if key not in groups:
            problems.append(f"projections.rows[{i}]: no teacher grid for {key} under teachers")
        else:
            alphas = cfg["teachers"][groups[key]]["alphas"]
            for a in (0.0, cfg["projections"]["ls_alpha"]):
                if a not in alphas:
                    problems.append(f"projections.rows[{i}] needs alpha {a} in teachers[{groups[key]}].alphas {alphas}")
    problems += run_name_collisions(cfg)
    if problems:
        raise ConfigError("invalid lspipe config:\n  - " + "\n  - ".join(problems))


# the repository's own top-level entries: a results folder holding them would mix its outputs (logs/,
# benchmarks/, data/, ...) with the repository's folders of the same names
REPOSITORY = Path(__file__).resolve().parents[2]
REPOSITORY_MARKERS = ("Snakefile", "workflow", "lspipe")


def _shared_results_folder(results: str) -> list[str]:
    """The problem of a ``results`` folder that is not a folder of its own: the working directory
    (``.``) or one above it, the repository (or one above it), or any folder holding a Snakefile or
    the workflow's folders: the outputs would be written between (and merged with) their files."""
    target = Path(os.path.abspath(results))
    real = Path(os.path.realpath(results))
    cwd = Path(os.getcwd())
    why = None
    for here, what in ((cwd, "the working directory"), (REPOSITORY, "the repository")):
        for candidate in {target, real}:
            if candidate == here or candidate in here.parents:
                why = f"is {what}" if candidate == here else f"holds {what} ({here})"
                break
        if why:
            break
    if why is None and any((real / m).exists() for m in REPOSITORY_MARKERS):
        why = "holds a Snakefile or the workflow's folders"
    if why is None:
        return []
    return [f"results {results!r} {why}: the outputs (data/, models/, logs/, benchmarks/, ...) would be written "
            "between its own files and folders; set results to a folder of its own, e.g. results: results"]


def run_name_collisions(cfg: dict) -> list[str]:
    """Numbers of one list that print alike in run names and paths (``f"{x:g}"``: 0.3 and
    0.3000001 both become ``a0.3``) would share one model: name each such pair."""
    lists = [(f"teachers[{i}].alphas", t["alphas"]) for i, t in enumerate(cfg["teachers"])]
    for i, d in enumerate(cfg.get("distillation", [])):
        lists += [(f"distillation[{i}].{k}", d[k]) for k in ("teacher_alphas", "baseline_alphas", "temperatures")
                  if d.get(k)]
    problems = []
    for where, values in lists:
        seen: dict[str, tuple[int, Any]] = {}
        for j, v in enumerate(values):
            text = f"{float(v):g}"
            if text in seen and float(seen[text][1]) != float(v):
                k, w = seen[text]
                problems.append(f"{where}[{k}] = {w!r} and {where}[{j}] = {v!r} both map to the run name "
                                f"'{text}' (numbers are written with 6 significant digits); make them differ there")
            seen.setdefault(text, (j, v))
    return problems
