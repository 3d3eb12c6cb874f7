"""The HDF5 structure database: layout and versions (schema), the streaming writer (build) and the reader
(dataset, payloads)."""
from aenet_core.data.hdf5.dataset import HDF5StructureDataset
from aenet_core.data.hdf5.schema import DatabaseError

__all__ = ["DatabaseError", "HDF5StructureDataset"]
