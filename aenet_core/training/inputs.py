"""What a training run trains and validates on: datasets and index lists, from whichever input was given."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from aenet_core.data.memory import StructureDataset
from aenet_core.data.protocol import resolve_subsets
from aenet_core.split import as_split, draw


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
        a split file) of ``structures``/``dataset``.  Datasets may be torch Subsets of a dataset, nested or not
        (``resolve_subsets``): their entries are drawn, split and named as the base dataset's."""
        if split is not None and train_dataset is not None:
            raise ValueError("split= applies to structures= or dataset=, not to train_dataset=/test_dataset=")
        if train_dataset is not None:
            train_set, train_idx = resolve_subsets(train_dataset, "train_dataset")
            test_set, test_idx = resolve_subsets(test_dataset, "test_dataset") if test_dataset is not None \
                else (None, [])
            _check_prebuilt((train_set, train_idx), (test_set, test_idx), config, descriptor)
            data = cls(train_set, train_idx, test_set, test_idx)
        elif dataset is None and structures is None:
            raise ValueError("train() needs structures=, dataset= or train_dataset=")
        elif dataset is None:
            dataset = StructureDataset(structures, descriptor, max_energy=config.max_energy,
                                       max_forces=config.max_forces, atomic_energies=config.atomic_energies)
            data = cls.split(dataset, list(range(len(dataset))), config, split)
        else:
            base, entries = resolve_subsets(dataset)
            _check_prebuilt((base, entries), (None, []), config, descriptor)
            if split is not None and base is not dataset:
                raise ValueError("split= indexes the whole dataset it was drawn from, not a Subset of it; pass "
                                 "that dataset, or the Subset's sides as train_dataset=/test_dataset=")
            data = cls.split(base, entries, config, split)
        data._check_sizes(config)
        return data

    @classmethod
    def split(cls, dataset, entries, config, split=None) -> TrainingData:
        """``entries`` of ``dataset`` split by ``split`` (for all of its entries), else by ``testpercent`` and
        ``split_seed`` (what a split file would hold)."""
        if split is not None:
            split = as_split(split)
            split.check(dataset)
            return cls(dataset, list(split.train), dataset, list(split.test))
        train, test = draw(dataset, config.testpercent, config.split_seed, entries)
        return cls(dataset, train, dataset, test)

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


def _check_prebuilt(train, test, config, descriptor) -> None:
    """Prebuilt datasets own their atomic references and filters; refuse a conflicting configuration, a
    dataset featurized with another descriptor, or entries without an energy.  ``train`` and ``test`` are
    (dataset, the entries used), the test dataset None when there is none."""
    mine = descriptor.identity()
    (train_set, _), (test_set, _) = train, test
    for data, indices in (train, test):
        if data is None:
            continue
        theirs = data.descriptor.identity()
        differing = [k for k in mine if mine[k] != theirs[k]]
        if differing:
            raise ValueError(f"the dataset's descriptor differs from the potential's in {differing}: "
                             f"{[theirs[k] for k in differing]} vs {[mine[k] for k in differing]}")
        missing = [i for i, e in zip(indices, data.energies(indices)) if math.isnan(e)]
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
