"""The method papers' own benchmarks (CAGrad, Nash-MTL, FAMO, FairGrad, IMGrad): NYUv2 3-task and Cityscapes 2-task
under the MTAN protocol, CelebA 40 attributes, MultiMNIST — loaders, networks, tasks, presets, reporting.

```python
from taskbalance.protocols import protocol_preset, run_protocol
outcome = run_protocol(protocol_preset("nyuv2-mtan"), method="famo", root="data/nyuv2", out=Path("runs/nyu-famo"))
outcome.reported["semseg"]["mIoU"]  # mean of the last 10 epochs
outcome.delta_m                     # Δm% (Eq. 5 sign: higher is better)
```
"""

from taskbalance.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "CITYSCAPES_COLUMNS": "delta",
    "CITYSCAPES_STL_BASELINE": "delta",
    "NYUV2_COLUMNS": "delta",
    "NYUV2_STL_BASELINE": "delta",
    "MetricColumn": "delta",
    "ProtocolOutcome": "runner",
    "ProtocolPreset": "presets",
    "ProtocolTable": "report",
    "available_protocols": "presets",
    "last_epochs_mean": "delta",
    "protocol_delta_m": "delta",
    "protocol_preset": "presets",
    "protocol_table": "report",
    "run_protocol": "runner",
    "to_csv": "report",
    "to_markdown": "report",
})
