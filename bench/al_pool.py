"""The active-learning bench's data and models: EMT Cu-Au frames, featurized once, and committees on them.

Frames come from EMT Langevin MD of small Cu-Au cells (8-32 atoms).  ``Featurized`` keeps every frame's
features and descriptor derivatives, so a committee trains on a subset and predicts the pool without
featurizing again.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import tempfile

import numpy as np
import torch
from ase import Atoms, units
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin

from aenet_core.active_learning.explore import thermalize
from aenet_core.calculator import AenetCalculator
from aenet_core.committee import TorchCommitteeConfig, TorchCommitteePotential
from aenet_core.data.batch import FeatureSource
from aenet_core.data.memory import InMemoryStructures
from aenet_core.derivatives import LocalDerivatives
from aenet_core.descriptor import BatchedFeaturizer, structure_batch
from aenet_core.model.predict import evaluate_model
from aenet_core.split import Split
from aenet_core.structure import Structure
from aenet_core.torch_featurize import ChebyshevDescriptor
from aenet_core.torch_training import Adam, TorchTrainingConfig

SPECIES = ("Cu", "Au")
LATTICE = {"Cu": 3.61, "Au": 4.08}  # EMT-ish fcc lattice constants; Vegard's law in between
REPEATS = [(2, 1, 1), (3, 1, 1), (2, 2, 1), (3, 2, 1), (2, 2, 2)]  # 8 to 32 atoms
REPEAT_WEIGHTS = [0.25, 0.25, 0.25, 0.15, 0.10]
TIMESTEP_FS, FRICTION = 2.0, 0.02  # Langevin; friction in 1/fs
ARCH = {s: [(10, "tanh"), (10, "tanh")] for s in SPECIES}


def descriptor() -> ChebyshevDescriptor:
    return ChebyshevDescriptor(list(SPECIES), 6, 4.0, 3, 3.0, min_cutoff=0.5)


def isolated_atom_energies() -> dict:
    energies = {}
    for symbol in SPECIES:
        atom = Atoms(symbol, cell=[12, 12, 12], pbc=False)
        atom.calc = EMT()
        energies[symbol] = float(atom.get_potential_energy())
    return energies


# -- frames ------------------------------------------------------------------------------------------------

def alloy(rng, au_fraction: float, repeat=None, strain: float = 0.02) -> Atoms:
    """A random fcc Cu-Au cell at Vegard's lattice constant, its cell strained by ``strain`` (std)."""
    repeat = repeat or REPEATS[rng.choice(len(REPEATS), p=REPEAT_WEIGHTS)]
    atoms = bulk("Cu", "fcc", a=LATTICE["Cu"], cubic=True).repeat(repeat)
    return _decorate(atoms, rng, au_fraction, strain)


def _decorate(atoms: Atoms, rng, au_fraction: float, strain: float) -> Atoms:
    """Gold on a random ``au_fraction`` of the sites of a Cu lattice, scaled to Vegard's lattice constant,
    strained."""
    n_gold = int(round(au_fraction * len(atoms)))
    symbols = np.array(["Cu"] * len(atoms))
    symbols[rng.choice(len(atoms), n_gold, replace=False)] = "Au"
    atoms.set_chemical_symbols(symbols)
    x = n_gold / len(atoms)
    a = (1 - x) * LATTICE["Cu"] + x * LATTICE["Au"]
    atoms.set_cell(atoms.cell.array * (a / LATTICE["Cu"]) @ (np.eye(3) + rng.normal(scale=strain, size=(3, 3))), scale_atoms=True)
    return atoms


def with_vacancies(atoms: Atoms, rng, n: int) -> Atoms:
    del atoms[sorted(rng.choice(len(atoms), n, replace=False).tolist(), reverse=True)]
    return atoms


def slab100(rng, au_fraction: float) -> Atoms:
    """A (100) slab, 4 layers thick, 2 x 1 or 2 x 2 conventional cells wide, with 6 Å of vacuum."""
    atoms = alloy(rng, au_fraction, repeat=[(2, 1, 2), (2, 2, 2)][rng.integers(2)], strain=0.01)
    atoms.center(vacuum=3.0, axis=2)
    return atoms


def slab111(rng, au_fraction: float) -> Atoms:
    """A (111) slab of 2 x 2 x 4 atoms, 6 Å of vacuum (the pool has none)."""
    atoms = fcc111("Cu", size=(2, 2, 4), a=LATTICE["Cu"], vacuum=3.0, orthogonal=True, periodic=True)
    return _decorate(atoms, rng, au_fraction, strain=0.01)


def md_frames(atoms: Atoms, temperature: float, rng, n_frames: int, interval: int, burn_in: int = 20,
              friction: float = FRICTION) -> list:
    """EMT Langevin MD of ``atoms`` (``friction`` in 1/fs): a labelled Structure every ``interval`` steps after
    ``burn_in``."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    thermalize(atoms, temperature, rng)
    dynamics = Langevin(atoms, TIMESTEP_FS * units.fs, temperature_K=temperature, friction=friction / units.fs,
                        fixcm=False, rng=rng)
    dynamics.run(burn_in)
    frames = []
    for _ in range(n_frames):
        dynamics.run(interval)
        frames.append(labelled(atoms))
    return frames


def labelled(atoms: Atoms, name: str = "") -> Structure:
    """An EMT-labelled Structure of ``atoms`` (whose calculator is EMT)."""
    return Structure(atoms.positions.copy(), atoms.get_chemical_symbols(), energy=atoms.get_potential_energy(),
                     forces=atoms.get_forces(), cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy(), name=name)


POOL_KINDS = ("bulk", "strained", "vacancy", "surface100")


def label(frame: Atoms) -> Structure:
    """An EMT-labelled Structure of ``frame`` (e.g. a frame of committee MD)."""
    atoms = frame.copy()
    atoms.calc = EMT()
    return labelled(atoms)


def pool_trajectory(rng) -> tuple[Atoms, float, str]:
    """A start, temperature and kind of the pool's mix: bulk 75 %, strained 13 %, vacancy 6 %, surface 6 %."""
    kind = POOL_KINDS[rng.choice(4, p=[0.75, 0.13, 0.06, 0.06])]
    x, temperature = rng.uniform(0.0, 0.5), float(rng.choice([300, 600, 900, 1200]))
    if kind == "bulk":
        atoms = alloy(rng, x)
    elif kind == "strained":
        atoms = alloy(rng, x, strain=0.05)
        atoms.set_cell(atoms.cell.array * rng.uniform(0.96, 1.04), scale_atoms=True)
    elif kind == "vacancy":
        atoms = with_vacancies(alloy(rng, x, repeat=REPEATS[2 + rng.integers(3)]), rng, 1)
    else:
        atoms = slab100(rng, x)
    return atoms, temperature, kind


def make_pool(n_trajectories: int, frames_per_trajectory: int, seed: int, interval: int = 10) -> tuple[list, list]:
    """(frames, per frame (kind, temperature)) of ``n_trajectories`` EMT trajectories of the pool's mix."""
    rng = np.random.default_rng(seed)
    frames, origins = [], []
    for t in range(n_trajectories):
        start, temperature, kind = pool_trajectory(rng)
        for i, frame in enumerate(md_frames(start, temperature, rng, frames_per_trajectory, interval)):
            frame.name = f"pool-{t:04d}-{i:02d}"
            frames.append(frame)
            origins.append((kind, temperature))
    return frames, origins


def extrapolative_sets(n_trajectories: int, n_frames: int, seed: int) -> dict:
    """Frames outside the pool: hotter (1600 K), divacancies, (111) surfaces, Au-rich (75-100 % Au)."""
    rng = np.random.default_rng(seed)
    makers = {"hot": lambda: (alloy(rng, rng.uniform(0, 0.5)), 1600.0),
              "divacancy": lambda: (with_vacancies(alloy(rng, rng.uniform(0, 0.5), repeat=REPEATS[2 + rng.integers(3)]),
                                                   rng, 2), 900.0),
              "surface111": lambda: (slab111(rng, rng.uniform(0, 0.5)), 900.0),
              "Au-rich": lambda: (alloy(rng, rng.uniform(0.75, 1.0)), float(rng.choice([300, 600, 900])))}
    return {name: [frame for _ in range(n_trajectories) for frame in md_frames(*make(), rng, n_frames, 20)]
            for name, make in makers.items()}


# -- features, training, prediction ------------------------------------------------------------------------

class Featurized(InMemoryStructures):
    """Labelled structures with their features and descriptor derivatives computed once (``StructureSource``)."""

    def __init__(self, structures, descriptor, atomic_energies, pieces=None, batch_size: int = 64):
        super().__init__(structures, descriptor, atomic_energies)
        if pieces is None:
            featurizer, pieces = BatchedFeaturizer(descriptor), []
            for start in range(0, len(self.structures), batch_size):
                chunk = self.structures[start: start + batch_size]
                features, _, derivatives = featurizer.with_derivatives(*structure_batch(chunk))
                sizes = [s.n_atoms for s in chunk]
                pieces += list(zip(torch.split(features, sizes), derivatives.split(sizes)))
        self.pieces = pieces

    def subset(self, indices) -> Featurized:
        return Featurized([self.structures[i] for i in indices], self.descriptor, self.atomic_energies,
                          [self.pieces[i] for i in indices])

    def plus(self, other: Featurized) -> Featurized:
        return Featurized(self.structures + other.structures, self.descriptor, self.atomic_energies,
                          self.pieces + other.pieces)

    def stored_features(self, indices):
        return torch.cat([self.pieces[i][0] for i in indices])

    def stored_derivatives(self, indices):
        return self.stored_features(indices), LocalDerivatives.concatenate([self.pieces[i][1] for i in indices])


def training_config(epochs: int) -> TorchTrainingConfig:
    return TorchTrainingConfig(iterations=epochs, method=Adam(mu=0.01, batchsize=8), testpercent=0, force_weight=0.5,
                               checkpoint_dir=None, save_best=False, checkpoint_interval=0, show_progress=False)


def train_committee(data: Featurized, members: int, base_seed: int, epochs: int) -> TorchCommitteePotential:
    """A committee of ``members`` trained on all of ``data`` (seeds ``base_seed + i``), in a scratch folder."""
    committee = TorchCommitteePotential(ARCH, data.descriptor)
    split = Split(list(range(len(data))), [], None, 0.0, len(data), data.content_sha256)
    folder = tempfile.mkdtemp(prefix="al-bench-")
    try:  # members print advice when they fit weakly, which a small training set does by design
        with contextlib.redirect_stderr(io.StringIO()):
                committee.train(dataset=data, split=split, config=training_config(epochs),
                            committee_config=TorchCommitteeConfig(num_members=members, base_seed=base_seed,
                                                                  output_dir=folder))
    finally:
        shutil.rmtree(folder)
    return committee


def predict(committee: TorchCommitteePotential, data: Featurized, indices=None, batch_size: int = 128) -> tuple:
    """Every member's total energies (M, B) and forces (M, sum N, 3) on ``data``'s ``indices``, from the
    stored features."""
    indices = list(range(len(data))) if indices is None else list(indices)
    models = [member.model for member in committee.members]
    device, dtype = next(models[0].parameters()).device, models[0].feature_mean.dtype
    source, energies, forces = FeatureSource(data), [], []
    for start in range(0, len(indices), batch_size):
        chunk = indices[start: start + batch_size]
        batch = source.batch(chunk, lambda _: True).to(device, dtype)
        outputs = [evaluate_model(m, batch.features, batch.species_idx, batch.derivatives, batch.batch, len(chunk),
                                  False) for m in models]
        energies.append(np.stack([m.sum_per_structure(e, batch.batch, len(chunk)).detach().numpy()
                                  for m, (e, _, _) in zip(models, outputs)]))
        forces.append(np.stack([f.detach().numpy() for _, f, _ in outputs]))
    return np.concatenate(energies, axis=1), np.concatenate(forces, axis=1)


def max_force_spread(forces: np.ndarray, atom_counts) -> np.ndarray:
    """Per structure the largest per-atom force spread: the norm over x, y, z of the members' std."""
    per_atom = np.linalg.norm(forces.std(axis=0), axis=1)
    return np.array([block.max() for block in np.split(per_atom, np.cumsum(atom_counts)[:-1])])


# -- MD stability ------------------------------------------------------------------------------------------

def md_stable(committee, start: Structure, temperature: float, steps: int, check_every: int, seed: int,
              min_distance: float, max_force_error: float) -> bool:
    """Whether NVT MD on the committee's mean forces stays physical for ``steps`` steps: every
    ``check_every`` steps no two atoms closer than ``min_distance`` (Å) and no atom's force more than
    ``max_force_error`` (eV/Å) from EMT's."""
    atoms = start.without_labels().to_ase()
    atoms.calc = AenetCalculator(committee)
    rng = np.random.default_rng(seed)
    thermalize(atoms, temperature, rng)
    dynamics = Langevin(atoms, TIMESTEP_FS * units.fs, temperature_K=temperature, friction=FRICTION / units.fs,
                        fixcm=False, rng=rng)
    for _ in range(steps // check_every):
        dynamics.run(check_every)
        distances = atoms.get_all_distances(mic=True) + np.eye(len(atoms)) * 1e9
        if distances.min() < min_distance:
            return False
        reference = atoms.copy()
        reference.calc = EMT()
        if np.linalg.norm(atoms.get_forces() - reference.get_forces(), axis=1).max() > max_force_error:
            return False
    return True
