"""The training loop on tiny stand-in data/model/tasks: exact resume, NaN stop, run-directory contents."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from taskbalance.data.base import MultiTaskDataset
from taskbalance.training import RunExistsError, TrainingDiverged, loop, validate_config
from taskbalance.training.checkpoint import find_checkpoint, load_state

TASKS = ("depth", "normals")
CHANNELS = {"depth": 1, "normals": 3}


class TinySet(MultiTaskDataset):
    """Fixed random images and targets that depend on them (so the model can learn), optionally augmented."""

    def __init__(self, size: int, seed: int, has_val: bool = True, augment: bool = False) -> None:
        super().__init__(augment=augment)
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(size, 3, 6, 6, generator=g)
        self.targets = {"depth": self.images[:, :1] + 0.5, "normals": torch.tanh(self.images - 0.5)}
        self.info = SimpleNamespace(has_val_split=has_val, metadata={"stand_in": True}, num_classes={}, edge_max_dist=0.01)

    def __len__(self) -> int:
        return len(self.images)

    def load_sample(self, index: int) -> dict:
        return {"image": self.images[index], **{t: v[index] for t, v in self.targets.items()}}


@dataclass
class Output:
    predictions: dict
    auxiliary: dict = field(default_factory=dict)
    features: list = field(default_factory=list)


class TinyModel(nn.Module):
    def __init__(self, channels: dict[str, int]) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 1))
        self.heads = nn.ModuleDict({t: nn.Conv2d(8, c, 1) for t, c in channels.items()})
        self.aux = nn.ModuleDict({t: nn.Conv2d(8, c, 1) for t, c in channels.items()})

    def forward_train(self, images):
        z = self.encoder(images)
        tapped = z.view_as(z)
        return Output({t: h(tapped) for t, h in self.heads.items()},
                      {t: [self.aux[t](tapped)] for t in self.heads}, [tapped])

    def forward(self, images):
        return self.forward_train(images).predictions

    def shared_parameters(self):
        return list(self.encoder.parameters())

    def last_shared_layer(self):
        return self.encoder[-1]


class MSEMeter:
    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, pred, target) -> None:
        self.total += float((pred - target).pow(2).sum())
        self.count += target.numel()

    def compute(self) -> dict:
        return {"mse": self.total / self.count}


def spec(task: str, loss=None):
    return SimpleNamespace(name=task, out_channels=CHANNELS[task], loss=loss or nn.functional.mse_loss, meter=MSEMeter,
                           primary_metric="mse", higher_is_better=False)


@pytest.fixture
def stand_ins(monkeypatch):
    """Route the loop's builders to the stand-ins; returns a dict whose 'loss' entry can be swapped by tests."""
    hooks = {"loss": None, "has_val": True}
    monkeypatch.setattr(loop, "build_split", lambda config, split, train: TinySet(
        16 if train else 8, {"train": 0, "val": 1, "test": 2}[split], hooks["has_val"], config.data.augment and train))
    monkeypatch.setattr(loop, "build_specs", lambda config, info, exact_edge=False: {t: spec(t, hooks["loss"]) for t in config.tasks})
    monkeypatch.setattr(loop, "build_model_for", lambda config, info=None: TinyModel({t: CHANNELS[t] for t in config.tasks}))
    return hooks


def config(method: str = "uniform", **extra):
    raw = {"name": "tiny", "tasks": list(TASKS), "seed": 3, "device": "cpu", "log_every": 1, "threads": 1,
           "data": {"batch_size": 4, "augment": False},
           "method": {"name": method},
           "optim": {"lr": 1e-2, "iterations": 12, "eval_every": 4, "checkpoint_every": 2},
           "diagnostics": {"every": 3}}
    raw.update(extra)
    return validate_config(raw)


def run(cfg, out: Path, resume: bool = False):
    return loop.train(cfg, out, resume=resume, show_progress=False)


def _interrupt_at(monkeypatch, step: int) -> None:
    original = loop.Trainer._log_step

    def crashing(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self.state.step == step:
            raise KeyboardInterrupt  # killed after the step, before its evaluation/checkpoint

    monkeypatch.setattr(loop.Trainer, "_log_step", crashing)


def _final_weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(find_checkpoint(out / "checkpoints", "last").weights)


@pytest.mark.parametrize(("method", "augment"), [("uniform", False), ("uniform", True), ("famo", False),
                                                  ("pcgrad", False), ("dwa", False), ("uw", False)])
def test_resume_reproduces_an_uninterrupted_run(stand_ins, monkeypatch, tmp_path: Path, method: str, augment: bool):
    cfg = config(method, data={"batch_size": 4, "augment": augment})
    epochs: list[int] = []
    set_epoch = MultiTaskDataset.set_epoch

    def recording(self, epoch: int) -> None:
        epochs.append(epoch)
        set_epoch(self, epoch)

    monkeypatch.setattr(TinySet, "set_epoch", recording)
    straight = run(cfg, tmp_path / "straight")
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 7)
        with pytest.raises(KeyboardInterrupt):
            run(cfg, tmp_path / "killed")
    assert find_checkpoint(tmp_path / "killed" / "checkpoints", "last").step == 6
    resumed = run(cfg, tmp_path / "killed", resume=True)
    assert resumed.metrics == straight.metrics
    assert resumed.mean_weights == straight.mean_weights
    a, b = _final_weights(tmp_path / "straight"), _final_weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for log in ("metrics.jsonl", "diagnostics.jsonl"):
        assert (tmp_path / "killed" / log).read_text() == (tmp_path / "straight" / log).read_text()
    assert epochs == [0, 1, 2] + [0, 1] + [1, 2]  # straight, killed in epoch 1, resumed in epoch 1


def test_run_directory_contents(stand_ins, tmp_path: Path):
    result = run(config("avgnorm"), tmp_path / "r")
    root = tmp_path / "r"
    assert (root / "config.yaml").is_file() and list((root / "tb").iterdir())
    saved = json.loads((root / "results.json").read_text())
    assert saved["selection"] == "val" and saved["kind"] == "mtl" and saved["method"] == "avgnorm"
    assert set(saved["mean_weights"]) == set(TASKS) and result.meta["best_step"] in (4, 8, 12)
    records = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "val"] == [4, 8, 12]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 13))
    diagnostics = [json.loads(line) for line in (root / "diagnostics.jsonl").read_text().splitlines()]
    assert [d["step"] for d in diagnostics] == [3, 6, 9, 12]
    assert json.loads((root / "imbalance.json").read_text())["steps"] == 4
    state = load_state(find_checkpoint(root / "checkpoints", "last"))
    assert state["loop"]["step"] == 12 and set(state) >= {"optimizer", "scheduler", "balancer", "rng"}
    assert find_checkpoint(root / "checkpoints", "best").step == result.meta["best_step"]


def test_no_validation_split_reports_last(stand_ins, tmp_path: Path):
    stand_ins["has_val"] = False
    result = run(config(), tmp_path / "r")
    assert result.selection == "last (no validation split)"
    assert find_checkpoint(tmp_path / "r" / "checkpoints", "best") is None


def test_nan_loss_stops_with_task_and_step_and_keeps_checkpoint(stand_ins, tmp_path: Path):
    calls = {"depth": 0}

    def exploding(pred, target):
        loss = nn.functional.mse_loss(pred, target)
        if pred.shape[1] == 1:  # depth, main + auxiliary prediction: two calls per step
            calls["depth"] += 1
            if calls["depth"] > 2 * 4:
                return loss * float("nan")
        return loss

    stand_ins["loss"] = exploding
    with pytest.raises(TrainingDiverged, match=r"task 'depth' is nan at step 5.*last checkpoint \(step 4\)"):
        run(config(), tmp_path / "r")
    last = find_checkpoint(tmp_path / "r" / "checkpoints", "last")
    assert last.step == 4 and load_state(last)["loop"]["step"] == 4
    assert not (tmp_path / "r" / "results.json").exists()


def test_existing_run_needs_resume_and_config_must_match(stand_ins, tmp_path: Path):
    run(config(), tmp_path / "r")
    with pytest.raises(RunExistsError, match="--resume"):
        run(config(), tmp_path / "r")
    from taskbalance.training import ConfigError

    with pytest.raises(ConfigError, match="optim.lr"):
        run(config(optim={"lr": 0.5, "iterations": 12}), tmp_path / "r", resume=True)
    assert run(config(), tmp_path / "r", resume=True).name == "tiny"  # finished: returns the stored result


def test_single_task_run(stand_ins, tmp_path: Path):
    result = run(config(tasks=["depth"], single_task=True), tmp_path / "r")
    assert result.kind == "stl" and result.method == "stl" and result.tasks == ["depth"]


def test_diagnostics_on_all_shared_parameters(stand_ins, tmp_path: Path):
    run(config(diagnostics={"every": 6, "source": "params"}), tmp_path / "r")
    records = [json.loads(line) for line in (tmp_path / "r" / "diagnostics.jsonl").read_text().splitlines()]
    assert [r["source"] for r in records] == ["params", "params"]
    assert set(records[0]["cos"]) == {"depth|normals"}
