"""Config validation: errors name the key, what was found and what is allowed."""

import copy

import pytest
import yaml

from lspipe.base.errors import ConfigError
from lspipe.workflow.plan import load, validate
from conftest import REPO, synthetic_data


@pytest.fixture
def cfg():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_shipped_configs_are_valid(tmp_path):
    for path in [REPO / "config.yaml", REPO / "tests" / "tiny.yaml"]:
        c = load(path)
        assert c["results"] == "results" and c["recipes"]
    paper = yaml.safe_load((REPO / "workflow" / "presets" / "paper.yaml").read_text())
    for folder in ("cifar-10-batches-py", "cifar-100-python"):  # torchvision's copies, checked while planning
        (tmp_path / folder).mkdir()
    for d in paper["datasets"].values():  # a --configfile stands alone: config.yaml is not read with it
        d["root"] = str(tmp_path)
    validate(paper)


def test_defaults_are_filled(cfg):
    c = validate(cfg)
    assert c["recipes"]["digits"]["checkpoint_every"] == 1
    assert c["dump"]["chunk_rows"] == 1024
    assert c["datasets"]["digits"]["download"] is False


def test_unknown_key_is_named_with_allowed_keys(cfg):
    cfg["recipes"]["digits"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    msg = str(err.value)
    assert "learning_rate" in msg and "recipes.digits" in msg and "'lr'" in msg


def test_wrong_type_names_the_key(cfg):
    cfg["teachers"][0]["alphas"] = [0.0, "a tenth"]
    with pytest.raises(ConfigError, match=r"teachers\[0\]\.alphas\[1\]"):
        validate(cfg)
    cfg2 = copy.deepcopy(cfg)
    cfg2["teachers"][0]["alphas"] = [0.0, 1.5]
    with pytest.raises(ConfigError, match="greater than or equal to the maximum of 1"):
        validate(cfg2)


def test_enum_lists_allowed_values(cfg):
    cfg["datasets"]["digits"]["source"] = "svhn"
    with pytest.raises(ConfigError, match="allowed values: \\['digits', 'cifar10', 'cifar100', 'mnist', 'imagefolder'\\]"):
        validate(cfg)


def test_cross_references(cfg):
    bad = copy.deepcopy(cfg)
    bad["teachers"][0]["recipe"] = "nope"
    with pytest.raises(ConfigError, match=r"teachers\[0\]\.recipe 'nope' is not defined under recipes"):
        validate(bad)
    bad = copy.deepcopy(cfg)
    bad["teachers"][0]["arch"] = "vgg"
    with pytest.raises(ConfigError, match="arch 'vgg' is unknown"):
        validate(bad)
    bad = copy.deepcopy(cfg)
    bad["datasets"]["c10"] = {"source": "cifar10"}
    with pytest.raises(ConfigError, match=r"datasets\.c10\.root is required"):
        validate(bad)
    bad = copy.deepcopy(cfg)
    bad["datasets"]["mn"] = {"source": "mnist"}
    with pytest.raises(ConfigError, match=r"datasets\.mn\.root is required for source 'mnist'"):
        validate(bad)
    bad = copy.deepcopy(cfg)
    bad["distillation"][0]["teacher_alphas"] = [0.0, 0.9]
    with pytest.raises(ConfigError, match=r"teacher_alphas \[0\.9\] are not in teachers\[0\]\.alphas"):
        validate(bad)


def test_command_line_strings_are_coerced_to_the_schemas_types(cfg):
    # Snakemake hands nested --config values over as strings
    cfg["accuracy_table"] = {"split": "test", "digits": "3"}
    cfg["teachers"][0]["alphas"] = "[0.0, 0.1, 0.3]"
    cfg["datasets"]["digits"]["download"] = "false"
    cfg["calibration"] = {"bins": "10", "ls_alpha": "null"}
    c = validate(cfg)
    assert c["accuracy_table"]["digits"] == 3 and c["teachers"][0]["alphas"] == [0.0, 0.1, 0.3]
    assert c["datasets"]["digits"]["download"] is False
    assert c["calibration"]["bins"] == 10 and c["calibration"]["ls_alpha"] is None
    # strings stay strings where the schema wants one, and junk still fails with the key named
    cfg["datasets"]["digits"]["root"] = "123"
    cfg["recipes"]["digits"]["lr"] = "fast"
    with pytest.raises(ConfigError, match=r"recipes\.digits\.lr"):
        validate(cfg)
    assert cfg["datasets"]["digits"]["root"] == "123"


def test_gpus_per_model_from_the_command_line_and_its_rule(cfg):
    """resources.gpus_per_model is a whole number or "auto" (a choice of schemas): `--config` strings are
    converted through the branch that takes them; anything else is refused naming the key."""
    cfg["resources"] = {"gpus_per_model": "16", "gpus_per_node": "8"}
    cfg["teachers"][0].update(gpus_per_model="auto", probe=None)  # the probe records in one process (checked too)
    c = validate(copy.deepcopy(cfg))
    assert c["resources"]["gpus_per_model"] == 16 and c["resources"]["gpus_per_node"] == 8
    assert c["teachers"][0]["gpus_per_model"] == "auto"
    assert validate({**cfg, "resources": {}})["resources"]["gpus_per_model"] == 1  # the default: one GPU
    for bad in ("0", "many", "2.5"):
        with pytest.raises(ConfigError, match=r"resources\.gpus_per_model"):
            validate({**cfg, "resources": {"gpus_per_model": bad}})


def test_distillation_form_and_the_old_hinton_key(cfg):
    assert validate(copy.deepcopy(cfg))["distillation"][0]["form"] == "teacher"  # the default
    for form in ("slides", "hinton"):
        c = copy.deepcopy(cfg)
        c["distillation"][0]["form"] = form
        assert validate(c)["distillation"][0]["form"] == form
    bad = copy.deepcopy(cfg)
    bad["distillation"][0]["form"] = "student"
    with pytest.raises(ConfigError, match=r"distillation\[0\]\.form.*allowed values: \['teacher', 'slides', 'hinton'\]"):
        validate(bad)
    for old in (True, False):
        bad = copy.deepcopy(cfg)
        bad["distillation"][0]["hinton"] = old
        with pytest.raises(ConfigError, match=r"distillation\[0\]\.hinton was replaced by distillation\[0\]\.form: "
                                              r"write 'form: hinton'"):
            validate(bad)


def test_schedule_key(cfg):
    c = copy.deepcopy(cfg)
    assert validate(c)["recipes"]["digits"]["schedule"] == "milestones"
    c = copy.deepcopy(cfg)
    c["recipes"]["digits"].update(schedule="cosine", lr_milestones=[])
    assert validate(c)["recipes"]["digits"]["schedule"] == "cosine"
    bad = copy.deepcopy(cfg)
    bad["recipes"]["digits"]["schedule"] = "cosine"  # the digits recipe keeps its milestones
    with pytest.raises(ConfigError, match=r"recipes\.digits: lr_milestones \[150, 225\] only apply to schedule 'milestones'"):
        validate(bad)


# --------------------------------------------------------------------------- one source of defaults


def _minimal_validated(cfg):
    """``cfg`` with its first recipe cut to ``steps`` and an empty ``augment``, and its first teacher
    probed with only the required ``classes``, after validation (the validator fills the defaults)."""
    name = next(iter(cfg["recipes"]))
    cfg["recipes"][name] = {"steps": 7, "augment": {}}
    cfg["teachers"][0]["probe"] = {"classes": ["1", "7"]}
    cfg["teachers"][0].pop("fuse", None)
    return validate(cfg), name


def test_recipe_defaults_come_from_the_schema(cfg):
    import dataclasses

    from lspipe.base import defaults
    from lspipe.core.recipe import Recipe

    c, name = _minimal_validated(cfg)
    validated = Recipe.from_dict(c["recipes"][name])
    assert Recipe.from_dict({"steps": 7}) == Recipe.from_dict({"steps": 7, "augment": {}}) == validated
    assert validated.augment == c["recipes"][name]["augment"] and validated.augment["pad"] > 0
    # every field has exactly one default, the schema's (no dataclass default to disagree with it)
    fields = dataclasses.fields(Recipe)
    assert {f.name for f in fields} == set(defaults.node("recipes.*")["properties"])
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in fields)


def test_probe_defaults_come_from_the_schema(cfg):
    from lspipe.engine.probe import ProbeRecorder

    c, name = _minimal_validated(cfg)
    probe = c["teachers"][0]["probe"]
    data = synthetic_data((40, 40, 40), classes=2, class_names=["a", "b"])
    rec = ProbeRecorder("unused.h5", data, classes=["a", "b"], per_class=3)  # the rest: defaults
    assert (rec.copies, rec.every, rec.seed) == (probe["copies"], probe["every"], probe["seed"])
    assert (rec.pad, rec.flip) == (c["recipes"][name]["augment"]["pad"], c["recipes"][name]["augment"]["flip"])
    assert rec.batch_size == c["recipes"][name]["eval_batch_size"]


def test_cli_defaults_come_from_the_schema(cfg):
    from lspipe.cli import build_parser

    for key in ("device", "dump", "accuracy_table", "calibration", "mi"):  # left to their defaults
        cfg.pop(key, None)
    c = validate(cfg)
    p = build_parser()
    dump = p.parse_args(["dump", "--model", "m", "--data", "d", "--out", "o"])
    assert (dump.max_train, dump.chunk_rows, dump.compression, dump.device) == (
        c["dump"]["max_train"], c["dump"]["chunk_rows"], c["dump"]["compression"], c["device"])
    table = p.parse_args(["accuracy-table", "--evals", "e", "--csv", "c", "--md", "m"])
    assert (table.split, table.digits) == (c["accuracy_table"]["split"], c["accuracy_table"]["digits"])
    cal = p.parse_args(["calibrate", "--dump", "d", "--out", "o"])
    assert cal.bins == c["calibration"]["bins"]
    curve = p.parse_args(["mi-curve", "--probe", "p", "--out", "o", "--alpha", "0", "--seed", "0"])
    assert curve.ddof == c["mi"]["ddof"]


def test_the_old_mi_margin_key_names_its_replacement(cfg):
    bad = copy.deepcopy(cfg)
    bad.setdefault("claims", {})["mi_margin"] = 0.05
    with pytest.raises(ConfigError, match=r"claims\.mi_margin was replaced.*claims\.mi_noise_multiple"):
        validate(bad)


def test_run_names_are_derived_from_the_objective_and_parsed_back():
    """One function names a run after its objective (lspipe.base.runs.objective_run) and parse_run
    reads it back; the existing names stay as they were."""
    from lspipe.base import runs

    assert runs.objective_run({"kind": "ls", "alpha": 0.1}, 0) == runs.run_name(0.1, 0) == "a0.1_s0"
    assert runs.objective_run({"kind": "ls", "alpha": 0.0}, 3) == "a0_s3"
    assert runs.kd_run("smallcnn", 0.0, 4, 1) == "kd-smallcnn-a0-T4_s1"
    other = {"kind": "confidence_penalty", "beta": 0.5}
    assert runs.objective_run(other, 2) == "confidence_penalty-beta0.5_s2"
    assert runs.parse_run("confidence_penalty-beta0.5_s2") == {"objective": other, "seed": 2}
    assert runs.parse_run("a0.1_s0") == {"alpha": 0.1, "seed": 0, "objective": {"kind": "ls", "alpha": 0.1}}
    assert runs.parse_run("kd-smallcnn-a0-T4_s1") == {"teacher_arch": "smallcnn", "teacher_alpha": 0.0,
                                                      "temperature": 4.0, "seed": 1}
    two = {"kind": "focal", "gamma": 2, "beta": 1e-3}
    assert runs.parse_run(runs.objective_run(two, 0)) == {"objective": {"kind": "focal", "gamma": 2.0, "beta": 0.001},
                                                          "seed": 0}
    assert runs.parse_run("a0.1") is None and runs.parse_run("ls-alpha0.1_s0") is None
    with pytest.raises(ValueError, match="kd_run"):
        runs.objective_token({"kind": "kd", "teacher": "t.pt", "T": 4})


def test_arch_names_may_be_timm_names_and_stay_path_safe(cfg):
    """inception_v4 and timm:<name> are valid arch names; upper case, dots and slashes are not (the
    name is a results folder)."""
    old = cfg["teachers"][0]["arch"]

    def renamed(node, arch):  # the config with every reference to the first grid's arch renamed
        if isinstance(node, dict):
            return {k: arch if k in ("arch", "teacher_arch", "student_arch") and v == old else renamed(v, arch)
                    for k, v in node.items()}
        return [renamed(v, arch) for v in node] if isinstance(node, list) else node

    for arch in ("inception_v4", "timm:resnet18", "resnet56"):
        validate(renamed(cfg, arch))
    for arch in ("Inception", "timm:a/b", "resnet.50", "timm:"):
        c = renamed(cfg, arch)
        with pytest.raises(ConfigError, match=r"teachers\[0\]\.arch"):
            validate(c)

