"""Prediction: energies and forces of structures from one or several models that share a descriptor."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from aenet_core.data.batch import FeatureSource
from aenet_core.data.memory import InMemoryStructures


@dataclass
class PredictOut:
    """Predictions for a list of structures (energies in eV, forces in eV/Å).

    ``structure_paths`` names each structure: ``path#frame=N`` for one read from
    a file, else its name or ``structure_NNNNNN`` after its position.
    """

    coords: list
    atom_types: list
    total_energy: list
    cohesive_energy: list  # total energy minus the atomic reference energies (eV, not per atom)
    atom_energies: list  # physical per-atom energies: out / E_scaling + E_shift + E_atom
    forces: Optional[list]
    structure_paths: Optional[list] = None

    @property
    def paths(self) -> Optional[list]:
        return self.structure_paths

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


def predict_with_models(models, descriptor, structures, identifiers, eval_forces: bool, batch_size: int) -> list:
    """One PredictOut per model (all on one device and dtype, sharing ``descriptor``) for ``structures``:
    each batch is featurized once and every model evaluated on it."""
    device, dtype = next(models[0].parameters()).device, models[0].feature_mean.dtype
    totals, atom_energies, forces = ([[] for _ in models] for _ in range(3))
    for start in range(0, len(structures), batch_size):
        chunk = structures[start: start + batch_size]
        batch = FeatureSource(InMemoryStructures(chunk, descriptor)).batch(list(range(len(chunk))),
                                                                           lambda _: eval_forces).to(device, dtype)
        sizes = batch.n_atoms.tolist()
        for k, model in enumerate(models):
            with torch.set_grad_enabled(eval_forces):
                per_atom, f = model.atom_energies_and_forces(batch.features, batch.species_idx, batch.derivatives)
            totals[k] += model.sum_per_structure(per_atom, batch.batch, len(chunk)).detach().cpu().tolist()
            atom_energies[k] += [x.detach().cpu().numpy() for x in torch.split(per_atom, sizes)]
            if eval_forces:
                forces[k] += [x.detach().cpu().numpy() for x in torch.split(f, sizes)]
    outs = []
    for k, model in enumerate(models):
        references = model.atomic_energies.detach().cpu().numpy()
        cohesive = [total - sum(references[descriptor.species_to_idx[s]] for s in st.species)
                    for total, st in zip(totals[k], structures)]
        outs.append(PredictOut(coords=[s.positions for s in structures],
                               atom_types=[list(s.species) for s in structures], total_energy=totals[k],
                               cohesive_energy=cohesive, atom_energies=atom_energies[k],
                               forces=forces[k] if eval_forces else None, structure_paths=list(identifiers)))
    return outs
