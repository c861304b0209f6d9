"""The method papers' own benchmarks (CAGrad, Nash-MTL, FAMO, FairGrad, IMGrad): NYUv2 3-task and Cityscapes 2-task
under the MTAN protocol, CelebA 40 attributes, MultiMNIST — loaders, networks, tasks, presets, reporting.

```python
from taskbalance.protocols import protocol_preset, run_protocol
outcome = run_protocol(protocol_preset("nyuv2-mtan"), method="famo", root="data/nyuv2", out=Path("runs/nyu-famo"))
outcome.reported["semseg"]["mIoU"], outcome.delta_m      # mean of the last 10 epochs; Δm% (lower is better)
```
"""

from taskbalance.protocols.delta import (
    CITYSCAPES_COLUMNS,
    CITYSCAPES_STL_BASELINE,
    NYUV2_COLUMNS,
    NYUV2_STL_BASELINE,
    MetricColumn,
    last_epochs_mean,
    protocol_delta_m,
)
from taskbalance.protocols.presets import ProtocolPreset, available_protocols, protocol_preset
from taskbalance.protocols.report import ProtocolTable, protocol_table, to_csv, to_markdown
from taskbalance.protocols.runner import ProtocolOutcome, run_protocol

__all__ = [
    "CITYSCAPES_COLUMNS",
    "CITYSCAPES_STL_BASELINE",
    "NYUV2_COLUMNS",
    "NYUV2_STL_BASELINE",
    "MetricColumn",
    "ProtocolOutcome",
    "ProtocolPreset",
    "ProtocolTable",
    "available_protocols",
    "last_epochs_mean",
    "protocol_delta_m",
    "protocol_preset",
    "protocol_table",
    "run_protocol",
    "to_csv",
    "to_markdown",
]
