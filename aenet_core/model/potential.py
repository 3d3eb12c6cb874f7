"""Energies and forces of a batch of atoms from raw features: normalise, evaluate, assemble.

E_structure = sum_i out_i / E_scaling + N E_shift + sum_i E_atom[type_i], where
out_i is the network output for the standardised features of atom i.  Forces
are the exact negative gradient: autograd gives dE/dG through the networks
only, and the sparse analytic descriptor derivatives carry it to positions.
"""
import torch
from torch import nn

from aenet_core.model.network import AtomicNetworks


class AtomisticModel(nn.Module):
    """Per-species networks plus the normalisation and atomic reference energies they were trained with.

    All of the state (weights and the buffers ``feature_mean``,
    ``feature_std``, ``E_shift``, ``E_scaling``, ``atomic_energies``) lives in
    ``state_dict``.
    """

    def __init__(self, arch, species, n_features: int, atomic_energies=None, dtype=torch.float64):
        super().__init__()
        self.species = list(species)
        self.networks = AtomicNetworks(arch, self.species, n_features)
        reference = atomic_energies or {}
        self.register_buffer("feature_mean", torch.zeros(n_features, dtype=dtype))
        self.register_buffer("feature_std", torch.ones(n_features, dtype=dtype))
        self.register_buffer("E_shift", torch.tensor(0.0, dtype=dtype))
        self.register_buffer("E_scaling", torch.tensor(1.0, dtype=dtype))
        energies = [float(reference.get(s, 0.0)) for s in self.species]
        self.register_buffer("atomic_energies", torch.tensor(energies, dtype=dtype))
        self.networks.to(dtype)

    @property
    def arch(self) -> dict:
        return self.networks.arch

    def set_feature_statistics(self, mean, std) -> None:
        std = torch.as_tensor(std, dtype=self.feature_std.dtype)
        if not bool((std > 0).all()):
            raise ValueError("feature std must be positive in every column")
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=self.feature_mean.dtype))
        self.feature_std.copy_(std)

    def set_energy_normalization(self, shift: float, scaling: float) -> None:
        if not scaling > 0:
            raise ValueError(f"E_scaling must be positive; got {scaling}")
        self.E_shift.fill_(float(shift))
        self.E_scaling.fill_(float(scaling))

    def network_outputs(self, features, species_idx):
        """Raw per-atom network outputs (N,) in normalised energy units."""
        return self.networks((features - self.feature_mean) / self.feature_std, species_idx)

    def atom_energies(self, outputs, species_idx):
        """Physical per-atom energies (eV): out / E_scaling + E_shift + E_atom."""
        return outputs / self.E_scaling + self.E_shift + self.atomic_energies.index_select(0, species_idx)

    def forward(self, features, species_idx, batch, n_structures: int):
        """Total energies (B,) of the structures that ``batch`` assigns each atom to."""
        return self.sum_per_structure(self.atom_energies_and_forces(features, species_idx)[0], batch, n_structures)

    def energies_and_forces(self, features, species_idx, batch, n_structures: int, derivatives,
                            create_graph: bool = False):
        """Total energies (B,) and forces (N, 3) = -dE/dr via the descriptor's ``LocalDerivatives``.

        With ``create_graph=True`` the forces stay differentiable in the
        weights (for force training).
        """
        energies, forces = self.atom_energies_and_forces(features, species_idx, derivatives, create_graph)
        return self.sum_per_structure(energies, batch, n_structures), forces

    def atom_energies_and_forces(self, features, species_idx, derivatives=None, create_graph: bool = False):
        """Physical per-atom energies (N,) and, when ``derivatives`` are given, forces (N, 3), from one
        evaluation of the networks."""
        if derivatives is None:
            return self.atom_energies(self.network_outputs(features, species_idx), species_idx), None
        features = features.detach().requires_grad_(True)
        outputs = self.network_outputs(features, species_idx)
        (d_out_d_features,) = torch.autograd.grad(outputs.sum(), features, create_graph=create_graph)
        forces = -derivatives.contract(d_out_d_features) / self.E_scaling
        return self.atom_energies(outputs, species_idx), forces

    @staticmethod
    def sum_per_structure(atom_values, batch, n_structures: int):
        """Per-structure sums (B,) of per-atom values."""
        return atom_values.new_zeros(n_structures).index_add(0, batch, atom_values)
