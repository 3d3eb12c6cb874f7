"""aenet-python's inference building blocks over our model: ``EnergyModelAdapter`` (per-atom network outputs of
per-species networks) and ``Predictor`` (energies, forces and per-atom energies of structures).

Both take the pieces aenet-python's trainer keeps apart (networks, a
``NormalizationManager``, atomic reference energies) and evaluate them as one
``AtomisticModel`` that shares the networks (``atomistic_view``), so that they
compute exactly what ``TorchANNPotential`` computes.
"""
from __future__ import annotations

import torch
from torch import nn

from aenet_core.data.protocol import subset_entries
from aenet_core.data.sources import iter_entries
from aenet_core.model.atomistic import AtomisticModel
from aenet_core.model.network import AtomicNetworks
from aenet_core.model.predict import predict_with_models


class EnergyModelAdapter(nn.Module):
    """Per-atom outputs of ``net`` (an ``AtomicNetworks``, as ``NetworkBuilder`` builds) for flat (N, F)
    features and (N,) species indices, in atom order; ``n_species`` networks."""

    def __init__(self, net, n_species):
        super().__init__()
        self.net = net
        self.n_species = n_species
        self.device = getattr(net, "device", "cpu")

    def forward_atomic(self, features, species_indices):
        if features.dim() != 2:
            raise AssertionError(f"features must be (N, F); got shape {tuple(features.shape)}")
        if species_indices.dim() != 1 or len(species_indices) != len(features):
            raise AssertionError(f"species_indices must be (N,) with N = {len(features)} (one per feature row); "
                                 f"got shape {tuple(species_indices.shape)}")
        if len(species_indices) and not 0 <= int(species_indices.min()) <= int(species_indices.max()) < \
                self.n_species:
            raise ValueError(f"species indices must lie in [0, n_species={self.n_species}); got "
                             f"{int(species_indices.min())}..{int(species_indices.max())}")
        return self.net(features, species_indices)

    def forward(self, features, species_indices):
        return self.forward_atomic(features, species_indices)


def atomistic_view(model, normalizer, atomic_energies_by_index) -> AtomisticModel:
    """``model`` (an ``EnergyModelAdapter`` or ``AtomicNetworks``) with ``normalizer``'s statistics and the
    reference energies as one ``AtomisticModel`` sharing its networks; an ``AtomisticModel`` as it is."""
    if isinstance(model, AtomisticModel):
        return model
    networks = model.net if isinstance(model, EnergyModelAdapter) else model
    if not isinstance(networks, AtomicNetworks):
        raise TypeError(f"model must be an EnergyModelAdapter over AtomicNetworks (NetworkBuilder.build_network), "
                        f"AtomicNetworks or an AtomisticModel; got {type(networks).__name__}")
    weight = next(networks.parameters())
    view = AtomisticModel(networks.arch, networks.species, networks.functions[0][0].in_features,
                          dtype=weight.dtype, networks=networks).to(weight.device)
    mean, std, shift, scaling = normalizer.model_statistics()
    if mean is not None:
        view.set_feature_statistics(mean.reshape(-1), std.reshape(-1))
    view.set_energy_normalization(shift, scaling)
    view.atomic_energies.copy_(torch.as_tensor(atomic_energies_by_index))
    return view


class Predictor:
    """Energies (eV, total: network energy plus the atomic reference energies), forces (eV/Å) and physical
    per-atom energies of structures from a trained ``model`` (an ``EnergyModelAdapter``), the ``descriptor``
    it was trained on and its ``normalizer``.

    An ``AtomisticModel`` (``TorchANNPotential.model``) carries its own normalisation and reference
    energies; ``normalizer`` and ``atomic_energies`` are then not applied to it.
    """

    def __init__(self, model, descriptor, normalizer, atomic_energies=None, device=torch.device("cpu"),
                 dtype=torch.float64):
        self.model, self.descriptor, self.normalizer = model, descriptor, normalizer
        self.atomic_energies, self.device, self.dtype = atomic_energies, device, dtype
        energies = atomic_energies or {}
        self.atomic_energies_by_index = torch.tensor([float(energies.get(s, 0.0)) for s in descriptor.species],
                                                     dtype=dtype, device=device)

    def predict(self, structures, eval_forces: bool = False, return_atom_energies: bool = False,
                track_timing: bool = False, batch_size=None, num_workers=None, prefetch_factor=None,
                persistent_workers=None) -> tuple:
        """(energies, forces or None, per-atom energies or None, timing or None) of Structures, ase.Atoms or
        structure files, one entry per structure; forces and per-atom energies as tensors.

        Featurization runs in this process (``num_workers``, ``prefetch_factor`` and
        ``persistent_workers`` are accepted and not used); ``timing`` is ``PredictOut.timing``.
        """
        structures = [entry.structure for entry in iter_entries(structures)]
        return self._predict(structures, eval_forces, return_atom_energies, track_timing, batch_size)[:4]

    def predict_dataset(self, dataset, eval_forces: bool = False, return_atom_energies: bool = False,
                        track_timing: bool = False, batch_size=None, num_workers=None, prefetch_factor=None,
                        persistent_workers=None) -> tuple:
        """``predict`` over every structure of a dataset (a ``StructureSource`` or a torch ``Subset`` of
        one), forces included when asked, plus metadata {'coords', 'atom_types', 'names'}."""
        structures = dataset_structures(dataset)
        out = self._predict(structures, eval_forces, return_atom_energies, track_timing, batch_size)
        metadata = {"coords": [s.positions for s in structures], "atom_types": [list(s.species) for s in structures],
                    "names": [s.name for s in structures]}
        return (*out, metadata)

    def _predict(self, structures, eval_forces, return_atom_energies, track_timing, batch_size) -> tuple:
        view = atomistic_view(self.model, self.normalizer, self.atomic_energies_by_index)
        size = int(batch_size) if batch_size is not None else 32
        out = predict_with_models([view], self.descriptor, structures, [f"structure_{i:06d}"
                                                                         for i in range(len(structures))],
                                  eval_forces, size, track_timing=track_timing)[0]
        forces = [torch.as_tensor(f) for f in out.forces] if eval_forces else None
        atom_energies = [torch.as_tensor(e) for e in out.atom_energies] if return_atom_energies else None
        return out.total_energy, forces, atom_energies, out.timing

    def cohesive_energy(self, structure, atomic_energies=None) -> float:
        """The structure's energy minus its atoms' reference energies (eV, not per atom)."""
        atomic_energies = self.atomic_energies if atomic_energies is None else atomic_energies
        if atomic_energies is None:
            raise ValueError("Atomic energies not available. Provide atomic_energies or use a predictor with "
                             "atomic_energies set.")
        if structure.energy is None:
            raise TypeError(f"structure {structure.name or ''} has no energy; its cohesive energy needs one")
        return float(structure.energy) - sum(float(atomic_energies.get(s, 0.0)) for s in structure.species)


def dataset_structures(dataset) -> list:
    """Every structure of a ``StructureSource``, through any torch ``Subset`` layers around it."""
    dataset, indices = subset_entries(dataset)
    if indices is None:
        indices = range(len(dataset))
    if not hasattr(dataset, "get_structure"):
        raise ValueError(f"predict_dataset needs a dataset with get_structure(i) (a StructureDataset, "
                         f"HDF5StructureDataset or a Subset of one); got {type(dataset).__name__}")
    return [dataset.get_structure(int(i)) for i in indices]
