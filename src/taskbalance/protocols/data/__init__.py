"""Loaders of the benchmarks' preprocessed formats and their in-memory CPU stand-ins."""

from taskbalance.protocols.data.celeba import CelebADataset
from taskbalance.protocols.data.mtan import CITYSCAPES_7, NYUV2, MTANDataset, MTANLayout, cityscapes_layout
from taskbalance.protocols.data.multimnist import MultiMNISTDataset, overlay, read_mnist
from taskbalance.protocols.data.standin import TensorItems, standin_celeba, standin_mtan, standin_multimnist

__all__ = [
    "CITYSCAPES_7",
    "NYUV2",
    "CelebADataset",
    "MTANDataset",
    "MTANLayout",
    "MultiMNISTDataset",
    "TensorItems",
    "cityscapes_layout",
    "overlay",
    "read_mnist",
    "standin_celeba",
    "standin_mtan",
    "standin_multimnist",
]
