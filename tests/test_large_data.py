"""Data larger than memory: batch reads that match the file's chunks, a payload cache that keeps its bound, and
read-ahead that changes nothing but when a batch is read (bench/scale.py measures the rest)."""
import os
import threading

import h5py
import numpy as np
import pytest
import torch

import aenet_core.training.loop as loop
from aenet_core.data import HDF5StructureDataset
from aenet_core.data.batch import BatchLoader, FeatureSource
from aenet_core.data.hdf5.payloads import _rows
from training_setup import REFERENCES, config, descriptor, potential

PAYLOADS = ("features/values", "derivatives/edges/center", "derivatives/edges/dG_dd", "derivatives/edges/unit",
            "derivatives/triplets/dG_dcos", "derivatives/triplets/j")


@pytest.fixture(scope="module")
def database(cuau, tmp_path_factory):
    path = tmp_path_factory.mktemp("large") / "db.h5"
    db = HDF5StructureDataset(descriptor(), path, sources=cuau, mode="build", atomic_energies=REFERENCES)
    db.build_database(show_progress=False, persist_features=True, persist_force_derivatives=True)
    db.close()
    return path


def test_rows_of_sorted_entries_are_their_slices_in_order(tmp_path):
    counts = np.array([3, 0, 5, 2, 0, 4, 1])  # entries without rows too
    offsets = np.concatenate([[0], np.cumsum(counts)])
    flat, wide = np.arange(offsets[-1]) * 1.5, np.arange(3 * offsets[-1]).reshape(3, -1)
    with h5py.File(tmp_path / "rows.h5", "w") as f:
        f.create_dataset("flat", data=flat, chunks=(2,), fletcher32=True)
        f.create_dataset("wide", data=wide, chunks=(3, 2), fletcher32=True)
    with h5py.File(tmp_path / "rows.h5", "r") as f:
        for indices in ([0], [1], [0, 1, 2], [0, 2, 5, 6], [1, 4], [2, 3, 4, 5], list(range(7))):
            expected = [np.arange(offsets[i], offsets[i + 1]) for i in indices]
            expected = np.concatenate(expected).astype(int)
            assert np.array_equal(_rows(f["flat"], offsets, indices), flat[expected])
            assert np.array_equal(_rows(f["wide"], offsets, indices, axis=1), wide[:, expected])
        with pytest.raises(ValueError, match="increasing order"):
            _rows(f["flat"], offsets, [2, 0])


def test_payload_chunks_are_about_half_an_entry_and_labels_keep_theirs(database):
    with h5py.File(database, "r") as f:
        atoms = np.diff(f["entries/atom_offset"][:])
        edges = np.diff(f["derivatives/edge_offset"][:])
        assert f["features/values"].chunks[0] <= max(1, atoms.mean() // 2)
        assert f["derivatives/edges/center"].chunks[0] <= max(1, edges[edges > 0].mean() // 2)
        assert f["derivatives/edges/dG_dd"].chunks[1] == f["derivatives/edges/center"].chunks[0]
        assert f["atoms/positions"].chunks[0] == len(f["atoms/positions"])  # read whole: one chunk up to 1 MiB


def test_a_file_with_the_earlier_one_mebibyte_chunks_reads_the_same(database, tmp_path):
    older = tmp_path / "older.h5"
    older.write_bytes(database.read_bytes())
    with h5py.File(older, "a") as f:  # re-chunked as builds before entry-sized chunks made them
        for name in PAYLOADS:
            values, axis = f[name][...], f[name].ndim - 1 if name.startswith("derivatives/") else 0
            del f[name]
            chunks = list(values.shape)
            chunks[axis] = max(1, min(chunks[axis], (1 << 20) // max(1, values.itemsize * (values.size // max(
                1, values.shape[axis])))))
            maxshape = list(values.shape)
            maxshape[axis] = None
            f.create_dataset(name, data=values, chunks=tuple(chunks), maxshape=tuple(maxshape), fletcher32=True)
    new, old = (HDF5StructureDataset(None, path, mode="load", payload_cache_mb=0) for path in (database, older))
    indices = [i for i in (6, 0, 3, 11, 2) if new.has_forces(i)]
    (a, da), (b, db) = new.stored_derivatives(indices), old.stored_derivatives(indices)
    assert torch.equal(a, b)
    for name, value in vars(da).items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, getattr(db, name)), name


def batches_of(loader, plan):
    return [(b.features, b.derivatives.contract(torch.ones_like(b.features[: b.n_force_atoms]))
             if b.derivatives is not None else None, b.indices) for b in loader(plan)]


def test_read_ahead_gives_the_same_batches_and_cache_traffic(database):
    plan = [((3, 1, 7), (3, 7)), ((0, 5, 2, 9), (5,)), ((12, 3, 4), ()), ((8, 6), (8, 6)), ((1, 2), (2,))]
    results = []
    for read_ahead in (0, 2):
        db = HDF5StructureDataset(None, database, mode="load", payload_cache_mb=0.01)
        forced = [key for key in plan if all(db.has_forces(i) for i in key[1])]
        loader = BatchLoader(FeatureSource(db), read_ahead=read_ahead)
        assert loader.read_ahead == read_ahead
        cache = db._payload_reader().cache
        results.append((batches_of(loader, forced), (cache.hits, cache.misses, list(cache.entries))))
    (plain, plain_traffic), (ahead, ahead_traffic) = results
    assert ahead_traffic == plain_traffic
    for (fa, ca, ia), (fb, cb, ib) in zip(plain, ahead):
        assert ia == ib and torch.equal(fa, fb)
        assert (ca is None and cb is None) or torch.equal(ca, cb)


def test_read_ahead_is_the_default_for_a_database_with_a_core_to_spare(database, cuau, monkeypatch):
    from aenet_core.data import StructureDataset

    db = HDF5StructureDataset(None, database, mode="load")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(torch.get_num_threads() + 1)))
    assert BatchLoader(FeatureSource(db), prefetch_factor=3).read_ahead == 3
    assert BatchLoader(FeatureSource(StructureDataset(cuau, descriptor()))).read_ahead == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(torch.get_num_threads())))
    assert BatchLoader(FeatureSource(db), prefetch_factor=3).read_ahead == 0  # every core computes
    with pytest.raises(ValueError, match="read_ahead"):
        BatchLoader(FeatureSource(db), read_ahead=-1)


class Failing:
    """A source whose third batch fails; counts the batches it made."""

    def __init__(self):
        self.dataset, self.made = None, []

    def batch(self, indices, use_forces):
        if indices == [2]:
            raise RuntimeError("unreadable entry 2")
        self.made.append(indices[0])
        return indices[0]


def test_read_ahead_raises_the_source_error_and_stops_with_its_consumer():
    source = Failing()
    loader = BatchLoader(source, read_ahead=1)
    batches = loader([((i,), ()) for i in range(5)])
    assert [next(batches), next(batches)] == [0, 1]
    with pytest.raises(RuntimeError, match="unreadable entry 2"):
        next(batches)
    source.made.clear()
    batches = loader([((i,), ()) for i in (3, 4, 5, 6, 7, 8, 9)])
    assert next(batches) == 3
    batches.close()  # a consumer that stops early: the thread ends, at most two batches beyond
    assert not [t for t in threading.enumerate() if t.name == "aenet_core batch read-ahead"]
    assert source.made[0] == 3 and len(source.made) <= 4


def test_training_with_and_without_read_ahead_gives_the_same_weights(database, monkeypatch):
    def train():
        db = HDF5StructureDataset(None, database, mode="load", payload_cache_mb=0.02)
        model = potential()
        out = model.train(dataset=db, config=config(iterations=2, force_weight=0.3, atomic_energies=None))
        return model.model.state_dict(), out.errors

    ahead, ahead_errors = train()
    plain = BatchLoader
    monkeypatch.setattr(loop, "BatchLoader", lambda *args, **kwargs: plain(*args, read_ahead=0, **kwargs))
    without, errors = train()
    for name, value in ahead.items():
        assert torch.equal(value, without[name]), name
    assert ahead_errors.equals(errors)


def test_a_small_payload_cache_keeps_its_bound_over_an_epoch(database):
    db = HDF5StructureDataset(None, database, mode="load", payload_cache_mb=0.02)
    bound = 0.02 * 2**20
    forced = [i for i in range(len(db)) if db.has_forces(i)]
    order = np.random.default_rng(0).permutation(forced).tolist()
    largest = 0
    for start in range(0, len(order), 3):
        db.stored_derivatives(order[start: start + 3])
        cache = db._payload_reader().cache
        assert cache.n_bytes <= bound
        largest = max(largest, cache.n_bytes)
    assert 0 < largest and len(db._payload_reader().cache) < len(forced)


def test_memory_the_cache_lets_go_of_is_handed_back(database, monkeypatch):
    import aenet_core.data.hdf5.payloads as payloads

    trims = []
    monkeypatch.setattr(payloads, "TRIM_BYTES", 1)
    monkeypatch.setattr(payloads, "return_freed_memory", lambda: trims.append(1) or True)
    db = HDF5StructureDataset(None, database, mode="load", payload_cache_mb=0.002)  # 2 kB: a few entries
    db.stored_features([0])
    assert trims == []  # nothing evicted yet
    for i in range(1, len(db)):
        db.stored_features([i])
    reader = db._payload_reader()
    assert trims and reader._evicted == 0 and 0 < reader.cache.n_bytes <= 0.002 * 2**20
    entry = reader.cache.entries[len(db) - 1][0]
    assert entry.untyped_storage().nbytes() >= entry.nbytes  # one buffer per entry, holding all its arrays
