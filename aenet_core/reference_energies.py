"""Atomic reference energies fitted to (composition, total energy) samples.

A sample is a pair ``(composition, energy)``: ``composition`` maps species labels to
non-negative integer counts (total > 0), ``energy`` is the finite total energy in eV.
Samples are consumed lazily in one pass; ``iter_composition_energy_samples_from_files``
yields them from structure files.

Methods (the first two solve ``counts @ e = energies`` by least squares, with any
``fixed_atomic_energies`` moved to the right-hand side):

* ``ReferenceEnergies.from_regression``: all samples, or a reservoir-sampled subset.
* ``ReferenceEnergies.from_reference_compounds``: for each listed compound (formula such as
  ``"TiO2"`` or a mapping), the lowest-energy sample with exactly that composition.
* ``ReferenceEnergies.from_fixed``: given values for every species of the samples (none is
  fitted; the metadata records how well they describe the samples).

File format (``save`` / ``load``), UTF-8 JSON::

    {"format": "aenet_core.reference_energies", "version": 1,
     "method": "regression" | "reference_compounds" | "fixed",
     "atomic_energies": {"O": -432.5, "Ti": -1604.6},
     "metadata": {"species_order": [...], "rank": 2, "rmse": 0.01, ...}}
"""
from __future__ import annotations

import copy
import math
import numbers
import os
import random
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from aenet_core.data.limits import PlausibilityLimits
from aenet_core.data.plausibility import check_labels
from aenet_core.files import check_format, read_json, write_json
from aenet_core.io import iter_structures

__all__ = ["ReferenceEnergies", "iter_composition_energy_samples_from_files"]

FILE_FORMAT = "aenet_core.reference_energies"
FILE_VERSION = 1
METHODS = ("regression", "reference_compounds", "fixed")

_FORMULA = re.compile(r"(?:[A-Z][a-z]*\d*)+")
_FORMULA_TOKEN = re.compile(r"([A-Z][a-z]*)(\d*)")


# --------------------------------------------------------------------------- samples

def iter_composition_energy_samples_from_files(paths, *, frmt=None, **read_kwargs):
    """Yield one ``(composition, energy)`` sample per frame of each file, reading a file only when reached.

    ``paths`` is one path or an iterable of paths; files are read frame by frame with
    ``aenet_core.io.iter_structures(path, format=frmt, **read_kwargs)`` (``frmt`` takes aenet-python's
    format names too, e.g. ``"aimsout"``; ``index=":"`` selects frames).  Labels beyond the plausibility
    limits are refused (``aenet_core.data.plausibility``): ``limits=PlausibilityLimits(...)`` among
    ``read_kwargs`` sets them (default: those in effect at the call) and is not passed to the reader.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    limits = read_kwargs.pop("limits", None) or PlausibilityLimits()
    return _samples_from_files(paths, frmt, read_kwargs, limits)


def _samples_from_files(paths, frmt, read_kwargs, limits):
    for path in paths:
        for frame, structure in enumerate(iter_structures(path, format=frmt, **read_kwargs)):
            if structure.energy is None:
                raise ValueError(f"{path}: frame {frame} has no energy; reference energies need finite total "
                                 f"energies for every sample")
            check_labels(structure, f"{path} (frame {frame})", limits)
            yield dict(Counter(structure.species)), structure.energy


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _validate_composition(label, composition):
    """Return ``composition`` as ``{species: int}`` with zero counts dropped."""
    if not isinstance(composition, Mapping):
        raise TypeError(f"{label}: each sample composition must be a mapping of species to counts; "
                        f"got {type(composition).__name__}")
    counts = {}
    for species, count in composition.items():
        if not isinstance(species, str) or not species:
            raise ValueError(f"{label}: species must be non-empty strings; got {species!r}")
        if not _is_real(count) or not float(count).is_integer() or count < 0:
            raise ValueError(f"Composition counts must be integer-valued and non-negative: {label}: count of "
                             f"{species!r} must be a non-negative integer; got {count!r}")
        if count:
            counts[species] = int(count)
    if not counts:
        raise ValueError(f"{label}: composition {dict(composition)!r} has no atoms (each sample composition "
                         f"must contain at least one atom)")
    return counts


def _validate_sample(position, sample):
    label = f"sample {position}"
    try:
        composition, energy = sample
    except (TypeError, ValueError):
        raise TypeError(f"{label}: each regression sample must be a (composition, energy) pair; "
                        f"got {sample!r}") from None
    counts = _validate_composition(label, composition)
    if not _is_real(energy) or not math.isfinite(energy):
        raise ValueError(f"{label}: energy must be a finite number; got {energy!r} (regression requires finite "
                         f"total energies for every sample)")
    return counts, float(energy)


def _validated(samples):
    for position, sample in enumerate(samples):
        yield _validate_sample(position, sample)


# --------------------------------------------------------------------------- solver

def _check_fixed(fixed_atomic_energies, species_order):
    if not isinstance(fixed_atomic_energies, (Mapping, type(None))):
        raise TypeError(f"fixed_atomic_energies must be a mapping of species to energies; "
                        f"got {type(fixed_atomic_energies).__name__}")
    fixed = {}
    for species, energy in (fixed_atomic_energies or {}).items():
        if species not in species_order:
            raise ValueError(f"fixed_atomic_energies: species {species!r} does not occur in the samples "
                             f"(species present: {', '.join(species_order)})")
        if not _is_real(energy) or not math.isfinite(energy):
            raise ValueError(f"fixed_atomic_energies: energy of {species!r} must be a finite number; got {energy!r}")
        fixed[species] = float(energy)
    return dict(sorted(fixed.items()))


def _underdetermined_message(a_free, free_species, rank):
    # Species with a component in the null space of A_free have no unique energy.
    null_space = np.linalg.svd(a_free)[2][rank:]
    tangled = [s for s, column in zip(free_species, null_space.T) if np.abs(column).max() > 1e-8]
    return (f"cannot determine atomic energies: the system is underdetermined or rank-deficient "
            f"(rank {rank} < {len(free_species)} free species). The energies of {', '.join(tangled)} "
            f"cannot be separated: in these samples they only occur in fixed ratios or there are too few "
            f"distinct compositions. Provide fixed_atomic_energies for some of them, add samples with more "
            f"varied compositions, or use from_reference_compounds.")


def _solve(samples, fixed_atomic_energies):
    """Constrained least squares; returns ``(atomic_energies, fit metadata)``."""
    if not samples:
        raise ValueError("no samples: at least one (composition, energy) pair is needed")
    species_order = sorted(set().union(*(counts for counts, _ in samples)))
    fixed = _check_fixed(fixed_atomic_energies, species_order)
    free = [s for s in species_order if s not in fixed]
    a_free = np.array([[counts.get(s, 0) for s in free] for counts, _ in samples], dtype=float)
    y = np.array([energy - sum(n * fixed[s] for s, n in counts.items() if s in fixed) for counts, energy in samples])
    if free:
        solution, _, rank, singular_values = np.linalg.lstsq(a_free, y, rcond=None)
        if rank < len(free):
            raise ValueError(_underdetermined_message(a_free, free, rank))
    else:
        solution, rank, singular_values = np.zeros(0), 0, np.zeros(0)
    residual = a_free @ solution - y
    rss = float(residual @ residual)
    energies = {**fixed, **{s: float(e) for s, e in zip(free, solution)}}
    fit = {"species_order": species_order, "fixed_atomic_energies": fixed, "free_species": free,
           "rank": int(rank), "residual_sum_squares": rss, "rmse": math.sqrt(rss / len(samples)),
           "singular_values": [float(v) for v in singular_values]}
    return {s: energies[s] for s in species_order}, fit


def _metadata(fit, n_total, n_used, subset_size=None, subset_fraction=None, random_seed=None):
    return {"species_order": fit["species_order"], "fixed_atomic_energies": fit["fixed_atomic_energies"],
            "free_species": fit["free_species"], "n_samples_total": n_total, "n_samples_used": n_used,
            "subset_size": subset_size, "subset_fraction": subset_fraction, "random_seed": random_seed,
            "rank": fit["rank"], "residual_sum_squares": fit["residual_sum_squares"], "rmse": fit["rmse"],
            "singular_values": fit["singular_values"]}


# --------------------------------------------------------------------------- subsetting

def _resolve_subset_size(samples, subset_size, subset_fraction):
    """The reservoir size k, or None when all samples are used."""
    if subset_size is not None and subset_fraction is not None:
        raise ValueError("Specify at most one of subset_size and subset_fraction (they are mutually exclusive)")
    if subset_size is not None:
        if not isinstance(subset_size, numbers.Integral) or isinstance(subset_size, bool) or subset_size < 1:
            raise ValueError(f"subset_size must be a positive integer; got {subset_size!r}")
        return int(subset_size)
    if subset_fraction is None:
        return None
    if not _is_real(subset_fraction) or not 0 < subset_fraction <= 1:
        raise ValueError(f"subset_fraction must be a finite float in the interval (0, 1]; got {subset_fraction!r}")
    try:
        n_samples = len(samples)
    except TypeError:
        raise ValueError("subset_fraction requires a sized sample collection to know the number of samples: "
                         "pass a sized collection (e.g. a list) or use subset_size with an iterator") from None
    return max(1, math.ceil(n_samples * subset_fraction))


def _reservoir_sample(stream, k, rng):
    """Uniform subset of k items in one pass; returns ``(subset, number of items seen)``."""
    reservoir, n_seen = [], 0
    for n_seen, item in enumerate(stream, start=1):
        if n_seen <= k:
            reservoir.append(item)
        else:
            j = rng.randint(0, n_seen - 1)
            if j < k:
                reservoir[j] = item
    if n_seen < k:
        raise ValueError(f"subset_size cannot exceed the number of available samples: subset size {k} exceeds "
                         f"the number of samples ({n_seen})")
    return reservoir, n_seen


# --------------------------------------------------------------------------- reference compounds

def _formula_label(counts):
    return "".join(f"{s}{n if n != 1 else ''}" for s, n in sorted(counts.items()))


def _parse_compound(compound):
    """Return ``(label, {species: count})`` for a formula string or a composition mapping."""
    if isinstance(compound, Mapping):
        counts = _validate_composition(f"reference compound {dict(compound)!r}", compound)
        return _formula_label(counts), counts
    if not isinstance(compound, str):
        raise TypeError(f"reference compound {compound!r}: each reference compound must be a formula string "
                        f"or a composition mapping; got {type(compound).__name__}")
    if not _FORMULA.fullmatch(compound):
        raise ValueError(f"reference compound {compound!r} is not a valid formula: expected element symbols "
                         f"each followed by an optional count, e.g. 'TiO2' (no parentheses or spaces)")
    counts = Counter()
    for symbol, digits in _FORMULA_TOKEN.findall(compound):
        counts[symbol] += int(digits) if digits else 1
    return compound, _validate_composition(f"reference compound {compound!r}", counts)


def _parse_compounds(reference_compounds):
    """Map each exact composition (frozenset of items) to ``(label, counts)``; reject duplicates."""
    if isinstance(reference_compounds, (str, Mapping)):
        reference_compounds = [reference_compounds]
    targets = {}
    for compound in reference_compounds:
        label, counts = _parse_compound(compound)
        key = frozenset(counts.items())
        if key in targets:
            raise ValueError(f"reference compound {label!r} has the same composition as {targets[key][0]!r}; "
                             f"reference_compounds must not contain duplicate or equivalent compositions")
        targets[key] = label, counts
    if not targets:
        raise ValueError("reference_compounds is empty: give at least one compound")
    return targets


def _select_lowest(stream, targets):
    """Per target composition, the lowest-energy sample and the number of candidates; also the total count."""
    best, candidates, n_total = {}, Counter(), 0
    for n_total, (counts, energy) in enumerate(stream, start=1):
        key = frozenset(counts.items())
        if key in targets:
            candidates[key] += 1
            if key not in best or energy < best[key][1]:
                best[key] = (counts, energy)
    if not n_total:
        raise ValueError("no samples: at least one (composition, energy) pair is needed")
    missing = [target for key, target in targets.items() if key not in best]
    if missing:
        raise ValueError(f"Missing requested reference compounds in the provided samples: "
                         f"{[counts for _, counts in missing]!r}; no sample has exactly the composition of "
                         f"reference compound(s) {', '.join(label for label, _ in missing)} (matching is on the "
                         f"absolute composition of a cell: 'TiO2' does not match Ti2O4)")
    return best, candidates, n_total


# --------------------------------------------------------------------------- result

def _plain(value):
    """Deep copy with numpy scalars/arrays and tuples turned into JSON-friendly Python objects."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return copy.deepcopy(value)


@dataclass(frozen=True)
class ReferenceEnergies:
    """Per-species reference energies (eV) and how they were obtained; see the module docstring."""

    _atomic_energies: dict = field(hash=False)
    method: str
    _metadata: dict = field(default_factory=dict, hash=False, repr=False)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if not isinstance(self._atomic_energies, Mapping) or not isinstance(self._metadata, Mapping):
            raise TypeError("atomic_energies and metadata must be mappings")
        energies = {}
        for species, energy in self._atomic_energies.items():
            if not isinstance(species, str) or not _is_real(energy) or not math.isfinite(energy):
                raise ValueError(f"atomic_energies must map species to finite energies; got {species!r}: {energy!r}")
            energies[species] = float(energy)
        # Own copies, so later changes to the caller's dicts cannot reach this frozen object.
        object.__setattr__(self, "_atomic_energies", energies)
        object.__setattr__(self, "_metadata", _plain(self._metadata))

    @property
    def atomic_energies(self) -> dict:
        return dict(self._atomic_energies)

    @property
    def metadata(self) -> dict:
        return copy.deepcopy(self._metadata)

    @classmethod
    def from_regression(cls, samples, *, fixed_atomic_energies=None, subset_size=None, subset_fraction=None,
                        random_seed=None) -> ReferenceEnergies:
        """Least-squares fit over all samples, or over a reservoir-sampled subset of them."""
        k = _resolve_subset_size(samples, subset_size, subset_fraction)
        if k is None:
            used = list(_validated(samples))
            n_total = len(used)
        else:
            used, n_total = _reservoir_sample(_validated(samples), k, random.Random(random_seed))
        energies, fit = _solve(used, fixed_atomic_energies)
        return cls(energies, "regression", _metadata(fit, n_total, len(used), k, subset_fraction, random_seed))

    @classmethod
    def from_reference_compounds(cls, samples, *, reference_compounds,
                                 fixed_atomic_energies=None) -> ReferenceEnergies:
        """Least-squares fit over the lowest-energy sample of each reference compound."""
        targets = _parse_compounds(reference_compounds)
        best, candidates, n_total = _select_lowest(_validated(samples), targets)
        selected = [best[key] for key in targets]
        energies, fit = _solve(selected, fixed_atomic_energies)
        metadata = {key: fit[key] for key in ("species_order", "fixed_atomic_energies", "free_species")}
        metadata.update({
            "n_samples_total": n_total,
            "n_reference_compounds": len(targets),
            "reference_compounds": [dict(counts) for _, counts in targets.values()],
            "reference_candidate_counts": [candidates[key] for key in targets],
            "selected_reference_samples": [{"composition": dict(counts), "energy": energy}
                                           for counts, energy in selected],
        })
        metadata.update({key: fit[key] for key in ("rank", "residual_sum_squares", "rmse", "singular_values")})
        return cls(energies, "reference_compounds", metadata)

    @classmethod
    def from_fixed(cls, samples, *, atomic_energies) -> ReferenceEnergies:
        """The given energies, which must cover every species of the samples (nothing is fitted)."""
        used = list(_validated(samples))
        present = sorted(set().union(*(counts for counts, _ in used))) if used else []
        missing = [s for s in present if s not in (atomic_energies or {})]
        if missing:
            raise ValueError(f"fixed atomic energies give no value for {', '.join(missing)}, which the samples "
                             f"contain; give every species a value (or use regression with these values fixed "
                             f"to fit the others)")
        energies, fit = _solve(used, atomic_energies)
        return cls(energies, "fixed", _metadata(fit, len(used), len(used)))

    def to_dict(self) -> dict:
        return {"format": FILE_FORMAT, "version": FILE_VERSION, "method": self.method,
                "atomic_energies": self.atomic_energies, "metadata": self.metadata}

    @classmethod
    def from_dict(cls, data) -> ReferenceEnergies:
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a JSON object; got {type(data).__name__}")
        for key in ("format", "version", "method", "atomic_energies", "metadata"):
            if key not in data:
                raise ValueError(f"missing key {key!r}")
        check_format(None, data["format"], FILE_FORMAT, data["version"], (FILE_VERSION,), "reference energies file")
        return cls(data["atomic_energies"], data["method"], data["metadata"])

    def save(self, path) -> None:
        """Write JSON atomically: a temporary file beside ``path`` replaces it only once complete."""
        write_json(path, self.to_dict(), indent=2)

    @classmethod
    def load(cls, path) -> ReferenceEnergies:
        """Read a file written by ``save``; errors name the file (and the missing or bad key)."""
        data = read_json(path, "reference energies file")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
