"""`snakemake --report` on the tiny run: every figure and table with its caption, the workflow
description and the configuration that produced them."""

from __future__ import annotations

import html
import re

import pytest
import yaml

from conftest import REPO, TINY, snakemake

pytestmark = pytest.mark.slow

REPORT_DIR = REPO / "workflow" / "report"


def _captions() -> dict[str, str]:
    """Caption files named by `report(..., caption=...)` in the rules -> their text."""
    names = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        names |= set(re.findall(r'caption="\.\./report/([\w.-]+\.rst)"', smk.read_text()))
    return {n: (REPORT_DIR / n).read_text() for n in sorted(names)}


def _plain_phrase(rst: str) -> str:
    """The caption's longest stretch of plain words (no markup, templating or non-ASCII),
    whitespace-normalised: text the rendered report must contain verbatim."""
    text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|``.*?``|`.*?`_?", "|", rst, flags=re.S)
    runs = re.findall(r"[A-Za-z0-9 ,.:;()%/-]+", " ".join(text.split()))
    return max((r.strip(" ,.:;") for r in runs), key=len, default="")


def test_captions_exist_and_name_the_configuration():
    captions = _captions()
    assert "accuracy_table.rst" in captions
    for name, text in captions.items():
        assert len(_plain_phrase(text)) >= 20, f"{name} should say in words what it shows: {text[:80]!r}"
        assert "config" in text.lower(), f"{name} should say which configuration produced the result"


def test_report_has_every_figure_table_caption_and_the_config(tiny_run, tmp_path):
    report = tmp_path / "report.html"
    snakemake(tiny_run, "--report", str(report))
    assert report.stat().st_size > 10_000
    text = report.read_text(errors="replace")
    plain = html.unescape(text).replace("\\n", " ").replace('\\"', '"')
    results = tiny_run / "results"
    figures = sorted(p.name for p in (results / "figures").iterdir())
    tables = sorted(p.name for p in (results / "tables").glob("*.csv"))
    assert figures and tables
    missing = [n for n in figures + tables if n not in text]
    assert not missing, f"not in the report: {missing}"
    for name, caption in _captions().items():
        phrase = _plain_phrase(caption)
        assert phrase in " ".join(plain.split()), f"caption {name} ({phrase!r}) is not in the report"
    # the workflow description and the configuration it embeds (with defaults filled in)
    assert "When Does Label Smoothing Help?" in plain
    # the claims report on the first page (the workflow description), before the configuration
    first_page = " ".join(plain.split())
    assert "Did this run reproduce the paper?" in first_page
    assert first_page.index("Did this run reproduce the paper?") < first_page.index("The configuration that produced")
    cfg = yaml.safe_load(TINY.read_text())
    assert f'"steps": {cfg["recipes"]["tiny"]["steps"]}' in plain
    assert '"gpus_per_job":' in plain  # a schema default the tiny config leaves out
