"""LightningDataModules: files, splits, transforms and loaders."""

from draw_exp.data.base import ImageDataModule, ImageDataset, unpack_batch
from draw_exp.data.binarized_mnist import BinarizedMNISTDataModule
from draw_exp.data.mnist import MNISTDataModule
from draw_exp.data.svhn import SVHNDataModule, SVHNPaperDataModule

__all__ = [
    "BinarizedMNISTDataModule",
    "ImageDataModule",
    "ImageDataset",
    "MNISTDataModule",
    "SVHNDataModule",
    "SVHNPaperDataModule",
    "unpack_batch",
]
