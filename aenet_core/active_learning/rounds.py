"""What a round of active learning starts from and what it reports.

Round 0 trains on the run's sources; every later round explores with the previous round's committee,
selects, labels and trains again.  ``exploration_seeds`` picks the structures the molecular dynamics
start from; ``round_summary`` gathers one round's counts, uncertainties and test errors; ``rounds_table``
and ``plot_rounds`` give the run's overview (they import pandas and matplotlib; the rest needs neither).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aenet_core.active_learning.stopping import accurate_fraction, exploration_verdict
from aenet_core.files import read_json
from aenet_core.training.trainout import GPA_PER_EV_PER_A3, save_figure

if TYPE_CHECKING:  # imported where used: the round summaries need no pandas
    import pandas as pd

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


def _decision(round_index: int, selection: dict, converged_fraction: float | None, trained: bool) -> dict:
    """Whether the round trained and why: round 0 always; later rounds by the exploration's verdict when the
    loop stops by itself (``converged_fraction`` given), else because ``rounds`` is a fixed count."""
    if not round_index:
        return {"decision": "trained", "reason": "round 0 trains on the run's sources"}
    if converged_fraction is None:
        return {"decision": "trained", "reason": "rounds is a fixed count"}
    verdict = exploration_verdict(selection, converged_fraction)
    if verdict["stop"] == trained:
        raise ValueError(f"round {round_index}: the exploration's verdict ({verdict['reason']}) disagrees with "
                         f"{'an' if trained else 'no'} evaluation of a committee trained in this round")
    return {"decision": "stopped" if verdict["stop"] else "trained", "reason": verdict["reason"]}


def round_summary(round_index: int, evaluation=None, explorations=(), selection=None, labelling=None,
                  converged_fraction: float | None = None) -> dict:
    """One round's record: what its exploration found, what was selected and labelled (the reports of
    ``select`` and ``label``), and the test errors of the committee it trained (``evaluation``: the
    evaluate summary.json).  Round 0 has the test errors only; a round where a loop stopped by itself
    (``converged_fraction``: the loop's, None for a fixed number of rounds) has no labelling and no
    evaluation.  ``decision`` ("trained" or "stopped") and ``reason`` say why."""
    selection = read_json(selection, "selection report") if selection else {}
    decision = _decision(round_index, selection, converged_fraction, evaluation is not None)
    evaluation = read_json(evaluation, "evaluation summary") if evaluation else {}
    runs = [read_json(path, "exploration summary") for path in explorations]
    labelling = read_json(labelling, "labelling report") if labelling else {}
    spreads = [value for run in runs for value in run["max_force_std"]]
    energy_spreads = [value for run in runs for value in run["energy_std_calibrated_per_atom"]]
    return {
        "round": round_index,
        **decision,
        "accurate_fraction": accurate_fraction(selection) if selection else None,
        "n_trajectories": len(runs),
        "n_frames_explored": sum(run["n_frames"] for run in runs),
        "n_steps_run": sum(run["n_steps_run"] for run in runs),
        "n_hit_trust_hi": sum(bool(run["stopped_early"]) for run in runs),
        "fraction_hit_trust_hi": float(np.mean([run["stopped_early"] for run in runs])) if runs else None,
        **{key: selection.get(key) for key in ("trust_scale", "trust_lo", "trust_hi") if key in selection},
        "n_implausible": selection.get("n_implausible", 0),  # frames never selected: atoms too close, too dense
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
    import pandas as pd

    return pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, list)} for r in records])


def rounds_table(summaries) -> pd.DataFrame:
    """One row per round (the round summaries without their per-frame lists)."""
    return _table(_records(summaries))


COUNTS = (("n_frames_explored", "explored"), ("n_candidates", "candidates (spread the committee can describe)"),
          ("n_selected", "selected"), ("n_labelled", "labelled"), ("n_failed", "labelling failed"))
# (summary key, panel title, unit, factor from the summary's unit)
TEST_PANELS = (("energy_rmse_per_atom", "energy", "meV/atom", 1000.0), ("force_rmse", "forces", "eV/Å", 1.0),
               ("stress_rmse", "stress", "GPa", GPA_PER_EV_PER_A3))


def plot_rounds(summaries, path, trust_lo: float, trust_hi: float, title: str | None = None) -> None:
    """Frames per round, the exploration's force-spread distribution and the fraction of trajectories that
    reached ``trust_hi``, and the test errors of each round's committee; ``title`` (e.g. the run) heads it, and
    a loop that stopped by itself says why under it."""
    from matplotlib.figure import Figure

    records = _records(summaries)
    table = _table(records)
    fig = Figure(figsize=(13, 11), layout="constrained")
    last = records[-1]
    heading = [title] if title else []
    if last.get("decision") == "stopped":
        heading.append(f"stopped in round {last['round']}: {last['reason']}")
    if heading:
        fig.suptitle("\n".join(heading), fontsize="x-large")
    counts, exploration, errors = fig.subfigures(3, 1)
    _plot_counts(counts.subplots(), table)
    _plot_exploration(exploration, records, table, trust_lo, trust_hi)
    _plot_test_errors(errors, table)
    save_figure(fig, Path(path))


def _round_axis(ax, rounds) -> None:
    """Whole-round ticks over every round."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(min(rounds) - 0.5, max(rounds) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")


def _plot_counts(ax, table) -> None:
    """One bar per count and exploring round, its value written on it (a count of 0 shows as a 0)."""
    from matplotlib.ticker import MaxNLocator

    explored, width = table[table["round"] > 0], 0.8 / len(COUNTS)
    for k, (key, label) in enumerate(COUNTS):
        bars = ax.bar(explored["round"] + (k - (len(COUNTS) - 1) / 2) * width, explored[key], width, label=label)
        ax.bar_label(bars, fontsize=7)
    _round_axis(ax, table["round"])
    if 0 in table["round"].values:
        ax.annotate("round 0 trains on\nthe run's sources", (0, 0.5), xycoords=("data", "axes fraction"),
                    ha="center", va="center", color="gray")
    ax.margins(y=0.15)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(ylabel="frames", title="frames per round")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _plot_exploration(subfigure, records, table, trust_lo, trust_hi) -> None:
    """The explored frames' maximum force spread with the trust levels, and the trajectories stopped at
    ``trust_hi``; round k explores with round k-1's committee."""
    spread, stopped = subfigure.subplots(1, 2, width_ratios=(3, 2))
    subfigure.suptitle("exploration with the previous round's committee")
    explored = [r for r in records if r["max_force_std"]]
    if explored:
        spread.boxplot([r["max_force_std"] for r in explored], positions=[r["round"] for r in explored],
                       widths=0.5, manage_ticks=False)
    scaled = [r for r in explored if r.get("trust_scale", "absolute") != "absolute"]
    for level, name, color in ((trust_lo, "trust_lo", "C2"), (trust_hi, "trust_hi", "C3")):
        if scaled:  # each round's own levels on max_force_std, from the previous round's evaluation
            spread.scatter([r["round"] for r in scaled], [r[name] for r in scaled], marker="_", s=900, color=color,
                           label=f"{name} ({scaled[0]['trust_scale']} {level:g})")
        else:
            spread.axhline(level, color=color, lw=1, ls="--", label=f"{name} = {level:g} eV/Å")
    spread.legend(loc="upper left")
    spread.set_ylim(bottom=0)
    spread.set(ylabel="max force spread per frame (eV/Å)", title="uncertainty of the explored frames")
    hit = table[table["n_trajectories"] > 0]
    bars = stopped.bar(hit["round"], hit["fraction_hit_trust_hi"], 0.5)
    stopped.bar_label(bars, [f"{a}/{n}" for a, n in zip(hit["n_hit_trust_hi"], hit["n_trajectories"])])
    stopped.set(ylabel="fraction of trajectories", ylim=(0, 1.1), title="trajectories stopped at trust_hi")
    for ax in (spread, stopped):
        _round_axis(ax, table["round"])


def _plot_test_errors(subfigure, table) -> None:
    """One panel per test error the rounds report, in readable units, from zero."""
    import pandas as pd

    subfigure.suptitle("test errors of each round's committee")
    panels = [(pd.to_numeric(table[f"test_{key}"], errors="coerce") * factor, name, unit)
              for key, name, unit, factor in TEST_PANELS if table[f"test_{key}"].notna().any()]
    if not panels:
        subfigure.subplots().text(0.5, 0.5, "no test errors reported", ha="center", va="center")
        return
    for ax, (values, name, unit) in zip(subfigure.subplots(1, len(panels), squeeze=False)[0], panels):
        ax.plot(table["round"], values, "o-")
        _round_axis(ax, table["round"])
        ax.set_ylim(0, values.max() * 1.1 or 1.0)
        ax.set(ylabel=f"test RMSE ({unit})", title=name)
