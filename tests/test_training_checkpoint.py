"""Checkpoints (atomic pointer, weights_only state, RNG) and the resumable batch sampler."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from taskbalance.training import checkpoint as ckpt
from taskbalance.training.batches import EpochBatchSampler
from taskbalance.training.rundir import JsonLines


def test_save_find_load_roundtrip(tmp_path: Path):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    saved = ckpt.save_checkpoint(tmp_path, "last", 7, model, {"optimizer": optimizer.state_dict(), "step": 7})
    found = ckpt.find_checkpoint(tmp_path, "last")
    assert found == saved and found.step == 7
    clone = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ckpt.load_weights(clone, found)
    for a, b in zip(model.state_dict().values(), clone.state_dict().values()):
        assert torch.equal(a, b)
    state = ckpt.load_state(found)
    restored = torch.optim.Adam(clone.parameters())
    restored.load_state_dict(state["optimizer"])
    assert state["step"] == 7


def test_new_checkpoint_replaces_old_and_ignores_stale_staging(tmp_path: Path):
    model = nn.Linear(2, 2)
    ckpt.save_checkpoint(tmp_path, "last", 1, model, {})
    (tmp_path / ".last-00000002.tmp").mkdir()  # a crash in the middle of a save leaves this behind
    assert ckpt.find_checkpoint(tmp_path, "last").step == 1
    ckpt.save_checkpoint(tmp_path, "last", 3, model, {})
    assert ckpt.find_checkpoint(tmp_path, "last").step == 3
    assert sorted(p.name for p in tmp_path.glob("last-*")) == ["last-00000001", "last-00000003"]  # previous kept
    ckpt.save_checkpoint(tmp_path, "last", 5, model, {})
    assert sorted(p.name for p in tmp_path.glob("last-*")) == ["last-00000003", "last-00000005"]
    assert ckpt.find_checkpoint(tmp_path, "best") is None


def test_load_weights_rejects_another_model(tmp_path: Path):
    saved = ckpt.save_checkpoint(tmp_path, "best", 1, nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="does not match"):
        ckpt.load_weights(nn.Sequential(nn.Linear(2, 2)), saved)


def test_rng_state_roundtrip_through_weights_only_file(tmp_path: Path):
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    torch.save(ckpt.rng_state(), tmp_path / "rng.pt")
    expected = (torch.rand(3), random.random(), np.random.rand())
    ckpt.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(expected[0], got[0]) and expected[1:] == got[1:]


def test_sampler_epochs_are_permutations_and_skip_resumes():
    sampler = EpochBatchSampler(size=10, batch_size=3, seed=5)
    assert len(sampler) == 3
    sampler.set_position(epoch=1)
    full = list(sampler)
    assert len({i for batch in full for i in batch}) == 9
    sampler.set_position(epoch=1, skip=2)
    assert list(sampler) == full[2:]
    sampler.set_position(epoch=2)
    assert list(sampler) != full


def test_sampler_ranks_partition_the_epoch():
    shards = [list(EpochBatchSampler(12, 2, seed=0, rank=r, world_size=3)) for r in range(3)]
    flat = [i for shard in shards for batch in shard for i in batch]
    assert sorted(flat) == list(range(12))


def test_sampler_rejects_a_split_smaller_than_a_batch():
    with pytest.raises(ValueError, match="fewer than one batch"):
        EpochBatchSampler(3, 4, seed=0)


def test_jsonlines_truncate_and_torn_line(tmp_path: Path):
    log = JsonLines(tmp_path / "m.jsonl")
    for step in range(1, 6):
        log.append({"step": step, "value": float("nan") if step == 2 else step})
    with open(log.path, "a") as handle:
        handle.write('{"step": 6, "val')  # crash in the middle of a write
    assert [r["step"] for r in log.read()] == [1, 2, 3, 4, 5]
    assert log.read()[1]["value"] is None
    log.truncate_after(3)
    assert [r["step"] for r in log.read()] == [1, 2, 3]


def _three_checkpoints(folder: Path) -> nn.Module:
    """Checkpoints 'last' at steps 1, 2 and 3 of a model whose weights differ at each step; returns the model."""
    model = nn.Linear(8, 8)
    for step in (1, 2, 3):
        with torch.no_grad():
            model.weight.fill_(float(step))
        ckpt.save_checkpoint(folder, "last", step, model, {"step": step})
    return model


def _flip(path: Path, offset: int, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_previous_checkpoint_is_kept_and_manifest_records_sha256(tmp_path: Path):
    import hashlib
    import json

    _three_checkpoints(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("last-*")) == ["last-00000002", "last-00000003"]
    manifest = json.loads((tmp_path / "last-00000003" / "manifest.json").read_text())
    weights = tmp_path / "last-00000003" / "model.safetensors"
    assert manifest["step"] == 3
    assert manifest["sha256"]["model.safetensors"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert set(manifest["sha256"]) == {"model.safetensors", "state.pt"}


@pytest.mark.parametrize(("file", "damage"), [("model.safetensors", "flip"), ("model.safetensors", "truncate"),
                                              ("state.pt", "truncate"), ("state.pt", "flip")])
def test_damaged_file_is_named_and_the_previous_checkpoint_is_used(tmp_path: Path, file: str, damage: str):
    _three_checkpoints(tmp_path)
    damaged = tmp_path / "last-00000003" / file
    _flip(damaged, 200) if damage == "flip" else _truncate(damaged)
    messages: list[str] = []
    found = ckpt.find_checkpoint(tmp_path, "last", on_damage=messages.append)
    assert found.step == 2
    clone = nn.Linear(8, 8)
    ckpt.load_weights(clone, found)
    assert torch.all(clone.weight == 2.0) and ckpt.load_state(found) == {"step": 2}
    assert len(messages) == 1 and "\n" not in messages[0]
    assert str(damaged) in messages[0] and "damaged" in messages[0] and "last-00000002" in messages[0]


def test_damage_without_an_intact_checkpoint_is_one_line_naming_the_file(tmp_path: Path):
    ckpt.save_checkpoint(tmp_path, "last", 1, nn.Linear(8, 8), {"step": 1})
    weights = tmp_path / "last-00000001" / "model.safetensors"
    _flip(weights, 100)
    with pytest.raises(ckpt.CheckpointError) as caught:
        ckpt.find_checkpoint(tmp_path, "last", on_damage=lambda message: None)
    assert str(weights) in str(caught.value) and "\n" not in str(caught.value)


def test_truncated_pointer_is_named_and_the_newest_intact_folder_used(tmp_path: Path):
    _three_checkpoints(tmp_path)
    _truncate(tmp_path / "last.json")
    messages: list[str] = []
    assert ckpt.find_checkpoint(tmp_path, "last", on_damage=messages.append).step == 3
    assert len(messages) == 1 and str(tmp_path / "last.json") in messages[0]


def test_unverified_load_of_a_truncated_file_is_one_line(tmp_path: Path):
    saved = ckpt.save_checkpoint(tmp_path, "last", 1, nn.Linear(8, 8), {"step": 1})
    for path in (saved.weights, saved.state):
        _truncate(path)
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors cannot be read"):
        ckpt.load_weights(nn.Linear(8, 8), saved)
    with pytest.raises(ckpt.CheckpointError, match="state.pt cannot be read"):
        ckpt.load_state(saved)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_checkpoint_files_get_umask_permissions(tmp_path: Path, umask: int):
    import os

    previous = os.umask(umask)
    try:
        saved = ckpt.save_checkpoint(tmp_path, "last", 1, nn.Linear(2, 2), {"step": 1})
    finally:
        os.umask(previous)
    for path in (saved.weights, saved.state, saved.path / "manifest.json", tmp_path / "last.json"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name


def test_the_saved_checkpoint_lies_in_the_folder_checkpoint_folder_names(tmp_path: Path):
    saved = ckpt.save_checkpoint(tmp_path, "last", 40, nn.Linear(2, 1))
    assert saved.path == ckpt.checkpoint_folder(tmp_path, "last", 40) == tmp_path / "last-00000040"
    assert ckpt.verify_checkpoint(ckpt.checkpoint_folder(tmp_path, "last", 40)) is None


def test_mean_weights_average_the_weight_sums_over_the_counted_steps():
    from taskbalance.training.state import LoopState

    state = LoopState(weight_sums={"a": 3.0, "b": 6.0}, weight_count=3)
    assert state.mean_weights() == {"a": 1.0, "b": 2.0}
    assert LoopState(weight_sums={"a": 2.5}).mean_weights() == {"a": 2.5}  # no step counted yet: the sums
