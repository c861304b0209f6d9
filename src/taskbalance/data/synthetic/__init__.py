"""The procedural multi-task dataset: scene sampling, ray casting, rendering, and the dataset."""

from taskbalance.data.synthetic.dataset import SyntheticDataset, SyntheticOptions
from taskbalance.data.synthetic.scenes import CLASSES, PARTS

__all__ = ["CLASSES", "PARTS", "SyntheticDataset", "SyntheticOptions"]
