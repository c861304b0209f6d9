"""Validate a dataset folder without modifying it: ``taskbalance data check ROOT --dataset nyud``.

Uses the loaders' own readers, so it reports exactly what training would trip over: missing split files,
missing files, unreadable or corrupt images and arrays, label values out of range, and targets whose size
differs from their image, each with the file's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from taskbalance.data.base import DataError
from taskbalance.data.folder import FolderReader
from taskbalance.data.nyud import NYUDReader
from taskbalance.data.pascal import PascalReader
from taskbalance.data.replica import ReplicaReader

__all__ = ["CHECKABLE", "CheckReport", "Problem", "check_dataset"]

CHECKABLE: dict[str, Callable[[Path], FolderReader]] = {
    "nyud": NYUDReader,
    "pascal": PascalReader,
    "replica": ReplicaReader,
}


@dataclass(frozen=True)
class Problem:
    """One problem: the file concerned and what is wrong with it."""

    path: str
    message: str


@dataclass
class CheckReport:
    """Result of a check: the layout found, samples examined, and every problem."""

    root: Path
    dataset: str
    layout: str
    samples: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def _check_sample(reader: FolderReader, sample_id: str, report: CheckReport) -> None:
    shapes: dict[str, tuple[int, ...]] = {}
    for key in ("image", *reader.tasks):
        paths = reader.paths(sample_id, key)
        missing = [p for p in paths if not p.is_file()]
        for path in missing:
            report.problems.append(Problem(str(path), f"missing ({key} of sample {sample_id!r})"))
        if missing:
            continue
        try:
            shapes[key] = tuple(reader.read(sample_id, key).shape[-2:])
        except DataError as error:
            report.problems.append(Problem(str(paths[0]), str(error)))
    image_shape = shapes.pop("image", None)
    for key, shape in shapes.items():
        if image_shape is not None and shape != image_shape:
            path = reader.paths(sample_id, key)[0]
            report.problems.append(
                Problem(str(path), f"{key} is {shape[0]}×{shape[1]} but the image is {image_shape[0]}×{image_shape[1]}")
            )


def check_dataset(
    root: Path | str,
    dataset: str,
    splits: tuple[str, ...] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Check every sample of ``splits`` (default: all of the dataset's splits) under ``root``.

    Raises :class:`DataError` only when the folder cannot be checked at all (unknown dataset, missing root,
    undetectable layout); everything else is collected in the report.
    """
    if dataset not in CHECKABLE:
        raise DataError(f"cannot check {dataset!r}; checkable datasets: {', '.join(CHECKABLE)}")
    reader = CHECKABLE[dataset](Path(root).expanduser())
    report = CheckReport(reader.root, dataset, reader.layout)
    listed: dict[str, None] = {}
    for split in splits or tuple(reader.split_files):
        path = reader.split_path(split)
        try:
            listed.update(dict.fromkeys(reader.ids(split)))
        except DataError as error:
            report.problems.append(Problem(str(path), str(error)))
    ids = list(listed)
    for done, sample_id in enumerate(ids, start=1):
        _check_sample(reader, sample_id, report)
        report.samples = done
        if progress is not None:
            progress(done, len(ids))
    return report
