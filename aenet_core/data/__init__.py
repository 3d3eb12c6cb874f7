"""Training data: the structure-source contract (``resolve_subsets`` sees through torch Subsets of a source),
inputs, the plausibility limits and the common filter, in-memory and HDF5 datasets, sharded datasets (several
databases as one), per-structure caches and featurized batches.  Each name is imported from its module on
first use (``aenet_core.lazy``)."""
from aenet_core.lazy import lazy_attributes

_HOMES = {
    "DatabaseError": "hdf5",
    "HDF5StructureDataset": "hdf5",
    "IncompatibleDescriptorError": "hdf5",
    "CachedStructureDataset": "memory",
    "InMemoryStructures": "memory",
    "StructureDataset": "memory",
    "PlausibilityLimits": "limits",
    "StructureSource": "protocol",
    "resolve_subsets": "protocol",
    "SourceLoadError": "records",
    "ShardedDataset": "shards",
    "open_databases": "shards",
    "StructureFilter": "sources",
    "iter_entries": "sources",
}
__getattr__ = lazy_attributes(__name__, _HOMES)
__all__ = sorted(_HOMES)
