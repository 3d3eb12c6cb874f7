"""Our readers of formats ASE lacks: FHI-aims output (the 2012-era layout ASE stops on), ATAT str.out, Tinker XYZ;
aenet-python's format names."""
import ase.io
import numpy as np
import pytest
from ase import Atoms

from aenet_core.io import AENET_FORMATS, StructureFileError, read_structures
from aenet_core.reference_energies import ReferenceEnergies, iter_composition_energy_samples_from_files

CELL = np.array([[4.0, 0.0, 0.0], [0.5, 4.2, 0.0], [0.0, 0.3, 9.0]])
INPUT = np.array([[0.1, 0.2, 0.3], [2.0, 2.1, 4.4]])
UPDATED = np.array([[0.15, 0.2, 0.31], [2.05, 2.1, 4.38]])
ENERGIES = [-0.300125431208167e06, -0.300125468817324e06]
FORCES = [np.array([[0.1e-01, -0.2e-02, 0.3e-01], [-0.1e-01, 0.2e-02, -0.3e-01]]),
          np.array([[0.4e-03, 0.0, -0.5e-03], [-0.4e-03, 0.0, 0.5e-03]])]


def header():
    return ["  MPI-parallelism will be employed.", "-" * 60, "          Invoking FHI-aims ...",
            "          Version 081912", "", "  The structure contains        2 atoms,  and a total of  108.000 electrons."]


def input_geometry(cell, positions):
    lines = ["", "  Input geometry:"]
    if cell is None:
        lines.append("  | No unit cell requested.")
    else:
        lines += ["  | Unit cell:"] + [f"  |  {a:16.6f} {b:16.6f} {c:16.6f}" for a, b, c in cell]
    lines += ["  | Atomic structure:", "  |       Atom                x [A]            y [A]            z [A]"]
    lines += [f"  |    {i + 1}: Species {s:<10} {x:16.6f} {y:16.6f} {z:16.6f}"
              for i, (s, (x, y, z)) in enumerate(zip(["Cu", "Au"], positions))]
    return lines


def scf_cycle(energy, forces, begin="Initialization"):
    """An SCF loop: iteration noise (energies that are not the result), convergence, the compact result."""
    lines = [f"          Begin self-consistency loop: {begin}.", "",
             "  | Sum of eigenvalues            :     -4841.86 Ha   -131753.74 eV",
             f"  | Total energy, T -> 0          :     -1.0 Ha   {energy + 3.0:.8f} eV  <-- only rely on this",
             "  Self-consistency cycle converged.", "", "  Energy and forces in a compact form:",
             f"  | Total energy uncorrected      :    {energy + 0.01:.15E} eV",
             f"  | Total energy corrected        :    {energy:.15E} eV  <-- only rely on this value for metals",
             f"  | Electronic free energy        :    {energy - 0.01:.15E} eV",
             "  Total atomic forces (unitary forces were cleaned, then relaxation constraints were applied) [eV/Ang]:"]
    lines += [f"  |  {i + 1:3d}   {fx:25.15E} {fy:25.15E} {fz:25.15E}" for i, (fx, fy, fz) in enumerate(forces)]
    return lines + ["", "  Relaxation / MD: End force evaluation."]


def updated_structure(cell, positions):
    """The relaxation step's next geometry, Cartesian rows then the fractional repetition newer versions add."""
    lines = ["  Updated atomic structure:", "                         x [A]             y [A]             z [A]"]
    lines += [f"  lattice_vector  {a:16.8f} {b:16.8f} {c:16.8f}" for a, b, c in cell] + [""]
    lines += [f"            atom  {x:16.8f} {y:16.8f} {z:16.8f}  {s}" for s, (x, y, z) in zip(["Cu", "Au"], positions)]
    fractional = positions @ np.linalg.inv(cell)
    lines += ["", "  Fractional coordinates:"]
    lines += [f"       atom_frac  {x:16.8f} {y:16.8f} {z:16.8f}  {s}" for s, (x, y, z) in zip(["Cu", "Au"], fractional)]
    return lines + ["-" * 60]


def relaxation():
    lines = header() + input_geometry(CELL, INPUT) + scf_cycle(ENERGIES[0], FORCES[0])
    lines += ["  Present geometry is not yet converged."] + updated_structure(CELL, UPDATED)
    lines += scf_cycle(ENERGIES[1], FORCES[1], "Re-initialization")
    lines += ["  Present geometry is converged.", "  Final atomic structure:"]
    lines += [f"            atom  {x:16.8f} {y:16.8f} {z:16.8f}  {s}" for s, (x, y, z) in zip(["Cu", "Au"], UPDATED)]
    return "\n".join(lines + ["", "          Have a nice day.", ""])


@pytest.fixture
def relaxation_file(tmp_path):
    path = tmp_path / "aims.out"
    path.write_text(relaxation())
    return path


def test_relaxation_frames_pair_each_geometry_with_its_own_energy_and_forces(relaxation_file):
    frames = read_structures(relaxation_file)
    assert len(frames) == 2
    for frame, positions, energy, forces in zip(frames, [INPUT, UPDATED], ENERGIES, FORCES):
        assert np.allclose(frame.positions, positions, atol=1e-8) and frame.energy == energy
        assert np.allclose(frame.forces, forces, atol=1e-15)
        assert frame.species == ["Cu", "Au"] and np.allclose(frame.cell, CELL) and frame.pbc.all()
    assert frames[1].name == f"{relaxation_file}#frame=1"
    last = read_structures(relaxation_file, format="aimsout", index="-1")
    assert len(last) == 1 and last[0].energy == ENERGIES[1]


def test_fractional_rows_alone_are_converted_with_the_cell(tmp_path):
    lines = relaxation().splitlines()
    text = "\n".join(line for line in lines if not line.strip().startswith("atom ") or "Final" in line)
    path = tmp_path / "frac.out"
    path.write_text(text)
    assert np.allclose(read_structures(path)[1].positions, UPDATED, atol=1e-7)


def test_single_point_of_a_molecule(tmp_path):
    lines = header() + input_geometry(None, INPUT) + scf_cycle(ENERGIES[0], FORCES[0])
    path = tmp_path / "molecule.out"
    path.write_text("\n".join(lines + ["          Have a nice day."]))
    (frame,) = read_structures(path)
    assert frame.cell is None and frame.name == str(path) and frame.energy == ENERGIES[0]
    assert np.allclose(frame.positions, INPUT, atol=1e-8)


def test_reference_energies_from_aims_output(tmp_path, relaxation_file):
    samples = list(iter_composition_energy_samples_from_files([relaxation_file], frmt="aimsout"))
    assert samples == [({"Cu": 1, "Au": 1}, ENERGIES[0]), ({"Cu": 1, "Au": 1}, ENERGIES[1])]
    fit = ReferenceEnergies.from_regression(iter_composition_energy_samples_from_files(relaxation_file),
                                            fixed_atomic_energies={"Cu": -1.0})
    assert fit.atomic_energies["Au"] == pytest.approx(np.mean(ENERGIES) + 1.0)


@pytest.mark.parametrize("old, new, at, message", [
    (f"{FORCES[0][1][2]:25.15E}", "*****", "*****", "expected fx fy fz; got"),
    ("  | Total energy corrected        :    -3.001254312", "  | Total energy corrected : x3.0", "x3.0",
     "expected an energy"),
    ("  | Atomic structure:", None, None, "unexpected end of file; expected '| Atomic structure:'"),
    ("Input geometry:", "Geometry:", "cycle converged", "a converged cycle before any 'Input geometry:' block"),
])
def test_malformed_output_names_file_and_line(relaxation_file, old, new, at, message):
    """``new`` None cuts the file before ``old``; the error names the first line holding ``at`` (else the last)."""
    text = relaxation_file.read_text()
    text = text.split(old)[0] if new is None else text.replace(old, new, 1)
    lines = text.splitlines()
    line = len(lines) if at is None else next(i for i, t in enumerate(lines, 1) if at in t)
    relaxation_file.write_text(text)
    with pytest.raises(StructureFileError, match=rf"{relaxation_file}:{line}: {message}"):
        read_structures(relaxation_file)


@pytest.mark.parametrize("name, filename", [("xyz", "frames.data"), ("vasp", "POSCAR_x"), ("xsf", "one.txt")])
def test_aenet_python_format_names(tmp_path, name, filename):
    atoms = Atoms("CuAu", positions=INPUT, cell=CELL, pbc=True)
    path = tmp_path / filename
    ase.io.write(path, atoms, format={"xyz": "extxyz", "vasp": "vasp", "xsf": "xsf"}[name])
    (structure,) = read_structures(path, format=name)
    assert structure.species == ["Cu", "Au"] and np.allclose(structure.positions, INPUT)
    assert set(AENET_FORMATS) >= {"aims", "aimsout", "vasp", "vasprun", "xdatcar", "pw", "espresso", "xsf", "xyz"}


def atat_text(system_lines):
    return "\n".join(system_lines + ["1 0 0", "0 1 0", "0 0 2", "", "0 0 0 Fe1", "0.5 0.5 0.5 Fe2", "0 0 1 O"]) + "\n"


@pytest.mark.parametrize("system_lines", [["2.8 2.8 2.8 90 90 90"], ["2.8 0 0", "0 2.8 0", "0 0 2.8"]])
def test_atat_str_out(tmp_path, system_lines):
    path = tmp_path / "str.out"
    path.write_text(atat_text(system_lines))
    for structure in (read_structures(path)[0], read_structures(path, format="atat")[0]):
        assert structure.species == ["Fe1", "Fe2", "O"]  # ATAT's labels are species labels here too
        assert np.allclose(structure.positions, [[0, 0, 0], [1.4, 1.4, 1.4], [0, 0, 2.8]])
        assert np.allclose(structure.cell, np.diag([2.8, 2.8, 5.6])) and structure.energy is None


@pytest.mark.parametrize("edit, line, message", [
    (lambda t: t.replace("0.5 0.5 0.5 Fe2", "0.5 0.5 x Fe2"), 7, "expected x y z of 'x y z label'"),
    (lambda t: t.replace("0 0 1 O", "0 0 1"), 8, "expected x y z of 'x y z label'|expected 'x y z label'"),
    (lambda t: t.replace("2.8 2.8 2.8 90 90 90", "2.8 2.8 90 90"), 1, "expected 'a b c alpha beta gamma'"),
    (lambda t: "\n".join(t.splitlines()[:4]), 4, "the file ends early"),
])
def test_malformed_atat_names_file_and_line(tmp_path, edit, line, message):
    path = tmp_path / "str.out"
    path.write_text(edit(atat_text(["2.8 2.8 2.8 90 90 90"])))
    with pytest.raises(StructureFileError, match=rf"{path}:{line}: .*({message})"):
        read_structures(path)


TINKER_FRAME = """     3  water {n}
    1  O     0.000000    0.000000    0.{n}00000     1     2     3
    2  H     0.957200    0.000000    0.000000     2     1
    3  H    -0.239988    0.926627    0.000000D+00     2     1
"""


def test_tinker_frames_box_lines_and_key_file(tmp_path):
    arc = tmp_path / "water.arc"
    arc.write_text(TINKER_FRAME.format(n=1) + TINKER_FRAME.format(n=2))
    frames = read_structures(arc)
    assert [f.species for f in frames] == [["O", "H", "H"]] * 2 and frames[1].positions[0, 2] == 0.2
    assert frames[0].cell is None and frames[1].name == f"{arc}#frame=1"
    (tmp_path / "water.key").write_text("parameters water\na-axis 10.0\nc-axis 12.0\n")
    assert np.allclose(read_structures(arc, index="0")[0].cell, np.diag([10.0, 10.0, 12.0]))
    boxed = tmp_path / "boxed.data"
    lines = TINKER_FRAME.format(n=1).splitlines()
    boxed.write_text("\n".join([lines[0], "  8.0 8.0 8.0 90.0 90.0 90.0"] + lines[1:]) + "\n")
    (frame,) = read_structures(boxed, format="tinker")
    assert np.allclose(frame.cell, np.eye(3) * 8.0) and np.allclose(frame.positions[2], [-0.239988, 0.926627, 0])


@pytest.mark.parametrize("edit, line, message", [
    (lambda t: t.replace("0.957200", "x.957200"), 3, "expected 'index name x y z"),
    (lambda t: t.replace("     3  water 1", "three water"), 1, "expected 'natoms \\[title\\]'"),
    (lambda t: t.replace("     3  water 1", "     5  water 1"), 4, "unexpected end of file; the frame declares 5"),
])
def test_malformed_tinker_names_file_and_line(tmp_path, edit, line, message):
    path = tmp_path / "bad.tinker"
    path.write_text(edit(TINKER_FRAME.format(n=1)))
    with pytest.raises(StructureFileError, match=rf"{path}:{line}: {message}"):
        read_structures(path)
