"""ASE molecular dynamics speed of AenetCalculator on the 1,104-atom TiO2 cell.

    python bench/ase_md.py --data ../shared/data [--steps 20] [--threads 2] [--skins none 0 1.0]

The cell is TiO2/structure-001.xsf repeated 4x4x3; the potential is the Fortran-trained one in
reference/potentials/TiO2-fortran, alone and as a committee of five perturbed copies of it (the
members share one descriptor pass per step).  Each row runs ``--steps`` VelocityVerlet steps (1 fs,
Maxwell-Boltzmann momenta at 600 K, the same start for every row) after two untimed ones; the rows of
one model take their steps in turn, so that load from other processes falls on all of them alike.
Printed: atom-steps per second and seconds per step (mean over the timed steps, searches included),
the median step, the CPU seconds per step of this process (all threads; less sensitive to other load
than the wall time), the neighbour searches made in the timed steps and the final potential energy
(the same in every row of one model: the neighbour lists do not change the results).

Skins: ``none`` searches afresh at every evaluation with aenet_core's own search (the calculator's
behaviour before the Verlet list), ``0`` searches with vesin (if installed) whenever an atom moved, a
positive skin (Å) keeps a Verlet list.
"""
import argparse
import copy
import importlib.util
import time
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.io import read
from ase.md.verlet import VelocityVerlet

from aenet_core.allocator import keep_freed_memory
from aenet_core.calculator import AenetCalculator
from aenet_core.committee import TorchCommitteePotential
from aenet_core.potential import TorchANNPotential

WARM_UP = 2


def tio2_cell(data: Path):
    atoms = read(data / "TiO2" / "structure-001.xsf").repeat((4, 4, 3))
    rng = np.random.default_rng(0)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(atoms.get_masses()[:, None] * units.kB * 600))
    return atoms


def committee_of(potential, members: int, scale: float = 1e-3):
    """``members`` copies of ``potential`` whose weights are perturbed by relative noise ``scale``."""
    committee = TorchCommitteePotential(potential.arch, potential.descriptor)
    generator = torch.Generator().manual_seed(0)
    for _ in range(members):
        member = copy.deepcopy(potential)
        with torch.no_grad():
            for weight in member.model.networks.parameters():
                weight.mul_(1 + scale * torch.randn(weight.shape, generator=generator, dtype=weight.dtype))
        committee.members.append(member)
    return committee


def run(model, atoms, skins, steps: int) -> list:
    """One VelocityVerlet run per skin from the same start, stepped in turn so that each sees the same
    load on the machine; per skin, the seconds of each timed step, the CPU seconds of all of them, the
    searches made in them and the final potential energy."""
    runs = []
    for skin in skins:
        start = atoms.copy()
        start.calc = AenetCalculator(model, skin=skin)
        dynamics = VelocityVerlet(start, timestep=1 * units.fs)
        dynamics.run(WARM_UP)
        runs.append({"atoms": start, "dynamics": dynamics, "seconds": [], "cpu": 0.0,
                     "searches": _searches(start.calc)})
    for _ in range(steps):
        for entry in runs:
            started, cpu = time.perf_counter(), time.process_time()
            entry["dynamics"].run(1)
            entry["seconds"].append(time.perf_counter() - started)
            entry["cpu"] += time.process_time() - cpu
    for entry in runs:
        calc = entry["atoms"].calc
        entry["searches"] = "-" if calc.neighbors is None else _searches(calc) - entry["searches"]
        entry["energy"] = entry["atoms"].get_potential_energy()
    return runs


def _searches(calc) -> int:
    return 0 if calc.neighbors is None else calc.neighbors.builds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with TiO2/ and reference/potentials/")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (vesin uses every core)")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--skins", nargs="+", default=["none", "0", "1.0"], help="'none' or Å")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the command line does

    folder = args.data / "reference" / "potentials" / "TiO2-fortran"
    potential = TorchANNPotential.from_aenet_ascii({s: folder / f"{s}.nn.ascii" for s in ("Ti", "O")})
    atoms = tio2_cell(args.data)
    print(f"{len(atoms)} atoms, {args.steps} steps, torch threads {torch.get_num_threads()}, "
          f"vesin {'installed' if importlib.util.find_spec('vesin') else 'missing'}")
    print(f"{'model':<12} {'skin':>5} {'atom-steps/s':>13} {'s/step':>7} {'median':>7} {'CPU s/step':>10} "
          f"{'searches':>8} {'final E (eV)':>18}")
    skins = [None if skin == "none" else float(skin) for skin in args.skins]
    for name, model in (("1 potential", potential), (f"{args.members} members", committee_of(potential, args.members))):
        for skin, entry in zip(args.skins, run(model, atoms, skins, args.steps)):
            seconds = entry["seconds"]
            print(f"{name:<12} {skin:>5} {len(atoms) * len(seconds) / sum(seconds):>13.0f} {np.mean(seconds):>7.3f} "
                  f"{np.median(seconds):>7.3f} {entry['cpu'] / len(seconds):>10.3f} {entry['searches']!s:>8} "
                  f"{entry['energy']:>18.8f}")


if __name__ == "__main__":
    main()
