"""Layout and versions of the HDF5 structure database, and the checks every open makes.

File layout (``format = "aenet_core.database"``, ``schema_version = 4``); every
array is plain typed data (no pickles), and the rows of one entry are
contiguous, located by offset arrays::

    /                   attrs: format, schema_version, aenet_core_version, n_entries, n_atoms,
                        content_sha256 (structures and labels, in entry order), n_filtered,
                        filter_json (max_energy, max_forces), atomic_energies_json, recipe_sha256,
                        species_json (the species labels, e.g. "Fe1", in order of first occurrence)
    /entries/           one row per entry: atom_offset (n+1) int64, energy f8, has_forces,
                        has_cell, cell (n,3,3), pbc (n,3), has_stress, stress (n,3,3) eV/Å³ (zero
                        where none), weight f8 (the loss weight), frame int64 (index in its source
                        before filtering), name, source_id, display_name, identifier, config_type
                        ("" for none), source_kind ("file", "structure", or a SourceRecord's;
                        absent from files written before it: read as "") (UTF-8 strings)
    /atoms/             one row per atom: species int16 (index into species_json), positions (A,3),
                        forces (A,3) (zero where the entry has no forces)
    /descriptor         (only where persisted; a structures-only database has none) attrs: descriptor_class, config_json, identity_json, identity_sha256
    /features/values    (A, F) raw features, float64 or float32 (attr storage_dtype)
    /derivatives/       force-labelled entries only (others have empty ranges); attrs
                        storage_dtype, n_radial (R+1), n_angular (A+1);
                        edge_offset (n+1), triplet_offset (n+1) int64;
      edges/            center, neighbor int32 (local atom indices), dG_dd (R+1, E), unit (3, E),
                        distance (E,)
      triplets/         center, j, k int32, dG_dcos, dG_ddij, dG_ddik (A+1, T),
                        dcos_drj, dcos_drk, unit_ij, unit_ik (3, T), d_ij, d_ik (T,)

Every numeric dataset is written with HDF5's per-chunk checksum (``fletcher32``; the
variable-length strings cannot have one), so a damaged chunk fails its read, naming the dataset; the structures and labels are also
checked against ``content_sha256`` whenever the file is opened.

Every entry passed ``aenet_core.data.sources.StructureFilter`` (so it has an
energy); the filter's settings are recorded.  The derivative fields are those
of ``LocalDerivatives``, order-major as it holds them (an entry's edges are a
contiguous column range, read without any transposition); the typespin weights
are recomputed from the species; the distances give the relative vectors the
virial (stress) needs.  Files before schema 4 store ``atoms/atomic_number`` instead of the
species index (element symbols only) and open as they did.  Schema 2 files (before stresses) open for energy and force
training: no stress labels, weights 1 and no config types, and derivatives without
distances, so stresses need a rebuild.  Schema 1 files (before the common filter and stored identifiers) are
refused with a request to rebuild.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from numbers import Integral

from aenet_core.files import FileFormatError, check_format

FORMAT = "aenet_core.database"
SCHEMA_VERSION = 4
READABLE_VERSIONS = (2, 3, SCHEMA_VERSION)
DESCRIPTOR_CLASS = "aenet_core.descriptor.ChebyshevDescriptor"
# h5py's filter for each accepted ``compression`` (aenet-python's zlib is HDF5's gzip filter)
COMPRESSIONS = {None: None, "zlib": "gzip", "gzip": "gzip", "lzf": "lzf"}
DEFAULT_STORAGE_DTYPE = "float64"  # of the persisted features and derivatives
EDGE_FIELDS = {"center": "center_idx", "neighbor": "neighbor_idx", "dG_dd": "radial_dG_dd", "unit": "radial_unit",
               "distance": "radial_distance"}
TRIPLET_FIELDS = {"center": "triplet_center_idx", "j": "neighbor_j_idx", "k": "neighbor_k_idx",
                  "dG_dcos": "angular_dG_dcos", "dG_ddij": "angular_dG_ddij", "dG_ddik": "angular_dG_ddik",
                  "dcos_drj": "dcos_drj", "dcos_drk": "dcos_drk", "unit_ij": "unit_ij", "unit_ik": "unit_ik",
                  "d_ij": "distance_ij", "d_ik": "distance_ik"}
DISTANCE_FIELDS = ("distance", "d_ij", "d_ik")  # (E,) and (T,): one value per edge or triplet
INDEX_FIELDS = ("center", "neighbor", "j", "k")  # int32 local atom indices; the rest are float arrays
ENTRY_ARRAYS = ("atom_offset", "energy", "has_forces", "has_cell", "cell", "pbc", "frame")
ENTRY_STRINGS = ("name", "source_id", "display_name", "identifier")
OPTIONAL_STRINGS = ("source_kind",)  # read as "" from files written before it
SCHEMA_3_ARRAYS = ("has_stress", "stress", "weight")
SCHEMA_3_STRINGS = ("config_type",)


class DatabaseError(FileFormatError):
    """A database file that cannot be used as it is; the message names the file and what to do."""


class IncompatibleDescriptorError(DatabaseError, RuntimeError):
    """The descriptor given differs from the one a database was built with (a RuntimeError, as in
    aenet-python)."""


def check_compression(compression, compression_level) -> None:
    """Refuse a compression this reader cannot write, or a level outside zlib's 0-9."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression library {compression!r} is not supported; it must be one of: "
                         f"{', '.join(map(repr, COMPRESSIONS))}")
    if isinstance(compression_level, bool) or not isinstance(compression_level, Integral) or \
            not 0 <= compression_level <= 9:
        raise ValueError(f"compression level must be between 0 and 9; got compression_level={compression_level!r}")


def h5py_filters(compression, compression_level) -> dict:
    """The h5py ``create_dataset`` options of an accepted compression (the level applies to zlib/gzip)."""
    name = COMPRESSIONS[compression]
    return {"compression": name, "compression_opts": compression_level if name == "gzip" else None}


def compact_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@contextmanager
def reading(path, dataset_name: str):
    """Turn a failed read of a dataset (a chunk whose fletcher32 checksum does not match) into a DatabaseError
    naming the file and the dataset."""
    try:
        yield
    except OSError as err:
        raise DatabaseError(f"{path}: dataset /{dataset_name.lstrip('/')} is damaged ({err}); rebuild the "
                            f"database") from None


def check_schema(path, f) -> None:
    """Refuse a file that is not a complete aenet_core database of a readable schema."""
    check_format(path, f.attrs.get("format"), FORMAT, _plain(f.attrs.get("schema_version")), READABLE_VERSIONS,
                 "database", "schema version", error=DatabaseError)
    for group in ("entries", "atoms"):
        if group not in f:
            raise DatabaseError(f"{path}: incomplete aenet_core database, missing group /{group}; rebuild it")


def _plain(value):
    """An HDF5 integer attribute as a Python int (others unchanged)."""
    return int(value) if hasattr(value, "dtype") and value.dtype.kind in "iu" else value


def stored_species(f, read) -> tuple[list, object]:
    """The species labels and each atom's index into them (``read`` reads a dataset): schema 4's species_json
    and atoms/species, or in an older file the element symbols indexed by atoms/atomic_number."""
    if "atoms/species" in f:
        return json.loads(f.attrs["species_json"]), read("atoms/species")
    from ase.data import chemical_symbols  # only for files before schema 4: opening a database needs no ase

    return list(chemical_symbols), read("atoms/atomic_number")
