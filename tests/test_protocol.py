"""The structure-source contract: every dataset implements it, and training, splits, committees and
prediction need nothing beyond it."""
import numpy as np
import pytest

from aenet_core.committee import TorchCommitteeConfig, TorchCommitteePotential
from aenet_core.data import (CachedStructureDataset, HDF5StructureDataset, InMemoryStructures, StructureDataset,
                             StructureSource)
from aenet_core.split import Split
from training_setup import CONTRACT, REFERENCES, OnlyTheContract, config, descriptor, potential


@pytest.fixture(scope="module")
def database(cuau, tmp_path_factory):
    db = HDF5StructureDataset(descriptor(), tmp_path_factory.mktemp("db") / "db.h5", sources=cuau, mode="build",
                              atomic_energies=REFERENCES)
    db.build_database(show_progress=False, persist_features=True, persist_force_derivatives=True)
    return db


def test_every_dataset_implements_the_contract(cuau, database):
    assert len(CONTRACT) == 17  # and __len__
    for dataset in (InMemoryStructures(cuau, descriptor()), StructureDataset(cuau, descriptor()),
                    CachedStructureDataset(cuau, descriptor(), show_progress=False), database):
        assert isinstance(dataset, StructureSource)
        assert all(hasattr(dataset, name) for name in CONTRACT)


@pytest.mark.parametrize("kind", ["memory", "database"])
def test_training_splits_committees_and_prediction_use_only_the_contract(kind, cuau, database, tmp_path):
    inner = StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES) if kind == "memory" else database
    source = OnlyTheContract(inner)
    split = Split.create(source, 25, 3)
    settings = dict(iterations=2, force_weight=0.3, atomic_energies=None, sampling_policy="energy_weighted")
    seen, direct = potential(), potential()
    seen.train(dataset=source, split=split, config=config(**settings))
    direct.train(dataset=inner, split=split, config=config(**settings))
    metrics = [key for key in seen.history if not key.endswith("_time")]
    np.testing.assert_equal({k: seen.history[k] for k in metrics}, {k: direct.history[k] for k in metrics})
    assert seen.predict_dataset(source).structure_paths == [inner.get_structure_identifier(i) for i in range(len(inner))]
    committee = TorchCommitteePotential(potential().arch, descriptor())
    committee.train(dataset=source, split=split, config=config(iterations=1, atomic_energies=None),
                    committee_config=TorchCommitteeConfig(num_members=2, base_seed=1, output_dir=tmp_path))
    assert len(committee.predict_dataset(source, indices=split.test)) == len(split.test)
