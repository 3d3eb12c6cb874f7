"""Committee evaluation on the test split: predictions, errors, calibrated uncertainty, plots, and the
structures most worth relabelling.  Plots use matplotlib's object API (no GUI backend needed).

Error bars are never judged on the structures their factor was fitted to: every
test structure's calibrated spread uses the factor fitted on the other folds of a
cross-validation over the test split (``Calibration.cross_validate``).  The
factor stored for later predictions is fitted on the whole test split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from aenet_core.committee import TorchCommitteePotential
from aenet_core.data import open_databases
from aenet_core.files import atomic_write, write_json
from aenet_core.io import write_extxyz
from aenet_core.split import Split
from aenet_core.training.trainout import GPA_PER_EV_PER_A3, save_figure
from aenet_core.uncertainty import Calibration, save_no_calibration


DEFAULT_N_UNCERTAIN = 10


def evaluate_committee(committee_dir, database, split, output_dir, n_uncertain: int = DEFAULT_N_UNCERTAIN) -> dict:
    """Predict the test split with the committee and write, under ``output_dir``:
    predictions.csv, summary.json, calibration.json, parity.png, stress_parity.png, uncertainty.png,
    most_uncertain.csv and most_uncertain.extxyz (geometries without labels, for relabelling).  ``database`` is
    a database file, or a list of them (several are read as one ``ShardedDataset``)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    committee = TorchCommitteePotential.from_directory(committee_dir)
    db = open_databases(database)
    split_path, split = split, Split.load(split)
    split.check(db, label=str(split_path))
    indices = split.test or split.train  # no test split: report on the training structures
    predictions = committee.predict_dataset(db, indices, eval_forces=True, eval_stress=True)
    n_atoms = np.array(predictions.n_atoms, float)
    reference = np.array(db.energies(indices), float)
    error = (predictions.energy_mean - reference) / n_atoms
    std = predictions.energy_std / n_atoms
    try:
        calibration = Calibration.cross_validate(error, std)
        calibration.save(output_dir / "calibration.json")
        calibrated = calibration.calibrated_stds
    except ValueError as err:  # e.g. one member, or too few test structures: no spread to scale
        calibration, calibrated = None, np.full_like(std, np.nan)
        save_no_calibration(output_dir / "calibration.json", str(err))

    # A calibration.json beside the committee would add an in-sample calibrated column: only the out-of-fold one
    # below is reported.
    table = predictions.to_dataframe().drop(columns=["member_energies", "energy_std_calibrated"], errors="ignore")
    table["reference_energy"] = reference
    table["error_per_atom"] = error
    table["energy_std_per_atom"] = std
    table["energy_std_calibrated_per_atom"] = calibrated  # out-of-fold: see the module docstring
    with atomic_write(output_dir / "predictions.csv") as handle:
        table.to_csv(handle, index=False)
    ranked = table.sort_values("energy_std_per_atom", ascending=False, kind="stable").head(n_uncertain)
    with atomic_write(output_dir / "most_uncertain.csv") as handle:
        ranked.to_csv(handle, index=False)
    unlabelled = [db.get_structure(int(source)).without_labels(identifier)
                  for source, identifier in zip(ranked["source_index"], ranked["identifier"])]
    write_extxyz(output_dir / "most_uncertain.extxyz", unlabelled)

    force_errors = [p.forces_mean - db.get_structure(i).forces for p, i in zip(predictions, indices)
                    if db.has_forces(i)]
    labelled = ((db.get_structure(i), p) for p, i in zip(predictions, indices))
    stresses = [(s.stress, p.stress_mean) for s, p in labelled if s.has_stress()]
    stress_rmse = float(np.sqrt(np.mean([(s - r) ** 2 for r, s in stresses]))) if stresses else None
    summary = {
        "split": "test" if split.test else "train", "n_structures": len(indices),
        "energy_rmse_per_atom": float(np.sqrt(np.mean(error ** 2))), "energy_mae_per_atom": float(np.mean(abs(error))),
        "force_rmse": float(np.sqrt(np.mean(np.concatenate(force_errors) ** 2))) if force_errors else None,
        "n_stress_labels": len(stresses), "stress_rmse": stress_rmse,
        "stress_rmse_gpa": None if stress_rmse is None else stress_rmse * GPA_PER_EV_PER_A3,
        "mean_energy_std_per_atom": float(std.mean()),
        "calibration_factor": None if calibration is None else calibration.factor,
        "calibration_check": None if calibration is None else calibration.curve_method,
        "cross_validated_normalized_error_rms": None if calibration is None else calibration.normalized_error_rms,
        "num_members": len(committee.members),
    }
    write_json(output_dir / "summary.json", summary, indent=1)
    bars = std if calibration is None else calibrated
    _plot_parity(reference / n_atoms, predictions.energy_mean / n_atoms, bars, calibration is not None,
                 output_dir / "parity.png")
    _plot_stress_parity(stresses, output_dir / "stress_parity.png")
    _plot_uncertainty(error, std, calibration, output_dir / "uncertainty.png")
    return summary


def _plot_parity(reference, predicted, bars, calibrated: bool, path) -> None:
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.errorbar(reference, predicted, yerr=bars, fmt="o", ms=3, elinewidth=0.8, alpha=0.8)
    low, high = min(reference.min(), predicted.min()), max(reference.max(), predicted.max())
    ax.plot([low, high], [low, high], color="k", lw=0.8)
    what = "committee std, calibrated out of fold" if calibrated else "committee std (uncalibrated)"
    ax.set(xlabel="reference energy (eV/atom)", ylabel="committee mean (eV/atom)", title=f"test split; bars: {what}")
    save_figure(fig, path)


def _plot_stress_parity(stresses, path) -> None:
    """Committee-mean against reference stress components (GPa) of the labelled structures."""
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    if not stresses:
        ax.text(0.5, 0.5, "no stress labels in this split", ha="center", va="center", transform=ax.transAxes)
        save_figure(fig, path)
        return
    reference, predicted = (np.array([pair[k] for pair in stresses]) * GPA_PER_EV_PER_A3 for k in (0, 1))
    for (a, b), label in (((0, 0), "xx"), ((1, 1), "yy"), ((2, 2), "zz"), ((1, 2), "yz"), ((0, 2), "xz"),
                          ((0, 1), "xy")):
        ax.scatter(reference[:, a, b], predicted[:, a, b], s=10, label=label)
    low, high = min(reference.min(), predicted.min()), max(reference.max(), predicted.max())
    ax.plot([low, high], [low, high], color="k", lw=0.8)
    ax.legend()
    ax.set(xlabel="reference stress (GPa)", ylabel="committee mean (GPa)", title="test split stresses")
    save_figure(fig, path)


def _plot_uncertainty(error, std, calibration: Calibration | None, path) -> None:
    """|error| against σ with the fitted line, and the calibration curve (or why there is none)."""
    fig = Figure(figsize=(11, 4.5))
    ax = fig.add_subplot(1, 2, 1)
    ax.scatter(std, abs(error), s=10)
    ax.set(xlabel="committee std σ (eV/atom)", ylabel="|error| (eV/atom)")
    ax = fig.add_subplot(1, 2, 2)
    if calibration is None:
        ax.text(0.5, 0.5, "no calibration: it needs at least 2 members\nand 3 test structures with a spread",
                ha="center", va="center", transform=ax.transAxes)
        save_figure(fig, path)
        return
    grid = np.linspace(0, std.max() * 1.05, 50)
    fig.axes[0].plot(grid, calibration.factor * grid, color="k", lw=0.8,
                     label=f"|error| = {calibration.factor:.3g} σ")
    fig.axes[0].legend()
    curve = calibration.curve
    ax.plot(curve["predicted_std"], curve["observed_rmse"], "o-")
    top = max(curve["predicted_std"].max(), curve["observed_rmse"].max()) * 1.05
    ax.plot([0, top], [0, top], color="k", lw=0.8)
    ax.set(xlabel="calibrated std per bin (eV/atom)", ylabel="observed RMSE per bin (eV/atom)",
           title=f"calibration curve ({calibration.curve_method})")
    save_figure(fig, path)
