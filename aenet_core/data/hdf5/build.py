"""Writing the HDF5 structure database: filtered entries streamed in chunks, featurized (optionally in worker
processes) and appended to a file that replaces the destination only when complete."""
from __future__ import annotations

import hashlib
import multiprocessing
import warnings
from collections import deque
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from aenet_core import __version__
from aenet_core.data.hdf5.footprint import (ATOM_BYTES, ENTRY_BYTES, check_disk, check_memory, check_room,
                                            database_bytes)
from aenet_core.data.hdf5.schema import (DESCRIPTOR_CLASS, DISTANCE_FIELDS, EDGE_FIELDS, ENTRY_STRINGS, FORMAT,
                                         INDEX_FIELDS, OPTIONAL_STRINGS, SCHEMA_3_STRINGS, SCHEMA_VERSION, TRIPLET_FIELDS,
                                         compact_json, h5py_filters, sha256_text)
from aenet_core.descriptor import BatchedFeaturizer, ChebyshevDescriptor, structure_batch
from aenet_core.data.sources import atom_chunks
from aenet_core.files import atomic_path
from aenet_core.neighbors import rows_per_structure
from aenet_core.progress import ProgressLog
from aenet_core.structure import hash_structure

CHUNK_ATOMS = 2048  # atoms featurized (and held in memory) per build step


def write_database(path: Path, descriptor, entries, structure_filter, *, features: bool, derivatives: bool,
                   storage_dtype: str, compression, compression_level, workers: int, show_progress: bool,
                   recipe: dict) -> None:
    """Stream ``entries`` through ``structure_filter`` into a new database file at ``path`` (a file of zero
    entries, with a warning, when none is left).  ``descriptor`` may be None when nothing is featurized."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"features": features or derivatives, "derivatives": derivatives}
    workers = workers if options["features"] else 0
    with atomic_path(path) as tmp:
        writer = _Writer(tmp, descriptor, storage_dtype, compression, compression_level,
                         with_descriptor=recipe["descriptor"] is not None)
        try:
            chunks = _checked(atom_chunks(structure_filter.apply(entries), CHUNK_ATOMS), structure_filter,
                              descriptor, options, workers)
            chunks = _disk_checked(chunks, path, descriptor, options, np.dtype(storage_dtype).itemsize,
                                   recipe["sources"], compressed=compression is not None)
            lines = ProgressLog(f"building {path.name}", unit="structures", seconds=30)
            with tqdm(desc=f"building {path.name}", unit=" structures", disable=not show_progress) as progress:
                for chunk, computed in _featurized(chunks, descriptor, options, workers):
                    check_room(path, _chunk_bytes(chunk, computed), tmp.stat().st_size)
                    writer.append(chunk, computed)
                    progress.update(len(chunk))
                    lines.update(len(chunk), f" ({writer.n_atoms} atoms)")
            if writer.n_entries == 0:
                warnings.warn(f"{path}: no structure was left to store ({structure_filter.n_filtered} filtered out, "
                              f"the rest of the sources empty): the database has no entries", stacklevel=3)
                writer.append_empty(featurize_chunk([], descriptor, **options))
            writer.finish({"n_filtered": structure_filter.n_filtered,
                           "filter_json": compact_json(structure_filter.settings()),
                           "atomic_energies_json": compact_json(structure_filter.atomic_energies),
                           "recipe_sha256": sha256_text(compact_json(recipe))})
        finally:
            writer.file.close()


def _checked(chunks, structure_filter, descriptor, options, workers):
    """The chunks, each refused or passed by the geometry checks and the memory estimate before it is
    featurized."""
    for chunk in chunks:
        structure_filter.check_geometry(chunk, None if descriptor is None else descriptor.max_cutoff)
        if options["features"]:
            check_memory(chunk, descriptor, options["derivatives"], workers)
        yield chunk


def _disk_checked(chunks, path, descriptor, options, itemsize, stamps, compressed):
    """The chunks, the database's size estimated from the first and refused (or warned about) where the disk
    lacks the space, before it is featurized.  A compressed file's size is below the estimate by an unknown
    factor: it is then treated as an extrapolation."""
    first = next(chunks, [])
    ended = sum(e.structure.n_atoms for e in first) < CHUNK_ATOMS  # atom_chunks ends a chunk early only at the end
    need, certain = database_bytes(first, ended, stamps, descriptor, itemsize if options["features"] else 0,
                                   options["derivatives"])
    check_disk(path, need, certain and not compressed)
    if first:
        yield first
    yield from chunks


def _chunk_bytes(chunk, computed) -> int:
    """At most the bytes that appending ``chunk`` adds to the file (its arrays in float64)."""
    return sum(np.asarray(values).nbytes for values in computed.values()) + sum(
        ENTRY_BYTES + ATOM_BYTES * e.structure.n_atoms for e in chunk)


# ------------------------------------------------------------------------------- featurizing


_WORKER = {}


def _init_worker(descriptor_config, backend, options):
    torch.set_num_threads(1)  # one core per worker; the parent only writes
    _WORKER["descriptor"] = ChebyshevDescriptor.from_config(descriptor_config, device="cpu", backend=backend)
    _WORKER["options"] = options


def _worker_featurize(structures):
    return featurize_chunk(structures, _WORKER["descriptor"], **_WORKER["options"])


def _featurized(chunks, descriptor, options, workers):
    """(chunk, computed arrays) per chunk, in order; with workers, featurized in parallel processes with at
    most 2 chunks per worker in flight (memory stays bounded)."""
    if workers <= 1:
        for chunk in chunks:
            yield chunk, featurize_chunk([e.structure for e in chunk], descriptor, **options)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    initargs = (descriptor.get_config(), descriptor.backend, options)
    with context.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
        pending = deque()
        for chunk in chunks:
            pending.append((chunk, pool.apply_async(_worker_featurize, ([e.structure for e in chunk],))))
            if len(pending) >= 2 * workers:
                done, result = pending.popleft()
                yield done, result.get()
        while pending:
            done, result = pending.popleft()
            yield done, result.get()


def featurize_chunk(structures, descriptor, features: bool, derivatives: bool) -> dict:
    """Numpy arrays to append for ``structures``: raw features (entry order) and the derivatives of
    the force-labelled ones, with atom indices local to each structure."""
    out = {}
    if not (features or derivatives):
        return out
    featurizer = BatchedFeaturizer(descriptor)
    forced = [k for k, s in enumerate(structures) if derivatives and s.has_forces()]
    rest = sorted(set(range(len(structures))) - set(forced))
    counts = np.array([s.n_atoms for s in structures], np.int64)
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

# (trailing shape, dtype) of each per-entry and per-atom array, as ``_Writer.append`` makes them
# (``append_empty`` writes them with zero rows).
COLUMNS = {"entries/n_atoms": ((), np.int64), "entries/frame": ((), np.int64), "entries/energy": ((), np.float64),
           "entries/has_forces": ((), bool), "entries/has_cell": ((), bool), "entries/cell": ((3, 3), np.float64),
           "entries/pbc": ((3,), bool), "entries/has_stress": ((), bool), "entries/stress": ((3, 3), np.float64),
           "entries/weight": ((), np.float64), "atoms/species": ((), np.int16),
           "atoms/positions": ((3,), np.float64), "atoms/forces": ((3,), np.float64)}


def _mean_rows(counts) -> float | None:
    """The mean of the non-zero per-entry row ``counts`` (None when there is none)."""
    counts = np.asarray(counts)
    counts = counts[counts > 0]
    return float(counts.mean()) if counts.size else None


class _Writer:
    """Appends chunks of entries to a new HDF5 file; ``finish`` writes offsets and root attributes."""

    def __init__(self, path: Path, descriptor, storage_dtype, compression, compression_level, with_descriptor):
        self.file = h5py.File(path, "w", rdcc_nbytes=0)
        self.storage = np.dtype(storage_dtype)
        # Every dataset carries per-chunk checksums: a damaged chunk fails its read instead of being trained on.
        self.compression = dict(h5py_filters(compression, compression_level), fletcher32=True)
        self.hash = hashlib.sha256()
        self.n_entries = self.n_atoms = 0
        self.strings = {name: [] for name in ENTRY_STRINGS + SCHEMA_3_STRINGS + OPTIONAL_STRINGS}
        self.species = {}  # label -> index in atoms/species, in order of first occurrence
        self.descriptor = descriptor
        if with_descriptor:
            d = self.file.create_group("descriptor")
            d.attrs["descriptor_class"] = DESCRIPTOR_CLASS
            d.attrs["config_json"] = compact_json(descriptor.get_config())
            d.attrs["identity_json"] = compact_json(descriptor.identity())
            d.attrs["identity_sha256"] = sha256_text(d.attrs["identity_json"])

    def _append(self, name, values, axis=0, rows_per_entry=None):
        """Append along ``axis`` (0: rows; 1: columns of an order-major (K, rows) array).  ``rows_per_entry``
        (the mean rows of an entry that has any, for arrays read entry by entry in training) sizes the chunks
        to the read pattern."""
        values = np.asarray(values)
        if name not in self.file:
            # Chunks of at most 1 MiB, and no larger than the first append: small files stay small.  Arrays read
            # entry by entry get chunks of half an entry: a chunk is the unit HDF5 reads (and checksums), so a
            # random entry of R rows costs about R + R/2 rows read, where 1 MiB chunks cost up to 1 MiB each.
            shape = list(values.shape)
            row_bytes = values.itemsize * (values.size // max(1, shape[axis]))
            rows = (1 << 20) // max(1, row_bytes)
            if rows_per_entry:
                rows = min(rows, max(1, int(rows_per_entry) // 2))
            shape[axis] = max(1, min(shape[axis], rows))
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
        structures = [e.structure for e in entries]
        for entry in entries:
            for name in ("source_id", "display_name", "identifier", "source_kind"):
                self.strings[name].append(getattr(entry, name))
            self.strings["name"].append(entry.structure.name or "")
            self.strings["config_type"].append(entry.structure.config_type or "")
            hash_structure(self.hash, entry.structure)
        counts = np.array([s.n_atoms for s in structures], np.int64)
        self._append("entries/n_atoms", counts)
        self._append("entries/frame", np.array([e.frame for e in entries], np.int64))
        self._append("entries/energy", [s.energy for s in structures])
        self._append("entries/has_forces", [s.has_forces() for s in structures])
        self._append("entries/has_cell", [s.cell is not None for s in structures])
        self._append("entries/cell", [np.zeros((3, 3)) if s.cell is None else s.cell for s in structures])
        self._append("entries/pbc", [np.zeros(3, bool) if s.pbc is None else s.pbc for s in structures])
        self._append("entries/has_stress", [s.has_stress() for s in structures])
        self._append("entries/stress", [np.zeros((3, 3)) if s.stress is None else s.stress for s in structures])
        self._append("entries/weight", [s.weight for s in structures])
        self._append("atoms/species", np.array([self.species.setdefault(x, len(self.species))
                                                for s in structures for x in s.species], np.int16))
        self._append("atoms/positions", np.concatenate([s.positions for s in structures]))
        self._append("atoms/forces", np.concatenate([np.zeros_like(s.positions) if s.forces is None else s.forces
                                                     for s in structures]))
        self._append_computed(computed, counts)
        self.n_entries += len(entries)
        self.n_atoms += int(counts.sum())

    def append_empty(self, computed):
        """Every array with zero rows (``computed`` from featurizing no structure): a database of no entry."""
        for name, (shape, dtype) in COLUMNS.items():
            self._append(name, np.empty((0, *shape), dtype))
        self._append_computed(computed, np.zeros(0, np.int64))

    def _append_computed(self, computed, atom_counts):
        """Append the features and derivatives of entries of ``atom_counts`` atoms."""
        if "features" in computed:
            self._append("features/values", computed["features"].astype(self.storage),
                         rows_per_entry=_mean_rows(atom_counts))
        if "edge_counts" in computed:
            self._append("derivatives/edge_counts", computed["edge_counts"])
            self._append("derivatives/triplet_counts", computed["triplet_counts"])
            for name, values in computed.items():
                if name.startswith(("edges/", "triplets/")):
                    per_entry = _mean_rows(computed[name.split("/")[0][:-1] + "_counts"])
                    if values.dtype == np.int32:
                        self._append("derivatives/" + name, values, rows_per_entry=per_entry)
                    else:
                        self._append("derivatives/" + name, values.astype(self.storage), axis=values.ndim - 1,
                                     rows_per_entry=per_entry)

    def finish(self, attrs: dict):
        """Write the offsets, string columns and root attributes."""
        f = self.file
        counts = f["entries/n_atoms"][:]
        f.create_dataset("entries/atom_offset", data=np.concatenate([[0], np.cumsum(counts)]), fletcher32=True)
        for name, values in self.strings.items():
            f.create_dataset(f"entries/{name}", data=values, dtype=h5py.string_dtype())  # HDF5: no filters
        if "derivatives/edge_counts" in f:
            for kind in ("edge", "triplet"):
                kind_counts = f[f"derivatives/{kind}_counts"][:]
                f.create_dataset(f"derivatives/{kind}_offset", data=np.concatenate([[0], np.cumsum(kind_counts)]),
                                 fletcher32=True)
                del f[f"derivatives/{kind}_counts"]
            self._create_empty_derivatives()
            f["derivatives"].attrs.update(storage_dtype=self.storage.name, n_radial=self.descriptor.rad_order + 1,
                                          n_angular=self.descriptor.ang_order + 1)
        if "features/values" in f:
            f["features"].attrs["storage_dtype"] = self.storage.name
        f.attrs.update(format=FORMAT, schema_version=SCHEMA_VERSION, aenet_core_version=__version__,
                       n_entries=self.n_entries, n_atoms=self.n_atoms, content_sha256=self.hash.hexdigest(),
                       species_json=compact_json(list(self.species)), **attrs)

    def _create_empty_derivatives(self):
        """Derivative arrays no entry filled (e.g. no triplet anywhere) still exist, with zero rows."""
        widths = {"dG_dd": self.descriptor.rad_order + 1, "dG_dcos": self.descriptor.ang_order + 1,
                  "dG_ddij": self.descriptor.ang_order + 1, "dG_ddik": self.descriptor.ang_order + 1}
        for prefix, fields in (("edges/", EDGE_FIELDS), ("triplets/", TRIPLET_FIELDS)):
            for name in fields:
                path = "derivatives/" + prefix + name
                if path in self.file:
                    continue
                if name in INDEX_FIELDS + DISTANCE_FIELDS:
                    dtype = np.int32 if name in INDEX_FIELDS else self.storage
                    self.file.create_dataset(path, shape=(0,), maxshape=(None,), dtype=dtype, fletcher32=True)
                else:
                    shape = (widths.get(name, 3), 0)
                    self.file.create_dataset(path, shape=shape, maxshape=(shape[0], None), dtype=self.storage,
                                             fletcher32=True)
