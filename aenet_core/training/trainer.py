"""One pass over a split: featurized batches, the loss, the optimizer step and the epoch's metrics.

Loss per batch (physical units): (1 - a) RMSE_E + a RMSE_F, with RMSE_E over
per-atom energy errors (eV/atom) and RMSE_F over all force components of the
force-supervised structures (eV/Å); a batch without force supervision uses
(1 - a) RMSE_E.  Epoch metrics are means over batches.
"""
import math
import random
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

HISTORY_KEYS = ("train_energy_rmse", "test_energy_rmse", "train_energy_mae", "test_energy_mae",
                "train_force_rmse", "test_force_rmse", "learning_rate", "epoch_time", "forward_time",
                "backward_time", "data_time", "validation_time")


def empty_history() -> dict:
    return {key: [] for key in HISTORY_KEYS}


@dataclass
class ForceSelection:
    """Which force-labelled structures of a split are force-supervised in the current epoch."""

    labelled: list  # dataset indices with force labels
    fraction: float
    minimum: int
    rng: random.Random
    selected: set = field(default_factory=set)

    def draw(self) -> None:
        if self.fraction >= 1.0:
            self.selected = set(self.labelled)
            return
        n = int(len(self.labelled) * self.fraction)
        n = min(max(n, self.minimum), len(self.labelled))
        self.selected = set(self.rng.sample(self.labelled, n))


@dataclass
class BatchMetrics:
    energy_rmse: float
    energy_mae: float
    force_rmse: float  # NaN without force supervision
    abs_errors: torch.Tensor  # |dE| / N per structure, for adaptive sampling


def batch_loss(model, batch, alpha: float, scale_unbiased: bool, n_labelled_atoms: int, train: bool):
    """(loss tensor, BatchMetrics) for one featurized batch on the model's device."""
    n_force = batch.n_force_structures
    if n_force and alpha > 0:
        energies, forces = model.energies_and_forces(batch.features, batch.species_idx, batch.batch,
                                                     batch.n_structures, _ForceView(batch), create_graph=train)
    else:
        energies, forces = model(batch.features, batch.species_idx, batch.batch, batch.n_structures), None
    per_atom = (energies - batch.energy_ref) / batch.n_atoms
    energy_rmse = torch.sqrt(torch.mean(per_atom**2))
    loss = (1 - alpha) * energy_rmse
    force_rmse = float("nan")
    if forces is not None:
        f_error = forces[: batch.n_force_atoms] - batch.forces_ref
        rmse_f = torch.sqrt(torch.mean(f_error**2))
        supervised = batch.n_force_atoms / n_labelled_atoms if n_labelled_atoms else 1.0
        if scale_unbiased and 0 < supervised < 1:
            rmse_f = rmse_f / math.sqrt(supervised)
        loss = loss + alpha * rmse_f
        force_rmse = float(rmse_f.detach())
    metrics = BatchMetrics(float(energy_rmse.detach()), float(per_atom.detach().abs().mean()), force_rmse,
                           per_atom.detach().abs())
    return loss, metrics


class _ForceView:
    """Adapts a Batch's derivatives (covering only the first atoms) to a full-batch contraction."""

    def __init__(self, batch):
        self.derivatives = batch.derivatives
        self.n_atoms = len(batch.features)

    def contract(self, grad_features):
        partial = self.derivatives.contract(grad_features[: self.derivatives.n_atoms])
        return torch.cat([partial, partial.new_zeros(self.n_atoms - len(partial), 3)])


def run_epoch(model, loader, order, batch_size, selection, alpha, config, device, dtype, optimizer=None,
              progress=False, label="train"):
    """One pass over ``order`` (dataset indices, in draw order); returns (means, per-structure errors, timings)."""
    train = optimizer is not None
    model.train(train)
    dataset = loader.source.dataset
    selected = selection.selected if selection is not None else set()
    plan = []
    for start in range(0, len(order), batch_size):
        indices = tuple(order[start: start + batch_size])
        plan.append((indices, tuple(i for i in indices if i in selected)))
    sums = {"energy_rmse": 0.0, "energy_mae": 0.0, "force_rmse": 0.0}
    n_force_batches = 0
    errors = {}
    timing = {"forward_time": 0.0, "backward_time": 0.0, "data_time": 0.0}
    batches = loader(plan)
    for indices, _ in tqdm(plan, desc=label, leave=False, disable=not progress):
        t0 = time.perf_counter()
        batch = next(batches).to(device, dtype)
        labelled_atoms = sum(dataset.atom_counts([i for i in indices if dataset.has_forces(i)]))
        t1 = time.perf_counter()
        with torch.set_grad_enabled(train or alpha > 0):
            loss, metrics = batch_loss(model, batch, alpha, config.force_scale_unbiased, labelled_atoms, train)
        t2 = time.perf_counter()
        if train:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        t3 = time.perf_counter()
        timing["data_time"] += t1 - t0
        timing["forward_time"] += t2 - t1
        timing["backward_time"] += t3 - t2
        sums["energy_rmse"] += metrics.energy_rmse
        sums["energy_mae"] += metrics.energy_mae
        if not math.isnan(metrics.force_rmse):
            sums["force_rmse"] += metrics.force_rmse
            n_force_batches += 1
        for index, error in zip(batch.indices, metrics.abs_errors.tolist()):
            errors.setdefault(index, []).append(error)
    means = {
        "energy_rmse": sums["energy_rmse"] / len(plan),
        "energy_mae": sums["energy_mae"] / len(plan),
        "force_rmse": sums["force_rmse"] / n_force_batches if n_force_batches else float("nan"),
    }
    return means, {i: sum(e) / len(e) for i, e in errors.items()}, timing
