"""Code written against aenet-python's documentation runs with ``aenet`` replaced by ``aenet_core``: its
documented import paths, input forms and a whole session (featurize, datasets, split, train, predict, save,
export, committee, reference energies), each step checked against an independent value."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from aenet_core.io import write_extxyz, write_xsf
from training_setup import REFERENCES, AtomicStructureStandIn, descriptor


def test_the_documented_submodules_hold_the_documented_names():
    from aenet_core import torch_training
    from aenet_core.torch_training import dataset, trainer

    assert trainer.TorchANNPotential is torch_training.TorchANNPotential
    for name in ("StructureDataset", "CachedStructureDataset", "HDF5StructureDataset", "train_test_split",
                 "train_test_split_dataset"):
        assert getattr(dataset, name) is getattr(torch_training, name)


def test_convert_to_structures_takes_files_atomic_structures_and_structures(cuau, tmp_path):
    from aenet_core.torch_training.dataset import convert_to_structures

    write_xsf(tmp_path / "one.xsf", cuau[0])
    write_extxyz(tmp_path / "three.extxyz", cuau[1:4])
    from_files = convert_to_structures([tmp_path / "one.xsf", tmp_path / "three.extxyz"])
    # a frame without a name is named by its file; extxyz keeps each frame's own name
    assert [s.name for s in from_files] == [str(tmp_path / "one.xsf")] + [s.name for s in cuau[1:4]]
    assert np.allclose(from_files[2].positions, cuau[2].positions) and from_files[2].energy == cuau[2].energy
    same_cell = [cuau[0], replace(cuau[0], positions=cuau[0].positions + 0.01, energy=cuau[0].energy + 0.1)]
    frames = convert_to_structures([AtomicStructureStandIn(same_cell)])
    assert [f.energy for f in frames] == [s.energy for s in same_cell]
    assert np.allclose(frames[1].forces, same_cell[1].forces) and frames[1].pbc.all()
    assert convert_to_structures(cuau[:2]) == cuau[:2] and convert_to_structures([]) == []


def test_an_aenet_python_session_runs_with_the_import_changed(cuau, tmp_path):
    from aenet_core.reference_energies import ReferenceEnergies
    from aenet_core.torch_featurize import ChebyshevDescriptor
    from aenet_core.torch_training import (Adam, TorchCommitteeConfig, TorchCommitteePotential, TorchTrainingConfig,
                                           load_model)
    from aenet_core.torch_training.dataset import StructureDataset, train_test_split, train_test_split_dataset
    from aenet_core.torch_training.trainer import TorchANNPotential

    desc = ChebyshevDescriptor(species=["Cu", "Au"], rad_order=4, rad_cutoff=4.5, ang_order=2, ang_cutoff=3.5,
                               min_cutoff=0.5)
    s = cuau[0]
    features = desc(torch.as_tensor(s.positions), s.species, cell=torch.as_tensor(s.cell), pbc=torch.ones(3, dtype=bool))
    assert features.shape == (len(s.species), desc.get_n_features())
    assert torch.allclose(features, descriptor().forward_from_positions(s.positions, s.species, s.cell))

    references = ReferenceEnergies.from_regression([(dict(zip(*np.unique(x.species, return_counts=True))), x.energy)
                                                    for x in cuau])
    assert set(references.atomic_energies) == {"Cu", "Au"}

    dataset = StructureDataset(cuau, desc, atomic_energies=REFERENCES)
    assert dataset[0]["features"].shape == (len(cuau[0].species), desc.get_n_features())
    train_set, test_set = train_test_split(dataset, test_fraction=0.25, seed=3)
    assert len(train_set) + len(test_set) == len(dataset) and len(test_set) == int(len(dataset) * 0.25)

    config = TorchTrainingConfig(iterations=3, method=Adam(mu=0.01, batchsize=4), force_weight=0.1, seed=1,
                                 atomic_energies=REFERENCES, checkpoint_dir=None, show_progress=False)
    potential = TorchANNPotential({"Cu": [(5, "tanh")], "Au": [(5, "tanh")]}, desc)
    out = potential.train(train_dataset=train_set, test_dataset=test_set, config=config)
    prediction = potential.predict([x for x in cuau[:3]], eval_forces=True)
    assert np.allclose(prediction.cohesive_energy, [potential.cohesive_energy(x) - x.energy + p
                                                    for x, p in zip(cuau[:3], prediction.total_energy)])
    errors = [p - x.energy for p, x in zip(potential.predict([test_set.get_structure(i) for i in range(len(test_set))])
                                             .total_energy, [test_set.get_structure(i) for i in range(len(test_set))])]
    per_atom = [e / len(test_set.get_structure(i).species) for i, e in enumerate(errors)]
    assert out.stats["final_RMSE_test"] == pytest.approx(np.sqrt(np.mean(np.square(per_atom))), rel=1e-6)

    potential.save(tmp_path / "model.pt")
    loaded, metadata = load_model(tmp_path / "model.pt")
    assert loaded.predict(cuau[:3]).total_energy == pytest.approx(prediction.total_energy, abs=1e-10)
    files = potential.to_aenet_ascii(tmp_path / "ascii", prefix="cuau")
    assert sorted(p.name for p in files) == ["cuau.Au.nn.ascii", "cuau.Cu.nn.ascii"]

    part, rest = train_test_split_dataset(dataset, test_fraction=0.3, seed=2)
    committee = TorchCommitteePotential({"Cu": [(5, "tanh")], "Au": [(5, "tanh")]}, desc)
    committee.train(train_dataset=Subset(part, list(range(len(part)))), test_dataset=rest, config=config,
                    committee_config=TorchCommitteeConfig(num_members=2, base_seed=4, output_dir=tmp_path / "c"))
    ensemble = committee.predict(cuau[:2])
    members = [m.predict(cuau[:2]).total_energy for m in committee.members]
    assert isinstance(ensemble, list) and len(ensemble) == 2
    assert ensemble[1].energy_mean == pytest.approx(np.mean([m[1] for m in members]), abs=1e-10)
