"""Datasets for the dense-prediction study: the embedded synthetic scenes, NYUD-v2, PASCAL-Context, Replica.

```python
from taskbalance.data import build_dataset
ds = build_dataset("synthetic", split="train", tasks=("semseg", "depth"), augment=True, scans_per_scene=0.5)
ds.info.num_classes["semseg"], ds[0]["image"].shape
```
"""

from taskbalance.data.base import DataError, DatasetInfo, MultiTaskDataset
from taskbalance.data.noise import LabelNoise
from taskbalance.data.registry import available_datasets, build_dataset
from taskbalance.data.transforms import Augmentation

__all__ = [
    "Augmentation",
    "DataError",
    "DatasetInfo",
    "LabelNoise",
    "MultiTaskDataset",
    "available_datasets",
    "build_dataset",
]
