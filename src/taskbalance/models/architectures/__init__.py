"""The paper's architectures (Sec. V-C): vanilla hard sharing, MTAN, MTI-Net and InvPT."""

from taskbalance.models.architectures.invpt import InvPTModel
from taskbalance.models.architectures.mtan import MTANModel
from taskbalance.models.architectures.mtinet import MTINetModel
from taskbalance.models.architectures.vanilla import VanillaModel

__all__ = ["InvPTModel", "MTANModel", "MTINetModel", "VanillaModel"]
