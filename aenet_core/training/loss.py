"""The energy/force/stress loss, one object for the training step and for validation.

Loss (physical units): (1 - a) RMSE_E + a RMSE_F + b RMSE_S, with a the force weight
and b the stress weight; RMSE_E over per-atom energy errors (eV/atom), RMSE_F over
all force components of the force-supervised structures (eV/Å), RMSE_S over the 9
stress components (eV/Å³) of those of them that have a stress label.  A term
without supervision in a batch (no force-supervised structure, no stress label)
is left out.

Loss weights w_s (``Structure.weight`` times ``config_type_weights[config_type]``) make
each term a weighted root mean: RMSE_E = sqrt(sum_s w_s e_s^2 / sum_s w_s) over the
batch's structures, RMSE_F the same over the force-supervised atoms (each with its
structure's weight, e the mean square of its 3 components), RMSE_S over the
stress-labelled structures (e the mean square of the 9 components).  A structure of
weight 0 contributes nothing; the errors recorded in the history stay unweighted.
Weights apply to the structures a batch holds: sampling policies choose those, and
force subsets which of them carry force and stress terms.
"""
import math
from dataclasses import dataclass

import torch


@dataclass
class BatchMetrics:
    """A batch's errors: floats, or 0-d tensors on the model's device (read when the epoch ends)."""

    energy_rmse: float | torch.Tensor
    energy_mae: float | torch.Tensor
    force_rmse: float | torch.Tensor  # NaN without force supervision
    abs_errors: torch.Tensor  # |dE| / N per structure, for adaptive sampling
    stress_rmse: float | torch.Tensor = float("nan")  # NaN without stress supervision


def recorded_pairs(recorded) -> list:
    """(dataset index, |dE| / N) of every structure of batches recorded as (indices, ``abs_errors``), read from
    the device at once."""
    if not recorded:
        return []
    values = torch.cat([errors.reshape(-1) for _, errors in recorded]).tolist()
    return list(zip((i for indices, _ in recorded for i in indices), values))


@dataclass(frozen=True)
class EnergyForceLoss:
    """``force_weight`` is a, ``stress_weight`` b; with ``scale_unbiased`` the force RMSE of a batch whose
    force-supervised atoms are a fraction f of its force-labelled ones is divided by sqrt(f)."""

    force_weight: float
    scale_unbiased: bool = False
    stress_weight: float = 0.0

    def combine(self, energy_rmse, force_rmse, stress_rmse=None):
        """(1 - a) energy_rmse + a force_rmse + b stress_rmse; a None term (no supervision) is left out."""
        loss = (1 - self.force_weight) * energy_rmse
        if force_rmse is not None and self.force_weight > 0:
            loss = loss + self.force_weight * force_rmse
        if stress_rmse is not None and self.stress_weight > 0:
            loss = loss + self.stress_weight * stress_rmse
        return loss

    @property
    def needs_derivatives(self) -> bool:
        return self.force_weight > 0 or self.stress_weight > 0

    def of_batch(self, model, batch, n_labelled_atoms: int, train: bool):
        """(loss tensor, BatchMetrics) for one featurized batch on the model's device; ``n_labelled_atoms``
        counts the atoms of the batch's force-labelled structures."""
        errors = self.batch_errors(model, batch, train)
        energy = _rms(errors.energy, errors.energy_weights)
        force = stress = (None, None)
        if errors.forces is not None:
            force = _rms(errors.forces, errors.force_weights)
            supervised = batch.n_force_atoms / n_labelled_atoms if n_labelled_atoms else 1.0
            if self.scale_unbiased and 0 < supervised < 1:
                force = tuple(value / math.sqrt(supervised) for value in force)
        if errors.stress is not None:
            stress = _rms(errors.stress, errors.stress_weights)
        loss = self.combine(energy[1], force[1], stress[1])
        reported = [float("nan") if rms is None else rms.detach() for rms, _ in (energy, force, stress)]
        per_atom = errors.energy.detach().abs()
        metrics = BatchMetrics(reported[0], per_atom.mean(), reported[1], per_atom, reported[2])
        return loss, metrics

    def batch_errors(self, model, batch, train: bool) -> "BatchErrors":
        """The model's errors on one batch, each term's rows with their loss weights (None: all 1)."""
        stressed = self.stress_weight > 0 and batch.n_stressed > 0
        virials = None
        if stressed:
            atom_energies, forces, virials = model.atom_energies_forces_virials(
                batch.features, batch.species_idx, _ForceView(batch), batch.batch, batch.n_structures,
                create_graph=train)
            energies = model.sum_per_structure(atom_energies, batch.batch, batch.n_structures)
        elif batch.n_force_structures and self.needs_derivatives:
            energies, forces = model.energies_and_forces(batch.features, batch.species_idx, batch.batch,
                                                         batch.n_structures, _ForceView(batch), create_graph=train)
        else:
            energies, forces = model(batch.features, batch.species_idx, batch.batch, batch.n_structures), None
        per_atom = (energies - batch.energy_ref) / batch.n_atoms
        w, k = batch.weights, batch.n_force_structures  # w None: every structure weighs 1
        errors = BatchErrors(per_atom, w)
        if forces is not None:
            errors.forces = forces[: batch.n_force_atoms] - batch.forces_ref
            errors.force_weights = None if w is None else torch.repeat_interleave(w[:k], batch.n_atoms[:k])
        if virials is not None:
            predicted = virials[:k] / batch.volumes[:, None, None]
            errors.stress = (predicted - batch.stress_ref)[batch.has_stress]
            errors.stress_weights = None if w is None else w[:k][batch.has_stress]
        return errors


@dataclass
class BatchErrors:
    """Per-atom energy errors (one per structure), force errors of the force-supervised atoms (n, 3) and stress
    errors of the stress-labelled structures (n, 3, 3), with one loss weight per row (None: all 1); forces and
    stress None where the batch has no such term."""

    energy: torch.Tensor
    energy_weights: torch.Tensor | None
    forces: torch.Tensor | None = None
    force_weights: torch.Tensor | None = None
    stress: torch.Tensor | None = None
    stress_weights: torch.Tensor | None = None


def _rms(errors, weights):
    """(RMSE of ``errors``, the loss's RMSE): with ``weights`` (one per row) the loss's is
    sqrt(sum_i w_i mean(e_i^2) / sum_i w_i), and nothing (zero) when every weight is 0."""
    rmse = torch.sqrt(torch.mean(errors**2))
    if weights is None:
        return rmse, rmse
    squares = (errors**2).reshape(len(errors), -1).mean(1)
    total = weights.sum()
    return rmse, torch.sqrt((weights * squares).sum() / total) if total > 0 else (squares * 0).sum()


class _ForceView:
    """Adapts a Batch's derivatives (covering only the first atoms) to a full-batch contraction."""

    def __init__(self, batch):
        self.derivatives = batch.derivatives
        self.n_atoms = len(batch.features)

    def contract(self, grad_features):
        return self.contract_with_virial(grad_features)[0]

    def contract_with_virial(self, grad_features, structure_of_atom=None, n_structures: int = 0):
        covered = self.derivatives.n_atoms
        partial, virials = self.derivatives.contract_with_virial(
            grad_features[:covered], None if structure_of_atom is None else structure_of_atom[:covered], n_structures)
        return torch.cat([partial, partial.new_zeros(self.n_atoms - len(partial), 3)]), virials
