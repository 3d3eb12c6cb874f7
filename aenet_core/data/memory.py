"""Datasets held in memory: ``StructureDataset`` (filtered training data) and ``CachedStructureDataset``
(the same, with energy-view features computed once).  Both implement ``StructureSource``."""
from __future__ import annotations

import hashlib
from functools import cached_property

import numpy as np
import torch
from tqdm.auto import tqdm

from aenet_core.data.sources import StructureFilter, iter_entries
from aenet_core.descriptor import BatchedFeaturizer, structure_batch
from aenet_core.structure import (Structure, hash_structure, loss_weights, referenced_energy_per_atom, stress_labels,
                                  structure_sha256)


class InMemoryStructures:
    """Structures held in memory behind the ``StructureSource`` accessors (no filter, labels optional).

    ``identifiers`` default to each structure's name, else ``structure_NNNNNN``
    after its position.
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

    def get_structure(self, index: int) -> Structure:
        return self.structures[index]

    def get_structure_identifier(self, index: int) -> str:
        return self.identifiers[index]

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
    both); ``limits`` (``PlausibilityLimits``) refuse implausible ones.  ``source_indices[i]`` is the
    position of entry i among all input frames.
    """

    def __init__(self, structures, descriptor, max_energy=None, max_forces=None, atomic_energies=None, limits=None):
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
