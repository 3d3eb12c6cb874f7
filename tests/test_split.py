"""Split files: the recipe, round trips, the content-hash guard, and training with a split."""
import json
import random

import pytest
import torch

from aenet_core.data import HDF5StructureDataset
from aenet_core.descriptor import ChebyshevDescriptor
from aenet_core.example_data import make_cuau_structures
from aenet_core.split import Split, split_indices
from aenet_core.training.inputs import TrainingData
from aenet_core.torch_training import Adam, StructureDataset, TorchANNPotential, TorchTrainingConfig

REFERENCES = {"Cu": -0.5, "Au": -0.2}


def descriptor():
    return ChebyshevDescriptor(["Cu", "Au"], 4, 4.5, 2, 3.5, min_cutoff=0.5)


# Not the shared ``cuau``: the test of repeated structures numbers these ten.
@pytest.fixture(scope="module")
def cuau10():
    return make_cuau_structures(10, seed=8)


@pytest.fixture()
def db(cuau10, tmp_path):
    dataset = HDF5StructureDataset(descriptor(), tmp_path / "db.h5", sources=cuau10, mode="build",
                                   atomic_energies=REFERENCES)
    dataset.build_database(show_progress=False, persist_features=True, persist_force_derivatives=True)
    return dataset


def test_recipe_is_the_documented_shuffle():
    order = list(range(20))
    random.Random(11).shuffle(order)
    assert split_indices(20, 25, 11) == (sorted(order[5:]), sorted(order[:5]))
    assert split_indices(7, 0, 1) == (list(range(7)), [])


def test_round_trip_and_hash_guard(db, cuau10, tmp_path):
    split = Split.create(db, testpercent=30, split_seed=4)
    assert (split.train, split.test) == split_indices(len(cuau10), 30, 4)
    path = tmp_path / "split.json"
    split.save(path)
    loaded = Split.load(path)
    assert loaded == split and "shuffle" in loaded.recipe
    loaded.check(db)
    # The in-memory dataset of the same structures has the same content hash.
    assert StructureDataset(cuau10, descriptor()).content_sha256 == db.content_sha256
    changed = [s.copy() for s in cuau10]
    changed[3].energy += 1e-6
    with pytest.raises(ValueError, match="different dataset"):
        loaded.check(StructureDataset(changed, descriptor()))
    with pytest.raises(ValueError, match="different dataset"):
        loaded.check(StructureDataset(cuau10[:-1], descriptor()))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format="other"), "not an aenet_core split"),
    (lambda d: d.update(version=7), "version 7"),
    (lambda d: d.pop("content_sha256"), "lacks"),
    (lambda d: d.update(test=d["test"] + d["train"][:1]), "overlap"),
    (lambda d: d.update(train=d["train"] + [99]), "outside"),
])
def test_damaged_split_files_are_refused(db, tmp_path, edit, message):
    path = tmp_path / "split.json"
    Split.create(db, 30, 4).save(path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        Split.load(path)
    path.write_text("{broken")
    with pytest.raises(ValueError, match="invalid JSON"):
        Split.load(path)


def test_training_with_a_split_file_equals_training_with_the_seed(db, cuau10, tmp_path):
    config = TorchTrainingConfig(iterations=2, method=Adam(mu=0.01, batchsize=4), testpercent=30, split_seed=4,
                                 seed=1, force_weight=0.2, checkpoint_dir=None, save_best=False, show_progress=False)
    arch = {"Cu": [(5, "tanh")], "Au": [(5, "tanh")]}
    by_seed, by_file = TorchANNPotential(arch, descriptor()), TorchANNPotential(arch, descriptor())
    expected = by_seed.train(dataset=db, config=config)
    Split.create(db, 30, 4).save(tmp_path / "split.json")
    other = TorchTrainingConfig(**{**config.__dict__, "testpercent": 50, "split_seed": 99})
    out = by_file.train(dataset=db, config=other, split=tmp_path / "split.json")
    assert out.errors.equals(expected.errors)
    for a, b in zip(by_seed.model.state_dict().values(), by_file.model.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="different dataset"):
        by_file.train(structures=cuau10[:-2], config=config, split=tmp_path / "split.json")


def test_a_test_structure_that_repeats_a_training_one_moves_to_training(cuau10, tmp_path):
    with pytest.warns(UserWarning, match="repeat an earlier one"):
        dataset = HDF5StructureDataset(descriptor(), tmp_path / "copies.h5", sources=cuau10 + cuau10[:3], mode="build",
                                       atomic_energies=REFERENCES)
        dataset.build_database(show_progress=False, persist_features=True)
    structure = [*range(10), 0, 1, 2]  # entries 10, 11 and 12 are copies of 0, 1 and 2
    moved = 0
    for seed in range(8):
        train, test = split_indices(len(dataset), 30, seed)
        leaking = [i for i in test if structure[i] in {structure[j] for j in train}]
        if leaking:
            with pytest.warns(UserWarning, match=f"{len(leaking)} of {len(test)} test structures repeat a training "
                                                 f"structure .* move to the training set: cuau-00"):
                split = Split.create(dataset, 30, seed)
        else:
            split = Split.create(dataset, 30, seed)
        assert split.test == [i for i in test if i not in leaking] and split.train == sorted(train + leaking)
        moved += len(leaking)
        if leaking:  # the trainer's own split is the split file's
            config = TorchTrainingConfig(testpercent=30, split_seed=seed)
            with pytest.warns(UserWarning, match="move to the training set"):
                data = TrainingData.resolve(descriptor(), config, None, dataset, None, None, None)
            assert (data.train_idx, data.test_idx) == (split.train, split.test)
    assert moved > 0
