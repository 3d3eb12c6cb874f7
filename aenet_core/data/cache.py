"""Per-structure caches: one least-recently-used cache bounded by entries or bytes, and a persistent
cache on disk on top of it.

``LRUCache(max_entries=None)`` keeps everything, ``max_entries=0`` nothing;
``max_bytes`` bounds the sum of ``size_of(value)`` instead (a value larger than
the bound is not kept).  A cache pickled into a DataLoader worker arrives empty:
each process keeps its own.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import warnings
from collections import OrderedDict
from dataclasses import fields
from pathlib import Path

from aenet_core.files import atomic_write
from aenet_core.structure import structure_sha256


class LRUCache:
    """Least-recently-used cache with a bound on the number of entries or on their total size."""

    def __init__(self, max_entries=None, max_bytes=None, size_of=None):
        if max_bytes is not None and size_of is None:
            raise ValueError("a cache bounded in bytes needs size_of")
        self.max_entries, self.max_bytes, self.size_of = max_entries, max_bytes, size_of
        self.entries = OrderedDict()
        self.n_bytes = 0
        self.hits = self.misses = 0

    def __contains__(self, key) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key):
        """The value (now the most recently used), or None."""
        if key in self.entries:
            self.entries.move_to_end(key)
            self.hits += 1
            return self.entries[key]
        self.misses += 1
        return None

    def put(self, key, value) -> None:
        if self.max_entries == 0:
            return
        size = self.size_of(value) if self.size_of else 0
        if self.max_bytes is not None and size > self.max_bytes:
            return
        old = self.entries.pop(key, None)
        self.n_bytes += size - (self.size_of(old) if old is not None and self.size_of else 0)
        self.entries[key] = value
        while (self.max_entries is not None and len(self.entries) > self.max_entries) or \
                (self.max_bytes is not None and self.n_bytes > self.max_bytes):
            _, dropped = self.entries.popitem(last=False)
            self.n_bytes -= self.size_of(dropped) if self.size_of else 0

    def clear(self) -> None:
        self.entries.clear()
        self.n_bytes = 0

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(entries=OrderedDict(), n_bytes=0, hits=0, misses=0)
        return state


class PersistentCache(LRUCache):
    """An LRUCache whose entries are also kept on disk, keyed by structure geometry and descriptor.

    Files live in ``directory/<descriptor hash>/<kind>/<structure hash>.pt``, so a
    later run (or another process) with the same descriptor and structures reads
    them instead of featurizing again.  Files hold only tensors and plain data,
    are written atomically and read with ``weights_only=True``; one that cannot
    be read is computed again.
    """

    def __init__(self, max_entries, directory, dataset, kind):
        super().__init__(max_entries)
        key = {**dataset.descriptor.identity(), "dtype": dataset.descriptor.get_config()["dtype"]}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = Path(directory) / digest / kind
        self.dataset = dataset
        self.disk_hits = 0

    def _file(self, index) -> Path:
        structure = self.dataset.get_structure(index)
        return self.directory / f"{structure_sha256(structure, labels=False)}.pt"

    def get(self, key):
        value = super().get(key)
        if value is None and self.max_entries != 0:
            path = self._file(key)
            if path.exists():
                value = self._read(path)
            if value is not None:
                self.disk_hits += 1
                super().put(key, value)  # in memory only: the file is already there
        return value

    @staticmethod
    def _read(path):
        """The cached value, or None (and the file removed) when it cannot be read safely."""
        import torch

        try:
            return _restore(torch.load(path, weights_only=True))
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError, TypeError) as err:
            # damaged, truncated or not plain data: compute it again (an unreadable disk still raises)
            warnings.warn(f"{path}: unreadable cache file ({type(err).__name__}: {str(err)[:200]}); "
                          f"computing it again")
            path.unlink(missing_ok=True)
            return None

    def put(self, key, value):
        super().put(key, value)
        path = self._file(key) if self.max_entries != 0 else None
        if path is not None and not path.exists():
            import torch

            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path, binary=True) as handle:
                torch.save(_storable(value), handle)


def _storable(value):
    """Cache values as plain tensors/tuples/dicts (loadable with weights_only=True)."""
    from aenet_core.derivatives import LocalDerivatives

    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], LocalDerivatives):
        derivatives = value[1]  # its fields only: what it derives when asked for is not stored
        return {"features": value[0], "derivatives": {f.name: getattr(derivatives, f.name) for f in fields(derivatives)}}
    return value


def _restore(value):
    from aenet_core.derivatives import LocalDerivatives

    if isinstance(value, dict) and "derivatives" in value:
        return value["features"], LocalDerivatives(**value["derivatives"])
    return value
