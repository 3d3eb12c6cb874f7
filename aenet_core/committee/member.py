"""One committee member: train it into its own folder, resume it from its own checkpoints, summarise it.

A member's checkpoints are trusted only for the member they were made for: a
fingerprint of the settings, model, data, split and seed is stored beside them.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import torch

from aenet_core.allocator import keep_freed_memory
from aenet_core.baselines import ADVICE, trivial_errors, weak_fit_warnings
from aenet_core.committee.metadata import LEGACY_ALIASES
from aenet_core.descriptor import ChebyshevDescriptor
from aenet_core.files import atomic_write, file_sha256, write_json
from aenet_core.model.checkpoint import ModelFileError, RefusedModelFileError, read_model_file
from aenet_core.potential import TorchANNPotential
from aenet_core.rules import DATA_FORCE_WEIGHT
from aenet_core.split import Split
from aenet_core.training.config import TorchTrainingConfig
from aenet_core.training.distributed import data_parallel, is_main
from aenet_core.training.loop import checkpoint_epoch, checkpoint_files
from aenet_core.training.trainout import TrainOut

# Settings that do not change what a member learns, so its checkpoints stay valid when they change.
_NOT_FINGERPRINTED = ("iterations", "show_progress", "show_batch_progress", "checkpoint_dir", "max_checkpoints")


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


def with_data_defaults(settings: dict, dataset, indices, announce: bool = True) -> dict:
    """A workflow member's training settings: ``force_weight`` DATA_FORCE_WEIGHT when they choose none and a
    structure of ``indices`` has forces (the log says so when ``announce``)."""
    if "force_weight" in settings or not any(dataset.has_forces(i) for i in indices):
        return settings
    if announce:
        print(f"training.force_weight is not set and the data carry forces: training on them with force_weight "
              f"{DATA_FORCE_WEIGHT} (set training.force_weight: 0 for energies only)", file=sys.stderr, flush=True)
    return {**settings, "force_weight": DATA_FORCE_WEIGHT}


def refuse_non_finite(trainout: TrainOut, potential, has_test: bool) -> None:
    """Raise when training diverged: non-finite weights, a non-finite final training (or, with test
    structures, test) energy error, or an infinite final error of any kind."""
    if not trainout.num_epochs:
        return
    stats = {key: value for key, value in trainout.stats.items() if key.startswith("final_")}
    required = ["final_RMSE_train"] + (["final_RMSE_test"] if has_test else [])
    bad = [key for key, value in stats.items() if math.isinf(value) or (key in required and math.isnan(value))]
    if not all(torch.isfinite(p).all() for p in potential.model.parameters()):
        bad.append("weights")
    if bad:
        found = ", ".join(f"{key}={stats.get(key, 'non-finite')}" for key in bad)
        raise ValueError(f"training diverged ({found}): check the labels (energies, forces) and the learning rate")


def _fingerprint(potential, config, dataset, split, seed, initial_model=None) -> str:
    """Identifies what a member's checkpoints were made for (everything but the epoch count): settings,
    model, data (content, atomic references, database recipe), split, seed and the model it started from.
    A cosine schedule spans the iterations, so with one they count too."""
    cosine = config.use_scheduler and config.scheduler == "cosine"
    ignored = [key for key in _NOT_FINGERPRINTED if not (cosine and key == "iterations")]
    settings = {key: value for key, value in config.to_dict().items() if key not in ignored}
    descriptor = potential.descriptor
    payload = {"config": settings, "arch": potential.arch, "descriptor": descriptor.identity(),
               "dtype": str(descriptor.dtype), "split": [split.content_sha256, split.train, split.test], "seed": seed,
               "atomic_energies": dataset.atomic_energies, "database": dataset.recipe_sha256,
               "initial_model": None if initial_model is None else file_sha256(initial_model)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _loads(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` reads back as a checkpoint; one that does not (truncated by a kill, damaged)
    is removed, and the log says so. One holding code is refused (raised), not removed."""
    try:
        if read_model_file(checkpoint).get("run_state") is not None:
            return True
        problem = "it holds no run state"
    except RefusedModelFileError:
        raise
    except ModelFileError as err:
        problem = str(err)
    print(f"{checkpoint} does not load, removed: {problem}", file=sys.stderr, flush=True)
    checkpoint.unlink()
    return False


def _resume_point(checkpoints: Path, fingerprint: str, iterations: int):
    """The latest checkpoint made for this very member, no later than ``iterations`` epochs and that
    loads, or None (other checkpoints are removed)."""
    stamp = checkpoints / "fingerprint.txt"
    if stamp.exists() and stamp.read_text().strip() == fingerprint:
        found = checkpoint_files(checkpoints)
        if found and checkpoint_epoch(found[-1]) < iterations:
            usable = next((candidate for candidate in reversed(found) if _loads(candidate)), None)
            if usable is not None:
                return usable
            print(f"no checkpoint in {checkpoints} loads: training from the start", file=sys.stderr, flush=True)
    for old in checkpoints.glob("*.pt"):
        old.unlink()
    checkpoints.mkdir(parents=True, exist_ok=True)
    with atomic_write(stamp) as handle:
        handle.write(fingerprint)
    return None


def train_member(potential: TorchANNPotential, member_dir, config: TorchTrainingConfig, dataset, split: Split,
                 member_index: int = 0, seed=None, device=None, initial_model=None) -> dict:
    """Train one committee member into ``member_dir`` and return its summary (also in summary.json).

    A rerun after an interruption resumes from the member's last checkpoint when the
    configuration checkpoints (``checkpoint_interval``), and trains only the missing epochs.
    ``initial_model`` (a model file) warm-starts it (``TorchANNPotential.train``).
    Failures are recorded in the summary instead of raised.  In a data-parallel group (``aenet_core.training.
    distributed``) every process trains and process 0 alone writes: it chooses the checkpoint to resume from
    and the others read it.
    """
    parallel, writes = data_parallel(), is_main()
    member_dir = Path(member_dir).resolve()
    member_dir.mkdir(parents=True, exist_ok=True)
    device = device or config.device
    checkpointing = config.checkpoint_dir is not None or config.save_best or config.checkpoint_interval > 0
    checkpoints = member_dir / "checkpoints" if checkpointing else None
    summary = {"member_index": member_index, "seed": seed, "split_seed": split.split_seed, "device": device,
               "member_dir": ".", "checkpoint_dir": "checkpoints" if checkpoints else None,
               "architecture": potential.arch, "descriptor_config": potential.descriptor.get_config(),
               "training_config": None, "resumed_from": None,
               "initial_model": None if initial_model is None else str(initial_model)}
    if writes:
        (member_dir / "summary.json").unlink(missing_ok=True)
    try:
        member_config = replace(config, seed=seed, device=device,
                                checkpoint_dir=None if checkpoints is None else str(checkpoints))
        summary["training_config"] = member_config.to_dict()
        resume = None
        if checkpoints is not None and writes:
            resume = _resume_point(checkpoints, _fingerprint(potential, member_config, dataset, split, seed,
                                                             initial_model), config.iterations)
        if parallel is not None:  # process 0's choice, once it has removed what it does not resume from
            resume = parallel.shared_text(None if resume is None else str(resume))
            resume = None if resume is None else Path(resume)
        if resume is not None:
            done = checkpoint_epoch(resume) + 1
            member_config = replace(member_config, iterations=config.iterations - done)
            summary["resumed_from"] = f"checkpoints/{resume.name}"
            if writes:
                print(f"member {member_index}: resuming from {resume} ({done} of {config.iterations} epochs done)",
                      file=sys.stderr, flush=True)
        out = potential.train(dataset=dataset, split=split, config=member_config, resume_from=resume,
                              output_dir=member_dir, initial_model=initial_model)
        refuse_non_finite(out, potential, has_test=bool(split.test))
        potential.training_config = replace(member_config, iterations=config.iterations)  # whatever was resumed
        metrics = member_metrics(out, potential.best_val_loss)
        if not writes:
            summary.update(status="completed", metrics=metrics, error=None)
            return summary
        out.to_json(member_dir / "history.json")
        out.to_csv(member_dir / "history.csv")
        potential.save(member_dir / "model.pt", extra_metadata={
            "committee_member_index": member_index, "committee_seed": seed, "committee_split_seed": split.split_seed})
        trivial = trivial_errors(dataset, split)
        side, where = ("test", "test") if split.test else ("train", "training")
        warnings = weak_fit_warnings(metrics[f"final_RMSE_{side}"], metrics[f"final_RMSE_force_{side}"], trivial,
                                     where)
        for warning in warnings:
            print(f"WARNING: member {member_index}: {warning}; {ADVICE}", file=sys.stderr, flush=True)
        summary.update(status="completed", metrics=metrics, trivial_errors=trivial, warnings=warnings,
                       stopped_early=out.stopped_early, model_path="model.pt",
                       model_sha256=file_sha256(member_dir / "model.pt"), history_json_path="history.json",
                       history_csv_path="history.csv", summary_path="summary.json", error=None)
    except Exception as err:  # a failed member is recorded; the others keep their results
        summary.update(status="failed", metrics={}, model_path=None, model_sha256=None, history_json_path=None,
                       history_csv_path=None, summary_path=None, error=f"{type(err).__name__}: {err}")
        if not writes:
            return summary
    write_json(member_dir / "summary.json", summary, indent=1)
    return summary


def member_job(arch, descriptor_config, backend, member_dir, config, dataset, split, index, seed, device, threads):
    """Process-pool entry point: one member in a fresh process of its own."""
    keep_freed_memory()
    torch.set_num_threads(threads)
    descriptor = ChebyshevDescriptor.from_config(descriptor_config, device="cpu", backend=backend)
    potential = TorchANNPotential(arch, descriptor)
    return train_member(potential, member_dir, config, dataset, split, index, seed, device)


