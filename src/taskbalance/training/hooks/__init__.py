"""The hooks of the loop core (:mod:`taskbalance.training.loop`), one per file: the contract (``base``), logging
(``logs``: JSON lines and TensorBoard), validation and checkpoint selection (``validation``), checkpointing, resume and
the stop after a signal (``checkpointing``), distillation (``distill``: URL), progress (``progress``), data-parallel
set-up (``data_parallel``) and the study trainer's final test (``final``).

Hooks import the loop only for type checking (the loop imports this package).
"""

from taskbalance.training.hooks.base import Hook
from taskbalance.training.hooks.checkpointing import Checkpointing
from taskbalance.training.hooks.data_parallel import DataParallelSetup
from taskbalance.training.hooks.distill import Distillation
from taskbalance.training.hooks.final import FinalTest
from taskbalance.training.hooks.logs import MetricsLogger
from taskbalance.training.hooks.progress import ProgressBar
from taskbalance.training.hooks.validation import Validation

__all__ = ["Checkpointing", "DataParallelSetup", "Distillation", "FinalTest", "Hook", "MetricsLogger", "ProgressBar",
           "Validation"]
