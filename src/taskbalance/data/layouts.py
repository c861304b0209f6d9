"""Names of the datasets' on-disk layouts, in a module that imports nothing heavy (the CLI lists them in ``--help``
before torch is loaded)."""

from typing import Final

#: Layouts ``data export`` writes the synthetic scenes in (``taskbalance.data.export``).
EXPORT_LAYOUTS: Final[tuple[str, ...]] = ("nyud", "nyudv2", "pascal")
#: Datasets whose folders ``data check`` reads (``taskbalance.data.check``).
CHECKABLE_DATASETS: Final[tuple[str, ...]] = ("nyud", "pascal", "replica")
