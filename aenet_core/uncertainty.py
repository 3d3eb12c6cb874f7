"""Calibration of committee spreads: one factor s such that s·σ matches the committee's observed errors.

The factor is the Gaussian maximum-likelihood estimate s² = mean((error/σ)²)
over held-out structures with σ > 0 (per-atom energies, eV/atom).  Judging a
factor on the structures it was fitted to flatters it, so ``cross_validate``
also gives every structure an error bar scaled by a factor fitted on the other
folds; the calibration curve (binned calibrated σ against the observed RMSE)
is then an honest check.  ``calibration.json`` stores the factor fitted on all
structures (what later predictions use), the curve and how it was made.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from aenet_core.files import check_format, read_json, write_json

if TYPE_CHECKING:  # pandas only where a curve is made: exporting a committee imports this module
    import pandas as pd

FORMAT = "aenet_core.calibration"
CALIBRATION_FILE = "calibration.json"  # in a committee's directory, where from_directory looks
VERSION = 1


def likelihood_factor(errors, stds) -> float:
    """s with s² = mean((error/σ)²): the maximum-likelihood scale of Gaussian spreads σ."""
    return float(np.sqrt(np.mean((np.asarray(errors) / np.asarray(stds)) ** 2)))


@dataclass
class Calibration:
    """A fitted factor, and per structure the calibrated spread the curve and error bars show."""

    factor: float  # fitted on every usable structure: the one predictions use
    n_structures: int  # structures with σ > 0
    curve: pd.DataFrame = field(repr=False)  # per bin of calibrated σ: its RMS, the observed RMSE, count
    errors: np.ndarray = field(repr=False)
    stds: np.ndarray = field(repr=False)
    calibrated_stds: np.ndarray = field(repr=False)  # scaled σ per structure (0 where σ = 0)
    curve_method: str = "in-sample"

    @classmethod
    def fit(cls, errors, stds, n_bins: int = 8) -> Calibration:
        """The factor, with the curve of factor·σ on the same structures (in-sample)."""
        errors, stds, usable = _usable(errors, stds, 2)
        factor = likelihood_factor(errors[usable], stds[usable])
        return cls._with_curve(factor, errors, stds, factor * stds, n_bins, "in-sample")

    @classmethod
    def cross_validate(cls, errors, stds, n_folds: int = 5, n_bins: int = 8, seed: int = 0) -> Calibration:
        """The factor fitted on all structures, with each structure's calibrated σ (and so the curve) from the
        factor fitted on the other folds; folds are a seeded shuffle of the structures with σ > 0."""
        errors, stds, usable = _usable(errors, stds, 3)
        chosen = np.flatnonzero(usable)
        n_folds = min(n_folds, len(chosen))
        shuffled = np.random.default_rng(seed).permutation(chosen)
        calibrated = np.zeros_like(stds)
        for k in range(n_folds):
            held_out, rest = shuffled[k::n_folds], np.setdiff1d(chosen, shuffled[k::n_folds])
            calibrated[held_out] = likelihood_factor(errors[rest], stds[rest]) * stds[held_out]
        factor = likelihood_factor(errors[usable], stds[usable])
        return cls._with_curve(factor, errors, stds, calibrated, n_bins, f"{n_folds}-fold cross-validation")

    @classmethod
    def _with_curve(cls, factor, errors, stds, calibrated, n_bins, method) -> Calibration:
        import pandas as pd

        usable = stds > 0
        order = np.argsort(calibrated[usable], kind="stable")
        rows = []
        for chunk in np.array_split(order, min(n_bins, usable.sum())):
            e, s = errors[usable][chunk], calibrated[usable][chunk]
            rows.append({"predicted_std": float(np.sqrt(np.mean(s ** 2))),
                         "observed_rmse": float(np.sqrt(np.mean(e ** 2))), "count": len(chunk)})
        return cls(factor, int(usable.sum()), pd.DataFrame(rows), errors, stds, calibrated, method)

    @property
    def normalized_error_rms(self) -> float:
        """RMS of error / calibrated σ over the usable structures: about 1 when the spreads are calibrated."""
        usable = self.stds > 0
        return float(np.sqrt(np.mean((self.errors[usable] / self.calibrated_stds[usable]) ** 2)))

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "factor": self.factor, "n_structures": self.n_structures,
                "units": "eV/atom",
                "method": "maximum likelihood: factor^2 = mean((error/std)^2) over the held-out structures",
                "curve_method": self.curve_method, "normalized_error_rms": self.normalized_error_rms,
                "curve": self.curve.to_dict(orient="list")}

    def save(self, path) -> None:
        write_json(path, self.to_dict(), indent=1)


def save_no_calibration(path, reason: str) -> None:
    """A calibration.json that records why no factor could be fitted (its factor is None)."""
    write_json(path, {"format": FORMAT, "version": VERSION, "factor": None, "reason": reason}, indent=1)


def load_calibration_factor(path) -> float | None:
    """The factor of a calibration.json (None where the evaluation could not fit one)."""
    data = read_json(path, "calibration file (run the evaluation again)")
    data = data if isinstance(data, dict) else {}
    check_format(path, data.get("format", FORMAT), FORMAT, data.get("version", VERSION), (VERSION,),
                 "calibration file")
    return data.get("factor")


def _usable(errors, stds, minimum: int):
    errors, stds = np.asarray(errors, float), np.asarray(stds, float)
    usable = stds > 0
    if usable.sum() < minimum:
        raise ValueError(f"calibration needs at least {minimum} structures with a non-zero committee spread")
    return errors, stds, usable
