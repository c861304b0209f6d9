"""The benchmarks' own networks: SegNet / SegNet-MTAN (MTAN protocol), FAMO's CelebA CNN, MGDA's MultiLeNet."""

from taskbalance.protocols.models.base import ProtocolModel
from taskbalance.protocols.models.classifiers import CelebACNN, MultiLeNet
from taskbalance.protocols.models.segnet import SegNet, SegNetMTAN, SegNetTrunk

__all__ = ["CelebACNN", "MultiLeNet", "ProtocolModel", "SegNet", "SegNetMTAN", "SegNetTrunk"]
