"""Energies and forces of a batch of atoms from raw features: normalise, evaluate, assemble.

E_structure = sum_i out_i / E_scaling + N E_shift + sum_i E_atom[type_i], where
out_i is the network output for the standardised features of atom i.  Features
are standardised per species, (G - mean[s]) / std[s], as in Fortran aenet
(training sets the same statistics for every species); a column with
std <= 1e-10 normalises to 0.  Forces are the exact negative gradient:
autograd gives dE/dG through the networks only, and the sparse analytic
descriptor derivatives carry it to positions.
"""
import torch
from torch import nn

from aenet_core.model.network import AtomicNetworks

# Fortran aenet zeroes a feature whose spread sqrt(cov - avg^2) is at most this (sfsetup.f90).
DEGENERATE_STD = 1e-10


def inverse_std(std):
    """1 / std, 0 where std is at most ``DEGENERATE_STD`` (such a feature normalises to 0)."""
    return std.reciprocal().masked_fill(std <= DEGENERATE_STD, 0.0)


class AtomisticModel(nn.Module):
    """Per-species networks plus the normalisation and atomic reference energies they were trained with.

    All of the state (weights and the buffers ``feature_mean``,
    ``feature_std`` (both (S, F), one row per species), ``E_shift``,
    ``E_scaling``, ``atomic_energies``) lives in ``state_dict``.  ``networks`` (an ``AtomicNetworks``
    for ``arch``) is used as given, shared and not copied, instead of new networks.
    """

    def __init__(self, arch, species, n_features: int, atomic_energies=None, dtype=torch.float64, networks=None):
        super().__init__()
        self.species = list(species)
        self.networks = networks if networks is not None else AtomicNetworks(arch, self.species, n_features)
        reference = atomic_energies or {}
        shape = (len(self.species), n_features)
        self.register_buffer("feature_mean", torch.zeros(shape, dtype=dtype))
        self.register_buffer("feature_std", torch.ones(shape, dtype=dtype))
        self.register_buffer("E_shift", torch.tensor(0.0, dtype=dtype))
        self.register_buffer("E_scaling", torch.tensor(1.0, dtype=dtype))
        energies = [float(reference.get(s, 0.0)) for s in self.species]
        self.register_buffer("atomic_energies", torch.tensor(energies, dtype=dtype))
        self.networks.to(dtype)

    @property
    def arch(self) -> dict:
        return self.networks.arch

    def set_feature_statistics(self, mean, std) -> None:
        """Feature mean and std, (F,) shared by all species or (S, F) per species (rows in species order)."""
        mean, std = self._per_species("mean", mean), self._per_species("std", std)
        if not bool(torch.isfinite(mean).all()):
            raise ValueError("feature mean must be finite in every column")
        if not bool((torch.isfinite(std) & (std >= 0)).all()):
            raise ValueError("feature std must be finite and non-negative in every column")
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)

    def _per_species(self, name, values):
        values = torch.as_tensor(values, dtype=self.feature_mean.dtype, device=self.feature_mean.device)
        try:
            return values.broadcast_to(self.feature_mean.shape)
        except RuntimeError:
            raise ValueError(f"feature {name} must have shape (F,) or (S, F) = {tuple(self.feature_mean.shape)}; "
                             f"got {tuple(values.shape)}") from None

    def set_energy_normalization(self, shift: float, scaling: float) -> None:
        if not scaling > 0:
            raise ValueError(f"E_scaling must be positive; got {scaling}")
        self.E_shift.fill_(float(shift))
        self.E_scaling.fill_(float(scaling))

    def network_outputs(self, features, species_idx):
        """Raw per-atom network outputs (N,) in normalised energy units."""
        return self.networks(features, species_idx, self.feature_mean, self._inverse_std())

    def normalized_features(self, features, species_idx):
        """(G - mean[s]) / std[s] per atom, 0 in columns whose std is at most ``DEGENERATE_STD``."""
        return (features - self.feature_mean.index_select(0, species_idx)) * \
            self._inverse_std().index_select(0, species_idx)

    def _inverse_std(self):
        return inverse_std(self.feature_std)

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
        outputs, d_out_d_features = self._outputs_and_gradient(features, species_idx, create_graph)
        forces = -derivatives.contract(d_out_d_features) / self.E_scaling
        return self.atom_energies(outputs, species_idx), forces

    def atom_energies_forces_virials(self, features, species_idx, derivatives, batch, n_structures: int,
                                     create_graph: bool = False):
        """Per-atom energies (N,), forces (N, 3) and the virials (B, 3, 3) = dE/d(strain) of the structures
        ``batch`` assigns each atom to (eV; stress is virial / volume), from one evaluation of the networks."""
        outputs, d_out_d_features = self._outputs_and_gradient(features, species_idx, create_graph)
        gradient, virials = derivatives.contract_with_virial(d_out_d_features, batch, n_structures)
        return self.atom_energies(outputs, species_idx), -gradient / self.E_scaling, virials / self.E_scaling

    def _outputs_and_gradient(self, features, species_idx, create_graph):
        features = features.detach().requires_grad_(True)
        outputs = self.network_outputs(features, species_idx)
        (d_out_d_features,) = torch.autograd.grad(outputs.sum(), features, create_graph=create_graph)
        return outputs, d_out_d_features

    @staticmethod
    def sum_per_structure(atom_values, batch, n_structures: int):
        """Per-structure sums (B,) of per-atom values."""
        return atom_values.new_zeros(n_structures).index_add(0, batch, atom_values)
