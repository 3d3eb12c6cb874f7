"""Structure readers and writers: aenet XSF, ASE formats, error messages, atomic writes."""
import re
from collections import Counter

import ase.io
import numpy as np
import pytest
from ase import Atoms

from aenet_core.io import StructureFileError, read_structures, read_xsf, write_extxyz, write_xsf
from aenet_core.structure import Structure

# Line numbers:  1 energy, 3 CRYSTAL, 4 PRIMVEC, 5-7 vectors, 8 PRIMCOORD, 9 count, 10-11 atoms
VALID_XSF = """\
# total energy = -10.5 eV

CRYSTAL
PRIMVEC
  4.0 0.0 0.0
  0.0 4.0 0.0
  0.0 0.0 4.0
PRIMCOORD
2 1
Ti 0.0 0.0 0.0 0.1 0.2 0.3
O  1.0 1.0 1.0 -0.1 -0.2 -0.3
"""


def write_text(tmp_path, text, name="bad.xsf"):
    path = tmp_path / name
    path.write_text(text)
    return path


def replace_line(text, number, new):
    lines = text.splitlines()
    lines[number - 1] = new
    return "\n".join(lines) + "\n"


def drop_line(text, number):
    lines = text.splitlines()
    del lines[number - 1]
    return "\n".join(lines) + "\n"


def random_structure(seed, n_atoms=5, periodic=True, energy=True, forces=True, pbc=None):
    rng = np.random.default_rng(seed)
    cell = np.diag(rng.uniform(4, 6, 3)) + rng.normal(scale=0.3, size=(3, 3)) if periodic else None
    return Structure(positions=rng.uniform(-1, 5, (n_atoms, 3)), species=list(rng.choice(["Ti", "O", "Li"], n_atoms)),
                     energy=rng.normal(-100, 10) if energy else None,
                     forces=rng.normal(size=(n_atoms, 3)) if forces else None,
                     cell=cell, pbc=pbc if periodic else None)


def assert_same(a, b, atol=0.0):
    assert a.species == b.species
    np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=atol)
    assert (a.energy, a.weight, a.config_type) == (b.energy, b.weight, b.config_type)
    for field in ("forces", "cell", "pbc", "stress"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            np.testing.assert_allclose(x, y, rtol=0, atol=atol if field == "forces" else 0.0)


# -- reference data ---------------------------------------------------------


def test_tio2_first_file_exact_values(shared_data):
    path = shared_data / "TiO2" / "structure-001.xsf"
    [s] = read_structures(path)
    assert s.energy == -19517.09425849
    assert s.n_atoms == 23 and s.species.count("Ti") == 8 and s.species.count("O") == 15
    assert s.positions[0].tolist() == [1.91782900, 3.21092298, 3.45760499]
    assert s.forces[0].tolist() == [0.54256802, -0.31428097, 2.51304061]
    assert s.species[-1] == "O"
    assert s.positions[-1].tolist() == [2.96260899, 4.36108302, 2.25722699]
    assert s.forces[-1].tolist() == [0.22253292, -0.24047203, -0.41291984]
    assert s.cell.tolist() == [[5.17600016, 0, 0], [0, 5.50899976, 0], [0, 0, 9.26300011]]
    assert s.pbc.tolist() == [True, True, True]
    assert s.name == str(path)


def test_all_tio2_files(shared_data):
    paths = sorted((shared_data / "TiO2").glob("*.xsf"))
    assert len(paths) == 100
    species = Counter()
    for path in paths:
        [s] = read_xsf(path)
        assert s.energy is not None and s.has_forces() and s.is_periodic(), path
        assert -867.11 < s.energy / s.n_atoms < -826.34, path
        species.update(s.species)
    assert species == {"Ti": 726, "O": 1379}  # totals from the data set's README


def test_lmnto_spot_check(shared_data):
    paths = sorted((shared_data / "LMNTO").glob("*.xsf"))
    assert len(paths) == 824
    for path in paths[::103]:
        [s] = read_xsf(path)
        assert s.n_atoms == 56
        assert Counter(s.species) == {"Li": 8, "Mo": 2, "Ni": 7, "Ti": 7, "O": 32}
        assert -631.663 < s.energy < -629.511 and s.has_forces() and s.is_periodic()


def test_xsf_reader_agrees_with_ase(shared_data):
    path = shared_data / "TiO2" / "structure-042.xsf"
    [ours] = read_xsf(path)
    theirs = ase.io.read(path, format="xsf")
    np.testing.assert_array_equal(ours.positions, theirs.positions)
    np.testing.assert_array_equal(ours.cell, theirs.cell.array)
    assert ours.species == theirs.get_chemical_symbols()


def test_isolated_water(shared_data):
    [s] = read_structures(shared_data / "reference" / "structures" / "water.xsf")
    assert s.species == ["O", "H", "H"]
    assert s.cell is None and s.pbc is None and not s.is_periodic()
    assert s.energy == -14.2
    assert s.positions.tolist() == [[0, 0, 0.11779], [0, 0.75545, -0.47116], [0, -0.75545, -0.47116]]
    assert s.forces.tolist() == [[0.0] * 3] * 3


# -- XSF features -------------------------------------------------------------


def test_atomic_numbers_comments_and_blank_lines(tmp_path):
    text = VALID_XSF.replace("Ti 0.0", "22 0.0").replace("2 1\n", "2 1\n# a comment\n\n")
    [s] = read_xsf(write_text(tmp_path, text, "ok.xsf"))
    assert s.species == ["Ti", "O"]
    assert s.energy == -10.5
    assert s.forces.tolist() == [[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]]


@pytest.mark.parametrize("keyword, pbc", [("SLAB", [True, True, False]), ("POLYMER", [True, False, False]),
                                          ("MOLECULE", [False, False, False])])
def test_dimension_keywords_set_pbc(tmp_path, keyword, pbc):
    [s] = read_xsf(write_text(tmp_path, VALID_XSF.replace("CRYSTAL", keyword), "ok.xsf"))
    assert s.pbc.tolist() == pbc and s.cell.tolist() == (np.eye(3) * 4).tolist()


def test_energy_comment_without_unit_and_no_forces(tmp_path):
    text = "# Total Energy = -3.25\nATOMS\nH 0 0 0\nH 0 0 0.74\n"
    [s] = read_xsf(write_text(tmp_path, text, "ok.xsf"))
    assert s.energy == -3.25 and s.forces is None and s.cell is None


ANIMATED = """\
ANIMSTEPS 3
CRYSTAL
PRIMVEC
  4.0 0.0 0.0
  0.0 4.0 0.0
  0.0 0.0 4.0
# total energy = -1.0 eV
PRIMCOORD 1
1 1
H 0.0 0.0 0.0
PRIMCOORD 2
1 1
H 0.5 0.0 0.0
# total energy = -3.0 eV
PRIMCOORD 3
1 1
H 1.0 0.0 0.0
"""


def test_animsteps_fixed_cell_energies_in_order(tmp_path):
    path = write_text(tmp_path, ANIMATED, "anim.xsf")
    frames = read_xsf(path)
    assert [f.energy for f in frames] == [-1.0, None, -3.0]
    assert [f.positions[0, 0] for f in frames] == [0.0, 0.5, 1.0]
    assert all(f.cell.tolist() == (np.eye(3) * 4).tolist() for f in frames)
    assert [f.name for f in frames] == [f"{path}#frame={i}" for i in range(3)]


def test_single_energy_comment_is_not_duplicated(tmp_path):
    text = ANIMATED.replace("# total energy = -3.0 eV\n", "")
    frames = read_xsf(write_text(tmp_path, text, "anim.xsf"))
    assert [f.energy for f in frames] == [-1.0, None, None]


def test_read_structures_index_on_xsf(tmp_path):
    path = write_text(tmp_path, ANIMATED, "anim.xsf")
    assert [s.positions[0, 0] for s in read_structures(path, index="1:")] == [0.5, 1.0]
    assert [s.positions[0, 0] for s in read_structures(path, index=-1)] == [1.0]
    with pytest.raises(StructureFileError, match=re.escape(f"{path}: frame index 7")):
        read_structures(path, index=7)


# -- round trips --------------------------------------------------------------


@pytest.mark.parametrize("structure", [
    random_structure(1),
    random_structure(2, periodic=False),
    random_structure(3, pbc=[True, True, False], forces=False),
    random_structure(4, periodic=False, energy=False),
], ids=["periodic", "isolated", "slab-no-forces", "isolated-no-energy"])
def test_xsf_round_trip_is_bitwise(tmp_path, structure):
    path = tmp_path / "out.xsf"
    write_xsf(path, structure)
    [back] = read_structures(path)
    assert_same(back, structure)
    assert back.name == str(path)


def test_xsf_multi_frame_round_trip(tmp_path):
    frames = [random_structure(seed, energy=seed != 6) for seed in range(5, 8)]
    path = tmp_path / "out.xsf"
    write_xsf(path, frames)
    assert path.read_text().startswith("ANIMSTEPS 3\nCRYSTAL\n")
    back = read_xsf(path)
    assert len(back) == 3
    for a, b in zip(back, frames):
        assert_same(a, b)
    assert back[1].energy is None
    for theirs, ours in zip(ase.io.read(path, index=":", format="xsf"), frames, strict=True):  # ASE reads it too
        np.testing.assert_array_equal(theirs.positions, ours.positions)
        np.testing.assert_array_equal(theirs.cell.array, ours.cell)


def test_convvec_is_accepted_and_ignored(tmp_path):
    text = VALID_XSF.replace("PRIMVEC", "CONVVEC\n 9 0 0\n 0 9 0\n 0 0 9\nPRIMVEC")
    [s] = read_xsf(write_text(tmp_path, text, "ok.xsf"))
    assert s.cell.tolist() == (np.eye(3) * 4).tolist() and s.n_atoms == 2


def test_xsf_multi_frame_isolated_round_trip(tmp_path):
    frames = [random_structure(seed, periodic=False) for seed in range(3)]
    path = tmp_path / "out.xsf"
    write_xsf(path, frames)
    for a, b in zip(read_xsf(path), frames, strict=True):
        assert_same(a, b)


def test_xsf_writer_rejects_unrepresentable_pbc(tmp_path):
    with pytest.raises(ValueError, match="XSF cannot represent"):
        write_xsf(tmp_path / "out.xsf", random_structure(0, pbc=[False, True, True]))


def test_extxyz_round_trip_is_exact(tmp_path):
    frames = [random_structure(10), random_structure(11, periodic=False), random_structure(12, forces=False)]
    frames[0].name = 'a "quoted" name with spaces#frame=3'
    path = tmp_path / "out.extxyz"
    write_extxyz(path, frames)
    back = read_structures(path)
    assert [s.name for s in back] == ['a "quoted" name with spaces#frame=3', f"{path}#frame=1", f"{path}#frame=2"]
    for a, b in zip(back, frames, strict=True):
        assert_same(a, b)


def test_extxyz_is_read_by_ase_with_energy_and_forces(tmp_path):
    s = random_structure(13)
    path = tmp_path / "out.xyz"
    write_extxyz(path, s)
    atoms = ase.io.read(path, format="extxyz")
    assert atoms.get_chemical_symbols() == s.species
    assert atoms.get_potential_energy() == s.energy
    assert np.array_equal(atoms.get_forces(), s.forces) and np.array_equal(atoms.positions, s.positions)
    assert np.array_equal(atoms.cell.array, s.cell) and list(atoms.pbc) == list(s.pbc)


def stressed(seed):
    structure = random_structure(seed)
    structure.stress = np.random.default_rng(seed).normal(scale=0.01, size=(3, 3))
    structure.stress = structure.stress + structure.stress.T
    return structure


def test_stress_weight_and_config_type_round_trip_through_extxyz_and_ase_reads_them(tmp_path):
    frames = [stressed(20), random_structure(21)]
    frames[1].weight, frames[1].config_type = 0.25, "md 300 K"
    path = tmp_path / "stress.extxyz"
    write_extxyz(path, frames)
    for a, b in zip(read_structures(path), frames, strict=True):
        assert_same(a, b)
    np.testing.assert_array_equal(ase.io.read(path, index=0).get_stress(voigt=False), frames[0].stress)


def test_stress_is_read_from_an_ase_virial_and_from_calculator_results(tmp_path):
    structure = stressed(22)
    atoms = structure.to_ase()
    atoms.calc = None
    atoms.info["virial"] = -structure.stress * atoms.get_volume()  # how ASE-based trainers store it
    ase.io.write(tmp_path / "virial.extxyz", atoms)
    np.testing.assert_allclose(read_structures(tmp_path / "virial.extxyz")[0].stress, structure.stress,
                               rtol=1e-12, atol=1e-15)
    ase.io.write(tmp_path / "calc.traj", structure.to_ase())  # a calculator's stress, as VASP's readers give
    np.testing.assert_allclose(read_structures(tmp_path / "calc.traj")[0].stress, structure.stress, rtol=1e-15)


def test_a_stress_on_a_structure_not_periodic_in_3d_names_file_and_frame(tmp_path):
    slab = Atoms("Cu2", positions=[[0, 0, 0], [1.8, 0, 0]], cell=[4, 4, 10], pbc=[True, True, False])
    bulk = slab.copy()
    bulk.pbc = True
    bulk.info["stress"] = np.zeros((3, 3))
    slab.info["virial"] = np.ones((3, 3))
    ase.io.write(tmp_path / "slab.extxyz", [bulk, slab])
    with pytest.raises(StructureFileError, match=r"slab\.extxyz \(frame 1\): Structure\.stress is given, but a "
                                                 r"stress needs a structure periodic in 3D"):
        read_structures(tmp_path / "slab.extxyz")


def test_extxyz_default_names(tmp_path):
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]])
    single, multi = tmp_path / "one.xyz", tmp_path / "two.xyz"
    ase.io.write(single, atoms, format="extxyz")
    ase.io.write(multi, [atoms, atoms], format="extxyz")
    assert [s.name for s in read_structures(single)] == [str(single)]
    assert [s.name for s in read_structures(multi)] == [f"{multi}#frame=0", f"{multi}#frame=1"]


def test_vasp_poscar_through_ase(tmp_path):
    s = random_structure(20, energy=False, forces=False)
    path = tmp_path / "POSCAR"
    ase.io.write(path, s.to_ase(), format="vasp", direct=False)
    [back] = read_structures(path, format="vasp")
    assert back.species == s.species
    np.testing.assert_allclose(back.cell, s.cell, rtol=0, atol=1e-12)
    np.testing.assert_allclose(back.positions, s.positions, rtol=0, atol=1e-12)
    assert back.pbc.tolist() == [True] * 3 and back.energy is None


# -- malformed XSF -----------------------------------------------------------

MALFORMED = {
    "truncated coordinates": (drop_line(VALID_XSF, 11), 10, r"unexpected end of file.*line 9 is 2"),
    "truncated PRIMVEC": (drop_line(VALID_XSF, 7), 7, r"expected lattice vector 3 of 3.*got keyword PRIMCOORD"),
    "PRIMVEC at end of file": ("CRYSTAL\nPRIMVEC\n 4 0 0\n", 3, r"unexpected end of file; expected lattice vector 2"),
    "count too small": (replace_line(VALID_XSF, 9, "1 1"), 9, r"atom count is 1 but 2 coordinate lines follow"),
    "count non-integer": (replace_line(VALID_XSF, 9, "2.5 1"), 9, r"atom count.*must be a positive integer; got '2.5'"),
    "count missing": (drop_line(drop_line(drop_line(VALID_XSF, 11), 10), 9), 8,
                      r"unexpected end of file; expected the atom count line"),
    "non-numeric position": (replace_line(VALID_XSF, 10, "Ti 1.0 abc 2.0 0 0 0"), 10,
                             r"column 3 \(y\) must be a number; got 'abc'"),
    "non-numeric lattice": (replace_line(VALID_XSF, 6, "0.0 x 0.0"), 6, r"column 2 \(b_y\) must be a number"),
    "wrong field count": (replace_line(VALID_XSF, 11, "O 1.0 1.0"), 11, r"4 or 7 fields\); got 3"),
    "nan energy": (replace_line(VALID_XSF, 1, "# total energy = nan eV"), 1, r"total energy must be finite; got 'nan'"),
    "inf energy": (replace_line(VALID_XSF, 1, "# Total Energy = -inf eV"), 1, r"total energy must be finite"),
    "non-numeric energy": (replace_line(VALID_XSF, 1, "# total energy = abc eV"), 1, r"total energy must be a number"),
    "nan position": (replace_line(VALID_XSF, 11, "O nan 1 1 0 0 0"), 11, r"column 2 \(x\) must be finite; got 'nan'"),
    "inf force": (replace_line(VALID_XSF, 10, "Ti 0 0 0 0 inf 0"), 10, r"column 6 \(fy\) must be finite"),
    "atomic number 0": (replace_line(VALID_XSF, 11, "0 1 1 1 0 0 0"), 11, r"atomic number 0 is out of range 1-118"),
    "forces on some atoms": (replace_line(VALID_XSF, 11, "O 1 1 1"), 11, r"forces .* all atoms of a frame or none"),
    "two energies": (VALID_XSF.replace("CRYSTAL", "# total energy = 1 eV\nCRYSTAL"), 3,
                     r"second total energy comment for frame 0"),
    "garbage line": ("hello world\n" + VALID_XSF, 1, r"unexpected 'hello' here"),
    "PRIMCOORD without PRIMVEC": (VALID_XSF.replace("PRIMVEC", "IGNORED"), 4, r"unexpected 'IGNORED'"),
    "PRIMCOORD without dimension": (drop_line(VALID_XSF, 3), 7, r"PRIMCOORD needs CRYSTAL"),
    "second block without ANIMSTEPS": (VALID_XSF + "PRIMCOORD\n1 1\nH 0 0 0\n", 12, r"needs 'ANIMSTEPS n'"),
    "ANIMSTEPS count": (ANIMATED.replace("ANIMSTEPS 3", "ANIMSTEPS 4"), 1, r"ANIMSTEPS declares 4 frames.*has 3"),
    "ANIMSTEPS count mismatch mid-file": (ANIMATED.replace("PRIMCOORD 2\n1 1", "PRIMCOORD 2\n2 1"), 12,
                                          r"atom count is 2 but 1 coordinate lines follow"),
    "empty ATOMS": ("ATOMS\n", 1, r"ATOMS block has no coordinate lines"),
    "empty file": ("# nothing\n", 1, r"no PRIMCOORD or ATOMS block"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_xsf_names_file_and_line(tmp_path, case):
    text, line, pattern = MALFORMED[case]
    path = write_text(tmp_path, text)
    with pytest.raises(StructureFileError, match=re.escape(f"{path}:{line}: ") + ".*" + pattern):
        read_structures(path)


@pytest.mark.parametrize("data, line, byte", [
    (VALID_XSF.replace("CRYSTAL", "# calcul\xe9 avec PWscf\nCRYSTAL").encode("latin-1"), 3, "0xe9"),
    (b"\x89HDF\r\n\x1a\n" + bytes(range(256)), 1, "0x89"),  # an HDF5 file's signature
])
def test_a_file_that_is_not_utf8_names_file_and_line(tmp_path, data, line, byte):
    path = tmp_path / "encoded.xsf"
    path.write_bytes(data)
    with pytest.raises(StructureFileError, match=re.escape(f"{path}:{line}: not UTF-8 text (byte {byte}")):
        read_structures(path)


def test_a_periodic_cell_without_volume_names_file_and_frame(tmp_path):
    flat = VALID_XSF.replace("  0.0 0.0 4.0", "  0.0 0.0 0.0")
    path = write_text(tmp_path, flat)
    with pytest.raises(StructureFileError, match=re.escape(f"{path} (frame 0): Structure.cell has zero volume")):
        read_structures(path)
    frames = tmp_path / "frames.extxyz"
    write_extxyz(frames, [random_structure(1), random_structure(2)])
    ase.io.write(frames, [ase.io.read(frames, 0), Atoms("H2", positions=[[0, 0, 0], [0, 0, 1]], cell=[[2, 0, 0],
                                                                                                  [0, 2, 0],
                                                                                                  [2, 2, 0]],
                                                      pbc=True)])
    with pytest.raises(StructureFileError, match=re.escape(f"{frames} (frame 1): Structure.cell has zero volume")):
        read_structures(frames)


def test_structure_file_error_is_a_value_error():
    assert issubclass(StructureFileError, ValueError)


@pytest.mark.parametrize("name", ["missing.xsf", "missing.extxyz"])
def test_missing_file(tmp_path, name):
    with pytest.raises(FileNotFoundError, match=re.escape(name)):
        read_structures(tmp_path / name)


# -- malformed ASE formats ---------------------------------------------------


def test_ase_parse_error_names_file(tmp_path):
    path = write_text(tmp_path, "two\nnot a comment\nH 0 0 0\nH 0 0 1\n", "bad.extxyz")
    with pytest.raises(StructureFileError, match=re.escape(f"{path}: ASE could not read")):
        read_structures(path)


def test_unknown_extension_names_file(tmp_path):
    path = write_text(tmp_path, "nothing to see\n", "data.unknownext")
    with pytest.raises(StructureFileError, match=re.escape(str(path))):
        read_structures(path)


def extxyz_frame(energy, symbol="H"):
    return f'2\nenergy={energy} pbc="F F F"\n{symbol} 0.0 0.0 0.0\nH 0.0 0.0 0.74\n'


@pytest.mark.parametrize("energy, symbol, pattern", [
    ("nan", "H", r"Structure\.energy must be finite"),
    ("-1.0 weight=-1", "H", r"Structure\.weight must be a finite number >= 0; got -1"),
])
def test_extxyz_validation_error_names_file_and_frame(tmp_path, energy, symbol, pattern):
    path = write_text(tmp_path, extxyz_frame(-1.0) + extxyz_frame(energy, symbol), "bad.extxyz")
    with pytest.raises(StructureFileError, match=re.escape(f"{path} (frame 1): ") + ".*" + pattern):
        read_structures(path)


# -- atomic writes ------------------------------------------------------------


def test_xsf_write_failure_leaves_no_files(tmp_path):
    frames = [random_structure(0), random_structure(1, pbc=[False, True, True])]  # frame 1 fails mid-write
    with pytest.raises(ValueError, match="frame 1"):
        write_xsf(tmp_path / "out.xsf", frames)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path):
    path = write_text(tmp_path, "old contents\n", "out.xsf")
    with pytest.raises(ValueError):
        write_xsf(path, [random_structure(0), random_structure(1, periodic=False)])
    assert path.read_text() == "old contents\n"
    assert list(tmp_path.iterdir()) == [path]


def test_extxyz_write_failure_leaves_no_files(tmp_path, monkeypatch):
    from aenet_core.io import ase_io

    frame = ase_io._extxyz_frame
    written = []

    def fail_on_second(structure):
        if written:
            raise RuntimeError("disk on fire")
        written.append(structure)
        return frame(structure)

    monkeypatch.setattr(ase_io, "_extxyz_frame", fail_on_second)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_extxyz(tmp_path / "out.extxyz", [random_structure(0), random_structure(1)])
    assert written and list(tmp_path.iterdir()) == []
