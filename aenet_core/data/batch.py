"""Featurized batches: ``FeatureSource`` turns a list of dataset indices into a ``Batch``, in this process or
in DataLoader workers (``BatchLoader``).

A batch holds the raw features of every atom plus the sparse descriptor
derivatives of the structures that are force-supervised in it.  Features and
derivatives come from the dataset when it stores them (a database), else from
one pass of the descriptor over the whole batch, or from bounded
per-structure caches when the configuration asks for them.
"""
import os
import queue
import threading
from dataclasses import dataclass
from functools import partial
from typing import Optional

import torch

from aenet_core.backend import transfer
from aenet_core.derivatives import LocalDerivatives
from aenet_core.descriptor import BatchedFeaturizer, structure_batch


@dataclass
class Batch:
    """Featurized structures; the force-supervised ones come first.

    Atoms of structure ``b`` have ``batch == b``; ``derivatives`` and
    ``forces_ref`` cover the first ``n_force_atoms`` atoms (the atoms of the
    first ``n_force_structures`` structures), and ``stress_ref`` (zero where a
    structure has none), ``has_stress`` and ``volumes`` those structures.
    ``weights`` are the structures' loss weights, None when all are 1.
    """

    indices: list  # dataset index of each structure, in batch order
    features: torch.Tensor
    species_idx: torch.Tensor
    batch: torch.Tensor
    n_atoms: torch.Tensor
    energy_ref: torch.Tensor  # total energies (eV)
    n_force_structures: int
    derivatives: Optional[LocalDerivatives]
    forces_ref: Optional[torch.Tensor]
    stress_ref: Optional[torch.Tensor] = None  # (n_force_structures, 3, 3) eV/Å³
    has_stress: Optional[torch.Tensor] = None  # (n_force_structures,) bool
    volumes: Optional[torch.Tensor] = None  # (n_force_structures,) Å³
    weights: Optional[torch.Tensor] = None  # (n_structures,)
    n_force_atoms: int = 0  # counted on the host, so that reading them never waits for a device
    n_stressed: int = 0  # force-supervised structures with a stress label

    @property
    def n_structures(self) -> int:
        return len(self.indices)

    def to(self, device, dtype) -> "Batch":
        def move(t):
            return None if t is None else transfer(t, device, dtype)

        derivatives = None if self.derivatives is None else self.derivatives.to(device, _narrower(dtype,
                                                                                            self.derivatives))
        return Batch(self.indices, move(self.features), move(self.species_idx), move(self.batch),
                     move(self.n_atoms), move(self.energy_ref), self.n_force_structures, derivatives,
                     move(self.forces_ref), move(self.stress_ref), move(self.has_stress), move(self.volumes),
                     move(self.weights), self.n_force_atoms, self.n_stressed)


def _narrower(dtype, derivatives):
    """``dtype``, unless the derivatives are narrower already: a float32 derivative path stays float32."""
    own = derivatives.radial_dG_dd.dtype
    return own if dtype is None or torch.finfo(own).bits < torch.finfo(dtype).bits else dtype


class FeatureSource:
    """Featurizes batches of a ``StructureSource``, optionally through per-structure caches.

    ``feature_cache`` holds energy-view raw features, ``derivative_cache``
    holds (features, LocalDerivatives) of force-supervised structures and
    ``neighbor_cache`` the neighbour pairs of each structure, so that a
    structure featurized again needs no neighbour search; any may be None
    (no caching).  ``derivative_dtype`` (None: as they come) is the dtype the
    batches' derivatives are kept in.  ``featurizer_calls`` counts descriptor passes and
    ``neighbor_searches`` the neighbour searches.  ``config_type_weights``
    enters the batches' loss weights.
    """

    def __init__(self, dataset, feature_cache=None, derivative_cache=None, neighbor_cache=None,
                 config_type_weights=None, derivative_dtype=None):
        self.dataset = dataset
        self.derivative_dtype = derivative_dtype
        self.config_type_weights = config_type_weights
        self.featurizer = BatchedFeaturizer(dataset.descriptor)
        self.feature_cache = feature_cache
        self.derivative_cache = derivative_cache
        self.neighbor_cache = neighbor_cache
        self.featurizer_calls = self.neighbor_searches = 0

    def batch(self, indices, use_forces) -> Batch:
        """Featurize ``indices``; ``use_forces(i)`` says whether structure i is force-supervised."""
        forced = [i for i in indices if use_forces(i)]
        energy_only = [i for i in indices if not use_forces(i)]
        order = forced + energy_only
        parts, derivatives = [], None
        if forced:
            features, derivatives = self._with_derivatives(forced)
            if self.derivative_dtype is not None:
                derivatives = derivatives.to(dtype=self.derivative_dtype)
            parts.append(features)
        if energy_only:
            parts.append(self._features(energy_only))
        n_atoms = torch.tensor(self.dataset.atom_counts(order))
        forces = self.dataset.forces_of(forced) if forced else None
        stresses, has_stress, volumes = (torch.as_tensor(x) for x in self.dataset.stress_labels(forced))
        weights = self.dataset.loss_weights(order, self.config_type_weights)
        return Batch(
            indices=order,
            features=torch.cat(parts),
            species_idx=self.dataset.species_of(order),
            batch=torch.repeat_interleave(torch.arange(len(order)), n_atoms),
            n_atoms=n_atoms,
            energy_ref=torch.tensor(self.dataset.energies(order), dtype=torch.float64),
            n_force_structures=len(forced),
            derivatives=derivatives,
            forces_ref=None if forces is None else torch.as_tensor(forces),
            stress_ref=stresses, has_stress=has_stress, volumes=volumes,
            weights=None if (weights == 1).all() else torch.as_tensor(weights),
            n_force_atoms=int(n_atoms[: len(forced)].sum()),
            n_stressed=int(has_stress.sum()) if has_stress is not None else 0,
        )

    def _run(self, indices, with_derivatives):
        self.featurizer_calls += 1
        args = self._arguments(indices)
        pairs = None if self.neighbor_cache is None else self._pairs(indices)
        if with_derivatives:
            features, _, derivatives = self.featurizer.with_derivatives(*args, pairs=pairs)
            return features, derivatives
        return self.featurizer(*args, pairs=pairs)[0]

    def _arguments(self, indices):
        return structure_batch([self.dataset.get_structure(i) for i in indices])

    def _pairs(self, indices):
        """Neighbour pairs of the batch from the cache, searching only for structures not in it."""
        found = {i: self.neighbor_cache.get(i) for i in indices}
        missing = list(dict.fromkeys(i for i in indices if found[i] is None))
        if missing:
            self.neighbor_searches += 1
            for i, pairs in zip(missing, self.featurizer.neighbor_pairs(*self._arguments(missing))):
                found[i] = pairs
                self.neighbor_cache.put(i, pairs)
        first_atom, center, neighbor, offset = 0, [], [], []
        for i, n_atoms in zip(indices, self.dataset.atom_counts(indices)):
            c, n, k = found[i]
            center.append(c + first_atom)
            neighbor.append(n + first_atom)
            offset.append(k)
            first_atom += n_atoms
        return torch.cat(center), torch.cat(neighbor), torch.cat(offset)

    def _features(self, indices):
        return self._cached(indices, self.feature_cache, False)

    def _with_derivatives(self, indices):
        return self._cached(indices, self.derivative_cache, True)

    def _cached(self, indices, cache, with_derivatives):
        """What the dataset stores for ``indices``; else featurize them in one pass, or per structure
        through ``cache`` when there is one."""
        stored = (self.dataset.stored_derivatives(indices, self.derivative_dtype) if with_derivatives
                  else self.dataset.stored_features(indices))
        if stored is not None:
            return stored
        if cache is None:
            return self._run(indices, with_derivatives)
        values = {i: cache.get(i) for i in indices}
        missing = [i for i in indices if values[i] is None]
        if missing:
            computed = self._run(missing, with_derivatives)
            sizes = self.dataset.atom_counts(missing)
            if with_derivatives:
                pieces = zip(torch.split(computed[0], sizes), computed[1].split(sizes))
            else:
                pieces = torch.split(computed, sizes)
            for i, piece in zip(missing, pieces):
                values[i] = piece
                cache.put(i, piece)
        if with_derivatives:
            return (torch.cat([values[i][0] for i in indices]),
                    LocalDerivatives.concatenate([values[i][1] for i in indices]))
        return torch.cat([values[i] for i in indices])


class _PlanDataset(torch.utils.data.Dataset):
    """Featurizes the batch that a plan key (dataset indices, force-supervised indices) describes."""

    def __init__(self, source):
        self.source = source

    def __getitem__(self, key):
        return _plan_batch(self.source, key)


def _plan_batch(source, key):
    """The batch of a plan key: (dataset indices, the force-supervised ones among them)."""
    indices, forced = key
    return source.batch(list(indices), set(forced).__contains__)


class _PlanSampler(torch.utils.data.Sampler):
    """Yields the current epoch's plan keys; the loader re-reads ``plan`` at every epoch."""

    def __init__(self, plan):
        self.plan = plan

    def __iter__(self):
        return iter(list(self.plan))

    def __len__(self):
        return len(self.plan)


def _first(batch):
    return batch


class BatchLoader:
    """Featurized batches in plan order: in this process, or prepared by DataLoader workers.

    A plan is a list of (dataset indices, force-supervised indices) per batch.
    With ``num_workers > 0`` the workers (and, with ``persistent_workers``,
    their per-process caches) live across epochs; the plan is read anew each
    epoch, so batch order and force subsets are the same as without workers.

    Without workers, ``read_ahead`` batches are prepared by a background thread
    of this process while the caller trains on the current one (one more may be
    in preparation), so that reading persisted payloads from a file overlaps the
    training step; the batches, and the calls made to the source and its caches,
    are the same and in the same order as without it (the caller never calls the
    source while an epoch's batches are being read ahead).  ``None`` (the default)
    reads ahead ``prefetch_factor`` batches where the dataset stores its features
    (a database: the work is reading) and torch's threads leave a core free, and
    none where batches are featurized or every core computes (the thread would
    compete with training for the cores).
    """

    def __init__(self, source, num_workers=0, prefetch_factor=2, persistent_workers=True, read_ahead=None):
        if read_ahead is not None and (isinstance(read_ahead, bool) or not isinstance(read_ahead, int)
                                       or read_ahead < 0):
            raise ValueError(f"read_ahead must be None or an integer >= 0; got {read_ahead!r}")
        self.source = source
        self.plan = []
        self.loader = None
        if num_workers > 0:
            self.loader = torch.utils.data.DataLoader(
                _PlanDataset(source), sampler=_PlanSampler(self.plan), batch_size=None, num_workers=num_workers,
                prefetch_factor=prefetch_factor, persistent_workers=persistent_workers, collate_fn=_first)
            read_ahead = 0
        elif read_ahead is None:
            stored = getattr(source.dataset, "has_persisted_features", None)
            stored = bool(stored and stored())
            read_ahead = int(prefetch_factor or 0) if stored and _free_core() else 0
        self.read_ahead = read_ahead

    def __call__(self, plan):
        if self.loader is not None:
            self.plan[:] = plan
            return iter(self.loader)
        make = partial(_plan_batch, self.source)
        if self.read_ahead == 0 or len(plan) < 2:
            return (make(key) for key in plan)
        return _read_ahead(make, list(plan), self.read_ahead)


def _free_core() -> bool:
    """Whether torch's threads leave this process a core for reading ahead (else the thread would slow the
    training step down more than it hides: measured with TiO2 from a database on 2 cores)."""
    return torch.get_num_threads() < len(os.sched_getaffinity(0))


def _read_ahead(make, keys, depth):
    """``make(key)`` of each key in order, made by a background thread at most ``depth`` batches ahead of the
    consumer (plus the one in the making); an error in the thread is raised to the consumer, and a consumer that
    stops early stops the thread (after the batch it is making)."""
    ready = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for key in keys:
                if stop.is_set() or not offer((True, make(key))):
                    return
        except BaseException as err:  # handed to the consumer, which raises it
            offer((False, err))

    thread = threading.Thread(target=produce, name="aenet_core batch read-ahead", daemon=True)
    thread.start()
    try:
        for _ in keys:
            made, value = ready.get()
            if not made:
                raise value
            yield value
    finally:
        stop.set()
        thread.join()
