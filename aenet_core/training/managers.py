"""aenet-python's checkpoint and metrics managers, for a training loop the caller writes.

``CheckpointManager`` writes and reads our model files (plain data, read with
``weights_only=True``; see ``aenet_core.model.checkpoint``): a file it writes
is a complete model file (``TorchANNPotential.from_file`` loads it) with the
optimizer's state under ``optimizer_state_dict`` and the epoch in
``extra_metadata``; it reads those and the checkpoints ``train()`` writes.
"""
from __future__ import annotations

import math
from pathlib import Path

from aenet_core.model.atomistic import AtomisticModel
from aenet_core.model.checkpoint import read_model_file, write_model_file
from aenet_core.model.network import AtomicNetworks
from aenet_core.training.loop import BEST_MODEL, checkpoint_epoch, checkpoint_files, checkpoint_name

METRIC_KEYS = ("train_energy_rmse", "test_energy_rmse", "train_energy_mae", "test_energy_mae", "train_force_rmse",
               "test_force_rmse", "learning_rate", "epoch_time", "forward_time", "backward_time")
# Detailed timing: history key -> (which timing dict, its key).
TIMING_KEYS = {
    "epoch_data_loading_time_train": ("train", "data_loading"), "epoch_loss_time_train": ("train", "loss_computation"),
    "epoch_optimizer_time_train": ("train", "optimizer"), "epoch_data_loading_time_val": ("val", "data_loading"),
    "epoch_loss_time_val": ("val", "loss_computation"), "epoch_optimizer_time_val": ("val", "optimizer"),
    "epoch_train_time": ("train", "total"), "epoch_val_time": ("val", "total"),
}


class MetricsTracker:
    """Per-epoch errors, learning rate and times, one list per key (``history``); with
    ``track_detailed_timing`` also the data loading, loss and optimizer times of training and validation."""

    def __init__(self, track_detailed_timing=False):
        self.track_detailed_timing = track_detailed_timing
        keys = METRIC_KEYS + (tuple(TIMING_KEYS) if track_detailed_timing else ())
        self.history = {key: [] for key in keys}

    def update(self, train_energy_rmse, train_energy_mae, train_force_rmse, test_energy_rmse, test_energy_mae,
               test_force_rmse, learning_rate, epoch_time, forward_time, backward_time, train_timing, val_timing):
        """Record one epoch (NaN for what was not measured); the timing dicts have the keys 'data_loading',
        'loss_computation', 'optimizer' and 'total' (missing ones count 0)."""
        values = dict(zip(METRIC_KEYS, (train_energy_rmse, test_energy_rmse, train_energy_mae, test_energy_mae,
                                        train_force_rmse, test_force_rmse, learning_rate, epoch_time, forward_time,
                                        backward_time)))
        if self.track_detailed_timing:
            timings = {"train": train_timing or {}, "val": val_timing or {}}
            values.update({key: timings[part].get(name, 0.0) for key, (part, name) in TIMING_KEYS.items()})
        for key, value in values.items():
            self.history.setdefault(key, []).append(float(value))

    def get_history(self) -> dict:
        return self.history

    def set_history(self, history) -> None:
        self.history = history

    def replace_latest(self, train_energy_rmse, train_energy_mae, train_force_rmse, test_energy_rmse,
                       test_energy_mae, test_force_rmse) -> None:
        """Overwrite the last epoch's errors (e.g. with a full pass after training); appended where a key has
        no entry yet."""
        values = {"train_energy_rmse": train_energy_rmse, "train_energy_mae": train_energy_mae,
                  "train_force_rmse": train_force_rmse, "test_energy_rmse": test_energy_rmse,
                  "test_energy_mae": test_energy_mae, "test_force_rmse": test_force_rmse}
        for key, value in values.items():
            entries = self.history.setdefault(key, [])
            if entries:
                entries[-1] = float(value)
            else:
                entries.append(float(value))

    def get_latest(self, metric) -> float:
        """The last value of ``metric``; NaN when it has none."""
        values = self.history.get(metric) or []
        return float(values[-1]) if values else float("nan")

    def get_best(self, metric, mode="min") -> float:
        """The smallest (``mode`` 'min') or largest ('max') value of ``metric``, NaN entries left out; NaN when
        it has no other."""
        if mode not in ("min", "max"):
            raise ValueError(f"Invalid mode '{mode}', use 'min' or 'max'")
        values = [float(v) for v in self.history.get(metric) or [] if not math.isnan(float(v))]
        if not values:
            return float("nan")
        return min(values) if mode == "min" else max(values)

    def reset(self) -> None:
        for key in self.history:
            self.history[key] = []


class CheckpointManager:
    """Checkpoints ``checkpoint_epoch_NNNN.pt`` (0-based epoch) in ``checkpoint_dir``, the newest
    ``max_to_keep`` of them kept (all when None or <= 0), and ``best_model.pt`` when ``save_best``.
    Without a ``checkpoint_dir`` nothing is written."""

    def __init__(self, checkpoint_dir=None, max_to_keep=None, save_best=True):
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.max_to_keep, self.save_best = max_to_keep, save_best
        self.best_val_loss = None
        if self.checkpoint_dir is not None:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)

    def save_checkpoint(self, trainer, optimizer, epoch, training_config=None, filename=None):
        """Write ``trainer`` (a ``TorchANNPotential``) with ``optimizer``'s state after 0-based ``epoch``;
        ``training_config`` (default: the trainer's) is stored with it."""
        if self.checkpoint_dir is None:
            return
        config = training_config if training_config is not None else trainer.training_config
        best = None if self.best_val_loss is None else float(self.best_val_loss)
        payload = trainer.model_payload(
            dict(trainer.history), best, None, config,  # no run state: train(resume_from=...) refuses it, saying so
            optimizer_state_dict=optimizer.state_dict() if optimizer is not None else None,
            extra_metadata={**trainer.extra_metadata, "epoch": int(epoch), "best_val_loss": best})
        write_model_file(self.checkpoint_dir / (filename or checkpoint_name(epoch)), payload)
        self._rotate()

    def _rotate(self) -> None:
        if self.max_to_keep is None or self.max_to_keep <= 0:
            return
        for old in checkpoint_files(self.checkpoint_dir)[: -self.max_to_keep]:
            old.unlink()

    def load_checkpoint(self, path, model, optimizer, device) -> dict:
        """Load a checkpoint's weights (and normalisation, for an ``AtomisticModel``) into ``model`` and its
        optimizer state into ``optimizer`` (None: skipped); returns the payload with ``epoch``, ``history``
        and ``normalization`` (a ``NormalizationManager`` state; None for per-species feature statistics,
        which it cannot hold) set.  RuntimeError naming the file when it cannot be loaded."""
        try:
            payload = read_model_file(path)
            model.load_state_dict(_state_for(model, payload["model_state_dict"]))
            if optimizer is not None:
                optimizer.load_state_dict(_optimizer_state(payload))
        except Exception as err:
            raise RuntimeError(f"Failed to load checkpoint '{path}': {err}") from err
        payload["history"] = payload["training_history"]
        payload["epoch"] = _stored_epoch(payload)
        payload["normalization"] = _normalization_state(payload["model_state_dict"])
        self.best_val_loss = payload.get("best_val_loss")
        return payload

    def should_save_best(self, val_loss) -> bool:
        """Whether ``val_loss`` is below every earlier one (then it becomes the best); a NaN loss never is."""
        if not self.save_best or math.isnan(float(val_loss)):
            return False
        if self.best_val_loss is not None and not val_loss < self.best_val_loss:
            return False
        self.best_val_loss = float(val_loss)
        return True

    def save_best_model(self, trainer, optimizer, epoch, training_config=None):
        if self.save_best:
            self.save_checkpoint(trainer, optimizer, epoch, training_config, filename=BEST_MODEL)

    def infer_start_epoch(self, checkpoint_path, payload=None) -> int:
        """The epoch after the checkpoint's (from ``payload``, else the file name ``checkpoint_epoch_NNNN.pt``);
        0 when neither tells."""
        epoch = _stored_epoch(payload) if payload is not None else None
        if epoch is None:
            name = Path(checkpoint_path).name
            if name.startswith("checkpoint_epoch_") and name.endswith(".pt"):
                try:
                    epoch = checkpoint_epoch(name)
                except ValueError:
                    return 0
        return 0 if epoch is None else int(epoch) + 1


def _state_for(model, state: dict) -> dict:
    """The part of an ``AtomisticModel`` state dict that ``model`` holds: all of it, or the networks' weights
    for ``AtomicNetworks`` or a module holding them as ``net`` (an ``EnergyModelAdapter``)."""
    if isinstance(model, AtomisticModel):
        return state
    networks = {key.removeprefix("networks."): v for key, v in state.items() if key.startswith("networks.")}
    if isinstance(model, AtomicNetworks):
        return networks
    return {f"net.{key}": value for key, value in networks.items()}


def _normalization_state(state: dict):
    """The model's normalisation as ``NormalizationManager.get_state()`` gives it, or None where the species'
    feature statistics differ (models read from Fortran aenet files)."""
    mean, std = state["feature_mean"], state["feature_std"]
    if not (bool((mean == mean[0]).all()) and bool((std == std[0]).all())):
        return None
    return {"normalize_features": True, "normalize_energy": True, "E_shift": float(state["E_shift"]),
            "E_scaling": float(state["E_scaling"]), "feature_mean": mean[0].numpy(), "feature_std": std[0].numpy()}


def _optimizer_state(payload) -> dict:
    """The optimizer state of a checkpoint: CheckpointManager's, or that of the run ``train()`` checkpointed."""
    run_state = payload.get("run_state") or {}
    state = payload.get("optimizer_state_dict") or run_state.get("optimizer")
    if state is None:
        raise ValueError("the file holds no optimizer state (a model file written by save(), not a checkpoint)")
    return state


def _stored_epoch(payload):
    """The 0-based epoch a checkpoint was written after, or None."""
    for source in (payload, payload.get("extra_metadata") or {}, payload.get("run_state") or {}):
        if source.get("epoch") is not None:
            return int(source["epoch"])
    return None
