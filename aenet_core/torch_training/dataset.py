"""``aenet.torch_training.dataset``, the import path aenet-python's documentation uses for the datasets."""
from aenet_core.data import CachedStructureDataset, HDF5StructureDataset, StructureDataset
from aenet_core.data.sources import convert_to_structures
from aenet_core.split import train_test_split, train_test_split_dataset

__all__ = ["CachedStructureDataset", "HDF5StructureDataset", "StructureDataset", "convert_to_structures",
           "train_test_split", "train_test_split_dataset"]
