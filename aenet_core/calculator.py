"""An ASE calculator for one trained ``TorchANNPotential`` or a ``TorchCommitteePotential``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from aenet_core.committee import METADATA_FILE, TorchCommitteePotential
from aenet_core.committee.results import AenetEnsembleResult, legacy_force_uncertainty, warn_renamed
from aenet_core.descriptor import BatchedFeaturizer
from aenet_core.model.predict import evaluate_model
from aenet_core.neighbors import pair_search, row_dot, wrapped_offsets
from aenet_core.potential import TorchANNPotential
from aenet_core.structure import atoms_species

COMMITTEE_PROPERTIES = ["energy_std", "energy_std_calibrated", "member_energies", "forces_std", "force_std",
                        "max_force_std", "force_uncertainty", "stress_std"]
# Properties that need the descriptor derivatives, the expensive part of a force evaluation.
DERIVATIVE_PROPERTIES = {"forces", "forces_std", "force_std", "max_force_std", "force_uncertainty", "stress",
                         "stress_std"}
DEPRECATED = "force_uncertainty"  # aenet-python's per-atom mean of forces_std over x, y, z; use force_std
# Å.  TiO2 at 600 K (1,104 atoms, 1 fs steps): a search every ~20 steps; filtering the 1.5x more candidate
# pairs costs ~5 ms a step against ~25-70 ms a search.  Skins of 0.5-2 Å measured alike (bench/ase_md.py).
DEFAULT_SKIN = 1.0


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

    Forces are evaluated only when a force or stress property is requested, because they
    need the descriptor derivatives; that evaluation yields every energy and force
    property, so ``get_forces()`` and ``get_potential_energy()`` of MD and optimizers
    run the model once per step.  The stress (a third of a force evaluation's cost)
    joins once it has been asked for: the first ``get_stress()`` evaluates again, and
    from then on every force evaluation includes it, so NPT dynamics and cell filters
    run the model once per step and constant-cell MD never pays for it.  An
    energy-only request skips the derivatives.  A committee's members share one
    descriptor pass; only their networks and force contractions run per member.

    Neighbours come from a Verlet list: the pairs within the descriptor's cutoff plus
    ``skin`` (Å), searched by vesin when it is installed (else by aenet_core's own
    search), are kept until some atom has moved more than ``skin / 2`` since the search,
    or the cell, pbc or atoms change; every evaluation recomputes the pair vectors from
    the current positions and keeps the pairs within the cutoff, so results equal a fresh
    search's.  Atoms may leave the home cell between searches.  A larger skin means fewer
    searches but more candidate pairs per step; ``skin=0`` searches whenever an atom has
    moved, and ``skin=None`` keeps no list: the descriptor searches at every evaluation.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model, device=None, skin=DEFAULT_SKIN, **kwargs):
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
        descriptor = model.descriptor
        self.stress_asked = False  # from the first stress request on, stress comes with every force evaluation
        self.featurizer = BatchedFeaturizer(descriptor)
        self.neighbors = None if skin is None else VerletList(descriptor.max_cutoff, skin, descriptor.min_cutoff,
                                                              descriptor.backend)

    def get_property(self, name, atoms=None, allow_calculation=True):
        """ASE's ``get_property``; the deprecated ``force_uncertainty`` warns at the caller's line."""
        if name != DEPRECATED:
            return super().get_property(name, atoms, allow_calculation)
        warn_renamed(name)
        return legacy_force_uncertainty(super().get_property("forces_std", atoms, allow_calculation))

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        species = self.model.descriptor.species
        unknown = sorted(set(atoms_species(self.atoms)) - set(species))
        if unknown:
            raise ValueError(f"the model has no network for species {unknown}; it knows {list(species)} (atoms "
                             f"take species labels such as 'Fe1' from atoms.arrays['species_labels'], as "
                             f"Structure.to_ase() writes them)")
        derivatives = bool(DERIVATIVE_PROPERTIES.intersection(properties))
        periodic = bool(self.atoms.pbc.all())
        if {"stress", "stress_std"}.intersection(properties) and not periodic:
            raise PropertyNotImplementedError(f"stress needs a structure periodic in 3D; this one has pbc "
                                              f"{self.atoms.pbc.tolist()}")
        self.stress_asked |= bool({"stress", "stress_std"}.intersection(properties))
        members = self._evaluate(derivatives, derivatives and periodic and self.stress_asked)
        if self.is_committee:
            self.results = self._committee_results(members)
        else:
            self.results = dict(members[0])
        self.results["free_energy"] = self.results["energy"]

    def _evaluate(self, eval_forces, eval_stress) -> list:
        """Per member (one for a single potential): energy, per-atom energies and, when asked, forces and
        Voigt stress of ``self.atoms``, from one descriptor pass (what ``predict`` computes, step by step)."""
        atoms, descriptor = self.atoms, self.model.descriptor
        positions = torch.as_tensor(atoms.positions, dtype=descriptor.dtype, device=descriptor.device)
        periodic = bool(atoms.pbc.any())
        cell, pbc = (atoms.cell.array, atoms.pbc) if periodic else (None, None)
        symbols = atoms_species(atoms)
        pairs = None if self.neighbors is None else self.neighbors.pairs(positions, cell, pbc, atoms.numbers)
        inputs = ([positions], [symbols], [cell], [pbc])
        if eval_forces:
            features, batch, local = self.featurizer.with_derivatives(*inputs, pairs=pairs)
        else:
            (features, batch), local = self.featurizer(*inputs, pairs=pairs), None
        models = [m.model for m in self.model.members] if self.is_committee else [self.model.model]
        if not models:
            raise ValueError("the committee has no members; train it or load it with from_directory()")
        device, dtype = next(models[0].parameters()).device, models[0].feature_mean.dtype
        features, batch = features.to(device, dtype), batch.to(device)
        local = None if local is None else local.to(device, dtype)
        species = descriptor.species_indices(symbols).to(device)
        volume = abs(float(np.linalg.det(atoms.cell.array))) if eval_stress else None
        return [_member_results(model, features, species, batch, local, volume) for model in models]

    def _committee_results(self, members) -> dict:
        forces = [m["forces"] for m in members] if "forces" in members[0] else None
        stresses = [m["stress"] for m in members] if "stress" in members[0] else None
        result = AenetEnsembleResult.from_member_predictions([m["energy"] for m in members], forces,
                                                             member_stresses=stresses)
        results = _Results(energy=result.energy, energy_std=result.energy_std,
                           member_energies=result.member_energies,
                           energies=np.mean([m["energies"] for m in members], axis=0))
        if self.model.calibration_factor is not None:
            results["energy_std_calibrated"] = self.model.calibration_factor * result.energy_std
        if forces is not None:
            results.update(forces=result.forces, forces_std=result.forces_std, force_std=result.force_std,
                           max_force_std=float(np.max(result.force_std)),
                           force_uncertainty=legacy_force_uncertainty(result.forces_std))
        if stresses is not None:
            results.update(stress=result.stress, stress_std=result.stress_std)
        return results


def _member_results(model, features, species, batch, local, volume) -> dict:
    """One model's energy and per-atom energies of one featurized structure, its forces when ``local``
    derivatives are given, and its Voigt stress too when the cell ``volume`` is."""
    per_atom, forces, virials = evaluate_model(model, features, species, local, batch, 1, volume is not None)
    results = {"energy": model.sum_per_structure(per_atom, batch, 1).item(),
               "energies": per_atom.detach().cpu().numpy()}
    if forces is not None:
        results["forces"] = forces.detach().cpu().numpy()
    if volume is not None:
        results["stress"] = full_3x3_to_voigt_6_stress(virials[0].detach().cpu().numpy() / volume)
    return results


class VerletList:
    """Neighbour pairs (i, j, S) within ``cutoff + skin``, searched again only when needed.

    S is relative to the positions as given (r_ij = x_j - x_i + S @ cell), so atoms may leave the
    home cell between searches.  A search happens when there is none yet, when the cell, pbc or
    atomic numbers changed, or when some atom moved more than ``skin / 2`` since the last search:
    until then every pair now within ``cutoff`` is in the list.  ``builds`` counts the searches.
    """

    def __init__(self, cutoff: float, skin: float, min_cutoff: float = 0.0, backend=None):
        if not skin >= 0:
            raise ValueError(f"skin must be >= 0 Å (or None for no neighbour list); got {skin!r}")
        self.cutoff, self.skin, self.min_cutoff, self.backend = float(cutoff), float(skin), min_cutoff, backend
        self.builds = 0
        self._built_for = None  # (positions, cell, pbc, numbers) of the last search
        self._pairs = None

    def pairs(self, positions, cell, pbc, numbers) -> tuple:
        """(centre, neighbour, image offset relative to the wrapped positions) of the pairs with
        ``min_cutoff < d <= cutoff`` now, sorted like a fresh search; what the descriptor's ``pairs=`` takes."""
        if self._stale(positions, cell, pbc, numbers):
            self._pairs = pair_search(positions, self.cutoff + self.skin, cell, pbc, self.backend)
            self._built_for = (positions.clone(), None if cell is None else np.array(cell),
                               None if pbc is None else np.array(pbc), np.array(numbers))
            self.builds += 1
        center, neighbor, shift = self._pairs
        vectors = positions.index_select(0, neighbor) - positions.index_select(0, center)
        if cell is not None:
            vectors = vectors + shift.to(positions.dtype) @ torch.as_tensor(cell, dtype=positions.dtype,
                                                                             device=positions.device)
        distance2 = row_dot(vectors, vectors)
        keep = torch.nonzero((distance2 <= self.cutoff**2) & (distance2 > self.min_cutoff**2)).squeeze(1)
        center, neighbor, shift = (t.index_select(0, keep) for t in (center, neighbor, shift))
        return center, neighbor, wrapped_offsets(positions, cell, pbc, center, neighbor, shift)

    def _stale(self, positions, cell, pbc, numbers) -> bool:
        if self._built_for is None:
            return True
        built_positions, built_cell, built_pbc, built_numbers = self._built_for
        if not (np.array_equal(numbers, built_numbers) and _equal(cell, built_cell) and _equal(pbc, built_pbc)):
            return True
        moved = positions - built_positions
        return bool(row_dot(moved, moved).max() > (self.skin / 2) ** 2)


def _equal(a, b) -> bool:
    """Whether two optional arrays are both None or equal."""
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
