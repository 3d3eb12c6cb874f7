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

from aenet_core.baselines import trivial_errors, weak_fit_warnings
from aenet_core.committee import TorchCommitteePotential
from aenet_core.data import open_databases
from aenet_core.files import atomic_write, write_json
from aenet_core.io import write_extxyz
from aenet_core.lammps import check_against_python, check_warning
from aenet_core.progress import LOG
from aenet_core.split import Split
from aenet_core.training.trainout import GPA_PER_EV_PER_A3, save_figure
from aenet_core.uncertainty import CALIBRATION_FILE, Calibration, likelihood_factor, save_no_calibration


DEFAULT_N_UNCERTAIN = 10


def evaluate_committee(committee_dir, database, split, output_dir, n_uncertain: int = DEFAULT_N_UNCERTAIN,
                       title: str | None = None, lammps_models=None) -> dict:
    """Predict the test split with the committee and write, under ``output_dir``:
    predictions.csv, summary.json, parity.png, stress_parity.png, uncertainty.png, most_uncertain.csv and
    most_uncertain.extxyz (geometries without labels, for relabelling); and the committee's calibration.json
    into its directory, where ``TorchCommitteePotential.from_directory`` finds it.  ``database`` is a database
    file, or a list of them (several are read as one ``ShardedDataset``).  ``title`` (e.g. the run's name)
    heads every figure.  ``lammps_models`` (the committee's export folder) runs the test structures through
    LAMMPS as well and records the largest differences in the summary's ``lammps_check``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    committee = TorchCommitteePotential.from_directory(committee_dir)
    committee_dir = Path(committee_dir)
    calibration_path = (committee_dir if committee_dir.is_dir() else committee_dir.parent) / CALIBRATION_FILE
    db = open_databases(database)
    split_path, split = split, Split.load(split)
    split.check(db, label=str(split_path))
    indices = split.test or split.train  # no test split: report on the training structures
    predictions = committee.predict_dataset(db, eval_forces=True, indices=indices, eval_stress=True)
    n_atoms = np.array(predictions.n_atoms, float)
    reference = np.array(db.energies(indices), float)
    error = (predictions.energy_mean - reference) / n_atoms
    std = predictions.energy_std / n_atoms
    try:
        calibration = Calibration.cross_validate(error, std)
        calibration.save(calibration_path)
        calibrated = calibration.calibrated_stds
    except ValueError as err:  # e.g. one member, or too few test structures: no spread to scale
        calibration, calibrated = None, np.full_like(std, np.nan)
        save_no_calibration(calibration_path, str(err))

    # The committee's calibration.json of an earlier evaluation adds an in-sample calibrated column: only the
    # out-of-fold one below is reported.
    table = predictions.to_dataframe().drop(columns=["member_energies", "energy_std_calibrated", "max_force_uncertainty",
                                                     "mean_force_uncertainty"], errors="ignore")
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

    structures = [db.get_structure(i) for i in indices]  # read once for the force, stress and LAMMPS checks
    force_pairs = [(s.forces, p.forces_mean) for p, s, i in zip(predictions, structures, indices)
                   if db.has_forces(i)]
    force_errors = [predicted - reference for reference, predicted in force_pairs]
    force_stds = [p.force_std for p, i in zip(predictions, indices) if db.has_forces(i)]
    stresses = [(s.stress, p.stress_mean) for s, p in zip(structures, predictions) if s.has_stress()]
    stress_rmse = float(np.sqrt(np.mean([(s - r) ** 2 for r, s in stresses]))) if stresses else None
    worst = int(np.argmax(abs(error)))
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
        **force_calibration(force_errors, force_stds),
        "largest_energy_error": {"identifier": predictions.identifiers[worst], "error_per_atom": float(error[worst])},
        "trivial_errors": trivial_errors(db, split),
    }
    summary["warnings"] = weak_fit_warnings(summary["energy_rmse_per_atom"], summary["force_rmse"],
                                            summary["trivial_errors"], summary["split"])
    if lammps_models is not None:
        summary["lammps_check"] = _lammps_check(lammps_models, structures, predictions)
        summary["warnings"] += [line for line in [check_warning(summary["lammps_check"])] if line]
    write_json(output_dir / "summary.json", summary, indent=1)
    bars = std if calibration is None else calibrated
    referenced = np.array([db.referenced_energy_per_atom(i) for i in indices], float)
    what = "committee std, calibrated out of fold" if calibration is not None else "committee std (uncalibrated)"
    _plot_parity(referenced, referenced + error, bars, what, force_pairs, summary["split"], title,
                 output_dir / "parity.png")
    _plot_stress_parity(stresses, summary["split"], title, output_dir / "stress_parity.png")
    _plot_uncertainty(error, std, calibration, summary["split"], title, output_dir / "uncertainty.png")
    return summary


def force_calibration(force_errors, force_stds) -> dict:
    """The committee's force spread against its force errors on the test structures: ``force_calibration_factor``
    k with k² = mean(|ΔF|² / force_std²) over atoms with a spread (a Gaussian spread per component with these
    stds expects |ΔF|² = force_std²), and per structure the largest per-atom |ΔF| (``max_force_errors``, eV/Å).
    The loop's trust levels read both (``aenet_core.active_learning.trust``)."""
    norms = [np.linalg.norm(error, axis=1) for error in force_errors]
    spread = np.concatenate(force_stds) if force_stds else np.zeros(0)
    error = np.concatenate(norms) if norms else np.zeros(0)
    usable = spread > 0
    factor = likelihood_factor(error[usable], spread[usable]) if usable.any() else None
    return {"force_calibration_factor": factor, "max_force_errors": [float(n.max()) for n in norms if len(n)]}


def _lammps_check(models_dir, structures, predictions) -> dict:
    check = check_against_python(models_dir, structures, predictions)
    if check["checked"]:
        LOG.info("LAMMPS check on %d structures: largest differences %.2g eV/atom, %.2g eV/Å, %.2g eV/Å in "
                    "force_std", check["n_structures"], check["max_energy_difference_per_atom"],
                    check["max_force_difference"], check["max_force_std_difference"])
    else:
        LOG.info("LAMMPS check skipped: %s", check["reason"])
    return check


def _figure(n_panels: int, title: str | None, size=(5.0, 5.0)):
    """A constrained-layout Figure of ``n_panels`` side by side, headed by ``title`` if given, and its axes."""
    fig = Figure(figsize=(size[0] * n_panels, size[1]), layout="constrained")
    if title:
        fig.suptitle(title)
    return fig, fig.subplots(1, n_panels, squeeze=False)[0]


def _diagonal(ax, reference, predicted) -> None:
    """The y = x line, and the same range, that of the points, on both axes."""
    values = np.concatenate([np.ravel(reference), np.ravel(predicted)])
    low, high = np.nanmin(values), np.nanmax(values)
    pad = 0.05 * (high - low) or 0.05 * max(abs(high), 1.0)
    span = (low - pad, high + pad)
    ax.plot(span, span, color="k", lw=0.8)
    ax.set(xlim=span, ylim=span, aspect="equal")


def _error_box(ax, errors, unit: str) -> None:
    """RMSE and MAE of ``errors`` written in the upper left corner of ``ax``."""
    errors = np.asarray(errors, float).ravel()
    rmse, mae = np.sqrt(np.mean(errors ** 2)), np.mean(np.abs(errors))
    ax.text(0.04, 0.96, f"RMSE {rmse:.3g} {unit}\nMAE {mae:.3g} {unit}", transform=ax.transAxes, ha="left",
            va="top", bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})


def _plot_parity(reference, predicted, bars, bars_are, force_pairs, split: str, title, path) -> None:
    """Referenced energies per atom with the committee's error bars, and force components when labelled."""
    fig, axes = _figure(2 if force_pairs else 1, title)
    ax = axes[0]
    ax.errorbar(reference, predicted, yerr=bars, fmt="o", ms=3, elinewidth=0.8, alpha=0.8)
    _diagonal(ax, reference, predicted)  # the points' range: a wide bar may run off it
    _error_box(ax, predicted - reference, "eV/atom")
    ax.set(xlabel="reference (E − Σ atomic energies)/N (eV/atom)", ylabel="committee mean (eV/atom)",
           title=f"energy, {split} split\nbars: {bars_are}")
    if force_pairs:
        reference, predicted = (np.concatenate([pair[k] for pair in force_pairs]).ravel() for k in (0, 1))
        ax = axes[1]
        ax.scatter(reference, predicted, s=4, alpha=0.5, linewidths=0)
        _diagonal(ax, reference, predicted)
        _error_box(ax, predicted - reference, "eV/Å")
        ax.set(xlabel="reference force component (eV/Å)", ylabel="committee mean (eV/Å)",
               title=f"forces (x, y, z of every atom), {split} split")
    save_figure(fig, path)


STRESS_COMPONENTS = (((0, 0), "xx"), ((1, 1), "yy"), ((2, 2), "zz"), ((1, 2), "yz"), ((0, 2), "xz"), ((0, 1), "xy"))


def _plot_stress_parity(stresses, split: str, title, path) -> None:
    """Committee-mean against reference stress components (GPa) of the labelled structures."""
    fig, (ax,) = _figure(1, title)
    if not stresses:
        ax.text(0.5, 0.5, "no stress labels in this split", ha="center", va="center", transform=ax.transAxes)
        save_figure(fig, path)
        return
    reference, predicted = (np.array([pair[k] for pair in stresses]) * GPA_PER_EV_PER_A3 for k in (0, 1))
    for (a, b), label in STRESS_COMPONENTS:
        ax.scatter(reference[:, a, b], predicted[:, a, b], s=10, label=label)
    _diagonal(ax, reference, predicted)
    _error_box(ax, predicted - reference, "GPa")
    ax.legend(loc="lower right")
    ax.set(xlabel="reference stress (GPa)", ylabel="committee mean (GPa)", title=f"stress components, {split} split")
    save_figure(fig, path)


def _plot_uncertainty(error, std, calibration: Calibration | None, split: str, title, path) -> None:
    """|error| against σ with the fitted line, and the calibration curve (or why there is none)."""
    fig, (scatter, ax) = _figure(2, title, (5.5, 4.5))
    scatter.scatter(std, abs(error), s=10)
    scatter.set(xlabel="committee std σ (eV/atom)", ylabel="|error| (eV/atom)", title=f"energy, {split} split")
    if calibration is None:
        ax.text(0.5, 0.5, "no calibration: it needs at least 2 members\nand 3 test structures with a spread",
                ha="center", va="center", transform=ax.transAxes)
        save_figure(fig, path)
        return
    grid = np.linspace(0, std.max() * 1.05, 50)
    scatter.plot(grid, calibration.factor * grid, color="k", lw=0.8, label=f"|error| = {calibration.factor:.3g} σ")
    scatter.legend()
    curve = calibration.curve
    ax.plot(curve["predicted_std"], curve["observed_rmse"], "o-")
    top = max(curve["predicted_std"].max(), curve["observed_rmse"].max()) * 1.05
    ax.plot([0, top], [0, top], color="k", lw=0.8)
    ax.set(xlabel="calibrated std per bin (eV/atom)", ylabel="observed RMSE per bin (eV/atom)",
           title=f"calibration curve ({calibration.curve_method})")
    save_figure(fig, path)
