"""An ASE calculator for one trained ``TorchANNPotential`` or a ``TorchCommitteePotential``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from aenet_core.committee import METADATA_FILE, TorchCommitteePotential
from aenet_core.committee.results import legacy_force_uncertainty, warn_renamed
from aenet_core.potential import TorchANNPotential
from aenet_core.structure import Structure

COMMITTEE_PROPERTIES = ["energy_std", "energy_std_calibrated", "member_energies", "forces_std", "force_std",
                        "max_force_std", "force_uncertainty", "stress_std"]
# Properties that need the descriptor derivatives, the expensive part of a force evaluation.
DERIVATIVE_PROPERTIES = {"forces", "forces_std", "force_std", "max_force_std", "force_uncertainty", "stress",
                         "stress_std"}
DEPRECATED = "force_uncertainty"  # aenet-python's per-atom mean of forces_std over x, y, z; use force_std


class _Results(dict):
    """ASE results that warn when the deprecated ``force_uncertainty`` is read."""

    def __getitem__(self, key):
        if key == DEPRECATED:
            warn_renamed(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key == DEPRECATED:
            warn_renamed(key)
        return super().get(key, default)


class AenetCalculator(Calculator):
    """ASE calculator for an aenet_core potential or committee.

    ``model`` is a ``TorchANNPotential``, a ``TorchCommitteePotential`` or a path: a
    model file (``model.pt``) loads one potential, a committee directory or its
    ``committee_metadata.json`` loads a committee.  ``device`` applies to loading
    from a path.

    Results (eV, eV/Å, eV/Å³): ``energy`` and ``free_energy`` (the same value), ``energies``
    (per-atom energies, summing to ``energy``), ``forces`` and, for a structure periodic
    in 3D, ``stress`` (Voigt order xx, yy, zz, yz, xz, xy; (1/V) dE/d(strain), so that
    ``atoms.get_stress()``, cell filters and NPT dynamics work).  A committee gives the
    mean over its members, and also:

    - ``energy_std``: population standard deviation of the members' energies;
    - ``member_energies``: each member's energy, shape (members,);
    - ``forces_std``: the members' population std per atom and direction, shape (N, 3);
    - ``force_std``: per atom, the norm of ``forces_std`` over x, y, z (the square root of the
      summed variances), shape (N,), the same as the committee predictions' ``force_std``;
    - ``max_force_std``: its maximum over the atoms (a float; DP-GEN's force model deviation);
    - ``force_uncertainty``: deprecated (a DeprecationWarning when read), the mean of
      ``forces_std`` over x, y, z;
    - ``stress_std``: the members' stress spread, per Voigt component;
    - ``energy_std_calibrated``: ``calibration_factor * energy_std``, only when the
      committee has a calibration factor.

    Read them with ``calc.get_property("energy_std", atoms)`` or
    ``atoms.calc.results["energy_std"]``.

    Forces and stresses are evaluated only when one of them is requested, because they
    need the descriptor derivatives; that evaluation yields every energy, force and
    stress property, so the usual ``get_forces()``, ``get_stress()`` and
    ``get_potential_energy()`` of MD and optimizers run the model once.  An
    energy-only request skips the derivatives.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

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

    def get_property(self, name, atoms=None, allow_calculation=True):
        """ASE's ``get_property``; the deprecated ``force_uncertainty`` warns at the caller's line."""
        if name != DEPRECATED:
            return super().get_property(name, atoms, allow_calculation)
        warn_renamed(name)
        return legacy_force_uncertainty(super().get_property("forces_std", atoms, allow_calculation))

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        species = self.model.descriptor.species
        unknown = sorted(set(self.atoms.get_chemical_symbols()) - set(species))
        if unknown:
            raise ValueError(f"the model has no network for species {unknown}; it knows {list(species)}")
        derivatives = bool(DERIVATIVE_PROPERTIES.intersection(properties))
        periodic = bool(self.atoms.pbc.all())
        if {"stress", "stress_std"}.intersection(properties) and not periodic:
            raise PropertyNotImplementedError(f"stress needs a structure periodic in 3D; this one has pbc "
                                              f"{self.atoms.pbc.tolist()}")
        # self.atoms is ASE's calculator-free copy, so no stored label leaks into the structure.
        structure = Structure.from_ase(self.atoms)
        stress = derivatives and periodic
        if self.is_committee:
            self.results = self._committee_results(structure, derivatives, stress)
        else:
            out = self.model.predict([structure], eval_forces=derivatives, eval_stress=stress)
            self.results = {"energy": out.total_energy[0], "energies": out.atom_energies[0]}
            if derivatives:
                self.results["forces"] = out.forces[0]
            if stress:
                self.results["stress"] = full_3x3_to_voigt_6_stress(out.stress[0])
        self.results["free_energy"] = self.results["energy"]

    def _committee_results(self, structure, eval_forces, eval_stress) -> dict:
        prediction = self.model.predict([structure], eval_forces=eval_forces, eval_stress=eval_stress)
        result = prediction[0]
        results = _Results(energy=result.energy, energy_std=result.energy_std,
                           member_energies=result.member_energies,
                           energies=np.mean([out.atom_energies[0] for out in prediction.member_outputs], axis=0))
        if prediction.calibration_factor is not None:
            results["energy_std_calibrated"] = prediction.calibration_factor * result.energy_std
        if eval_forces:
            results.update(forces=result.forces, forces_std=result.forces_std, force_std=result.force_std,
                           max_force_std=float(prediction.max_force_std[0]),
                           force_uncertainty=legacy_force_uncertainty(result.forces_std))
        if eval_stress:
            results.update(stress=full_3x3_to_voigt_6_stress(result.stress),
                           stress_std=full_3x3_to_voigt_6_stress(result.stress_std))
        return results
