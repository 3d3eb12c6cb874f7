"""``TorchANNPotential``: train, save, load, export and evaluate one aenet-style potential.

A thin facade: the data a run trains on comes from ``aenet_core.training.inputs``,
the run itself from ``aenet_core.training.loop``, the model from
``aenet_core.model`` (its file format in ``model.checkpoint``) and the
aenet ``.nn.ascii`` and binary ``.nn`` files from ``aenet_core.export``.
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from aenet_core.data.protocol import resolve_subsets
from aenet_core.data.sources import iter_entries
from aenet_core.descriptor import IDENTITY_KEYS, ChebyshevDescriptor
from aenet_core.export import DEFAULT_PREFIX, load_aenet, to_aenet_ascii
from aenet_core.model import AtomisticModel
from aenet_core.model.checkpoint import read_model_file, write_model_file
from aenet_core.model.predict import PredictOut, predict_with_models
from aenet_core.training.config import TorchTrainingConfig
from aenet_core.training.distributed import is_main
from aenet_core.training.inputs import TrainingData
from aenet_core.training.loop import TrainingRun, empty_history
from aenet_core.training.outputs import write_prediction_files
from aenet_core.training.trainout import (STOPPED_EARLY, Energies, TrainOut, history_arrays, write_history_csv,
                                          write_history_json)


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
        self._metadata = None

    @property
    def history(self) -> dict:
        """The training history: one value per epoch for each metric (``HISTORY_KEYS``), and ``stopped_early``."""
        return self._history

    @history.setter
    def history(self, value: dict) -> None:
        self._history = value

    @property
    def net(self):
        """The per-species networks (aenet-python's ``net``: ``net.functions[i]`` is species i's network),
        shared with ``model``."""
        return self.model.networks

    @property
    def metadata(self) -> dict | None:
        """What the model file this potential was loaded from holds besides the weights (``model_metadata``);
        None for a potential not loaded with ``from_file``/``load_model``."""
        return self._metadata

    # ----------------------------------------------------------------------------- training

    def train(self, structures=None, dataset=None, train_dataset=None, test_dataset=None,
              config: Optional[TorchTrainingConfig] = None, resume_from=None, split=None, output_dir=".",
              initial_model=None) -> TrainOut:
        """Train on ``structures`` (Structures, ase.Atoms, file paths or globs; split by ``testpercent``), or
        on a prebuilt ``dataset`` (split likewise), or on ``train_dataset``/``test_dataset`` as given.

        ``split`` (an ``aenet_core.split.Split`` or a split file) fixes the train/test indices of
        ``structures``/``dataset`` instead of ``testpercent``/``split_seed``; it must have been drawn
        from the same data.

        ``resume_from`` (a checkpoint or model file written by training) restores weights,
        normalisation, optimizer, scheduler, history, random generators, force subsets and
        sampler scores, then trains ``config.iterations`` more epochs.  ``initial_model`` (a model file of
        the same descriptor, architecture and atomic energies) starts from its weights and keeps its
        feature and energy normalisation, so that the weights mean what they meant (a warm start: new
        optimizer, history and epochs).  ``output_dir`` receives the ``energies.*``/``forces.*`` files of
        ``save_energies``/``save_forces``.
        """
        started = time.perf_counter()
        config = config or TorchTrainingConfig()
        config.refuse_mixed_memory()  # also when set after the config was built
        device, dtype = config.resolved_device(), config.resolved_dtype(self.descriptor.dtype)
        if config.seed is not None:
            seed_everything(config.seed)
        data = TrainingData.resolve(self.descriptor, config, structures, dataset, train_dataset, test_dataset, split)
        data.warn_missing_references(self.descriptor.species)
        resume = None if resume_from is None else self._checkpoint_to_resume(resume_from)
        # Built after seeding, so the initial weights follow config.seed.
        self.model = AtomisticModel(self.arch, self.descriptor.species, self.descriptor.n_features,
                                    atomic_energies=data.train_set.atomic_energies, dtype=dtype).to(device)
        if initial_model is not None:
            self.model.load_state_dict(self._initial_state(initial_model, self.model))
        self.training_config = config
        run = TrainingRun(self.model, data, config, save=self._write_model_file,
                          fit_normalization=initial_model is None)
        if resume is not None:
            self.model.load_state_dict(resume["model_state_dict"])
            run.load_state_dict(resume["run_state"], resume["training_history"], resume["best_val_loss"])
        setup_time = time.perf_counter() - started
        self.history = run.run()
        self.best_val_loss = run.best_val_loss
        self._run_state = run.state_dict()
        out = TrainOut(self.history, config=config.to_dict())
        if not is_main():  # a data-parallel group's other processes write and print nothing
            return out
        energies = write_prediction_files(self, data, config, output_dir)
        if "train" in energies:
            out.energies = Energies(energies["train"], energies.get("test"))
        if config.timing:
            print(out.timing_report(setup_time))
        return out

    def _initial_state(self, path, model) -> dict:
        """The state of model file ``path`` to start training from, once it is checked to fit ``model``."""
        payload = read_model_file(path)
        stored = {key: payload["descriptor_config"][key] for key in IDENTITY_KEYS}
        if stored != self.descriptor.identity() or payload["architecture"] != self.arch:
            raise ValueError(f"{path}: the initial model's descriptor or architecture differs from this potential's")
        state = {k: v.to(model.feature_mean) for k, v in payload["model_state_dict"].items()}
        if not torch.allclose(state["atomic_energies"], model.atomic_energies, rtol=0, atol=1e-12):
            raise ValueError(f"{path}: the initial model's atomic reference energies differ from the data's")
        return state

    def _checkpoint_to_resume(self, path) -> dict:
        payload = read_model_file(path)
        if payload.get("run_state") is None:
            raise ValueError(f"{path}: not a training checkpoint (no run state); resume needs a file "
                             f"written during training")
        stored = {key: payload["descriptor_config"][key] for key in IDENTITY_KEYS}
        if stored != self.descriptor.identity() or payload["architecture"] != self.arch:
            raise ValueError(f"{path}: the checkpoint's descriptor or architecture differs from this potential's")
        return payload

    # ----------------------------------------------------------------------------- files

    def save(self, path, extra_metadata: dict | None = None, training_config=None, optimizer_state=None) -> None:
        """Write the model (weights, normalisation, descriptor, history, config) to ``path`` atomically;
        ``extra_metadata`` (JSON-like) is stored with it and restored as ``potential.extra_metadata``.
        ``training_config`` replaces the stored configuration; ``optimizer_state`` (a state dict) is stored as
        ``optimizer_state_dict`` (see ``save_model``)."""
        self.extra_metadata = dict(extra_metadata or self.extra_metadata)
        extra = {} if optimizer_state is None else {"optimizer_state_dict": optimizer_state}
        self._write_model_file(path, self.history, self.best_val_loss, self._run_state, training_config, **extra)

    def _write_model_file(self, path, history, best_val_loss, run_state, training_config=None, **extra) -> None:
        """The model file; with the ``run_state`` of a training run it is also a checkpoint to resume from."""
        write_model_file(path, self.model_payload(history, best_val_loss, run_state, training_config, **extra))

    def model_payload(self, history, best_val_loss, run_state, training_config=None, **extra) -> dict:
        """What a model file holds (``extra`` adds or replaces top-level entries)."""
        training_config = training_config or self.training_config
        return {
            "architecture": self.arch,
            "descriptor_config": self.descriptor.get_config(),
            "model_state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "training_history": history,
            "best_val_loss": best_val_loss,
            "training_config": training_config.to_dict() if training_config else None,
            "atomic_energies": dict(zip(self.descriptor.species, self.model.atomic_energies.tolist())),
            "run_state": run_state,
            "extra_metadata": self.extra_metadata,
            **extra,
        }

    @classmethod
    def from_file(cls, path, device=None) -> TorchANNPotential:
        """Load a model written by ``save`` or training (plain data only: nothing in the file is run);
        ``device`` moves it (a stored CUDA device falls back to CPU)."""
        payload = read_model_file(path)
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
        potential._metadata = model_metadata(payload)
        if payload["training_config"] is not None:
            potential.training_config = TorchTrainingConfig.from_dict(payload["training_config"])
        return potential

    def to_aenet_ascii(self, output_dir, prefix=DEFAULT_PREFIX, descriptor_stats=None, structures=None,
                       compute_stats=True) -> list:
        """Write the aenet files of ``export_aenet``; returns the ``.nn.ascii`` paths in species order."""
        manifest = self.export_aenet(output_dir, prefix, descriptor_stats, structures, compute_stats)
        return [Path(output_dir) / manifest["files"][species] for species in self.descriptor.species]

    def export_aenet(self, output_dir, prefix=DEFAULT_PREFIX, descriptor_stats=None, structures=None,
                     compute_stats=True) -> dict:
        """Write aenet ``.nn.ascii`` files, ``<prefix>.<Species>.nn.ascii`` per species, their binary twins
        ``<prefix>.<Species>.nn`` and ``<prefix>.manifest.json``; returns the manifest.

        The feature normalisation written (avg, cov) is always the model's own, so that aenet evaluates what
        the model evaluates.  ``structures`` (Structures, ase.Atoms or files, with energies, e.g. the training
        set) fill the training-set counts and, with ``compute_stats``, the informative sfval_min/max from
        their features; ``descriptor_stats`` ({'min', 'max'}) sets sfval_min/max instead; else they are
        mean -/+ std.  See ``aenet_core.export.to_aenet_ascii``.
        """
        if structures is not None:
            structures = [entry.structure for entry in iter_entries(structures)]
            if descriptor_stats is None and compute_stats:
                descriptor_stats = self._feature_bounds(structures)
        return to_aenet_ascii(self, output_dir, prefix=prefix, structures=structures,
                              descriptor_stats=descriptor_stats)

    def _feature_bounds(self, structures) -> dict:
        """{'min', 'max'} (S, F) of the raw features of each species' atoms in ``structures``; a species
        without atoms there keeps mean -/+ std."""
        mean = self.model.feature_mean.detach().cpu().double()
        std = self.model.feature_std.detach().cpu().double()
        low, high = (mean - std).clone(), (mean + std).clone()
        seen = torch.zeros(len(self.descriptor.species), dtype=torch.bool)
        with torch.no_grad():
            for s in structures:
                features = self.descriptor.forward_from_positions(s.positions, s.species, s.cell, s.pbc)
                features = features.detach().cpu().double()
                species = self.descriptor.species_indices(s.species).cpu()
                for index in species.unique().tolist():
                    rows = features[species == index]
                    lowest, highest = rows.min(0).values, rows.max(0).values
                    first = not seen[index]
                    low[index] = lowest if first else torch.minimum(low[index], lowest)
                    high[index] = highest if first else torch.maximum(high[index], highest)
                    seen[index] = True
        return {"min": low.numpy(), "max": high.numpy()}

    @classmethod
    def from_aenet(cls, files, device=None) -> TorchANNPotential:
        """A potential from aenet species files ``{species: path}``, one per descriptor species, each a
        ``.nn.ascii`` or a binary ``.nn`` file (Fortran-trained files with per-species feature statistics
        included, e.g. ``train.x``'s binary output)."""
        descriptor, model = load_aenet(files, device=device)
        potential = cls(model.arch, descriptor)
        potential.model = model
        return potential

    from_aenet_ascii = from_aenet  # the earlier name, when only .nn.ascii files were read

    # ----------------------------------------------------------------------------- inference

    def predict(self, structures, eval_forces: bool = False, config=None, batch_size: int | None = None,
                eval_stress: bool = False) -> PredictOut:
        """Energies (and forces, stresses) of Structures, ase.Atoms or structure files (every frame, each
        named ``path#frame=N`` in ``structure_paths``; ``paths`` names the file).

        ``config`` (e.g. aenet-python's ``PredictionConfig``) gives the ``batch_size`` unless ``batch_size``
        does (default 32), and with ``timing`` fills ``PredictOut.timing``; per-atom energies always come
        back."""
        entries = list(iter_entries(structures))
        return predict_with_models([self.model], self.descriptor, [e.structure for e in entries],
                                   [e.identifier for e in entries], eval_forces, _batch_size(config, batch_size),
                                   eval_stress, track_timing=_timing(config))[0]

    def predict_dataset(self, dataset, eval_forces: bool = False, config=None,
                        batch_size: int | None = None) -> PredictOut:
        """``predict`` over every entry of a dataset (a ``StructureSource``, or a torch Subset of one, nested or
        not), each named by its base dataset's identifier."""
        try:
            base, indices = resolve_subsets(dataset)
        except ValueError as error:
            raise ValueError(f"predict_dataset requires a dataset that gives its structures (get_structure): "
                             f"{error}") from None
        return predict_with_models([self.model], self.descriptor, [base.get_structure(i) for i in indices],
                                   [base.get_structure_identifier(i) for i in indices], eval_forces,
                                   _batch_size(config, batch_size), track_timing=_timing(config))[0]

    def cohesive_energy(self, structure, atomic_energies: dict | None = None) -> float:
        """The structure's (reference) total energy minus its atoms' reference energies (eV, not per atom):
        ``atomic_energies``, else the potential's own; a species without one counts 0 eV, as in training."""
        entry = next(iter(iter_entries([structure], name="structure")))
        if entry.structure.energy is None:
            raise ValueError(f"cohesive_energy needs a structure with an energy; {entry.identifier} has none")
        if atomic_energies is None:
            atomic_energies = dict(zip(self.descriptor.species, self.model.atomic_energies.tolist()))
        return float(entry.structure.energy) - sum(float(atomic_energies.get(s, 0.0))
                                                   for s in entry.structure.species)


def _batch_size(config, batch_size) -> int:
    """``batch_size``, else the prediction config's, else 32."""
    if batch_size is None:
        batch_size = getattr(config, "batch_size", None) or DEFAULT_PREDICT_BATCH
    return batch_size


DEFAULT_PREDICT_BATCH = 32


def _timing(config) -> bool:
    """Whether the prediction config asks for timing (aenet-python's ``PredictionConfig.timing``)."""
    return bool(getattr(config, "timing", False))


def model_metadata(payload: dict) -> dict:
    """A model file's contents without the weights and the run state: header, architecture, descriptor,
    history, configuration, atomic energies, extra metadata, and ``normalization`` (the model's feature and
    energy statistics as lists)."""
    state = payload["model_state_dict"]
    meta = {k: v for k, v in payload.items() if k not in ("model_state_dict", "run_state")}
    meta["normalization"] = {"E_shift": float(state["E_shift"]), "E_scaling": float(state["E_scaling"]),
                             "feature_mean": state["feature_mean"].tolist(),
                             "feature_std": state["feature_std"].tolist()}
    return meta


def save_model(trainer, path, optimizer=None, training_config=None, extra_metadata=None) -> None:
    """Write ``trainer`` (a TorchANNPotential) to ``path`` as ``trainer.save`` does; ``training_config`` (a
    TorchTrainingConfig) replaces the configuration stored, ``optimizer`` adds its ``optimizer_state_dict``
    (a file written after training also holds the whole run state, which resumes exactly)."""
    trainer.save(path, extra_metadata, training_config=training_config,
                 optimizer_state=None if optimizer is None else optimizer.state_dict())


def load_model(path, device=None) -> tuple:
    """(potential, metadata) of a model file: ``TorchANNPotential.from_file`` and its ``metadata``."""
    potential = TorchANNPotential.from_file(path, device=device)
    return potential, potential.metadata


def export_history(history, json_path, csv_path=None) -> None:
    """Write a training history (a dict of per-epoch lists, as ``train`` records, or a TrainOut) as strict JSON
    (NaN as null) and, with ``csv_path``, as CSV: epoch, the energy/force/stress RMSEs, ``learning_rate`` and
    ``epoch_time`` (NaN where the history lacks one)."""
    if isinstance(history, TrainOut):
        arrays, stopped_early = history.history, history.stopped_early
    else:
        arrays, stopped_early = history_arrays(history), history.get(STOPPED_EARLY)
    for path in (json_path, csv_path):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_history_json(arrays, stopped_early, json_path)
    if csv_path is not None:
        write_history_csv(arrays, csv_path)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
