"""Committees of independently trained potentials: training, files, prediction and calibrated uncertainty.

Layout of a committee directory (``TorchCommitteeConfig.output_dir``)::

    committee_metadata.json        schema_version, timestamp, execution_mode, committee_config,
                                   training_config, architecture, descriptor_config, datasets,
                                   members (one summary each), failures
    member_000/model.pt            the trained potential (TorchANNPotential.save format)
    member_000/history.json        the per-epoch history; history.csv: epoch, RMSEs, learning
                                   rate, epoch time
    member_000/summary.json        member_index, seed, split_seed, device, status, metrics, paths,
                                   error; written last, so its presence means the member finished
    member_000/checkpoints/        when the configuration checkpoints; a rerun resumes from here

All members share one train/test split; member seeds are ``member_seeds``, else
``base_seed + i``, else ``config.seed + i``.  Paths inside the JSON files are
relative to the committee directory, so it can be moved.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from aenet_core.descriptor import ChebyshevDescriptor
from aenet_core.io.common import atomic_write
from aenet_core.split import Split, as_split
from aenet_core.training.config import TorchTrainingConfig
from aenet_core.training.data import StructureDataset, as_structures
from aenet_core.training.potential import TorchANNPotential, predict_with_models
from aenet_core.training.run import checkpoint_epoch, checkpoint_files
from aenet_core.training.trainout import TrainOut

METADATA_SCHEMA_VERSION = "1.0"
METADATA_FILE = "committee_metadata.json"
LEGACY_ALIASES = {"train_energy_rmse": "final_RMSE_train", "test_energy_rmse": "final_RMSE_test",
                  "train_force_rmse": "final_RMSE_force_train", "test_force_rmse": "final_RMSE_force_test"}


def _check_int(name, value, minimum=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"TorchCommitteeConfig.{name} must be an integer{bound}; got {value!r}")


@dataclass
class TorchCommitteeConfig:
    """How many members, their seeds, how many train at once and where the files go."""

    num_members: int
    base_seed: int | None = None
    member_seeds: list | None = None
    max_parallel: int = 1
    devices: list | None = None
    output_dir: str | Path | None = None

    def __post_init__(self):
        _check_int("num_members", self.num_members, 1)
        if self.base_seed is not None:
            _check_int("base_seed", self.base_seed)
        if self.member_seeds is not None:
            self.member_seeds = list(self.member_seeds)
            if len(self.member_seeds) != self.num_members:
                raise ValueError(f"TorchCommitteeConfig.member_seeds has {len(self.member_seeds)} seeds for "
                                 f"{self.num_members} members")
            for seed in self.member_seeds:
                _check_int("member_seeds[...]", seed)
        _check_int("max_parallel", self.max_parallel, 1)
        if self.devices is not None:
            self.devices = [str(d) for d in self.devices]
            if not self.devices:
                raise ValueError("TorchCommitteeConfig.devices must be None or a non-empty list")

    def seeds(self, training_seed) -> list:
        if self.member_seeds is not None:
            return list(self.member_seeds)
        start = self.base_seed if self.base_seed is not None else training_seed
        return [None if start is None else start + i for i in range(self.num_members)]

    def device(self, index: int, default: str) -> str:
        return self.devices[index % len(self.devices)] if self.devices else default

    def directory(self) -> Path:
        return Path(self.output_dir if self.output_dir is not None else "committee_run")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["output_dir"] = None if self.output_dir is None else str(self.output_dir)
        return out


def member_dir_name(index: int, num_members: int) -> str:
    width = max(3, len(str(num_members - 1)))
    return f"member_{index:0{width}d}"


# ------------------------------------------------------------------------------- one member


def _finite_or_none(value):
    return None if value is None or not math.isfinite(float(value)) else float(value)


def member_metrics(trainout: TrainOut, best_val_loss) -> dict:
    """Final and best errors of a member, with the legacy aliases; non-finite values become None."""
    stats = trainout.stats
    metrics = {key: _finite_or_none(value) for key, value in stats.items()}
    metrics.update({alias: metrics[key] for alias, key in LEGACY_ALIASES.items()})
    metrics["best_val_loss"] = _finite_or_none(best_val_loss)
    metrics["epochs_recorded"] = float(trainout.num_epochs)
    return metrics


def _fingerprint(potential, config, dataset, split, seed) -> str:
    """Identifies what a member's checkpoints were made for (everything but the epoch count): settings,
    model, data (content, atomic references, database recipe), split and seed."""
    settings = {key: value for key, value in config.to_dict().items()
                if key not in ("iterations", "show_progress", "show_batch_progress", "checkpoint_dir")}
    payload = {"config": settings, "arch": potential.arch, "descriptor": potential.descriptor.get_config(),
               "split": [split.content_sha256, split.train, split.test], "seed": seed,
               "atomic_energies": dataset.atomic_energies, "database": getattr(dataset, "recipe_sha256", None)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _resume_point(checkpoints: Path, fingerprint: str, iterations: int):
    """The latest checkpoint made for this very member and no later than ``iterations`` epochs, or None
    (other checkpoints are removed)."""
    stamp = checkpoints / "fingerprint.txt"
    if stamp.exists() and stamp.read_text().strip() == fingerprint:
        found = checkpoint_files(checkpoints)
        if found and checkpoint_epoch(found[-1]) < iterations:
            return found[-1]
    for old in checkpoints.glob("*.pt"):
        old.unlink()
    checkpoints.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    return None


def train_member(potential: TorchANNPotential, member_dir, config: TorchTrainingConfig, dataset, split: Split,
                 member_index: int = 0, seed=None, device=None) -> dict:
    """Train one committee member into ``member_dir`` and return its summary (also in summary.json).

    A rerun after an interruption resumes from the member's last checkpoint when the
    configuration checkpoints (``checkpoint_interval``), and trains only the missing epochs.
    Failures are recorded in the summary instead of raised.
    """
    member_dir = Path(member_dir).resolve()
    member_dir.mkdir(parents=True, exist_ok=True)
    device = device or config.device
    checkpointing = config.checkpoint_dir is not None or config.save_best or config.checkpoint_interval > 0
    checkpoints = member_dir / "checkpoints" if checkpointing else None
    summary = {"member_index": member_index, "seed": seed, "split_seed": split.split_seed, "device": device,
               "member_dir": ".", "checkpoint_dir": "checkpoints" if checkpoints else None,
               "architecture": potential.arch, "descriptor_config": potential.descriptor.get_config(),
               "training_config": None}
    (member_dir / "summary.json").unlink(missing_ok=True)
    try:
        member_config = replace(config, seed=seed, device=device,
                                checkpoint_dir=None if checkpoints is None else str(checkpoints))
        summary["training_config"] = member_config.to_dict()
        resume = None
        if checkpoints is not None:
            resume = _resume_point(checkpoints, _fingerprint(potential, member_config, dataset, split, seed),
                                   config.iterations)
        if resume is not None:
            member_config = replace(member_config, iterations=config.iterations - checkpoint_epoch(resume) - 1)
        with contextlib.chdir(member_dir):  # energies.*/forces.* files land in the member folder
            out = potential.train(dataset=dataset, split=split, config=member_config, resume_from=resume)
        out.to_json(member_dir / "history.json")
        out.to_csv(member_dir / "history.csv")
        potential.save(member_dir / "model.pt", extra_metadata={
            "committee_member_index": member_index, "committee_seed": seed, "committee_split_seed": split.split_seed})
        summary.update(status="completed", metrics=member_metrics(out, potential.best_val_loss),
                       model_path="model.pt", history_json_path="history.json", history_csv_path="history.csv",
                       summary_path="summary.json", error=None)
    except Exception as err:  # a failed member is recorded; the others keep their results
        summary.update(status="failed", metrics={}, model_path=None, history_json_path=None, history_csv_path=None,
                       summary_path=None, error=f"{type(err).__name__}: {err}")
    with atomic_write(member_dir / "summary.json") as handle:
        json.dump(summary, handle, indent=1)
    return summary


def _member_job(arch, descriptor_config, member_dir, config, dataset, split, index, seed, device, threads):
    """Process-pool entry point: one member in a fresh process."""
    torch.set_num_threads(threads)
    potential = TorchANNPotential(arch, ChebyshevDescriptor.from_config(descriptor_config, device="cpu"))
    return train_member(potential, member_dir, config, dataset, split, index, seed, device)


# ------------------------------------------------------------------------------- metadata


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
        summary = json.loads(path.read_text(encoding="utf-8"))
        relative = path.parent.name
        for key in ("member_dir", "model_path", "history_json_path", "history_csv_path", "summary_path",
                    "checkpoint_dir"):
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
        "schema_version": METADATA_SCHEMA_VERSION,
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
    with atomic_write(path) as handle:
        json.dump(metadata, handle, indent=1)
    return path


def _public(summary: dict) -> dict:
    keys = ("member_index", "seed", "split_seed", "device", "member_dir", "model_path", "history_json_path",
            "history_csv_path", "summary_path", "checkpoint_dir", "status", "metrics", "error")
    return {key: summary.get(key) for key in keys}


@dataclass
class CommitteeMember:
    member_index: int
    seed: int | None
    split_seed: int | None
    device: str
    status: str
    metrics: dict
    error: str | None
    member_dir: Path
    model_path: Path | None

    @property
    def trainout(self) -> TrainOut | None:
        """The member's TrainOut, rebuilt from its history.json (None for a failed member)."""
        path = self.member_dir / "history.json"
        return TrainOut.from_json(path) if self.status == "completed" and path.exists() else None


class TorchCommitteeTrainResult:
    """What a committee run produced: per-member summaries, statistics and tables."""

    def __init__(self, output_dir, metadata_path, members, execution_mode):
        self.output_dir, self.metadata_path = Path(output_dir), Path(metadata_path)
        self.members, self.execution_mode = members, execution_mode

    @classmethod
    def from_metadata(cls, path) -> TorchCommitteeTrainResult:
        path = Path(path)
        metadata = json.loads(path.read_text(encoding="utf-8"))
        root = path.parent
        members = [CommitteeMember(m["member_index"], m["seed"], m["split_seed"], m["device"], m["status"],
                                   m["metrics"] or {}, m["error"], root / m["member_dir"],
                                   None if m["model_path"] is None else root / m["model_path"])
                   for m in metadata["members"]]
        return cls(root, path, members, metadata["execution_mode"])

    @property
    def completed_members(self) -> list:
        return [m for m in self.members if m.status == "completed"]

    @property
    def failed_members(self) -> list:
        return [m for m in self.members if m.status != "completed"]

    @property
    def trainouts(self) -> list:
        return [m.trainout for m in self.members]

    def to_dataframe(self) -> pd.DataFrame:
        rows = [{"member": m.member_index, "seed": m.seed, "split_seed": m.split_seed, "device": m.device,
                 "status": m.status, "member_dir": str(m.member_dir),
                 "model_path": None if m.model_path is None else str(m.model_path), "error": m.error,
                 **m.metrics} for m in self.members]
        return pd.DataFrame(rows)

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

    def __str__(self) -> str:
        lines = [f"Committee: {len(self.completed_members)} completed, {len(self.failed_members)} failed "
                 f"({self.execution_mode}) in {self.output_dir}", "Training statistics:"]
        lines += [f"  {key}: {s['mean']:.6g} ± {s['std']:.6g}" for key, s in self.stats.items()
                  if not key.startswith("epoch") and key not in LEGACY_ALIASES]
        lines += [f"  member {m.member_index} failed: {m.error}" for m in self.failed_members]
        return "\n".join(lines)


# ------------------------------------------------------------------------------- prediction results


@dataclass
class AenetEnsembleResult:
    """One structure's committee prediction: mean, spread and every member's values (eV, eV/Å)."""

    energy: float
    energy_mean: float
    energy_std: float
    member_energies: np.ndarray
    forces: np.ndarray | None = None
    forces_mean: np.ndarray | None = None
    forces_std: np.ndarray | None = None
    force_uncertainty: np.ndarray | None = None  # per atom: mean over x, y, z of forces_std
    member_forces: np.ndarray | None = None
    aggregation: str = "mean"
    reference_member: int = 0

    @property
    def num_members(self) -> int:
        return len(self.member_energies)

    @classmethod
    def from_member_predictions(cls, member_energies, member_forces=None, aggregation="mean",
                                reference_member=0) -> AenetEnsembleResult:
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


# ------------------------------------------------------------------------------- calibration


@dataclass
class Calibration:
    """One factor s such that s·σ matches the committee's observed error (Gaussian maximum likelihood:
    s² = mean(err²/σ²)), with the per-structure data and a binned calibration curve (eV/atom)."""

    factor: float
    n_structures: int
    curve: pd.DataFrame = field(repr=False)  # per σ-bin: mean calibrated σ, observed RMSE, count
    errors: np.ndarray = field(repr=False)
    stds: np.ndarray = field(repr=False)

    @classmethod
    def fit(cls, errors, stds, n_bins: int = 8) -> Calibration:
        errors, stds = np.asarray(errors, float), np.asarray(stds, float)
        usable = stds > 0
        if usable.sum() < 2:
            raise ValueError("calibration needs at least 2 structures with a non-zero committee spread")
        factor = float(np.sqrt(np.mean((errors[usable] / stds[usable]) ** 2)))
        order = np.argsort(stds[usable])
        rows = []
        for chunk in np.array_split(order, min(n_bins, usable.sum())):
            e, s = errors[usable][chunk], stds[usable][chunk]
            rows.append({"predicted_std": float(factor * np.sqrt(np.mean(s ** 2))),
                         "observed_rmse": float(np.sqrt(np.mean(e ** 2))), "count": len(chunk)})
        return cls(factor, int(usable.sum()), pd.DataFrame(rows), errors, stds)

    def to_dict(self) -> dict:
        return {"factor": self.factor, "n_structures": self.n_structures, "units": "eV/atom",
                "method": "maximum likelihood: factor^2 = mean((error/std)^2) over the held-out structures",
                "curve": self.curve.to_dict(orient="list")}

    def save(self, path) -> None:
        with atomic_write(path) as handle:
            json.dump(self.to_dict(), handle, indent=1)


# ------------------------------------------------------------------------------- the committee


class TorchCommitteePotential:
    """Several ``TorchANNPotential``s with one architecture and descriptor, trained with different seeds."""

    def __init__(self, arch, descriptor: ChebyshevDescriptor):
        self.arch, self.descriptor = arch, descriptor
        self.members: list = []
        self.model_paths: list = []
        self.member_indices: list = []  # committee member numbers, when loaded from a committee directory
        self.calibration_factor = None

    # -- training -----------------------------------------------------------------------

    def train(self, structures=None, dataset=None, config: TorchTrainingConfig | None = None,
              committee_config: TorchCommitteeConfig | None = None, split=None) -> TorchCommitteeTrainResult:
        """Train every member on one shared split (``split``, else ``testpercent``/``split_seed``)."""
        config = config or TorchTrainingConfig()
        committee_config = committee_config or TorchCommitteeConfig(num_members=2)
        if (structures is None) == (dataset is None):
            raise ValueError("committee.train() needs exactly one of structures= or dataset=")
        if dataset is None:
            dataset = StructureDataset(as_structures(structures), self.descriptor, max_energy=config.max_energy,
                                       max_forces=config.max_forces, atomic_energies=config.atomic_energies)
        split = as_split(split) if split is not None else Split.create(dataset, config.testpercent, config.split_seed)
        split.check(dataset)
        output_dir = committee_config.directory().resolve()
        default_device = str(config.resolved_device())
        seeds = committee_config.seeds(config.seed)
        devices = [committee_config.device(i, default_device) for i in range(committee_config.num_members)]
        parallel = committee_config.max_parallel > 1 and committee_config.num_members > 1
        if parallel and not committee_config.devices and default_device != "cpu":
            raise ValueError("max_parallel > 1 on a non-CPU device needs explicit TorchCommitteeConfig.devices")
        jobs = [(self.arch, self.descriptor.get_config(),
                 output_dir / member_dir_name(i, committee_config.num_members), config, dataset, split, i, seeds[i],
                 devices[i]) for i in range(committee_config.num_members)]
        if parallel:
            threads = max(1, (os.cpu_count() or 1) // committee_config.max_parallel)
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(committee_config.max_parallel, mp_context=context) as pool:
                list(pool.map(_member_job, *zip(*[job + (threads,) for job in jobs])))
        else:
            for job in jobs:
                train_member(TorchANNPotential(self.arch, self.descriptor), *job[2:])
        name = type(dataset).__name__
        path = aggregate_committee(output_dir, committee_config, "parallel" if parallel else "sequential",
                                   {"train": f"{name}[train: {len(split.train)}]",
                                    "test": f"{name}[test: {len(split.test)}]"},
                                   member_dirs=[job[2] for job in jobs])  # not folders left by an earlier run
        result = TorchCommitteeTrainResult.from_metadata(path)
        if result.failed_members:
            warnings.warn(f"{len(result.failed_members)} committee member(s) failed: "
                          + "; ".join(f"member {m.member_index}: {m.error}" for m in result.failed_members),
                          stacklevel=2)
        if result.completed_members:
            loaded = self.from_files([m.model_path for m in result.completed_members])
            self.members, self.model_paths = loaded.members, loaded.model_paths
            self.member_indices = [m.member_index for m in result.completed_members]
        return result

    # -- loading ------------------------------------------------------------------------

    @classmethod
    def from_files(cls, model_paths, device=None) -> TorchCommitteePotential:
        members = [TorchANNPotential.from_file(path, device=device) for path in model_paths]
        if not members:
            raise ValueError("a committee needs at least one member model")
        first = members[0]
        for path, member in zip(model_paths, members):
            same = (member.arch == first.arch and member.descriptor.get_config() == first.descriptor.get_config()
                    and torch.equal(member.model.atomic_energies, first.model.atomic_energies))
            if not same:
                raise ValueError(f"{path}: its architecture, descriptor or atomic energies differ from "
                                 f"{model_paths[0]}'s; committee members must share them")
        committee = cls(first.arch, first.descriptor)
        committee.members, committee.model_paths = members, [Path(p) for p in model_paths]
        return committee

    @classmethod
    def from_directory(cls, path, device=None, calibration=None) -> TorchCommitteePotential:
        """The completed members of a committee directory (or of its committee_metadata.json), with the
        calibration factor of ``calibration`` (a calibration.json; default: the directory's own, if any)."""
        path = Path(path)
        metadata = path / METADATA_FILE if path.is_dir() else path
        if not metadata.exists():
            raise FileNotFoundError(f"{metadata}: no committee metadata; train the committee or run "
                                    f"aggregate_committee() on its directory")
        result = TorchCommitteeTrainResult.from_metadata(metadata)
        completed = result.completed_members
        committee = cls.from_files([m.model_path for m in completed], device=device)
        committee.member_indices = [m.member_index for m in completed]
        calibration = Path(calibration) if calibration is not None else metadata.parent / "calibration.json"
        if calibration.exists():
            committee.calibration_factor = json.loads(calibration.read_text(encoding="utf-8"))["factor"]
        return committee

    def member_model_paths(self) -> list:
        return list(self.model_paths)

    # -- export -------------------------------------------------------------------------

    def to_aenet_ascii(self, output_dir, prefix="potential", structures=None, descriptor_stats=None) -> list:
        """Each member's ``.nn.ascii`` files in ``output_dir/member_XXX/``; returns one ``{species: path}``
        per member (the manifest ensemble tools take) and writes it, with the members' seeds and
        descriptor, to ``output_dir/manifest.json``."""
        if not self.members:
            raise ValueError("the committee has no members; train it or load it with from_directory()")
        output_dir = Path(output_dir)
        members = []
        indices = self.member_indices or list(range(len(self.members)))
        for index, member in zip(indices, self.members):
            folder = output_dir / member_dir_name(index, max(indices) + 1)
            written = member.to_aenet_ascii(folder, prefix=prefix, structures=structures,
                                            descriptor_stats=descriptor_stats)
            members.append({species: str(folder / name) for species, name in written["files"].items()})
        manifest = {"format": "aenet_core committee nn.ascii", "prefix": prefix, "members": [
            {species: str(Path(path).relative_to(output_dir)) for species, path in m.items()} for m in members],
            "model_paths": [str(p) for p in self.model_paths], "descriptor": self.descriptor.get_config()}
        with atomic_write(output_dir / "manifest.json") as handle:
            json.dump(manifest, handle, indent=1)
        return members

    # -- prediction ---------------------------------------------------------------------

    def predict(self, structures, eval_forces: bool = False, aggregation: str = "mean", reference_member: int = 0,
                batch_size: int = 32) -> TorchCommitteePredictResult:
        """Committee predictions for Structures, ase.Atoms or structure files (every frame; identified
        as ``path#frame=N``)."""
        frames, identifiers = [], []
        for position, item in enumerate(structures):
            found = as_structures([item])
            frames += found
            if isinstance(item, (str, Path)):
                identifiers += [f"{item}#frame={k}" for k in range(len(found))]
            else:
                identifiers.append(found[0].name or f"structure_{position:06d}")
        structures, indices = frames, list(range(len(frames)))
        return self._predict(structures, eval_forces, aggregation, reference_member, batch_size, indices, indices,
                             identifiers)

    def predict_dataset(self, dataset, indices=None, eval_forces: bool = False, aggregation: str = "mean",
                        reference_member: int = 0, batch_size: int = 32) -> TorchCommitteePredictResult:
        """Predict ``dataset`` entries ``indices`` (default all): ``index`` is the position in ``indices``,
        ``source_index`` the dataset entry."""
        indices = list(range(len(dataset))) if indices is None else list(indices)
        structures = [dataset.get_structure(i) for i in indices]
        identifiers = [dataset.get_structure_identifier(i) for i in indices]
        return self._predict(structures, eval_forces, aggregation, reference_member, batch_size,
                             list(range(len(indices))), indices, identifiers)

    def _predict(self, structures, eval_forces, aggregation, reference_member, batch_size, indices, sources,
                 identifiers):
        if not self.members:
            raise ValueError("the committee has no members; train it or load it with from_directory()")
        outputs = predict_with_models([m.model for m in self.members], self.descriptor, structures, eval_forces,
                                      batch_size)
        predictions = []
        for i in range(len(structures)):
            forces = [o.forces[i] for o in outputs] if eval_forces else None
            predictions.append(AenetEnsembleResult.from_member_predictions(
                [o.total_energy[i] for o in outputs], forces, aggregation, reference_member))
        return TorchCommitteePredictResult(predictions, outputs, indices, sources, identifiers,
                                           [s.n_atoms for s in structures], self.calibration_factor)

    def calibrate(self, dataset, indices=None, n_bins: int = 8) -> Calibration:
        """Fit the uncertainty scale on held-out entries (e.g. the test split) and keep it for predictions."""
        predictions = self.predict_dataset(dataset, indices)
        n_atoms = np.array(predictions.n_atoms, float)
        reference = np.array(dataset.energies(predictions.source_indices), float)
        calibration = Calibration.fit((predictions.energy_mean - reference) / n_atoms,
                                      predictions.energy_std / n_atoms, n_bins)
        self.calibration_factor = calibration.factor
        return calibration
