"""One training run: epochs, validation, scheduler, checkpoints and everything a resume must restore.

A checkpoint is a complete model file (``TorchANNPotential.save`` format) plus
``run_state``: optimizer, scheduler, random generators, force subsets and
sampler scores.  Training N epochs, or N/2 and then N/2 more from the
checkpoint, gives the same weights.
"""
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from aenet_core.training.data import BatchLoader
from aenet_core.training.trainer import ForceSelection, empty_history, run_epoch

NAN_METRICS = {"energy_rmse": float("nan"), "energy_mae": float("nan"), "force_rmse": float("nan")}


class Sampler:
    """Training order per epoch: uniform shuffling, or weighted draws with replacement.

    ``energy_weighted``: w_i = 1 / (1 + D_i / D_max), D_i = e_i - min e (all 1
    when D_max <= 0).  ``error_weighted``: scores start at 1 and become each
    sampled structure's mean |dE|/N of the last epoch; see ``adaptive_weights``.
    """

    def __init__(self, policy, dataset, indices, seed):
        self.policy, self.indices = policy, list(indices)
        self.shuffle = torch.Generator().manual_seed(seed + 200) if seed is not None else None
        self.draws = torch.Generator().manual_seed(seed + 100) if seed is not None else None
        self.scores = torch.ones(len(self.indices), dtype=torch.float64)
        self.weights = torch.ones(len(self.indices), dtype=torch.float64)
        if policy == "energy_weighted":
            e = torch.tensor([dataset.referenced_energy_per_atom(i) for i in self.indices], dtype=torch.float64)
            delta = e - e.min()
            if delta.max() > 0:
                self.weights = 1.0 / (1.0 + delta / delta.max())

    def order(self) -> list:
        if self.policy == "uniform":
            return [self.indices[i] for i in torch.randperm(len(self.indices), generator=self.shuffle).tolist()]
        draws = torch.multinomial(self.weights, len(self.indices), replacement=True, generator=self.draws)
        return [self.indices[i] for i in draws.tolist()]

    def update(self, errors: dict) -> None:
        """error_weighted: each sampled structure's score becomes its mean |dE|/N of the epoch."""
        if self.policy != "error_weighted":
            return
        position = {index: k for k, index in enumerate(self.indices)}
        for index, error in errors.items():
            self.scores[position[index]] = error
        self.weights = adaptive_weights(self.scores)

    def state_dict(self) -> dict:
        return {"shuffle": _generator_state(self.shuffle), "draws": _generator_state(self.draws),
                "scores": self.scores.clone(), "weights": self.weights.clone()}

    def load_state_dict(self, state) -> None:
        _restore_generator(self.shuffle, state["shuffle"])
        _restore_generator(self.draws, state["draws"])
        self.scores, self.weights = state["scores"].clone(), state["weights"].clone()


def adaptive_weights(scores):
    """Non-finite -> 0, clamp at 0; all zero -> uniform; else clamp at 1e-12 and scale to unit mean."""
    u = torch.where(torch.isfinite(scores), scores, torch.zeros_like(scores)).clamp(min=0)
    if not bool((u > 0).any()):
        return torch.ones_like(u)
    u = u.clamp(min=1e-12)
    return u / u.mean()


def force_selection(dataset, indices, config, seed):
    """The force-supervised subset of a split (None without force training or force labels)."""
    if config.force_weight == 0 or dataset is None:
        return None
    labelled = [i for i in indices if dataset.has_forces(i)]
    if not labelled:
        return None
    selection = ForceSelection(labelled, config.force_fraction, config.force_min_structures_per_epoch or 0,
                               random.Random(seed))
    selection.draw()
    return selection


class TrainingRun:
    """Everything that changes while a potential trains; ``potential`` supplies model and files."""

    def __init__(self, potential, config, train_source, train_idx, test_source, test_idx, device, dtype):
        self.potential, self.config = potential, config
        workers = (config.num_workers, config.prefetch_factor, config.persistent_workers)
        self.train_loader, self.train_idx = BatchLoader(train_source, *workers), train_idx
        self.test_loader = BatchLoader(test_source, *workers) if test_source else None
        self.test_idx = test_idx
        self.device, self.dtype = device, dtype
        model = potential.model
        self.optimizer = config.method.build(model.parameters())
        self.scheduler = None
        if config.use_scheduler and test_idx:
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="min", patience=config.scheduler_patience, factor=config.scheduler_factor,
                min_lr=config.scheduler_min_lr)
        seed = config.seed
        self.train_forces = force_selection(train_source.dataset, train_idx, config, 0 if seed is None else seed)
        test_dataset = test_source.dataset if test_source else None
        self.test_forces = force_selection(test_dataset, test_idx, config, 1 if seed is None else seed + 1)
        self.sampler = Sampler(config.sampling_policy, train_source.dataset, train_idx, seed)
        self.history = empty_history()
        self.best_val_loss = None
        self.next_epoch = 0

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> dict:
        config = self.config
        epochs = range(self.next_epoch, self.next_epoch + config.iterations)
        for epoch in tqdm(epochs, desc="epochs", disable=not config.show_progress):
            self._epoch(epoch)
        if config.iterations:  # the last epoch's metrics from a full pass with the final weights
            final = _metric_entries(self.evaluate(self.train_loader, self.train_idx, self.train_forces),
                                    self.evaluate(self.test_loader, self.test_idx, self.test_forces))
            for key, value in final.items():
                self.history[key][-1] = value
        return self.history

    def _epoch(self, epoch):
        config, started = self.config, time.perf_counter()
        resample = config.force_sampling == "random" and config.force_resample_num_epochs > 0
        if self.train_forces and resample and epoch > 0 and epoch % config.force_resample_num_epochs == 0:
            self.train_forces.draw()
        train_means, errors, timing = run_epoch(
            self.potential.model, self.train_loader, self.sampler.order(), config.batch_size, self.train_forces,
            config.force_weight, config, self.device, self.dtype, optimizer=self.optimizer,
            progress=config.show_batch_progress)
        self.sampler.update(errors)
        validation_started = time.perf_counter()
        test_means = self.evaluate(self.test_loader, self.test_idx, self.test_forces)
        timing["validation_time"] = time.perf_counter() - validation_started
        val_loss = (1 - config.force_weight) * test_means["energy_rmse"]
        if config.force_weight > 0 and not math.isnan(test_means["force_rmse"]):
            val_loss += config.force_weight * test_means["force_rmse"]
        if self.scheduler is not None:
            self.scheduler.step(val_loss)
        improved = not math.isnan(val_loss) and (self.best_val_loss is None or val_loss < self.best_val_loss)
        if improved:
            self.best_val_loss = val_loss
        for key, value in _metric_entries(train_means, test_means).items():
            self.history[key].append(value)
        self.history["learning_rate"].append(self.optimizer.param_groups[0]["lr"])
        self.history["epoch_time"].append(time.perf_counter() - started)
        for key, value in timing.items():
            self.history[key].append(value)
        self.next_epoch = epoch + 1
        self._checkpoint(epoch, improved)

    def evaluate(self, loader, indices, forces):
        if loader is None or not indices:
            return dict(NAN_METRICS)
        means, _, _ = run_epoch(self.potential.model, loader, indices, self.config.batch_size, forces,
                                self.config.force_weight, self.config, self.device, self.dtype, label="validate")
        return means

    # -- checkpoints --------------------------------------------------------------------

    def _checkpoint(self, epoch, improved):
        config = self.config
        if config.checkpoint_dir is None:
            return
        directory = Path(config.checkpoint_dir)
        if config.save_best and improved:
            self.potential.write_model_file(directory / "best_model.pt", self)
        if config.checkpoint_interval and (epoch + 1) % config.checkpoint_interval == 0:
            self.potential.write_model_file(directory / f"checkpoint_epoch_{epoch:04d}.pt", self)
            if config.max_checkpoints is not None:
                for old in checkpoint_files(directory)[: -config.max_checkpoints]:
                    old.unlink()

    def state_dict(self) -> dict:
        selections = {"train": self.train_forces, "test": self.test_forces}
        return {
            "epoch": self.next_epoch - 1,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "sampler": self.sampler.state_dict(),
            "forces": {k: (s.rng.getstate(), sorted(s.selected)) if s else None for k, s in selections.items()},
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
        }

    def load_state_dict(self, state, history, best_val_loss) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        for selection, saved in ((self.train_forces, state["forces"]["train"]),
                                 (self.test_forces, state["forces"]["test"])):
            if selection is not None and saved is not None:
                selection.rng.setstate(saved[0])
                selection.selected = set(saved[1])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        self.history = {key: list(values) for key, values in history.items()}
        self.best_val_loss = best_val_loss
        self.next_epoch = state["epoch"] + 1


def checkpoint_files(directory) -> list:
    """The periodic checkpoints ``checkpoint_epoch_<epoch>.pt`` in ``directory``, oldest epoch first."""
    return sorted(Path(directory).glob("checkpoint_epoch_*.pt"), key=checkpoint_epoch)


def checkpoint_epoch(path) -> int:
    """The 0-based epoch after which a periodic checkpoint was written."""
    return int(Path(path).stem.rsplit("_", 1)[1])


def _metric_entries(train, test) -> dict:
    return {
        "train_energy_rmse": train["energy_rmse"], "test_energy_rmse": test["energy_rmse"],
        "train_energy_mae": train["energy_mae"], "test_energy_mae": test["energy_mae"],
        "train_force_rmse": train["force_rmse"], "test_force_rmse": test["force_rmse"],
    }


def _generator_state(generator):
    return None if generator is None else generator.get_state()


def _restore_generator(generator, state):
    if generator is not None and state is not None:
        generator.set_state(state)
