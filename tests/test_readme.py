"""The README's copy-paste configuration for a dataset of one's own plans as the README says, run
from a folder of one's own with `snakemake -s <clone>/Snakefile --configfile my.yaml -n`."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from conftest import REPO, planned_jobs, snakemake


def readme_config() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"```yaml\n(# my\.yaml\n.*?)```", text, re.S)
    assert m, "the README's own-dataset configuration (a ```yaml block starting with '# my.yaml') is gone"
    return m.group(1)


def _tree(root, classes=("cat", "dog", "bird"), per_class=12, side=64):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        folder = root / "train" / c
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.mark.slow
def test_the_readme_own_dataset_config_plans_every_experiment(tmp_path):
    cfg = yaml.safe_load(readme_config())
    tree = tmp_path / "mine"
    _tree(tree)
    cfg["datasets"]["mine"]["root"] = str(tree)
    work = tmp_path / "project"  # the user's own folder, not the clone
    work.mkdir()
    (work / "my.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(work, "-n", "--configfile", str(work / "my.yaml"))
    jobs = planned_jobs(proc)
    # every experiment the README's table promises for these keys
    for rule in ("prepare_data", "train_teacher", "accuracy_table", "calibration_table", "reliability_figure",
                 "projections_figure", "distillation_figure", "mi_figure", "learning_curves_figure", "claims",
                 "experiments_table"):
        assert jobs.get(rule), (rule, jobs)
    assert jobs["train_teacher"] == 3 * 3  # alphas x seeds
