"""``TorchANNPotential``: train, save, load and evaluate one aenet-style potential."""
import math
import random
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from aenet_core.descriptor import ChebyshevDescriptor
from aenet_core.export import load_aenet_ascii, to_aenet_ascii
from aenet_core.io.common import atomic_write
from aenet_core.model import AtomisticModel, energy_normalization, feature_statistics
from aenet_core.split import as_split, split_indices
from aenet_core.training.config import TorchTrainingConfig
from aenet_core.training.data import (BoundedCache, FeatureSource, InMemoryStructures, PersistentCache,
                                      StructureDataset, as_structures, warn_missing_references)
from aenet_core.training.outputs import write_energies, write_forces
from aenet_core.training.run import TrainingRun
from aenet_core.training.trainer import empty_history
from aenet_core.training.trainout import TrainOut

# 1.1: feature_mean/feature_std are (S, F), one row per species; 1.0 files (one (F,) row) still load.
MODEL_SCHEMA_VERSION = "1.1"


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
        self._run_state = None  # the finished run's state: a saved model can be trained further
        self.extra_metadata = {}

    # ----------------------------------------------------------------------------- training

    def train(self, structures=None, dataset=None, train_dataset=None, test_dataset=None,
              config: Optional[TorchTrainingConfig] = None, resume_from=None, split=None) -> TrainOut:
        """Train on ``structures`` (Structures, ase.Atoms or file paths; split by ``testpercent``), or on
        a prebuilt ``dataset`` (split likewise), or on ``train_dataset``/``test_dataset`` as given.

        ``split`` (an ``aenet_core.split.Split`` or a split file) fixes the train/test indices of
        ``structures``/``dataset`` instead of ``testpercent``/``split_seed``; it must have been drawn
        from the same data.

        ``resume_from`` (a checkpoint or model file written by training) restores weights,
        normalisation, optimizer, scheduler, history, random generators, force subsets and
        sampler scores, then trains ``config.iterations`` more epochs.
        """
        started = time.perf_counter()
        config = config or TorchTrainingConfig()
        device, dtype = config.resolved_device(), config.resolved_dtype(self.descriptor.dtype)
        if config.seed is not None:
            _seed_everything(config.seed)
        train_set, train_idx, test_set, test_idx = self._resolve_data(structures, dataset, train_dataset,
                                                                      test_dataset, config, split)
        warn_missing_references(train_set.atomic_energies, self.descriptor.species)
        # Built after seeding, so the initial weights follow config.seed.
        self.model = AtomisticModel(self.arch, self.descriptor.species, self.descriptor.n_features,
                                    atomic_energies=train_set.atomic_energies, dtype=dtype).to(device)
        train_source = self._source(train_set, config, "train")
        test_source = self._source(test_set, config, "val") if test_idx else None
        self._normalize(train_source, train_idx, config)
        if config.cache_warmup:
            _warm_up(config, ((train_source, train_idx), (test_source, test_idx)))
        self.training_config = config
        run = TrainingRun(self, config, train_source, train_idx, test_source, test_idx, device, dtype)
        if resume_from is not None:
            self._resume(run, resume_from)
        setup_time = time.perf_counter() - started
        self.history = run.run()
        self.best_val_loss = run.best_val_loss
        self._run_state = run.state_dict()
        splits = (("train", train_set, train_idx), ("test", test_set, test_idx))
        self._write_predictions(splits, config)
        out = TrainOut(self.history, config=config.to_dict())
        if config.timing:
            print(_timing_report(setup_time, out.timing))
        return out

    def _write_predictions(self, splits, config) -> None:
        """energies.<split>.0 (save_energies) and forces.<split>.0 (save_forces) in the working directory."""
        if not (config.save_energies or config.save_forces):
            return
        for split, dataset, indices in splits:
            if not indices:
                continue
            structures = [dataset.get_structure(i) for i in indices]
            names = [dataset.get_structure_identifier(i) for i in indices]
            out = self.predict(structures, eval_forces=config.save_forces)
            if config.save_energies:
                rows = [(n, s.species, s.energy, e) for n, s, e in zip(names, structures, out.total_energy)]
                write_energies(f"energies.{split}.0", rows, self.descriptor.species, float(self.model.E_scaling))
            if config.save_forces:
                rows = [(n, s.species, s.positions, s.forces, f) for n, s, f in zip(names, structures, out.forces)]
                write_forces(f"forces.{split}.0", rows)

    def _resume(self, run, path):
        payload = _load_payload(path)
        if payload.get("run_state") is None:
            raise ValueError(f"{path}: not a training checkpoint (no run state); resume needs a file "
                             f"written during training")
        if payload["descriptor_config"] != self.descriptor.get_config() or payload["architecture"] != self.arch:
            raise ValueError(f"{path}: the checkpoint's descriptor or architecture differs from this potential's")
        self.model.load_state_dict(payload["model_state_dict"])
        run.load_state_dict(payload["run_state"], payload["training_history"], payload["best_val_loss"])

    def _resolve_data(self, structures, dataset, train_dataset, test_dataset, config, split):
        """(train dataset, train indices, test dataset, test indices) from whichever input was given."""
        if split is not None and train_dataset is not None:
            raise ValueError("split= applies to structures= or dataset=, not to train_dataset=/test_dataset=")
        if train_dataset is None and dataset is None:
            if structures is None:
                raise ValueError("train() needs structures=, dataset= or train_dataset=")
            dataset = StructureDataset(as_structures(structures), self.descriptor, max_energy=config.max_energy,
                                       max_forces=config.max_forces, atomic_energies=config.atomic_energies)
        else:
            _check_prebuilt(train_dataset if train_dataset is not None else dataset, test_dataset, config,
                            self.descriptor)
        if train_dataset is not None:
            test_idx = list(range(len(test_dataset))) if test_dataset is not None else []
            train_set, train_idx, test_set = train_dataset, list(range(len(train_dataset))), test_dataset
        elif split is not None:
            split = as_split(split)
            split.check(dataset)
            train_set = test_set = dataset
            train_idx, test_idx = list(split.train), list(split.test)
        else:
            train_idx, test_idx = split_indices(len(dataset), config.testpercent, config.split_seed)
            train_set = test_set = dataset
        if not train_idx:
            raise ValueError(f"testpercent={config.testpercent} leaves no training structure out of "
                             f"{len(train_set)}")
        validation_driven = config.use_scheduler or (config.save_best and config.checkpoint_dir is not None)
        if 0 < len(test_idx) < 10 and validation_driven:
            warnings.warn(f"the validation set has only {len(test_idx)} structures; use_scheduler and save_best "
                          f"react to its noisy metrics", stacklevel=3)
        return train_set, train_idx, test_set, test_idx

    def _source(self, dataset, config, split):
        """The split's FeatureSource with the runtime caches the configuration enables for it."""
        def cache(enabled, max_entries, kind):
            if not enabled or config.cache_scope not in ("all", split):
                return None
            if config.cache_persist_dir is not None:
                return PersistentCache(max_entries, config.cache_persist_dir, dataset, kind)
            return BoundedCache(max_entries)

        return FeatureSource(dataset,
                             feature_cache=cache(config.cache_features, config.cache_feature_max_entries, "features"),
                             derivative_cache=cache(config.cache_force_triplets,
                                                    config.cache_force_triplet_max_entries, "derivatives"),
                             neighbor_cache=cache(config.cache_neighbors, config.cache_neighbor_max_entries,
                                                  "neighbors"))

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

    # ----------------------------------------------------------------------------- files

    def save(self, path, extra_metadata: dict | None = None) -> None:
        """Write the model (weights, normalisation, descriptor, history, config) to ``path`` atomically;
        ``extra_metadata`` (JSON-like) is stored with it and restored as ``potential.extra_metadata``."""
        self.extra_metadata = dict(extra_metadata or self.extra_metadata)
        self.write_model_file(path)

    def write_model_file(self, path, run=None) -> None:
        """The model file; with the ``run`` of an ongoing training it is also a checkpoint to resume from."""
        payload = {
            "schema_version": MODEL_SCHEMA_VERSION,
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "torch_version": torch.__version__,
            "architecture": self.arch,
            "descriptor_config": self.descriptor.get_config(),
            "model_state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "training_history": run.history if run else self.history,
            "best_val_loss": run.best_val_loss if run else self.best_val_loss,
            "training_config": self.training_config.to_dict() if self.training_config else None,
            "atomic_energies": dict(zip(self.descriptor.species, self.model.atomic_energies.tolist())),
            "run_state": run.state_dict() if run else self._run_state,
            "extra_metadata": self.extra_metadata,
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, binary=True) as handle:
            torch.save(payload, handle)

    @classmethod
    def from_file(cls, path, device=None) -> "TorchANNPotential":
        """Load a model written by ``save``; ``device`` moves it (a stored CUDA device falls back to CPU)."""
        payload = _load_payload(path)
        config = payload["descriptor_config"]
        stored = torch.device(config.get("device", "cpu"))
        target = device or (stored if stored.type != "cuda" or torch.cuda.is_available() else "cpu")
        potential = cls(payload["architecture"], ChebyshevDescriptor.from_config(config, device=target))
        state = payload["model_state_dict"]
        potential.model.to(dtype=state["feature_mean"].dtype)  # the trained precision, e.g. float32
        potential.model.load_state_dict(state)
        potential.model.to(target)
        potential.history = payload["training_history"]
        potential.best_val_loss = payload["best_val_loss"]
        potential._run_state = payload["run_state"]
        potential.extra_metadata = payload.get("extra_metadata") or {}
        if payload["training_config"] is not None:
            potential.training_config = TorchTrainingConfig.from_dict(payload["training_config"])
        return potential

    def to_aenet_ascii(self, output_dir, prefix="potential", structures=None, descriptor_stats=None) -> dict:
        """Write aenet ``.nn.ascii`` files, ``<prefix>.<Species>.nn.ascii`` per species, and a manifest.

        ``structures`` (Structures, ase.Atoms or files) fill only the training-set counts and
        ``descriptor_stats`` only sfval_min/max; see ``aenet_core.export.to_aenet_ascii``.
        """
        if structures is not None:
            structures = as_structures(structures)
        return to_aenet_ascii(self, output_dir, prefix=prefix, structures=structures,
                              descriptor_stats=descriptor_stats)

    @classmethod
    def from_aenet_ascii(cls, files, device=None) -> "TorchANNPotential":
        """A potential from aenet ``.nn.ascii`` files ``{species: path}``, one per descriptor species
        (Fortran-trained files with per-species feature statistics included)."""
        descriptor, model = load_aenet_ascii(files, device=device)
        potential = cls(model.arch, descriptor)
        potential.model = model
        return potential

    # ----------------------------------------------------------------------------- inference

    def predict(self, structures, eval_forces: bool = False, batch_size: int = 32) -> PredictOut:
        """Energies (and forces) of Structures, ase.Atoms or structure files."""
        paths = [str(s) for s in structures] if all(isinstance(s, (str, Path)) for s in structures) else None
        out = predict_with_models([self.model], self.descriptor, as_structures(structures), eval_forces, batch_size)[0]
        out.structure_paths = paths
        return out

    def predict_dataset(self, dataset, eval_forces: bool = False, batch_size: int = 32) -> PredictOut:
        """``predict`` over every structure of a dataset (anything with ``__len__`` and ``get_structure``)."""
        structures = [dataset.get_structure(i) for i in range(len(dataset))]
        out = self.predict(structures, eval_forces=eval_forces, batch_size=batch_size)
        if hasattr(dataset, "get_structure_identifier"):
            out.structure_paths = [dataset.get_structure_identifier(i) for i in range(len(dataset))]
        return out


def predict_with_models(models, descriptor, structures, eval_forces: bool, batch_size: int) -> list:
    """One PredictOut per model (all on one device and dtype, sharing ``descriptor``) for ``structures``:
    each batch is featurized once and every model evaluated on it."""
    device, dtype = next(models[0].parameters()).device, models[0].feature_mean.dtype
    totals, atom_energies, forces = ([[] for _ in models] for _ in range(3))
    for start in range(0, len(structures), batch_size):
        chunk = structures[start: start + batch_size]
        batch = FeatureSource(InMemoryStructures(chunk, descriptor)).batch(list(range(len(chunk))),
                                                                           lambda _: eval_forces).to(device, dtype)
        sizes = batch.n_atoms.tolist()
        for k, model in enumerate(models):
            with torch.set_grad_enabled(eval_forces):
                per_atom, f = model.atom_energies_and_forces(batch.features, batch.species_idx, batch.derivatives)
            totals[k] += model.sum_per_structure(per_atom, batch.batch, len(chunk)).detach().cpu().tolist()
            atom_energies[k] += [x.detach().cpu().numpy() for x in torch.split(per_atom, sizes)]
            if eval_forces:
                forces[k] += [x.detach().cpu().numpy() for x in torch.split(f, sizes)]
    outs = []
    for k, model in enumerate(models):
        references = model.atomic_energies.detach().cpu().numpy()
        cohesive = [total - sum(references[descriptor.species_to_idx[s]] for s in st.species)
                    for total, st in zip(totals[k], structures)]
        outs.append(PredictOut(coords=[s.positions for s in structures],
                               atom_types=[list(s.species) for s in structures], total_energy=totals[k],
                               cohesive_energy=cohesive, atom_energies=atom_energies[k],
                               forces=forces[k] if eval_forces else None))
    return outs


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _load_payload(path) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"{path}: not a readable aenet_core model file ({type(err).__name__}: {err})") from err
    found = payload.get("schema_version") if isinstance(payload, dict) else type(payload).__name__
    if found == "1.0":
        _upgrade_from_1_0(payload)
    elif found != MODEL_SCHEMA_VERSION:
        raise ValueError(f"{path}: model schema {found!r} is not {MODEL_SCHEMA_VERSION!r} (or the older '1.0')")
    return payload


def _upgrade_from_1_0(payload) -> None:
    """Schema 1.0 stored one (F,) feature mean and std for all species; give every species that row."""
    state = payload["model_state_dict"]
    n_species = len(payload["descriptor_config"]["species"])
    for key in ("feature_mean", "feature_std"):
        state[key] = state[key].expand(n_species, -1).clone()
    payload["schema_version"] = MODEL_SCHEMA_VERSION


def _timing_report(setup_time, timing) -> str:
    """Per-phase seconds: set-up once, then totals and per-epoch means of each recorded phase."""
    lines = ["Timing (s):", f"  set-up (data, featurization for normalisation): {setup_time:.3f}"]
    for column in timing.columns:
        values = timing[column]
        lines.append(f"  {column}: total {values.sum():.3f}, per epoch {values.mean():.4f}")
    return "\n".join(lines)


def _check_prebuilt(train_set, test_set, config, descriptor) -> None:
    """Prebuilt datasets own their atomic references and filters; refuse a conflicting configuration,
    a dataset featurized with another descriptor, or entries without an energy."""
    mine = {k: v for k, v in descriptor.get_config().items() if k not in ("dtype", "device")}
    for data in (train_set, test_set):
        if data is None:
            continue
        theirs = {k: v for k, v in data.descriptor.get_config().items() if k not in ("dtype", "device")}
        differing = [k for k in mine if mine[k] != theirs.get(k)]
        if differing:
            raise ValueError(f"the dataset's descriptor differs from the potential's in {differing}: "
                             f"{[theirs.get(k) for k in differing]} vs {[mine[k] for k in differing]}")
        missing = [i for i, e in enumerate(data.energies(range(len(data)))) if math.isnan(e)]
        if missing:
            raise ValueError(f"{len(missing)} dataset entries have no energy (first: entry {missing[0]}); "
                             f"training needs a total energy for every structure")
    if config.max_energy is not None or config.max_forces is not None:
        warnings.warn("config.max_energy/max_forces apply only to structures= input; a prebuilt dataset is "
                      "filtered when it is built", stacklevel=4)
    owned = dict(train_set.atomic_energies or {})
    if test_set is not None and dict(test_set.atomic_energies or {}) != owned:
        raise ValueError(f"the train and test datasets have different atomic reference energies: {owned} vs "
                         f"{dict(test_set.atomic_energies or {})}")
    if config.atomic_energies:
        if owned and config.atomic_energies != owned:
            raise ValueError(f"config.atomic_energies {config.atomic_energies} conflicts with the dataset's "
                             f"{owned}; the dataset's references are used for prebuilt datasets")
        if not owned:
            warnings.warn("config.atomic_energies is ignored: the prebuilt dataset has no atomic references "
                          "(build it with atomic_energies= to use them)", stacklevel=4)


def _warm_up(config, splits) -> None:
    """Fill the runtime caches before epoch 0 (in this process, so not with DataLoader workers)."""
    if config.num_workers > 0:
        warnings.warn("cache_warmup is skipped with num_workers > 0: each worker keeps its own caches",
                      stacklevel=3)
        return
    for source, indices in splits:
        if source is None:
            continue
        if source.feature_cache is not None:
            source.batch(indices, lambda _: False)
        if source.derivative_cache is not None and config.force_weight > 0:
            source.batch([i for i in indices if source.dataset.has_forces(i)], lambda _: True)
