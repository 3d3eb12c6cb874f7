"""What a training run trains and validates on: datasets and index lists, from whichever input was given."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from aenet_core.data.memory import StructureDataset
from aenet_core.split import Split, as_split


@dataclass
class TrainingData:
    """The training split (``train_set`` entries ``train_idx``) and the validation split (possibly empty)."""

    train_set: object  # a StructureSource
    train_idx: list
    test_set: object
    test_idx: list

    @classmethod
    def resolve(cls, descriptor, config, structures=None, dataset=None, train_dataset=None, test_dataset=None,
                split=None) -> TrainingData:
        """From ``structures`` (filtered by the config, split by ``testpercent``/``split_seed``), a prebuilt
        ``dataset`` (split likewise), ``train_dataset``/``test_dataset`` as given, or a ``split`` (a Split or
        a split file) of ``structures``/``dataset``."""
        if split is not None and train_dataset is not None:
            raise ValueError("split= applies to structures= or dataset=, not to train_dataset=/test_dataset=")
        if train_dataset is None and dataset is None:
            if structures is None:
                raise ValueError("train() needs structures=, dataset= or train_dataset=")
            dataset = StructureDataset(structures, descriptor, max_energy=config.max_energy,
                                       max_forces=config.max_forces, atomic_energies=config.atomic_energies)
        else:
            _check_prebuilt(train_dataset if train_dataset is not None else dataset, test_dataset, config,
                            descriptor)
        if train_dataset is not None:
            test_idx = list(range(len(test_dataset))) if test_dataset is not None else []
            data = cls(train_dataset, list(range(len(train_dataset))), test_dataset, test_idx)
        elif split is not None:
            split = as_split(split)
            split.check(dataset)
            data = cls(dataset, list(split.train), dataset, list(split.test))
        else:
            split = Split.create(dataset, config.testpercent, config.split_seed)  # what a split file would hold
            data = cls(dataset, list(split.train), dataset, list(split.test))
        data._check_sizes(config)
        return data

    def _check_sizes(self, config) -> None:
        if not self.train_idx:
            raise ValueError(f"testpercent={config.testpercent} leaves no training structure out of "
                             f"{len(self.train_set)}")
        validation_driven = config.use_scheduler or (config.save_best and config.checkpoint_dir is not None)
        if 0 < len(self.test_idx) < 10 and validation_driven:
            warnings.warn(f"the validation set has only {len(self.test_idx)} structures; use_scheduler and "
                          f"save_best react to its noisy metrics", stacklevel=4)

    def warn_missing_references(self, species) -> None:
        missing = [s for s in species if s not in (self.train_set.atomic_energies or {})]
        if missing:
            warnings.warn(f"no atomic reference energy for {missing}; using 0.0 eV, so the model learns "
                          f"total rather than cohesive energies for them", stacklevel=3)


def _check_prebuilt(train_set, test_set, config, descriptor) -> None:
    """Prebuilt datasets own their atomic references and filters; refuse a conflicting configuration, a
    dataset featurized with another descriptor, or entries without an energy."""
    mine = descriptor.identity()
    for data in (train_set, test_set):
        if data is None:
            continue
        theirs = data.descriptor.identity()
        differing = [k for k in mine if mine[k] != theirs[k]]
        if differing:
            raise ValueError(f"the dataset's descriptor differs from the potential's in {differing}: "
                             f"{[theirs[k] for k in differing]} vs {[mine[k] for k in differing]}")
        missing = [i for i, e in enumerate(data.energies(range(len(data)))) if math.isnan(e)]
        if missing:
            raise ValueError(f"{len(missing)} dataset entries have no energy (first: entry {missing[0]}, "
                             f"{data.get_structure_identifier(missing[0])}); training needs a total energy for "
                             f"every structure")
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
