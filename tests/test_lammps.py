"""LAMMPS with our plugin (pair style aenet/core) against aenet_core's Python predictions.

The truth is the Python evaluation of the same files: energies to 1e-10 eV/atom, forces to 1e-9 eV/Å, virials
to 1e-9 eV, for structures unlike the training data (triclinic, smaller than the cutoff, atoms outside the cell,
one to five species, a slab, a molecule) and for committees (mean and spread).  Skips, with the reason, where
LAMMPS or the plugin is not built (``make lammps``).
"""
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from aenet_core.committee import TorchCommitteePotential
from aenet_core.descriptor import ChebyshevDescriptor
from aenet_core.lammps import LammpsError, executables, find_models, input_lines, lammps_frame, plugin_path, \
    run_structures, write_data_file
from aenet_core.potential import TorchANNPotential
from aenet_core.structure import Structure

ENERGY_TOL, FORCE_TOL, VIRIAL_TOL = 1e-10, 1e-9, 1e-9
SPECIES_SETS = {1: ["Cu"], 2: ["Ti", "O"], 3: ["Li", "Ni", "O"], 4: ["Li", "Mo", "Ni", "O"],
                5: ["Li", "Mo", "Ni", "Ti", "O"]}
ACTIVATION_CYCLE = ["tanh", "sigmoid", "mtanh", "twist", "linear"]


def synthetic_potential(folder, species, seed, rad=(6, 4.2), ang=(4, 3.4)):
    """An untrained potential with fixed random weights, feature statistics, energy scale and atomic energies,
    exported to ``folder``; returns it as read back from the files (the same numbers LAMMPS reads)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    arch = {s: [(5 + k, ACTIVATION_CYCLE[(k + seed) % 5]), (4, "tanh")] for k, s in enumerate(species)}
    descriptor = ChebyshevDescriptor(species, rad[0], rad[1], ang[0], ang[1], min_cutoff=0.5)
    potential = TorchANNPotential(arch, descriptor)
    shape = (len(species), descriptor.n_features)
    potential.model.set_feature_statistics(rng.uniform(0, 2, shape), rng.uniform(0.5, 3, shape))
    potential.model.set_energy_normalization(rng.uniform(-5, -3), rng.uniform(0.2, 2))
    with torch.no_grad():
        potential.model.atomic_energies.copy_(torch.tensor(rng.uniform(-500, -10, len(species))))
    manifest = potential.export_aenet(folder)
    return TorchANNPotential.from_aenet_ascii({s: folder / name for s, name in manifest["files"].items()})


def random_structure(species, n_atoms, cell, pbc, seed, min_distance=1.5, shift=None):
    """Atoms at random with no pair closer than ``min_distance`` (periodic images included)."""
    rng = np.random.default_rng(seed)
    cell = np.asarray(cell, float)
    positions = []
    while len(positions) < n_atoms:
        trial = rng.uniform(0, 1, 3) @ cell
        images = [trial + np.array(k) @ cell for k in np.ndindex(3, 3, 3)] if any(pbc) else [trial]
        images = [p - np.ones(3) @ cell for p in images] if any(pbc) else images
        if all(np.linalg.norm(p - q) >= min_distance for p in positions for q in images):
            positions.append(trial)
    positions = np.array(positions)
    if shift is not None:
        positions = positions + np.asarray(shift) @ cell
    symbols = [species[i % len(species)] for i in range(n_atoms)]
    return Structure(positions, symbols, cell=cell if any(pbc) else None, pbc=pbc if any(pbc) else None)


def rotated(cell, seed):
    """``cell`` turned by a random rotation: the LAMMPS box is then not the cell's own orientation."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return np.asarray(cell) @ (q * np.sign(np.diag(r)))


TRICLINIC = rotated([[5.4, 0.0, 0.0], [1.7, 5.1, 0.0], [-0.9, 1.2, 5.6]], 1)
KINDS = {
    "triclinic": lambda sp: random_structure(sp, 14, TRICLINIC, [True] * 3, 2),
    "smaller than the cutoff": lambda sp: random_structure(sp, 2, [[2.6, 0, 0], [0.3, 2.5, 0], [0, 0.2, 2.7]],
                                                           [True] * 3, 3, min_distance=1.2),
    "outside the cell": lambda sp: random_structure(sp, 10, TRICLINIC, [True] * 3, 4, shift=[1.3, -2.2, 0.6]),
    "slab": lambda sp: random_structure(sp, 12, [[5.0, 0, 0], [2.0, 4.6, 0], [0, 0, 6.0]], [True, True, False], 5),
    "molecule": lambda sp: random_structure(sp, 7, np.diag([4.0, 4.0, 4.0]), [False] * 3, 6, min_distance=1.3),
}


def python_results(potential, structure):
    periodic = structure.cell is not None and bool(structure.pbc.all())
    out = potential.predict([structure], eval_forces=True, eval_stress=periodic)
    forces = out.forces[0]
    if periodic:
        virial = -out.stress[0] * abs(np.linalg.det(structure.cell))
    elif structure.cell is None:  # isolated: Σ r ⊗ F over the atoms themselves
        virial = structure.positions.T @ forces
    else:
        virial = None  # a slab: Python has no stress; LAMMPS's is compared with the 3D-periodic cases
    return out.total_energy[0], out.atom_energies[0], forces, virial


def assert_matches(lammps, python, n_atoms):
    energy, atom_energies, forces, virial = python
    assert abs(lammps.energy - energy) / n_atoms < ENERGY_TOL
    assert np.abs(lammps.atom_energies - atom_energies).max() < ENERGY_TOL
    assert np.abs(lammps.forces - forces).max() < FORCE_TOL
    if virial is not None:
        assert np.abs(lammps.virial - virial).max() < VIRIAL_TOL


@pytest.fixture(scope="module")
def potentials(tmp_path_factory):
    """{number of species: (potential, its {element} template)}."""
    found = {}
    for n, species in SPECIES_SETS.items():
        folder = tmp_path_factory.mktemp(f"species{n}")
        found[n] = (synthetic_potential(folder, species, seed=n), find_models(folder)[0])
    return found


@pytest.mark.parametrize("n_species", sorted(SPECIES_SETS))
def test_run_0_equals_python_on_every_kind_of_structure(lammps_ready, potentials, n_species):
    potential, template = potentials[n_species]
    species = SPECIES_SETS[n_species]
    structures = {kind: make(species) for kind, make in KINDS.items()}
    results = run_structures(list(structures.values()), [template])
    for (kind, structure), lammps in zip(structures.items(), results):
        assert_matches(lammps, python_results(potential, structure), structure.n_atoms), kind
        assert np.allclose(lammps.atom_virials.sum(0), lammps.virial)
        assert lammps.max_force_std == 0 and not lammps.force_std.any()


def test_frame_rotation_is_a_rigid_motion():
    cell = TRICLINIC
    structure = random_structure(["Cu"], 5, cell, [True] * 3, 7)
    box, rotation, boundary = lammps_frame(structure)
    lower = cell @ rotation
    assert boundary == "p p p"
    assert np.allclose(rotation.T @ rotation, np.eye(3))
    assert np.allclose(np.triu(lower, 1), 0) and (np.diag(lower) > 0).all()
    assert np.allclose([box[1], box[3], box[5], box[6], box[7], box[8]],
                       [lower[0, 0], lower[1, 1], lower[2, 2], lower[1, 0], lower[2, 0], lower[2, 1]])


def synthetic_committee(root):
    """Three Ti-O members with the same descriptor and different weights, written to ``root`` as export lays
    them out."""
    members = [synthetic_potential(root / f"member_{k:03d}", ["Ti", "O"], seed=10 + k) for k in range(3)]
    committee = TorchCommitteePotential(members[0].model.arch, members[0].descriptor)
    committee.members = members
    return committee


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    root = tmp_path_factory.mktemp("committee")
    return synthetic_committee(root), find_models(root), root


def test_committee_mean_and_spread_equal_python(lammps_ready, committee):
    potential, models, _ = committee
    structures = [KINDS[kind](["Ti", "O"]) for kind in ("triclinic", "outside the cell", "molecule")]
    prediction = potential.predict(structures, eval_forces=True)
    for structure, lammps, python in zip(structures, run_structures(structures, models), prediction):
        n = structure.n_atoms
        assert abs(lammps.energy - python.energy) / n < ENERGY_TOL
        assert np.abs(lammps.forces - python.forces).max() < FORCE_TOL
        assert np.abs(lammps.force_std - python.force_std).max() < FORCE_TOL
        assert abs(lammps.max_force_std - python.force_std.max()) < FORCE_TOL
        assert abs(lammps.mean_force_std - python.force_std.mean()) < FORCE_TOL
        assert abs(lammps.energy_std - python.energy_std) < ENERGY_TOL * n
        assert lammps.max_force_std > 1e-3  # the members differ: the check is not 0 == 0


def test_two_mpi_ranks_and_newton_off_equal_one_rank(lammps_ready, committee):
    _, models, _ = committee
    structures = [random_structure(["Ti", "O"], 40, np.diag([9.0, 8.0, 8.5]), [True] * 3, 8),
                  KINDS["triclinic"](["Ti", "O"])]
    reference = run_structures(structures, models)
    for options in ({"ranks": 2}, {"newton": False}, {"ranks": 2, "newton": False}):
        for one, other in zip(reference, run_structures(structures, models, **options)):
            assert abs(one.energy - other.energy) < 1e-10 * len(one.forces), options
            assert np.abs(one.forces - other.forces).max() < 1e-10, options
            assert np.abs(one.virial - other.virial).max() < 1e-10, options
            assert np.abs(one.force_std - other.force_std).max() < 1e-10, options
            assert abs(one.max_force_std - other.max_force_std) < 1e-10, options


def run_script(folder, script):
    """Run a LAMMPS input script in ``folder``; returns what LAMMPS printed, or fails with it."""
    (folder / "in.lammps").write_text(script)
    lmp, _ = executables()
    finished = subprocess.run([lmp, "-in", "in.lammps", "-log", "none"], cwd=folder, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr
    return finished.stdout


def test_committee_deviation_along_a_trajectory_equals_python(lammps_ready, committee, tmp_path):
    potential, models, _ = committee
    structure = random_structure(["Ti", "O"], 24, np.diag([7.0, 6.5, 7.5]), [True] * 3, 9, min_distance=1.9)
    rotation, _ = write_data_file(tmp_path / "start.data", structure, ["Ti", "O"])
    script = f"""units metal
atom_style atomic
atom_modify map array
boundary p p p
read_data start.data
mass 1 47.867
mass 2 15.999
plugin load {plugin_path()}
pair_style aenet/core
pair_coeff * * {' '.join(models)} Ti O
fix fstd all property/atom d_force_std
compute dev all pair aenet/core
velocity all create 1500 4 loop geom
fix nve all nve
thermo_style custom step pe c_dev[1]
thermo 10
dump traj all custom 10 traj.dump id x y z d_force_std
dump_modify traj format float %.17g sort id
fix dev all print 10 "$(step) $(c_dev[1]:%.17g)" file dev.txt screen no
timestep 0.001
run 60
"""
    run_script(tmp_path, script)
    frames = (tmp_path / "traj.dump").read_text().split("ITEM: TIMESTEP\n")[1:]
    deviations = dict(line.split() for line in (tmp_path / "dev.txt").read_text().splitlines()[1:])
    lower = structure.cell @ rotation
    assert len(frames) == 7
    moved = 0.0
    for frame in frames:
        step = frame.split()[0]
        lines = frame.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS")) + 1
        table = np.array([line.split() for line in lines[start:]], float)
        snapshot = Structure(table[:, 1:4], structure.species, cell=lower, pbc=[True] * 3)
        moved = max(moved, np.abs(table[:, 1:4] - structure.positions @ rotation).max())
        python = potential.predict([snapshot], eval_forces=True)[0]
        assert abs(float(deviations[step]) - python.force_std.max()) < FORCE_TOL, step
        assert np.abs(table[:, 4] - python.force_std).max() < FORCE_TOL, step
    assert moved > 0.05  # the atoms moved: the frames are different structures


def test_input_lines_load_what_they_say(lammps_ready, committee, tmp_path):
    _, models, folder = committee
    lines = input_lines(folder)
    assert lines[1] == f"plugin load {plugin_path()}"
    assert lines[2] == "pair_style aenet/core"
    assert lines[3] == f"pair_coeff * * {' '.join(models)} Ti O"
    assert input_lines(folder, ["O", "NULL", "Ti"])[3].endswith("O NULL Ti")
    with pytest.raises(LammpsError, match=r"no species \['Cu'\]"):
        input_lines(folder, ["Ti", "Cu"])


def test_a_workflow_runs_folder_or_committee_names_its_exported_files(tmp_path):
    run = tmp_path / "results" / "tio2"
    for member in ("member_000", "member_001"):
        (run / "ascii" / member).mkdir(parents=True)
        for species in ("Ti", "O"):
            (run / "ascii" / member / f"potential.{species}.nn.ascii").touch()
            (run / "ascii" / member / f"potential.{species}.nn").touch()
    (run / "committee").mkdir()
    (run / "committee" / "committee_metadata.json").touch()
    expected = [str(run.resolve() / "ascii" / m / "potential.{element}.nn.ascii") for m in ("member_000", "member_001")]
    for path in (run, run / "ascii", run / "committee", run / "committee" / "committee_metadata.json"):
        assert find_models(path) == expected, path
    assert find_models(run / "ascii" / "member_001") == expected[1:]
    (tmp_path / "trained").mkdir()
    (tmp_path / "trained" / "committee_metadata.json").touch()
    with pytest.raises(LammpsError, match="run 'aenet-core export' on the committee first"):
        find_models(tmp_path / "trained")


@pytest.fixture(scope="module")
def ti_o_folder(potentials):
    """The folder of the two-species potential's files (.nn.ascii and binary .nn)."""
    return Path(potentials[2][1]).parent


def test_binary_files_give_the_same_numbers(lammps_ready, potentials, ti_o_folder):
    structure = KINDS["triclinic"](["Ti", "O"])
    text, binary = (run_structures([structure], [str(ti_o_folder / f"potential.{{element}}{suffix}")])[0]
                    for suffix in (".nn.ascii", ".nn"))
    assert text.energy == binary.energy
    assert np.array_equal(text.forces, binary.forces)


def damaged_copy(source, target, edit):
    """A copy of the potential folder ``source`` without binary files, whose Ti file went through
    ``edit(text) -> text``."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.nn"))
    ti = target / "potential.Ti.nn.ascii"
    ti.write_text(edit(ti.read_text()))
    return find_models(target)


def replace_first_number(text, line):
    rows = text.splitlines()
    rows[line - 1] = rows[line - 1].replace(rows[line - 1].split()[0], "1.2.3", 1)
    return "\n".join(rows) + "\n"


def test_bad_potential_files_and_settings_stop_lammps_with_a_named_error(lammps_ready, ti_o_folder, tmp_path):
    structure = KINDS["triclinic"](["Ti", "O"])
    weights_line = 9  # nlayers, nnodes_max, Wsize, nvalues, nnodes, f_a, iw, iv: then the weights
    bad = damaged_copy(ti_o_folder, tmp_path / "garbled", lambda text: replace_first_number(text, weights_line))
    with pytest.raises(LammpsError, match=rf"garbled/potential\.Ti\.nn\.ascii.* line {weights_line}\b.*1\.2\.3"):
        run_structures([structure], bad)
    short = damaged_copy(ti_o_folder, tmp_path / "short", lambda text: "\n".join(text.splitlines()[:12]) + "\n")
    with pytest.raises(LammpsError, match=r"short/potential\.Ti\.nn\.ascii"):
        run_structures([structure], short)
    with pytest.raises(LammpsError, match="Cu"):
        run_structures([structure], find_models(ti_o_folder), elements=["Ti", "O", "Cu"])
    (tmp_path / "no_oxygen").mkdir()
    shutil.copy(ti_o_folder / "potential.Ti.nn.ascii", tmp_path / "no_oxygen")
    with pytest.raises(LammpsError, match=r"no_oxygen/potential\.O\.nn\.ascii"):
        run_structures([structure], find_models(tmp_path / "no_oxygen"), elements=["Ti", "O"])


# ----------------------------------------------------------------------------- the Fortran-trained potential


@pytest.fixture(scope="module")
def fortran_templates(shared_data):
    folder = shared_data / "reference" / "potentials" / "TiO2-fortran"
    return {"text": str(folder / "{element}.nn.ascii"), "binary": str(folder / "{element}.nn")}


def supercell(structure, repeat):
    return Structure.from_ase(structure.without_labels().to_ase().repeat(repeat))


def test_fortran_potential_and_its_binary_files_equal_python(lammps_ready, fortran_potential, fortran_templates,
                                                            tio2):
    structures = [*tio2, supercell(tio2[0], (2, 1, 1))]
    for kind, template in fortran_templates.items():
        for structure, lammps in zip(structures, run_structures(structures, [template])):
            assert_matches(lammps, python_results(fortran_potential, structure), structure.n_atoms), kind


def energy_excursion(folder, template, timestep: float) -> float:
    """The largest change of the total energy (eV/atom) in 200 fs of NVE from 600 K with ``timestep`` (ps)."""
    output = run_script(folder, f"""units metal
atom_style atomic
read_data cell.data
mass 1 47.867
mass 2 15.999
plugin load {plugin_path()}
pair_style aenet/core
pair_coeff * * {template} Ti O
velocity all create 600 7 loop geom
fix nve all nve
timestep {timestep}
thermo_style custom step pe ke etotal
thermo_modify format float %.10f
thermo {round(0.01 / timestep)}
run {round(0.2 / timestep)}
""")
    block = output.split("Step")[1].split("Loop time")[0].splitlines()[1:]
    rows = np.array([line.split() for line in block if line.strip()], float)
    assert rows[:, 2].min() > 0.1  # kinetic energy: the atoms move
    return np.abs(rows[:, 3] - rows[0, 3]).max() / 92


def test_nve_energy_error_shrinks_with_the_square_of_the_timestep(lammps_ready, fortran_templates, tio2, tmp_path):
    """Velocity Verlet keeps the energy to O(dt^2) only when the forces are the energy's exact gradient."""
    write_data_file(tmp_path / "cell.data", supercell(tio2[0], (2, 2, 1)), ["Ti", "O"])
    coarse, fine = (energy_excursion(tmp_path, fortran_templates["text"], dt) for dt in (0.001, 0.0005))
    assert coarse < 1e-4  # eV/atom
    assert fine < 0.35 * coarse


def test_a_cutoff_beyond_what_the_communication_allows_is_a_lammps_error(lammps_ready, fortran_templates, tmp_path):
    script = f"""units metal
atom_style atomic
comm_style tiled
region box block 0 3 0 3 0 3
create_box 2 box
create_atoms 1 single 0 0 0
create_atoms 2 single 1.5 1.5 1.5
mass * 10
plugin load {plugin_path()}
pair_style aenet/core
pair_coeff * * {fortran_templates["text"]} Ti O
run 0
"""
    (tmp_path / "in.lammps").write_text(script)
    lmp, _ = executables()
    finished = subprocess.run([lmp, "-in", "in.lammps", "-log", "none"], cwd=tmp_path, capture_output=True, text=True)
    assert finished.returncode != 0
    assert "ERROR: Communication cutoff for comm_style tiled cannot exceed periodic box length" in finished.stdout


def test_the_evaluation_check_reports_agreement_and_disagreement(lammps_ready, committee, potentials):
    from aenet_core.lammps import check_against_python, check_warning

    potential, _, root = committee
    structures = [KINDS["triclinic"](["Ti", "O"]), KINDS["molecule"](["Ti", "O"])]
    check = check_against_python(root, structures, potential.predict(structures, eval_forces=True))
    assert check["checked"] and check["agrees"] and check["n_structures"] == 2
    assert check["max_energy_difference_per_atom"] < ENERGY_TOL and check_warning(check) is None
    other = TorchCommitteePotential(potential.members[0].model.arch, potential.descriptor)
    other.members = potential.members[:2]  # not the committee that was exported
    check = check_against_python(root, structures, other.predict(structures, eval_forces=True))
    assert check["checked"] and not check["agrees"]
    assert "differs from the Python predictions" in check_warning(check)
    missing = check_against_python(root / "nowhere", structures, None)
    assert missing == {"checked": False, "reason": f"{root / 'nowhere'} does not exist"}


def test_any_type_order_and_null_types_under_hybrid_overlay(lammps_ready, potentials, tmp_path):
    potential, template = potentials[2]
    structure = KINDS["triclinic"](["Ti", "O"])
    python = python_results(potential, structure)
    assert_matches(run_structures([structure], [template], elements=["O", "Ti"])[0], python, structure.n_atoms)
    rng = np.random.default_rng(5)  # argon atoms that the potential must not see
    argon = rng.uniform(0, 1, (3, 3)) @ structure.cell
    with_argon = Structure(np.vstack([structure.positions, argon]), structure.species + ["Ar"] * 3,
                           cell=structure.cell)
    rotation, _ = write_data_file(tmp_path / "mixed.data", with_argon, ["Ti", "O", "Ar"])
    run_script(tmp_path, f"""units metal
atom_style atomic
atom_modify map array
read_data mixed.data
mass * 20.0
plugin load {plugin_path()}
pair_style hybrid/overlay aenet/core zero 5.0
pair_coeff * * aenet/core {template} Ti O NULL
pair_coeff * * zero
compute energy all pe/atom
dump out all custom 1 out.dump id fx fy fz c_energy
dump_modify out format float %.17g sort id
run 0
""")
    lines = (tmp_path / "out.dump").read_text().splitlines()
    table = np.array([line.split() for line in lines[9:]], float)
    n = structure.n_atoms
    assert np.abs(table[:n, 1:4] @ rotation.T - python[2]).max() < FORCE_TOL
    assert np.abs(table[:n, 4] - python[1]).max() < ENERGY_TOL
    assert not table[n:, 1:5].any()  # the NULL atoms: no energy, no force


def test_the_lammps_input_command_prints_the_lines_or_says_what_is_wrong(lammps_ready, ti_o_folder, capsys):
    from aenet_core.cli import main

    main(["lammps-input", str(ti_o_folder), "--elements", "O", "Ti"])
    assert capsys.readouterr().out.splitlines() == input_lines(ti_o_folder, ["O", "Ti"])
    with pytest.raises(SystemExit):
        main(["lammps-input", str(ti_o_folder), "--elements", "O", "Zr"])
    assert "aenet-core lammps-input failed: " in capsys.readouterr().err


def is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def fortran_layout(text: str) -> str:
    """A .nn.ascii text as Fortran's record-wise writers lay it out: four values per line, and the floats
    alternately with D exponents, with Fortran's bare three-digit exponent (1.5-002) and as they were;
    the logical as .TRUE."""
    lines, count = [], 0
    for line in text.splitlines():
        tokens = line.split()
        if tokens in (["T"], ["True"]):
            lines.append(".TRUE.")
        elif len(tokens) > 1 and all(map(is_number, tokens)):
            styled = []
            for token in tokens:
                if "e" in token:
                    mantissa, exponent = token.split("e")
                    token = (f"{mantissa}D{exponent}", f"{mantissa}{int(exponent):+04d}", token)[count % 3]
                    count += 1
                styled.append(token)
            lines += [" ".join(styled[i:i + 4]) for i in range(0, len(styled), 4)]
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def test_fortran_record_layouts_read_the_same_in_lammps(lammps_ready, ti_o_folder, tmp_path):
    (tmp_path / "records").mkdir()
    for species in ("Ti", "O"):
        text = (ti_o_folder / f"potential.{species}.nn.ascii").read_text()
        (tmp_path / "records" / f"potential.{species}.nn.ascii").write_text(fortran_layout(text))
    rewritten = (tmp_path / "records" / "potential.Ti.nn.ascii").read_text()
    assert "D" in rewritten and ".TRUE." in rewritten and re.search(r"\d[+-]\d{3}\b", rewritten)
    structure = KINDS["triclinic"](["Ti", "O"])
    original, records = (run_structures([structure], find_models(folder))[0]
                         for folder in (ti_o_folder, tmp_path / "records"))
    assert records.energy == original.energy
    assert np.array_equal(records.forces, original.forces)


def test_a_folder_with_spaces_and_a_dollar_in_its_name_loads(lammps_ready, ti_o_folder, tmp_path):
    folder = tmp_path / "my potentials $HOME"
    shutil.copytree(ti_o_folder, folder)
    structure = KINDS["triclinic"](["Ti", "O"])
    assert '"""' in input_lines(folder)[3]
    moved, original = (run_structures([structure], find_models(f))[0] for f in (folder, ti_o_folder))
    assert moved.energy == original.energy


def test_fix_halt_stops_the_run_when_the_committee_spread_passes_a_trust_level(lammps_ready, committee, tmp_path):
    potential, models, _ = committee
    structure = random_structure(["Ti", "O"], 24, np.diag([7.0, 6.5, 7.5]), [True] * 3, 9, min_distance=1.9)
    write_data_file(tmp_path / "start.data", structure, ["Ti", "O"])
    trust = 1.01 * potential.predict([structure], eval_forces=True)[0].force_std.max()  # passed once atoms move
    output = run_script(tmp_path, f"""units metal
atom_style atomic
read_data start.data
mass * 30.0
plugin load {plugin_path()}
pair_style aenet/core
pair_coeff * * {' '.join(models)} Ti O
compute dev all pair aenet/core
variable maxdev equal c_dev[1]
velocity all create 3000 4 loop geom
fix nve all nve
thermo_style custom step v_maxdev
thermo 1
timestep 0.001
fix stop all halt 1 v_maxdev > {trust} error continue
run 500
""")
    assert "Fix halt condition for fix-id stop met on step" in output
    step = int(output.split("met on step")[1].split()[0])
    assert 0 < step < 500
