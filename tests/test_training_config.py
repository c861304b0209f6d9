"""Config validation, overrides, preset inheritance, and that every packaged preset and study is valid."""

from pathlib import Path

import pytest

from taskbalance.study import load_study, plan
from taskbalance.training import ConfigError, available_presets, load_config, validate_config
from taskbalance.training.config import apply_overrides, config_differences


def minimal(**extra):
    return {"tasks": ["depth", "normals"], "optim": {"iterations": 10}, **extra}


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"optim\.lrr: unknown key"):
        validate_config(minimal(optim={"iterations": 10, "lrr": 0.1}))


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        validate_config(minimal(optim={"iterations": 10, "lr": -1}))
    with pytest.raises(ConfigError, match=r"data\.name"):
        validate_config(minimal(data={"name": "imagenet"}))


def test_unknown_task_and_length_rules():
    with pytest.raises(ConfigError, match="tasks"):
        validate_config({"tasks": ["depth", "flow"], "optim": {"iterations": 1}})
    with pytest.raises(ConfigError, match="exactly one of optim.iterations and optim.epochs"):
        validate_config({"tasks": ["depth"], "optim": {"iterations": 1, "epochs": 1}})
    with pytest.raises(ConfigError, match="single_task"):
        validate_config(minimal(single_task=True))


def test_overrides_parse_yaml_values_and_nest():
    raw = apply_overrides(minimal(), ["optim.lr=1e-3", "data.options.resolution=[8, 12]", "method.name=famo"])
    config = validate_config(raw)
    assert config.optim.lr == pytest.approx(1e-3)
    assert config.data.options["resolution"] == [8, 12]
    assert config.method.name == "famo"
    assert config.optim.iterations == 10  # untouched siblings survive


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(minimal(), ["optim.lr"])


def test_base_inheritance_and_override(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: quick\nname: mine\noptim: {lr: 0.5}\n")
    config = load_config(path, ["optim.iterations=7"])
    quick = load_config("quick")
    assert config.name == "mine" and config.optim.lr == 0.5 and config.optim.iterations == 7
    assert config.tasks == quick.tasks and config.model == quick.model
    assert config_differences(config, quick) == ["name", "optim.iterations", "optim.lr"]


def test_unknown_preset_lists_choices():
    with pytest.raises(ConfigError, match="available: .*quick"):
        load_config("no-such-preset")


@pytest.mark.parametrize("name", available_presets())
def test_every_training_preset_validates(name: str):
    config = load_config(name)
    assert config.tasks


@pytest.mark.parametrize("name", available_presets(study=True))
def test_every_study_preset_plans_valid_runs(name: str):
    runs = plan(load_study(name))
    names = [r.name for r in runs]
    assert len(names) == len(set(names))
    stl = [r for r in runs if r.kind == "stl"]
    assert stl and all(
        runs.index(s) < runs.index(o) for s in stl for o in runs if o.kind != "stl" and o.variant == s.variant
    )


def test_table_ix_hyperparameters():
    resnet, vit = load_config("nyud-resnet18"), load_config("nyud-vit")
    assert (resnet.optim.optimizer, resnet.optim.lr, resnet.optim.weight_decay, resnet.optim.epochs) == (
        "adam",
        1e-4,
        1e-4,
        100,
    )
    assert (vit.optim.optimizer, vit.optim.lr, vit.optim.weight_decay, vit.optim.grad_clip) == (
        "adamw",
        2e-5,
        1e-6,
        10.0,
    )
    assert (vit.optim.iterations, vit.optim.eval_every, vit.optim.epochs) == (40000, 1000, None)
    assert load_config("pascal-resnet18").optim.epochs == 60


@pytest.mark.parametrize(
    ("section", "pattern"),
    [
        (
            {"method": {"name": "famo", "options": {"w_lrr": 0.1}}},
            r"method\.options: w_lrr: unknown option \(options of famo: w_lr, gamma, min_losses\)",
        ),
        ({"method": {"name": "famo", "options": {"w_lr": -1}}}, r"method\.options: w_lr: .*greater than 0"),
        ({"method": {"name": "famoo"}}, r"method\.name: unknown balancer 'famoo'; available: .*famo"),
        ({"method": {"name": "uw", "source": "params"}}, r"method: source: uw weighs the losses only"),
        ({"method": {"name": "db_mtl", "source": "features"}}, r"method: source: db_mtl supports params, not features"),
        ({"data": {"name": "imagenet"}}, r"data\.name: 'imagenet' is not a known dataset; available: synthetic, nyud"),
        (
            {"model": {"arch": "mtan", "backbone": "vit_t"}},
            r"model\.backbone: 'vit_t' is not a known backbone for mtan",
        ),
        ({"model": {"arch": "unet"}}, r"model\.arch: 'unet' is not a known architecture; available: vanilla"),
        (
            {"task_options": {"edge": {"pos_weight": 0.9}}},
            r"task_options: edge: not a task of this run \(depth, normals\)",
        ),
        (
            {"task_options": {"normals": {"l1_reductio": "pixel"}}},
            r"task_options: normals: unknown option\(s\) l1_reductio",
        ),
    ],
)
def test_names_and_options_are_checked_against_their_registries(section, pattern):
    with pytest.raises(ConfigError, match=pattern):
        validate_config(minimal(**section))


def test_valid_method_options_and_task_options_pass():
    config = validate_config(minimal(method={"name": "famo", "options": {"w_lr": 0.01}, "source": None},
                                     task_options={"normals": {"l1_reduction": "element"}}))
    assert config.method.options == {"w_lr": 0.01} and config.task_options["normals"]["l1_reduction"] == "element"
    assert validate_config(minimal(method={"name": "gradnorm", "source": "params"})).method.source == "params"


def test_train_with_a_bad_method_option_writes_nothing(tmp_path: Path):
    from typer.testing import CliRunner

    from taskbalance.cli.main import app

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "quick",
            "--set",
            "method.name=famo",
            "--set",
            "method.options.w_lrr=0.1",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 1
    assert "method.options: w_lrr: unknown option" in " ".join(result.output.split())
    assert not out.exists()
