"""The energy/force loss, one object for the training step and for validation.

Loss (physical units): (1 - a) RMSE_E + a RMSE_F, with RMSE_E over per-atom
energy errors (eV/atom) and RMSE_F over all force components of the
force-supervised structures (eV/Å); without force supervision the loss is
(1 - a) RMSE_E.
"""
import math
from dataclasses import dataclass

import torch


@dataclass
class BatchMetrics:
    energy_rmse: float
    energy_mae: float
    force_rmse: float  # NaN without force supervision
    abs_errors: torch.Tensor  # |dE| / N per structure, for adaptive sampling


@dataclass(frozen=True)
class EnergyForceLoss:
    """``force_weight`` is a; with ``scale_unbiased`` the force RMSE of a batch whose force-supervised atoms
    are a fraction f of its force-labelled ones is divided by sqrt(f)."""

    force_weight: float
    scale_unbiased: bool = False

    def combine(self, energy_rmse, force_rmse):
        """(1 - a) energy_rmse + a force_rmse; ``force_rmse`` None (no force supervision) leaves it out."""
        loss = (1 - self.force_weight) * energy_rmse
        if force_rmse is not None and self.force_weight > 0:
            loss = loss + self.force_weight * force_rmse
        return loss

    def of_batch(self, model, batch, n_labelled_atoms: int, train: bool):
        """(loss tensor, BatchMetrics) for one featurized batch on the model's device; ``n_labelled_atoms``
        counts the atoms of the batch's force-labelled structures."""
        alpha = self.force_weight
        if batch.n_force_structures and alpha > 0:
            energies, forces = model.energies_and_forces(batch.features, batch.species_idx, batch.batch,
                                                         batch.n_structures, _ForceView(batch), create_graph=train)
        else:
            energies, forces = model(batch.features, batch.species_idx, batch.batch, batch.n_structures), None
        per_atom = (energies - batch.energy_ref) / batch.n_atoms
        energy_rmse = torch.sqrt(torch.mean(per_atom**2))
        rmse_f = None
        if forces is not None:
            f_error = forces[: batch.n_force_atoms] - batch.forces_ref
            rmse_f = torch.sqrt(torch.mean(f_error**2))
            supervised = batch.n_force_atoms / n_labelled_atoms if n_labelled_atoms else 1.0
            if self.scale_unbiased and 0 < supervised < 1:
                rmse_f = rmse_f / math.sqrt(supervised)
        loss = self.combine(energy_rmse, rmse_f)
        metrics = BatchMetrics(float(energy_rmse.detach()), float(per_atom.detach().abs().mean()),
                               float("nan") if rmse_f is None else float(rmse_f.detach()), per_atom.detach().abs())
        return loss, metrics


class _ForceView:
    """Adapts a Batch's derivatives (covering only the first atoms) to a full-batch contraction."""

    def __init__(self, batch):
        self.derivatives = batch.derivatives
        self.n_atoms = len(batch.features)

    def contract(self, grad_features):
        partial = self.derivatives.contract(grad_features[: self.derivatives.n_atoms])
        return torch.cat([partial, partial.new_zeros(self.n_atoms - len(partial), 3)])
