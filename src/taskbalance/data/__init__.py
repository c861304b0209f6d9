"""Datasets for the dense-prediction study: the embedded synthetic scenes, NYUD-v2, PASCAL-Context, Replica.

```python
from taskbalance.data import build_dataset
ds = build_dataset("synthetic", split="train", tasks=("semseg", "depth"), augment=True, scans_per_scene=0.5)
ds.info.num_classes["semseg"], ds[0]["image"].shape
```

May import: ``registration``, ``conventions``, ``atomic`` and ``lazy``; never models, training or the study.
"""

from taskbalance.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "Augmentation": "transforms",
    "DataError": "base",
    "DatasetInfo": "base",
    "LabelNoise": "noise",
    "MultiTaskDataset": "base",
    "available_datasets": "registry",
    "build_dataset": "registry",
})
