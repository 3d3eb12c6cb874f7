"""Training results: per-epoch history, error tables, statistics, files and plots.

The trainer records a history dict of equal-length lists, one value per
epoch (0-based), and ``stopped_early``: None, or ``{"epoch", "best_epoch",
"reason"}`` when early stopping ended the run.  ``TrainOut`` wraps it:
``errors`` and ``timing`` tables, ``stats`` of final and best values,
strict-JSON and CSV export, and matplotlib figures built without pyplot (no
GUI backend is ever needed).  pandas and matplotlib are imported where tables and figures are made, so
that reading a history needs neither.
"""
import json
import math
import os
from pathlib import Path

import numpy as np

from aenet_core.files import atomic_write, read_json

# errors column -> history key
ERROR_COLUMNS = {
    "MAE_train": "train_energy_mae",
    "RMSE_train": "train_energy_rmse",
    "MAE_test": "test_energy_mae",
    "RMSE_test": "test_energy_rmse",
    "RMSE_force_train": "train_force_rmse",
    "RMSE_force_test": "test_force_rmse",
    "RMSE_stress_train": "train_stress_rmse",
    "RMSE_stress_test": "test_stress_rmse",
}
GPA_PER_EV_PER_A3 = 160.21766208  # 1 eV/Å³ in GPa
REQUIRED_KEYS = ("train_energy_rmse", "test_energy_rmse", "train_energy_mae", "test_energy_mae")
STOPPED_EARLY = "stopped_early"  # the one history entry that is not a per-epoch list
CSV_KEYS = ("train_energy_rmse", "test_energy_rmse", "train_force_rmse", "test_force_rmse", "train_stress_rmse",
            "test_stress_rmse", "learning_rate", "epoch_time")


def _as_series(key, values):
    """One history entry as a 1-D float array; None becomes NaN."""
    try:
        arr = np.array([np.nan if v is None else v for v in values], dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"history[{key!r}] must be a list of numbers") from err
    if arr.ndim != 1:
        raise ValueError(f"history[{key!r}] must be a flat list of numbers, one per epoch")
    return arr


def history_arrays(history) -> dict:
    """The per-epoch entries of a history dict as float arrays of one length (ValueError naming an entry that is
    not a flat list of numbers, or has another length than the first)."""
    arrays = {key: _as_series(key, values) for key, values in history.items() if key != STOPPED_EARLY}
    first = next(iter(arrays), None)
    for key, arr in arrays.items():
        if len(arr) != len(arrays[first]):
            raise ValueError(f"history[{key!r}] has {len(arr)} values, expected {len(arrays[first])} "
                             f"(one per epoch, like {first!r})")
    return arrays


def write_history_json(arrays: dict, stopped_early, path) -> None:
    """Write ``history_arrays`` and ``stopped_early`` as strict JSON (non-finite values as null), atomically."""
    data = {key: [v if math.isfinite(v) else None for v in arr.tolist()] for key, arr in arrays.items()}
    data[STOPPED_EARLY] = stopped_early
    with atomic_write(path) as handle:
        json.dump(data, handle, indent=1, allow_nan=False)


def write_history_csv(arrays: dict, path) -> None:
    """Write epoch and the ``CSV_KEYS`` columns of ``history_arrays`` (NaN where absent) as CSV, atomically; NaN is
    written ``nan``, as aenet-python's CSV has it, so that ``float()`` reads every cell."""
    import pandas as pd

    epochs = len(next(iter(arrays.values()), []))
    table = pd.DataFrame({"epoch": np.arange(epochs)})
    for key in CSV_KEYS:
        table[key] = arrays.get(key, np.full(epochs, np.nan))
    with atomic_write(path) as handle:
        table.to_csv(handle, index=False, na_rep="nan")


def _final(arr):
    return float(arr[-1]) if arr.size else math.nan


def _minimum(arr):
    """(min value, 1-based epoch) ignoring NaN; (NaN, None) when nothing is finite."""
    if not np.any(~np.isnan(arr)):
        return math.nan, None
    i = int(np.nanargmin(arr))
    return float(arr[i]), i + 1


def _format(value):
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class TrainOut:
    """Results of one training run, built from the trainer's per-epoch history."""

    def __init__(self, history, config=None, energies=None):
        self.config = dict(config or {})
        self.energies = energies  # an Energies of the energies.* files training wrote (save_energies), or None
        self.stopped_early = history.get(STOPPED_EARLY)
        for key in REQUIRED_KEYS:
            if key not in history:
                raise ValueError(f"history is missing required key {key!r}")
        self.history = history_arrays(history)
        self.num_epochs = len(self.history[REQUIRED_KEYS[0]])

    @classmethod
    def from_json(cls, path, config=None):
        """Read a history.json; NaN may be stored as null or as NaN."""
        return cls(read_json(path, "training history (train the member again)"), config)

    def to_json(self, path):
        """Write the history as strict JSON (non-finite values as null), atomically."""
        write_history_json(self.history, self.stopped_early, path)

    def to_csv(self, path):
        """Write epoch, energy/force/stress RMSEs, learning rate and epoch time as CSV, atomically."""
        write_history_csv(self.history, path)

    def _series(self, key):
        """History values for ``key``, or all NaN when the key is absent."""
        return self.history.get(key, np.full(self.num_epochs, np.nan))

    def _frame(self, columns):
        import pandas as pd

        index = pd.RangeIndex(self.num_epochs, name="epoch")
        return pd.DataFrame({name: self._series(key) for name, key in columns.items()},
                            index=index)

    @property
    def errors(self):
        """Energy MAE/RMSE (eV/atom), force RMSE (eV/Å) and stress RMSE (eV/Å³) per epoch."""
        return self._frame(ERROR_COLUMNS)

    @property
    def timing(self):
        """``epoch_time`` and every other ``*_time`` history entry (seconds) per epoch."""
        keys = ["epoch_time"] + [k for k in self.history if k.endswith("_time") and k != "epoch_time"]
        return self._frame({key: key for key in keys})

    @property
    def learning_rate(self):
        return self._series("learning_rate").tolist()

    @property
    def has_force_data(self):
        return bool(np.isfinite(self._series("train_force_rmse")).any()
                    or np.isfinite(self._series("test_force_rmse")).any())

    @property
    def stats(self):
        """Final values and test minima (with 1-based epoch) of the error columns."""
        err = self.errors
        out = {f"final_{col}": _final(err[col].to_numpy())
               for col in ("MAE_train", "RMSE_train", "MAE_test", "RMSE_test")}
        out["min_RMSE_test"], out["epoch_min_RMSE_test"] = _minimum(err["RMSE_test"].to_numpy())
        for col in ("RMSE_force_train", "RMSE_force_test"):
            out[f"final_{col}"] = _final(err[col].to_numpy())
        out["min_RMSE_force_test"], out["epoch_min_RMSE_force_test"] = _minimum(
            err["RMSE_force_test"].to_numpy())
        for col in ("RMSE_stress_train", "RMSE_stress_test"):
            out[f"final_{col}"] = _final(err[col].to_numpy())
        return out

    def __str__(self):
        lines = ["Training statistics:"]
        lines += [f"  {key}: {_format(value)}" + (f" eV/Å³ ({_format(value * GPA_PER_EV_PER_A3)} GPa)"
                                                   if "stress" in key else "") for key, value in self.stats.items()]
        stop = self.stopped_early
        if stop is not None:
            lines.append(f"  stopped early after {stop['epoch'] + 1} epochs: {stop['reason']}")
        return "\n".join(lines)

    def print(self):
        """Print the statistics and a short epoch-time summary."""
        print(self)
        times = self._series("epoch_time")
        if np.isfinite(times).any():
            print(f"Timing: last epoch {_format(float(times[-1]))} s, "
                  f"mean epoch {_format(float(np.nanmean(times)))} s "
                  f"over {self.num_epochs} epochs")

    def timing_report(self, setup_time: float) -> str:
        """Per-phase seconds: set-up once, then totals and per-epoch means of each recorded phase."""
        lines = ["Timing (s):", f"  set-up (data, featurization for normalisation): {setup_time:.3f}"]
        for column in self.timing.columns:
            values = self.timing[column]
            lines.append(f"  {column}: total {values.sum():.3f}, per epoch {values.mean():.4f}")
        return "\n".join(lines)

    # ----- plots -----

    @staticmethod
    def _target(ax):
        """(figure, axes): the given axes, or a new single-panel figure."""
        if ax is not None:
            return ax.figure, ax
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), layout="constrained")
        return fig, fig.add_subplot()


    def plot_training_errors(self, outfile=None, ax=None):
        """Energy RMSE (train, test) vs epoch, log y; returns the Figure."""
        fig, ax = self._target(ax)
        draw_error_curves(ax, [("", self)], "energy")
        return _finish(fig, outfile)

    def plot_force_errors(self, outfile=None, ax=None):
        """Force RMSE (train, test) vs epoch, log y; returns the Figure."""
        if not self.has_force_data:
            raise ValueError("no force errors in the training history "
                             "(energy-only training); nothing to plot")
        fig, ax = self._target(ax)
        draw_error_curves(ax, [("", self)], "force")
        return _finish(fig, outfile)

    def plot_training_summary(self, outfile=None):
        """Energy panel, plus a force panel beside it when force errors exist."""
        return plot_learning_curves([("", self)], outfile)


class Energies:
    """The tables of aenet ``energies.train.*``/``energies.test.*`` files (``save_energies``, ``train.x``).

    ``energies_train`` and ``energies_test`` (None without a test file) are pandas DataFrames with the
    header's columns: ``Ref(eV)``, ``ANN(eV)``, ``#atoms``, ``Ref(eV/atom)``, ``ANN(eV/atom)``,
    ``Ref-ANN(eV/atom)``, ``Cost-Func``, one ``#<Species>`` count per species, ``Path-of-input-file``.
    """

    def __init__(self, path_train, path_test=None):
        self.path_train, self.path_test = path_train, path_test
        self.energies_train = read_energies(path_train)
        self.energies_test = None if path_test is None else read_energies(path_test)

    def add_energies(self, path_train, path_test=None) -> None:
        """Append the rows of further ``energies.*`` files."""
        import pandas as pd

        self.energies_train = pd.concat([self.energies_train, read_energies(path_train)], ignore_index=True)
        if path_test is not None:
            tables = [t for t in (self.energies_test, read_energies(path_test)) if t is not None]
            self.energies_test = pd.concat(tables, ignore_index=True)

    def __repr__(self):
        n_test = 0 if self.energies_test is None else len(self.energies_test)
        return f"Energies(n_train={len(self.energies_train)}, n_test={n_test})"


# train.x's multi-word column names -> ours (its "ANN error" is the normalised error, our Cost-Func)
_TRAIN_X_HEADER = {"Cost Func": "Cost-Func", "ANN error": "Cost-Func", "Path of input file": "Path-of-input-file"}


def read_energies(path):
    """One ``energies.*`` file as a DataFrame named by its header; the last column (the structure's path or
    name) keeps any spaces in it."""
    import pandas as pd

    with open(path, encoding="utf-8") as handle:
        header = handle.readline()
        for words, name in _TRAIN_X_HEADER.items():
            header = header.replace(words, name)
        columns = header.lstrip("#").split()
        rows = [line.strip().split(maxsplit=len(columns) - 1) for line in handle if line.strip()]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(columns):
            raise ValueError(f"{path}, line {number}: {len(row)} columns, the header names {len(columns)}")
    table = pd.DataFrame(rows, columns=columns)
    numeric = columns[:-1]
    table[numeric] = table[numeric].apply(pd.to_numeric)
    return table


PANELS = {"energy": ("RMSE_train", "RMSE_test", "Energy RMSE (eV/atom)"),
          "force": ("RMSE_force_train", "RMSE_force_test", "Force RMSE (eV/Å)")}


def draw_error_curves(ax, runs, kind: str) -> None:
    """Train (solid) and test (dashed, the same colour) RMSE against the 1-based epoch for each
    ``(label, TrainOut)`` of ``runs`` on ``ax``; ``kind`` is 'energy' or 'force'.  Log y when positive."""
    train_column, test_column, ylabel = PANELS[kind]
    plotted = []
    for label, out in runs:
        epochs, color = np.arange(1, out.num_epochs + 1), None
        for column, style, split in ((train_column, "-", "train"), (test_column, "--", "test")):
            values = out._series(ERROR_COLUMNS[column])  # errors[column], without pandas
            if np.isfinite(values).any():
                (line,) = ax.plot(epochs, values, style, color=color, label=f"{label} {split}".strip())
                color = line.get_color()
                plotted.append(values)
    ax.set_xlabel("Epoch")
    ax.set_ylabel(ylabel)
    if not plotted:
        ax.text(0.5, 0.5, "No data to plot", ha="center", va="center", transform=ax.transAxes)
        return
    if any((v[np.isfinite(v)] > 0).any() for v in plotted):
        ax.set_yscale("log")
    ax.legend(fontsize=7 if len(runs) > 1 else None)


def plot_learning_curves(runs, outfile=None, title: str | None = None):
    """The energy panel, and the force panel beside it when any run has force errors, for ``(label, TrainOut)``
    pairs (one run, or the members of a committee), headed by ``title`` if given; returns the Figure and saves
    it to ``outfile``."""
    from matplotlib.figure import Figure

    kinds = ["energy"] + (["force"] if any(out.has_force_data for _, out in runs) else [])
    fig = Figure(figsize=(6 * len(kinds), 4), layout="constrained")
    if title:
        fig.suptitle(title)
    for kind, ax in zip(kinds, fig.subplots(1, len(kinds), squeeze=False)[0]):
        draw_error_curves(ax, runs, kind)
    return _finish(fig, outfile)


def _finish(fig, outfile):
    """Save to ``outfile``: a path (atomically) or an open binary file; return the figure."""
    if isinstance(outfile, (str, os.PathLike)):
        save_figure(fig, outfile)
    elif outfile is not None:
        fig.savefig(outfile, dpi=120, bbox_inches="tight")
    return fig


def save_figure(fig, path) -> None:
    """Save a matplotlib figure atomically, in the format its suffix names (PNG by default)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, binary=True) as handle:
        fig.savefig(handle, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
