"""Which explored frames to label: the most diverse of those the committee can still describe.

A structure is described by one vector: for each species of the descriptor (in its order) the mean raw
Chebyshev features of that species' atoms, zeros where it has none.  ``select_frames`` keeps the frames
whose ``max_force_std`` is at most ``trust_hi`` (or lies in the trust window) and picks among them by
farthest-point sampling,
starting from everything already labelled, with every component measured in units of the labelled
vectors' spread.
"""
from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from aenet_core.active_learning.settings import DEFAULT_SELECTION, SELECTION_RULES
from aenet_core.descriptor import BatchedFeaturizer, structure_batch
from aenet_core.structure import Structure

# Standardized units.  Measured on the Cu-Au test set: a structure written to a trajectory file and read
# back (positions rounded to 1e-8 Å) lies <= 2e-8 from itself, one stored as float32 features <= 4e-7;
# one MD step of 2 fs at 100-300 K moves a cell of 8-256 atoms 4e-3 to 3e-2 (tests/test_explore_select.py).
DEFAULT_MIN_DISTANCE = 1e-4
SMALLEST_SPREAD = 1e-12  # a component spread less than this over the labelled set is measured unscaled
DISTANCE_BLOCK = 4_000_000  # vector differences held at a time when finding nearest distances


def _species_means(features, species_idx, structure_idx, n_structures: int, n_species: int) -> np.ndarray:
    """(n_structures, n_species * F): per structure and species the mean feature row, zeros where absent."""
    features = features.detach().to(device="cpu", dtype=torch.float64)
    group = (structure_idx.cpu() * n_species + species_idx.cpu()).long()
    sums = torch.zeros((n_structures * n_species, features.shape[1]), dtype=torch.float64)
    sums.index_add_(0, group, features)
    counts = torch.bincount(group, minlength=n_structures * n_species).clamp(min=1)
    return (sums / counts.unsqueeze(1)).reshape(n_structures, -1).numpy()


def structure_vectors(descriptor, structures, batch_size: int = 64) -> np.ndarray:
    """(n, S * F) vectors of Structures (or ase.Atoms), featurized in batches of ``batch_size``."""
    structures = [Structure.from_ase(s) if isinstance(s, Atoms) else s for s in structures]
    featurizer = BatchedFeaturizer(descriptor)
    blocks = [np.zeros((0, descriptor.n_species * descriptor.n_features))]
    for start in range(0, len(structures), batch_size):
        chunk = structures[start: start + batch_size]
        features, batch = featurizer(*structure_batch(chunk))
        species = descriptor.species_indices([symbol for s in chunk for symbol in s.species])
        blocks.append(_species_means(features, species, batch, len(chunk), descriptor.n_species))
    return np.concatenate(blocks)


def dataset_vectors(dataset, batch_size: int = 256) -> np.ndarray:
    """The ``structure_vectors`` of every entry of a ``StructureSource``, from its stored features where
    it keeps them, else featurized from its structures."""
    descriptor = dataset.descriptor
    blocks = [np.zeros((0, descriptor.n_species * descriptor.n_features))]
    for start in range(0, len(dataset), batch_size):
        indices = list(range(start, min(start + batch_size, len(dataset))))
        features = dataset.stored_features(indices)
        if features is None:
            blocks.append(structure_vectors(descriptor, [dataset.get_structure(i) for i in indices], batch_size))
            continue
        counts = torch.tensor(dataset.atom_counts(indices), dtype=torch.long)
        batch = torch.repeat_interleave(torch.arange(len(indices)), counts)
        blocks.append(_species_means(features, dataset.species_of(indices), batch, len(indices),
                                     descriptor.n_species))
    return np.concatenate(blocks)


def _as_matrix(name, vectors, width=None) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=float)
    if vectors.size == 0 and width is not None:
        return vectors.reshape(0, width)
    if vectors.ndim != 2 or (width is not None and vectors.shape[1] != width):
        expected = f"(n, {width})" if width is not None else "(n, d)"
        raise ValueError(f"{name} must have shape {expected}; got {vectors.shape}")
    if not np.all(np.isfinite(vectors)):
        raise ValueError(f"{name} must be finite; got NaN or inf")
    return vectors


def nearest_distances(points, reference) -> np.ndarray:
    """For each row of ``points`` the Euclidean distance to the nearest row of ``reference`` (inf when
    ``reference`` is empty); in blocks, so a large labelled set needs no (m, k, d) array at once."""
    nearest = np.full(len(points), np.inf)
    if not len(reference) or not len(points):
        return nearest
    rows = max(1, DISTANCE_BLOCK // max(1, reference.size))
    for start in range(0, len(points), rows):
        # explicit differences, not |a|^2 + |b|^2 - 2ab, whose cancellation would hide distances ~1e-8
        differences = points[start: start + rows, None, :] - reference[None, :, :]
        nearest[start: start + rows] = np.sqrt((differences ** 2).sum(-1)).min(1)
    return nearest


def farthest_point_sampling(candidates, labelled, n: int, min_distance: float = 0.0) -> list:
    """Greedy farthest-point sampling: up to ``n`` candidate indices, in pick order.

    Each step takes the candidate farthest from its nearest labelled-or-chosen point (ties: the lowest
    index).  It stops after ``n`` picks or when that largest distance is below ``min_distance``; a
    candidate at distance 0 (a copy of a labelled or chosen point) is never picked.  With nothing
    labelled every distance starts infinite, so the first pick is candidate 0.
    """
    return _greedy_picks(candidates, labelled, n, min_distance)[0]


def _greedy_picks(candidates, labelled, n, min_distance) -> tuple:
    """(picks, each pick's distance to its nearest labelled-or-earlier point when picked)."""
    candidates = _as_matrix("candidates", candidates)
    labelled = _as_matrix("labelled", labelled, candidates.shape[1])
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n must be an integer >= 0; got {n!r}")
    if not min_distance >= 0:
        raise ValueError(f"min_distance must be >= 0; got {min_distance!r}")
    nearest = nearest_distances(candidates, labelled)
    picks, distances = [], []
    while len(picks) < n and len(candidates):
        best = int(np.argmax(nearest))  # argmax takes the first of equal values
        if nearest[best] < min_distance or nearest[best] == 0:
            break
        picks.append(best)
        distances.append(float(nearest[best]))
        nearest = np.minimum(nearest, np.linalg.norm(candidates - candidates[best], axis=1))
    return picks, distances


def feature_scale(reference) -> np.ndarray:
    """Per component the population std of ``reference`` vectors, 1 where below ``SMALLEST_SPREAD``."""
    spread = np.std(reference, axis=0) if len(reference) else np.ones(reference.shape[1])
    return np.where(spread < SMALLEST_SPREAD, 1.0, spread)


def in_trust_window(frames, trust_lo: float, trust_hi: float) -> list:
    """Indices of the frames with ``trust_lo <= info['max_force_std'] <= trust_hi`` (NaN never is)."""
    if not trust_lo <= trust_hi:
        raise ValueError(f"trust_lo must be <= trust_hi; got {trust_lo!r} and {trust_hi!r}")
    inside = []
    for index, frame in enumerate(frames):
        if "max_force_std" not in frame.info:
            raise ValueError(f"frame {index} has no info['max_force_std']; is it a frame of explore()?")
        if trust_lo <= float(frame.info["max_force_std"]) <= trust_hi:
            inside.append(index)
    return inside


def select_frames(frames, frame_vectors, labelled_vectors, trust_lo: float, trust_hi: float, max_frames: int,
                  min_distance: float = DEFAULT_MIN_DISTANCE, failed_vectors=None,
                  rule: str = DEFAULT_SELECTION) -> dict:
    """The candidates of ``frames`` and up to ``max_frames`` diverse ones of them.  Candidates are the frames
    whose spread lies in the trust window (``rule`` trust_window) or at most ``trust_hi`` (farthest_point, the
    default: bench/active_learning.py found the committee's lower bound no help to farthest-point sampling).

    ``frame_vectors`` (one row per frame) and ``labelled_vectors`` are ``structure_vectors`` /
    ``dataset_vectors``.  Both bounds of the window are inclusive.  Components are divided by the
    labelled vectors' spread (``feature_scale``; the candidates' when nothing is labelled), and
    ``min_distance`` is in those units: a candidate closer than that to a labelled or selected frame
    counts as labelled.  Returns ``candidates`` and ``selected`` (frame indices; selected in pick
    order), ``distances`` (each selected frame's distance to the nearest labelled vector; None when
    nothing is labelled) and ``pick_distances`` (to the nearest labelled-or-earlier-selected one).
    ``failed_vectors``: frames whose labelling failed before; a candidate closer than ``min_distance`` to one
    is never selected (``n_near_failed`` counts them), so a frame that cannot be labelled is not tried again.
    """
    frames = list(frames)
    if isinstance(max_frames, bool) or int(max_frames) != max_frames or max_frames < 0:
        raise ValueError(f"max_frames must be an integer >= 0; got {max_frames!r}")
    if rule not in SELECTION_RULES:
        raise ValueError(f"rule must be one of {SELECTION_RULES}; got {rule!r}")
    if not trust_lo <= trust_hi:
        raise ValueError(f"trust_lo must be <= trust_hi; got {trust_lo!r} and {trust_hi!r}")
    candidates = in_trust_window(frames, trust_lo if rule == "trust_window" else 0.0, trust_hi)
    if not candidates:
        return {"candidates": [], "selected": [], "distances": [], "pick_distances": [], "n_near_failed": 0}
    frame_vectors = _as_matrix("frame_vectors", frame_vectors)
    if len(frame_vectors) != len(frames):
        raise ValueError(f"frame_vectors has {len(frame_vectors)} rows for {len(frames)} frames")
    width = frame_vectors.shape[1]
    labelled = _as_matrix("labelled_vectors", labelled_vectors, width)
    failed = _as_matrix("failed_vectors", np.zeros((0, width)) if failed_vectors is None else failed_vectors, width)
    scale = feature_scale(labelled if len(labelled) else frame_vectors[candidates])
    points, labelled, failed = frame_vectors[candidates] / scale, labelled / scale, failed / scale
    near_failed = nearest_distances(points, failed) < max(min_distance, np.finfo(float).tiny)
    usable = np.flatnonzero(~near_failed)
    picks, pick_distances = _greedy_picks(points[usable], labelled, max_frames, min_distance)
    picks = usable[picks]
    to_labelled = nearest_distances(points[picks], labelled) if len(labelled) else [None] * len(picks)
    return {"candidates": candidates, "selected": [candidates[p] for p in picks],
            "distances": [None if d is None else float(d) for d in to_labelled],
            "pick_distances": [d if np.isfinite(d) else None for d in pick_distances],
            "n_near_failed": int(near_failed.sum())}
