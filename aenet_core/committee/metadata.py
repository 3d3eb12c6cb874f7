"""``committee_metadata.json``: written from the members' summaries, read back as a train result.

Layout of a committee directory (``TorchCommitteeConfig.output_dir``)::

    committee_metadata.json        format, schema_version, timestamp, execution_mode, committee_config,
                                   training_config, architecture, descriptor_config, datasets,
                                   members (one summary each), failures
    member_000/model.pt            the trained potential (TorchANNPotential.save format)
    member_000/history.json        the per-epoch history; history.csv: epoch, RMSEs, learning
                                   rate, epoch time
    member_000/summary.json        member_index, seed, split_seed, device, status, metrics, paths,
                                   error; written last, so its presence means the member finished
    member_000/checkpoints/        when the configuration checkpoints; a rerun resumes from here

Paths inside the JSON files are relative to the committee directory, so it can be moved.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aenet_core.committee.config import TorchCommitteeConfig
from aenet_core.files import atomic_write, check_format, file_sha256, read_json, write_json
from aenet_core.training.trainout import TrainOut, plot_learning_curves

if TYPE_CHECKING:  # imported where used: aggregating a committee needs no pandas
    import pandas as pd

FORMAT = "aenet_core.committee"
SCHEMA_VERSION = "1.0"
METADATA_FILE = "committee_metadata.json"
# A member's metrics also go by aenet-python's names (alias -> metric); the committee's statistics skip these.
LEGACY_ALIASES = {"train_energy_rmse": "final_RMSE_train", "test_energy_rmse": "final_RMSE_test",
                  "train_force_rmse": "final_RMSE_force_train", "test_force_rmse": "final_RMSE_force_test"}
# A member summary's paths (relative to the member folder in the file).
_PATH_FIELDS = ("member_dir", "model_path", "history_json_path", "history_csv_path", "summary_path",
                "checkpoint_dir")


def aggregate_committee(output_dir, committee_config: TorchCommitteeConfig | None = None,
                        execution_mode: str = "aggregated", datasets=None, member_dirs=None) -> Path:
    """Write committee_metadata.json from the member folders' summary.json files; returns its path.

    Members trained one by one (e.g. one cluster job each) are aggregated this way;
    ``member_dirs`` (default: every ``member_*`` folder) names the members to include.
    """
    output_dir = Path(output_dir)
    if member_dirs is None:
        paths = sorted(output_dir.glob("member_*/summary.json"))
    else:
        paths = [Path(d) / "summary.json" for d in member_dirs]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(f"no summary.json in {missing}: those members have not finished")
        outside = [str(p.parent) for p in paths if p.parent.resolve().parent != output_dir.resolve()]
        if outside:
            raise ValueError(f"member folders {outside} are not inside {output_dir}")
    summaries = []
    for path in paths:
        summary = read_json(path, "member summary")
        relative = path.parent.name
        for key in _PATH_FIELDS:
            if summary.get(key) is not None:
                summary[key] = str(Path(relative) / summary[key]) if summary[key] != "." else relative
        summaries.append(summary)
    if not summaries:
        raise FileNotFoundError(f"{output_dir}: no member_*/summary.json to aggregate")
    first = next((s for s in summaries if s["status"] == "completed"), summaries[0])
    if committee_config is None:
        committee_config = TorchCommitteeConfig(num_members=len(summaries),
                                                member_seeds=None if any(s["seed"] is None for s in summaries)
                                                else [s["seed"] for s in summaries])
    metadata = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "execution_mode": execution_mode,
        "output_dir": ".",
        "committee_config": committee_config.to_dict(),
        "training_config": first["training_config"],
        "architecture": first["architecture"],
        "descriptor_config": first["descriptor_config"],
        "resolved_train_dataset": (datasets or {}).get("train"),
        "resolved_test_dataset": (datasets or {}).get("test"),
        "members": [_public(s) for s in summaries],
        "failures": [_public(s) for s in summaries if s["status"] != "completed"],
    }
    path = output_dir / METADATA_FILE
    write_json(path, metadata, indent=1)
    return path


def _public(summary: dict) -> dict:
    keys = ("member_index", "seed", "split_seed", "device", "member_dir", "model_path", "model_sha256",
            "history_json_path",
            "history_csv_path", "summary_path", "checkpoint_dir", "status", "metrics", "error")
    return {key: summary.get(key) for key in keys}


# TrainOut's statistics among a member's metrics (the legacy aliases fill in where these are missing).
_STAT_PREFIXES = ("final_", "min_", "epoch_min_")


@dataclass
class TorchCommitteeMemberResult:
    """One member of a committee run: its seed, device, files (absolute paths; None where the member wrote
    none), status, metrics and error.  ``model_sha256`` is the model file's checksum when it finished."""

    member_index: int
    seed: int | None
    split_seed: int | None
    device: str
    member_dir: Path
    model_path: Path | None
    history_json_path: Path | None
    history_csv_path: Path | None
    summary_path: Path | None
    checkpoint_dir: Path | None
    status: str
    metrics: dict
    error: str | None = None
    model_sha256: str | None = None  # absent in older metadata

    @classmethod
    def from_summary(cls, summary: dict, root: Path) -> TorchCommitteeMemberResult:
        """From a member's entry in committee_metadata.json, whose paths are relative to ``root``."""
        paths = {key: None if summary.get(key) is None else root / summary[key] for key in _PATH_FIELDS}
        return cls(summary["member_index"], summary["seed"], summary["split_seed"], summary["device"],
                   status=summary["status"], metrics=summary["metrics"] or {}, error=summary["error"],
                   model_sha256=summary.get("model_sha256"), **paths)

    def check_model_file(self) -> None:
        """Refuse a model file that is not the one the member wrote (damaged, truncated or replaced)."""
        if self.model_sha256 is not None and file_sha256(self.model_path) != self.model_sha256:
            from aenet_core.model.checkpoint import ModelFileError  # that module imports torch

            raise ModelFileError(f"{self.model_path}: not the model file member {self.member_index} wrote (its "
                                 f"sha256 differs from the recorded one): it is damaged or was replaced; delete it "
                                 f"and train the member again (it resumes from its checkpoints)")

    @property
    def stats(self) -> dict:
        """The finite TrainOut statistics among the metrics (final_*, min_*, epoch_min_*, best_val_loss,
        epochs_recorded), by TrainOut's names."""
        finite = {key: float(value) for key, value in self.metrics.items()
                  if value is not None and np.isfinite(float(value))}
        stats = {key: value for key, value in finite.items()
                 if key.startswith(_STAT_PREFIXES) or key in ("best_val_loss", "epochs_recorded")}
        for alias, key in LEGACY_ALIASES.items():
            if key not in stats and alias in finite:
                stats[key] = finite[alias]
        return stats

    @property
    def trainout(self) -> TrainOut | None:
        """The member's TrainOut, rebuilt from its history.json (None for a failed member)."""
        path = self.history_json_path
        return TrainOut.from_json(path) if self.status == "completed" and path and path.exists() else None

    def to_metadata(self) -> dict:
        """The member as plain JSON data, paths as absolute strings."""
        out = {key: value for key, value in vars(self).items()}
        out.update({key: None if out[key] is None else str(out[key]) for key in _PATH_FIELDS})
        out["metrics"] = dict(self.metrics)
        return out


class TorchCommitteeTrainResult:
    """What a committee run produced: per-member summaries, statistics and tables."""

    def __init__(self, output_dir, metadata_path, members, execution_mode):
        self.output_dir, self.metadata_path = Path(output_dir), Path(metadata_path)
        self.members, self.execution_mode = members, execution_mode

    @classmethod
    def from_metadata(cls, path) -> TorchCommitteeTrainResult:
        """Read a committee_metadata.json; a damaged, foreign or newer file is refused, naming it."""
        path = Path(path)
        metadata = read_json(path, "committee metadata file (aggregate the committee again)")
        metadata = metadata if isinstance(metadata, dict) else {}
        check_format(path, metadata.get("format", FORMAT), FORMAT, metadata.get("schema_version"),
                     (SCHEMA_VERSION,), "committee metadata file", "committee metadata schema")
        root = path.parent
        members = [TorchCommitteeMemberResult.from_summary(m, root) for m in metadata["members"]]
        return cls(root, path, members, metadata["execution_mode"])

    @property
    def completed_members(self) -> list:
        return [m for m in self.members if m.status == "completed"]

    @property
    def failed_members(self) -> list:
        return [m for m in self.members if m.status != "completed"]

    @property
    def trainouts(self) -> list:
        """The TrainOuts of the completed members that have a history."""
        return [out for out in (m.trainout for m in self.completed_members) if out is not None]

    def _rows(self) -> list:
        rows = []
        for m in self.members:
            plain = m.to_metadata()
            rows.append({"member": m.member_index, "seed": m.seed, "split_seed": m.split_seed, "device": m.device,
                         "status": m.status, **{key: plain[key] for key in _PATH_FIELDS}, "error": m.error,
                         **m.metrics})
        return rows

    def to_dataframe(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self._rows())

    def write_table(self, path) -> None:
        """One row per member, as ``to_dataframe().to_csv(path, index=False)`` writes it, without pandas."""
        rows = self._rows()
        columns = list(dict.fromkeys(key for row in rows for key in row))
        cells = [_csv_column([row.get(column) for row in rows]) for column in columns]
        with atomic_write(path) as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(zip(*cells))

    @property
    def stats(self) -> dict:
        """Per metric: mean, std (ddof=0), min, max and n over the completed members."""
        out = {}
        for key in self.completed_members[0].metrics if self.completed_members else []:
            values = np.array([m.metrics.get(key) for m in self.completed_members], dtype=float)
            values = values[np.isfinite(values)]
            if values.size:
                out[key] = {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
                            "max": float(values.max()), "n": int(values.size)}
        return out

    def plot_learning_curves(self, path, title: str | None = None) -> None:
        """Energy (and force) RMSE per epoch of every completed member, train and test, saved to ``path``;
        ``title`` (e.g. the run) heads the figure."""
        plot_learning_curves([(f"member {m.member_index}", m.trainout) for m in self.completed_members], path,
                             title)

    def __str__(self) -> str:
        lines = ["Training statistics:"]
        lines += [f"  {key}: {s['mean']:.6g} ± {s['std']:.6g}" for key, s in self.stats.items()
                  if not key.startswith("epoch") and key not in LEGACY_ALIASES]
        lines += [f"  completed_members: {len(self.completed_members)}",
                  f"  failed_members: {len(self.failed_members)}", f"  execution_mode: {self.execution_mode}",
                  f"  output_dir: {self.output_dir}"]
        lines += [f"  member {m.member_index} failed: {m.error}" for m in self.failed_members]
        return "\n".join(lines)


def _csv_column(values) -> list:
    """A column's cells as pandas writes them: numbers as floats when one is a float or missing (its dtype
    is float then), missing values empty, anything else as ``str``."""
    present = [value for value in values if value is not None]
    numbers = bool(present) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in present)
    as_float = numbers and (len(present) < len(values) or any(isinstance(x, float) for x in present))
    return ["" if value is None else repr(float(value)) if as_float else str(value) for value in values]
