"""TorchNeighborList: aenet-python's neighbour-list interface over ``aenet_core.neighbors``.

Every search is ``aenet_core.neighbors.neighbor_list``: directed pairs (i, j, k) with
d <= cutoff, where the image offset k of j is relative to the positions wrapped into the
home cell along periodic axes, r_ij = (w_j + k) @ cell - w_i (aenet-python's 'ghost'
convention).  Both directions of every pair are listed, sorted by (i, j, k).

The search never drops neighbours.  ``max_num_neighbors`` is the per-atom count the caller
expects; ``truncation_handling`` says what happens when an atom has more: 'auto' raises the
limit (by ``auto_multiplier``, up to ``auto_max_neighbors``) with a RuntimeWarning, 'warn'
warns, 'error' raises RuntimeError.  Where aenet-python would cut the list (past
``auto_max_neighbors``, or under 'warn') we raise or return every neighbour instead.
"""
import warnings

import numpy as np
import torch

from aenet_core.neighbors import neighbor_list

TRUNCATION_MODES = ("auto", "error", "warn")
PBC_BACKENDS = ("ghost", "legacy")


class TorchNeighborList:
    """Neighbour lists of isolated and periodic structures, with optional pair-type cutoffs.

    ``atom_types`` (N,) (numbers or symbols) and ``cutoff_dict`` {(type_a, type_b): cutoff <= ``cutoff``} restrict
    the neighbours that ``get_neighbors_of_atom`` and ``get_neighbors_by_atom`` return; a pair
    missing from the dict uses ``cutoff``.  The last full list is cached, keyed by the
    positions, cell, pbc and coordinate kind.
    """

    def __init__(self, cutoff, atom_types=None, cutoff_dict=None, device="cpu", dtype=torch.float64,
                 max_num_neighbors=256, truncation_handling="auto", auto_multiplier=2, auto_max_neighbors=65536,
                 pbc_backend="ghost"):
        if not (isinstance(cutoff, (int, float, np.number)) and np.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f"TorchNeighborList: cutoff must be a positive number of Å; got {cutoff!r}")
        if truncation_handling not in TRUNCATION_MODES:
            raise ValueError(f"TorchNeighborList: truncation_handling must be one of {TRUNCATION_MODES}; "
                             f"got {truncation_handling!r}")
        if pbc_backend not in PBC_BACKENDS:
            raise ValueError(f"Unknown pbc_backend: {pbc_backend!r}; expected one of {PBC_BACKENDS}")
        if pbc_backend == "legacy":
            warnings.warn("TorchNeighborList: pbc_backend='legacy' is deprecated; both backends run the same "
                          "search here. Use pbc_backend='ghost' (default).", DeprecationWarning, stacklevel=2)
        for name, value, least in (("max_num_neighbors", max_num_neighbors, 1), ("auto_multiplier", auto_multiplier, 2),
                                   ("auto_max_neighbors", auto_max_neighbors, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise ValueError(f"TorchNeighborList: {name} must be an integer >= {least}; got {value!r}")
        self.cutoff = cutoff
        self.atom_types = atom_types
        self.cutoff_dict = cutoff_dict
        self.device = device
        self.dtype = dtype
        self.max_num_neighbors = int(max_num_neighbors)
        self.truncation_handling = truncation_handling
        self.auto_multiplier = int(auto_multiplier)
        self.auto_max_neighbors = int(auto_max_neighbors)
        self.pbc_backend = pbc_backend
        if cutoff_dict is not None and atom_types is not None:
            self._validate_cutoff_dict(cutoff_dict, atom_types)
        self._cache_key = None
        self._cached = None

    @classmethod
    def from_AtomicStructure(cls, structure, cutoff, frame=-1, device="cpu", dtype=torch.float64,
                             max_num_neighbors=256):
        """A neighbour list with these settings.  As in aenet-python, ``structure`` and ``frame`` are not
        read: the positions are passed to each query."""
        return cls(cutoff=cutoff, device=device, dtype=dtype, max_num_neighbors=max_num_neighbors)

    def get_neighbors(self, positions, cell=None, pbc=None, fractional=True) -> dict:
        """All pairs: {'edge_index' (2, E) [centre; neighbour], 'distances' (E,), 'offsets' (E, 3) int64
        image offsets (None without a cell), 'num_neighbors' (N,)}.

        With a cell, ``positions`` are fractional unless ``fractional=False``; ``pbc`` defaults to all
        periodic.  Without a cell they are Cartesian and the structure is isolated.
        """
        nl, _ = self._search(positions, cell, pbc, fractional)
        return self._as_dict(nl, periodic=cell is not None)

    def get_neighbors_isolated(self, positions) -> tuple:
        """(edge_index (2, E), distances (E,)) of an isolated structure (Cartesian positions)."""
        nl, _ = self._search(positions, None, None, False)
        return torch.stack([nl.center, nl.neighbor]), nl.distances

    def get_neighbors_pbc(self, positions, cell, pbc=None, fractional=True) -> tuple:
        """(edge_index (2, E), distances (E,), offsets (E, 3)) under periodic boundary conditions."""
        if cell is None:
            raise ValueError("TorchNeighborList.get_neighbors_pbc: cell is required; use get_neighbors_isolated "
                             "for a structure without one")
        nl, _ = self._search(positions, cell, pbc, fractional)
        return torch.stack([nl.center, nl.neighbor]), nl.distances, nl.offset

    def get_neighbors_of_atom(self, atom_idx, positions, cell=None, pbc=None, fractional=True, atom_types=None,
                              cutoff_dict=None, return_coordinates=False, full_star=False) -> dict:
        """Neighbours of one atom: {'indices', 'distances', 'offsets' (None without a cell)} and, with
        ``return_coordinates``, 'coordinates': Cartesian positions of the neighbour images, x_i + r_ij.

        ``atom_types``/``cutoff_dict`` override the stored ones.  The list holds both directions of
        every pair, so ``full_star=True`` gives the same neighbours as the default.
        """
        n_atoms = len(positions)
        if not -n_atoms <= int(atom_idx) < n_atoms:
            raise IndexError(f"TorchNeighborList: atom_idx {atom_idx} is out of range for {n_atoms} atoms")
        atom_idx = int(atom_idx) % n_atoms
        nl, cartesian = self._cached_search(positions, cell, pbc, fractional)
        rows = torch.nonzero(nl.center == atom_idx).squeeze(1)
        rows = rows[self._within_pair_cutoffs(nl, rows, atom_types, cutoff_dict, n_atoms)]
        result = {"indices": nl.neighbor[rows], "distances": nl.distances[rows],
                  "offsets": nl.offset[rows] if cell is not None else None}
        if return_coordinates:
            result["coordinates"] = cartesian[atom_idx] + nl.vectors[rows]
        return result

    def get_neighbors_by_atom(self, positions, cell=None, pbc=None, atom_types=None, cutoff_dict=None) -> list:
        """``get_neighbors_of_atom`` for every atom (positions fractional when a cell is given), from one search."""
        n_atoms = len(positions)
        if n_atoms == 0:
            return []
        nl, _ = self._cached_search(positions, cell, pbc, True)
        rows = torch.arange(len(nl.center), device=nl.center.device)
        rows = rows[self._within_pair_cutoffs(nl, rows, atom_types, cutoff_dict, n_atoms)]
        rows = rows[torch.argsort(nl.center[rows], stable=True)]  # each atom's pairs in the list's order
        sizes = torch.bincount(nl.center[rows], minlength=n_atoms).tolist()
        return [{"indices": nl.neighbor[own], "distances": nl.distances[own],
                 "offsets": nl.offset[own] if cell is not None else None} for own in torch.split(rows, sizes)]

    def __repr__(self) -> str:
        return (f"TorchNeighborList(cutoff={self.cutoff}, device='{self.device}', dtype={self.dtype}, "
                f"pbc_backend='{self.pbc_backend}')")

    def _search(self, positions, cell, pbc, fractional):
        """The NeighborList and the Cartesian positions, after the neighbour-count check."""
        positions = self._tensor(positions)
        if positions.ndim != 2 or positions.shape[1] != 3:
            raise ValueError(f"TorchNeighborList: positions must have shape (N, 3); got {tuple(positions.shape)}")
        if cell is not None:
            cell = self._tensor(cell)
            if fractional:
                positions = positions @ cell
            if pbc is None:
                pbc = torch.ones(3, dtype=torch.bool)
        nl = neighbor_list(positions, float(self.cutoff), cell, pbc)
        self._check_counts(torch.bincount(nl.center, minlength=len(positions)))
        return nl, positions

    def _cached_search(self, positions, cell, pbc, fractional):
        if torch.is_tensor(positions) and positions.requires_grad:  # a cached graph would not reach these
            return self._search(positions, cell, pbc, fractional)
        key = (self.cutoff, bool(fractional), *(None if a is None else _fingerprint(a) for a in (positions, cell, pbc)))
        if key != self._cache_key:
            self._cached = self._search(positions, cell, pbc, fractional)
            self._cache_key = key
        return self._cached

    def _tensor(self, array) -> torch.Tensor:
        return torch.as_tensor(array).to(device=self.device, dtype=self.dtype)

    def _as_dict(self, nl, periodic: bool) -> dict:
        return {"edge_index": torch.stack([nl.center, nl.neighbor]), "distances": nl.distances,
                "offsets": nl.offset if periodic else None,
                "num_neighbors": torch.bincount(nl.center, minlength=len(nl.wrapped_positions))}

    def _check_counts(self, counts):
        """Apply ``truncation_handling`` when an atom has more than ``max_num_neighbors`` neighbours."""
        most = int(counts.max()) if len(counts) else 0
        if most <= self.max_num_neighbors:
            return
        found = (f"TorchNeighborList: atom {int(counts.argmax())} has {most} neighbours within cutoff {self.cutoff}, "
                 f"more than max_num_neighbors={self.max_num_neighbors}")
        if self.truncation_handling == "error":
            raise RuntimeError(f"{found}. Increase max_num_neighbors or reduce cutoff.")
        if self.truncation_handling == "warn":
            warnings.warn(f"{found}; all of them are returned.", RuntimeWarning, stacklevel=4)
            return
        limit = self.max_num_neighbors
        while limit < most and limit < self.auto_max_neighbors:
            limit = min(limit * self.auto_multiplier, self.auto_max_neighbors)
        if limit < most:
            raise RuntimeError(f"{found}, and truncation_handling='auto' stops at auto_max_neighbors="
                               f"{self.auto_max_neighbors}. Increase auto_max_neighbors or reduce cutoff.")
        warnings.warn(f"{found}; max_num_neighbors is raised to {limit}.", RuntimeWarning, stacklevel=4)
        self.max_num_neighbors = limit

    def _within_pair_cutoffs(self, nl, rows, atom_types, cutoff_dict, n_atoms):
        """Mask over ``rows`` of the pairs within their type-pair cutoff (all True without types and dict)."""
        types = self.atom_types if atom_types is None else atom_types
        cutoffs = self.cutoff_dict if cutoff_dict is None else cutoff_dict
        if types is None or cutoffs is None:
            return torch.ones(len(rows), dtype=torch.bool, device=rows.device)
        self._validate_cutoff_dict(cutoffs, types)
        types = _values(types)
        if len(types) != n_atoms:
            raise ValueError(f"TorchNeighborList: atom_types has {len(types)} entries but positions has "
                             f"{n_atoms} atoms")
        first, second = types[_values(nl.center[rows])], types[_values(nl.neighbor[rows])]
        limit = np.full(len(rows), float(self.cutoff))
        for (a, b), value in cutoffs.items():
            limit[((first == a) & (second == b)) | ((first == b) & (second == a))] = value
        return torch.as_tensor(_values(nl.distances[rows]) <= limit, device=rows.device)

    def _validate_cutoff_dict(self, cutoff_dict, atom_types):
        """Every type of ``cutoff_dict`` must occur in ``atom_types``; each cutoff must be <= ``cutoff``."""
        available = sorted(set(_values(atom_types).tolist()))
        for (type_i, type_j), value in cutoff_dict.items():
            for t in (type_i, type_j):
                if t not in available:
                    raise ValueError(f"Type {t} in cutoff_dict not found in atom_types. Available types: {available}")
            if value > self.cutoff:
                raise ValueError(f"Cutoff {value} for pair ({type_i}, {type_j}) exceeds maximum cutoff {self.cutoff}")
            reverse = cutoff_dict.get((type_j, type_i), value)
            if reverse != value:
                raise ValueError(f"cutoff_dict gives pair ({type_i}, {type_j}) two cutoffs: {value} and {reverse}")


def _values(array) -> np.ndarray:
    """A tensor, array or list as a numpy array (types may be numbers or symbols)."""
    return array.detach().cpu().numpy() if torch.is_tensor(array) else np.asarray(array)


def _fingerprint(array) -> tuple:
    """Hashable identity of an array's values (the cache key)."""
    values = _values(array)
    return values.shape, str(values.dtype), values.tobytes()
