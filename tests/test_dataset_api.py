"""aenet-python's dataset API: sample dicts (``dataset[i]``, ``materialize_sample``) of every dataset, torch
Subsets (nested) through prediction and training, and the ``train_test_split`` recipes."""
import math
import random
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from aenet_core.data import resolve_subsets
from aenet_core.torch_training import (CachedStructureDataset, HDF5StructureDataset, StructureDataset,
                                       train_test_split, train_test_split_dataset)
from training_setup import REFERENCES, config, dense_jacobian, descriptor, finite_difference_jacobian, potential

KEYS = {"features", "neighbor_info", "graph", "triplets", "local_derivatives", "positions", "species",
        "species_indices", "cell", "pbc", "energy", "forces", "has_forces", "use_forces", "n_atoms", "name"}


@pytest.fixture(scope="module")
def structures(cuau):
    """Eight Cu-Au structures, the fourth without forces and the sixth without a name."""
    chosen = list(cuau[:8])
    chosen[3] = replace(chosen[3], forces=None)
    chosen[5] = replace(chosen[5], name=None)
    return chosen


@pytest.fixture(scope="module")
def datasets(structures, tmp_path_factory):
    """{kind: dataset} of the same structures: in memory, cached, and a database with persisted features and
    derivatives."""
    db = HDF5StructureDataset(descriptor(), tmp_path_factory.mktemp("db") / "db.h5", sources=structures,
                              mode="build", atomic_energies=REFERENCES)
    db.build_database(show_progress=False, persist_features=True, persist_force_derivatives=True)
    return {"memory": StructureDataset(structures, descriptor(), atomic_energies=REFERENCES),
            "cached": CachedStructureDataset(structures, descriptor(), atomic_energies=REFERENCES,
                                             show_progress=False),
            "database": db}


@pytest.mark.parametrize("kind", ["memory", "cached", "database"])
def test_every_dataset_is_indexable_and_gives_the_documented_sample(kind, datasets, structures):
    dataset, d = datasets[kind], descriptor()
    assert len(dataset) == len(structures)
    for i, s in enumerate(structures):
        sample = dataset[i]
        assert set(sample) == KEYS
        view = s.has_forces() and kind != "cached"  # a cached dataset's items are the energy view
        assert sample["use_forces"] is view and sample["has_forces"] is s.has_forces()
        assert sample["features"].dtype == torch.float64 and sample["features"].shape == (s.n_atoms, d.n_features)
        torch.testing.assert_close(sample["features"], d.forward_from_positions(s.positions, s.species, s.cell, s.pbc),
                                   rtol=0, atol=1e-12)
        assert sample["species"] == s.species and sample["n_atoms"] == s.n_atoms and sample["energy"] == s.energy
        assert sample["species_indices"].dtype == torch.int64
        assert sample["species_indices"].tolist() == [d.species.index(x) for x in s.species]
        if kind == "cached":  # aenet-python's cached energy-only items carry no positions
            assert sample["positions"] is None
        else:
            np.testing.assert_array_equal(sample["positions"].numpy(), s.positions)
        np.testing.assert_array_equal(sample["cell"].numpy(), s.cell)
        assert sample["pbc"].dtype == torch.bool and sample["pbc"].tolist() == list(s.pbc)
        if view:
            np.testing.assert_array_equal(sample["forces"].numpy(), s.forces)
            assert sample["local_derivatives"]["radial"]["dG_drij"].shape[1:] == (d.rad_order + 1, 3)
        else:
            assert sample["forces"] is None and sample["local_derivatives"] is None
        assert sample["graph"] is None and sample["triplets"] is None and sample["neighbor_info"] is None
        assert sample["name"] == (s.name or dataset.get_structure_identifier(i))
    assert dataset[5]["name"] == "structure_000005"
    with pytest.raises(IndexError):
        dataset[len(structures)]


def test_every_dataset_loads_through_a_dataloader(datasets):
    assert isinstance(datasets["memory"], Dataset) and isinstance(datasets["cached"], Dataset)
    assert not isinstance(datasets["database"], Dataset)  # a map-style dataset all the same (opening needs no torch)
    for dataset in datasets.values():
        batch = next(iter(DataLoader(dataset, batch_size=3, collate_fn=list)))
        assert [sample["name"] for sample in batch] == [dataset[i]["name"] for i in range(3)]


def test_sample_derivatives_are_the_features_gradients(datasets, structures):
    """The force view's derivatives against central finite differences of the features."""
    d, s = descriptor(), structures[0]
    dense = dense_jacobian(datasets["memory"][0]["local_derivatives"], s.n_atoms, d)
    fd = finite_difference_jacobian(lambda x: d.forward_from_positions(x, s.species, s.cell, s.pbc),
                                    torch.as_tensor(s.positions), step=1e-5)
    torch.testing.assert_close(dense, fd, rtol=0, atol=1e-7)


def test_database_samples_read_the_persisted_derivatives(datasets, monkeypatch):
    db, d = datasets["database"], descriptor()
    n = db[1]["n_atoms"]
    computed = dense_jacobian(datasets["memory"][1]["local_derivatives"], n, d)
    torch.testing.assert_close(dense_jacobian(db[1]["local_derivatives"], n, d), computed, rtol=0, atol=1e-12)
    monkeypatch.setattr(d.__class__, "forward_with_derivatives", None)  # db[i] must not compute them
    assert db[1]["local_derivatives"] is not None


@pytest.mark.parametrize("kind", ["memory", "database"])
def test_materialize_sample_serves_either_view_and_fills_the_feature_cache(kind, datasets, structures):
    dataset = datasets[kind]
    energy_view = dataset.materialize_sample(0, use_forces=False)
    assert energy_view["has_forces"] and not energy_view["use_forces"] and energy_view["forces"] is None
    assert dataset.materialize_sample(3, use_forces=True)["use_forces"] is False  # no forces to use
    state = SimpleNamespace(feature_cache={})
    first = dataset.materialize_sample(2, use_forces=False, cache_state=state, cache_features=True)
    assert list(state.feature_cache) == [2]
    again = dataset.materialize_sample(2, use_forces=False, cache_state=state, cache_features=True)
    assert again["features"] is state.feature_cache[2] and torch.equal(again["features"], first["features"])
    assert dataset.get_force_indices() == [i for i, s in enumerate(structures) if s.has_forces()]


def test_structure_dataset_statistics_and_reference_attributes(datasets, structures):
    dataset = datasets["memory"]
    stats = dataset.get_statistics()
    assert stats == {"n_total": 8, "n_force": 7, "n_energy_only": 1, "n_force_selected": 7,
                     "total_atoms": sum(s.n_atoms for s in structures),
                     "avg_atoms": sum(s.n_atoms for s in structures) / 8, "species": ["Au", "Cu"]}
    assert dataset.energy_only_structures == [3] and dataset.force_structures == dataset.get_force_indices()
    assert dataset.warmup_caches() is None and dataset.seed is None
    assert StructureDataset(structures, descriptor(), None, None, None, 5).seed == 5  # aenet-python's position


# -- Subsets -------------------------------------------------------------------------------------


def test_resolve_subsets_follows_nested_subsets_to_the_base_entries(datasets):
    db = datasets["database"]
    assert resolve_subsets(db) == (db, list(range(8)))
    nested = Subset(Subset(db, [7, 1, 4, 2, 6]), [3, 0, -1, 0])
    base, indices = resolve_subsets(nested)
    assert base is db and indices == [2, 7, 6, 7]
    assert [nested[k]["name"] for k in range(4)] == [db[i]["name"] for i in indices]
    with pytest.raises(ValueError, match="list"):
        resolve_subsets(Subset([1, 2, 3], [0]))
    with pytest.raises(IndexError, match="8"):
        resolve_subsets(Subset(db, [8]))


@pytest.mark.parametrize("kind", ["memory", "database"])
def test_predict_dataset_takes_nested_subsets(kind, datasets, structures):
    p = potential()
    p.train(structures=structures, config=config(iterations=1))
    dataset = datasets[kind]
    nested = Subset(Subset(dataset, [6, 0, 5, 2, 7]), [4, 1, 3])
    chosen = [7, 0, 2]
    out = p.predict_dataset(nested, eval_forces=True)
    direct = p.predict([structures[i] for i in chosen], eval_forces=True)
    np.testing.assert_allclose(out.total_energy, direct.total_energy, rtol=0, atol=1e-12)
    for a, b in zip(out.forces, direct.forces):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert out.structure_paths == [dataset.get_structure_identifier(i) for i in chosen]


def history_of(p):
    return {k: v for k, v in p.history.items() if not k.endswith("_time")}


@pytest.mark.parametrize("kind", ["memory", "database"])
def test_training_on_subsets_is_training_on_those_structures(kind, datasets, structures):
    dataset, train_idx, test_idx = datasets[kind], [6, 1, 0, 4, 7, 2], [5, 3]
    settings = config(iterations=2, force_weight=0.3, atomic_energies=None)
    via_subsets, direct = potential(), potential()
    via_subsets.train(train_dataset=Subset(Subset(dataset, list(range(8))), train_idx),
                      test_dataset=Subset(dataset, test_idx), config=settings)
    direct.train(train_dataset=StructureDataset([structures[i] for i in train_idx], descriptor(),
                                                atomic_energies=REFERENCES),
                 test_dataset=StructureDataset([structures[i] for i in test_idx], descriptor(),
                                               atomic_energies=REFERENCES), config=settings)
    np.testing.assert_equal(history_of(via_subsets), history_of(direct))
    state, other = via_subsets.model.state_dict(), direct.model.state_dict()
    assert all(torch.equal(state[k], other[k]) for k in state)


def test_a_subset_given_as_dataset_is_split_like_its_structures(datasets, structures):
    chosen = [7, 2, 5, 0, 4, 1, 6]
    settings = config(iterations=2, testpercent=30, split_seed=4, atomic_energies=None)
    via_subset, direct = potential(), potential()
    via_subset.train(dataset=Subset(datasets["memory"], chosen), config=settings)
    direct.train(dataset=StructureDataset([structures[i] for i in chosen], descriptor(), atomic_energies=REFERENCES),
                 config=settings)
    np.testing.assert_equal(history_of(via_subset), history_of(direct))
    with pytest.raises(ValueError, match="Subset"):
        potential().train(dataset=Subset(datasets["memory"], chosen), split="split.json", config=settings)


# -- splits --------------------------------------------------------------------------------------


def recipe(n, test_fraction, seed):
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test = int(n * test_fraction)
    return order[n_test:], order[:n_test]


def test_train_test_split_gives_two_structure_datasets_by_the_recipe(datasets, structures):
    dataset = datasets["cached"]
    train, test = train_test_split(dataset, test_fraction=0.3, seed=11)
    expected_train, expected_test = recipe(8, 0.3, 11)
    assert type(train) is StructureDataset and type(test) is StructureDataset
    assert [s.name for s in test.structures] == [structures[i].name for i in sorted(expected_test)]
    assert [s.energy for s in train.structures] == [structures[i].energy for i in sorted(expected_train)]
    assert train.identifiers == [dataset.identifiers[i] for i in sorted(expected_train)]  # kept, not renumbered
    assert (train.atomic_energies, train.seed, train.max_energy) == (REFERENCES, 11, None)
    again = train_test_split(dataset, test_fraction=0.3, seed=11)
    assert [x.identifiers for x in again] == [train.identifiers, test.identifiers]
    everything, nothing = train_test_split(dataset, test_fraction=0.0)
    assert len(everything) == 8 and len(nothing) == 0


def test_the_documented_dataset_examples_give_the_documented_values():
    from aenet_core.torch_featurize import ChebyshevDescriptor
    from aenet_core.torch_training import Structure

    d = ChebyshevDescriptor(species=["H"], rad_order=1, rad_cutoff=2.0, ang_order=0, ang_cutoff=2.0, min_cutoff=0.1)
    structures = [Structure(np.array([[0.0, 0, 0], [0.9, 0, 0], [0, 0.9, 0]]) + shift, ["H"] * 3, energy=energy,
                            forces=np.zeros((3, 3))) for shift, energy in ((0.0, 0.0), (0.1, 0.5))]
    dataset = StructureDataset(structures=structures, descriptor=d)
    assert dataset[0]["features"].shape == torch.Size([3, 3]) and dataset[0]["use_forces"] is True
    cached = CachedStructureDataset(structures=structures, descriptor=d, show_progress=False)
    assert cached[0]["features"].shape == torch.Size([3, 3]) and cached[0]["use_forces"] is False
    train, test = train_test_split(dataset, test_fraction=0.5, seed=42)
    assert (len(train), len(test)) == (1, 1)


@pytest.mark.parametrize("kind", ["memory", "database"])
def test_train_test_split_dataset_gives_disjoint_subsets_in_shuffled_order(kind, datasets):
    train, test = train_test_split_dataset(datasets[kind], test_fraction=0.25, seed=3)
    assert isinstance(train, Subset) and train.dataset is datasets[kind]
    assert (train.indices, test.indices) == recipe(8, 0.25, 3)
    assert sorted(train.indices + test.indices) == list(range(8))
    inner_train, inner_test = train_test_split_dataset(train, 0.5, seed=3)
    assert (inner_train.indices, inner_test.indices) == recipe(6, 0.5, 3)
    assert train_test_split_dataset(list("abcde"), 0.4, seed="x")[1].indices == recipe(5, 0.4, "x")[1]


@pytest.mark.parametrize("fraction", [1.5, -0.1, math.nan])
def test_splits_refuse_a_fraction_outside_0_to_1(fraction, datasets):
    for split in (train_test_split, train_test_split_dataset):
        with pytest.raises(ValueError, match="test_fraction"):
            split(datasets["memory"], test_fraction=fraction)


def test_splits_refuse_what_they_cannot_split(datasets):
    for split in (train_test_split, train_test_split_dataset):
        with pytest.raises(TypeError, match="test_fraction"):
            split(datasets["memory"], test_fraction=None)
    with pytest.raises(TypeError, match="train_test_split_dataset"):
        train_test_split(datasets["database"])
