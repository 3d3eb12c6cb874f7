"""Train/test splits as files, tied to the content of the dataset they index.

A split file (JSON, ``format = "aenet_core.split"``) holds the train and test
indices, ``split_seed``, ``testpercent``, the number of entries and the
``content_sha256`` of the dataset, and the recipe that drew it: shuffle
``range(n)`` with ``random.Random(split_seed)``; the first
``int(n * testpercent / 100)`` indices are the test set, the rest the training
set; both lists are stored sorted.  This is the trainer's own recipe, so
``train(dataset=db, split=...)`` and ``train(dataset=db, testpercent=p,
split_seed=s)`` use the same structures.  A test entry whose species, positions
and cell repeat a training entry's moves to the training set (with a warning),
where it cannot leak.  A split whose hash does not match the dataset is refused.

``Split.extend`` carries a split over to its dataset with entries appended
(active learning: the database, then the shards labelled since): the first
entries keep their side and every later one is a training entry, so the test
set, and its errors, stay those of the first round (but for a test entry that a
new entry repeats, which moves as above).

aenet-python's ``train_test_split`` (two StructureDatasets) and
``train_test_split_dataset`` (two torch Subsets of any dataset) shuffle the same
way, with ``int(n * test_fraction)`` test entries and no repeat check; the first
keeps both sides in entry order, the second in shuffled order, as aenet-python does.
"""
from __future__ import annotations

import numbers
import random
import warnings
from dataclasses import asdict, dataclass

from aenet_core.data.shards import ShardedDataset
from aenet_core.files import check_format, read_json, write_json
from aenet_core.rules import DEFAULT_TESTPERCENT, TESTPERCENT, UNIT, checked_number
from aenet_core.structure import structure_sha256

FORMAT = "aenet_core.split"
VERSION = 1
RECIPE = ("random.Random(split_seed).shuffle(list(range(n_entries))); the first int(n_entries * testpercent / 100) "
          "are the test set, the rest the training set; test entries whose species, positions and cell repeat a "
          "training entry's move to the training set; both stored sorted")
EXTEND_RECIPE = ("the first n_base entries keep their side in the base split; every later entry is a training "
                 "entry; test entries whose species, positions and cell repeat a training entry's move to the "
                 "training set; both stored sorted")
SHOWN = 5  # repeated structures a warning names


def shuffled_split(n: int, n_test: int, seed) -> tuple:
    """(train, test): ``range(n)`` shuffled by ``random.Random(seed)``, the first ``n_test`` the test set, both in
    shuffled order."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order[n_test:], order[:n_test]


def split_indices(n: int, testpercent: float, split_seed) -> tuple:
    """(train, test) index lists by the recipe above."""
    train, test = shuffled_split(n, int(n * testpercent / 100), split_seed)
    return sorted(train), sorted(test)


def draw(dataset, testpercent: float, split_seed, entries=None) -> tuple:
    """(train, test) entries of ``dataset`` by the recipe above, drawn among ``entries`` (default all; e.g. a
    Subset's, see ``resolve_subsets``): positions in ``entries`` are shuffled and sorted, the lists hold the
    entries at them."""
    if not TESTPERCENT.test(testpercent):
        raise ValueError(f"testpercent must be {TESTPERCENT.text}; got {testpercent!r}")
    entries = list(range(len(dataset))) if entries is None else list(entries)
    train, test = _without_repeats_in_test(dataset, entries, *split_indices(len(entries), testpercent, split_seed))
    return [entries[i] for i in train], [entries[i] for i in test]


def _without_repeats_in_test(dataset, entries, train, test) -> tuple:
    """(train, test) positions in ``entries`` with each test entry that repeats a training structure moved to the
    training side, where it cannot pass for an unseen structure."""
    if not test:
        return train, test
    keys = dataset.geometry_sha256s
    trained = {keys[entries[i]] for i in train}
    repeats = [i for i in test if keys[entries[i]] in trained]
    if not repeats:
        return train, test
    names = ", ".join(dataset.get_structure_identifier(entries[i]) for i in repeats[:SHOWN])
    warnings.warn(f"{len(repeats)} of {len(test)} test structures repeat a training structure (same species, "
                  f"positions and cell) and move to the training set: {names}{' ...' if len(repeats) > SHOWN else ''}",
                  stacklevel=4)
    return sorted(train + repeats), [i for i in test if keys[entries[i]] not in trained]


def _test_count(owner: str, n: int, test_fraction) -> int:
    """``int(n * test_fraction)``, aenet-python's count, for a ``test_fraction`` in [0, 1]."""
    if not isinstance(test_fraction, numbers.Real):
        raise TypeError(f"{owner}: test_fraction must be a number in [0, 1]; got {test_fraction!r}")
    return int(n * checked_number(owner, "test_fraction", test_fraction, UNIT))


def train_test_split(dataset, test_fraction: float = 0.1, seed=None) -> tuple:
    """(train, test) StructureDatasets of an in-memory dataset's entries: ``range(n)`` shuffled by
    ``random.Random(seed)``, the first ``int(n * test_fraction)`` the test set, each side in entry order
    (either may be empty).  Entries keep their identifiers and the dataset's filter settings."""
    from aenet_core.data.memory import StructureDataset

    if not isinstance(dataset, StructureDataset):
        raise TypeError(f"train_test_split splits a StructureDataset or CachedStructureDataset; got "
                        f"{type(dataset).__name__} (train_test_split_dataset splits any dataset into Subsets)")
    train, test = shuffled_split(len(dataset), _test_count("train_test_split", len(dataset), test_fraction), seed)
    return dataset.part(sorted(train), seed), dataset.part(sorted(test), seed)


def train_test_split_dataset(dataset, test_fraction: float = 0.1, seed=None) -> tuple:
    """(train, test) ``torch.utils.data.Subset``s of any dataset with a length: ``range(n)`` shuffled by
    ``random.Random(seed)``, the first ``int(n * test_fraction)`` the test set; both keep the shuffled order."""
    from torch.utils.data import Subset

    n = len(dataset)
    train, test = shuffled_split(n, _test_count("train_test_split_dataset", n, test_fraction), seed)
    return Subset(dataset, train), Subset(dataset, test)


@dataclass(frozen=True)
class Split:
    train: list
    test: list
    split_seed: int | None
    testpercent: float
    n_entries: int
    content_sha256: str
    recipe: str = RECIPE

    @classmethod
    def create(cls, dataset, testpercent: float = DEFAULT_TESTPERCENT, split_seed: int | None = None) -> Split:
        train, test = draw(dataset, testpercent, split_seed)
        return cls(train, test, split_seed, float(testpercent), len(dataset), dataset.content_sha256)

    @classmethod
    def extend(cls, base: Split, base_dataset, dataset) -> Split:
        """The split of ``dataset``, whose first entries are ``base_dataset``'s (that ``base`` was drawn from):
        they keep their side and every later entry is a training entry.  ``split_seed`` and ``testpercent``
        are the base split's."""
        base.check(base_dataset, label="the base split")
        if not _begins_with(dataset, base_dataset):
            raise ValueError(f"the dataset given ({len(dataset)} entries) does not begin with the {base.n_entries} "
                             f"entries of the base split's dataset (content hash {base.content_sha256[:12]}…): a "
                             f"split extends only to its dataset with entries appended")
        train = sorted(base.train + list(range(base.n_entries, len(dataset))))
        train, test = _without_repeats_in_test(dataset, range(len(dataset)), train, list(base.test))
        recipe = f"{EXTEND_RECIPE} (n_base = {base.n_entries}, base content_sha256 {base.content_sha256})"
        return cls(train, test, base.split_seed, base.testpercent, len(dataset), dataset.content_sha256, recipe)

    @classmethod
    def given(cls, dataset, train, test, split_seed: int | None, recipe: str) -> Split:
        """The split of ``dataset`` into the entries ``train`` and ``test`` chosen elsewhere (``recipe`` says
        how); ``testpercent`` is the share they give the test set."""
        train, test = sorted(int(i) for i in train), sorted(int(i) for i in test)
        outside = [i for i in train + test if not 0 <= i < len(dataset)]
        if outside:
            raise ValueError(f"split indices {outside[:SHOWN]} fall outside 0..{len(dataset) - 1}")
        share = 100.0 * len(test) / max(1, len(train) + len(test))
        return cls(train, test, split_seed, share, len(dataset), dataset.content_sha256, recipe)

    def check(self, dataset, label="split") -> None:
        """Refuse a dataset other than the one this split was drawn from."""
        if len(dataset) != self.n_entries or dataset.content_sha256 != self.content_sha256:
            raise ValueError(f"{label} was drawn from a different dataset (content hash "
                             f"{self.content_sha256[:12]}…, {self.n_entries} entries) than the one given "
                             f"({len(dataset)} entries); make a new split for this dataset")

    def save(self, path) -> None:
        write_json(path, {"format": FORMAT, "version": VERSION, **asdict(self)}, indent=1)

    @classmethod
    def load(cls, path) -> Split:
        data = read_json(path, "split file")
        data = data if isinstance(data, dict) else {}
        check_format(path, data.get("format"), FORMAT, data.get("version"), (VERSION,), "split file",
                     "split file version")
        fields = ("train", "test", "split_seed", "testpercent", "n_entries", "content_sha256", "recipe")
        missing = [k for k in fields if k not in data]
        if missing:
            raise ValueError(f"{path}: split file lacks {missing}")
        split = cls(**{k: data[k] for k in fields})
        everything = split.train + split.test
        if len(set(everything)) != len(everything) or any(not 0 <= i < split.n_entries for i in everything):
            raise ValueError(f"{path}: train and test indices overlap or fall outside 0..{split.n_entries - 1}")
        return split


def _begins_with(dataset, base_dataset) -> bool:
    """Whether the first entries of ``dataset`` are those of ``base_dataset``, structures and labels alike: at
    once when its first shard has the base's content, else compared entry by entry."""
    n = len(base_dataset)
    if len(dataset) < n:
        return False
    if isinstance(dataset, ShardedDataset):
        first = dataset.shards[0]
        if len(first) == n and first.content_sha256 == base_dataset.content_sha256:
            return True
    return all(structure_sha256(dataset.get_structure(i)) == structure_sha256(base_dataset.get_structure(i))
               for i in range(n))


def as_split(split) -> Split:
    """A Split, or one loaded from a path."""
    return split if isinstance(split, Split) else Split.load(split)
