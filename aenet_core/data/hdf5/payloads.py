"""Reading persisted features and derivatives of database entries: block reads and a byte-bounded cache.

The entries a request misses in the cache are read together (consecutive ones
in one slice per array).  Cached entries are copies of their rows, so a cached
entry never keeps the rest of its read block alive and the bound holds for the
memory really used; epochs after the first then read nothing.
"""
from __future__ import annotations

from functools import cached_property

import h5py
import numpy as np
import torch

from aenet_core.allocator import return_freed_memory
from aenet_core.data.cache import LRUCache
from aenet_core.data.hdf5.schema import EDGE_FIELDS, TRIPLET_FIELDS, reading
from aenet_core.derivatives import LocalDerivatives


TRIM_BYTES = 32 << 20  # the heap is trimmed after the cache lets go of this many bytes


class PayloadReader:
    """Features and derivatives of entries of one open database (``handle()`` gives the h5py file)."""

    def __init__(self, handle, descriptor, atom_offset, edge_offset, triplet_offset, cache_bytes: int):
        self.handle, self.descriptor = handle, descriptor
        self.atom_offset = atom_offset
        self.row_offsets = {"edges": edge_offset, "triplets": triplet_offset}
        self.cache = LRUCache(max_bytes=cache_bytes, size_of=_payload_bytes)
        self._open = None  # (the h5py file, {name: its dataset}): payload arrays opened once per handle
        self._evicted = 0  # bytes the cache let go of since the heap was last trimmed

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_open"] = None  # h5py objects stay in their process
        return state

    def _array(self, name):
        """The payload dataset ``name`` of this process's file, opened once (each open dataset keeps its own
        HDF5 chunk cache of the file's ``rdcc_nbytes``: a constant number of them)."""
        f = self.handle()
        if self._open is None or self._open[0] is not f:
            self._open = (f, {})
        arrays = self._open[1]
        if name not in arrays:
            arrays[name] = f[name]
        return arrays[name]

    def features(self, indices):
        payloads, block = self._payloads(indices, False)
        return block["features"] if block else torch.cat([features for features, _ in payloads])

    def features_and_derivatives(self, indices, species_idx, dtype=None):
        """(features, LocalDerivatives) of ``indices``; ``species_idx`` of their atoms gives the typespins.
        Derivatives read now are cast to ``dtype`` (default the descriptor's), and cached so."""
        payloads, block = self._payloads(indices, True, dtype)
        counts = [int(self.atom_offset[i + 1] - self.atom_offset[i]) for i in indices]
        first_atom = torch.tensor(np.concatenate([[0], np.cumsum(counts)[:-1]]), dtype=torch.long)
        fields = {}
        for group, names in (("edges", EDGE_FIELDS), ("triplets", TRIPLET_FIELDS)):
            # Stored indices are local to each entry: shift every row by its entry's first atom.
            offsets = self.row_offsets[group]
            rows = torch.from_numpy(offsets[np.add(indices, 1)] - offsets[indices])
            shift = torch.repeat_interleave(first_atom, rows)
            for name, field in names.items():
                if name not in self.stored_fields[group]:
                    continue  # a schema 2 file has no distances: its derivatives cannot give a virial
                joined = block[group][name] if block else torch.cat([p[1][group][name] for p in payloads], dim=-1)
                fields[field] = torch.add(joined, shift) if joined.dtype == torch.int32 else joined  # int64
        d = self.descriptor
        neighbor_spin = triplet_spin = None
        if d.multi:
            spin = d.typespin.to(fields["radial_dG_dd"].dtype).index_select(0, species_idx)
            neighbor_spin = spin.index_select(0, fields["neighbor_idx"])
            triplet_spin = spin.index_select(0, fields["neighbor_j_idx"]) * spin.index_select(0, fields["neighbor_k_idx"])
        derivatives = LocalDerivatives(n_atoms=int(sum(counts)), n_radial=d.rad_order + 1, n_angular=d.ang_order + 1,
                                       neighbor_typespin=neighbor_spin, triplet_typespin=triplet_spin,
                                       backend=d.backend, **fields)
        features = block["features"] if block else torch.cat([features for features, _ in payloads])
        return features, derivatives

    def _payloads(self, indices, with_derivatives, dtype=None) -> tuple:
        """(per-entry payloads, block).  When the entries missing from the cache are exactly ``indices`` the
        block as read is returned (nothing to concatenate) and the list is empty; otherwise each entry's
        (features, {'edges' or 'triplets': {name: tensor}} or None) comes in the order asked for."""
        indices = list(indices)
        entries = self.cache.entries
        missing = sorted({i for i in indices if i not in entries or (with_derivatives and entries[i][1] is None)})
        block = self._read_block(missing, with_derivatives, dtype) if missing else None
        whole = missing == indices
        fetched = self._cut(block, missing) if missing and (self.cache.max_bytes or not whole) else {}
        out = [fetched[i][:2] if i in fetched else self.cache.get(i)[:2] for i in ([] if whole else indices)]
        for i, (features, derivatives, size) in fetched.items():
            if size > self.cache.max_bytes:
                continue  # the cache would refuse it: do not copy it first
            entry, held = _packed(features, derivatives), self.cache.n_bytes
            self.cache.put(i, entry)
            self._evicted += held + entry[2] - self.cache.n_bytes
        if self._evicted >= TRIM_BYTES:  # what the cache let go of goes back to the OS
            self._evicted = 0
            return_freed_memory()
        return out, block if whole else None

    def _read_block(self, indices, with_derivatives, derivative_dtype=None) -> dict:
        """Features and (optionally) derivative arrays of sorted ``indices``, each read once for all of
        them: {'features': (sum N, F), 'edges'/'triplets': {name: tensor}} (atom indices stay local)."""
        block = {"features": torch.from_numpy(_rows(self._array("features/values"), self.atom_offset,
                                                    indices)).to(self.descriptor.dtype)}
        dtype = derivative_dtype or self.descriptor.dtype
        for group, name in self._stored_derivative_fields() if with_derivatives else ():
            dataset = self._array(f"derivatives/{group}/{name}")
            values = torch.from_numpy(_rows(dataset, self.row_offsets[group], indices, axis=dataset.ndim - 1))
            block.setdefault(group, {})[name] = values if values.dtype == torch.int32 else values.to(dtype)
        return block

    def _cut(self, block, indices) -> dict:
        """{entry: (features, derivative fields or None, bytes)}: views of each entry's rows of ``block``."""
        counts = [int(self.atom_offset[i + 1] - self.atom_offset[i]) for i in indices]
        features = torch.split(block["features"], counts)
        entries = {i: [x, None if "edges" not in block else {}, x.nbytes] for i, x in zip(indices, features)}
        for group, name in self._stored_derivative_fields() if "edges" in block else ():
            offsets = self.row_offsets[group]
            rows = [int(offsets[i + 1] - offsets[i]) for i in indices]
            for i, part in zip(indices, torch.split(block[group][name], rows, dim=-1)):
                entries[i][1].setdefault(group, {})[name] = part
                entries[i][2] += part.nbytes
        return {i: tuple(value) for i, value in entries.items()}

    @cached_property
    def stored_fields(self) -> dict:
        """{group: names of the derivative arrays /derivatives/<group>/<name> the file holds}."""
        f = self.handle()
        return {group: [name for name in names if f"derivatives/{group}/{name}" in f]
                for group, names in (("edges", EDGE_FIELDS), ("triplets", TRIPLET_FIELDS))}

    def _stored_derivative_fields(self):
        for group, names in self.stored_fields.items():
            for name in names:
                yield group, name


def _packed(features, derivatives) -> tuple:
    """A cache entry: copies of an entry's ``features`` and ``derivatives`` ({group: {name: tensor}} or None),
    all in one buffer, and the buffer's bytes.  One allocation per entry, not one per array: freed, its pages
    are contiguous, and go back to the OS whole when the heap is trimmed.  Empty arrays (no triplets) are kept
    as they are; the copies are numpy views (cheaper to make than torch's) that the tensors share."""
    parts = [features] + [t for fields in (derivatives or {}).values() for t in fields.values()]
    starts, size = [], 0
    for t in parts:
        starts.append(size)
        size += -(-t.nbytes // 64) * 64  # each array 64-byte aligned
    buffer = np.empty(size, np.uint8)
    copies = []
    for t, start in zip(parts, starts):
        if t.nbytes == 0:
            copies.append(t)
            continue
        source = t.numpy()
        copy = np.ndarray(source.shape, source.dtype, buffer, start)
        np.copyto(copy, source)
        copies.append(torch.from_numpy(copy))
    copies = iter(copies)
    features = next(copies)
    if derivatives is not None:
        derivatives = {group: {name: next(copies) for name in fields} for group, fields in derivatives.items()}
    return features, derivatives, size


def _payload_bytes(value) -> int:
    """A cached (features, derivative fields, bytes) entry's size."""
    return value[2]


def _rows(dataset, offsets, indices, axis=0):
    """The rows (``axis=1``: columns) of sorted ``indices`` (each entry a contiguous block) in order; runs of
    consecutive entries are read as one range.

    A 1-D array is read with one HDF5 read, its ranges together forming one selection (HDF5 delivers it in file
    order, the order of ``indices``): one h5py call per array and batch instead of one per entry.  A 2-D array
    is read range by range (into its place in the output), the selections made with the low-level API: a union
    of 2-D ranges is several times slower to read in HDF5 than the ranges one by one."""
    indices = list(indices)
    if any(b <= a for a, b in zip(indices, indices[1:])):
        raise ValueError("_rows reads entries in increasing order; sort them first")
    runs = []
    for i in indices:
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        if hi == lo:
            continue
        if runs and runs[-1][1] == lo:
            runs[-1][1] = hi
        else:
            runs.append([lo, hi])
    shape = list(dataset.shape)
    shape[axis] = sum(hi - lo for lo, hi in runs)
    out = np.empty(shape, dataset.dtype)
    if out.size == 0:
        return out
    space, memory = dataset.id.get_space(), h5py.h5s.create_simple(out.shape)
    start, count = [0] * len(shape), list(shape)
    try:
        if len(shape) == 1:
            space.select_none()
            for lo, hi in runs:
                space.select_hyperslab((lo,), (hi - lo,), op=h5py.h5s.SELECT_OR)
            dataset.id.read(memory, space, out)
            return out
        at = 0
        for lo, hi in runs:
            start[axis], count[axis] = lo, hi - lo
            space.select_hyperslab(tuple(start), tuple(count))
            start[axis] = at
            memory.select_hyperslab(tuple(start), tuple(count))
            dataset.id.read(memory, space, out)
            at += hi - lo
    except OSError:
        with reading(dataset.file.filename, dataset.name):  # a damaged chunk: name the file and the array
            raise
    return out

