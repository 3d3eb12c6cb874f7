"""What a run trains on: prebuilt datasets, splits and the warnings about them."""
import pytest

from aenet_core.data import InMemoryStructures, StructureDataset
from aenet_core.structure import Structure
from training_setup import REFERENCES, config, descriptor, potential


def test_prebuilt_datasets_own_their_references(cuau):
    desc = descriptor()
    dataset = StructureDataset(cuau, desc, atomic_energies=REFERENCES)
    with pytest.raises(ValueError, match="conflicts with the dataset"):
        potential().train(dataset=dataset, config=config(atomic_energies={"Cu": 0.0, "Au": 0.0}))
    with pytest.raises(ValueError, match="different atomic reference energies"):
        potential().train(train_dataset=dataset, test_dataset=StructureDataset(cuau[:3], desc),
                          config=config(atomic_energies=None))
    with pytest.warns(UserWarning, match="max_energy/max_forces apply only"):
        out = potential().train(train_dataset=dataset, test_dataset=None,
                                config=config(iterations=1, max_energy=0.0, atomic_energies=None))
    assert out.errors["RMSE_test"].isna().all()


def test_small_validation_set_warns(cuau):
    with pytest.warns(UserWarning, match="validation set has only 3 structures"):
        potential().train(structures=cuau, config=config(iterations=1, use_scheduler=True))


def test_a_prebuilt_source_without_energies_is_refused_before_training(cuau):
    unlabelled = [Structure(s.positions, s.species, cell=s.cell) for s in cuau[:4]]
    source = InMemoryStructures(cuau[4:] + unlabelled, descriptor(), atomic_energies=REFERENCES)
    with pytest.raises(ValueError, match=r"4 dataset entries have no energy \(first: entry 10, structure_000010\)"):
        potential().train(dataset=source, config=config(atomic_energies=None))
