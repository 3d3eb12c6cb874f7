"""What a round of active learning starts from and what it reports.

Round 0 trains on the run's sources; every later round explores with the previous round's committee,
selects, labels and trains again.  ``exploration_seeds`` picks the structures the molecular dynamics
start from; ``round_summary`` gathers one round's counts, uncertainties and test errors; ``rounds_table``
and ``plot_rounds`` give the run's overview.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from aenet_core.files import read_json
from aenet_core.training.trainout import save_figure

QUANTILES = (0.5, 0.9)
TEST_ERRORS = ("energy_rmse_per_atom", "force_rmse", "stress_rmse")


def exploration_seeds(structures, count: int, seed: int) -> list:
    """``count`` of ``structures`` drawn without replacement with ``numpy.random.default_rng(seed)``, as
    label-free Structures named after where they came from; ValueError when there are fewer."""
    structures = list(structures)
    if count > len(structures):
        raise ValueError(f"{count} exploration seeds asked for, but only {len(structures)} structures to draw from")
    chosen = sorted(np.random.default_rng(seed).choice(len(structures), size=count, replace=False).tolist())
    return [structures[i].without_labels() for i in chosen]


def _quantiles(values, name: str) -> dict:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if not len(values):
        return {f"{name}_p{int(q * 100)}": None for q in QUANTILES} | {f"{name}_max": None}
    return {f"{name}_p{int(q * 100)}": float(np.quantile(values, q)) for q in QUANTILES} | {
        f"{name}_max": float(values.max())}


def round_summary(round_index: int, evaluation, explorations=(), selection=None, labelling=None) -> dict:
    """One round's record: what its exploration found, what was selected and labelled (the reports of
    ``select`` and ``label``), and the test errors of the committee it trained (``evaluation``: the
    evaluate summary.json).  Round 0 has the test errors only."""
    evaluation = read_json(evaluation, "evaluation summary")
    runs = [read_json(path, "exploration summary") for path in explorations]
    selection = read_json(selection, "selection report") if selection else {}
    labelling = read_json(labelling, "labelling report") if labelling else {}
    spreads = [value for run in runs for value in run["max_force_std"]]
    energy_spreads = [value for run in runs for value in run["energy_std_calibrated_per_atom"]]
    return {
        "round": round_index,
        "n_trajectories": len(runs),
        "n_frames_explored": sum(run["n_frames"] for run in runs),
        "n_steps_run": sum(run["n_steps_run"] for run in runs),
        "n_hit_trust_hi": sum(bool(run["stopped_early"]) for run in runs),
        "fraction_hit_trust_hi": float(np.mean([run["stopped_early"] for run in runs])) if runs else None,
        "n_candidates": selection.get("n_candidates", 0),
        "n_selected": selection.get("n_selected", 0),
        "n_labelled": labelling.get("n_labelled", 0),
        "n_failed": labelling.get("n_failed", 0),
        "failures": [{"name": r["name"], "error": r["error"]} for r in labelling.get("frames", [])
                     if r["status"] == "failed"],
        **_quantiles(spreads, "max_force_std"),
        **_quantiles(energy_spreads, "energy_std_calibrated_per_atom"),
        **{f"test_{key}": evaluation.get(key) for key in TEST_ERRORS},
        "max_force_std": spreads,
    }


def _records(summaries) -> list:
    """The round summary files, read, in round order."""
    return sorted((read_json(path, "round summary") for path in summaries), key=lambda record: record["round"])


def _table(records) -> pd.DataFrame:
    return pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, list)} for r in records])


def rounds_table(summaries) -> pd.DataFrame:
    """One row per round (the round summaries without their per-frame lists)."""
    return _table(_records(summaries))


def plot_rounds(summaries, path, trust_lo: float, trust_hi: float) -> None:
    """Counts, test errors, the exploration's force-spread distribution and the fraction of trajectories
    that reached ``trust_hi``, per round."""
    records = _records(summaries)
    table = _table(records)
    rounds = table["round"].to_numpy()
    fig = Figure(figsize=(12, 8.5))
    ax = fig.add_subplot(2, 2, 1)
    for key, label in (("n_frames_explored", "explored"), ("n_candidates", "candidates"),
                       ("n_selected", "selected"), ("n_labelled", "labelled"), ("n_failed", "failed")):
        ax.plot(rounds, table[key], "o-", label=label)
    ax.set(xlabel="round", ylabel="frames", title="frames per round", yscale="symlog")
    ax.legend()
    ax = fig.add_subplot(2, 2, 2)
    for key, unit in (("energy_rmse_per_atom", "eV/atom"), ("force_rmse", "eV/Å"), ("stress_rmse", "eV/Å³")):
        values = pd.to_numeric(table[f"test_{key}"], errors="coerce")
        if values.notna().any():
            ax.plot(rounds, values, "o-", label=f"{key} ({unit})")
    ax.set(xlabel="round", ylabel="test RMSE", title="test errors of each round's committee", yscale="log")
    ax.legend()
    ax = fig.add_subplot(2, 2, 3)
    explored = [r for r in records if r["max_force_std"]]
    if explored:
        ax.boxplot([r["max_force_std"] for r in explored], positions=[r["round"] for r in explored])
    for level, name in ((trust_lo, "trust_lo"), (trust_hi, "trust_hi")):
        ax.axhline(level, color="k", lw=0.8, ls="--")
        ax.annotate(name, (0, level), xycoords=("axes fraction", "data"), va="bottom")
    ax.set(xlabel="round (explored with the previous round's committee)", ylabel="max force spread (eV/Å)",
           title="uncertainty of the explored frames", yscale="log")
    ax = fig.add_subplot(2, 2, 4)
    hit = table[table["n_trajectories"] > 0]
    ax.bar(hit["round"], hit["fraction_hit_trust_hi"])
    ax.set(xlabel="round", ylabel="fraction", ylim=(0, 1), title="trajectories stopped at trust_hi")
    fig.tight_layout()
    save_figure(fig, Path(path))
