"""Methods of one's own (issue 18, item 4): a module outside the package registers a method with the public API, and
``--plugin`` / ``plugins:`` / the entry-point group make it work in ``create``, ``train``, a study, the toy and a
protocol benchmark.

docs/plugins.md's code is what these tests run: its first Python block is the plugin module, its second the loop.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from taskbalance.balancers import BalancerError, available, create, registry
from taskbalance.cli.main import app
from taskbalance.plugins import PluginError, import_plugin
from taskbalance.study.plan import load_study, plan
from taskbalance.study.staleness import differing_keys
from taskbalance.training.config import ConfigError, config_hash, validate_config
from taskbalance.training.presets import load_config, load_raw

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"
TINY = ["optim.iterations=2", "optim.eval_every=2", "data.batch_size=2", "data.eval_batch_size=8",
        "data.options.num_scenes=1", "data.options.views_per_scene=2", "data.options.resolution=[24,32]",
        "diagnostics.every=0", "tasks=[depth,normals]", "evaluation.max_batches=1"]


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path holding docs/plugins.md's ``my_methods.py``; the registry and sys.modules are restored
    afterwards, so every test imports the module afresh."""
    available()  # the built-in methods are registered before the snapshot
    monkeypatch.setattr(registry, "_REGISTRY", registry._REGISTRY.copy())
    (tmp_path / "my_methods.py").write_text(doc_blocks()[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith(("my_methods", "broken_", "ep_")):
            del sys.modules[name]


def test_the_docs_loop_runs_the_plugin_method_with_hand_computed_weights(plugin_dir: Path) -> None:
    namespace: dict = {}
    exec(compile(doc_blocks()[1], str(DOC), "exec"), namespace)
    encoder, heads, step = namespace["encoder"], namespace["heads"], namespace["step"]
    assert namespace["balancer"].last_layer_name == "0"
    # inverse-norm(power=0.5): w_i = |g_i|^-0.5 on the Linear layer, scaled to sum to K = 2
    z = encoder(namespace["x"])
    losses = [torch.nn.functional.cross_entropy(heads["seg"](z), namespace["seg"]),
              (heads["depth"](z) - namespace["depth"]).abs().mean()]
    layer = list(encoder[0].parameters())
    norms = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(loss, layer, retain_graph=True)]).norm()
                         for loss in losses]).double()
    expected = norms.pow(-0.5) * 2 / norms.pow(-0.5).sum()
    assert [step.weights[t] for t in ("seg", "depth")] == pytest.approx(expected.tolist(), rel=1e-5)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_a_plugin_method_is_created_and_combined_like_a_built_in_one(plugin_dir: Path) -> None:
    assert "half-weights" not in available()
    import_plugin("my_methods")
    assert {"half-weights", "inverse-norm"} <= set(available())
    jacobian = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    direction, weights = create("half-weights", tasks=["a", "b"]).combine(jacobian, torch.tensor([1.0, 2.0]))
    assert weights.tolist() == [0.5, 0.5] and direction.tolist() == [2.0, 0.5]
    with pytest.raises(BalancerError, match="options of inverse-norm"):
        create("inverse-norm", tasks=["a", "b"], powr=2)


def test_a_plugin_that_cannot_be_imported_is_one_line_naming_it(plugin_dir: Path) -> None:
    (plugin_dir / "broken_plugin.py").write_text("raise RuntimeError('needs a GPU\\nsecond line')\n")
    for name, reason in [("missing_plugin", "No module named 'missing_plugin'"),
                         ("broken_plugin", "RuntimeError: needs a GPU"), ("my methods", "not a module name")]:
        with pytest.raises(PluginError, match=re.escape(reason)) as error:
            import_plugin(name)
        assert "\n" not in str(error.value) and repr(name) in str(error.value)
    with pytest.raises(ConfigError) as error:
        validate_config({**load_raw("quick"), "plugins": ["broken_plugin"], "method": {"name": "half-weights"}})
    assert str(error.value) == ("invalid config: plugins: plugin 'broken_plugin' could not be imported: "
                                "RuntimeError: needs a GPU")  # and not a consequential "unknown balancer"


def test_config_plugins_are_imported_before_the_method_is_checked(plugin_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown balancer 'half-weights'"):
        load_config("quick", ["method.name=half-weights"])
    config = load_config("quick", ["method.name=half-weights", "plugins=[my_methods]"], plugins=["my_methods"])
    assert config.plugins == ("my_methods",) and config.method.name == "half-weights"
    # where the code lives is not what a run computes: the hash and a study's staleness ignore it
    plain = load_config("quick")
    assert config_hash(plain) == config_hash(plain.model_copy(update={"plugins": ("my_methods",)}))
    assert differing_keys(plain, plain.model_copy(update={"plugins": ("my_methods",)})) == []


def test_train_cli_trains_a_plugin_method_and_resumes_with_it(plugin_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    settings = [a for s in TINY for a in ("--set", s)]
    result = CliRunner().invoke(app, ["train", "quick", *settings, "--plugin", "my_methods", "--set",
                                      "method.name=inverse-norm", "--set", "method.options.power=0.5",
                                      "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "inverse-norm" and results["meta"]["method_options"] == {"power": 0.5}
    assert load_config(out / "config.yaml").plugins == ("my_methods",)  # --resume imports it again
    missing = CliRunner().invoke(app, ["train", "quick", "--plugin", "nowhere_plugin", "--out", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "plugin 'nowhere_plugin' could not be imported" in missing.output
    assert not (tmp_path / "x").exists()


@pytest.mark.timeout(1500)  # its own bound (1200 s) reports first, with the output
def test_the_issue_command_trains_half_weights_in_a_fresh_process(tmp_path: Path) -> None:
    """The check of issue 18:
    PYTHONPATH=dir taskbalance train quick --plugin my_methods --set method.name=half-weights."""
    (tmp_path / "my_methods.py").write_text(doc_blocks()[0])
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    command = [str(Path(sys.executable).with_name("taskbalance")), "train", "quick", "--plugin", "my_methods",
               "--set", "method.name=half-weights", *(a for s in TINY for a in ("--set", s)), "--out",
               str(tmp_path / "run"), "--no-progress"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text())["method"] == "half-weights"


def test_a_study_adds_plugin_arms_and_every_run_config_carries_the_plugin(plugin_dir: Path) -> None:
    spec = load_study("standard", plugins=["my_methods"], methods=["half-weights", "inverse-norm"])
    runs = plan(spec)  # validates every run, plugin methods included
    arms = {run.arm for run in runs}
    assert {"half-weights", "inverse-norm", "avgnorm", "uniform", "grid-1"} <= arms
    assert all(run.config.plugins == ("my_methods",) for run in runs)  # workers in other processes import it
    assert [r.seed for r in runs if r.arm == "half-weights"] == spec.seeds
    with pytest.raises(ConfigError, match="already has an arm named 'avgnorm'"):
        load_study("standard", methods=["avgnorm"])


@pytest.mark.timeout(1500)  # its own bound (1200 s) reports first, with the output
def test_a_separate_worker_process_builds_a_planned_plugin_run(plugin_dir: Path) -> None:
    """A worker process receives the planned run's validated config pickled (as the executors send it), imports its
    plugins as ``execute_run`` does, and finds the plugin's method."""
    run = next(r for r in plan(load_study("quick", plugins=["my_methods"], methods=["half-weights"]))
               if r.arm == "half-weights")
    code = ("import pickle, sys; from taskbalance.plugins import import_plugins; "
            "from taskbalance.balancers import get; config = pickle.loads(bytes.fromhex(sys.argv[1])); "
            "import_plugins(config.plugins); print(get(config.method.name).name)")
    env = {**os.environ, "PYTHONPATH": str(plugin_dir)}
    done = subprocess.run([sys.executable, "-c", code, pickle.dumps(run.config).hex()], env=env, capture_output=True,
                          text=True, timeout=1200)  # a bound for a loaded machine, not a speed check
    assert done.returncode == 0 and done.stdout.strip() == "half-weights", done.stderr


def test_the_toy_runs_a_plugin_method(plugin_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "toy"
    result = CliRunner().invoke(app, ["toy", "--plugin", "my_methods", "--methods", "uniform,inverse-norm(power=0.5)",
                                      "--steps", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "inverse-norm" in (out / "results.md").read_text()
    bad = CliRunner().invoke(app, ["toy", "--plugin", "nowhere_plugin", "--steps", "1", "--out", str(tmp_path)])
    assert bad.exit_code == 1 and "nowhere_plugin" in bad.output


def test_entry_points_of_installed_packages_are_loaded_on_first_lookup(plugin_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    dist = plugin_dir / "ep_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[taskbalance.balancers]\nhalf = ep_half\n")
    (plugin_dir / "ep_half.py").write_text(doc_blocks()[0])
    monkeypatch.setattr(registry, "_loaded", False)
    assert "half-weights" in available()
    (dist / "entry_points.txt").write_text("[taskbalance.balancers]\nhalf = ep_half\nbroken = ep_missing\n")
    monkeypatch.setattr(registry, "_loaded", False)
    with pytest.raises(PluginError, match=r"entry point broken = ep_missing of ep-demo .*ModuleNotFoundError"):
        available()


def test_a_protocol_benchmark_runs_a_plugin_method(plugin_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "protocol"
    result = CliRunner().invoke(app, ["protocol", "run", "multimnist", "--cpu", "--plugin", "my_methods",
                                      "-m", "half-weights", "--no-stl", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "half-weights" / "results.json").read_text())["method"] == "half-weights"
