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
    assert sorted(p.name for p in tmp_path.glob("last-*")) == ["last-00000003"]
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
