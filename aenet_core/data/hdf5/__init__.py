"""The HDF5 structure database: layout and versions (schema), the streaming writer (build) and the reader
(dataset, payloads).  Each name is imported from its module on first use (``aenet_core.lazy``)."""
from aenet_core.lazy import lazy_attributes

_HOMES = {"DatabaseError": "schema", "HDF5StructureDataset": "dataset", "IncompatibleDescriptorError": "schema"}
__getattr__ = lazy_attributes(__name__, _HOMES)
__all__ = sorted(_HOMES)
