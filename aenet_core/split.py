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
"""
from __future__ import annotations

import random
import warnings
from dataclasses import asdict, dataclass

from aenet_core.files import check_format, read_json, write_json
from aenet_core.rules import TESTPERCENT

FORMAT = "aenet_core.split"
VERSION = 1
DEFAULT_TESTPERCENT = 10.0
RECIPE = ("random.Random(split_seed).shuffle(list(range(n_entries))); the first int(n_entries * testpercent / 100) "
          "are the test set, the rest the training set; test entries whose species, positions and cell repeat a "
          "training entry's move to the training set; both stored sorted")
SHOWN = 5  # repeated structures a warning names


def split_indices(n: int, testpercent: float, split_seed) -> tuple:
    """(train, test) index lists by the recipe above."""
    order = list(range(n))
    random.Random(split_seed).shuffle(order)
    n_test = int(n * testpercent / 100)
    return sorted(order[n_test:]), sorted(order[:n_test])


def _without_repeats_in_test(dataset, train, test) -> tuple:
    """(train, test) with each test entry that repeats a training structure moved to the training side,
    where it cannot pass for an unseen structure."""
    if not test:
        return train, test
    keys = dataset.geometry_sha256s
    trained = {keys[i] for i in train}
    repeats = [i for i in test if keys[i] in trained]
    if not repeats:
        return train, test
    names = ", ".join(dataset.get_structure_identifier(i) for i in repeats[:SHOWN])
    warnings.warn(f"{len(repeats)} of {len(test)} test structures repeat a training structure (same species, "
                  f"positions and cell) and move to the training set: {names}{' ...' if len(repeats) > SHOWN else ''}",
                  stacklevel=3)
    return sorted(train + repeats), [i for i in test if keys[i] not in trained]


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
        if not TESTPERCENT.test(testpercent):
            raise ValueError(f"testpercent must be {TESTPERCENT.text}; got {testpercent!r}")
        train, test = _without_repeats_in_test(dataset, *split_indices(len(dataset), testpercent, split_seed))
        return cls(train, test, split_seed, float(testpercent), len(dataset), dataset.content_sha256)

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


def as_split(split) -> Split:
    """A Split, or one loaded from a path."""
    return split if isinstance(split, Split) else Split.load(split)
