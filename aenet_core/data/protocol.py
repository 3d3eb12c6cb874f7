"""The structure-source contract: what training, prediction, splits and committees ask of a dataset.

``StructureDataset`` and ``CachedStructureDataset`` (in memory) and
``HDF5StructureDataset`` (a database file) implement it; anything else that
does can be trained on.  Indices are entry positions ``0..len - 1``; methods
taking ``indices`` answer for them in the order given (repeats allowed).
``resolve_subsets`` sees through ``torch.utils.data.Subset``s of a source to the
source and its entries.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import Subset

from aenet_core.derivatives import LocalDerivatives
from aenet_core.descriptor import ChebyshevDescriptor
from aenet_core.structure import Structure


@runtime_checkable
class StructureSource(Protocol):
    """Labelled structures with a descriptor, and optionally their persisted features and derivatives."""

    descriptor: ChebyshevDescriptor
    atomic_energies: dict  # species -> reference energy (eV) that the energy labels are measured against

    def __len__(self) -> int: ...

    def get_structure(self, index: int) -> Structure:
        """The structure of entry ``index`` with its labels."""

    def get_structure_identifier(self, index: int) -> str:
        """A stable name: ``path#frame=N`` for an entry read from a file, else the structure's name or
        ``structure_NNNNNN`` after its position in the input."""

    def atom_counts(self, indices) -> list:
        """Number of atoms of each entry."""

    def energies(self, indices) -> list:
        """Total reference energies (eV)."""

    def species_of(self, indices) -> torch.Tensor:
        """Species indices (into ``descriptor.species``) of every atom of the entries, concatenated."""

    def forces_of(self, indices) -> np.ndarray | None:
        """Reference forces (sum N, 3) of the entries concatenated, or None if any entry has none."""

    def stress_labels(self, indices) -> tuple:
        """(stresses (n, 3, 3) eV/Å³, zero where an entry has none; whether each has one (n,) bool; the
        cell volumes (n,) Å³, NaN where not periodic in 3D)."""

    def loss_weights(self, indices, config_type_weights=None) -> np.ndarray:
        """Each entry's weight in the loss: its ``weight`` times ``config_type_weights[config_type]`` (1 for
        a config type the mapping does not name, or none)."""

    def has_forces(self, index: int) -> bool:
        """Whether entry ``index`` has force labels."""

    def referenced_energy_per_atom(self, index: int) -> float:
        """(E - sum of the atoms' reference energies) / N: the quantity the energy loss is measured in."""

    @property
    def content_sha256(self) -> str:
        """Hash of every structure and label, in entry order: what split files refer to."""

    @property
    def geometry_sha256s(self) -> list:
        """Per entry, the hash of its species, positions and cell (what its features depend on): copies of a
        structure share one."""

    @property
    def recipe_sha256(self) -> str | None:
        """Hash of how the data was made (sources, filter, what was persisted), or None in memory."""

    def stored_features(self, indices) -> torch.Tensor | None:
        """Raw features (sum N, F) of the entries, or None when the source keeps none (computed instead)."""

    def stored_derivatives(self, indices, dtype=None) -> tuple[torch.Tensor, LocalDerivatives] | None:
        """(features, LocalDerivatives) of force-labelled entries, or None when the source keeps none; the
        derivatives in ``dtype`` when given (a source may keep them so), else in the descriptor's."""


SOURCE_METHODS = tuple(name for name, value in vars(StructureSource).items()
                       if not name.startswith("_") and callable(value))


def subset_entries(dataset) -> tuple:
    """(the dataset under any nested torch Subsets, the entries of it they select in order; None: no Subset)."""
    base, indices = dataset, None
    while isinstance(base, Subset):
        level = [int(i) for i in base.indices]
        indices = level if indices is None else [level[i] for i in indices]
        base = base.dataset
    return base, indices


def resolve_subsets(dataset, name: str = "dataset") -> tuple:
    """(base, indices): the ``StructureSource`` under ``dataset`` and the entries of it that ``dataset``'s
    items are, in order.  ``dataset`` is a source itself (indices: all of its entries) or a
    ``torch.utils.data.Subset`` of one, nested to any depth (indices: what the subsets select, repeats kept,
    negative ones counted from the end).  ``name`` is what errors call it; ValueError for anything else."""
    base, indices = subset_entries(dataset)
    missing = [method for method in SOURCE_METHODS if not callable(getattr(base, method, None))]
    if missing:
        raise ValueError(f"{name} must be a StructureDataset, CachedStructureDataset, HDF5StructureDataset (or "
                         f"another StructureSource) or a torch Subset of one; got {type(base).__name__}, which "
                         f"lacks {', '.join(missing)}")
    n = len(base)
    if indices is None:
        return base, list(range(n))
    outside = [i for i in indices if not -n <= i < n]
    if outside:
        raise IndexError(f"{name}: Subset index {outside[0]} is outside the {n} entries of its "
                         f"{type(base).__name__}")
    return base, [i % n for i in indices]
