"""What predicting nothing scores, and the warning for a fit that does not do much better: a potential whose
errors come close to predicting zero forces, or the mean energy per atom, has learned little."""
from __future__ import annotations

import numpy as np

# Warn when an error is at least this fraction of predicting nothing: the fit then explains less than half
# of the labels' variance (1 - ratio^2 < 0.5).
WEAK_FIT_RATIO = 0.5 ** 0.5
ADVICE = "train longer, on more data or on forces, with another learning rate, or check the labels"


def trivial_errors(dataset, split) -> dict:
    """On the test split (the training split without one): the RMS force component (predicting zero forces,
    eV/Å; None without forces) and the RMS deviation of the referenced energy per atom from the training
    mean (predicting that mean, eV/atom)."""
    indices = split.test or split.train
    train_mean = float(np.mean([dataset.referenced_energy_per_atom(i) for i in split.train]))
    energies = np.array([dataset.referenced_energy_per_atom(i) for i in indices])
    labelled = [i for i in indices if dataset.has_forces(i)]
    forces = dataset.forces_of(labelled) if labelled else None
    return {"energy_rmse_predicting_mean": float(np.sqrt(np.mean((energies - train_mean) ** 2))),
            "force_rmse_predicting_zero": None if forces is None else float(np.sqrt(np.mean(forces ** 2)))}


def weak_fit_warnings(energy_rmse, force_rmse, trivial: dict, where: str) -> list:
    """A warning for each error (eV/atom, eV/Å; None: not measured) that is at least WEAK_FIT_RATIO of what
    predicting nothing scores (``trivial_errors``) on split ``where``."""
    checks = (("energy", energy_rmse, trivial["energy_rmse_predicting_mean"], "eV/atom",
               "predicting the mean energy per atom"),
              ("force", force_rmse, trivial["force_rmse_predicting_zero"], "eV/Å", "predicting zero forces"))
    return [f"{where} {name} RMSE {error:.3g} {unit} is close to {baseline} ({trivial_error:.3g} {unit}): the "
            f"potential explains less than half of the {name} variance"
            for name, error, trivial_error, unit, baseline in checks
            if error is not None and trivial_error and error >= WEAK_FIT_RATIO * trivial_error]
