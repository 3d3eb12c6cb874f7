"""Prediction: energies, forces and stresses of structures from one or several models that share a descriptor."""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Optional

import torch

from aenet_core.data.batch import FeatureSource
from aenet_core.data.memory import InMemoryStructures

TIMING_KEYS = ("featurization", "energy_eval", "force_eval", "total")


@dataclass
class PredictOut:
    """Predictions for a list of structures (energies in eV, forces in eV/Å, stresses in eV/Å³).

    ``stress`` holds, per structure, the 3x3 stress (1/V) dE/d(strain), ASE's sign convention
    (``atoms.get_stress(voigt=False)``), or None for a structure that is not periodic in 3D.

    ``structure_paths`` names each structure: ``path#frame=N`` for one read from
    a file, else its name or ``structure_NNNNNN`` after its position. ``paths``
    (aenet-python's) names where each came from: the file, without the frame.

    ``timing`` (when asked for) holds per structure, in seconds, its share of its batch's
    featurization (``featurization``), of the model pass (``energy_eval``; forces and stresses come
    from the same pass, so ``force_eval`` is NaN when they were computed, else 0.0) and of both
    (``total``).
    """

    coords: list
    atom_types: list
    total_energy: list
    cohesive_energy: list  # total energy minus the atomic reference energies (eV, not per atom)
    atom_energies: list  # physical per-atom energies: out / E_scaling + E_shift + E_atom
    forces: Optional[list]
    structure_paths: Optional[list] = None
    stress: Optional[list] = None
    timing: Optional[dict] = None

    @property
    def paths(self) -> Optional[list]:
        if self.structure_paths is None:
            return None
        return [re.sub(r"#frame=\d+$", "", name) for name in self.structure_paths]

    @property
    def num_structures(self) -> int:
        return len(self.total_energy)

    def num_atoms(self, i: int) -> int:
        return len(self.atom_types[i])

    @property
    def total_energy_per_atom(self) -> list:
        return [e / len(t) for e, t in zip(self.total_energy, self.atom_types)]

    @property
    def cohesive_energy_per_atom(self) -> list:
        return [e / len(t) for e, t in zip(self.cohesive_energy, self.atom_types)]


def evaluate_model(model, features, species_idx, derivatives, batch, n_structures: int, with_virials: bool):
    """(per-atom energies, forces or None, virials or None) of one model on featurized structures: forces when
    ``derivatives`` are given, the structures' virials (eV) too when ``with_virials``."""
    with torch.set_grad_enabled(derivatives is not None):
        if with_virials:
            return model.atom_energies_forces_virials(features, species_idx, derivatives, batch, n_structures)
        return (*model.atom_energies_and_forces(features, species_idx, derivatives), None)


def predict_with_models(models, descriptor, structures, identifiers, eval_forces: bool, batch_size: int,
                        eval_stress: bool = False, track_timing: bool = False) -> list:
    """One PredictOut per model (all on one device and dtype, sharing ``descriptor``) for ``structures``:
    each batch is featurized once and every model evaluated on it.  Stresses come from the same
    sparse derivatives as the forces; ``track_timing`` fills ``timing``."""
    device, dtype = next(models[0].parameters()).device, models[0].feature_mean.dtype
    derivatives = eval_forces or eval_stress
    totals, atom_energies, forces, stresses = ([[] for _ in models] for _ in range(4))
    timings = [{key: [] for key in TIMING_KEYS} for _ in models]
    for start in range(0, len(structures), batch_size):
        chunk = structures[start: start + batch_size]
        started = time.perf_counter()
        batch = FeatureSource(InMemoryStructures(chunk, descriptor)).batch(list(range(len(chunk))),
                                                                           lambda _: derivatives).to(device, dtype)
        featurization = time.perf_counter() - started
        sizes = batch.n_atoms.tolist()
        for k, model in enumerate(models):
            evaluated = time.perf_counter()
            per_atom, f, virials = evaluate_model(model, batch.features, batch.species_idx, batch.derivatives,
                                                  batch.batch, len(chunk), eval_stress)
            if eval_stress:
                stresses[k] += [None if s.volume is None else virial / s.volume  # a stress needs a volume
                                for virial, s in zip(virials.detach().cpu().numpy(), chunk)]
            totals[k] += model.sum_per_structure(per_atom, batch.batch, len(chunk)).detach().cpu().tolist()
            atom_energies[k] += [x.detach().cpu().numpy() for x in torch.split(per_atom, sizes)]
            if eval_forces:
                forces[k] += [x.detach().cpu().numpy() for x in torch.split(f, sizes)]
            _add_timing(timings[k], len(chunk), featurization, time.perf_counter() - evaluated, derivatives)
    outs = []
    for k, model in enumerate(models):
        references = model.atomic_energies.detach().cpu().numpy()
        cohesive = [total - sum(references[descriptor.species_to_idx[s]] for s in st.species)
                    for total, st in zip(totals[k], structures)]
        outs.append(PredictOut(coords=[s.positions for s in structures],
                               atom_types=[list(s.species) for s in structures], total_energy=totals[k],
                               cohesive_energy=cohesive, atom_energies=atom_energies[k],
                               forces=forces[k] if eval_forces else None, structure_paths=list(identifiers),
                               stress=stresses[k] if eval_stress else None,
                               timing=timings[k] if track_timing else None))
    return outs


def _add_timing(timing: dict, n: int, featurization: float, evaluation: float, derivatives: bool) -> None:
    """Add ``n`` structures' equal shares of their batch's featurization and model-pass seconds."""
    shares = {"featurization": featurization / n, "energy_eval": evaluation / n,
              "force_eval": math.nan if derivatives else 0.0, "total": (featurization + evaluation) / n}
    for key, value in shares.items():
        timing[key] += [value] * n
