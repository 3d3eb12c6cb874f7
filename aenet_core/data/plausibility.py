"""Is a structure plausible training data?  The checks every path that reads training data runs before
anything is featurized; the limits themselves are ``aenet_core.data.limits.PlausibilityLimits``.

Refused, naming the file and frame (``ValueError``):

* labels: a total energy whose magnitude per atom exceeds ``energy_limit``, a force component beyond
  ``force_limit``, a stress component beyond ``stress_limit`` (all also refuse NaN and inf);
* geometry: more neighbours per atom within the descriptor's cutoff than ``max_pairs_per_atom``,
  estimated from the atom density (so that the check itself allocates nothing; a cell given in nm
  instead of Å is 1000 times too dense), and two atoms closer than ``min_distance``.

Warned about once per data set (``Review``): structures that repeat an earlier one, and referenced
energies per atom beyond ``referenced_energy_warning`` (references on another energy scale than the data,
e.g. energies in Ry read as eV).

Datasets, database builds and reference-energy samples take ``limits=PlausibilityLimits(...)``;
``PlausibilityLimits()`` (the defaults) applies wherever none is given, e.g. ``train(structures=...)``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from aenet_core.data.limits import PlausibilityLimits
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


def check_geometry(entries, cutoff: float, limits: PlausibilityLimits) -> None:
    """Refuse the first of ``entries`` whose neighbour count within ``cutoff`` exceeds the limit, then the first
    with two atoms closer than ``min_distance`` (``entries`` is one list, searched for close atoms as one
    batch): before any neighbour list at ``cutoff`` is built."""
    for entry in entries:
        per_atom, density = neighbour_density(entry.structure, cutoff)
        if per_atom > limits.max_pairs_per_atom:
            raise ValueError(
                f"{entry.where}: {entry.structure.n_atoms} atoms at {density:.4g} atoms/Å³ give about "
                f"{per_atom:.4g} neighbours per atom within the {cutoff:g} Å cutoff "
                f"({per_atom * entry.structure.n_atoms:.3g} pairs); more than {limits.max_pairs_per_atom:g} "
                f"is not a plausible density (max_pairs_per_atom): is the cell in Å (not nm)?")
    if limits.min_distance > 0:
        _check_distances(entries, limits.min_distance)


def _check_distances(entries, min_distance):
    """Refuse the first entry with two atoms closer than ``min_distance`` (coincident atoms included)."""
    import torch  # only here: reading labels (merge-labels, reference-energies) needs no torch

    from aenet_core.neighbors import batched_neighbor_list, prepare_cells

    structures = [e.structure for e in entries]
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
    if not len(distance):
        return
    structure = batch.numpy()[i]
    mine = np.nonzero(structure == structure.min())[0]
    closest = mine[np.argmin(distance[mine])]
    k = int(structure[closest])
    first_atom = sum(counts[:k])
    a, b = int(i[closest]) - first_atom, int(j[closest]) - first_atom
    species = structures[k].species
    raise ValueError(f"{entries[k].where}: atoms {a} ({species[a]}) and {b} ({species[b]}) are "
                     f"{distance[closest]:.4g} Å apart; closer than {min_distance:g} Å is not plausible "
                     f"(min_distance)")


# ------------------------------------------------------------------------------- warnings


class Review:
    """Notes suspicious but accepted entries as they stream by; ``warn`` reports them once."""

    def __init__(self, atomic_energies, limits: PlausibilityLimits):
        self.atomic_energies = dict(atomic_energies or {})
        self.limits = limits
        self.first_seen = {}  # geometry hash -> (identifier, energy) of its first entry
        self.duplicates = []  # descriptions of the later copies
        self.far = []  # (where, referenced energy per atom)

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
