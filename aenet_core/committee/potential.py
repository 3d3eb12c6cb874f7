"""``TorchCommitteePotential``: several potentials with one architecture and descriptor, trained with different
seeds on one shared split; committee predictions with spreads and a calibrated uncertainty."""
from __future__ import annotations

import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from aenet_core.committee.config import TorchCommitteeConfig, member_dir_name
from aenet_core.committee.inputs import committee_data
from aenet_core.data.protocol import resolve_subsets
from aenet_core.committee.member import member_job, train_member
from aenet_core.committee.metadata import METADATA_FILE, TorchCommitteeTrainResult, aggregate_committee
from aenet_core.committee.results import AenetEnsembleResult, TorchCommitteePredictResult
from aenet_core.data.sources import iter_entries
from aenet_core.descriptor import ChebyshevDescriptor
from aenet_core.export import DEFAULT_PREFIX
from aenet_core.export import to_aenet_ascii as export_ascii
from aenet_core.files import atomic_write, file_sha256, write_json
from aenet_core.lammps import ELEMENT, LAMMPS_INPUT_FILE, pair_lines
from aenet_core.model.predict import predict_with_models
from aenet_core.potential import TorchANNPotential
from aenet_core.training.config import TorchTrainingConfig
from aenet_core.uncertainty import CALIBRATION_FILE, Calibration, load_calibration_factor


class TorchCommitteePotential:
    """Several ``TorchANNPotential``s with one architecture and descriptor, trained with different seeds."""

    def __init__(self, arch, descriptor: ChebyshevDescriptor):
        self.arch, self.descriptor = arch, descriptor
        self.members: list = []
        self.model_paths: list = []
        self.member_indices: list = []  # committee member numbers, when loaded from a committee directory
        self.calibration_factor = None

    # -- training -----------------------------------------------------------------------

    def train(self, structures=None, dataset=None, train_dataset=None, test_dataset=None,
              config: TorchTrainingConfig | None = None, committee_config: TorchCommitteeConfig | None = None,
              split=None) -> TorchCommitteeTrainResult:
        """Train every member on one shared split: of ``structures`` or ``dataset`` (``split``, else
        ``testpercent``/``split_seed``), or exactly ``train_dataset``/``test_dataset`` (``torch.utils.data.Subset``s
        of datasets too); ``dataset`` with ``test_dataset`` trains on the whole ``dataset``."""
        config = config or TorchTrainingConfig()
        committee_config = committee_config or TorchCommitteeConfig(num_members=1)
        dataset, split, kinds = committee_data(self.descriptor, config, structures, dataset, train_dataset,
                                               test_dataset, split)
        output_dir = committee_config.directory().resolve()
        default_device = str(config.resolved_device())
        seeds = committee_config.seeds(config.seed)
        devices = [committee_config.device(i, default_device) for i in range(committee_config.num_members)]
        parallel = committee_config.max_parallel > 1 and committee_config.num_members > 1
        if parallel and not committee_config.devices and default_device != "cpu":
            raise ValueError("max_parallel > 1 on a non-CPU device needs explicit TorchCommitteeConfig.devices")
        jobs = [(self.arch, self.descriptor.get_config(), self.descriptor.backend,
                 output_dir / member_dir_name(i, committee_config.num_members), config, dataset, split, i, seeds[i],
                 devices[i]) for i in range(committee_config.num_members)]
        if parallel:
            threads = max(1, (os.cpu_count() or 1) // committee_config.max_parallel)
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(committee_config.max_parallel, mp_context=context) as pool:
                list(pool.map(member_job, *zip(*[job + (threads,) for job in jobs])))
        else:
            for job in jobs:
                train_member(TorchANNPotential(self.arch, self.descriptor), *job[3:])
        path = aggregate_committee(output_dir, committee_config, "parallel" if parallel else "sequential",
                                   {"train": kinds[0], "test": kinds[1]},
                                   member_dirs=[job[3] for job in jobs])  # not folders left by an earlier run
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
            same = (member.arch == first.arch and member.descriptor.identity() == first.descriptor.identity()
                    and member.model.feature_mean.dtype == first.model.feature_mean.dtype
                    and torch.equal(member.model.atomic_energies, first.model.atomic_energies))
            if not same:
                raise ValueError(f"{path}: its architecture, descriptor, precision or atomic energies differ from "
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
        for member in completed:  # after loading, so that a file holding code is named as such
            member.check_model_file()
        committee.member_indices = [m.member_index for m in completed]
        calibration = Path(calibration) if calibration is not None else metadata.parent / CALIBRATION_FILE
        if calibration.exists():
            committee.calibration_factor = load_calibration_factor(calibration)
        return committee

    def member_model_paths(self) -> list:
        return list(self.model_paths)

    def load_members(self, device=None) -> list:
        """The members (``TorchANNPotential``s) in committee order; with ``device``, loaded again from their
        model files onto it."""
        self._require_members()
        if device is not None:
            self.members = [TorchANNPotential.from_file(path, device=device) for path in self.model_paths]
        return list(self.members)

    def _require_members(self) -> None:
        if not self.members:
            raise ValueError("the committee has no members; train it or load it with from_directory() or "
                             "from_files()")

    # -- export -------------------------------------------------------------------------

    def to_aenet_ascii(self, output_dir, prefix=DEFAULT_PREFIX, descriptor_stats=None, structures=None,
                       compute_stats: bool = True) -> list:
        """Each member's ``.nn.ascii`` files and their binary ``.nn`` twins in ``output_dir/member_XXX/``;
        returns one ``{species: absolute .nn.ascii path}`` per member (what ensemble tools take).

        The exported feature statistics are always the training normaliser's; ``structures`` fill only the
        training-set counts (not with ``compute_stats=False``) and ``descriptor_stats`` only sfval_min/max.
        Also written: ``output_dir/manifest.json`` (those files, the ``.nn`` files as "binary_members", every
        file's sha256, the members' model files and descriptor, and the LAMMPS input lines that load the
        committee, "lammps_input", ``aenet_core.lammps.pair_lines``) and the lines alone in
        ``output_dir/pair.lammps``, for LAMMPS's ``include``."""
        self._require_members()
        output_dir = Path(output_dir).resolve()
        structures = structures if compute_stats else None
        if structures is not None:
            structures = [entry.structure for entry in iter_entries(structures)]
        relative, binary, templates = [], [], []  # the first two within output_dir
        indices = self.member_indices or list(range(len(self.members)))
        for index, member in zip(indices, self.members):
            folder = member_dir_name(index, max(indices) + 1)
            written = export_ascii(member, output_dir / folder, prefix=prefix, structures=structures,
                                   descriptor_stats=descriptor_stats)
            relative.append({species: f"{folder}/{name}" for species, name in written["files"].items()})
            binary.append({species: f"{folder}/{name}" for species, name in written["binary_files"].items()})
            templates.append(str(output_dir / folder / f"{prefix}.{ELEMENT}.nn.ascii"))  # for LAMMPS
        names = [name for m in relative + binary for name in m.values()]
        manifest = {"format": "aenet_core committee nn.ascii", "prefix": prefix, "members": relative,
                    "binary_members": binary, "sha256": {name: file_sha256(output_dir / name) for name in names},
                    "model_paths": [str(p) for p in self.model_paths], "descriptor": self.descriptor.get_config(),
                    "lammps_input": pair_lines(templates, list(self.descriptor.species), require_plugin=False)}
        write_json(output_dir / "manifest.json", manifest, indent=1)
        with atomic_write(output_dir / LAMMPS_INPUT_FILE) as handle:
            handle.write("\n".join(manifest["lammps_input"]) + "\n")
        return [{species: str(output_dir / name) for species, name in m.items()} for m in relative]

    # -- prediction ---------------------------------------------------------------------

    def predict(self, structures, eval_forces: bool = False, config=None, aggregation: str = "mean",
                reference_member: int = 0, batch_size: int = 32,
                eval_stress: bool = False) -> TorchCommitteePredictResult:
        """Committee predictions for Structures, ase.Atoms or structure files (every frame; identified
        as ``path#frame=N``): a list of ``AenetEnsembleResult``, one per structure, whose ``source_indices``
        are None.  ``config`` (aenet-python's PredictionConfig) sets ``batch_size`` when it has one;
        ``eval_stress`` adds the members' stresses of 3D-periodic structures."""
        entries = list(iter_entries(structures))
        return self._predict([e.structure for e in entries], eval_forces, aggregation, reference_member,
                             _batch_size(config, batch_size), list(range(len(entries))), [None] * len(entries),
                             [e.identifier for e in entries], eval_stress)

    def predict_dataset(self, dataset, eval_forces: bool = False, config=None, aggregation: str = "mean",
                        reference_member: int = 0, indices=None, batch_size: int = 32,
                        eval_stress: bool = False) -> TorchCommitteePredictResult:
        """Predict the entries ``indices`` (default all) of ``dataset`` (a structure source, or a
        ``torch.utils.data.Subset`` of one, nested or not): ``index`` is the position among them,
        ``source_index`` the entry of the dataset under the Subsets."""
        root, entries = resolve_subsets(dataset)
        sources = entries if indices is None else [entries[i] for i in indices]
        structures = [root.get_structure(i) for i in sources]
        identifiers = [root.get_structure_identifier(i) for i in sources]
        return self._predict(structures, eval_forces, aggregation, reference_member, _batch_size(config, batch_size),
                             list(range(len(sources))), sources, identifiers, eval_stress)

    def _predict(self, structures, eval_forces, aggregation, reference_member, batch_size, indices, sources,
                 identifiers, eval_stress=False):
        self._require_members()
        outputs = predict_with_models([m.model for m in self.members], self.descriptor, structures, identifiers,
                                      eval_forces, batch_size, eval_stress)
        predictions = []
        for i in range(len(structures)):
            forces = [o.forces[i] for o in outputs] if eval_forces else None
            periodic = eval_stress and outputs[0].stress[i] is not None
            predictions.append(AenetEnsembleResult.from_member_predictions(
                [o.total_energy[i] for o in outputs], forces, aggregation, reference_member,
                [o.stress[i] for o in outputs] if periodic else None))
        return TorchCommitteePredictResult(predictions, outputs, indices, sources, identifiers,
                                           [s.n_atoms for s in structures], self.calibration_factor)

    def calibrate(self, dataset, indices=None, n_bins: int = 8) -> Calibration:
        """Fit the uncertainty scale on held-out entries (e.g. the test split) and keep it for predictions."""
        predictions = self.predict_dataset(dataset, indices=indices)
        n_atoms = np.array(predictions.n_atoms, float)
        reference = np.array(dataset.energies(predictions.source_indices), float)
        calibration = Calibration.fit((predictions.energy_mean - reference) / n_atoms,
                                      predictions.energy_std / n_atoms, n_bins)
        self.calibration_factor = calibration.factor
        return calibration


def _batch_size(config, default: int) -> int:
    """A PredictionConfig's ``batch_size`` where it sets one, else ``default``."""
    size = getattr(config, "batch_size", None)
    return default if size is None else int(size)
