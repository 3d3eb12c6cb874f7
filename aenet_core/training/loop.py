"""One training run: feature sources and normalisation, epochs, validation, scheduler, and checkpoints.

A checkpoint is a complete model file plus ``run_state``: optimizer,
scheduler, random generators, force subsets, sampler scores, the schedule's
length, the weight average, early stopping and the in-loop metrics a final pass replaced.  Training N epochs, or N/2 and
then N/2 more from the checkpoint, gives the same weights and history.  With a weight
average every model file holds the average and ``run_state`` the raw weights
too.  The run writes files only through the ``save`` callback it is given.
"""
import contextlib
import math
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from aenet_core import compiled
from aenet_core.data.batch import BatchLoader, FeatureSource
from aenet_core.data.cache import LRUCache, PersistentCache
from aenet_core.model.checkpoint import numpy_state, plain_numpy_state
from aenet_core.model.normalization import energy_normalization, feature_statistics
from aenet_core.progress import ProgressLog
from aenet_core.training.controls import (EarlyStopping, WeightAverage, load_raw_weights, plateau_scheduler,
                                          scheduled_rate)
from aenet_core.training.distributed import data_parallel
from aenet_core.training.loss import EnergyForceLoss, recorded_pairs
from aenet_core.training.sampling import Sampler, force_selection
from aenet_core.training.trainout import STOPPED_EARLY

HISTORY_KEYS = ("train_energy_rmse", "test_energy_rmse", "train_energy_mae", "test_energy_mae",
                "train_force_rmse", "test_force_rmse", "train_stress_rmse", "test_stress_rmse", "learning_rate",
                "epoch_time", "forward_time", "backward_time", "data_time", "validation_time")
METRICS = ("energy_rmse", "energy_mae", "force_rmse", "stress_rmse")
NAN_METRICS = dict.fromkeys(METRICS, float("nan"))
BEST_MODEL = "best_model.pt"  # the model of the lowest validation loss, in the checkpoint folder


def empty_history() -> dict:
    return {key: [] for key in HISTORY_KEYS}


class TrainingRun:
    """Everything that changes while ``model`` trains on ``data`` (a ``TrainingData``).

    ``save(path, history, best_val_loss, run_state)`` writes a model file; the
    run calls it for ``best_model.pt`` and the periodic checkpoints.
    """

    def __init__(self, model, data, config, save=None, fit_normalization=True):
        if config.early_stopping_patience is not None and not data.test_idx:
            raise ValueError("TorchTrainingConfig.early_stopping_patience needs validation structures and this "
                             "run has none (testpercent 0, a split without test structures or no test_dataset);"
                             " give a validation set or set early_stopping_patience=None")
        self.model, self.config, self.save = model, config, save
        self.device, self.dtype = next(model.parameters()).device, model.feature_mean.dtype
        self.loss = EnergyForceLoss(config.force_weight, config.force_scale_unbiased, config.stress_weight)
        train_source = feature_source(data.train_set, config, "train")
        test_source = feature_source(data.test_set, config, "val") if data.test_idx else None
        if fit_normalization:  # else the model's own (a warm start keeps what its weights were trained with)
            fit_data_normalization(model, train_source, data.train_idx, config)
        if config.cache_warmup:
            warm_up(config, ((train_source, data.train_idx), (test_source, data.test_idx)))
        workers = (config.num_workers, config.prefetch_factor, config.persistent_workers)
        self.train_loader, self.train_idx = BatchLoader(train_source, *workers), data.train_idx
        self.test_loader = BatchLoader(test_source, *workers) if test_source else None
        self.test_idx = data.test_idx
        self.parallel = data_parallel()  # None in one process; else each process takes a share of every batch
        if self.parallel is not None:
            self.parallel.share(self)
        self.optimizer = config.method.build(model.parameters())
        self.scheduler = None
        if config.use_scheduler and config.scheduler == "plateau" and self.test_idx:
            self.scheduler = plateau_scheduler(self.optimizer, config.scheduler_patience, config.scheduler_factor,
                                               config.scheduler_min_lr)
        seed = config.seed
        self.train_forces = force_selection(data.train_set, self.train_idx, config, 0 if seed is None else seed)
        test_set = data.test_set if test_source else None
        self.test_forces = force_selection(test_set, self.test_idx, config, 1 if seed is None else seed + 1)
        self.sampler = Sampler(config.sampling_policy, data.train_set, self.train_idx, seed)
        self.history = empty_history()
        self.best_val_loss = None
        self.next_epoch = 0
        # The last epoch's in-loop metrics once the final pass has replaced them (None before): a resume that
        # trains puts them back, so that its history is the uninterrupted run's.
        self.loop_metrics = None
        self.planned_epochs = config.iterations  # the cosine's length; a resume keeps the first run's
        self.ema = WeightAverage(model, config.ema_decay) if config.ema_decay else None
        self.early_stopping = None
        if config.early_stopping_patience is not None:
            self.early_stopping = EarlyStopping(config.early_stopping_patience, config.early_stopping_min_delta)

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> dict:
        """Train; returns the history, with ``stopped_early`` (None, or when and why training stopped)."""
        config = self.config
        if self.next_epoch == 0:
            self._check_warmup()
        epochs = range(self.next_epoch, self.next_epoch + config.iterations)
        progress = ProgressLog("epoch", epochs.stop, lines=50, start=epochs.start)
        with compiled.enabled(compiled.worthwhile(self._atom_epochs())):
            bar = tqdm(epochs, desc="epochs", disable=not config.show_progress)
            for epoch in bar:
                if self.stopped_early is not None:
                    break
                if self.loop_metrics is not None:
                    self._set_last_metrics(self.loop_metrics)
                    self.loop_metrics = None
                self._epoch(epoch)
                errors = epoch_errors(self.history)
                progress.update(detail=f" | {errors}")
                bar.set_postfix_str(errors)
        if self.ema is not None:
            self.ema.put_in()  # the model the caller gets holds the average; state_dict keeps the raw weights
        if self.loop_metrics is None:
            self._final_pass()
        return {**self.history, STOPPED_EARLY: self.stopped_early}

    def _final_pass(self) -> None:
        """The last epoch's metrics from a full pass with the final weights (the in-loop ones are means over
        changing weights), kept in ``loop_metrics``.  A resume that trains no epoch returns the history the run
        returned, or would have returned had it ended at the checkpoint."""
        if not self.history["train_energy_rmse"]:
            return
        final = _metric_entries(self.evaluate(self.train_loader, self.train_idx, self.train_forces),
                                self.evaluate(self.test_loader, self.test_idx, self.test_forces))
        self.loop_metrics = {key: self.history[key][-1] for key in final}
        self._set_last_metrics(final)

    def _set_last_metrics(self, metrics) -> None:
        for key, value in metrics.items():
            self.history[key][-1] = value

    def _atom_epochs(self) -> int:
        """Force-supervised training atoms times epochs: the work the force contraction faces."""
        if not self.loss.needs_derivatives or not self.train_forces:
            return 0
        atoms = sum(self.train_loader.source.dataset.atom_counts(sorted(self.train_forces.selected)))
        return atoms * self.config.iterations

    @property
    def stopped_early(self):
        return None if self.early_stopping is None else self.early_stopping.stopped

    def _check_warmup(self):
        config = self.config
        if config.scheduled_by_epoch and 0 < config.iterations <= config.scheduler_warmup_epochs:
            raise ValueError(f"TorchTrainingConfig.scheduler_warmup_epochs ({config.scheduler_warmup_epochs}) must "
                             f"be fewer than iterations ({config.iterations}): the warm-up would take the whole run")

    def _epoch(self, epoch):
        config, started = self.config, time.perf_counter()
        resample = config.force_sampling == "random" and config.force_resample_num_epochs > 0
        if self.train_forces and resample and epoch > 0 and epoch % config.force_resample_num_epochs == 0:
            self.train_forces.draw()
        if config.scheduled_by_epoch:
            for group in self.optimizer.param_groups:
                group["lr"] = scheduled_rate(config, epoch, self.planned_epochs)
        rate = self.optimizer.param_groups[0]["lr"]  # the rate this epoch trains with
        train_means, sums, timing = run_epoch(self.model, self.loss, self.train_loader, self.sampler.order(),
                                                config.batch_size, self.train_forces, self.device, self.dtype,
                                                step=self._step,
                                                progress=config.show_progress and config.show_batch_progress)
        # with several processes every process's structures count: the samplers stay the same
        errors = (sums.structure_errors() if self.parallel is None
                  else self.parallel.epoch_errors(sums.recorded, self.train_idx))
        self.sampler.update(errors)
        with self._averaged():  # validation and the files written see the weight average
            test_means, improved = self._validate(epoch, timing)
            for key, value in _metric_entries(train_means, test_means).items():
                self.history[key].append(value)
            self.history["learning_rate"].append(rate)
            self.history["epoch_time"].append(time.perf_counter() - started)
            for key, value in timing.items():
                self.history[key].append(value)
            self.next_epoch = epoch + 1
            self._checkpoint(epoch, improved)

    def _step(self, loss):
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.parallel is not None:
            self.parallel.sum_gradients(self.model)
        if self.config.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update()

    def _averaged(self):
        return contextlib.nullcontext() if self.ema is None else self.ema.applied()

    def _validate(self, epoch, timing):
        """(validation metrics, whether the loss improved on the best); steps the plateau scheduler and early
        stopping."""
        validation_started = time.perf_counter()
        test_means = self.evaluate(self.test_loader, self.test_idx, self.test_forces)
        timing["validation_time"] = time.perf_counter() - validation_started
        force_rmse, stress_rmse = (None if math.isnan(test_means[key]) else test_means[key]
                                   for key in ("force_rmse", "stress_rmse"))
        val_loss = self.loss.combine(test_means["energy_rmse"], force_rmse, stress_rmse)
        if self.scheduler is not None:
            self.scheduler.step(val_loss)
        if self.early_stopping is not None:
            self.early_stopping.update(epoch, val_loss)
        improved = not math.isnan(val_loss) and (self.best_val_loss is None or val_loss < self.best_val_loss)
        if improved:
            self.best_val_loss = val_loss
        return test_means, improved

    def evaluate(self, loader, indices, forces):
        if loader is None or not indices:
            return dict(NAN_METRICS)
        means, _, _ = run_epoch(self.model, self.loss, loader, indices, self.config.batch_size, forces, self.device,
                                self.dtype, label="validate")
        return means

    # -- checkpoints --------------------------------------------------------------------

    def _checkpoint(self, epoch, improved):
        config = self.config
        if config.checkpoint_dir is None or self.save is None:
            return
        directory = Path(config.checkpoint_dir)
        if config.save_best and improved:
            self.save(directory / BEST_MODEL, self.history, self.best_val_loss, self.state_dict())
        interval = config.checkpoint_interval
        # The epoch an early stop ends on is checkpointed too, so that a resume knows it stopped.
        if interval and ((epoch + 1) % interval == 0 or self.stopped_early is not None):
            self.save(directory / checkpoint_name(epoch), self.history, self.best_val_loss, self.state_dict())
            if config.max_checkpoints is not None:
                for old in checkpoint_files(directory)[: -config.max_checkpoints]:
                    old.unlink()

    def state_dict(self) -> dict:
        """What a resume needs besides weights and history; tensors and plain data only."""
        selections = {"train": self.train_forces, "test": self.test_forces}
        return {
            "epoch": self.next_epoch - 1,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "sampler": self.sampler.state_dict(),
            "forces": {k: s.state_dict() if s else None for k, s in selections.items()},
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "numpy": plain_numpy_state(np.random.get_state())},
            "planned_epochs": self.planned_epochs,
            "ema": self.ema.state_dict() if self.ema else None,
            "early_stopping": self.early_stopping.state_dict() if self.early_stopping else None,
            "loop_metrics": self.loop_metrics,
        }

    def load_state_dict(self, state, history, best_val_loss) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        for selection, saved in ((self.train_forces, state["forces"]["train"]),
                                 (self.test_forces, state["forces"]["test"])):
            if selection is not None and saved is not None:
                selection.load_state_dict(saved)
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(numpy_state(state["rng"]["numpy"]))
        self.history = {key: list(values) for key, values in history.items() if key != STOPPED_EARLY}
        epochs = len(self.history["train_energy_rmse"])
        for key in HISTORY_KEYS:  # a checkpoint from before a metric existed has none of it
            self.history.setdefault(key, [float("nan")] * epochs)
        self.best_val_loss = best_val_loss
        self.next_epoch = state["epoch"] + 1
        self.loop_metrics = state.get("loop_metrics")
        self._load_controls(state)

    def _load_controls(self, state) -> None:
        """The schedule's length, weight average and early stopping; checkpoints written before these
        existed have none (the schedule then ends with this run, and the average starts from the loaded
        weights)."""
        self.planned_epochs = state.get("planned_epochs", self.next_epoch + self.config.iterations)
        saved_ema = state.get("ema")
        if saved_ema is not None:
            load_raw_weights(self.model, saved_ema)
        if self.ema is not None:
            self.ema.load_average(saved_ema["average"] if saved_ema else self.ema.parameters)
        if self.early_stopping is not None and state.get("early_stopping") is not None:
            self.early_stopping.load_state_dict(state["early_stopping"])


def run_epoch(model, loss, loader, order, batch_size, selection, device, dtype, step=None, progress=False,
              label="train"):
    """One pass over ``order`` (dataset indices, in draw order); returns (means, the ``EpochSums``, timings).

    ``step(loss)`` (training; None validates) updates the weights from each batch's loss. Epoch metrics are
    means over batches."""
    train = step is not None
    model.train(train)
    dataset = loader.source.dataset
    selected = selection.selected if selection is not None else set()
    plan = []
    for start in range(0, len(order), batch_size):
        indices = tuple(order[start: start + batch_size])
        plan.append((indices, tuple(i for i in indices if i in selected)))
    sums = EpochSums()
    timing = {"forward_time": 0.0, "backward_time": 0.0, "data_time": 0.0}
    batches = loader(plan)
    for indices, _ in tqdm(plan, desc=label, leave=False, disable=not progress):
        t0 = time.perf_counter()
        batch = next(batches).to(device, dtype)
        labelled_atoms = (sum(dataset.atom_counts([i for i in indices if dataset.has_forces(i)]))
                          if loss.needs_derivatives else 0)  # only the force term asks
        t1 = time.perf_counter()
        with torch.set_grad_enabled(train or loss.needs_derivatives):
            value, metrics = loss.of_batch(model, batch, labelled_atoms, train)
        t2 = time.perf_counter()
        if train:
            step(value)
        t3 = time.perf_counter()
        timing["data_time"] += t1 - t0
        timing["forward_time"] += t2 - t1
        timing["backward_time"] += t3 - t2
        sums.add(batch.indices, metrics)
    return sums.means(), sums, timing


class EpochSums:
    """A pass's batch metrics: means over its batches (force and stress over the batches with those terms) and
    each structure's |dE|/N.  Metrics may be tensors on the model's device: summed there and read once the pass
    ends (on a GPU a read per batch would wait for every batch to finish before the next one is prepared)."""

    def __init__(self):
        self.sums = dict.fromkeys(METRICS, 0.0)
        self.supervised = {"force_rmse": 0, "stress_rmse": 0}  # batches with each term
        self.batches = 0
        self.recorded = []  # (dataset indices, |dE| / N of each) per batch that names its structures

    def add(self, indices, metrics) -> None:
        self.batches += 1
        self.sums["energy_rmse"] += metrics.energy_rmse
        self.sums["energy_mae"] += metrics.energy_mae
        for key in self.supervised:
            if _present(getattr(metrics, key)):
                self.sums[key] += getattr(metrics, key)
                self.supervised[key] += 1
        if len(indices):
            self.recorded.append((indices, metrics.abs_errors))

    def means(self) -> dict:
        batches = max(1, self.batches)
        return {"energy_rmse": float(self.sums["energy_rmse"]) / batches,
                "energy_mae": float(self.sums["energy_mae"]) / batches,
                **{key: float(self.sums[key]) / count if count else float("nan")
                   for key, count in self.supervised.items()}}

    def structure_errors(self) -> dict:
        """{dataset index: mean |dE| / N over the batches that held it}."""
        return _mean_errors(self.recorded)


def _present(value) -> bool:
    """Whether a batch metric was measured (a float NaN is a term the batch had no labels for)."""
    return not (isinstance(value, float) and math.isnan(value))


def _mean_errors(recorded) -> dict:
    """{dataset index: mean |dE| / N over the batches that held it}."""
    errors = {}
    for index, error in recorded_pairs(recorded):
        errors.setdefault(index, []).append(error)
    return {i: sum(e) / len(e) for i, e in errors.items()}


def feature_source(dataset, config, split) -> FeatureSource:
    """The split's FeatureSource with the runtime caches the configuration enables for it."""
    def cache(enabled, max_entries, kind):
        if not enabled or config.cache_scope not in ("all", split):
            return None
        if config.cache_persist_dir is not None:
            return PersistentCache(max_entries, config.cache_persist_dir, dataset, kind)
        return LRUCache(max_entries)

    return FeatureSource(dataset, config_type_weights=config.config_type_weights,
                         derivative_dtype=config.derivative_dtype(),
                         feature_cache=cache(config.cache_features, config.cache_feature_max_entries, "features"),
                         derivative_cache=cache(config.cache_force_triplets, config.cache_force_triplet_max_entries,
                                                "derivatives"),
                         neighbor_cache=cache(config.cache_neighbors, config.cache_neighbor_max_entries, "neighbors"))


def fit_data_normalization(model, source, indices, config) -> None:
    """Feature statistics and energy scaling from the training split (or as the configuration fixes them)."""
    if config.normalize_features:
        if config.feature_stats is not None:
            mean, std = config.feature_stats["mean"], config.feature_stats["std"]
        else:
            chunks = (source.batch(indices[i: i + 64], lambda _: False).features for i in range(0, len(indices), 64))
            stats = feature_statistics(chunks)
            mean, std = stats["mean"], stats["std"]
        model.set_feature_statistics(mean, std)
    if config.normalize_energy:
        if config.E_shift is not None:
            shift, scaling = config.E_shift, config.E_scaling
        else:
            shift, scaling = energy_normalization(source.dataset.referenced_energy_per_atom(i) for i in indices)
        model.set_energy_normalization(shift, scaling)


def warm_up(config, splits) -> None:
    """Fill the runtime caches before epoch 0 (in this process, so not with DataLoader workers)."""
    if config.num_workers > 0:
        warnings.warn("cache_warmup is skipped with num_workers > 0: each worker keeps its own caches",
                      stacklevel=4)
        return
    for source, indices in splits:
        if source is None:
            continue
        if source.feature_cache is not None:
            source.batch(indices, lambda _: False)
        if source.derivative_cache is not None and (config.force_weight > 0 or config.stress_weight > 0):
            source.batch([i for i in indices if source.dataset.has_forces(i)], lambda _: True)


def checkpoint_name(epoch: int) -> str:
    """The periodic checkpoint written after the 0-based ``epoch``."""
    return f"checkpoint_epoch_{epoch:04d}.pt"


def checkpoint_files(directory) -> list:
    """The periodic checkpoints ``checkpoint_epoch_<epoch>.pt`` in ``directory``, oldest epoch first."""
    return sorted(Path(directory).glob("checkpoint_epoch_*.pt"), key=checkpoint_epoch)


def checkpoint_epoch(path) -> int:
    """The 0-based epoch after which a periodic checkpoint was written."""
    return int(Path(path).stem.rsplit("_", 1)[1])


def epoch_errors(history) -> str:
    """The last epoch's errors and learning rate, for the progress line and bar."""
    parts = []
    for name, key, unit in (("RMSE_E", "energy_rmse", "eV/atom"), ("RMSE_F", "force_rmse", "eV/Å"),
                            ("RMSE_S", "stress_rmse", "eV/Å³")):
        train, test = history[f"train_{key}"][-1], history[f"test_{key}"][-1]
        if not (math.isnan(train) and math.isnan(test)):
            parts.append(f"{name} train {train:.4g} test {test:.4g} {unit}")
    parts.append(f"lr {history['learning_rate'][-1]:.3g}")
    return " | ".join(parts)


def _metric_entries(train, test) -> dict:
    return {
        "train_energy_rmse": train["energy_rmse"], "test_energy_rmse": test["energy_rmse"],
        "train_energy_mae": train["energy_mae"], "test_energy_mae": test["energy_mae"],
        "train_force_rmse": train["force_rmse"], "test_force_rmse": test["force_rmse"],
        "train_stress_rmse": train["stress_rmse"], "test_stress_rmse": test["stress_rmse"],
    }
