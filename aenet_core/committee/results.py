"""Committee prediction results: one ``AenetEnsembleResult`` per structure and the table of them all."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class AenetEnsembleResult:
    """One structure's committee prediction: mean, spread and every member's values (eV, eV/Å, and
    3x3 stresses in eV/Å³ when evaluated for a structure periodic in 3D)."""

    energy: float
    energy_mean: float
    energy_std: float
    member_energies: np.ndarray
    forces: np.ndarray | None = None
    forces_mean: np.ndarray | None = None
    forces_std: np.ndarray | None = None
    force_uncertainty: np.ndarray | None = None  # per atom: mean over x, y, z of forces_std
    member_forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    stress_mean: np.ndarray | None = None
    stress_std: np.ndarray | None = None
    member_stresses: np.ndarray | None = None
    aggregation: str = "mean"
    reference_member: int = 0

    @property
    def num_members(self) -> int:
        return len(self.member_energies)

    @classmethod
    def from_member_predictions(cls, member_energies, member_forces=None, aggregation="mean",
                                reference_member=0, member_stresses=None) -> AenetEnsembleResult:
        energies = np.asarray(member_energies, dtype=float)
        if aggregation not in ("mean", "reference"):
            raise ValueError(f"aggregation must be 'mean' or 'reference'; got {aggregation!r}")
        if not 0 <= reference_member < len(energies):
            raise ValueError(f"reference_member {reference_member} is not a member index (0..{len(energies) - 1})")
        pick = (lambda values: values.mean(0)) if aggregation == "mean" else (lambda values: values[reference_member])
        result = cls(energy=float(pick(energies)), energy_mean=float(energies.mean()),
                     energy_std=float(energies.std()), member_energies=energies, aggregation=aggregation,
                     reference_member=reference_member)
        if member_forces is not None:
            forces = np.asarray(member_forces, dtype=float)
            result.member_forces, result.forces = forces, pick(forces)
            result.forces_mean, result.forces_std = forces.mean(0), forces.std(0)
            result.force_uncertainty = result.forces_std.mean(1)
        if member_stresses is not None:
            stresses = np.asarray(member_stresses, dtype=float)
            result.member_stresses, result.stress = stresses, pick(stresses)
            result.stress_mean, result.stress_std = stresses.mean(0), stresses.std(0)
        return result


class TorchCommitteePredictResult(list):
    """A list of ``AenetEnsembleResult`` (one per structure) with the members' ``PredictOut``s and tables."""

    def __init__(self, predictions, member_outputs, indices, source_indices, identifiers, n_atoms,
                 calibration_factor=None):
        super().__init__(predictions)
        self.member_outputs, self.indices, self.source_indices = member_outputs, indices, source_indices
        self.identifiers, self.n_atoms, self.calibration_factor = identifiers, n_atoms, calibration_factor

    @property
    def energy(self):
        return np.array([p.energy for p in self])

    @property
    def energy_mean(self):
        return np.array([p.energy_mean for p in self])

    @property
    def energy_std(self):
        return np.array([p.energy_std for p in self])

    @property
    def max_force_uncertainty(self):
        return np.array([np.nan if p.force_uncertainty is None else p.force_uncertainty.max() for p in self])

    @property
    def mean_force_uncertainty(self):
        return np.array([np.nan if p.force_uncertainty is None else p.force_uncertainty.mean() for p in self])

    def to_dataframe(self) -> pd.DataFrame:
        table = pd.DataFrame({
            "index": self.indices, "source_index": self.source_indices, "identifier": self.identifiers,
            "n_atoms": self.n_atoms, "energy": self.energy, "energy_mean": self.energy_mean,
            "energy_std": self.energy_std, "member_energies": [p.member_energies.tolist() for p in self],
            "max_force_uncertainty": self.max_force_uncertainty,
            "mean_force_uncertainty": self.mean_force_uncertainty,
            "num_members": [p.num_members for p in self], "aggregation": [p.aggregation for p in self],
            "reference_member": [p.reference_member for p in self]})
        if self.calibration_factor is not None:
            table["energy_std_calibrated"] = self.calibration_factor * table["energy_std"]
        return table

    def sort_by(self, column="energy_std", ascending=False) -> pd.DataFrame:
        return self.to_dataframe().sort_values(column, ascending=ascending, kind="stable")

    def top_uncertain(self, n=10, metric="energy_std") -> pd.DataFrame:
        return self.sort_by(metric).head(n)


