"""Datasets held in memory: ``StructureDataset`` (filtered training data) and ``CachedStructureDataset``
(the same, with energy-view features computed once).  Both implement ``StructureSource`` and are torch
``Dataset``s whose items are aenet-python's sample dicts (``aenet_core.data.samples``)."""
from __future__ import annotations

import hashlib
from functools import cached_property

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from aenet_core.data.samples import materialize_sample
from aenet_core.data.sources import StructureFilter, iter_entries
from aenet_core.descriptor import BatchedFeaturizer, structure_batch
from aenet_core.structure import (Structure, hash_structure, loss_weights, referenced_energy_per_atom, stress_labels,
                                  structure_sha256)


class InMemoryStructures(Dataset):
    """Structures held in memory behind the ``StructureSource`` accessors (no filter, labels optional).

    ``identifiers`` default to each structure's name, else ``structure_NNNNNN``
    after its position.  ``dataset[i]`` is entry i's sample dict, the force view
    where it has forces.
    """

    recipe_sha256 = None

    def __init__(self, structures, descriptor, atomic_energies=None, identifiers=None):
        self.structures = list(structures)
        self.descriptor = descriptor
        self.atomic_energies = dict(atomic_energies or {})
        self.identifiers = list(identifiers) if identifiers is not None else [
            s.name or f"structure_{i:06d}" for i, s in enumerate(self.structures)]
        self._species = [descriptor.species_indices(s.species) for s in self.structures]

    def __len__(self) -> int:
        return len(self.structures)

    def __getitem__(self, idx: int) -> dict:
        return self.materialize_sample(idx, use_forces=True)

    def materialize_sample(self, idx: int, *, use_forces: bool, cache_state=None, cache_features: bool = False,
                           cache_neighbors: bool = False, cache_force_triplets: bool = False,
                           load_local_derivatives: bool = False) -> dict:
        """Entry ``idx``'s sample dict, the force view when ``use_forces`` and it has forces (see
        ``aenet_core.data.samples``); ``cache_neighbors`` and ``cache_force_triplets`` are accepted for
        aenet-python's signature (no neighbour graphs are kept)."""
        return materialize_sample(self, idx, use_forces=use_forces, cache_state=cache_state,
                                  cache_features=cache_features, load_local_derivatives=load_local_derivatives)

    def get_structure(self, idx: int) -> Structure:
        return self.structures[idx]

    def get_structure_identifier(self, idx: int) -> str:
        return self.identifiers[idx]

    def get_force_indices(self) -> list:
        """Entries with force labels."""
        return [i for i, s in enumerate(self.structures) if s.has_forces()]

    def atom_counts(self, indices) -> list:
        return [self.structures[i].n_atoms for i in indices]

    def energies(self, indices) -> list:
        """Total energies (eV; NaN where a structure has none)."""
        return [np.nan if self.structures[i].energy is None else self.structures[i].energy for i in indices]

    def species_of(self, indices) -> torch.Tensor:
        return torch.cat([self._species[i] for i in indices])

    def forces_of(self, indices):
        forces = [self.structures[i].forces for i in indices]
        return None if any(f is None for f in forces) else np.concatenate(forces)

    def stress_labels(self, indices) -> tuple:
        return stress_labels([self.structures[i] for i in indices])

    def loss_weights(self, indices, config_type_weights=None) -> np.ndarray:
        structures = [self.structures[i] for i in indices]
        return loss_weights([s.weight for s in structures], [s.config_type for s in structures], config_type_weights)

    def has_forces(self, index: int) -> bool:
        return self.structures[index].has_forces()

    def referenced_energy_per_atom(self, index: int) -> float:
        s = self.structures[index]
        return referenced_energy_per_atom(s.energy, s.species, self.atomic_energies)

    @cached_property
    def content_sha256(self) -> str:
        """Hash of every structure and label, in order (what split files refer to); computed once."""
        hasher = hashlib.sha256()
        for structure in self.structures:
            hash_structure(hasher, structure)
        return hasher.hexdigest()

    @cached_property
    def geometry_sha256s(self) -> list:
        return [structure_sha256(s, labels=False) for s in self.structures]

    def stored_features(self, indices):
        return None

    def stored_derivatives(self, indices, dtype=None):
        return None


class StructureDataset(InMemoryStructures):
    """Labelled structures for training: every frame of the inputs that passes ``StructureFilter``.

    ``structures`` are Structures, ase.Atoms, file paths or globs (see
    ``aenet_core.data.sources``); ``max_energy`` (referenced energy per atom, eV)
    and ``max_forces`` (eV/Å) drop structures (``filter_settings`` records
    both); ``limits`` (``PlausibilityLimits``) refuse implausible ones.  ``seed`` is kept for aenet-python's
    signature: the dataset draws no random numbers.  ``source_indices[i]`` is the position of entry i among
    all input frames.
    """

    def __init__(self, structures, descriptor, max_energy=None, max_forces=None, atomic_energies=None, seed=None,
                 limits=None):
        structure_filter = StructureFilter(descriptor.species, atomic_energies, max_energy, max_forces, limits)
        kept = [(position, entry) for position, entry in enumerate(iter_entries(structures))
                if structure_filter.accepts(entry)]
        if not kept:
            raise ValueError("no structure is left after the max_energy/max_forces filters")
        structure_filter.check_geometry([e for _, e in kept], descriptor.max_cutoff)
        structure_filter.warn_about(e for _, e in kept)
        super().__init__([e.structure for _, e in kept], descriptor, atomic_energies,
                         [e.identifier for _, e in kept])
        self.source_indices = [position for position, _ in kept]
        self.filter_settings = structure_filter.settings()
        self.max_energy, self.max_forces, self.seed = max_energy, max_forces, seed

    def part(self, indices, seed=None) -> StructureDataset:
        """A StructureDataset of entries ``indices``, in that order, with their identifiers and filter
        settings (already filtered: nothing is checked again); possibly empty."""
        indices = list(indices)
        part = StructureDataset.__new__(StructureDataset)
        InMemoryStructures.__init__(part, [self.structures[i] for i in indices], self.descriptor,
                                    self.atomic_energies, [self.identifiers[i] for i in indices])
        part.source_indices = [self.source_indices[i] for i in indices]
        part.filter_settings, part.max_energy, part.max_forces = self.filter_settings, self.max_energy, self.max_forces
        part.seed = seed
        return part

    @property
    def force_structures(self) -> list:
        """Entries with force labels."""
        return self.get_force_indices()

    @property
    def energy_only_structures(self) -> list:
        """Entries without force labels."""
        return [i for i, s in enumerate(self.structures) if not s.has_forces()]

    def get_statistics(self) -> dict:
        """Counts: ``n_total``, ``n_force``, ``n_energy_only``, ``n_force_selected`` (= ``n_force``: the
        dataset selects nothing), ``total_atoms``, ``avg_atoms`` (0 when empty) and ``species`` (sorted)."""
        n_force, total_atoms = len(self.force_structures), sum(s.n_atoms for s in self.structures)
        return {"n_total": len(self), "n_force": n_force, "n_energy_only": len(self) - n_force,
                "n_force_selected": n_force, "total_atoms": total_atoms,
                "avg_atoms": total_atoms / len(self) if len(self) else 0,
                "species": sorted({x for s in self.structures for x in s.species})}

    def warmup_caches(self, show_progress: bool = True) -> None:
        """Nothing to warm (aenet-python keeps it for older callers; training keeps its own caches)."""


class CachedStructureDataset(StructureDataset):
    """A ``StructureDataset`` whose raw features are computed once, at construction.

    Energy-view features of every structure are kept in memory, so energy
    training on it never featurizes again; force-supervised structures still
    get their derivatives from the descriptor (or a ``HDF5StructureDataset``
    with persisted derivatives).  ``dataset[i]`` is the energy view of entry i without positions (None, as
    aenet-python's cached samples have); ``materialize_sample(i, use_forces=...)`` gives either view whole.
    """

    def __init__(self, structures, descriptor, max_energy=None, max_forces=None, atomic_energies=None, seed=None,
                 show_progress=True, batch_size=64):
        super().__init__(structures, descriptor, max_energy, max_forces, atomic_energies, seed)
        featurizer, self._features = BatchedFeaturizer(descriptor), []
        starts = range(0, len(self.structures), batch_size)
        for start in tqdm(starts, desc="featurizing", unit=" batches", disable=not show_progress):
            chunk = self.structures[start: start + batch_size]
            features, _ = featurizer(*structure_batch(chunk))
            self._features.extend(torch.split(features, [s.n_atoms for s in chunk]))

    def __getitem__(self, idx: int) -> dict:
        return {**self.materialize_sample(idx, use_forces=False), "positions": None}

    def stored_features(self, indices):
        return torch.cat([self._features[i] for i in indices])
