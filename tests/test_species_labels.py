"""Species labels (aenet-python accepts any, e.g. magnetic sublattices Fe1/Fe2): they flow through structures,
files, training, prediction and export, and map to their element where one is needed."""
import json
import re
from dataclasses import replace

import ase.io
import h5py
import numpy as np
import pytest
import torch
from ase.data import atomic_masses, atomic_numbers

from aenet_core.calculator import AenetCalculator
from aenet_core.descriptor import BatchedFeaturizer
from aenet_core.io import read_structures, write_extxyz, write_xsf
from aenet_core.lammps import mass_lines
from aenet_core.structure import Structure, element_of
from aenet_core.torch_featurize import ChebyshevDescriptor
from aenet_core.torch_training import Adam, HDF5StructureDataset, TorchANNPotential, TorchTrainingConfig
from training_setup import AtomicStructureStandIn


@pytest.mark.parametrize("label, element", [("Fe", "Fe"), ("Fe1", "Fe"), ("Fe_up", "Fe"), ("FeB", "Fe"),
                                            ("Ca1", "Ca"), ("C1", "C"), ("B", "B"), ("O-", "O")])
def test_a_label_maps_to_the_element_it_starts_with(label, element):
    assert element_of(label) == element


@pytest.mark.parametrize("label", ["A", "Cx", "X", "fe1", "1Fe", "Xx"])
def test_a_label_without_element_is_named_when_one_is_needed(label):
    with pytest.raises(ValueError, match=rf"species label '{label}' names no chemical element, which ASE Atoms needs"):
        Structure(np.zeros((2, 3)) + [[0, 0, 0], [1, 1, 1]], ["Fe", label]).to_ase()


def test_any_label_is_a_species():
    s = Structure([[0, 0, 0], [1.5, 0, 0], [0, 1.5, 0]], ["A", "B", "A"], energy=-1.0)
    assert s.species == ["A", "B", "A"]


def sublattices(seed, n=2):
    """bcc Fe, 2 atoms per cell repeated n^3, the corner site Fe1 and the centre Fe2 (antiferromagnetic)."""
    rng = np.random.default_rng(seed)
    a = 2.87
    grid = np.array([[i, j, k] for i in range(n) for j in range(n) for k in range(n)], float) * a
    positions = np.concatenate([grid, grid + a / 2]) + rng.normal(0, 0.05, (2 * len(grid), 3))
    species = ["Fe1"] * len(grid) + ["Fe2"] * len(grid)
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    energy = -4.0 * len(positions) + 0.5 * float(np.sum(np.triu(np.exp(-d), 1)))
    return Structure(positions, species, energy=energy, cell=np.eye(3) * n * a, pbc=[True] * 3)


def test_ase_extxyz_and_xsf_keep_labels_and_write_elements(tmp_path):
    s = sublattices(0)
    atoms = s.to_ase()
    assert set(atoms.get_chemical_symbols()) == {"Fe"} and Structure.from_ase(atoms).species == s.species
    write_extxyz(tmp_path / "fe.extxyz", s)
    assert set(ase.io.read(tmp_path / "fe.extxyz").get_chemical_symbols()) == {"Fe"}  # any ASE reader sees Fe
    assert read_structures(tmp_path / "fe.extxyz")[0].species == s.species
    write_xsf(tmp_path / "fe.xsf", s)  # aenet's XSF carries type names as they are
    back = read_structures(tmp_path / "fe.xsf")[0]
    assert back.species == s.species and np.allclose(back.positions, s.positions)


def test_an_extxyz_of_a_label_without_element_names_the_label(tmp_path):
    s = Structure([[0, 0, 0], [1, 1, 1]], ["A", "B"], energy=-1.0)
    with pytest.raises(ValueError, match="species label 'A' names no chemical element, which extended XYZ"):
        write_extxyz(tmp_path / "ab.extxyz", s)


def test_lammps_masses_of_labels_are_their_elements():
    fe = float(atomic_masses[atomic_numbers["Fe"]])
    assert mass_lines(["Fe1", "Fe2"]) == f"mass 1 {fe!r}\nmass 2 {fe!r}"
    with pytest.raises(ValueError, match="'Q1' names no chemical element, which a LAMMPS mass needs"):
        mass_lines(["Q1"])


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    descriptor = ChebyshevDescriptor(["Fe1", "Fe2"], 4, 4.0, 2, 3.0, min_cutoff=0.5)
    potential = TorchANNPotential({"Fe1": [(5, "tanh")], "Fe2": [(5, "tanh")]}, descriptor)
    config = TorchTrainingConfig(iterations=2, method=Adam(mu=0.01, batchsize=3), testpercent=25, split_seed=1,
                                 seed=3, device="cpu", atomic_energies={"Fe1": -4.0, "Fe2": -4.1},
                                 checkpoint_dir=None, save_best=False, show_progress=False)
    structures = [sublattices(seed) for seed in range(8)]
    potential.train(structures, config=config)
    return potential, structures


def test_training_predict_and_ase_calculator_with_labels(trained):
    potential, structures = trained
    out = potential.predict(structures[:2], eval_forces=True)
    assert np.all(np.isfinite(out.total_energy)) and len(out.forces) == 2
    atoms = structures[0].to_ase()
    atoms.calc = AenetCalculator(potential)
    assert atoms.get_potential_energy() == pytest.approx(out.total_energy[0], abs=1e-8)
    # the labels pick the networks: swapping the sublattices changes the energy
    swapped = Structure(structures[0].positions, [{"Fe1": "Fe2", "Fe2": "Fe1"}[s] for s in structures[0].species],
                        cell=structures[0].cell)
    assert abs(potential.predict([swapped]).total_energy[0] - out.total_energy[0]) > 1e-6


def test_nn_ascii_export_round_trip_with_labels(trained, tmp_path):
    potential, structures = trained
    with pytest.warns(UserWarning, match=re.escape("species ['Fe1', 'Fe2'] have names longer than 2")):
        manifest = potential.export_aenet(tmp_path, structures=structures)
    assert sorted(manifest["files"]) == ["Fe1", "Fe2"] and manifest["binary_files"] == {}
    assert not list(tmp_path.glob("*.nn"))  # Fortran's binary format holds 2-character type names only
    loaded = TorchANNPotential.from_aenet({s: tmp_path / name for s, name in manifest["files"].items()})
    assert loaded.descriptor.species == ["Fe1", "Fe2"]
    expected = potential.predict(structures[:3], eval_forces=True)
    got = loaded.predict(structures[:3], eval_forces=True)
    assert np.allclose(got.total_energy, expected.total_energy, atol=1e-9)
    assert all(np.allclose(a, b, atol=1e-9) for a, b in zip(got.forces, expected.forces))


def fe_frames():
    """Two frames of an Fe1/Fe2 cell: the first with energy and forces, the second with neither."""
    first = Structure(np.array([[0, 0, 0], [1.4, 1.4, 1.4]]), ["Fe1", "Fe2"], energy=-8.0, forces=np.ones((2, 3)),
                      cell=np.eye(3) * 2.87, pbc=[True] * 3)
    second = Structure(np.array([[0, 0, 0], [1.5, 1.4, 1.4]]), ["Fe1", "Fe2"], cell=np.eye(3) * 2.9, pbc=[True] * 3)
    return [first, second]


def test_from_atomic_structure():
    last = Structure.from_AtomicStructure(AtomicStructureStandIn(fe_frames()))
    assert last.species == ["Fe1", "Fe2"] and last.positions[1, 0] == 1.5
    assert np.array_equal(last.cell, np.eye(3) * 2.9) and last.pbc.all()
    assert last.energy is None and last.forces is None
    first = Structure.from_AtomicStructure(AtomicStructureStandIn(fe_frames(), periodic=False), frame=0)
    assert first.energy == -8.0 and np.array_equal(first.forces, np.ones((2, 3))) and first.cell is None


def test_the_calculator_names_labels_when_atoms_carry_elements_only(trained):
    potential, structures = trained
    atoms = structures[0].to_ase()
    del atoms.arrays["species_labels"]
    atoms.calc = AenetCalculator(potential)
    with pytest.raises(ValueError, match=r"no network for species \['Fe'\].*atoms.arrays\['species_labels'\]"):
        atoms.get_potential_energy()


def test_a_molecule_with_pbc_false_and_no_cell_is_accepted_as_aenet_python_does():
    s = Structure(np.zeros((2, 3)) + [[0, 0, 0], [1, 0, 0]], ["H", "H"], -1.0, pbc=np.array([False] * 3))
    assert s.pbc is None and s.cell is None and not s.is_periodic()


LABEL_ENERGIES = {"Fe1": -4.0, "Fe2": -4.1}


def labelled_database(path, structures):
    db = HDF5StructureDataset(label_descriptor(), path, sources=structures, mode="build", atomic_energies=LABEL_ENERGIES)
    db.build_database(show_progress=False, persist_features=True, persist_force_derivatives=True)
    return db


def label_descriptor():
    return ChebyshevDescriptor(["Fe1", "Fe2"], 4, 4.0, 2, 3.0, min_cutoff=0.5)


def test_a_database_keeps_labels_and_their_features(tmp_path):
    structures = [sublattices(seed) for seed in range(3)]
    labelled_database(tmp_path / "fe.h5", structures).close()
    with h5py.File(tmp_path / "fe.h5", "r") as f:
        assert json.loads(f.attrs["species_json"]) == ["Fe1", "Fe2"] and "atoms/atomic_number" not in f
    reopened = HDF5StructureDataset(None, tmp_path / "fe.h5", mode="load")
    assert reopened.descriptor.species == ["Fe1", "Fe2"]
    for k, s in enumerate(structures):
        assert reopened.get_structure(k).species == s.species
        assert np.array_equal(reopened.get_structure(k).positions, s.positions)
    fresh, _ = BatchedFeaturizer(label_descriptor())([s.positions for s in structures], [s.species for s in structures],
                                                    [s.cell for s in structures], [s.pbc for s in structures])
    assert torch.equal(reopened.stored_features(range(3)), fresh)


def test_a_file_of_atomic_numbers_written_before_labels_still_opens(tmp_path):
    structures = [Structure([[0, 0, 0], [1.2 + 0.1 * k, 0, 0], [0, 1.3, 0]], ["O", "H", "H"], energy=-14.0 - k)
                  for k in range(2)]
    db = HDF5StructureDataset(None, tmp_path / "old.h5", sources=structures, mode="build")
    db.build_database(show_progress=False)
    db.close()
    with h5py.File(tmp_path / "old.h5", "r+") as f:  # as schema 3 stored the species
        codes = f["atoms/species"][:]
        f["atoms/atomic_number"] = np.array([atomic_numbers["O"], atomic_numbers["H"]], np.int16)[codes]
        del f["atoms/species"]
        del f.attrs["species_json"]
        f.attrs["schema_version"] = 3
    old = HDF5StructureDataset(None, tmp_path / "old.h5", mode="load")
    assert [old.get_structure(k).species for k in range(2)] == [["O", "H", "H"]] * 2


def test_training_from_a_labelled_database_equals_training_from_structures(tmp_path):
    structures = [sublattices(seed) for seed in range(8)]
    db = labelled_database(tmp_path / "fe.h5", structures)
    config = TorchTrainingConfig(iterations=2, method=Adam(mu=0.01, batchsize=3), testpercent=25, split_seed=1,
                                 seed=3, force_weight=0.3, device="cpu", checkpoint_dir=None, save_best=False,
                                 show_progress=False)
    potentials = []
    for source in ({"structures": structures, "config": replace(config, atomic_energies=LABEL_ENERGIES)},
                   {"dataset": db, "config": config}):
        torch.manual_seed(0)
        potentials.append(TorchANNPotential({"Fe1": [(5, "tanh")], "Fe2": [(5, "tanh")]}, label_descriptor()))
        potentials[-1].train(**source)
    for a, b in zip(*(p.model.state_dict().values() for p in potentials)):
        assert torch.equal(a, b)
