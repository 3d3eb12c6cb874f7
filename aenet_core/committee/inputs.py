"""What a committee trains on: every input form resolved to one dataset and the split all members share."""
from __future__ import annotations

from torch.utils.data import Subset

from aenet_core.data.memory import StructureDataset
from aenet_core.data.protocol import resolve_subsets
from aenet_core.data.shards import ShardedDataset
from aenet_core.split import Split, as_split, split_indices

GIVEN = "the train_dataset and test_dataset given (Subsets resolved to their datasets' entries)"


def dataset_kind(dataset) -> str | None:
    """How committee_metadata.json names a dataset: its class, ``Subset[...]`` around a Subset's."""
    if dataset is None:
        return None
    return f"Subset[{dataset_kind(dataset.dataset)}]" if isinstance(dataset, Subset) else type(dataset).__name__


def _given(train_dataset, test_dataset, split_seed) -> tuple:
    """One dataset and split holding exactly the entries of ``train_dataset`` and ``test_dataset``: their
    common dataset, or the two datasets joined (``ShardedDataset``)."""
    roots, sides = [], []
    for side in (train_dataset, test_dataset):
        root, entries = resolve_subsets(side) if side is not None else (None, [])
        if root is not None and not any(root is r for r in roots):
            roots.append(root)
        sides.append((root, entries))
    dataset = roots[0] if len(roots) == 1 else ShardedDataset(roots)
    starts = {id(root): sum(len(r) for r in roots[:i]) for i, root in enumerate(roots)}
    train, test = ([starts[id(root)] + i for i in entries] if root is not None else [] for root, entries in sides)
    return dataset, Split.given(dataset, train, test, split_seed, GIVEN)


def committee_data(descriptor, config, structures=None, dataset=None, train_dataset=None, test_dataset=None,
                   split=None) -> tuple:
    """(dataset, split, names of the train and test data for the metadata) from ``structures`` or ``dataset``
    (split by ``split``, else ``testpercent``/``split_seed``), ``dataset`` with ``test_dataset`` (trained on
    whole), or ``train_dataset``/``test_dataset`` as given."""
    if sum(x is not None for x in (structures, dataset, train_dataset)) != 1:
        raise ValueError("committee.train() needs exactly one of structures=, dataset= or train_dataset=")
    if structures is not None and test_dataset is not None:
        raise ValueError("test_dataset= goes with train_dataset= or dataset=, not with structures= (split by "
                         "testpercent/split_seed or split=)")
    if split is not None and (train_dataset is not None or test_dataset is not None):
        raise ValueError("split= applies to structures= or dataset=, not to train_dataset=/test_dataset=")
    if dataset is not None and test_dataset is not None:
        train_dataset, dataset = dataset, None
    if train_dataset is not None:
        return (*_given(train_dataset, test_dataset, config.split_seed),
                (dataset_kind(train_dataset), dataset_kind(test_dataset)))
    divided = split is not None or config.testpercent > 0
    if structures is not None:
        dataset = StructureDataset(structures, descriptor, max_energy=config.max_energy,
                                   max_forces=config.max_forces, atomic_energies=config.atomic_energies)
        kinds = ("StructureDataset", "StructureDataset" if divided else None)  # aenet-python splits into two
    else:
        kind = dataset_kind(dataset)
        kinds = (f"Subset[{kind}]", f"Subset[{kind}]") if divided else (kind, None)
    if isinstance(dataset, Subset):
        if split is not None:
            raise ValueError("split= indexes a dataset's entries; give the dataset, not a Subset of it")
        root, entries = resolve_subsets(dataset)
        train, test = split_indices(len(entries), config.testpercent, config.split_seed)
        split = Split.given(root, [entries[i] for i in train], [entries[i] for i in test], config.split_seed,
                            f"testpercent/split_seed within {dataset_kind(dataset)} ({len(entries)} entries)")
        return root, split, kinds
    resolve_subsets(dataset)  # refuses what committees cannot train on
    split = as_split(split) if split is not None else Split.create(dataset, config.testpercent, config.split_seed)
    split.check(dataset)
    return dataset, split, kinds
