"""Describe a dataset split without loading it (``taskbalance data info``): the synthetic scenes are not rendered,
file datasets read their split lists and check that the files exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskbalance.data.base import DatasetInfo
from taskbalance.data.synthetic.dataset import describe_synthetic


def describe_dataset(
    name: str, split: str = "train", root: Path | str | None = None, **options: Any
) -> tuple[DatasetInfo, int]:
    """``(info, number of items)`` of ``build_dataset(name, split, root=root, **options)``, computed cheaply."""
    if name == "synthetic" and root is None:
        return describe_synthetic(split, **options)
    from taskbalance.data.registry import build_dataset  # the readers import pyEdgeEval: not for the synthetic case

    dataset = build_dataset(name, split, root=root, **options)
    return dataset.info, len(dataset)
