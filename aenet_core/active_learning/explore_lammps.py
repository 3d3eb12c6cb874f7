"""Exploration molecular dynamics in LAMMPS, with the frames and summary of ``explore``.

``explore_lammps`` runs the committee's exported files through our plugin (pair style aenet/core, see
``aenet_core.lammps``): LAMMPS integrates on the committee's mean forces, prints the committee's spread at every
step and dumps a frame every ``interval`` steps; the frames are read back into the format
``aenet_core.active_learning.explore`` records.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
from ase import units

from aenet_core.active_learning.explore import record_frame, start_atoms, summary, thermalize
from aenet_core.active_learning.settings import ExploreSettings
from aenet_core.lammps import DEVIATION_COMPUTE, LammpsError, find_models, mass_lines, model_species, pair_lines, \
    run_lammps, write_data_file
from aenet_core.structure import Structure

PS = 1000 * units.fs  # one ps in ASE's time unit: LAMMPS's metal velocities are Å/ps
BAR_PER_GPA = 1e4
RANDOM_SEEDS = 900_000_000  # LAMMPS's random generators take seeds in [1, 900000000]
STEPS_FILE, FRAMES_FILE, LAST_FILE = "steps.txt", "frames.dump", "last.dump"
DUMP = "id xu yu zu vx vy vz d_force_std"  # unwrapped positions: continuous, like ASE's
# steps.txt's columns after the step (the cell: LAMMPS's lower-triangular box)
STEP_COLUMNS = ("pe", "max_force_std", "energy_std", "lx", "ly", "lz", "xy", "xz", "yz")


def explore_lammps(models, start, settings: ExploreSettings, calibration_factor=None, ranks: int = 1,
                   workdir=None) -> tuple[list, dict]:
    """``explore``'s trajectory run by LAMMPS: the committee exported at ``models`` (what
    ``aenet_core.lammps.find_models`` accepts: an export folder of ``member_XXX/`` folders), on ``ranks`` MPI
    ranks, in ``workdir`` (kept, with LAMMPS's input, log and dumps; default a temporary folder).

    Returns (frames, summary) in ``explore``'s format; ``calibration_factor`` gives ``energy_std_calibrated``.
    The start is ``explore``'s: the same velocities, drawn in Python from ``settings.seed``.  The ensembles
    (metal units) are nve: ``fix nve`` (velocity Verlet, as ASE's); nvt: ``fix nve`` and ``fix langevin`` (damp
    1/friction, its seed derived from ``settings.seed``; other random forces than ASE's Langevin); npt:
    ``fix npt ... iso`` (Nosé-Hoover thermostat and barostat, isotropic, with thermostat_time and barostat_time
    as Tdamp and Pdamp; ``compressibility`` is not used).  LAMMPS prints the spread of every step (the
    summary's statistics), dumps a frame every ``interval`` steps and halts at the first step above
    ``trust_hi`` (``fix halt``; step 0 is checked after a ``run 0``), whose frame is recorded too.  LAMMPS's
    errors raise ``LammpsError``.
    """
    if not isinstance(settings, ExploreSettings):
        raise TypeError(f"settings must be ExploreSettings; got {type(settings).__name__}")
    templates = find_models(models)
    if len(templates) < 2:
        raise LammpsError(f"{models}: exploration needs a committee; it holds one potential")
    elements = model_species(templates[0])
    atoms = start_atoms(start, settings.ensemble)
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if unknown:
        raise ValueError(f"the start has species {unknown} that the committee ({' '.join(elements)}) lacks")
    thermalize(atoms, settings.temperature, np.random.default_rng(settings.seed))
    with _folder(workdir) as folder:
        folder = Path(folder)
        rotation, boundary = write_data_file(folder / "start.data", Structure.from_ase(atoms), elements,
                                             atoms.get_velocities() * PS)
        (folder / "in.lammps").write_text(_script(templates, elements, boundary, settings))
        run_lammps(folder, ranks)
        return _results(folder, atoms, rotation, settings, calibration_factor)


def _folder(workdir):
    if workdir is None:
        return tempfile.TemporaryDirectory(prefix="aenet-explore-")
    Path(workdir).mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(workdir)


def _script(templates: list, elements: list, boundary: str, settings: ExploreSettings) -> str:
    deviation, trust = f"c_{DEVIATION_COMPUTE}", repr(settings.trust_hi)
    columns = " ".join(f"$({name}:%.17g)" for name in ("step", "pe", "v_maxdev", f"{deviation}[3]",
                                                        *STEP_COLUMNS[3:]))
    return "\n".join([
        "units metal", "atom_style atomic", f"boundary {boundary}", "read_data start.data", mass_lines(elements),
        *pair_lines(templates, elements),
        "fix fstd all property/atom d_force_std",
        f"variable maxdev equal {deviation}[1]",
        f"timestep {settings.timestep / 1000!r}",
        f"thermo_style custom step temp pe {deviation}[1]",
        f"thermo {settings.interval}",
        f"dump frames all custom {settings.interval} {FRAMES_FILE} {DUMP}",
        "dump_modify frames format float %.17g sort id",
        f'fix steps all print 1 "{columns}" file {STEPS_FILE} screen no',
        "# step 0 above trust_hi stops at once (fix halt looks from step 1 on)",
        "run 0 post no",
        f'if "$(v_maxdev:%.17g) > {trust}" then "jump SELF done"',
        *_ensemble(settings),
        f"fix halt all halt 1 v_maxdev > {trust} error continue",
        f"run {settings.steps}",
        "label done",
        f"write_dump all custom {LAST_FILE} {DUMP} modify format float %.17g sort id",
    ]) + "\n"


def _ensemble(settings: ExploreSettings) -> list:
    """The fixes that integrate ``settings.ensemble`` (times in ps, pressure in bar)."""
    temperature = repr(float(settings.temperature))
    if settings.ensemble == "nve":
        return ["fix integrate all nve"]
    if settings.ensemble == "nvt":
        seed = settings.seed % RANDOM_SEEDS + 1
        return ["fix integrate all nve",
                f"fix thermostat all langevin {temperature} {temperature} {1 / (settings.friction * 1000)!r} {seed}"]
    pressure = repr(settings.pressure * BAR_PER_GPA)
    return [f"fix integrate all npt temp {temperature} {temperature} {settings.thermostat_time / 1000!r} "
            f"iso {pressure} {pressure} {settings.barostat_time / 1000!r}"]


def _results(folder: Path, start, rotation, settings: ExploreSettings, calibration_factor) -> tuple[list, dict]:
    """The frames and summary of the run in ``folder``; ``start``: the thermalized start (its frame)."""
    steps = _read_steps(folder / STEPS_FILE)
    last = max(steps)
    stop_step = last if steps[last]["max_force_std"] > settings.trust_hi else None
    snapshots = _read_dump(folder / FRAMES_FILE)
    if stop_step is not None:  # the step above trust_hi, wherever it falls
        snapshots.update(_read_dump(folder / LAST_FILE))
    frames = [_frame(start, step, snapshots[step], steps[step], rotation, settings, calibration_factor)
              for step in sorted(snapshots) if step <= last]
    spreads = [steps[step]["max_force_std"] for step in sorted(steps)]
    return frames, summary(spreads, len(frames), stop_step, last, settings)


def _frame(start, step: int, table, values: dict, rotation, settings: ExploreSettings, calibration_factor):
    """A recorded frame from a dump's rows (``DUMP``) and a line of steps.txt, rotated back to ``start``'s frame."""
    frame = start.copy()
    if settings.ensemble == "npt":
        box = [values[name] for name in STEP_COLUMNS[3:]]
        lower = np.array([[box[0], 0, 0], [box[3], box[1], 0], [box[4], box[5], box[2]]])
        frame.set_cell(lower @ rotation.T)
    frame.positions = table[:, 1:4] @ rotation.T
    frame.set_momenta(frame.get_masses()[:, None] * (table[:, 4:7] @ rotation.T) / PS)
    return record_frame(frame, step, settings, calibration_factor, energy=values["pe"],
                        energy_std=values["energy_std"], max_force_std=values["max_force_std"],
                        force_std=table[:, 7].copy())


def _read_steps(path: Path) -> dict:
    """{step: {column: value}} of steps.txt (step 0, printed by both runs, once)."""
    rows = np.loadtxt(path, ndmin=2)
    return {int(row[0]): dict(zip(STEP_COLUMNS, row[1:])) for row in rows}


def _read_dump(path: Path) -> dict:
    """{step: the atoms' rows} of a LAMMPS dump sorted by id."""
    snapshots = {}
    for block in path.read_text().split("ITEM: TIMESTEP\n")[1:]:
        lines = block.splitlines()
        first = next(i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS")) + 1
        snapshots[int(lines[0])] = np.array([line.split() for line in lines[first:]], float)
    return snapshots
