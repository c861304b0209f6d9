"""Split-level meters of the dense-prediction tasks (the exact edge evaluation lives in ``edge_ods``)."""

from taskbalance.tasks.metrics.base import BaseMeter
from taskbalance.tasks.metrics.depth import DepthMeter
from taskbalance.tasks.metrics.edges import ApproxEdgeMeter, ExactEdgeMeter
from taskbalance.tasks.metrics.normals import NormalsMeter, angular_error_degrees
from taskbalance.tasks.metrics.saliency import SaliencyMeter
from taskbalance.tasks.metrics.segmentation import SegmentationMeter

__all__ = [
    "ApproxEdgeMeter",
    "BaseMeter",
    "DepthMeter",
    "ExactEdgeMeter",
    "NormalsMeter",
    "SaliencyMeter",
    "SegmentationMeter",
    "angular_error_degrees",
]
