"""Is a structure plausible training data?  The checks every path that reads training data runs before
anything is featurized; the limits themselves are ``aenet_core.data.limits.PlausibilityLimits``.

Refused, naming the file and frame (``ValueError``):

* labels: a total energy whose magnitude per atom exceeds ``energy_limit``, a force component beyond
  ``force_limit``, a stress component beyond ``stress_limit`` (all also refuse NaN and inf);
* geometry: more neighbours per atom within the descriptor's cutoff than ``max_pairs_per_atom``,
  estimated from the atom density (so that the check itself allocates nothing; a cell given in nm
  instead of Å is 1000 times too dense), and two atoms closer than ``min_distance``
  (``geometry_problem`` says it of one structure without raising: the active-learning loop's steps).

Warned about once per data set (``Review``): structures that repeat an earlier one, referenced energies
per atom beyond ``referenced_energy_warning`` (references on another energy scale than the data, e.g.
energies in Ry read as eV), stress components beyond ``stress_warning`` (GPa or kbar read as eV/Å³), and,
per composition, stresses that change with volume more than tenfold faster or slower than the energies'
-dE/dV, or in the opposite direction (``stress_factor``).

Datasets, database builds and reference-energy samples take ``limits=PlausibilityLimits(...)``;
``PlausibilityLimits()`` (the defaults) applies wherever none is given, e.g. ``train(structures=...)``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from aenet_core.data.limits import PlausibilityLimits
from aenet_core.training.trainout import GPA_PER_EV_PER_A3
from aenet_core.structure import referenced_energy_per_atom, structure_sha256

SHOWN = 5  # examples a warning lists




# ------------------------------------------------------------------------------- refusals


def check_labels(structure, where: str, limits: PlausibilityLimits) -> None:
    """Refuse an energy, force or stress label beyond the limits (or not finite), naming ``where``."""
    s = structure
    if s.energy is not None and not abs(s.energy) / s.n_atoms <= limits.energy_limit:
        raise ValueError(f"{where}: energy is {s.energy!r} eV, {s.energy / s.n_atoms:.4g} eV/atom; a total energy "
                         f"beyond ±{limits.energy_limit:g} eV/atom is not plausible (energy_limit)")
    if s.forces is not None and not np.all(np.abs(s.forces) <= limits.force_limit):
        magnitude = np.where(np.isnan(s.forces), np.inf, np.abs(s.forces))
        atom, axis = np.unravel_index(np.argmax(magnitude), s.forces.shape)
        raise ValueError(f"{where}: force on atom {atom} ({s.species[atom]}) along {'xyz'[axis]} is "
                         f"{float(s.forces[atom, axis])!r} eV/Å; a component beyond ±{limits.force_limit:g} eV/Å is not "
                         f"plausible (force_limit)")
    if s.stress is not None and not np.all(np.abs(s.stress) <= limits.stress_limit):
        worst = float(s.stress.flat[np.argmax(np.abs(s.stress))])
        raise ValueError(f"{where}: a stress component is {worst!r} eV/Å³; beyond ±{limits.stress_limit:g} eV/Å³ is "
                         f"not plausible (stress_limit): is it in eV/Å³ (ASE's unit), not GPa or kbar?")


def neighbour_density(structure, cutoff: float) -> tuple:
    """(neighbours per atom within ``cutoff``, atom density in 1/Å³), from the atom density alone.

    Periodic images need no counting: a sphere in a periodic cell holds density * volume atoms
    whatever the cell's size.  Along a non-periodic direction the atoms' extent plus 4/3 of the cutoff
    stands in for the cell (so that a flat layer of σ atoms/Å² gets its σπ cutoff² neighbours per atom).
    """
    s = structure
    periodic = s.is_periodic()
    cell = s.cell if periodic else np.eye(3)
    pbc = s.pbc if periodic else np.zeros(3, bool)
    normals = np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]])
    volume = abs(float(np.dot(cell[0], normals[0])))
    widths = volume / np.linalg.norm(normals, axis=1)  # distances between opposite faces
    if not pbc.all():
        fractional = s.positions @ np.linalg.inv(cell)
        extent = (fractional.max(0) - fractional.min(0)) * widths
        volume *= np.prod(np.where(pbc, 1.0, (extent + 4 / 3 * cutoff) / widths))
    density = s.n_atoms / volume
    return density * 4 / 3 * math.pi * cutoff**3, density


def _density_problem(structure, where: str, cutoff: float, limits: PlausibilityLimits):
    """Why the atom density is not plausible (more neighbours per atom within ``cutoff`` than the limit), or None."""
    per_atom, density = neighbour_density(structure, cutoff)
    if not per_atom > limits.max_pairs_per_atom:
        return None
    return (f"{where}: {structure.n_atoms} atoms at {density:.4g} atoms/Å³ give about {per_atom:.4g} neighbours per "
            f"atom within the {cutoff:g} Å cutoff ({per_atom * structure.n_atoms:.3g} pairs); more than "
            f"{limits.max_pairs_per_atom:g} is not a plausible density (max_pairs_per_atom): is the cell in Å (not nm)?")


def _too_close(where: str, species, a: int, b: int, distance: float, min_distance: float) -> str:
    return (f"{where}: atoms {a} ({species[a]}) and {b} ({species[b]}) are {distance:.4g} Å apart; closer than "
            f"{min_distance:g} Å is not plausible (min_distance)")


def _closest_problem(structure, where: str, min_distance: float):
    """Two atoms of one structure closer than ``min_distance`` (ASE's neighbour list: no torch), or None."""
    from ase.geometry import complete_cell
    from ase.neighborlist import primitive_neighbor_list

    periodic = structure.is_periodic()
    cell = complete_cell(structure.cell if structure.cell is not None else np.zeros((3, 3)))
    pbc = structure.pbc if periodic else np.zeros(3, bool)
    i, j, d = primitive_neighbor_list("ijd", pbc, cell, structure.positions, min_distance)
    if not len(d):
        return None
    k = int(np.argmin(d))
    a, b = sorted((int(i[k]), int(j[k])))
    return _too_close(where, structure.species, a, b, float(d[k]), min_distance)


def geometry_problem(structure, where: str, cutoff: float | None, limits: PlausibilityLimits) -> str | None:
    """Why one structure's geometry is not plausible training data, naming ``where`` as ``check_geometry`` would
    refuse it, or None: too dense for ``cutoff`` (the descriptor's largest; None: not checked), then two atoms
    closer than ``min_distance``.  Needs no torch; the density is checked first, so a cell in nm allocates
    nothing."""
    problem = None if cutoff is None else _density_problem(structure, where, cutoff, limits)
    if problem is None and limits.min_distance > 0:
        problem = _closest_problem(structure, where, limits.min_distance)
    return problem


def check_geometry(entries, cutoff: float, limits: PlausibilityLimits) -> None:
    """Refuse the first of ``entries`` whose neighbour count within ``cutoff`` exceeds the limit, then the first
    with two atoms closer than ``min_distance`` (``entries`` is one list, searched for close atoms as one
    batch): before any neighbour list at ``cutoff`` is built (None: no neighbour list will be, no density check)."""
    for entry in entries if cutoff is not None else ():
        problem = _density_problem(entry.structure, entry.where, cutoff, limits)
        if problem:
            raise ValueError(problem)
    if limits.min_distance > 0:
        _check_distances(entries, limits.min_distance)


def _check_distances(entries, min_distance):
    """Refuse the first entry with two atoms closer than ``min_distance`` (coincident atoms included)."""
    pairs = _closest_pairs([e.structure for e in entries], min_distance)
    if pairs:
        k = min(pairs)
        raise ValueError(_too_close(entries[k].where, entries[k].structure.species, *pairs[k], min_distance))


def _closest_pairs(structures, min_distance) -> dict:
    """{k: (a, b, distance)}: for each of ``structures`` with atoms closer than ``min_distance`` its closest two,
    found as one batch."""
    import torch  # only here: reading labels (merge-labels, reference-energies) needs no torch

    from aenet_core.neighbors import batched_neighbor_list, prepare_cells

    if not structures:
        return {}
    positions = torch.from_numpy(np.concatenate([s.positions for s in structures]))
    counts = [s.n_atoms for s in structures]
    batch = torch.repeat_interleave(torch.arange(len(structures)), torch.tensor(counts))
    cells, pbc = prepare_cells([s.cell for s in structures], [s.pbc for s in structures], positions.dtype, "cpu")
    nl = batched_neighbor_list(positions, batch, cells, pbc, min_distance, backend="torch")
    # The list leaves out pairs at distance 0: atoms of one structure whose wrapped positions are equal.
    places = np.column_stack([batch.numpy(), nl.wrapped_positions.numpy()])
    _, first, inverse = np.unique(places, axis=0, return_index=True, return_inverse=True)
    twin = first[inverse.ravel()]
    coincident = np.nonzero(twin != np.arange(len(places)))[0]
    i = np.concatenate([nl.center.numpy(), twin[coincident]])
    j = np.concatenate([nl.neighbor.numpy(), coincident])
    distance = np.concatenate([nl.distances.numpy(), np.zeros(len(coincident))])
    structure = batch.numpy()[i]
    order = np.lexsort((distance, structure))  # by structure, then distance (stable: the first of equal ones)
    closest = order[np.unique(structure[order], return_index=True)[1]]
    offsets = np.cumsum([0, *counts])
    return {int(structure[c]): (int(i[c] - offsets[structure[c]]), int(j[c] - offsets[structure[c]]),
                                float(distance[c])) for c in closest}


def geometry_problems(structures, wheres, cutoff: float, limits: PlausibilityLimits) -> list:
    """``geometry_problem`` of each of ``structures`` (named by ``wheres``), the close atoms of those not too dense
    found as one batch (torch: several times faster for many structures)."""
    problems = [_density_problem(s, where, cutoff, limits) for s, where in zip(structures, wheres)]
    if limits.min_distance > 0:
        searched = [k for k, problem in enumerate(problems) if problem is None]
        pairs = _closest_pairs([structures[k] for k in searched], limits.min_distance)
        for m, pair in pairs.items():
            k = searched[m]
            problems[k] = _too_close(wheres[k], structures[k].species, *pair, limits.min_distance)
    return problems


# ------------------------------------------------------------------------------- warnings


# Units stresses come in, as how many times their numbers exceed those in eV/Å³ (ASE's: tension positive).
STRESS_UNITS = {"eV/Å³": 1.0, "GPa": GPA_PER_EV_PER_A3, "kbar": 10 * GPA_PER_EV_PER_A3, "Ry/Bohr³": 1 / 91.8157677,
                "Hartree/Bohr³": 1 / 183.631535}
# Stresses and energies across volumes are compared only with this many distinct volumes spanning this fraction of
# their mean, and only where each fit gives its coefficient to this relative standard error.
FIT_VOLUMES, FIT_SPREAD, FIT_ERROR = 5, 0.02, 0.1


def stress_factor(volumes, energies, pressures) -> float | None:
    """How many times the change of one composition's stresses with volume exceeds that of its energies' pressure
    ``-dE/dV`` (1 for eV and eV/Å³; -1 for the opposite sign), or None where they do not tell: fewer than
    ``FIT_VOLUMES`` distinct volumes (MD at one volume), volumes within ``FIT_SPREAD``, or fits that noise blurs.

    In Birch's variable ``u = (V/V̄)^(-2/3) - 1`` the energy of a solid is nearly quadratic over a wide range
    (exactly for B' = 4): the energies' mean at each volume is fitted quadratic in u, the stresses' ``-dE/du``
    linear, and their slopes compared.  Slopes, not levels: the stresses' pressure differs from ``-dE/dV`` by
    a near constant where it should (the thermal pressure of MD, 4 GPa in Cu at 1000 K; Pulay stress), which
    moves the slope by a few percent at most."""
    v = np.asarray(volumes, dtype=float)
    distinct, which = np.unique(np.round(v / v.mean(), 4), return_inverse=True)
    if len(distinct) < FIT_VOLUMES or np.ptp(v) < FIT_SPREAD * v.mean():
        return None
    v, e, p = (np.bincount(which, weights=np.asarray(a, dtype=float)) / np.bincount(which)
               for a in (v, energies, pressures))
    u = (v / v.mean()) ** (-2 / 3) - 1
    stress_slope = _clear_leading(u, -1.5 * v.mean() * p * (1 + u) ** -2.5, 1)  # -dE/du = p dV/du
    curvature = _clear_leading(u, e, 2)
    return None if stress_slope is None or curvature is None else -stress_slope / (2 * curvature)


def _clear_leading(x, y, degree: int) -> float | None:
    """The leading coefficient of a least-squares polynomial fit of ``y(x)``, or None where noise blurs it."""
    coefficients, covariance = np.polyfit(x, y, degree, cov=True)
    return coefficients[0] if math.sqrt(covariance[0, 0]) < FIT_ERROR * abs(coefficients[0]) else None


def stress_unit(factor: float) -> str:
    """The unit (and sign) that a ``stress_factor`` suggests the stresses are in, or ''."""
    for unit, times in STRESS_UNITS.items():
        if abs(abs(factor) / times - 1) < 0.25:
            return f"as if in {unit}" + (" with compression positive (as VASP's OUTCAR prints it)" if factor < 0 else "")
    return ""


def formula(species: tuple) -> str:
    return "".join(f"{element}{species.count(element)}" for element in sorted(set(species)))


class Review:
    """Notes suspicious but accepted entries as they stream by; ``warn`` reports them once."""

    def __init__(self, atomic_energies, limits: PlausibilityLimits):
        self.atomic_energies = dict(atomic_energies or {})
        self.limits = limits
        self.first_seen = {}  # geometry hash -> (identifier, energy) of its first entry
        self.duplicates = []  # descriptions of the later copies
        self.far = []  # (where, referenced energy per atom)
        self.stressed = []  # (where, stress component of the largest magnitude) beyond stress_warning
        self.states = {}  # sorted species -> [(volume, energy, pressure)] of the structures with a stress

    def note(self, entry) -> None:
        s = entry.structure
        key = structure_sha256(s, labels=False)
        if key not in self.first_seen:
            self.first_seen[key] = (entry.identifier, s.energy)
        else:
            first, energy = self.first_seen[key]
            differing = "" if energy == s.energy else f" with another energy ({s.energy!r} vs {energy!r} eV)"
            self.duplicates.append(f"{first} is given twice" if first == entry.identifier else
                                   f"{entry.identifier} repeats {first}{differing}")
        if self.atomic_energies and set(s.species) <= set(self.atomic_energies):
            value = referenced_energy_per_atom(s.energy, s.species, self.atomic_energies)
            if abs(value) > self.limits.referenced_energy_warning:
                self.far.append((entry.where, value))
        if s.stress is not None:
            largest = float(s.stress.flat[np.argmax(np.abs(s.stress))])
            if abs(largest) > self.limits.stress_warning:
                self.stressed.append((entry.where, largest))
            if s.energy is not None:
                state = (s.volume, s.energy, -np.trace(s.stress) / 3)
                self.states.setdefault(tuple(sorted(s.species)), []).append(state)

    def warn(self) -> None:
        if self.duplicates:
            shown = "; ".join(self.duplicates[:SHOWN])
            warnings.warn(f"{len(self.duplicates)} structure(s) repeat an earlier one (same species, positions and "
                          f"cell): {shown}{' ...' if len(self.duplicates) > SHOWN else ''}; each copy weighs in "
                          f"training, and splits keep copies of training structures out of the test set",
                          stacklevel=2)
        if self.far:
            worst = sorted(self.far, key=lambda item: -abs(item[1]))[:SHOWN]
            shown = "; ".join(f"{where}: {value:.4g}" for where, value in worst)
            warnings.warn(f"{len(self.far)} structure(s) have referenced energies beyond "
                          f"±{self.limits.referenced_energy_warning:g} eV/atom (referenced_energy_warning), "
                          f"largest first: {shown} eV/atom; are the energies in eV and the atomic reference "
                          f"energies {self.atomic_energies} on the same scale (e.g. not Ry read as eV)?",
                          stacklevel=2)
        if self.stressed:
            worst = sorted(self.stressed, key=lambda item: -abs(item[1]))[:SHOWN]
            shown = "; ".join(f"{where}: {value:.4g} eV/Å³ = {value * GPA_PER_EV_PER_A3:.4g} GPa"
                              for where, value in worst)
            largest = worst[0][1]
            warnings.warn(f"{len(self.stressed)} structure(s) have stress components beyond "
                          f"±{self.limits.stress_warning:g} eV/Å³ (stress_warning), rare in solids, largest first: "
                          f"{shown}; ASE's unit is eV/Å³: as GPa the largest would be {largest:.4g} GPa, as kbar "
                          f"{largest / 10:.4g} GPa; is the file in GPa or kbar?", stacklevel=2)
        disagreeing = self.disagreeing_stresses()
        if disagreeing:
            warnings.warn(f"the stresses of {len(disagreeing)} composition(s) change with volume unlike their "
                          f"energies' pressure -dE/dV: {'; '.join(disagreeing[:SHOWN])}"
                          f"{' ...' if len(disagreeing) > SHOWN else ''}; ASE's unit is eV/Å³ "
                          f"(1 eV/Å³ = {GPA_PER_EV_PER_A3:.4g} GPa = {10 * GPA_PER_EV_PER_A3:.5g} kbar), tension "
                          f"positive: is the file in another unit or sign convention?", stacklevel=2)

    def disagreeing_stresses(self) -> list:
        """Per composition whose stresses change with volume more than tenfold faster or slower than its energies'
        pressure -dE/dV, or in the opposite direction: how many times."""
        found = []
        for species, states in self.states.items():
            volumes, energies, pressures = zip(*states)
            factor = stress_factor(volumes, energies, pressures)
            if factor is not None and not 0.1 < factor < 10:
                found.append(f"{formula(species)} ({len(states)} structures, {min(volumes):.4g} to {max(volumes):.4g} "
                             f"Å³): {factor:.4g} times as fast, {stress_unit(factor) or 'as if in no common unit'}")
        return found
