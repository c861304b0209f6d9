"""The training loop on tiny stand-in data/model/tasks: exact resume, NaN stop, run-directory contents."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from taskbalance.data.base import MultiTaskDataset
from taskbalance.training import RunExistsError, TrainingDiverged, validate_config
from taskbalance.training import trainer as loop
from taskbalance.training.checkpoint import find_checkpoint, load_state
from taskbalance.training.hooks import MetricsLogger

TASKS = ("depth", "normals")
CHANNELS = {"depth": 1, "normals": 3}


class TinySet(MultiTaskDataset):
    """Fixed random images and targets that depend on them (so the model can learn), optionally augmented."""

    def __init__(self, size: int, seed: int, has_val: bool = True, augment: bool = False) -> None:
        super().__init__(augment=augment)
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(size, 3, 6, 6, generator=g)
        self.targets = {"depth": self.images[:, :1] + 0.5, "normals": torch.tanh(self.images - 0.5)}
        self.info = SimpleNamespace(
            has_val_split=has_val, metadata={"stand_in": True}, num_classes={}, edge_max_dist=0.01
        )

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
    monkeypatch.setattr(
        loop, "build_specs", lambda config, info, exact_edge=False: {t: spec(t, hooks["loss"]) for t in config.tasks}
    )
    monkeypatch.setattr(
        loop, "build_model_for", lambda config, info=None: TinyModel({t: CHANNELS[t] for t in config.tasks})
    )
    return hooks


def config(method: str | dict = "uniform", **extra):
    """The tiny run's config; ``method``: a name, or the whole method section."""
    raw = {"name": "tiny", "tasks": list(TASKS), "seed": 3, "device": "cpu", "log_every": 1, "threads": 1,
           "data": {"batch_size": 4, "augment": False},
           "method": method if isinstance(method, dict) else {"name": method},
           "optim": {"lr": 1e-2, "iterations": 12, "eval_every": 4, "checkpoint_every": 2},
           "diagnostics": {"every": 3}}
    raw.update(extra)
    return validate_config(raw)


def run(cfg, out: Path, resume: bool = False):
    return loop.train(cfg, out, resume=resume, show_progress=False)


def _interrupt_at(monkeypatch, step: int) -> None:
    original = MetricsLogger.after_step

    def crashing(self):
        original(self)
        if self.loop.state.step == step:
            raise KeyboardInterrupt  # killed after the step, before its evaluation/checkpoint

    monkeypatch.setattr(MetricsLogger, "after_step", crashing)


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
    with pytest.raises(
        TrainingDiverged, match=r"task 'depth' is nan at step 5.*last checkpoint last-00000004 \(step 4\)"
    ):
        run(config(), tmp_path / "r")
    last = find_checkpoint(tmp_path / "r" / "checkpoints", "last")
    assert last.step == 4 and load_state(last)["loop"]["step"] == 4
    assert not (tmp_path / "r" / "results.json").exists()


def test_famo_divergence_after_the_update_is_the_same_one_line_stop(stand_ins, tmp_path: Path):
    calls = {"depth": 0}

    def exploding(pred, target):
        loss = nn.functional.mse_loss(pred, target)
        if pred.shape[1] == 1:  # depth: main + auxiliary prediction, two forwards per FAMO step
            calls["depth"] += 1
            if calls["depth"] > 4 * 4 + 2:  # the re-evaluation after the update of step 5
                return loss * float("nan")
        return loss

    stand_ins["loss"] = exploding
    with pytest.raises(TrainingDiverged) as caught:
        run(config("famo"), tmp_path / "r")
    message = str(caught.value)
    assert "\n" not in message
    assert re.fullmatch(
        r"training stopped: the loss of task 'depth' after the update of step 5 is nan \(the method's "
        r"post_step\); the update was applied; the last checkpoint last-00000004 \(step 4\) in .* is intact",
        message,
    )


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


# ---------------------------------------------------------------- the wiring of methods with state, through the trainer
# The tiny run: 16 training items in batches of 4, so an epoch is 4 steps; every step's losses and weights are logged.


def fit(cfg, out: Path) -> loop.Trainer:
    trainer = loop.Trainer(cfg, out, show_progress=False)
    trainer.fit()
    return trainer


def logged(out: Path, what: str) -> torch.Tensor:
    """The per-step ``losses`` or ``weights`` of the training log, steps × tasks (float64)."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return torch.tensor([[r[what][t] for t in TASKS] for r in records if r["kind"] == "train"], dtype=torch.float64)


def test_a_config_that_cannot_be_built_writes_nothing(stand_ins, monkeypatch, tmp_path: Path):
    def broken(config, info=None):
        raise ValueError("no such decoder option")

    monkeypatch.setattr(loop, "build_model_for", broken)
    with pytest.raises(ValueError, match="no such decoder option"):
        run(config(), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_uw_log_variances_take_an_adam_step_of_the_model_optimizer(stand_ins, tmp_path: Path):
    lr = 1e-2
    trainer = fit(config("uw", optim={"lr": lr, "iterations": 2}), tmp_path / "r")
    losses, weights = logged(tmp_path / "r", "losses"), logged(tmp_path / "r", "weights")
    s0 = torch.full((2,), -0.5, dtype=torch.float64)
    torch.testing.assert_close(weights[0], 0.5 * torch.exp(-s0))
    grad = 0.5 - 0.5 * torch.exp(-s0) * losses[0]  # ∂/∂s of ½e^{-s}L + ½s
    s1 = s0 - lr * grad / (grad.abs() + 1e-8)  # Adam's first step (bias-corrected m/√v = g/|g|), no weight decay
    torch.testing.assert_close(weights[1], 0.5 * torch.exp(-s1))
    assert not torch.allclose(trainer.balancer.log_vars.detach().double(), s1)  # and the second step moved them again


def test_dwa_weights_after_epoch_two_follow_the_recorded_epoch_losses(stand_ins, tmp_path: Path):
    temperature = 2.0
    run(config({"name": "dwa", "options": {"temperature": temperature}}), tmp_path / "r")  # 3 epochs
    losses, weights = logged(tmp_path / "r", "losses"), logged(tmp_path / "r", "weights")
    assert torch.equal(weights[:8], torch.ones(8, 2))  # epochs 0 and 1
    ratio = losses[4:8].mean(0) / losses[:4].mean(0)  # L(t−1)/L(t−2) from the epoch averages
    expected = 2 * torch.exp(ratio / temperature) / torch.exp(ratio / temperature).sum()
    assert float((expected - 1).abs().max()) > 1e-4  # the test can tell adapted weights from ones
    torch.testing.assert_close(weights[8:], expected.expand(4, 2))


def test_stch_takes_the_nadir_of_the_warmup_epoch_and_then_smooth_tchebycheff_weights(stand_ins, tmp_path: Path):
    trainer = fit(config({"name": "stch", "options": {"warmup_epochs": 1, "mu": 0.5}}), tmp_path / "r")
    losses, weights = logged(tmp_path / "r", "losses"), logged(tmp_path / "r", "weights")
    torch.testing.assert_close(weights[:8], 1 / (losses[:8] + 1e-20))  # ∂/∂L Σ log L in epochs 0 and 1
    nadir = losses[4:8].mean(0)  # the mean loss of epoch 1 (= warmup_epochs)
    torch.testing.assert_close(trainer.balancer.nadir, nadir)
    normalised = torch.log(losses[8:] / nadir + 1e-20) / 0.5
    expected = 2 * torch.softmax(normalised, dim=1) / (losses[8:] + 1e-20 * nadir)
    torch.testing.assert_close(weights[8:], expected)


def test_famo_logits_take_an_adam_step_of_their_own_learning_rate(stand_ins, tmp_path: Path):
    w_lr = 0.05  # five times the model's learning rate
    fit(config({"name": "famo", "options": {"w_lr": w_lr}}, optim={"lr": 1e-2, "iterations": 2}),
        tmp_path / "r")
    losses, weights = logged(tmp_path / "r", "losses"), logged(tmp_path / "r", "weights")
    torch.testing.assert_close(weights[0], losses[0].reciprocal() / losses[0].reciprocal().sum())  # logits 0
    # w_i ∝ e^{ξ_i} / L_i, so ξ0 − ξ1 = log(w0 L0 / (w1 L1)); after one Adam step from 0, ξ = ±(β, −β)
    gap = torch.log(weights[1, 0] * losses[1, 0] / (weights[1, 1] * losses[1, 1]))
    assert abs(float(gap.abs()) - 2 * w_lr) < 1e-5


def test_gradnorm_weights_follow_its_rule_on_the_logged_gradient_norms(stand_ins, tmp_path: Path):
    alpha, lr = 1.5, 0.025
    fit(config("gradnorm", diagnostics={"every": 1, "source": "last_layer"}, optim={"lr": 1e-2, "iterations": 4}),
        tmp_path / "r")
    losses, weights = logged(tmp_path / "r", "losses"), logged(tmp_path / "r", "weights")
    records = [json.loads(line) for line in (tmp_path / "r" / "diagnostics.jsonl").read_text().splitlines()]
    norms = torch.tensor([[r["grad_norms"][t] for t in TASKS] for r in records], dtype=torch.float64)
    assert [r["source"] for r in records] == ["last_layer"] * 4
    torch.testing.assert_close(weights[0], torch.ones(2, dtype=torch.float64))
    for t in range(3):
        weighted = weights[t] * norms[t]
        rates = (losses[t] / losses[0]) / (losses[t] / losses[0]).mean()
        grad = torch.sign(weighted - weighted.mean() * rates**alpha) * norms[t]
        stepped = weights[t] - lr * grad
        torch.testing.assert_close(weights[t + 1], 2 * stepped / stepped.sum())
    assert not torch.allclose(weights[3], torch.ones(2, dtype=torch.float64))


def test_gradvac_targets_are_the_ema_of_the_first_steps_cosine(stand_ins, tmp_path: Path):
    trainer = fit(config("gradvac", diagnostics={"every": 1, "source": "params"}, optim={"lr": 1e-2, "iterations": 1}),
                  tmp_path / "r")
    record = json.loads((tmp_path / "r" / "diagnostics.jsonl").read_text().splitlines()[0])
    cosine = record["cos"]["depth|normals"]
    expected = torch.tensor([[0.0, 0.5 * cosine], [0.5 * cosine, 0.0]], dtype=torch.float64)  # φ̂ ← ½·0 + ½·φ
    torch.testing.assert_close(trainer.balancer.targets, expected)
    assert abs(cosine) > 1e-3


@pytest.mark.parametrize("method", ["nashmtl", "db_mtl"])
def test_gradient_methods_advance_their_state_every_step(stand_ins, tmp_path: Path, method: str):
    trainer = fit(config(method), tmp_path / "r")
    balancer = trainer.balancer
    assert int(balancer.step_count) == 12
    weights = logged(tmp_path / "r", "weights")
    assert not torch.allclose(weights[0], weights[-1])
    if method == "nashmtl":  # α is the last solution, and the last step's weights are α (norm-clipped)
        assert not torch.allclose(balancer.alpha, torch.ones(2, dtype=torch.float64))
        torch.testing.assert_close(weights[-1] / weights[-1].sum(), balancer.alpha / balancer.alpha.sum())
    else:  # the EMA of the log-loss gradients over all shared parameters
        shared = sum(p.numel() for p in trainer.model.shared_parameters())
        assert balancer.ema.shape == (2, shared) and bool((balancer.ema.norm(dim=1) > 0).all())


def test_results_record_an_arm_hash_shared_by_seeds_and_changed_by_training_settings(stand_ins, tmp_path):
    seed_3 = run(config(), tmp_path / "a").meta
    seed_4 = run(config(seed=4, name="tiny-4", threads=2), tmp_path / "b").meta
    other_lr = run(config(optim={"lr": 2e-2, "iterations": 12, "eval_every": 4, "checkpoint_every": 2}),
                   tmp_path / "c").meta
    assert seed_3["arm_sha256"] == seed_4["arm_sha256"]  # seed, name, threads and execution settings are not the arm
    assert seed_3["config_sha256"] != seed_4["config_sha256"]
    assert run(config(threads=2), tmp_path / "d").meta["config_sha256"] != seed_3["config_sha256"]  # threads are
    assert other_lr["arm_sha256"] != seed_3["arm_sha256"]
