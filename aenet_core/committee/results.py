"""Committee prediction results: one ``AenetEnsembleResult`` per structure and the table of them all."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where the table is made
    import pandas as pd

# aenet-python's names for the force spread -> this library's.  The old ones average ``forces_std`` over
# x, y, z; the new ones take its norm.  The old names keep their meaning and warn.
RENAMED = {"force_uncertainty": "force_std", "max_force_uncertainty": "max_force_std",
           "mean_force_uncertainty": "mean_force_std"}


def force_std_per_atom(forces_std: np.ndarray) -> np.ndarray:
    """The committee's force spread per atom (eV/Å), shape (N,), from ``forces_std`` (N, 3): the square root
    of the sum over x, y, z of the members' population variance, i.e. the norm over x, y, z of the
    component std.  Its maximum over atoms is DP-GEN's force model deviation."""
    return np.sqrt(np.sum(np.square(forces_std), axis=1))


def legacy_force_uncertainty(forces_std):
    """aenet-python's deprecated per-atom ``force_uncertainty``: the mean of ``forces_std`` over x, y, z
    (None stays None)."""
    return None if forces_std is None else forces_std.mean(1)


def warn_renamed(old: str, stacklevel: int = 2) -> None:
    """DeprecationWarning for aenet-python's ``old`` force-spread name; ``stacklevel`` as for warnings.warn,
    counted from the caller."""
    new = RENAMED[old]
    warnings.warn(f"{old!r} is deprecated; use {new!r}.  They differ: {old!r} takes the mean over x, y, z of the "
                  f"members' force std (forces_std), {new!r} its norm over x, y, z (sqrt(3) times the mean when "
                  f"the three are equal)", DeprecationWarning, stacklevel=stacklevel + 1)


@dataclass
class AenetEnsembleResult:
    """One structure's committee prediction: mean, spread and every member's values (eV, eV/Å, and
    3x3 stresses in eV/Å³ when evaluated for a structure periodic in 3D).

    Spreads are population standard deviations over the members: ``forces_std`` per atom and component
    (N, 3) and ``force_std`` per atom (N,), the norm of ``forces_std`` over x, y, z (``force_std_per_atom``).
    ``force_uncertainty`` (aenet-python's mean of ``forces_std`` over x, y, z) is deprecated.
    """

    energy: float
    energy_mean: float
    energy_std: float
    member_energies: np.ndarray
    forces: np.ndarray | None = None
    forces_mean: np.ndarray | None = None
    forces_std: np.ndarray | None = None
    force_std: np.ndarray | None = None
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

    @property
    def force_uncertainty(self):
        """Deprecated: the mean of ``forces_std`` over x, y, z; use ``force_std`` (its norm)."""
        warn_renamed("force_uncertainty")
        return legacy_force_uncertainty(self.forces_std)

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
            result.force_std = force_std_per_atom(result.forces_std)
        if member_stresses is not None:
            stresses = np.asarray(member_stresses, dtype=float)
            result.member_stresses, result.stress = stresses, pick(stresses)
            result.stress_mean, result.stress_std = stresses.mean(0), stresses.std(0)
        return result


class TorchCommitteePredictResult(list):
    """A list of ``AenetEnsembleResult`` (one per structure) with the members' ``PredictOut``s and tables.

    ``source_indices`` are the dataset entries predicted (None for structures given directly); ``n_atoms``
    defaults to the atom counts of the first member's ``PredictOut``."""

    def __init__(self, predictions, member_outputs, indices, source_indices, identifiers, n_atoms=None,
                 calibration_factor=None):
        super().__init__(predictions)
        self.member_outputs, self.indices, self.source_indices = member_outputs, indices, source_indices
        if n_atoms is None:
            n_atoms = [member_outputs[0].num_atoms(i) for i in range(len(predictions))] if member_outputs else []
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

    def _over_atoms(self, per_atom, reduce) -> np.ndarray:
        """Per structure, ``reduce`` of the per-atom values ``per_atom(result)``; NaN without forces."""
        values = [per_atom(p) for p in self]
        return np.array([np.nan if v is None else reduce(v) for v in values])

    @property
    def max_force_std(self):
        """Per structure, the largest per-atom ``force_std`` (eV/Å); NaN where forces were not evaluated."""
        return self._over_atoms(lambda p: p.force_std, np.max)

    @property
    def mean_force_std(self):
        """Per structure, the mean over atoms of ``force_std`` (eV/Å); NaN where forces were not evaluated."""
        return self._over_atoms(lambda p: p.force_std, np.mean)

    def _force_uncertainty(self, reduce) -> np.ndarray:
        """aenet-python's per-structure force spread: ``reduce`` over atoms of ``forces_std``'s mean over x, y, z."""
        return self._over_atoms(lambda p: legacy_force_uncertainty(p.forces_std), reduce)

    @property
    def max_force_uncertainty(self):
        """Deprecated: the largest per-atom mean of ``forces_std`` over x, y, z; use ``max_force_std``."""
        warn_renamed("max_force_uncertainty")
        return self._force_uncertainty(np.max)

    @property
    def mean_force_uncertainty(self):
        """Deprecated: the mean over atoms of the mean of ``forces_std`` over x, y, z; use ``mean_force_std``."""
        warn_renamed("mean_force_uncertainty")
        return self._force_uncertainty(np.mean)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per structure.  ``max_force_std`` and ``mean_force_std`` are the force spread; the
        deprecated ``max_force_uncertainty`` and ``mean_force_uncertainty`` columns (aenet-python's, the
        mean over x, y, z instead of the norm) stay for compatibility, and sorting by them warns."""
        import pandas as pd

        table = pd.DataFrame({
            "index": self.indices, "source_index": self.source_indices, "identifier": self.identifiers,
            "n_atoms": self.n_atoms, "energy": self.energy, "energy_mean": self.energy_mean,
            "energy_std": self.energy_std, "member_energies": [p.member_energies.tolist() for p in self],
            "max_force_std": self.max_force_std, "mean_force_std": self.mean_force_std,
            "max_force_uncertainty": self._force_uncertainty(np.max),
            "mean_force_uncertainty": self._force_uncertainty(np.mean),
            "num_members": [p.num_members for p in self], "aggregation": [p.aggregation for p in self],
            "reference_member": [p.reference_member for p in self]})
        if self.calibration_factor is not None:
            table["energy_std_calibrated"] = self.calibration_factor * table["energy_std"]
        return table

    def sort_by(self, column="energy_std", *, ascending=False) -> pd.DataFrame:
        if column in RENAMED:
            warn_renamed(column)
        return self._sorted(column, ascending)

    def top_uncertain(self, n=10, *, metric="energy_std") -> pd.DataFrame:
        if metric in RENAMED:
            warn_renamed(metric)
        return self._sorted(metric, ascending=False).head(n)

    def _sorted(self, column, ascending) -> pd.DataFrame:
        return self.to_dataframe().sort_values(column, ascending=ascending, kind="stable")


