"""The HDF5 structure database: labelled structures plus persisted raw features and force derivatives.

``HDF5StructureDataset(descriptor, "db.h5", sources=[...], mode="build")`` and
``build_database(persist_features=True, persist_force_derivatives=True)``
stream the sources into one file; the same class then serves training
(``TorchANNPotential.train(dataset=db)``) without featurizing again.

File layout (``format = "aenet_core.database"``, ``schema_version = 1``); every
array is plain typed data (no pickles), and the rows of one entry are
contiguous, located by offset arrays::

    /                   attrs: format, schema_version, aenet_core_version, n_entries, n_atoms,
                        content_sha256 (structures and labels, in entry order), n_filtered,
                        max_energy (NaN: no filter), atomic_energies_json, recipe_sha256
    /entries/           one row per entry: atom_offset (n+1) int64, energy f8 (NaN: none),
                        has_forces, has_cell, cell (n,3,3), pbc (n,3), frame int64 (index in its
                        source before filtering), name, source_id, display_name (UTF-8 strings)
    /atoms/             one row per atom: atomic_number int16, positions (A,3), forces (A,3)
                        (zero where the entry has no forces)
    /descriptor         attrs: descriptor_class, config_json, compat_json, compat_sha256
    /features/values    (A, F) raw features, float64 or float32 (attr storage_dtype)
    /derivatives/       force-labelled entries only (others have empty ranges); attrs
                        storage_dtype, n_radial (R+1), n_angular (A+1);
                        edge_offset (n+1), triplet_offset (n+1) int64;
      edges/            center, neighbor int32 (local atom indices), dG_dd (R+1, E), unit (3, E)
      triplets/         center, j, k int32, dG_dcos, dG_ddij, dG_ddik (A+1, T),
                        dcos_drj, dcos_drk, unit_ij, unit_ik (3, T)

The derivative fields are those of ``LocalDerivatives``, order-major as it holds
them (an entry's edges are a contiguous column range, read without any
transposition); the typespin weights are recomputed from the species.  The
file is written under a temporary name and renamed when complete, so an
interrupted build never leaves a file that a later open would trust.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import uuid
from collections import OrderedDict, deque
from pathlib import Path

import h5py
import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols
from tqdm.auto import tqdm

from aenet_core import __version__
from aenet_core.descriptor import BatchedFeaturizer, ChebyshevDescriptor, LocalDerivatives, structure_batch
from aenet_core.io import read_structures
from aenet_core.neighbors import rows_per_structure
from aenet_core.structure import Structure, hash_structure, referenced_energy_per_atom

FORMAT = "aenet_core.database"
SCHEMA_VERSION = 1
DESCRIPTOR_CLASS = "aenet_core.descriptor.ChebyshevDescriptor"
COMPAT_KEYS = ("species", "rad_order", "rad_cutoff", "ang_order", "ang_cutoff", "min_cutoff")
COMPRESSIONS = (None, "gzip", "lzf")
CHUNK_ATOMS = 2048  # atoms featurized (and held in memory) per build step
EDGE_FIELDS = {"center": "center_idx", "neighbor": "neighbor_idx", "dG_dd": "radial_dG_dd", "unit": "radial_unit"}
TRIPLET_FIELDS = {"center": "triplet_center_idx", "j": "neighbor_j_idx", "k": "neighbor_k_idx",
                  "dG_dcos": "angular_dG_dcos", "dG_ddij": "angular_dG_ddij", "dG_ddik": "angular_dG_ddik",
                  "dcos_drj": "dcos_drj", "dcos_drk": "dcos_drk", "unit_ij": "unit_ij", "unit_ik": "unit_ik"}


class DatabaseError(ValueError):
    """A database file that cannot be used as it is; the message names the file and what to do."""


def descriptor_compat(descriptor: ChebyshevDescriptor) -> dict:
    """The descriptor parameters that determine the features (not dtype or device)."""
    config = descriptor.get_config()
    return {key: config[key] for key in COMPAT_KEYS}


def _compact_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------------------- sources


def _source_items(sources):
    """(source_id, display_name, frame, Structure) for every frame of every source, lazily."""
    if not sources:
        raise ValueError("building a database needs sources= (structure files, Structures or ase.Atoms)")
    for index, item in enumerate(sources):
        if isinstance(item, (str, Path)):
            for frame, structure in enumerate(read_structures(item)):
                yield str(item), str(item), frame, structure
        elif isinstance(item, Structure) or hasattr(item, "get_chemical_symbols"):
            structure = item if isinstance(item, Structure) else Structure.from_ase(item)
            label = structure.name or f"structure_{index:06d}"
            yield f"sources[{index}]", label, 0, structure
        else:
            raise ValueError(f"sources[{index}] must be a file path, a Structure or ase.Atoms; "
                             f"got {type(item).__name__}")


def _chunks(items, descriptor, max_energy, atomic_energies, counter):
    """Lists of (source_id, display_name, frame, Structure) of about CHUNK_ATOMS atoms, filtered."""
    chunk, atoms = [], 0
    for source_id, display, frame, structure in items:
        where = f"{source_id} (frame {frame})"
        unknown = sorted(set(structure.species) - set(descriptor.species))
        if unknown:
            raise ValueError(f"{where}: species {unknown} are not in the descriptor species {descriptor.species}")
        if max_energy is not None:
            if structure.energy is None:
                raise ValueError(f"{where}: no energy, so the max_energy filter cannot judge it")
            if referenced_energy_per_atom(structure.energy, structure.species, atomic_energies) > max_energy:
                counter["filtered"] += 1
                continue
        chunk.append((source_id, display, frame, structure))
        atoms += structure.n_atoms
        if atoms >= CHUNK_ATOMS:
            yield chunk
            chunk, atoms = [], 0
    if chunk:
        yield chunk


# ------------------------------------------------------------------------------- featurizing


_WORKER = {}


def _init_worker(descriptor_config, options):
    torch.set_num_threads(1)  # one core per worker; the parent only writes
    _WORKER["descriptor"] = ChebyshevDescriptor.from_config(descriptor_config, device="cpu")
    _WORKER["options"] = options


def _worker_featurize(structures):
    return featurize_chunk(structures, _WORKER["descriptor"], **_WORKER["options"])


def featurize_chunk(structures, descriptor, features: bool, derivatives: bool) -> dict:
    """Numpy arrays to append for ``structures``: raw features (entry order) and the derivatives of
    the force-labelled ones, with atom indices local to each structure."""
    out = {}
    if not (features or derivatives):
        return out
    featurizer = BatchedFeaturizer(descriptor)
    forced = [k for k, s in enumerate(structures) if derivatives and s.has_forces()]
    rest = sorted(set(range(len(structures))) - set(forced))
    counts = np.array([s.n_atoms for s in structures])
    first_atom = np.concatenate([[0], np.cumsum(counts)])
    rows = np.empty((first_atom[-1], descriptor.n_features))
    for subset, with_derivatives in ((forced, True), (rest, False)):
        if not subset:
            continue
        args = structure_batch([structures[k] for k in subset])
        if with_derivatives:
            values, _, payload = featurizer.with_derivatives(*args)
            out.update(_local_derivatives(payload, counts, subset))
        else:
            values, _ = featurizer(*args)
        atoms = np.concatenate([np.arange(first_atom[k], first_atom[k + 1]) for k in subset])
        rows[atoms] = values.numpy()
    out["features"] = rows
    if derivatives and not forced:
        out.update(_local_derivatives(None, counts, []))
    return out


def _local_derivatives(payload, counts, subset) -> dict:
    """Per-entry edge/triplet counts and the stored derivative arrays (local atom indices)."""
    edge_counts, triplet_counts = np.zeros(len(counts), np.int64), np.zeros(len(counts), np.int64)
    out = {"edge_counts": edge_counts, "triplet_counts": triplet_counts}
    if payload is None:
        return out
    sizes = counts[subset]
    for prefix, fields, center_field, per_entry in (("edges/", EDGE_FIELDS, "center_idx", edge_counts),
                                                    ("triplets/", TRIPLET_FIELDS, "triplet_center_idx",
                                                     triplet_counts)):
        center = getattr(payload, center_field)
        first_atom, rows = rows_per_structure(center, sizes.tolist())
        per_entry[subset] = rows
        row_first_atom = torch.repeat_interleave(first_atom, torch.as_tensor(rows))
        for name, field in fields.items():
            tensor = getattr(payload, field)
            if tensor.dtype == torch.long:
                out[prefix + name] = (tensor - row_first_atom).to(torch.int32).numpy()
            else:
                out[prefix + name] = np.ascontiguousarray(tensor.numpy())
    return out


# ------------------------------------------------------------------------------- writing


class _Writer:
    """Appends chunks to a new file under a temporary name; ``commit`` renames it into place."""

    def __init__(self, path: Path, descriptor, storage_dtype, compression, compression_level):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        self.file = h5py.File(self.tmp, "w", rdcc_nbytes=0)
        self.storage = np.dtype(storage_dtype)
        self.compression = dict(compression=compression,
                                compression_opts=compression_level if compression == "gzip" else None)
        self.hash = hashlib.sha256()
        self.n_entries = self.n_atoms = self.n_edges = self.n_triplets = 0
        self.strings = {"name": [], "source_id": [], "display_name": []}
        d = self.file.create_group("descriptor")
        d.attrs["descriptor_class"] = DESCRIPTOR_CLASS
        d.attrs["config_json"] = _compact_json(descriptor.get_config())
        d.attrs["compat_json"] = _compact_json(descriptor_compat(descriptor))
        d.attrs["compat_sha256"] = _sha256(d.attrs["compat_json"])
        self.descriptor = descriptor

    def _append(self, name, values, axis=0):
        """Append along ``axis`` (0: rows; 1: columns of an order-major (K, rows) array)."""
        values = np.asarray(values)
        if name not in self.file:
            # Chunks of at most 1 MiB, and no larger than the first append: small files stay small.
            shape = list(values.shape)
            row_bytes = values.itemsize * (values.size // max(1, shape[axis]))
            shape[axis] = max(1, min(shape[axis], (1 << 20) // max(1, row_bytes)))
            maxshape = list(values.shape)
            maxshape[axis] = None
            self.file.create_dataset(name, data=values, maxshape=tuple(maxshape), chunks=tuple(shape),
                                     **self.compression)
            return
        dataset = self.file[name]
        start = dataset.shape[axis]
        dataset.resize(start + values.shape[axis], axis=axis)
        dataset[(slice(None),) * axis + (slice(start, None),)] = values

    def append(self, entries, computed):
        structures = [e[3] for e in entries]
        for source_id, display, frame, s in entries:
            self.strings["name"].append(s.name or "")
            self.strings["source_id"].append(source_id)
            self.strings["display_name"].append(display)
            hash_structure(self.hash, s)
        counts = np.array([s.n_atoms for s in structures], np.int64)
        self._append("entries/n_atoms", counts)
        self._append("entries/frame", np.array([e[2] for e in entries], np.int64))
        self._append("entries/energy", [np.nan if s.energy is None else s.energy for s in structures])
        self._append("entries/has_forces", [s.has_forces() for s in structures])
        self._append("entries/has_cell", [s.cell is not None for s in structures])
        self._append("entries/cell", [np.zeros((3, 3)) if s.cell is None else s.cell for s in structures])
        self._append("entries/pbc", [np.zeros(3, bool) if s.pbc is None else s.pbc for s in structures])
        self._append("atoms/atomic_number",
                     np.concatenate([[atomic_numbers[x] for x in s.species] for s in structures]).astype(np.int16))
        self._append("atoms/positions", np.concatenate([s.positions for s in structures]))
        self._append("atoms/forces", np.concatenate([np.zeros_like(s.positions) if s.forces is None else s.forces
                                                     for s in structures]))
        if "features" in computed:
            self._append("features/values", computed["features"].astype(self.storage))
        if "edge_counts" in computed:
            self._append("derivatives/edge_counts", computed["edge_counts"])
            self._append("derivatives/triplet_counts", computed["triplet_counts"])
            for name, values in computed.items():
                if name.startswith(("edges/", "triplets/")):
                    if values.dtype == np.int32:
                        self._append("derivatives/" + name, values)
                    else:
                        self._append("derivatives/" + name, values.astype(self.storage), axis=1)
        self.n_entries += len(entries)
        self.n_atoms += int(counts.sum())

    def commit(self, attrs: dict):
        """Write the offsets and root attributes, close, and rename the file into place."""
        f = self.file
        if self.n_entries == 0:
            raise ValueError("no structure was left to store (all sources empty or filtered out)")
        counts = f["entries/n_atoms"][:]
        f.create_dataset("entries/atom_offset", data=np.concatenate([[0], np.cumsum(counts)]))
        for name, values in self.strings.items():
            f.create_dataset(f"entries/{name}", data=values, dtype=h5py.string_dtype())
        if "derivatives/edge_counts" in f:
            for kind in ("edge", "triplet"):
                kind_counts = f[f"derivatives/{kind}_counts"][:]
                f.create_dataset(f"derivatives/{kind}_offset", data=np.concatenate([[0], np.cumsum(kind_counts)]))
                del f[f"derivatives/{kind}_counts"]
            self._create_empty_derivatives()
            group = f["derivatives"]
            group.attrs.update(storage_dtype=self.storage.name, n_radial=self.descriptor.rad_order + 1,
                               n_angular=self.descriptor.ang_order + 1)
        if "features/values" in f:
            f["features"].attrs["storage_dtype"] = self.storage.name
        f.attrs.update(format=FORMAT, schema_version=SCHEMA_VERSION, aenet_core_version=__version__,
                       n_entries=self.n_entries, n_atoms=self.n_atoms, content_sha256=self.hash.hexdigest(), **attrs)
        f.close()
        os.replace(self.tmp, self.path)

    def _create_empty_derivatives(self):
        """Derivative arrays no entry filled (e.g. no triplet anywhere) still exist, with zero rows."""
        widths = {"dG_dd": self.descriptor.rad_order + 1, "unit": 3, "dG_dcos": self.descriptor.ang_order + 1,
                  "dG_ddij": self.descriptor.ang_order + 1, "dG_ddik": self.descriptor.ang_order + 1}
        for prefix, fields in (("edges/", EDGE_FIELDS), ("triplets/", TRIPLET_FIELDS)):
            for name in fields:
                path = "derivatives/" + prefix + name
                if path not in self.file:
                    if name in ("center", "neighbor", "j", "k"):
                        self.file.create_dataset(path, shape=(0,), maxshape=(None,), dtype=np.int32)
                    else:
                        shape = (widths.get(name, 3), 0)
                        self.file.create_dataset(path, shape=shape, maxshape=(shape[0], None), dtype=self.storage)

    def abort(self):
        try:
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def _results(chunks, descriptor, options, workers):
    """(entries, computed arrays) per chunk, in order; with workers, featurized in parallel processes
    with at most 2 chunks per worker in flight (memory stays bounded)."""
    if workers <= 1:
        for chunk in chunks:
            yield chunk, featurize_chunk([e[3] for e in chunk], descriptor, **options)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    config = descriptor.get_config()
    with context.Pool(workers, initializer=_init_worker, initargs=(config, options)) as pool:
        pending = deque()
        for chunk in chunks:
            pending.append((chunk, pool.apply_async(_worker_featurize, ([e[3] for e in chunk],))))
            if len(pending) >= 2 * workers:
                done, result = pending.popleft()
                yield done, result.get()
        while pending:
            done, result = pending.popleft()
            yield done, result.get()


# ------------------------------------------------------------------------------- the dataset


class HDF5StructureDataset:
    """Labelled structures in an HDF5 file, with optionally persisted features and derivatives.

    ``mode``: ``'auto'`` opens ``database_file`` when it exists (else call
    ``build_database``), ``'load'`` requires it, ``'build'`` (re)builds it with
    ``build_database``.  ``descriptor`` may be None when the file stores one.
    ``max_energy`` (referenced energy per atom, eV) and ``atomic_energies``
    filter at build time and are recorded in the file.  ``seed`` is accepted
    for API compatibility; the dataset draws no random numbers (splits use
    ``split_seed``).  ``in_memory_cache_size`` bounds the structures kept after
    ``get_structure``; ``payload_cache_mb`` bounds the persisted features and
    derivatives kept in memory once read (least recently used go first), so that
    epochs after the first read nothing.  ``compression`` is None, ``'gzip'`` (with
    ``compression_level`` 0-9) or ``'lzf'``; None (the default) reads fastest.
    """

    def __init__(self, descriptor=None, database_file="database.h5", sources=None, mode="auto", *,
                 max_energy=None, atomic_energies=None, seed=None, in_memory_cache_size=2048,
                 compression=None, compression_level=None, payload_cache_mb=1024):
        if mode not in ("auto", "build", "load"):
            raise ValueError(f"mode must be 'auto', 'build' or 'load'; got {mode!r}")
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}; got {compression!r}")
        if compression_level is not None and (compression != "gzip" or not 0 <= compression_level <= 9):
            raise ValueError(f"compression_level applies to compression='gzip' only, 0-9; got {compression_level!r}")
        if payload_cache_mb is None or payload_cache_mb < 0:
            raise ValueError(f"payload_cache_mb must be >= 0; got {payload_cache_mb!r}")
        if in_memory_cache_size is None or in_memory_cache_size < 0:
            raise ValueError(f"in_memory_cache_size must be >= 0; got {in_memory_cache_size!r}")
        self.database_file = Path(database_file).resolve()  # stays valid if the working directory changes
        self.descriptor, self.sources, self.mode, self.seed = descriptor, sources, mode, seed
        self.max_energy = max_energy
        self.atomic_energies = dict(atomic_energies or {})
        self.in_memory_cache_size = in_memory_cache_size
        self.compression, self.compression_level = compression, compression_level
        self._handle, self._handle_pid, self._structures = None, None, OrderedDict()
        self._payload_cache_limit = int(payload_cache_mb * 2**20)
        self._payload_cache, self._payload_cache_bytes = OrderedDict(), 0
        self._loaded = False
        if mode == "load" and not self.database_file.exists():
            raise FileNotFoundError(f"{self.database_file}: no such database; build it with mode='build' "
                                    f"and build_database()")
        if mode != "build" and self.database_file.exists():
            self._load_metadata()

    # -- building ------------------------------------------------------------------------

    def build_database(self, show_progress=True, *, build_workers=0, persist_descriptor=False,
                       persist_features=False, persist_force_derivatives=False, storage_dtype="float64"):
        """Read every source, filter, featurize and write the file (temp name, then rename).

        ``persist_force_derivatives`` stores features and the sparse derivatives of force-labelled
        structures; ``persist_features`` stores features of every structure; either implies
        ``persist_descriptor``.  ``build_workers > 1`` featurizes in that many processes while
        this process writes.  ``storage_dtype`` is 'float64' or 'float32'.
        """
        if self.mode == "load":
            raise ValueError(f"{self.database_file}: opened with mode='load'; use mode='build' to rebuild it")
        if storage_dtype not in ("float64", "float32"):
            raise ValueError(f"storage_dtype must be 'float64' or 'float32'; got {storage_dtype!r}")
        persist = persist_features or persist_force_derivatives
        if (persist or persist_descriptor) and self.descriptor is None:
            raise ValueError("persisting the descriptor, features or derivatives needs a descriptor")
        if self.descriptor is None:
            raise ValueError("building a database needs a descriptor (its species decide which structures fit)")
        self.sources = _as_sequence(self.sources)
        recipe = self._recipe(persist_descriptor or persist, persist_features, persist_force_derivatives,
                              storage_dtype)
        if self.mode == "auto" and self._loaded:
            if self._attrs["recipe_sha256"] == _sha256(_compact_json(recipe)):
                return
            raise DatabaseError(f"{self.database_file} exists but was built from other sources or settings; "
                                f"use mode='build' to rebuild it, or delete it")
        self._close()
        options = {"features": persist, "derivatives": persist_force_derivatives}
        self._write(recipe, options, storage_dtype, int(build_workers or 0), show_progress)
        self._load_metadata()

    def _recipe(self, descriptor, features, derivatives, storage_dtype) -> dict:
        sources = [_source_stamp(s) for s in self.sources]
        return {"sources": sources, "max_energy": self.max_energy, "atomic_energies": self.atomic_energies,
                "descriptor": descriptor_compat(self.descriptor) if descriptor else None,
                "features": features, "derivatives": derivatives, "storage_dtype": storage_dtype}

    def _write(self, recipe, options, storage_dtype, workers, show_progress):
        self.database_file.parent.mkdir(parents=True, exist_ok=True)
        writer = _Writer(self.database_file, self.descriptor, storage_dtype, self.compression,
                         self.compression_level)
        counter = {"filtered": 0}
        try:
            chunks = _chunks(_source_items(self.sources), self.descriptor, self.max_energy, self.atomic_energies,
                             counter)
            with tqdm(desc=f"building {self.database_file.name}", unit=" structures",
                      disable=not show_progress) as progress:
                for entries, computed in _results(chunks, self.descriptor, options, workers):
                    writer.append(entries, computed)
                    progress.update(len(entries))
            if recipe["descriptor"] is None:
                del writer.file["descriptor"]
            writer.commit({
                "n_filtered": counter["filtered"],
                "max_energy": np.nan if self.max_energy is None else float(self.max_energy),
                "atomic_energies_json": _compact_json(self.atomic_energies),
                "recipe_sha256": _sha256(_compact_json(recipe)),
            })
        except BaseException:
            writer.abort()
            raise

    # -- opening ------------------------------------------------------------------------

    def _load_metadata(self):
        """Validate the file and read the per-entry arrays (everything but per-atom payloads)."""
        path = self.database_file
        try:
            with h5py.File(path, "r") as f:
                self._check_schema(f)
                self._attrs = dict(f.attrs)
                entries = {name: f["entries/" + name][:] for name in
                           ("atom_offset", "energy", "has_forces", "has_cell", "cell", "pbc", "frame")}
                for name in ("name", "source_id", "display_name"):
                    entries[name] = f["entries/" + name].asstr()[:].tolist()
                atomic_number = f["atoms/atomic_number"][:]
                self._forces = f["atoms/forces"][:]  # 24 bytes per atom: labels stay in memory
                stored = self._stored_descriptor(f)
                self._has_features = "features/values" in f
                self._has_derivatives = "derivatives/edge_offset" in f
                if self._has_derivatives:
                    self._edge_offset = f["derivatives/edge_offset"][:]
                    self._triplet_offset = f["derivatives/triplet_offset"][:]
        except OSError as err:
            raise DatabaseError(f"{path}: not a readable HDF5 file ({err})") from None
        except KeyError as err:
            raise DatabaseError(f"{path}: incomplete aenet_core database, missing {err.args[0]}; rebuild it") from None
        self._entries = entries
        self._use_descriptor(stored)
        self._species_idx = self._species_indices(atomic_number)
        self._restore_filter()
        self._loaded = True

    def _check_schema(self, f):
        path = self.database_file
        if f.attrs.get("format") != FORMAT:
            raise DatabaseError(f"{path}: not an aenet_core database (format attribute is "
                                f"{f.attrs.get('format')!r}, expected {FORMAT!r})")
        version = int(f.attrs.get("schema_version", -1))
        if version > SCHEMA_VERSION:
            raise DatabaseError(f"{path}: schema version {version} is newer than this aenet_core reads "
                                f"({SCHEMA_VERSION}); upgrade aenet_core")
        if version < 1:
            raise DatabaseError(f"{path}: invalid schema_version {version}")
        for group in ("entries", "atoms"):
            if group not in f:
                raise DatabaseError(f"{path}: incomplete aenet_core database, missing group /{group}; rebuild it")

    def _stored_descriptor(self, f):
        if "descriptor" not in f:
            return None
        return json.loads(f["descriptor"].attrs["config_json"])

    def _use_descriptor(self, stored):
        path = self.database_file
        if stored is None:
            if self.descriptor is None:
                raise DatabaseError(f"{path}: stores no descriptor; pass descriptor= when opening it")
            return
        if self.descriptor is None:
            self.descriptor = ChebyshevDescriptor.from_config(stored, device="cpu")
            return
        mine = descriptor_compat(self.descriptor)
        for key in COMPAT_KEYS:
            if mine[key] != stored[key]:
                raise DatabaseError(f"{path}: built with descriptor {key}={stored[key]!r}, but the descriptor "
                                    f"given has {key}={mine[key]!r}; rebuild the database with mode='build' (or "
                                    f"pass descriptor=None to use the stored one)")

    def _species_indices(self, atomic_number):
        symbols = np.array(chemical_symbols)[atomic_number]
        lookup = {s: i for i, s in enumerate(self.descriptor.species)}
        unknown = sorted(set(symbols.tolist()) - set(lookup))
        if unknown:
            raise DatabaseError(f"{self.database_file}: holds species {unknown} that the descriptor "
                                f"{self.descriptor.species} does not know")
        table = np.full(max(atomic_numbers.values()) + 1, -1, np.int64)
        for symbol, index in lookup.items():
            table[atomic_numbers[symbol]] = index
        return torch.from_numpy(table[atomic_number])

    def _restore_filter(self):
        stored_max = float(self._attrs["max_energy"])
        stored_max = None if math.isnan(stored_max) else stored_max
        stored_refs = json.loads(self._attrs["atomic_energies_json"])
        for name, given, stored in (("max_energy", self.max_energy, stored_max),
                                    ("atomic_energies", self.atomic_energies, stored_refs)):
            if given and given != stored and self.mode != "build":
                raise DatabaseError(f"{self.database_file}: was built with {name}={stored!r}, not {given!r}; "
                                    f"filters apply at build time (rebuild with mode='build')")
        self.max_energy, self.atomic_energies = stored_max, stored_refs

    def _file(self):
        """The read-only handle of this process (DataLoader workers each open their own)."""
        if self._handle is None or self._handle_pid != os.getpid():
            self._handle = h5py.File(self.database_file, "r", rdcc_nbytes=16 << 20)
            self._handle_pid = os.getpid()
        return self._handle

    def _require_loaded(self):
        if not self._loaded:
            raise RuntimeError(f"{self.database_file}: the database is not built yet; call build_database()")

    def close(self):
        self._close()
        self._structures.clear()
        self._payload_cache.clear()
        self._payload_cache_bytes = 0

    def _close(self):
        if self._handle is not None and self._handle_pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handle"], state["_handle_pid"], state["_structures"] = None, None, OrderedDict()
        state["_payload_cache"], state["_payload_cache_bytes"] = OrderedDict(), 0
        return state

    # -- entries ------------------------------------------------------------------------

    @property
    def content_sha256(self) -> str:
        """Hash of every stored structure and label, in entry order (splits refer to it)."""
        self._require_loaded()
        return str(self._attrs["content_sha256"])

    @property
    def recipe_sha256(self) -> str:
        """Hash of how the file was built (sources, filter, descriptor, what was persisted, storage)."""
        self._require_loaded()
        return str(self._attrs["recipe_sha256"])

    @property
    def has_persisted_features(self) -> bool:
        self._require_loaded()
        return self._has_features

    @property
    def has_persisted_derivatives(self) -> bool:
        self._require_loaded()
        return self._has_derivatives

    def __len__(self) -> int:
        self._require_loaded()
        return len(self._entries["energy"])

    def _index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.database_file}: entry {index} is out of range ({len(self)} entries)")
        return index % len(self)

    def atom_counts(self, indices) -> list:
        offsets = self._entries["atom_offset"]
        return [int(offsets[i + 1] - offsets[i]) for i in indices]

    def energies(self, indices) -> list:
        return self._entries["energy"][list(indices)].tolist()

    def has_forces(self, index: int) -> bool:
        return bool(self._entries["has_forces"][index])

    def species_of(self, indices) -> torch.Tensor:
        offsets = self._entries["atom_offset"]
        return torch.cat([self._species_idx[offsets[i]: offsets[i + 1]] for i in indices])

    def forces_of(self, indices):
        if not all(self.has_forces(i) for i in indices):
            return None
        offsets = self._entries["atom_offset"]
        return np.concatenate([self._forces[offsets[i]: offsets[i + 1]] for i in indices])

    def referenced_energy_per_atom(self, index: int) -> float:
        offsets = self._entries["atom_offset"]
        species = [self.descriptor.species[s] for s in self._species_idx[offsets[index]: offsets[index + 1]].tolist()]
        return float(referenced_energy_per_atom(self._entries["energy"][index], species, self.atomic_energies))

    def get_structure(self, index: int) -> Structure:
        index = self._index(index)
        cached = self._structures.get(index)
        if cached is not None:
            return cached
        e, f = self._entries, self._file()
        lo, hi = e["atom_offset"][index], e["atom_offset"][index + 1]
        has_cell = bool(e["has_cell"][index])
        structure = Structure(
            positions=f["atoms/positions"][lo:hi],
            species=[self.descriptor.species[s] for s in self._species_idx[lo:hi].tolist()],
            energy=None if math.isnan(e["energy"][index]) else float(e["energy"][index]),
            forces=self._forces[lo:hi].copy() if e["has_forces"][index] else None,
            cell=e["cell"][index] if has_cell else None, pbc=e["pbc"][index] if has_cell else None,
            name=e["name"][index] or None)
        if self.in_memory_cache_size:
            if len(self._structures) >= self.in_memory_cache_size:
                self._structures.popitem(last=False)  # first in, first out
            self._structures[index] = structure
        return structure

    def get_structure_identifier(self, index: int) -> str:
        """``display_name#frame=N`` (the source file name and the frame within it)."""
        index = self._index(index)
        e = self._entries
        name = e["display_name"][index] or e["source_id"][index] or e["name"][index] or f"structure_{index:06d}"
        return f"{name}#frame={int(e['frame'][index])}"

    def get_entry_metadata(self, index: int) -> dict:
        index = self._index(index)
        e = self._entries
        energy = float(e["energy"][index])
        return {"source_id": e["source_id"][index], "frame_idx": int(e["frame"][index]),
                "display_name": e["display_name"][index], "name": e["name"][index],
                "has_forces": bool(e["has_forces"][index]), "n_atoms": self.atom_counts([index])[0],
                "energy": None if math.isnan(energy) else energy}

    # -- persisted payloads ---------------------------------------------------------------

    def stored_features(self, indices):
        """Raw features (sum N, F) of ``indices`` in order, or None when the file stores none."""
        if not self._has_features:
            return None
        payloads, block = self._payloads(indices, False)
        return block["features"] if block else torch.cat([features for features, _ in payloads])

    def stored_derivatives(self, indices):
        """(features, LocalDerivatives) of force-labelled ``indices`` from the file, or None."""
        if not (self._has_derivatives and self._has_features):
            return None
        if not all(self.has_forces(i) for i in indices):
            raise ValueError(f"{self.database_file}: derivatives are stored for force-labelled entries only")
        indices = list(indices)
        payloads, block = self._payloads(indices, True)
        counts = self.atom_counts(indices)
        first_atom = torch.tensor(np.concatenate([[0], np.cumsum(counts)[:-1]]), dtype=torch.long)
        fields = {}
        for group, names, offsets in (("edges", EDGE_FIELDS, self._edge_offset),
                                      ("triplets", TRIPLET_FIELDS, self._triplet_offset)):
            # Stored indices are local to each entry: shift every row by its entry's first atom.
            rows = torch.from_numpy(offsets[np.add(indices, 1)] - offsets[indices])
            shift = torch.repeat_interleave(first_atom, rows)
            for name, field in names.items():
                joined = block[group][name] if block else torch.cat([p[1][group][name] for p in payloads], dim=-1)
                fields[field] = joined.long() + shift if joined.dtype == torch.int32 else joined
        neighbor_spin = triplet_spin = None
        if self.descriptor.multi:
            spin = self.descriptor.typespin.to(self.descriptor.dtype)[self.species_of(indices)]
            neighbor_spin = spin[fields["neighbor_idx"]]
            triplet_spin = spin[fields["neighbor_j_idx"]] * spin[fields["neighbor_k_idx"]]
        derivatives = LocalDerivatives(n_atoms=int(sum(counts)), n_radial=self.descriptor.rad_order + 1,
                                       n_angular=self.descriptor.ang_order + 1, neighbor_typespin=neighbor_spin,
                                       triplet_typespin=triplet_spin, **fields)
        features = block["features"] if block else torch.cat([features for features, _ in payloads])
        return features, derivatives

    def _payloads(self, indices, with_derivatives) -> tuple:
        """(per-entry payloads, block): the entries missing from the payload cache are read together
        (consecutive ones in one slice per field).  When that read is exactly ``indices`` the block
        as read is returned (nothing to concatenate) and the list is empty; otherwise each entry's
        (features, {'edges' or 'triplets': {name: tensor}} or None) comes in the order asked for."""
        indices = list(indices)
        cache = self._payload_cache
        missing = sorted({i for i in indices if i not in cache or (with_derivatives and cache[i][1] is None)})
        block = self._read_block(missing, with_derivatives) if missing else None
        whole = missing == indices
        fetched = self._cut(block, missing) if missing and (self._payload_cache_limit or not whole) else {}
        out = []
        for i in [] if whole else indices:
            if i in fetched:
                out.append(fetched[i][:2])
            else:
                cache.move_to_end(i)
                out.append(cache[i][:2])
        for i, value in fetched.items():
            self._cache_payload(i, value)
        return out, block if whole else None

    def _cache_payload(self, index, value):
        """Keep (features, derivatives, bytes) of an entry; the least recently used go past the bound.

        The entry's views are copied, so that a cached entry never keeps the rest of its read block
        alive and the bound holds for the memory really used."""
        if value[2] > self._payload_cache_limit:
            return
        features, derivatives, size = value
        if derivatives is not None:
            derivatives = {group: {name: t.clone() for name, t in fields.items()}
                           for group, fields in derivatives.items()}
        old = self._payload_cache.pop(index, None)
        self._payload_cache_bytes += size - (0 if old is None else old[2])
        self._payload_cache[index] = (features.clone(), derivatives, size)
        while self._payload_cache_bytes > self._payload_cache_limit:
            self._payload_cache_bytes -= self._payload_cache.popitem(last=False)[1][2]

    def _read_block(self, indices, with_derivatives) -> dict:
        """Features and (optionally) derivative arrays of sorted ``indices``, each read once for all of
        them: {'features': (sum N, F), 'edges'/'triplets': {name: tensor}} (atom indices stay local)."""
        f, dtype = self._file(), self.descriptor.dtype
        block = {"features": torch.from_numpy(self._rows(f["features/values"], self._entries["atom_offset"],
                                                         indices)).to(dtype)}
        for group, name, offsets in self._derivative_fields() if with_derivatives else ():
            dataset = f[f"derivatives/{group}/{name}"]
            values = torch.from_numpy(self._rows(dataset, offsets, indices, axis=dataset.ndim - 1))
            block.setdefault(group, {})[name] = values if values.dtype == torch.int32 else values.to(dtype)
        return block

    def _cut(self, block, indices) -> dict:
        """{entry: (features, derivative fields or None, bytes)}: views of each entry's rows of ``block``."""
        features = torch.split(block["features"], self.atom_counts(indices))
        entries = {i: [x, None if "edges" not in block else {}, x.nbytes] for i, x in zip(indices, features)}
        for group, name, offsets in self._derivative_fields() if "edges" in block else ():
            rows = [int(offsets[i + 1] - offsets[i]) for i in indices]
            for i, part in zip(indices, torch.split(block[group][name], rows, dim=-1)):
                entries[i][1].setdefault(group, {})[name] = part
                entries[i][2] += part.nbytes
        return {i: tuple(value) for i, value in entries.items()}

    def _derivative_fields(self):
        """(group, name, row offsets) of every stored derivative array /derivatives/<group>/<name>."""
        for group, names, offsets in (("edges", EDGE_FIELDS, self._edge_offset),
                                      ("triplets", TRIPLET_FIELDS, self._triplet_offset)):
            for name in names:
                yield group, name, offsets

    @staticmethod
    def _rows(dataset, offsets, indices, axis=0):
        """The rows (``axis=1``: columns) of ``indices`` (each entry a contiguous block) in order;
        runs of consecutive entries are read with one slice."""
        indices = list(indices)
        shape = list(dataset.shape)
        shape[axis] = sum(int(offsets[i + 1] - offsets[i]) for i in indices)
        out = np.empty(shape, dataset.dtype)
        lead = (slice(None),) * axis
        start, k = 0, 0
        while k < len(indices):
            end = k + 1
            while end < len(indices) and indices[end] == indices[end - 1] + 1:
                end += 1
            lo, hi = int(offsets[indices[k]]), int(offsets[indices[end - 1] + 1])
            if hi > lo:
                dataset.read_direct(out, lead + (slice(lo, hi),), lead + (slice(start, start + hi - lo),))
            start += hi - lo
            k = end
        return out


def _source_stamp(source):
    """What identifies a source's content for the build recipe: a file's path, size and modification
    time, or a hash of an in-memory structure."""
    if isinstance(source, (str, Path)):
        stat = Path(source).stat()
        return [str(source), stat.st_size, stat.st_mtime_ns]
    if not (isinstance(source, Structure) or hasattr(source, "get_chemical_symbols")):
        return type(source).__name__  # refused with a clear message when the build reads it
    hasher = hashlib.sha256()
    hash_structure(hasher, source if isinstance(source, Structure) else Structure.from_ase(source))
    return hasher.hexdigest()


def _as_sequence(sources):
    if sources is None:
        return []
    if isinstance(sources, (str, Path, Structure)) or hasattr(sources, "get_chemical_symbols"):
        return [sources]
    return list(sources)

