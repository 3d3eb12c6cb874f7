"""TorchAUCFeaturizer and aenet-python's training-set HDF5 file: structure checks with h5py, features against
our descriptor, neighbour information against ASE."""
from dataclasses import replace

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list

from aenet_core.descriptor import ChebyshevDescriptor
from aenet_core.feature_files import FeaturizedAtomicStructure
from aenet_core.io.xsf import write_xsf
from aenet_core.structure import Structure
from aenet_core.torch_featurize import TorchAUCFeaturizer, featurize_and_write_hdf5, write_features_to_hdf5
from training_setup import AtomicStructureStandIn

SETTINGS = {"rad_order": 4, "rad_cutoff": 4.0, "ang_order": 2, "ang_cutoff": 3.0}
REFERENCES = {"Au": -1.0, "Cu": -2.0}


def aucu(energy=6.0, shift=0.0):
    cell = np.eye(3) * 4.0
    positions = np.array([[0.0, 0.0, 0.0], [0.0, 2.0, 2.0], [2.0, 0.0, 2.0], [2.0, 2.0, 0.0]]) + shift
    forces = np.arange(12.0).reshape(4, 3) / 10
    return Structure(positions, ["Cu", "Cu", "Au", "Au"], energy=energy, forces=forces, cell=cell)


def molecule():
    return Structure(np.array([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [0.0, 1.3, 0.2]]), ["Au", "Cu", "Cu"], energy=-3.0)


def descriptor_features(structure):
    descriptor = ChebyshevDescriptor(["Au", "Cu"], **SETTINGS)
    return descriptor.forward_from_positions(structure.positions, structure.species, structure.cell,
                                             structure.pbc).numpy()


@pytest.fixture
def xsf_files(tmp_path):
    paths = [tmp_path / "a.xsf", tmp_path / "b.xsf", tmp_path / "c.xsf"]
    for path, structure in zip(paths, [aucu(), molecule(), aucu(energy=2.0, shift=0.3)]):
        write_xsf(path, structure)
    return paths


def test_written_file_has_the_training_set_layout_and_our_features(tmp_path, xsf_files):
    featurizer = TorchAUCFeaturizer(["Au", "Cu"], **SETTINGS)
    featurizer.run_aenet_generate([str(p) for p in xsf_files], hdf5_filename=tmp_path / "f.h5",
                                  output_file="generate.out", workdir=tmp_path / "work", atomic_energies=REFERENCES)
    structures = [aucu(), molecule(), aucu(energy=2.0, shift=0.3)]
    cohesive = [6.0 - (-6.0), -3.0 - (-5.0), 2.0 - (-6.0)]
    with h5py.File(tmp_path / "f.h5") as h5:
        meta = h5["metadata"][0]
        assert [t.decode() for t in meta["atom_types"]] == ["Au", "Cu"]
        assert meta["atomic_energy"].tolist() == [-1.0, -2.0]
        assert (meta["num_atoms_tot"], meta["num_structures"]) == (11, 3)
        per_atom = [c / s.n_atoms for c, s in zip(cohesive, structures)]
        assert np.allclose([meta["E_min"], meta["E_max"], meta["E_av"]],
                           [min(per_atom), max(per_atom), np.mean(per_atom)])
        assert meta["name"].decode() == "PyTorch-generated training set"
        info = h5["structures/info"][:]
        assert info["energy"].tolist() == cohesive
        assert info["first_atom"].tolist() == [0, 4, 7] and info["num_atoms"].tolist() == [4, 3, 4]
        assert [p.decode() for p in info["path"]] == [str(p) for p in xsf_files]
        atoms = h5["structures/atoms"][:]
        assert [t.decode() for t in atoms["type"]] == sum((s.species for s in structures), [])
        assert np.allclose(atoms["forces"][:4], aucu().forces) and np.all(atoms["forces"][4:7] == 0)
        assert atoms["structure"].tolist() == [0] * 4 + [1] * 3 + [2] * 4
        features = np.array([row for row in h5["structures/features"]])
        assert np.allclose(features, np.concatenate([descriptor_features(s) for s in structures]), atol=1e-12)
        cells = h5["structures/cells"]
        assert sorted(cells) == ["structure_000000", "structure_000002"]  # the molecule has none
        assert np.array_equal(cells["structure_000000/lattice_vectors"][()], np.eye(3) * 4.0)
        assert bool(cells["structure_000000/pbc"][()])
        assert "neighbor_info" not in h5["structures"]
    assert "Processed 3 structures" in (tmp_path / "work" / "generate.out").read_text()


def test_booleans_are_pytables_bitfields(tmp_path, xsf_files, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the log, generate.out, goes to the working folder
    featurize_and_write_hdf5(str(xsf_files[0]), ["Au", "Cu"], hdf5_filename=tmp_path / "f.h5", **SETTINGS)
    with h5py.File(tmp_path / "f.h5") as h5:
        compound = h5["metadata"].id.get_type()
        member = compound.get_member_type(compound.get_member_index(b"normalized"))
        assert member.get_class() == h5py.h5t.BITFIELD
        assert h5["structures/cells/structure_000000/pbc"].id.get_type().get_class() == h5py.h5t.BITFIELD


def test_neighbor_info_matches_ase(tmp_path, xsf_files):
    featurizer = TorchAUCFeaturizer(["Au", "Cu"], **SETTINGS)
    featurizer.run_aenet_generate([xsf_files[2]], hdf5_filename=tmp_path / "f.h5", include_neighbor_info=True,
                                  output_file=None)
    structure = aucu(shift=0.3)
    atoms = Atoms(structure.species, positions=structure.positions, cell=structure.cell, pbc=True)
    # ASE keeps d < cutoff; aenet (and we) keep d <= cutoff, and the second shell sits at 4.0 Å
    i, j, d, vectors = ase_neighbor_list("ijdD", atoms, 4.0 + 1e-9, self_interaction=False)
    with h5py.File(tmp_path / "f.h5") as h5:
        entry = h5["structures/neighbor_info/structure_000000"]
        assert entry["neighbor_counts"][()].tolist() == np.bincount(i, minlength=4).tolist()
        for atom in range(4):
            ours = sorted(zip(entry["neighbor_lists"][atom].tolist(),
                              np.round(entry["neighbor_vectors"][atom].reshape(-1, 3), 9).tolist()))
            truth = sorted(zip(j[i == atom].tolist(), np.round(vectors[i == atom], 9).tolist()))
            assert ours == truth


def test_force_fraction_gives_neighbor_info_to_that_share_of_structures(tmp_path, xsf_files):
    np.random.seed(0)
    TorchAUCFeaturizer(["Au", "Cu"], **SETTINGS).run_aenet_generate(
        str(xsf_files[0].parent / "*.xsf"), hdf5_filename=tmp_path / "f.h5", include_neighbor_info=True,
        force_fraction=0.34, output_file=None)
    with h5py.File(tmp_path / "f.h5") as h5:
        assert len(h5["structures/neighbor_info"]) == 1
        assert h5["structures/info"].shape == (3,)  # the glob found all three


def test_missing_inputs_and_bad_settings_are_refused(tmp_path, xsf_files):
    featurizer = TorchAUCFeaturizer(["Au", "Cu"], **SETTINGS)
    with pytest.raises(FileNotFoundError, match="missing.xsf"):
        featurizer.run_aenet_generate([xsf_files[0], tmp_path / "missing.xsf"], hdf5_filename=tmp_path / "f.h5")
    with pytest.raises(FileNotFoundError, match=r"no file matches the pattern .*\*.cif"):
        featurizer.run_aenet_generate(str(tmp_path / "*.cif"), hdf5_filename=tmp_path / "f.h5")
    with pytest.raises(ValueError, match="force_fraction must be in"):
        featurizer.run_aenet_generate(xsf_files, include_neighbor_info=True, force_fraction=1.5)
    assert not (tmp_path / "f.h5").exists()


def test_featurize_structure_returns_documented_attributes():
    featurized = TorchAUCFeaturizer(["Au", "Cu"], **SETTINGS).featurize_structure(aucu())
    assert isinstance(featurized, FeaturizedAtomicStructure)
    assert np.allclose(featurized.atom_features, descriptor_features(aucu()), atol=1e-12)
    assert featurized.num_atoms == 4 and featurized.types == ["Cu", "Cu", "Au", "Au"]
    assert featurized.composition == {"Au": 2, "Cu": 2} and featurized.max_descriptor_length == 16
    assert featurized.is_periodic and np.array_equal(featurized.avec, np.eye(3) * 4.0)
    assert not featurized.has_neighbor_info
    assert np.allclose(featurized.atom_features_for_type("Au"), featurized.atom_features[2:])
    assert np.allclose(featurized.forces, aucu().forces) and featurized.energy == 6.0
    assert featurized.structure.n_atoms == 4


def hand_made(types=("O", "H", "H"), atom_types=("O", "H", "Li")):
    """Features 1..F per atom, so every moment is easy to write down."""
    atoms = [{"type": t, "fingerprint": np.array([i + 1.0, 2.0 * (i + 1) ** 2]), "coords": np.full(3, float(i)),
              "forces": np.zeros(3)} for i, t in enumerate(types)]
    return FeaturizedAtomicStructure("w.xsf", -1.5, list(atom_types), atoms)


def test_global_moment_fingerprint_by_hand():
    featurized = hand_made(types=("O", "H", "H"), atom_types=("O", "H"))  # O: [1, 2]; H: [2, 8] and [3, 18]
    assert featurized.atom_weights == {"O": -1, "H": 1}  # the typespins
    assert hand_made().atom_weights == {"O": -1, "H": 0, "Li": 1}
    o, h_mean, h_var = np.array([1.0, 2.0]), np.array([2.5, 13.0]), np.array([0.25, 25.0])
    assert np.allclose(featurized.global_moment_fingerprint(), (o + h_mean) / 2)
    assert np.allclose(featurized.global_moment_fingerprint(inner_moment=2, stack_type_features=True),
                       np.concatenate([o, np.zeros(2), h_mean, h_var]))
    per_type = np.array([-o, h_mean])  # weighted by the typespins
    assert np.allclose(featurized.global_moment_fingerprint(outer_moment=2, weighted=True),
                       np.concatenate([per_type.mean(0), per_type.var(0)]))
    assert np.allclose(featurized.global_moment_fingerprint(weighted=True, append_weighted=True, weights={"O": 2, "H": 0}),
                       (np.concatenate([o, 2 * o]) + np.concatenate([h_mean, 0 * h_mean])) / 2)
    assert np.allclose(featurized.global_moment_fingerprint(atom_types=["H"]), h_mean)


def test_global_moment_fingerprint_of_a_type_without_atoms_and_bad_settings():
    """aenet-python gives a type without atoms a vector of length 1, and then fails to combine the types."""
    featurized = hand_made()  # no Li
    o, h_mean = np.array([1.0, 2.0]), np.array([2.5, 13.0])
    assert np.allclose(featurized.global_moment_fingerprint(stack_type_features=True, inner_moment=1),
                       np.concatenate([o, h_mean, np.zeros(2)]))
    assert np.allclose(featurized.global_moment_fingerprint(exclude_zero_atoms=True), (o + h_mean) / 2)
    for bad in ({"inner_moment": 0}, {"outer_moment": 1.5}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be a positive integer"):
            featurized.global_moment_fingerprint(**bad)
    with pytest.raises(ValueError, match=r"weights must have exactly the structure's atom types \['O', 'H', 'Li'\]"):
        featurized.global_moment_fingerprint(weighted=True, weights={"O": 1, "H": 2})
    with pytest.warns(UserWarning, match="usually not useful"):
        featurized.global_moment_fingerprint(weighted=True, stack_type_features=True)
    with pytest.raises(ValueError, match="no atoms of the types"):
        featurized.global_moment_fingerprint(atom_types=["Li"], exclude_zero_atoms=True)


def test_json_round_trip_keeps_every_field():
    """aenet-python's from_JSON calls the constructor without arguments and always raises TypeError."""
    featurized = TorchAUCFeaturizer(["Au", "Cu"], **SETTINGS).featurize_structure(aucu())
    featurized.neighbor_info = {"neighbor_counts": np.array([2, 0, 1, 0]), "max_neighbors": 2,
                                "neighbor_lists": [np.array([1, 2]), np.array([], dtype=np.int64), np.array([0]),
                                                   np.array([], dtype=np.int64)],
                                "neighbor_vectors": [np.ones((2, 3)), np.zeros((0, 3)), -np.ones((1, 3)),
                                                     np.zeros((0, 3))]}
    back = FeaturizedAtomicStructure.from_JSON(featurized.to_JSON(indent=1))
    assert back.to_JSON() == featurized.to_JSON() and back.is_periodic and back.energy == 6.0
    assert np.array_equal(back.atom_features, featurized.atom_features) and np.array_equal(back.cell, featurized.cell)
    for got, expected in zip(back.neighbor_info["neighbor_vectors"], featurized.neighbor_info["neighbor_vectors"]):
        assert got.shape == expected.shape and np.array_equal(got, expected)
    with pytest.raises(ValueError, match=r"lacks \['atoms'\]"):
        FeaturizedAtomicStructure.from_JSON('{"path": "p", "energy": 0, "atom_types": []}')


def unlabelled(structure):
    return replace(structure, energy=None, forces=None)


def test_atomic_structure_like_objects_are_featurized():
    featurizer = TorchAUCFeaturizer(["Au", "Cu"], **SETTINGS)
    featurized = featurizer.featurize_structures([AtomicStructureStandIn([unlabelled(aucu())])])[0]
    assert np.allclose(featurized.atom_features, descriptor_features(aucu()), atol=1e-12)
    assert featurized.energy == 0.0 and featurized.path == "unknown" and np.all(featurized.forces == 0)
    isolated = featurizer.featurize_structure(AtomicStructureStandIn([unlabelled(aucu())], periodic=False))
    assert isolated.cell is None and not isolated.is_periodic
    with pytest.raises(TypeError, match="coords, types, energy, forces, avec and pbc; got int"):
        featurizer.featurize_structure(3)


def test_from_structure_takes_the_species_and_forwards_settings():
    stand_in = AtomicStructureStandIn([unlabelled(aucu())])
    featurizer = TorchAUCFeaturizer.from_structure(stand_in, **SETTINGS)
    assert featurizer.typenames == ["Au", "Cu"] and featurizer.ntypes == 2 and featurizer.rad_order == 4
    assert TorchAUCFeaturizer.from_structure(molecule(), **SETTINGS).typenames == ["Au", "Cu"]
    stand_in.names_known = False
    with pytest.raises(ValueError, match="Structure without type name information"):
        TorchAUCFeaturizer.from_structure(stand_in, **SETTINGS)


def test_unknown_keywords_warn():
    with pytest.warns(UserWarning, match="unknown keyword `radial`"):
        TorchAUCFeaturizer(["Au", "Cu"], radial=3, **SETTINGS)


def test_write_features_accepts_dicts_and_objects_and_refuses_bad_input(tmp_path):
    featurized = TorchAUCFeaturizer(["Au", "Cu"], **SETTINGS).featurize_structure(molecule())
    as_dict = {"path": "m.xsf", "energy": -3.0, "atoms": featurized.atoms}
    write_features_to_hdf5([featurized, as_dict], tmp_path / "f.h5", ["Au", "Cu"], None, complevel=0)
    with h5py.File(tmp_path / "f.h5") as h5:
        assert h5["structures/info"]["energy"].tolist() == [-3.0, -3.0]  # no reference energies
        assert h5["structures/features"].compression is None
    with pytest.raises(ValueError, match="no structures to write"):
        write_features_to_hdf5([], tmp_path / "g.h5", ["Au", "Cu"], {})
    with pytest.raises(ValueError, match=r"structure 0 \(m.xsf\) has atom type 'Au', not in typenames \['Cu'\]"):
        write_features_to_hdf5([as_dict], tmp_path / "g.h5", ["Cu"], {})
    with pytest.raises(ValueError, match="path longer than the file's 1024 bytes"):
        write_features_to_hdf5([{**as_dict, "path": "x" * 1025}], tmp_path / "g.h5", ["Au", "Cu"], {})
    with pytest.raises(ValueError, match="cell_info has 2 entries for 1 structures"):
        write_features_to_hdf5([as_dict], tmp_path / "g.h5", ["Au", "Cu"], {}, cell_info=[None, None])
    assert not (tmp_path / "g.h5").exists()


def test_zero_cutoffs_are_refused():
    """aenet-python's defaults (cutoffs 0.0) build a featurizer whose features are all zero."""
    with pytest.raises(ValueError, match="rad_cutoff"):
        TorchAUCFeaturizer(["Au", "Cu"])
