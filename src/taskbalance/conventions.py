"""Shared conventions between data, tasks, models and training (the contract every module follows).

A dataset item is a dict::

    {"image": FloatTensor[3, H, W] (ImageNet-normalised),
     "semseg": LongTensor[H, W]       (class ids, IGNORE_INDEX where unlabeled),
     "human_parts": LongTensor[H, W]  (part ids, 0 = background, IGNORE_INDEX where unlabeled),
     "depth": FloatTensor[1, H, W]    (metres, INVALID_DEPTH = 0 where invalid),
     "normals": FloatTensor[3, H, W]  (unit vectors in the camera frame, all-zero where invalid),
     "edge": FloatTensor[1, H, W]     (0/1, IGNORE_INDEX where padded),
     "sal": FloatTensor[1, H, W]      (0/1, IGNORE_INDEX where padded),
     "meta": {"id": str, "scene": str, "view": int}}

Models return ``dict[task_name, Tensor[B, C, H, W]]`` at input resolution (raw logits / raw regressions;
the task's loss and metric apply the activation). Batches are the default collate of such items.
"""

from typing import Final

IGNORE_INDEX: Final[int] = 255
INVALID_DEPTH: Final[float] = 0.0

#: Canonical task names, in the order tables and figures list them.
TASK_NAMES: Final[tuple[str, ...]] = ("semseg", "human_parts", "depth", "normals", "sal", "edge")

#: Value that marks a pixel as unlabeled for each task (padding uses it too).
IGNORE_VALUE: Final[dict[str, float]] = {
    "semseg": IGNORE_INDEX,
    "human_parts": IGNORE_INDEX,
    "depth": INVALID_DEPTH,
    "normals": 0.0,
    "edge": IGNORE_INDEX,
    "sal": IGNORE_INDEX,
}

#: Short labels used in tables and plots.
TASK_LABELS: Final[dict[str, str]] = {
    "semseg": "Seg.",
    "human_parts": "H. Parts",
    "depth": "Dep.",
    "normals": "Norm.",
    "sal": "Sal.",
    "edge": "Edge",
}

#: Separator of a task pair's key in gradient-diagnostics records (``"semseg|depth"``).
PAIR_SEPARATOR: Final[str] = "|"
