"""``TorchANNPotential``: train, save, load and evaluate one aenet-style potential."""
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from aenet_core.descriptor import ChebyshevDescriptor
from aenet_core.io.common import atomic_write
from aenet_core.model import AtomisticModel, energy_normalization, feature_statistics
from aenet_core.training.config import TorchTrainingConfig, method_from_dict
from aenet_core.training.data import (BoundedCache, FeatureSource, StructureDataset, as_structures, split_indices,
                                      warn_missing_references)
from aenet_core.training.trainer import ForceSelection, empty_history, run_epoch
from aenet_core.training.trainout import TrainOut

MODEL_SCHEMA_VERSION = "1.0"


@dataclass
class PredictOut:
    """Predictions for a list of structures (energies in eV, forces in eV/Å)."""

    coords: list
    atom_types: list
    total_energy: list
    cohesive_energy: list  # total energy minus the atomic reference energies (eV, not per atom)
    atom_energies: list  # physical per-atom energies: out / E_scaling + E_shift + E_atom
    forces: Optional[list]
    structure_paths: Optional[list] = None

    @property
    def num_structures(self) -> int:
        return len(self.total_energy)

    def num_atoms(self, i: int) -> int:
        return len(self.atom_types[i])

    @property
    def total_energy_per_atom(self) -> list:
        return [e / len(t) for e, t in zip(self.total_energy, self.atom_types)]

    @property
    def cohesive_energy_per_atom(self) -> list:
        return [e / len(t) for e, t in zip(self.cohesive_energy, self.atom_types)]


class TorchANNPotential:
    """Per-species atomic networks on a Chebyshev descriptor.

    ``arch`` is ``{species: [(nodes, activation), ...]}`` (hidden layers; the
    output layer is linear with one node).  Activations: linear, tanh,
    sigmoid, mtanh, twist.
    """

    def __init__(self, arch, descriptor: ChebyshevDescriptor):
        self.descriptor = descriptor
        self.model = AtomisticModel(arch, descriptor.species, descriptor.n_features, dtype=descriptor.dtype)
        self.arch = self.model.arch
        self.history = empty_history()
        self.training_config = None
        self.best_val_loss = None
        self._optimizer_state = None

    # ----------------------------------------------------------------------------- training

    def train(self, structures=None, dataset=None, train_dataset=None, test_dataset=None,
              config: Optional[TorchTrainingConfig] = None) -> TrainOut:
        """Train on ``structures`` (Structures, ase.Atoms or file paths; split by ``testpercent``), or on
        a prebuilt ``dataset`` (split likewise), or on ``train_dataset``/``test_dataset`` as given."""
        config = config or TorchTrainingConfig()
        device, dtype = config.resolved_device(), config.resolved_dtype(self.descriptor.dtype)
        if config.seed is not None:
            _seed_everything(config.seed)
        train_set, train_idx, test_set, test_idx = self._resolve_data(structures, dataset, train_dataset,
                                                                      test_dataset, config)
        atomic_energies = train_set.atomic_energies
        warn_missing_references(atomic_energies, self.descriptor.species)
        # Built after seeding, so the initial weights follow config.seed.
        self.model = AtomisticModel(self.arch, self.descriptor.species, self.descriptor.n_features,
                                    atomic_energies=atomic_energies, dtype=dtype).to(device)
        train_source = self._source(train_set, config, "train")
        test_source = self._source(test_set, config, "val") if test_idx else None
        self._normalize(train_source, train_idx, config)

        optimizer = config.method.build(self.model.parameters())
        scheduler = None
        if config.use_scheduler and test_idx:
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", patience=config.scheduler_patience, factor=config.scheduler_factor,
                min_lr=config.scheduler_min_lr)
        alpha = config.force_weight
        seed = config.seed
        train_forces = self._force_selection(train_set, train_idx, config, 0 if seed is None else seed)
        test_forces = self._force_selection(test_set, test_idx, config, 1 if seed is None else seed + 1)
        shuffle = torch.Generator().manual_seed(seed + 200) if seed is not None else None
        sampler = _Sampler(config.sampling_policy, train_set, train_idx, seed)

        history = empty_history()
        epochs = range(config.iterations)
        for epoch in tqdm(epochs, desc="epochs", disable=not config.show_progress):
            started = time.perf_counter()
            if train_forces and config.force_sampling == "random" and config.force_resample_num_epochs > 0 \
                    and epoch > 0 and epoch % config.force_resample_num_epochs == 0:
                train_forces.draw()
            order = sampler.order(shuffle)
            train_means, errors, timing = run_epoch(
                self.model, train_source, order, config.batch_size, train_forces, alpha, config, device, dtype,
                optimizer=optimizer, progress=config.show_batch_progress)
            sampler.update(errors)
            test_means = self._evaluate(test_source, test_idx, test_forces, alpha, config, device, dtype)
            val_loss = _combined(test_means, alpha)
            if scheduler is not None:
                scheduler.step(val_loss)
            if not math.isnan(val_loss) and (self.best_val_loss is None or val_loss < self.best_val_loss):
                self.best_val_loss = val_loss
            _record(history, train_means, test_means, optimizer.param_groups[0]["lr"],
                    time.perf_counter() - started, timing)

        if config.iterations:  # the last epoch's metrics from a full pass with the final weights
            final_train = self._evaluate(train_source, train_idx, train_forces, alpha, config, device, dtype)
            final_test = self._evaluate(test_source, test_idx, test_forces, alpha, config, device, dtype)
            for key, value in _metric_entries(final_train, final_test).items():
                history[key][-1] = value
        self.history = history
        self.training_config = config
        self._optimizer_state = optimizer.state_dict()
        return TrainOut(history, config=config.to_dict())

    def _resolve_data(self, structures, dataset, train_dataset, test_dataset, config):
        if train_dataset is not None:
            test_idx = list(range(len(test_dataset))) if test_dataset is not None else []
            return train_dataset, list(range(len(train_dataset))), test_dataset, test_idx
        if dataset is None:
            if structures is None:
                raise ValueError("train() needs structures=, dataset= or train_dataset=")
            dataset = StructureDataset(as_structures(structures), self.descriptor, max_energy=config.max_energy,
                                       max_forces=config.max_forces, atomic_energies=config.atomic_energies)
        train_idx, test_idx = split_indices(len(dataset), config.testpercent, config.split_seed)
        if not train_idx:
            raise ValueError(f"testpercent={config.testpercent} leaves no training structure "
                             f"out of {len(dataset)}")
        return dataset, train_idx, dataset, test_idx

    def _source(self, dataset, config, split):
        cached = config.cache_scope in ("all", split)
        features = BoundedCache(config.cache_feature_max_entries) if cached and config.cache_features else None
        derivatives = (BoundedCache(config.cache_force_triplet_max_entries)
                       if cached and config.cache_force_triplets else None)
        return FeatureSource(dataset, feature_cache=features, derivative_cache=derivatives)

    def _normalize(self, source, indices, config):
        if config.normalize_features:
            if config.feature_stats is not None:
                mean, std = config.feature_stats["mean"], config.feature_stats["std"]
            else:
                chunks = (source.batch(indices[i: i + 64], lambda _: False).features
                          for i in range(0, len(indices), 64))
                stats = feature_statistics(chunks)
                mean, std = stats["mean"], stats["std"]
            self.model.set_feature_statistics(mean, std)
        if config.normalize_energy:
            if config.E_shift is not None:
                shift, scaling = config.E_shift, config.E_scaling
            else:
                shift, scaling = energy_normalization(
                    source.dataset.referenced_energy_per_atom(i) for i in indices)
            self.model.set_energy_normalization(shift, scaling)

    @staticmethod
    def _force_selection(dataset, indices, config, seed):
        if config.force_weight == 0 or dataset is None:
            return None
        labelled = [i for i in indices if dataset.has_forces(i)]
        if not labelled:
            return None
        minimum = config.force_min_structures_per_epoch or 0
        selection = ForceSelection(labelled, config.force_fraction, minimum, random.Random(seed))
        selection.draw()
        return selection

    def _evaluate(self, source, indices, forces, alpha, config, device, dtype):
        if source is None or not indices:
            return {"energy_rmse": float("nan"), "energy_mae": float("nan"), "force_rmse": float("nan")}
        means, _, _ = run_epoch(self.model, source, indices, config.batch_size, forces, alpha, config, device,
                                dtype, label="validate")
        return means

    # ----------------------------------------------------------------------------- files

    def save(self, path) -> None:
        """Write the model (weights, normalisation, descriptor, history, config) to ``path`` atomically."""
        payload = {
            "schema_version": MODEL_SCHEMA_VERSION,
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "torch_version": torch.__version__,
            "architecture": self.arch,
            "descriptor_config": self.descriptor.get_config(),
            "model_state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer_state_dict": self._optimizer_state,
            "training_history": self.history,
            "best_val_loss": self.best_val_loss,
            "training_config": self.training_config.to_dict() if self.training_config else None,
            "atomic_energies": dict(zip(self.descriptor.species, self.model.atomic_energies.tolist())),
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, binary=True) as handle:
            torch.save(payload, handle)

    @classmethod
    def from_file(cls, path, device=None) -> "TorchANNPotential":
        """Load a model written by ``save``; ``device`` moves it (a stored CUDA device falls back to CPU)."""
        payload = torch.load(path, map_location="cpu", weights_only=False)
        if payload.get("schema_version") != MODEL_SCHEMA_VERSION:
            raise ValueError(f"{path}: model schema {payload.get('schema_version')!r} is not "
                             f"{MODEL_SCHEMA_VERSION!r}")
        config = payload["descriptor_config"]
        stored = torch.device(config.get("device", "cpu"))
        target = device or (stored if stored.type != "cuda" or torch.cuda.is_available() else "cpu")
        potential = cls(payload["architecture"], ChebyshevDescriptor.from_config(config, device=target))
        state = payload["model_state_dict"]
        potential.model = AtomisticModel(payload["architecture"], potential.descriptor.species,
                                         potential.descriptor.n_features, dtype=state["feature_mean"].dtype)
        potential.model.load_state_dict(state)
        potential.model.to(target)
        potential.history = payload["training_history"]
        potential.best_val_loss = payload["best_val_loss"]
        potential._optimizer_state = payload["optimizer_state_dict"]
        if payload["training_config"] is not None:
            potential.training_config = TorchTrainingConfig.from_dict(payload["training_config"])
        return potential

    # ----------------------------------------------------------------------------- inference

    def predict(self, structures, eval_forces: bool = False, batch_size: int = 32) -> PredictOut:
        """Energies (and forces) of Structures, ase.Atoms or structure files."""
        paths = [str(s) for s in structures] if all(isinstance(s, (str, Path)) for s in structures) else None
        structures = as_structures(structures)
        device = next(self.model.parameters()).device
        dtype = self.model.feature_mean.dtype
        totals, atom_energies, forces = [], [], []
        for start in range(0, len(structures), batch_size):
            chunk = structures[start: start + batch_size]
            dataset = _UnlabelledDataset(chunk, self.descriptor)
            batch = FeatureSource(dataset).batch(list(range(len(chunk))), lambda _: eval_forces).to(device, dtype)
            with torch.set_grad_enabled(eval_forces):
                if eval_forces:
                    energy, f = self.model.energies_and_forces(batch.features, batch.species_idx, batch.batch,
                                                               len(chunk), batch.derivatives)
                    forces += [x.detach().cpu().numpy() for x in torch.split(f, batch.n_atoms.tolist())]
                else:
                    energy = self.model(batch.features, batch.species_idx, batch.batch, len(chunk))
                outputs = self.model.network_outputs(batch.features, batch.species_idx)
                per_atom = self.model.atom_energies(outputs, batch.species_idx)
            totals += energy.detach().cpu().tolist()
            atom_energies += [x.detach().cpu().numpy() for x in torch.split(per_atom, batch.n_atoms.tolist())]
        references = self.model.atomic_energies.detach().cpu().numpy()
        cohesive = [total - sum(references[self.descriptor.species_to_idx[s]] for s in st.species)
                    for total, st in zip(totals, structures)]
        return PredictOut(coords=[s.positions for s in structures], atom_types=[list(s.species) for s in structures],
                          total_energy=totals, cohesive_energy=cohesive, atom_energies=atom_energies,
                          forces=forces if eval_forces else None, structure_paths=paths)


class _UnlabelledDataset:
    """The minimal dataset interface FeatureSource needs, for structures without labels."""

    def __init__(self, structures, descriptor):
        self.structures = structures
        self.descriptor = descriptor
        self.species_indices = [descriptor.species_indices(s.species) for s in structures]


class _Sampler:
    """Training order per epoch: uniform shuffling, or weighted draws with replacement."""

    def __init__(self, policy, dataset, indices, seed):
        self.policy, self.indices = policy, list(indices)
        self.generator = torch.Generator().manual_seed(seed + 100) if seed is not None else None
        self.scores = torch.ones(len(self.indices), dtype=torch.float64)
        if policy == "energy_weighted":
            e = torch.tensor([dataset.referenced_energy_per_atom(i) for i in self.indices], dtype=torch.float64)
            delta = e - e.min()
            self.weights = torch.ones_like(e) if delta.max() <= 0 else 1.0 / (1.0 + delta / delta.max())
        else:
            self.weights = torch.ones(len(self.indices), dtype=torch.float64)

    def order(self, shuffle) -> list:
        if self.policy == "uniform":
            return [self.indices[i] for i in torch.randperm(len(self.indices), generator=shuffle).tolist()]
        draws = torch.multinomial(self.weights, len(self.indices), replacement=True, generator=self.generator)
        return [self.indices[i] for i in draws.tolist()]

    def update(self, errors: dict) -> None:
        """error_weighted: each sampled structure's score becomes its mean |dE|/N of the epoch."""
        if self.policy != "error_weighted":
            return
        position = {index: k for k, index in enumerate(self.indices)}
        for index, error in errors.items():
            self.scores[position[index]] = error
        self.weights = adaptive_weights(self.scores)


def adaptive_weights(scores):
    """Non-finite -> 0, clamp at 0; all zero -> uniform; else clamp at 1e-12 and scale to unit mean."""
    u = torch.where(torch.isfinite(scores), scores, torch.zeros_like(scores)).clamp(min=0)
    if not bool((u > 0).any()):
        return torch.ones_like(u)
    u = u.clamp(min=1e-12)
    return u / u.mean()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _combined(means, alpha):
    loss = (1 - alpha) * means["energy_rmse"]
    if alpha > 0 and not math.isnan(means["force_rmse"]):
        loss += alpha * means["force_rmse"]
    return loss


def _metric_entries(train, test) -> dict:
    return {
        "train_energy_rmse": train["energy_rmse"], "test_energy_rmse": test["energy_rmse"],
        "train_energy_mae": train["energy_mae"], "test_energy_mae": test["energy_mae"],
        "train_force_rmse": train["force_rmse"], "test_force_rmse": test["force_rmse"],
    }


def _record(history, train, test, lr, epoch_time, timing) -> None:
    for key, value in _metric_entries(train, test).items():
        history[key].append(value)
    history["learning_rate"].append(lr)
    history["epoch_time"].append(epoch_time)
    for key, value in timing.items():
        history[key].append(value)
