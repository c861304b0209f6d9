"""The four benchmarks of the method papers as presets: data, tasks, network, schedule and reporting rule.

========== ======================================================================================================
preset     settings (sources: methods.md §5.4; the CAGrad, Nash-MTL, FAMO and IMGrad code)
========== ======================================================================================================
nyuv2-mtan NYUv2 MTAN ``.npy`` (795 / 654, 288×384), seg (13) + depth + normals, SegNet-MTAN, Adam 1e-4 halved
           at epoch 100, 200 epochs, batch 2, train augmentation, mean of the last 10 epochs' test metrics
cityscapes Cityscapes MTAN ``.npy`` (2975 / 500, 128×256), seg (7) + depth, SegNet-MTAN, same optimiser, batch 8
celeba     CelebA 40 attributes at 64×64, FAMO's CNN, Adam 3e-4, 15 epochs, batch 256, test F1 at the epoch with
           the best mean validation F1 (FAMO ``trainer.py``)
multimnist MultiMNIST (60k / 10k), MultiLeNet, Adam 1e-3, 50 epochs, batch 256 — the optimiser settings follow
           CAGrad's Multi-Fashion+MNIST setup (methods.md §5.4); MGDA's own are not in our reference. Last epoch.
========== ======================================================================================================

``protocol_preset(name, cpu=True)`` gives the CPU version: the same pipeline on the in-memory stand-in data
(:mod:`taskbalance.protocols.data.standin`) with narrow networks and a few epochs; the papers' hard-coded
single-task baselines do not apply to the stand-ins, so their Δm comes from single-task runs (see :mod:`.suite`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from taskbalance.data import DataError
from taskbalance.protocols.data import (
    NYUV2,
    CelebADataset,
    MTANDataset,
    MTANLayout,
    MultiMNISTDataset,
    cityscapes_layout,
    standin_celeba,
    standin_mtan,
    standin_multimnist,
)
from taskbalance.protocols.data.base import ProtocolDataset
from taskbalance.protocols.delta import (
    CITYSCAPES_COLUMNS,
    CITYSCAPES_STL_BASELINE,
    NYUV2_COLUMNS,
    NYUV2_STL_BASELINE,
    MetricColumn,
)
from taskbalance.protocols.models import CelebACNN, MultiLeNet, ProtocolModel, SegNetMTAN
from taskbalance.protocols.tasks import attribute_task, digit_task, mtan_depth, mtan_normals, mtan_semseg
from taskbalance.tasks import TaskSpec

#: ``load(split, root, seed)``: one split of the preset's data.
Loader = Callable[[str, Path | None, int], ProtocolDataset]
#: ``build(task_channels, single_task)``: the preset's network.
ModelBuilder = Callable[[Mapping[str, int], bool], ProtocolModel]


@dataclass(frozen=True)
class Schedule:
    """Adam with a constant rate, halved once at ``halve_at`` epochs when set (``StepLR(100, 0.5)``)."""

    epochs: int
    batch_size: int
    lr: float
    halve_at: int | None = None
    weight_decay: float = 0.0


@dataclass(frozen=True)
class Reporting:
    """``last_epochs``: mean of the last ``epochs`` per-epoch test evaluations; ``best_val``: the test metrics of
    the epoch with the best mean validation primary metric."""

    rule: Literal["last_epochs", "best_val"]
    epochs: int = 10


@dataclass(frozen=True)
class ProtocolPreset:
    """One benchmark: how to load it, its tasks, network, schedule, reporting rule, table columns, baseline."""

    name: str
    description: str
    load: Loader
    task: Callable[[str], TaskSpec]
    model: ModelBuilder
    schedule: Schedule
    reporting: Reporting
    columns: Callable[[Sequence[str]], tuple[MetricColumn, ...]]
    baseline: Mapping[str, Mapping[str, float]] | None = None


def _require_root(name: str, root: Path | None, expected: str) -> Path:
    if root is None:
        raise DataError(f"{name} is read from disk: pass root= ({expected}); nothing is downloaded")
    return root


def _mtan_loader(layout: MTANLayout, expected: str) -> Loader:
    def load(split: str, root: Path | None, seed: int) -> ProtocolDataset:
        return MTANDataset(
            layout, _require_root(layout.name, root, expected), split, augment=split == "train", seed=seed
        )

    return load


def _standin_mtan_loader(layout: MTANLayout) -> Loader:
    def load(split: str, root: Path | None, seed: int) -> ProtocolDataset:
        return standin_mtan(layout, 4 if split == "train" else 2, (32, 32), seed=seed + (split != "train"))
    return load


def _mtan_task(num_classes: int) -> Callable[[str], TaskSpec]:
    builders: dict[str, Callable[[], TaskSpec]] = {"semseg": lambda: mtan_semseg(num_classes), "depth": mtan_depth,
                                                   "normals": mtan_normals}

    def task(name: str) -> TaskSpec:
        if name not in builders:
            raise DataError(f"the MTAN protocol has no task {name!r}; tasks: {', '.join(builders)}")
        return builders[name]()
    return task


def _columns_of(all_columns: tuple[MetricColumn, ...]) -> Callable[[Sequence[str]], tuple[MetricColumn, ...]]:
    return lambda tasks: tuple(c for c in all_columns if c.task in tasks)


def _primary_columns(metric: str, higher: bool) -> Callable[[Sequence[str]], tuple[MetricColumn, ...]]:
    return lambda tasks: tuple(MetricColumn(t, metric, higher, t) for t in tasks)


def _segnet_mtan(filters: Sequence[int] | None) -> ModelBuilder:
    def build(channels: Mapping[str, int], single_task: bool) -> ProtocolModel:
        if filters is None:
            return SegNetMTAN(channels, single_task=single_task)
        return SegNetMTAN(channels, filters=filters, single_task=single_task)
    return build


def _mtan_preset(name: str, layout: MTANLayout, batch: int, columns: tuple[MetricColumn, ...],
                 baseline: Mapping[str, Mapping[str, float]], cpu: bool) -> ProtocolPreset:
    expected = "the folder with train/ and val/ in the MTAN .npy layout"
    if cpu:
        return ProtocolPreset(
            f"{name}-cpu",
            f"{name} pipeline on stand-in data (CPU)",
            _standin_mtan_loader(layout),
            _mtan_task(layout.num_classes),
            _segnet_mtan((4, 8, 8, 16, 16)),
            Schedule(2, 4, 1e-3, halve_at=1),
            Reporting("last_epochs", 2),
            _columns_of(columns),
        )
    return ProtocolPreset(name, f"{layout.name} (MTAN protocol), SegNet-MTAN", _mtan_loader(layout, expected),
                          _mtan_task(layout.num_classes), _segnet_mtan(None), Schedule(200, batch, 1e-4, halve_at=100),
                          Reporting("last_epochs", 10), _columns_of(columns), baseline)


def _celeba(cpu: bool) -> ProtocolPreset:
    if cpu:
        def load(split: str, root: Path | None, seed: int) -> ProtocolDataset:
            return standin_celeba(16 if split == "train" else 8, seed=seed + ("train", "val", "test").index(split))
        widths: Sequence[int] = (4, 8, 8, 16)
        schedule = Schedule(2, 16, 1e-3)
    else:
        def load(split: str, root: Path | None, seed: int) -> ProtocolDataset:
            return CelebADataset(_require_root("celeba", root, "Img/, Anno/, Eval/ of the official release"), split)
        widths = (64, 128, 256, 512)
        schedule = Schedule(15, 256, 3e-4)

    def model(channels: Mapping[str, int], single_task: bool) -> ProtocolModel:
        return CelebACNN(channels, widths=widths, single_task=single_task)
    return ProtocolPreset("celeba-cpu" if cpu else "celeba", "CelebA 40 attributes, FAMO's CNN", load, attribute_task,
                          model, schedule, Reporting("best_val"), _primary_columns("f1", True))


def _multimnist(cpu: bool) -> ProtocolPreset:
    if cpu:
        def load(split: str, root: Path | None, seed: int) -> ProtocolDataset:
            return standin_multimnist(32 if split == "train" else 16, seed=seed + (split != "train"))
        schedule = Schedule(2, 32, 1e-3)
    else:
        def load(split: str, root: Path | None, seed: int) -> ProtocolDataset:
            return MultiMNISTDataset.from_mnist(
                _require_root("multimnist", root, "MNIST's idx files"), split, seed=seed
            )

        schedule = Schedule(50, 256, 1e-3)

    def task(name: str) -> TaskSpec:
        if name not in ("left", "right"):
            raise DataError(f"MultiMNIST has tasks 'left' and 'right', not {name!r}")
        return digit_task(name, name.capitalize())

    def model(channels: Mapping[str, int], single_task: bool) -> ProtocolModel:
        return MultiLeNet(channels, single_task=single_task)

    return ProtocolPreset(
        "multimnist-cpu" if cpu else "multimnist",
        "MultiMNIST left/right digits, MultiLeNet",
        load,
        task,
        model,
        schedule,
        Reporting("last_epochs", 1),
        _primary_columns("accuracy", True),
    )


_BUILDERS: dict[str, Callable[[bool], ProtocolPreset]] = {
    "nyuv2-mtan": lambda cpu: _mtan_preset("nyuv2-mtan", NYUV2, 2, NYUV2_COLUMNS, NYUV2_STL_BASELINE, cpu),
    "cityscapes": lambda cpu: _mtan_preset(
        "cityscapes", cityscapes_layout(7), 8, CITYSCAPES_COLUMNS, CITYSCAPES_STL_BASELINE, cpu
    ),
    "celeba": _celeba,
    "multimnist": _multimnist,
}


def available_protocols() -> tuple[str, ...]:
    """Names accepted by :func:`protocol_preset`."""
    return tuple(_BUILDERS)


def protocol_preset(name: str, cpu: bool = False) -> ProtocolPreset:
    """The preset ``name`` (``nyuv2-mtan``, ``cityscapes``, ``celeba``, ``multimnist``); ``cpu=True``: its stand-in
    version for CPUs and tests."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown protocol {name!r}; available: {', '.join(_BUILDERS)}")
    return _BUILDERS[name](cpu)
