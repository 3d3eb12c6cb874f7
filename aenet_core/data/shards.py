"""``ShardedDataset``: several structure sources (typically database files) trained on as one.

Active learning adds the structures labelled in each round as a new database
shard instead of rewriting the database: shard 0 is the base database, shard k
the frames of round k, every one built with the same descriptor and reference
energies.  Entry ``i`` of the concatenation is an entry of one shard (shard 0's
come first); a shard of zero entries (a round whose labelling all failed)
contributes nothing.  It implements ``StructureSource``.  Opening database shards and reading their
entries needs no torch, like ``HDF5StructureDataset``.
"""
from __future__ import annotations

import hashlib
import warnings
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from aenet_core.data.hdf5 import HDF5StructureDataset

if TYPE_CHECKING:  # imported where used: reading entries needs no torch
    import torch


class ShardedDataset:
    """The entries of ``shards`` (``StructureSource`` objects) in order, as one dataset.

    The shards must agree with shard 0 on the descriptor (identity and dtype)
    and on ``atomic_energies``.  Persisted features (derivatives) are used only
    when every non-empty shard has them; otherwise they are computed for all.
    ``content_sha256`` is, with several shards, the sha256 of their content
    hashes (hex digests) joined in order; with one, that shard's own, so that
    one shard is its database to splits and checkpoints too.  ``recipe_sha256``
    likewise, None when a shard has none.
    """

    def __init__(self, shards):
        self.shards = list(shards)
        if not self.shards:
            raise ValueError("a ShardedDataset needs at least one shard")
        self.atomic_energies = dict(self.shards[0].atomic_energies or {})
        for position in range(1, len(self.shards)):
            self._check_compatible(position)
        self._starts = np.cumsum([0] + [len(shard) for shard in self.shards])
        self._features_stored = self._stored_by_all("features")
        self._derivatives_stored = self._features_stored and self._stored_by_all("derivatives")

    @property
    def descriptor(self):
        return self.shards[0].descriptor

    @classmethod
    def open(cls, paths, **options) -> ShardedDataset:
        """The database files ``paths`` opened in load mode (``options`` go to ``HDF5StructureDataset``)."""
        return cls([HDF5StructureDataset(None, path, mode="load", **options) for path in paths])

    def shard_name(self, position: int) -> str:
        """How messages name shard ``position``: its file, where it has one."""
        file = getattr(self.shards[position], "database_file", None)
        return f"shard {position}" + (f" ({file})" if file is not None else "")

    def _check_compatible(self, position):
        """Refuse a shard whose features or energy labels would not mean what shard 0's do."""
        shard, first = self.shards[position], self.shards[0]
        problem = None if _same_descriptor_config(shard, first) else _descriptor_difference(shard, first)
        if problem is None and dict(shard.atomic_energies or {}) != self.atomic_energies:
            problem = f"atomic_energies {dict(shard.atomic_energies or {})} (shard 0: {self.atomic_energies})"
        if problem is not None:
            raise ValueError(f"{self.shard_name(position)} differs from {self.shard_name(0)} in its {problem}; "
                             f"build every shard with the same descriptor and reference energies")

    def _stored_by_all(self, kind) -> bool:
        """Whether every non-empty shard keeps ``kind`` ('features' or 'derivatives'); warns when only some do."""
        lacking = [k for k, shard in enumerate(self.shards) if len(shard) and not _keeps(shard, kind)]
        if lacking and len(lacking) < sum(1 for shard in self.shards if len(shard)):
            warnings.warn(f"no persisted {kind} in {', '.join(self.shard_name(k) for k in lacking)}, unlike the "
                          f"other shards: the {kind} of every shard are computed instead", stacklevel=3)
        return not lacking

    def has_persisted_features(self) -> bool:
        return self._features_stored

    def has_persisted_force_derivatives(self) -> bool:
        return self._derivatives_stored

    # -- indices ----------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._starts[-1])

    def locate(self, index: int) -> tuple:
        """(shard position, index within that shard) of entry ``index`` (negative counts from the end)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"entry {index} is out of range ({len(self)} entries in {len(self.shards)} shards)")
        index %= len(self)
        position = int(np.searchsorted(self._starts, index, side="right")) - 1  # skips empty shards
        return position, index - int(self._starts[position])

    def _runs(self, indices) -> list:
        """(shard, its local indices) for each run of consecutive ``indices`` in one shard, in order; no
        indices ask shard 0 for none (so the answer has its type and shape)."""
        indices = np.asarray(list(indices), dtype=np.int64)
        if not len(indices):
            return [(self.shards[0], [])]
        if indices.min() < 0 or indices.max() >= len(self):
            bad = indices[(indices < 0) | (indices >= len(self))][0]
            raise IndexError(f"entry {bad} is out of range 0..{len(self) - 1} ({len(self.shards)} shards)")
        position = np.searchsorted(self._starts, indices, side="right") - 1
        local = indices - self._starts[position]
        cuts = np.flatnonzero(np.diff(position)) + 1
        return [(self.shards[p[0]], run.tolist()) for p, run in zip(np.split(position, cuts), np.split(local, cuts))]

    def _each(self, method, indices, *args) -> list:
        return [getattr(shard, method)(local, *args) for shard, local in self._runs(indices)]

    # -- entries ----------------------------------------------------------------------

    def get_structure(self, index: int):
        position, local = self.locate(index)
        return self.shards[position].get_structure(local)

    def get_structure_identifier(self, index: int) -> str:
        position, local = self.locate(index)
        return self.shards[position].get_structure_identifier(local)

    def has_forces(self, index: int) -> bool:
        position, local = self.locate(index)
        return self.shards[position].has_forces(local)

    def referenced_energy_per_atom(self, index: int) -> float:
        position, local = self.locate(index)
        return self.shards[position].referenced_energy_per_atom(local)

    def atom_counts(self, indices) -> list:
        return [n for part in self._each("atom_counts", indices) for n in part]

    def energies(self, indices) -> list:
        return [e for part in self._each("energies", indices) for e in part]

    def species_of(self, indices) -> torch.Tensor:
        import torch

        return _joined(self._each("species_of", indices), torch.cat)

    def forces_of(self, indices):
        parts = self._each("forces_of", indices)
        return None if any(part is None for part in parts) else _joined(parts, np.concatenate)

    def stress_labels(self, indices) -> tuple:
        parts = self._each("stress_labels", indices)
        return tuple(_joined(column, np.concatenate) for column in zip(*parts))

    def loss_weights(self, indices, config_type_weights=None) -> np.ndarray:
        return _joined(self._each("loss_weights", indices, config_type_weights), np.concatenate)

    # -- hashes -----------------------------------------------------------------------

    @property
    def content_sha256(self) -> str:
        return _combined([shard.content_sha256 for shard in self.shards])

    @property
    def recipe_sha256(self) -> str | None:
        recipes = [shard.recipe_sha256 for shard in self.shards]
        return None if any(recipe is None for recipe in recipes) else _combined(recipes)

    @cached_property
    def geometry_sha256s(self) -> list:
        return [key for shard in self.shards for key in shard.geometry_sha256s]

    # -- persisted payloads -------------------------------------------------------------

    def stored_features(self, indices):
        if not self._features_stored:
            return None
        import torch

        return _joined(self._each("stored_features", indices), torch.cat)

    def stored_derivatives(self, indices, dtype=None):
        if not self._derivatives_stored:
            return None
        parts = self._each("stored_derivatives", indices, dtype)
        if len(parts) == 1:
            return parts[0]
        import torch

        from aenet_core.derivatives import LocalDerivatives

        # Each part's atom indices count from its own first atom; concatenate shifts them.
        return torch.cat([f for f, _ in parts]), LocalDerivatives.concatenate([d for _, d in parts])

    # -- files ------------------------------------------------------------------------

    def close(self):
        for shard in self.shards:
            if hasattr(shard, "close"):
                shard.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_databases(paths):
    """One database file (a path, or a list of one) as ``HDF5StructureDataset``, several as ``ShardedDataset``."""
    paths = [paths] if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__") else list(paths)
    if len(paths) == 1:
        return HDF5StructureDataset(None, paths[0], mode="load")
    return ShardedDataset.open(paths)


def _same_descriptor_config(shard, first) -> bool:
    """Whether two shards record one descriptor configuration (device aside), which databases tell without
    building their descriptors (that needs torch)."""
    configs = [getattr(s, "descriptor_config", None) for s in (shard, first)]
    if None in configs:
        return False
    mine, theirs = ({key: value for key, value in config.items() if key != "device"} for config in configs)
    return mine == theirs


def _descriptor_difference(shard, first) -> str | None:
    """How ``shard``'s descriptor differs from ``first``'s in what its features mean, or None."""
    if shard.descriptor is None or first.descriptor is None:  # a database of structures only has none
        stored = ("none" if d is None else "one" for d in (shard.descriptor, first.descriptor))
        return None if shard.descriptor is first.descriptor else "descriptor: {} stored (shard 0: {})".format(*stored)
    mine, theirs = shard.descriptor.identity(), first.descriptor.identity()
    differing = {key: (mine.get(key), theirs[key]) for key in theirs if mine.get(key) != theirs[key]}
    if shard.descriptor.dtype != first.descriptor.dtype:
        differing["dtype"] = (shard.descriptor.dtype, first.descriptor.dtype)
    if not differing:
        return None
    return "descriptor " + ", ".join(f"{k}={a!r} (shard 0: {b!r})" for k, (a, b) in differing.items())


def _keeps(shard, kind) -> bool:
    """Whether ``shard`` (not empty) answers ``stored_<kind>`` with data rather than None."""
    known = getattr(shard, "has_persisted_features" if kind == "features" else "has_persisted_force_derivatives", None)
    if known is not None:
        return bool(known())
    if kind == "features":
        return shard.stored_features([0]) is not None
    forced = next((i for i in range(len(shard)) if shard.has_forces(i)), None)
    return forced is None or shard.stored_derivatives([forced]) is not None  # none is asked of an unforced one


def _joined(parts, join):
    return parts[0] if len(parts) == 1 else join(parts)


def _combined(hashes) -> str:
    return hashes[0] if len(hashes) == 1 else hashlib.sha256("".join(hashes).encode()).hexdigest()
