"""An ASE calculator for one trained ``TorchANNPotential`` or a ``TorchCommitteePotential``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from aenet_core.committee import METADATA_FILE, TorchCommitteePotential
from aenet_core.potential import TorchANNPotential
from aenet_core.structure import Structure

COMMITTEE_PROPERTIES = ["energy_std", "energy_std_calibrated", "member_energies", "forces_std",
                        "force_uncertainty"]
# Properties that need the descriptor derivatives, the expensive part of a force evaluation.
FORCE_PROPERTIES = {"forces", "forces_std", "force_uncertainty"}


class AenetCalculator(Calculator):
    """ASE calculator for an aenet_core potential or committee.

    ``model`` is a ``TorchANNPotential``, a ``TorchCommitteePotential`` or a path: a
    model file (``model.pt``) loads one potential, a committee directory or its
    ``committee_metadata.json`` loads a committee.  ``device`` applies to loading
    from a path.

    Results (eV, eV/Å): ``energy`` and ``free_energy`` (the same value), ``energies``
    (per-atom energies, summing to ``energy``) and ``forces``.  A committee gives the
    mean over its members, and also:

    - ``energy_std``: population standard deviation of the members' energies;
    - ``member_energies``: each member's energy, shape (members,);
    - ``forces_std``: per atom and direction, shape (N, 3);
    - ``force_uncertainty``: per atom, the mean of ``forces_std`` over x, y, z;
    - ``energy_std_calibrated``: ``calibration_factor * energy_std``, only when the
      committee has a calibration factor.

    Read them with ``calc.get_property("energy_std", atoms)`` or
    ``atoms.calc.results["energy_std"]``.

    Forces are evaluated only when a force property is requested, because they need
    the descriptor derivatives; that evaluation also yields every energy property, so
    the usual ``get_forces()`` followed by ``get_potential_energy()`` (MD, optimizers)
    runs the model once.  An energy-only request skips the derivatives.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces"]

    def __init__(self, model, device=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, (str, Path)):
            path = Path(model)
            if path.is_dir() or path.name == METADATA_FILE:
                model = TorchCommitteePotential.from_directory(path, device=device)
            else:
                model = TorchANNPotential.from_file(path, device=device)
        if not isinstance(model, (TorchANNPotential, TorchCommitteePotential)):
            raise TypeError(f"model must be a TorchANNPotential, a TorchCommitteePotential or a path; "
                            f"got {type(model).__name__}")
        self.model = model
        self.is_committee = isinstance(model, TorchCommitteePotential)
        if self.is_committee:
            # ASE's get_property() refuses names outside implemented_properties.
            self.implemented_properties = AenetCalculator.implemented_properties + COMMITTEE_PROPERTIES

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        species = self.model.descriptor.species
        unknown = sorted(set(self.atoms.get_chemical_symbols()) - set(species))
        if unknown:
            raise ValueError(f"the model has no network for species {unknown}; it knows {list(species)}")
        eval_forces = bool(FORCE_PROPERTIES.intersection(properties))
        # self.atoms is ASE's calculator-free copy, so no stored label leaks into the structure.
        structure = Structure.from_ase(self.atoms)
        if self.is_committee:
            self.results = self._committee_results(structure, eval_forces)
        else:
            out = self.model.predict([structure], eval_forces=eval_forces)
            self.results = {"energy": out.total_energy[0], "energies": out.atom_energies[0]}
            if eval_forces:
                self.results["forces"] = out.forces[0]
        self.results["free_energy"] = self.results["energy"]

    def _committee_results(self, structure, eval_forces) -> dict:
        prediction = self.model.predict([structure], eval_forces=eval_forces)
        result = prediction[0]
        results = {"energy": result.energy, "energy_std": result.energy_std,
                   "member_energies": result.member_energies,
                   "energies": np.mean([out.atom_energies[0] for out in prediction.member_outputs], axis=0)}
        if prediction.calibration_factor is not None:
            results["energy_std_calibrated"] = prediction.calibration_factor * result.energy_std
        if eval_forces:
            results.update(forces=result.forces, forces_std=result.forces_std,
                           force_uncertainty=result.force_uncertainty)
        return results
