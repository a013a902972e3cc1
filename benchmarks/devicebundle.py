"""The wheels a lent GPU machine lacks, for ``benchmarks/device-bundle.sh`` and ``benchmarks/device-run.sh``.

The lent machine (``/work/.library/device``: Python 3.12 on x86-64 Linux, no internet) holds torch,
torchvision, numpy, scipy, h5py and matplotlib but not Snakemake. The bundle is every distribution
that lspipe's runtime requirements (``pyproject.toml``) pull in, walked through the requirement
metadata of the distributions installed here, with markers evaluated for that machine, and pinned to
the versions installed here, except:

* ``PROVIDED``: the machine's own scientific stack. The walk stops there, so the bundle never
  shadows the compiled packages torch runs with there (their own requirements are not bundled
  either); what the bundle requires of them is recorded (``from_device``) and checked there.
* ``CLUSTER_ONLY``: the SLURM executor plugin; the check runs Snakemake locally.

Everything else is bundled even where the machine has some version of it (PyYAML, tqdm,
scikit-learn, ...), so the check runs there with the versions tested here. The wheels are
installed with ``pip install --no-index --no-deps --target SITE``, SITE first on ``PYTHONPATH``:
nothing installed there is replaced.

    python benchmarks/devicebundle.py build --dest .whl      # pin, download, check; writes .whl/bundle.json
    python benchmarks/devicebundle.py check-env --bundle .whl/bundle.json   # in the environment that runs the check

Only the standard library and ``packaging`` (a requirement of Snakemake and matplotlib, so always
installed with lspipe, and in the bundle) are imported.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

PROVIDED = ("torch", "torchvision", "numpy", "scipy", "h5py", "matplotlib")
CLUSTER_ONLY = ("snakemake-executor-plugin-slurm",)
TARGET_PYTHON = (3, 12)
# The lent machine: CPython 3.12 on x86-64 Linux. Its torch wheels need glibc >= 2.28, so
# manylinux wheels up to 2.28 are certain to load there (and here, where the install is tested).
MAX_GLIBC_MINOR = 28
TARGET_MARKERS = {
    "python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
    "implementation_version": "3.12.3", "platform_python_implementation": "CPython", "os_name": "posix",
    "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
    "platform_release": "", "platform_version": "",
}
BUNDLE_FILE = "bundle.json"


def platforms() -> list[str]:
    """The platform tags the machine accepts, newest first (pip needs each manylinux_2_N named)."""
    tags = [f"manylinux_2_{n}_x86_64" for n in range(MAX_GLIBC_MINOR, 4, -1)]
    return tags + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def supported_tags() -> set[Tag]:
    abi = f"cp{TARGET_PYTHON[0]}{TARGET_PYTHON[1]}"
    plats = platforms()
    return set(cpython_tags(TARGET_PYTHON, abis=[abi], platforms=plats)) | set(
        compatible_tags(TARGET_PYTHON, interpreter=abi, platforms=plats))


def wheel_problem(filename: str, tags: set[Tag] | None = None) -> str | None:
    """Why a wheel file cannot be installed on the machine (``None`` if it can)."""
    try:
        _, _, _, wheel_tags = parse_wheel_filename(filename)
    except Exception as err:  # noqa: BLE001 - packaging raises several types
        return f"not a wheel file name ({err})"
    if wheel_tags & (tags if tags is not None else supported_tags()):
        return None
    return ("built for " + ", ".join(sorted(map(str, wheel_tags)))
            + f", not CPython {TARGET_PYTHON[0]}.{TARGET_PYTHON[1]} on manylinux x86-64 (glibc <= 2.{MAX_GLIBC_MINOR})")


# --------------------------------------------------------------------------- the closure


@dataclass
class Dist:
    version: str
    requires: list[str]


Lookup = Callable[[str], "Dist | None"]


def installed(name: str) -> Dist | None:
    """The distribution installed in this environment (``importlib.metadata``), or ``None``."""
    import importlib.metadata as md

    try:
        d = md.distribution(name)
    except md.PackageNotFoundError:
        return None
    return Dist(d.version, list(d.requires or []))


def active(req: Requirement, extras: Iterable[str], env: dict) -> bool:
    """Whether ``req`` applies on ``env`` when its requirer was asked for with ``extras``."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": e}) for e in (sorted(extras) or [""]))


@dataclass
class Closure:
    pins: dict[str, str] = field(default_factory=dict)          # bundled: name -> version
    required_by: dict[str, list[str]] = field(default_factory=dict)
    from_device: dict[str, list[str]] = field(default_factory=dict)  # provided name -> ["requirer: spec"]
    missing: list[str] = field(default_factory=list)            # needed but not installed here
    unsatisfied: list[str] = field(default_factory=list)        # installed here at a version a requirer excludes


def closure(roots: Iterable[str], lookup: Lookup = installed, env: dict | None = None,
            provided: Iterable[str] = PROVIDED, excluded: Iterable[str] = CLUSTER_ONLY) -> Closure:
    """Walk the requirements of ``roots`` (requirement strings) through ``lookup``'s metadata."""
    env = {**TARGET_MARKERS, **(env or {})}
    provided = {canonicalize_name(p) for p in provided}
    excluded = {canonicalize_name(p) for p in excluded}
    out = Closure()
    seen: set[tuple[str, frozenset]] = set()
    todo: list[tuple[Requirement, str]] = [(Requirement(r), "pyproject.toml") for r in roots]
    while todo:
        req, requirer = todo.pop(0)
        name = canonicalize_name(req.name)
        if name in excluded or (requirer == "pyproject.toml" and not active(req, [], env)):
            continue
        spec = f"{requirer}: {req.name}{req.specifier}" if str(req.specifier) else f"{requirer}: {req.name}"
        if name in provided:
            out.from_device.setdefault(name, [])
            if spec not in out.from_device[name]:
                out.from_device[name].append(spec)
            continue
        out.required_by.setdefault(name, [])
        if requirer not in out.required_by[name]:
            out.required_by[name].append(requirer)
        dist = lookup(req.name)
        if dist is None:
            if name not in out.missing:
                out.missing.append(name)
            continue
        if not req.specifier.contains(Version(dist.version), prereleases=True):
            out.unsatisfied.append(f"{name} {dist.version} is installed here but {spec}")
        out.pins[name] = dist.version
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        for r in dist.requires:
            sub = Requirement(r)
            if active(sub, req.extras, env):
                todo.append((sub, name))
    return out


def runtime_requirements(pyproject: Path) -> list[str]:
    import tomllib

    return list(tomllib.loads(Path(pyproject).read_text())["project"]["dependencies"])


# --------------------------------------------------------------------------- the wheel folder


def files_by_name(dest: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for f in sorted(dest.glob("*.whl")):
        try:
            name = canonicalize_name(parse_wheel_filename(f.name)[0])
        except Exception:  # noqa: BLE001
            name = f.name
        out.setdefault(name, []).append(f)
    return out


def check_wheels(dest: Path, pins: dict[str, str], tags: set[Tag] | None = None) -> list[str]:
    """Problems that would stop ``pip install --no-index --no-deps`` of ``dest``'s wheels on the machine,
    or leave a pinned distribution out: one line each."""
    tags = tags if tags is not None else supported_tags()
    problems = []
    found = files_by_name(dest)
    for name, version in sorted(pins.items()):
        files = found.get(name, [])
        if not files:
            problems.append(f"{name}=={version}: no wheel in {dest}")
            continue
        if len(files) > 1:
            problems.append(f"{name}: {len(files)} wheels ({', '.join(f.name for f in files)}); pip installs one")
        for f in files:
            v = parse_wheel_filename(f.name)[1]
            if v != Version(version):
                problems.append(f"{f.name}: version {v}, pinned {version}")
            why = wheel_problem(f.name, tags)
            if why:
                problems.append(f"{f.name}: {why}")
    for name, files in sorted(found.items()):
        if name not in pins:
            problems.append(f"{', '.join(f.name for f in files)}: not in the bundle's pins (remove it)")
    return problems


def pip_download(pins: dict[str, str], dest: Path, python: str = sys.executable) -> None:
    """Download the wheels ``pins`` names (``--no-deps``) for the machine into ``dest``: binary wheels
    where PyPI has them, else the source distribution, built here into a wheel that must be pure Python."""
    if not pins:
        return
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reqs = tmp / "pins.txt"
        reqs.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
        cmd = [python, "-m", "pip", "download", "--no-deps", "--prefer-binary", "--disable-pip-version-check",
               "--python-version", f"{TARGET_PYTHON[0]}.{TARGET_PYTHON[1]}", "--implementation", "cp",
               "--abi", f"cp{TARGET_PYTHON[0]}{TARGET_PYTHON[1]}", "--abi", "abi3", "--abi", "none",
               *[a for p in platforms() for a in ("--platform", p)], "-d", str(tmp / "dl"), "-r", str(reqs)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            sys.exit("device-bundle: pip download failed:\n" + (proc.stdout + proc.stderr)[-3000:])
        for f in sorted((tmp / "dl").iterdir()):
            if f.name.endswith(".whl"):
                shutil.move(str(f), dest / f.name)
                continue
            # a source distribution: build the wheel here; only a pure-Python one runs there
            name = parse_sdist_filename(f.name)[0]
            proc = subprocess.run([python, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                                   "-w", str(tmp / "built"), str(f)], capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"device-bundle: building a wheel of {f.name} failed:\n" + (proc.stdout + proc.stderr)[-3000:])
            for w in (tmp / "built").glob("*.whl"):
                tags = parse_wheel_filename(w.name)[3]
                if not any(t.abi == "none" and t.platform == "any" for t in tags):
                    sys.exit(f"device-bundle: {name} has no wheel for CPython 3.12 manylinux x86-64 on PyPI and "
                             f"its source builds a platform wheel here ({w.name}) that would not run there")
                shutil.move(str(w), dest / w.name)


def build(pyproject: Path, dest: Path, python: str = sys.executable, download: bool = True) -> dict:
    """Pin the bundle from this environment, bring ``dest`` to exactly those wheels, check them and
    write ``dest/bundle.json``. Wheels already there at the pinned version are kept (no network)."""
    roots = runtime_requirements(pyproject)
    cl = closure(roots)
    if cl.missing or cl.unsatisfied:
        lines = [f"{n} (required by {', '.join(cl.required_by.get(n, []))}) is not installed here" for n in cl.missing]
        sys.exit("device-bundle: the bundle is pinned to this environment's versions, but\n  "
                 + "\n  ".join(lines + cl.unsatisfied) + f"\n  fix: pip install -e . in this environment ({sys.prefix})")
    dest.mkdir(parents=True, exist_ok=True)
    have = files_by_name(dest)
    for name, files in have.items():  # stale versions, duplicates, leftovers: pip would install them too
        keep = name in cl.pins and len(files) == 1 and parse_wheel_filename(files[0].name)[1] == Version(cl.pins[name])
        if not keep:
            for f in files:
                f.unlink()
    have = files_by_name(dest)
    todo = {n: v for n, v in cl.pins.items() if n not in have}
    if todo and not download:
        sys.exit(f"device-bundle: {len(todo)} wheels are not in {dest} and --offline was given: "
                 + ", ".join(f"{n}=={v}" for n, v in sorted(todo.items())))
    pip_download(todo, dest, python)
    problems = check_wheels(dest, cl.pins)
    if problems:
        sys.exit("device-bundle: the wheel folder would not install there:\n  " + "\n  ".join(problems))
    files = sorted(dest.glob("*.whl"))
    bundle = {
        "python": f"{TARGET_PYTHON[0]}.{TARGET_PYTHON[1]}",
        "platforms": platforms(),
        "pyproject_dependencies": roots,
        "provided_by_the_machine": list(PROVIDED),
        "left_out": list(CLUSTER_ONLY),
        "pins": dict(sorted(cl.pins.items())),
        "from_device": dict(sorted(cl.from_device.items())),
        "wheels": [f.name for f in files],
        "bytes": sum(f.stat().st_size for f in files),
        "downloaded": sorted(todo),
    }
    (dest / BUNDLE_FILE).write_text(json.dumps(bundle, indent=2) + "\n")
    return bundle


# --------------------------------------------------------------------------- in the running environment


def check_env(bundle: dict, lookup: Lookup = installed, env: dict | None = None) -> tuple[list[str], list[str]]:
    """Errors and warnings for the environment that runs the check (the machine's, after the install).

    Errors: a bundled distribution absent or at another version than pinned, or a requirement of one
    of them absent or excluded among the bundle. Warnings: a machine-provided distribution absent, or
    at a version a bundled requirer excludes (it may still work; the check's own steps will tell)."""
    from packaging.markers import default_environment

    env = {**default_environment(), **(env or {})}
    provided = {canonicalize_name(p) for p in bundle.get("provided_by_the_machine", PROVIDED)}
    errors, warnings = [], []
    for name, version in bundle["pins"].items():
        dist = lookup(name)
        if dist is None:
            errors.append(f"{name}=={version} is not importable (not installed from the bundle)")
            continue
        if Version(dist.version) != Version(version):
            errors.append(f"{name} is {dist.version} here, the bundle pins {version} (an earlier entry on sys.path?)")
        for r in dist.requires:
            req = Requirement(r)
            if not active(req, [], env):
                continue
            dep = canonicalize_name(req.name)
            got = lookup(req.name)
            where = warnings if dep in provided else errors
            if got is None:
                where.append(f"{dep} (required by {name}: {req}) is not installed")
            elif not req.specifier.contains(Version(got.version), prereleases=True):
                where.append(f"{dep} is {got.version}, but {name} requires {req}")
    return errors, warnings


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/devicebundle.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="pin, download and check the wheels; write DEST/bundle.json")
    b.add_argument("--pyproject", default="pyproject.toml")
    b.add_argument("--dest", default=".whl")
    b.add_argument("--offline", action="store_true", help="fail instead of downloading a missing wheel")
    c = sub.add_parser("check-env", help="check this environment against a bundle (after installing it)")
    c.add_argument("--bundle", required=True, help="the bundle's bundle.json")
    a = p.parse_args(argv)
    if a.cmd == "build":
        bundle = build(Path(a.pyproject), Path(a.dest), download=not a.offline)
        print(f"device-bundle: {len(bundle['wheels'])} wheels, {bundle['bytes'] / 2**20:.1f} MiB in {a.dest} "
              f"({len(bundle['downloaded'])} downloaded); relies on the machine for "
              + ", ".join(f"{n} ({'; '.join(s)})" for n, s in bundle["from_device"].items()))
        return 0
    bundle = json.loads(Path(a.bundle).read_text())
    errors, warnings = check_env(bundle)
    for w in warnings:
        print(f"check-env: warning: {w}", file=sys.stderr)
    for e in errors:
        print(f"check-env: ERROR: {e}", file=sys.stderr)
    py = ".".join(map(str, sys.version_info[:2]))
    if py != bundle["python"]:
        errors.append(f"Python {py} runs here, the bundle is for Python {bundle['python']}")
        print(f"check-env: ERROR: {errors[-1]}", file=sys.stderr)
    print(f"check-env: {'OK' if not errors else 'FAILED'}: {len(bundle['pins'])} bundled distributions, "
          f"{len(errors)} errors, {len(warnings)} warnings")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
