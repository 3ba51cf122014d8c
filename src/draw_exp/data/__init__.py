"""LightningDataModules: files, splits, transforms and loaders."""

from draw_exp.data.base import ImageDataModule, ImageDataset, LabelledImageDataset, unpack_batch
from draw_exp.data.binarized_mnist import BinarizedMNISTDataModule
from draw_exp.data.cifar10 import CIFAR10DataModule
from draw_exp.data.mnist import MNISTDataModule
from draw_exp.data.multi_mnist import ClutteredMNISTDataModule, TwoDigitMNISTDataModule
from draw_exp.data.svhn import SVHNDataModule, SVHNPaperDataModule

__all__ = [
    "BinarizedMNISTDataModule",
    "CIFAR10DataModule",
    "ClutteredMNISTDataModule",
    "ImageDataModule",
    "ImageDataset",
    "LabelledImageDataset",
    "MNISTDataModule",
    "SVHNDataModule",
    "SVHNPaperDataModule",
    "TwoDigitMNISTDataModule",
    "unpack_batch",
]
