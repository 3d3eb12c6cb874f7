"""Training data in memory: labelled structures, the train/test split, and featurized batches.

A ``StructureDataset`` holds the structures that pass the energy/force filters.
``FeatureSource`` turns a list of dataset indices into a ``Batch``: raw
features of every atom, plus the sparse descriptor derivatives of the
structures that are force-supervised in this batch.  Features and derivatives
are computed for the whole batch in one pass of the descriptor, or taken from
bounded per-structure caches when the configuration asks for them.
"""
import hashlib
import json
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from aenet_core.descriptor import BatchedFeaturizer, LocalDerivatives, structure_batch
from aenet_core.io import read_structures
from aenet_core.io.common import atomic_write
from aenet_core.structure import Structure, hash_structure, referenced_energy_per_atom


def as_structures(inputs) -> list:
    """Structures from Structure objects, ase.Atoms or file paths (every frame of every file)."""
    structures = []
    for index, item in enumerate(inputs):
        if isinstance(item, Structure):
            structures.append(item)
        elif isinstance(item, (str, Path)):
            structures.extend(read_structures(item))
        elif hasattr(item, "get_chemical_symbols"):
            structures.append(Structure.from_ase(item))
        else:
            raise ValueError(f"structures[{index}] must be a Structure, ase.Atoms or a file path; "
                             f"got {type(item).__name__}")
    return structures


class InMemoryStructures:
    """Structures held in memory, with the accessors ``FeatureSource`` uses (shared by every dataset).

    A dataset supplies per-entry labels (``atom_counts``, ``energies``,
    ``species_of``, ``forces_of``, ``has_forces``), the structures themselves
    (``get_structure``) and, when it persists them, raw features and
    derivatives (``stored_features``/``stored_derivatives``; None here: they
    are computed by the descriptor).
    """

    def __init__(self, structures, descriptor, atomic_energies=None):
        self.structures = list(structures)
        self.descriptor = descriptor
        self.atomic_energies = dict(atomic_energies or {})
        self._species = [descriptor.species_indices(s.species) for s in self.structures]

    def __len__(self) -> int:
        return len(self.structures)

    def get_structure(self, index: int) -> Structure:
        return self.structures[index]

    def atom_counts(self, indices) -> list:
        return [self.structures[i].n_atoms for i in indices]

    def energies(self, indices) -> list:
        """Total energies (eV; NaN where a structure has none)."""
        return [np.nan if self.structures[i].energy is None else self.structures[i].energy for i in indices]

    def species_of(self, indices) -> torch.Tensor:
        """Species indices (into ``descriptor.species``) of every atom of ``indices``, concatenated."""
        return torch.cat([self._species[i] for i in indices])

    def forces_of(self, indices):
        """Reference forces (sum N, 3) of ``indices`` concatenated, or None if any structure has none."""
        forces = [self.structures[i].forces for i in indices]
        return None if any(f is None for f in forces) else np.concatenate(forces)

    def has_forces(self, index: int) -> bool:
        return self.structures[index].has_forces()

    @cached_property
    def content_sha256(self) -> str:
        """Hash of every structure and label, in order (what split files refer to); computed once."""
        hasher = hashlib.sha256()
        for structure in self.structures:
            hash_structure(hasher, structure)
        return hasher.hexdigest()

    def stored_features(self, indices):
        return None

    def stored_derivatives(self, indices):
        return None


class StructureDataset(InMemoryStructures):
    """Labelled structures for training, after the ``max_energy``/``max_forces`` filters.

    ``max_energy`` is a referenced energy per atom in eV (structures above it
    are dropped); ``max_forces`` drops structures with any force component
    larger in magnitude.  ``source_indices[i]`` is the position of entry i in
    the input list.
    """

    def __init__(self, structures, descriptor, max_energy=None, max_forces=None, atomic_energies=None):
        self.atomic_energies = dict(atomic_energies or {})
        kept, sources = [], []
        for index, structure in enumerate(as_structures(structures)):
            label = structure.name or f"structure {index}"
            if structure.energy is None:
                raise ValueError(f"{label}: no energy; training needs a total energy for every structure")
            unknown = sorted(set(structure.species) - set(descriptor.species))
            if unknown:
                raise ValueError(f"{label}: species {unknown} are not in the descriptor species {descriptor.species}")
            if max_energy is not None and self._referenced(structure) > max_energy:
                continue
            if max_forces is not None and structure.has_forces() and np.abs(structure.forces).max() > max_forces:
                continue
            kept.append(structure)
            sources.append(index)
        if not kept:
            raise ValueError("no structure is left after the max_energy/max_forces filters")
        super().__init__(kept, descriptor, atomic_energies)
        self.source_indices = sources

    def get_structure_identifier(self, index: int) -> str:
        """The structure's name, or ``structure_NNNNNN`` after its position in the input."""
        return self.structures[index].name or f"structure_{self.source_indices[index]:06d}"

    def _referenced(self, structure) -> float:
        return referenced_energy_per_atom(structure.energy, structure.species, self.atomic_energies)

    def referenced_energy_per_atom(self, index: int) -> float:
        """(E - sum of atomic reference energies) / N: the quantity the energy loss is measured in."""
        return self._referenced(self.structures[index])


class CachedStructureDataset(StructureDataset):
    """A ``StructureDataset`` whose raw features are computed once, at construction.

    Energy-view features of every structure are kept in memory, so energy
    training on it never featurizes again; force-supervised structures still
    get their derivatives from the descriptor (or a ``HDF5StructureDataset``
    with persisted derivatives).
    """

    def __init__(self, structures, descriptor, max_energy=None, max_forces=None, atomic_energies=None,
                 show_progress=True, batch_size=64):
        super().__init__(structures, descriptor, max_energy, max_forces, atomic_energies)
        featurizer, self._features = BatchedFeaturizer(descriptor), []
        starts = range(0, len(self.structures), batch_size)
        for start in tqdm(starts, desc="featurizing", unit=" batches", disable=not show_progress):
            chunk = self.structures[start: start + batch_size]
            features, _ = featurizer(*structure_batch(chunk))
            self._features.extend(torch.split(features, [s.n_atoms for s in chunk]))

    def stored_features(self, indices):
        return torch.cat([self._features[i] for i in indices])


@dataclass
class Batch:
    """Featurized structures; the force-supervised ones come first.

    Atoms of structure ``b`` have ``batch == b``; ``derivatives`` and
    ``forces_ref`` cover the first ``n_force_atoms`` atoms (the atoms of the
    first ``n_force_structures`` structures).
    """

    indices: list  # dataset index of each structure, in batch order
    features: torch.Tensor
    species_idx: torch.Tensor
    batch: torch.Tensor
    n_atoms: torch.Tensor
    energy_ref: torch.Tensor  # total energies (eV)
    n_force_structures: int
    derivatives: Optional[LocalDerivatives]
    forces_ref: Optional[torch.Tensor]

    @property
    def n_structures(self) -> int:
        return len(self.indices)

    @property
    def n_force_atoms(self) -> int:
        return int(self.n_atoms[: self.n_force_structures].sum())

    def to(self, device, dtype) -> "Batch":
        def move(t):
            return None if t is None else t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)

        derivatives = None if self.derivatives is None else self.derivatives.to(device, dtype)
        return Batch(self.indices, move(self.features), move(self.species_idx), move(self.batch),
                     move(self.n_atoms), move(self.energy_ref), self.n_force_structures, derivatives,
                     move(self.forces_ref))


class BoundedCache:
    """Least-recently-used cache; ``max_entries`` None keeps everything, 0 keeps nothing."""

    def __init__(self, max_entries):
        self.max_entries = max_entries
        self.entries = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key):
        if key in self.entries:
            self.entries.move_to_end(key)
            self.hits += 1
            return self.entries[key]
        self.misses += 1
        return None

    def put(self, key, value):
        if self.max_entries == 0:
            return
        self.entries[key] = value
        self.entries.move_to_end(key)
        if self.max_entries is not None and len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def __len__(self):
        return len(self.entries)

    def __getstate__(self):
        # Each DataLoader worker starts with an empty cache of its own.
        return {"max_entries": self.max_entries, "entries": OrderedDict(), "hits": 0, "misses": 0}


class PersistentCache(BoundedCache):
    """A BoundedCache whose entries are also kept on disk, keyed by structure content and descriptor.

    Files live in ``directory/<descriptor hash>/<kind>/<structure hash>.pt``, so a
    later run (or another process) with the same descriptor and structures reads
    them instead of featurizing again.  Files are written atomically and loaded
    with ``weights_only=True``.
    """

    def __init__(self, max_entries, directory, dataset, kind):
        super().__init__(max_entries)
        config = dataset.descriptor.get_config()
        config.pop("device")
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = Path(directory) / digest / kind
        self.dataset = dataset
        self.disk_hits = 0

    def _file(self, index) -> Path:
        s = self.dataset.get_structure(index)
        content = hashlib.sha256()
        for part in (s.positions, s.cell, s.pbc):
            content.update(b"-" if part is None else np.ascontiguousarray(part).tobytes())
        content.update(" ".join(s.species).encode())
        return self.directory / f"{content.hexdigest()}.pt"

    def get(self, key):
        value = super().get(key)
        if value is None and self.max_entries != 0:
            path = self._file(key)
            if path.exists():
                value = _restore(torch.load(path, weights_only=True))
                self.disk_hits += 1
                super().put(key, value)  # in memory only: the file is already there
        return value

    def put(self, key, value):
        super().put(key, value)
        path = self._file(key) if self.max_entries != 0 else None
        if path is not None and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path, binary=True) as handle:
                torch.save(_storable(value), handle)


def _storable(value):
    """Cache values as plain tensors/tuples/dicts (loadable with weights_only=True)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], LocalDerivatives):
        return {"features": value[0], "derivatives": dict(value[1].__dict__)}
    return value


def _restore(value):
    if isinstance(value, dict) and "derivatives" in value:
        return value["features"], LocalDerivatives(**value["derivatives"])
    return value


class FeatureSource:
    """Featurizes batches of a ``StructureDataset``, optionally through per-structure caches.

    ``feature_cache`` holds energy-view raw features, ``derivative_cache``
    holds (features, LocalDerivatives) of force-supervised structures and
    ``neighbor_cache`` the neighbour pairs of each structure, so that a
    structure featurized again needs no neighbour search; any may be None
    (no caching).  ``featurizer_calls`` counts descriptor passes and
    ``neighbor_searches`` the neighbour searches.
    """

    def __init__(self, dataset: StructureDataset, feature_cache=None, derivative_cache=None, neighbor_cache=None):
        self.dataset = dataset
        self.featurizer = BatchedFeaturizer(dataset.descriptor)
        self.feature_cache = feature_cache
        self.derivative_cache = derivative_cache
        self.neighbor_cache = neighbor_cache
        self.featurizer_calls = self.neighbor_searches = 0

    def batch(self, indices, use_forces) -> Batch:
        """Featurize ``indices``; ``use_forces(i)`` says whether structure i is force-supervised."""
        forced = [i for i in indices if use_forces(i)]
        energy_only = [i for i in indices if not use_forces(i)]
        order = forced + energy_only
        parts, derivatives = [], None
        if forced:
            features, derivatives = self._with_derivatives(forced)
            parts.append(features)
        if energy_only:
            parts.append(self._features(energy_only))
        n_atoms = torch.tensor(self.dataset.atom_counts(order))
        forces = self.dataset.forces_of(forced) if forced else None
        return Batch(
            indices=order,
            features=torch.cat(parts),
            species_idx=self.dataset.species_of(order),
            batch=torch.repeat_interleave(torch.arange(len(order)), n_atoms),
            n_atoms=n_atoms,
            energy_ref=torch.tensor(self.dataset.energies(order), dtype=torch.float64),
            n_force_structures=len(forced),
            derivatives=derivatives,
            forces_ref=None if forces is None else torch.as_tensor(forces),
        )

    def _run(self, indices, with_derivatives):
        self.featurizer_calls += 1
        args = self._arguments(indices)
        pairs = None if self.neighbor_cache is None else self._pairs(indices)
        if with_derivatives:
            features, _, derivatives = self.featurizer.with_derivatives(*args, pairs=pairs)
            return features, derivatives
        return self.featurizer(*args, pairs=pairs)[0]

    def _arguments(self, indices):
        return structure_batch([self.dataset.get_structure(i) for i in indices])

    def _pairs(self, indices):
        """Neighbour pairs of the batch from the cache, searching only for structures not in it."""
        found = {i: self.neighbor_cache.get(i) for i in indices}
        missing = list(dict.fromkeys(i for i in indices if found[i] is None))
        if missing:
            self.neighbor_searches += 1
            for i, pairs in zip(missing, self.featurizer.neighbor_pairs(*self._arguments(missing))):
                found[i] = pairs
                self.neighbor_cache.put(i, pairs)
        first_atom, center, neighbor, offset = 0, [], [], []
        for i, n_atoms in zip(indices, self.dataset.atom_counts(indices)):
            c, n, k = found[i]
            center.append(c + first_atom)
            neighbor.append(n + first_atom)
            offset.append(k)
            first_atom += n_atoms
        return torch.cat(center), torch.cat(neighbor), torch.cat(offset)

    def _features(self, indices):
        return self._cached(indices, self.feature_cache, False)

    def _with_derivatives(self, indices):
        return self._cached(indices, self.derivative_cache, True)

    def _cached(self, indices, cache, with_derivatives):
        """What the dataset stores for ``indices``; else featurize them in one pass, or per structure
        through ``cache`` when there is one."""
        stored = (self.dataset.stored_derivatives if with_derivatives else self.dataset.stored_features)(indices)
        if stored is not None:
            return stored
        if cache is None:
            return self._run(indices, with_derivatives)
        values = {i: cache.get(i) for i in indices}
        missing = [i for i in indices if values[i] is None]
        if missing:
            computed = self._run(missing, with_derivatives)
            sizes = self.dataset.atom_counts(missing)
            if with_derivatives:
                pieces = zip(torch.split(computed[0], sizes), computed[1].split(sizes))
            else:
                pieces = torch.split(computed, sizes)
            for i, piece in zip(missing, pieces):
                values[i] = piece
                cache.put(i, piece)
        if with_derivatives:
            return (torch.cat([values[i][0] for i in indices]),
                    LocalDerivatives.concatenate([values[i][1] for i in indices]))
        return torch.cat([values[i] for i in indices])


def warn_missing_references(atomic_energies, species) -> None:
    missing = [s for s in species if s not in (atomic_energies or {})]
    if missing:
        warnings.warn(f"no atomic reference energy for {missing}; using 0.0 eV, so the model learns "
                      f"total rather than cohesive energies for them", stacklevel=3)


class _PlanDataset(torch.utils.data.Dataset):
    """Featurizes the batch that a plan key (dataset indices, force-supervised indices) describes."""

    def __init__(self, source):
        self.source = source

    def __getitem__(self, key):
        indices, forced = key
        return self.source.batch(list(indices), set(forced).__contains__)


class _PlanSampler(torch.utils.data.Sampler):
    """Yields the current epoch's plan keys; the loader re-reads ``plan`` at every epoch."""

    def __init__(self, plan):
        self.plan = plan

    def __iter__(self):
        return iter(list(self.plan))

    def __len__(self):
        return len(self.plan)


def _first(batch):
    return batch


class BatchLoader:
    """Featurized batches in plan order: in this process, or prepared by DataLoader workers.

    A plan is a list of (dataset indices, force-supervised indices) per batch.
    With ``num_workers > 0`` the workers (and, with ``persistent_workers``,
    their per-process caches) live across epochs; the plan is read anew each
    epoch, so batch order and force subsets are the same as without workers.
    """

    def __init__(self, source, num_workers=0, prefetch_factor=2, persistent_workers=True):
        self.source = source
        self.plan = []
        self.loader = None
        if num_workers > 0:
            self.loader = torch.utils.data.DataLoader(
                _PlanDataset(source), sampler=_PlanSampler(self.plan), batch_size=None, num_workers=num_workers,
                prefetch_factor=prefetch_factor, persistent_workers=persistent_workers, collate_fn=_first)

    def __call__(self, plan):
        if self.loader is None:
            return (self.source.batch(list(indices), set(forced).__contains__) for indices, forced in plan)
        self.plan[:] = plan
        return iter(self.loader)
