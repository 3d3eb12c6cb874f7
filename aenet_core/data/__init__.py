"""Training data: the structure-source contract, inputs, the plausibility limits and the common filter,
in-memory and HDF5 datasets, sharded datasets (several databases as one), per-structure caches and featurized
batches."""
from aenet_core.data.hdf5 import DatabaseError, HDF5StructureDataset
from aenet_core.data.memory import CachedStructureDataset, InMemoryStructures, StructureDataset
from aenet_core.data.plausibility import PlausibilityLimits
from aenet_core.data.protocol import StructureSource
from aenet_core.data.shards import ShardedDataset, open_databases
from aenet_core.data.sources import StructureFilter, iter_entries

__all__ = ["CachedStructureDataset", "DatabaseError", "HDF5StructureDataset", "InMemoryStructures",
           "PlausibilityLimits", "ShardedDataset", "StructureDataset", "StructureFilter", "StructureSource",
           "iter_entries", "open_databases"]
