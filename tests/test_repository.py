"""The repository stands alone and says how to install and cite it: no path points outside the
checkout, the licence and citation files agree with pyproject.toml, the lock file pins what the
loose requirements admit."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest
import yaml

from conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _tracked_git() -> bool:
    return shutil.which("git") is not None and (REPO / ".git").exists()


@pytest.mark.skipif(not _tracked_git(), reason="not a git checkout")
def test_no_tracked_file_points_outside_the_repository():
    """A fresh clone has no ../shared (the development machines' data and notes): nothing outside tests/
    and .ci/ (which take such folders from the environment, see tests/conftest.py) may name it."""
    proc = subprocess.run(["git", "grep", "-n", "-I", "-F", "../shared", "--", ".", ":!tests", ":!.ci"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr  # 1: no match
    assert proc.stdout == "", "paths outside the repository:\n" + proc.stdout


def test_license_is_mit_as_pyproject_says():
    assert PROJECT["license"] == "MIT"
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "lspipe contributors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def test_citation_cites_lspipe_and_the_paper():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["title"] == PROJECT["name"]
    assert str(cff["version"]) == PROJECT["version"] and cff["license"] == PROJECT["license"]
    paper = cff["preferred-citation"]
    assert paper["type"] == "conference-paper"
    assert [a["family-names"] for a in paper["authors"]] == ["Müller", "Kornblith", "Hinton"]
    assert paper["title"] == "When Does Label Smoothing Help?" and paper["year"] == 2019
    assert "Neural Information Processing Systems" in paper["collection-title"]


def _pins(path):
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, ver = line.partition("==")
            assert ver, f"{path.name}: not an exact pin: {line}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = ver
    return pins


def test_lock_file_pins_what_pyproject_admits():
    """requirements-lock.txt: exact versions (pip freeze) of every dependency, each inside pyproject's range."""
    from packaging.requirements import Requirement

    pins = _pins(REPO / "requirements-lock.txt")
    assert "lspipe" not in pins  # the package itself comes from the checkout: pip install --no-deps -e .
    for spec in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"]:
        req = Requirement(spec)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"requirements-lock.txt lacks {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (spec, pins[name])


def test_torch_is_a_range_not_a_pin():
    """A cluster's own CUDA build of torch (>= 2.4) satisfies the requirements, so pip keeps it."""
    from packaging.requirements import Requirement

    reqs = {Requirement(d).name: Requirement(d) for d in PROJECT["dependencies"]}
    for name, old, new in (("torch", "2.4.0", "2.14.1"), ("torchvision", "0.19.0", "0.29.1")):
        assert reqs[name].specifier.contains(old) and reqs[name].specifier.contains(new), reqs[name]
