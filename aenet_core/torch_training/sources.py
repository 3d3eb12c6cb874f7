"""aenet-python's ``torch_training.sources``: build inputs for ``HDF5StructureDataset(sources=...)`` beyond plain
files (their home: ``aenet_core.data.records``)."""
from aenet_core.data.records import (FilePathSourceCollection, RecordSourceCollection, SourceCapabilities,
                                     SourceCollection, SourceRecord, TarArchiveXSFSourceCollection,
                                     coerce_source_collection)

__all__ = ["FilePathSourceCollection", "RecordSourceCollection", "SourceCapabilities", "SourceCollection",
           "SourceRecord", "TarArchiveXSFSourceCollection", "coerce_source_collection"]
