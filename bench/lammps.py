"""MD speed of the LAMMPS pair style aenet/core (our plugin): atom-steps per second, and NVE energy drift.

    python bench/lammps.py --data ../shared/data [--steps 200] [--nve-steps 2000] [--ranks 1 2]

The 1,104-atom TiO2 cell (structure-001 of TiO2/ repeated 4x4x3) with the Fortran-trained potential of
reference/potentials/TiO2-fortran (56 features, 56-5-5-1), one model and a 5-member committee (the model
and four copies with perturbed weights), on 1 and 2 MPI ranks; and a cell of about 10,000 atoms
(repeated 8x8x7) for one model; beside them the ASE calculator's figures on the 1,104-atom cell
(bench/ase_md.py, VelocityVerlet, skin 1 Å, 2 torch threads).  The anchor on this kind of machine: LAMMPS with aenet's Fortran library
runs this potential on this cell at 4,200-4,500 atom-steps/s on one core.  ``--nve-steps`` also runs NVE
(1 fs, 300 K start) on the 1,104-atom cell and prints the drift of the total energy.
"""
import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from ase_md import committee_of, run, tio2_cell

from aenet_core.allocator import keep_freed_memory
from aenet_core.io import read_structures
from aenet_core.lammps import write_data_file, executables, find_models, plugin_path
from aenet_core.potential import TorchANNPotential
from aenet_core.structure import Structure

SPECIES = ["Ti", "O"]
MASSES = {"Ti": 47.867, "O": 15.999}


def supercell(structure: Structure, repeat) -> Structure:
    return Structure.from_ase(structure.without_labels().to_ase().repeat(repeat))


def committee_models(fortran: Path, folder: Path, size: int) -> list:
    """The Fortran model and ``size - 1`` copies with weights perturbed by 1 % (exported to ``folder``)."""
    models = [str(fortran / "{element}.nn.ascii")]
    potential = TorchANNPotential.from_aenet_ascii({s: fortran / f"{s}.nn.ascii" for s in SPECIES})
    torch.manual_seed(0)
    for k in range(1, size):
        copy = TorchANNPotential.from_aenet_ascii({s: fortran / f"{s}.nn.ascii" for s in SPECIES})
        with torch.no_grad():
            for mine, original in zip(copy.model.networks.parameters(), potential.model.networks.parameters()):
                mine.copy_(original * (1 + 0.01 * torch.randn_like(original)))
        copy.to_aenet_ascii(folder / f"member_{k}")
        models += find_models(folder / f"member_{k}")
    return models


def lammps_run(folder: Path, data: str, models: list, steps: int, ranks: int, thermo: int = 0) -> str:
    lmp, mpirun = executables()
    masses = "\n".join(f"mass {t + 1} {MASSES[s]}" for t, s in enumerate(SPECIES))
    script = f"""units metal
atom_style atomic
boundary p p p
read_data {data}
{masses}
plugin load {plugin_path()}
pair_style aenet/core
pair_coeff * * {' '.join(models)} {' '.join(SPECIES)}
velocity all create 300 12345 loop geom
fix nve all nve
timestep 0.001
thermo_style custom step pe ke etotal
thermo {thermo or steps}
thermo_modify format float %.10f
run {steps}
"""
    (folder / "in.bench").write_text(script)
    command = [lmp, "-in", "in.bench", "-log", "none", "-nocite"]
    if ranks > 1:
        command = [mpirun, "-np", str(ranks), *command]
    finished = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if finished.returncode:
        raise SystemExit(f"LAMMPS failed:\n{finished.stdout[-3000:]}{finished.stderr}")
    return finished.stdout


def atom_steps_per_second(output: str) -> float:
    seconds, ranks, steps, atoms = re.search(r"Loop time of ([\d.e+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms",
                                             output).groups()
    return int(steps) * int(atoms) / float(seconds)


def energy_drift(output: str) -> tuple:
    """(slope of a line fitted to the total energy over the run in eV/atom/ps, the RMS of the total energy
    about that line and its largest change from the start, eV/atom) from the thermo lines (1 fs steps)."""
    block = output.split("Step")[1].split("Loop time")[0].splitlines()[1:]
    rows = np.array([line.split() for line in block if line.strip()], float)
    atoms = int(re.search(r"with (\d+) atoms", output).group(1))
    time_ps, total = rows[:, 0] * 1e-3, rows[:, 3] / atoms
    slope, intercept = np.polyfit(time_ps, total, 1)
    spread = np.sqrt(np.mean((total - slope * time_ps - intercept) ** 2))
    return slope, spread, np.abs(total - total[0]).max()


def ase_figures(data: Path, steps: int) -> None:
    """The ASE calculator on the same cell and potential (one model, a 5-member committee)."""
    torch.set_num_threads(2)
    keep_freed_memory()  # as bench/ase_md.py and the command line do
    fortran = data / "reference" / "potentials" / "TiO2-fortran"
    potential = TorchANNPotential.from_aenet_ascii({s: fortran / f"{s}.nn.ascii" for s in SPECIES})
    atoms = tio2_cell(data)
    for label, model in (("ASE calculator, one model", potential), ("ASE calculator, committee of 5",
                                                                     committee_of(potential, 5))):
        seconds = run(model, atoms, [1.0], steps)[0]["seconds"]
        print(f"{label:<36} {'2 thr':>5} {len(atoms) * len(seconds) / sum(seconds):>13,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", type=Path, help="the shared data folder")
    parser.add_argument("--steps", type=int, default=200, help="MD steps per timing")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="MPI ranks to time")
    parser.add_argument("--nve-steps", type=int, default=0, help="also run NVE this long and print the drift")
    parser.add_argument("--large", action="store_true", help="also time the ~10,000-atom cell")
    parser.add_argument("--ase-steps", type=int, default=10, help="ASE calculator steps per timing (0: none)")
    args = parser.parse_args()
    fortran = args.data.resolve() / "reference" / "potentials" / "TiO2-fortran"
    cell = read_structures(args.data / "TiO2" / "structure-001.xsf")[0]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        write_data_file(folder / "tio2.data", supercell(cell, (4, 4, 3)), SPECIES)
        models = committee_models(fortran, folder, 5)
        print(f"LAMMPS pair style aenet/core, {args.steps} MD steps, TiO2 1,104 atoms, Fortran-trained potential "
              f"(56 features, 56-5-5-1); plugin {plugin_path()}")
        print(f"{'case':<36} {'ranks':>5} {'atom-steps/s':>13} {'per rank':>10}")
        single = {}
        for ranks in args.ranks:
            for label, chosen in (("one model", models[:1]), ("committee of 5", models)):
                rate = atom_steps_per_second(lammps_run(folder, "tio2.data", chosen, args.steps, ranks))
                single.setdefault(ranks, rate)
                print(f"{label:<36} {ranks:>5} {rate:>13,.0f} {rate / ranks:>10,.0f}"
                      + (f"   ({single[ranks] / rate:.2f}x one model's time)" if label != "one model" else ""))
        if args.large:
            write_data_file(folder / "large.data", supercell(cell, (8, 8, 7)), SPECIES)
            for ranks in args.ranks:
                rate = atom_steps_per_second(lammps_run(folder, "large.data", models[:1], args.steps // 4, ranks))
                print(f"{'one model, 10,304 atoms':<36} {ranks:>5} {rate:>13,.0f} {rate / ranks:>10,.0f}")
        if args.ase_steps:
            ase_figures(args.data, args.ase_steps)
        if args.nve_steps:
            output = lammps_run(folder, "tio2.data", models[:1], args.nve_steps, 1, thermo=10)
            slope, spread, excursion = energy_drift(output)
            print(f"NVE {args.nve_steps} steps of 1 fs from 300 K, 1,104 atoms: total energy drift {slope:.2e} "
                  f"eV/atom/ps (fitted line), RMS about it {spread:.2e} eV/atom, largest change from the start "
                  f"{excursion:.2e} eV/atom")


if __name__ == "__main__":
    sys.exit(main())
