"""What every protocol split is: a torch ``Dataset`` of items that states its :class:`DatasetInfo`."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch.utils.data import Dataset

from taskbalance.data import DatasetInfo


class ProtocolDataset(Dataset, ABC):
    """One split of a protocol benchmark: ``len(split)`` items, and ``info`` (name, tasks, metadata) that the
    runner, the data check and the reports read."""

    info: DatasetInfo

    @abstractmethod
    def __len__(self) -> int:
        """Number of items."""
