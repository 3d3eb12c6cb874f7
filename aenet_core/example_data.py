"""A small labelled data set made with ASE's EMT potential: Cu-Au fcc cells, strained, substituted, rattled.

EMT is cheap and real (energies, forces and stresses are consistent), so the workflow's
default run needs no file from outside the repository.
"""
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

from aenet_core.structure import Structure


EXAMPLE_SIZE, EXAMPLE_SEED = 24, 0


def make_cuau_structures(n_structures: int = EXAMPLE_SIZE, seed: int = EXAMPLE_SEED) -> list:
    """``n_structures`` random Cu-Au alloy cells (4 to 32 atoms) with EMT energies, forces and stresses."""
    rng = np.random.default_rng(seed)
    structures = []
    for index in range(n_structures):
        atoms = bulk("Cu", "fcc", a=rng.uniform(3.65, 4.05), cubic=bool(rng.integers(2)))
        atoms = atoms.repeat(tuple(int(r) for r in rng.integers(1, 3, size=3)))
        gold = rng.random(len(atoms)) < rng.uniform(0.1, 0.6)
        atoms.set_chemical_symbols(np.where(gold, "Au", "Cu"))
        strain = np.eye(3) + rng.normal(scale=0.03, size=(3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.rattle(stdev=rng.uniform(0.02, 0.15), seed=int(rng.integers(2**31)))
        atoms.calc = EMT()
        structures.append(Structure(atoms.positions, atoms.get_chemical_symbols(),
                                    energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                    cell=atoms.cell.array, pbc=atoms.pbc, name=f"cuau-{index:03d}",
                                    stress=atoms.get_stress()))
    return structures
