"""The Chebyshev descriptor of Artrith, Urban and Ceder (PRB 96, 014112, 2017), as Fortran aenet computes it.

For atom i with neighbours j (r_ij = r_j - r_i, d_ij = |r_ij|, min_cutoff < d):

* radial, n = 0..R:  G_n = sum_{j, d_ij <= Rc_r} T_n(2 d_ij / Rc_r - 1) fc(d_ij; Rc_r)
* angular, n = 0..A: G_n = sum_{j<k, d <= Rc_a} T_n(cos theta_ijk) fc(d_ij; Rc_a) fc(d_ik; Rc_a)

with Chebyshev polynomials T_n from the recurrence (exact at cos = +-1) and
fc(r; Rc) = (cos(pi r / Rc) + 1) / 2.  Periodic images, including images of
atom i itself, are distinct neighbours.  With more than one species a second
copy of both sets is weighted by the neighbour "typespin" s_j (radial) and
s_j s_k (angular); the layout is [radial, angular, radial_w, angular_w].

Derivatives are analytic and sparse: per radial edge dG_n/dr_ij and per
angular triplet the gradients with respect to r_i, r_j and r_k, always of the
unweighted basis (typespins are applied when they are contracted).  Sums over
edges and triplets go through ``index_add`` (or torch-scatter when the backend
allows it); no Python loop runs over atoms, pairs or triplets.
"""
import math

import numpy as np
import torch

from aenet_core import backend as backends
from aenet_core import compiled
from aenet_core.backend import sum_columns
from aenet_core.derivatives import LocalDerivatives
from aenet_core.neighbors import (batched_neighbor_list, neighbor_list_from_pairs, pairs_by_structure, prepare_cells,
                                  row_dot)
from aenet_core.rules import DEFAULT_MIN_CUTOFF, ORDER, checked_number

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
# The parameters that determine the feature values (not their precision, device or backend).
IDENTITY_KEYS = ("species", "rad_order", "rad_cutoff", "ang_order", "ang_cutoff", "min_cutoff")


def typespins(n_species: int) -> list:
    """Fortran aenet's typespin values, in species-list order (S=2: -1, 1; S=3: -1, 0, 1; S=4: -2, -1, 1, 2)."""
    spins, s = [], int(-n_species / 2)
    for _ in range(n_species):
        if s == 0 and n_species % 2 == 0:
            s += 1
        spins.append(s)
        s += 1
    return spins


def chebyshev(x, order: int, with_derivative: bool = False):
    """T_0..T_order at x, stacked on a new first axis; optionally also dT_n/dx = n U_{n-1}(x).

    Both come from the three-term recurrence P_{n+1} = 2x P_n - P_{n-1} (U is the
    second kind), which stays exact at x = +-1, unlike cos(n arccos x).
    """
    x2 = 2 * x
    t = [torch.ones_like(x), x]
    while len(t) <= order:
        t.append(x2 * t[-1] - t[-2])
    t = torch.stack(t[: order + 1])
    if not with_derivative:
        return t
    u = [torch.zeros_like(x), torch.ones_like(x), x2]  # u[n] = U_{n-1}
    while len(u) <= order:
        u.append(x2 * u[-1] - u[-2])
    n = torch.arange(order + 1, dtype=x.dtype, device=x.device).reshape((-1,) + (1,) * x.dim())
    return t, n * torch.stack(u[: order + 1])


def cosine_cutoff(d, rc: float, with_derivative: bool = False):
    """fc(d) = (cos(pi d / rc) + 1) / 2 for 0 <= d <= rc (zero at rc); optionally also dfc/dd."""
    arg = (math.pi / rc) * d
    fc = 0.5 * torch.cos(arg) + 0.5
    if not with_derivative:
        return fc
    return fc, (-0.5 * math.pi / rc) * torch.sin(arg)


class ChebyshevDescriptor:
    """Chebyshev radial and angular features, identical to Fortran aenet's.

    ``species`` fixes the typespin weights (its order is the Fortran ENV
    order), ``rad_order``/``ang_order`` are the polynomial orders R and A
    (Fortran ``radial_N``/``angular_N``), cutoffs are in Å, neighbours at
    ``d <= min_cutoff`` are ignored.  ``n_features`` = R + A + 2, doubled for
    more than one species.  ``backend`` ('auto' or 'torch', see
    ``aenet_core.backend``) picks the neighbour search and the sums; every
    backend gives the same features.
    """

    def __init__(self, species, rad_order: int, rad_cutoff: float, ang_order: int, ang_cutoff: float,
                 min_cutoff: float = DEFAULT_MIN_CUTOFF, device="cpu", dtype=torch.float64, backend=None):
        self.species = list(species)
        if not self.species or len(set(self.species)) != len(self.species):
            raise ValueError(f"species must be a non-empty list of distinct symbols; got {species}")
        rad_order = checked_number("ChebyshevDescriptor", "rad_order", rad_order, ORDER)
        ang_order = checked_number("ChebyshevDescriptor", "ang_order", ang_order, ORDER)
        for name, rc in (("rad_cutoff", rad_cutoff), ("ang_cutoff", ang_cutoff)):
            if not (isinstance(rc, (int, float, np.floating)) and math.isfinite(rc) and rc > 0):
                raise ValueError(f"{name} must be a positive number of Å; got {rc!r}")
        if not (math.isfinite(min_cutoff) and 0 <= min_cutoff < min(rad_cutoff, ang_cutoff)):
            raise ValueError(f"min_cutoff must be >= 0 and below both cutoffs; got {min_cutoff!r}")
        if isinstance(dtype, str):
            dtype = _DTYPES.get(dtype.replace("torch.", ""))
        if dtype not in _DTYPES.values():
            raise ValueError(f"dtype must be torch.float64 or torch.float32; got {dtype!r}")
        self.rad_order, self.ang_order = int(rad_order), int(ang_order)
        self.rad_cutoff, self.ang_cutoff = float(rad_cutoff), float(ang_cutoff)
        self.min_cutoff = float(min_cutoff)
        self.device, self.dtype = torch.device(device), dtype
        self.backend = backends.resolve(backend)
        self.species_to_idx = {s: i for i, s in enumerate(self.species)}
        self.multi = len(self.species) > 1
        self.typespin = torch.tensor(typespins(len(self.species)), dtype=dtype, device=self.device)
        self.n_features = (self.rad_order + self.ang_order + 2) * (2 if self.multi else 1)

    @property
    def n_species(self) -> int:
        return len(self.species)

    @property
    def max_cutoff(self) -> float:
        return max(self.rad_cutoff, self.ang_cutoff)

    def get_config(self) -> dict:
        """JSON-serialisable parameters; ``ChebyshevDescriptor.from_config`` rebuilds the descriptor."""
        return {
            "species": list(self.species),
            "rad_order": self.rad_order,
            "rad_cutoff": self.rad_cutoff,
            "ang_order": self.ang_order,
            "ang_cutoff": self.ang_cutoff,
            "min_cutoff": self.min_cutoff,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
            "n_features": self.n_features,
        }

    def identity(self) -> dict:
        """The parameters that determine the features: two descriptors with equal identities give the same
        features (up to precision), so data featurized by one serves the other."""
        config = self.get_config()
        return {key: config[key] for key in IDENTITY_KEYS}

    @classmethod
    def from_config(cls, config: dict, device=None, backend=None) -> "ChebyshevDescriptor":
        params = {k: config[k] for k in IDENTITY_KEYS + ("dtype",)}
        return cls(**params, device=device or config.get("device", "cpu"), backend=backend)

    def to(self, device=None, dtype=None) -> "ChebyshevDescriptor":
        """A copy on another device and/or dtype (same backend)."""
        config = self.get_config()
        if dtype is not None:
            config["dtype"] = dtype
        return ChebyshevDescriptor.from_config(config, device=device or self.device, backend=self.backend)

    def __repr__(self) -> str:
        c = self.get_config()
        return "ChebyshevDescriptor(" + ", ".join(f"{k}={v!r}" for k, v in c.items() if k != "n_features") + ")"

    def species_indices(self, species) -> torch.Tensor:
        """Species symbols (or already an index tensor) to indices into ``self.species``."""
        if isinstance(species, torch.Tensor):
            return species.to(device=self.device, dtype=torch.long)
        try:
            return torch.tensor([self.species_to_idx[s] for s in species], dtype=torch.long, device=self.device)
        except KeyError as err:
            raise ValueError(f"species {err.args[0]!r} is not in the descriptor species {self.species}") from None

    def forward_from_positions(self, positions, species, cell=None, pbc=None):
        """Raw features (N, F) of one structure; cell rows are lattice vectors."""
        return self._featurize(*self._single(positions, species, cell, pbc), with_derivatives=False)

    def forward_with_derivatives(self, positions, species, cell=None, pbc=None):
        """Raw features (N, F) of one structure and their sparse analytic derivatives (``LocalDerivatives``)."""
        return self._featurize(*self._single(positions, species, cell, pbc), with_derivatives=True)

    def _single(self, positions, species, cell, pbc):
        positions = self._as_positions(positions)
        cells, pbcs = prepare_cells([cell], [pbc], self.dtype, self.device)
        batch = torch.zeros(len(positions), dtype=torch.long, device=self.device)
        return positions, self._checked_species(species, len(positions)), batch, cells, pbcs

    def _as_positions(self, positions):
        positions = torch.as_tensor(positions, dtype=self.dtype, device=self.device)
        if positions.ndim != 2 or positions.shape[1] != 3:
            raise ValueError(f"positions must have shape (N, 3); got {tuple(positions.shape)}")
        return positions

    def _checked_species(self, species, n_atoms):
        idx = self.species_indices(species)
        if len(idx) != n_atoms:
            raise ValueError(f"species has {len(idx)} entries but positions has {n_atoms} atoms")
        return idx

    def _featurize(self, positions, species_idx, batch, cells, pbc, with_derivatives, pairs=None):
        n_atoms = len(positions)
        if pairs is None:
            nl = batched_neighbor_list(positions, batch, cells, pbc, self.max_cutoff, self.min_cutoff, self.backend)
        else:
            nl = neighbor_list_from_pairs(positions, batch, cells, pbc, *pairs)
        edges = (nl.center, nl.neighbor, nl.vectors, nl.distances)
        r_center, r_neighbor, r_vec, r_dist = _select(nl.distances <= self.rad_cutoff, *edges)
        a_center, a_neighbor, a_vec, a_dist = _select(nl.distances <= self.ang_cutoff, *edges)

        # Triplets (i, j, k), j < k: every pair of angular edges sharing a centre.
        first, second = _pairs_within_center(a_center, n_atoms)
        radial = compiled.run(_radial_terms, r_dist, r_vec, self.rad_order, self.rad_cutoff, with_derivatives)
        angular = compiled.run(_angular_terms, a_vec, a_dist, first, second, self.ang_order, self.ang_cutoff,
                               with_derivatives)
        g_rad, g_ang = radial[0], angular[0]
        t_center = _take(a_center, first)
        j_idx, k_idx = _take(a_neighbor, first), _take(a_neighbor, second)

        s_j = s_jk = None
        if self.multi:
            # Sum each centre's terms per neighbour species (pair) once; both the plain and the
            # typespin-weighted sets follow from those partial sums without per-edge products.
            n_sp = self.n_species
            sp_j, sp_k = _take(species_idx, j_idx), _take(species_idx, k_idx)
            by_species = sum_columns(g_rad, r_center * n_sp + _take(species_idx, r_neighbor), n_atoms * n_sp,
                                   self.backend)
            by_pair = sum_columns(g_ang, (t_center * n_sp + sp_j) * n_sp + sp_k, n_atoms * n_sp * n_sp, self.backend)
            by_species = by_species.reshape(-1, n_atoms, n_sp)
            by_pair = by_pair.reshape(-1, n_atoms, n_sp * n_sp)
            pair_spin = torch.outer(self.typespin, self.typespin).reshape(-1)
            blocks = [by_species.sum(2), by_pair.sum(2), by_species @ self.typespin, by_pair @ pair_spin]
            if with_derivatives:
                spin = _take(self.typespin, species_idx)
                s_j, s_jk = _take(spin, r_neighbor), _take(spin, j_idx) * _take(spin, k_idx)
        else:
            blocks = [sum_columns(g_rad, r_center, n_atoms, self.backend),
                      sum_columns(g_ang, t_center, n_atoms, self.backend)]
        features = torch.cat(blocks).t().contiguous()
        if not with_derivatives:
            return features

        _, radial_dG_dd, radial_unit = radial
        _, dG_dcos, dG_ddij, dG_ddik, dcos_drj, dcos_drk, unit_ij, unit_ik, d_ij, d_ik = angular
        derivatives = LocalDerivatives(
            n_atoms=n_atoms, n_radial=self.rad_order + 1, n_angular=self.ang_order + 1,
            center_idx=r_center, neighbor_idx=r_neighbor, radial_dG_dd=radial_dG_dd, radial_unit=radial_unit,
            neighbor_typespin=s_j, triplet_center_idx=t_center, neighbor_j_idx=j_idx, neighbor_k_idx=k_idx,
            angular_dG_dcos=dG_dcos, angular_dG_ddij=dG_ddij, angular_dG_ddik=dG_ddik, dcos_drj=dcos_drj,
            dcos_drk=dcos_drk, unit_ij=unit_ij, unit_ik=unit_ik, triplet_typespin=s_jk, backend=self.backend,
            radial_distance=r_dist, distance_ij=d_ij, distance_ik=d_ik,
        )
        return features, derivatives


def _radial_terms(distance, vectors, order: int, cutoff: float, with_derivatives: bool):
    """Per radial edge the basis T_n(x) fc(d) (order+1, E); with derivatives also dG/dd (order+1, E) and the
    unit vectors (3, E).  Per-order quantities are (order, E): broadcasting along the last axis is fast."""
    x = (2 / cutoff) * distance - 1
    if not with_derivatives:
        return (chebyshev(x, order) * cosine_cutoff(distance, cutoff),)
    t, dt = chebyshev(x, order, True)
    fc, dfc = cosine_cutoff(distance, cutoff, True)
    # dG/dd = dT/dd fc + T dfc/dd.
    return t * fc, dt * ((2 / cutoff) * fc) + t * dfc, (vectors / distance.unsqueeze(1)).t().contiguous()


def _angular_terms(vectors, distance, first, second, order: int, cutoff: float, with_derivatives: bool):
    """Per triplet (the angular edges ``first`` and ``second`` of one centre) the basis T_n(cos) fc_j fc_k
    (order+1, T); with derivatives also the factors of ``LocalDerivatives``' angular fields: dG/dcos,
    dG/dd_ij, dG/dd_ik, dcos/dr_j, dcos/dr_k, the unit vectors u_ij, u_ik (3, T) and d_ij, d_ik."""
    u = vectors / distance.unsqueeze(1)
    u_ij, u_ik = _take(u, first), _take(u, second)
    cos = row_dot(u_ij, u_ik)
    if not with_derivatives:
        fa = cosine_cutoff(distance, cutoff)
        return (chebyshev(cos, order) * (_take(fa, first) * _take(fa, second)),)
    ta, dta = chebyshev(cos, order, True)
    fa, dfa = cosine_cutoff(distance, cutoff, True)
    fcj, fck = _take(fa, first), _take(fa, second)
    fcjk = fcj * fck
    d_ij, d_ik = _take(distance, first), _take(distance, second)
    # The chain rule through cos(theta_ijk), d_ij and d_ik; kept factored (see LocalDerivatives).
    u_ij, u_ik = u_ij.t().contiguous(), u_ik.t().contiguous()
    return (ta * fcjk, dta * fcjk, ta * (_take(dfa, first) * fck), ta * (fcj * _take(dfa, second)),
            (u_ik - cos * u_ij) / d_ij, (u_ij - cos * u_ik) / d_ik, u_ij, u_ik, d_ij, d_ik)


def _take(tensor, index):
    """Rows of ``tensor`` at ``index`` (index_select is much faster than advanced indexing on CPU)."""
    return tensor.index_select(0, index)


def _select(mask, *tensors):
    """The rows of each tensor where ``mask`` holds (all of them when it holds everywhere)."""
    if bool(mask.all()):
        return tensors
    index = torch.nonzero(mask).squeeze(1)
    return tuple(t.index_select(0, index) for t in tensors)


def _pairs_within_center(center, n_atoms: int):
    """Index pairs (a, b), a < b, of edges sharing a centre; ``center`` must be sorted.

    Pairs are ordered by centre, then a, then b (the CSR order of Fortran's j<k loops).
    """
    degree = torch.bincount(center, minlength=n_atoms)
    edge = torch.arange(len(center), device=center.device)
    row_end = torch.cumsum(degree, 0)
    partners = _take(row_end, center) - 1 - edge  # later edges of the same centre
    first = torch.repeat_interleave(edge, partners)
    start_of_first = torch.cumsum(partners, 0) - partners
    second = first + 1 + torch.arange(len(first), device=center.device) - _take(start_of_first, first)
    return first, second


def structure_batch(structures) -> tuple:
    """The per-structure argument lists of ``BatchedFeaturizer`` (positions, species, cells, pbc) of
    Structure-like objects."""
    return ([s.positions for s in structures], [s.species for s in structures],
            [s.cell for s in structures], [s.pbc for s in structures])


class BatchedFeaturizer:
    """Featurise many structures in one pass of the descriptor.

    ``featurizer(batch_positions, batch_species, batch_cells=None, batch_pbc=None)``
    takes per-structure lists (positions (N_b, 3), species symbols, cell or
    None, pbc or None) and returns ``(features, batch_indices)``: the raw
    features of all atoms concatenated in input order, and the structure
    index of each atom.  ``with_derivatives`` also returns the
    ``LocalDerivatives`` of the whole batch (atom indices are global).
    """

    def __init__(self, descriptor: ChebyshevDescriptor):
        self.descriptor = descriptor

    def __call__(self, batch_positions, batch_species, batch_cells=None, batch_pbc=None, pairs=None):
        features, batch = self._run(batch_positions, batch_species, batch_cells, batch_pbc, False, pairs)
        return features, batch

    def with_derivatives(self, batch_positions, batch_species, batch_cells=None, batch_pbc=None, pairs=None):
        """(features, batch_indices, LocalDerivatives) for the whole batch."""
        return self._run(batch_positions, batch_species, batch_cells, batch_pbc, True, pairs)

    def neighbor_pairs(self, batch_positions, batch_species, batch_cells=None, batch_pbc=None) -> list:
        """Per structure, the (centre, neighbour, image offset) pairs the descriptor uses (local indices).

        Passing them back, concatenated with atom offsets, as ``pairs=`` skips the neighbour search.
        """
        positions, _, batch, cells, pbcs = self._inputs(batch_positions, batch_species, batch_cells, batch_pbc)
        d = self.descriptor
        nl = batched_neighbor_list(positions, batch, cells, pbcs, d.max_cutoff, d.min_cutoff, d.backend)
        return pairs_by_structure(nl, torch.bincount(batch, minlength=len(batch_positions)))

    def _run(self, batch_positions, batch_species, batch_cells, batch_pbc, with_derivatives, pairs=None):
        positions, species, batch, cells, pbcs = self._inputs(batch_positions, batch_species, batch_cells, batch_pbc)
        out = self.descriptor._featurize(positions, species, batch, cells, pbcs, with_derivatives, pairs)
        if with_derivatives:
            return out[0], batch, out[1]
        return out, batch

    def _inputs(self, batch_positions, batch_species, batch_cells, batch_pbc):
        d = self.descriptor
        n = len(batch_positions)
        if n == 0:
            raise ValueError("BatchedFeaturizer needs at least one structure")
        if len(batch_species) != n:
            raise ValueError(f"batch_species has {len(batch_species)} entries for {n} structures")
        batch_cells = [None] * n if batch_cells is None else list(batch_cells)
        batch_pbc = [None] * n if batch_pbc is None else list(batch_pbc)
        if len(batch_cells) != n or len(batch_pbc) != n:
            raise ValueError(f"batch_cells and batch_pbc need one entry per structure ({n})")
        positions = [d._as_positions(p) for p in batch_positions]
        species = torch.cat([d._checked_species(s, len(p)) for s, p in zip(batch_species, positions)])
        counts = torch.tensor([len(p) for p in positions], dtype=torch.long, device=d.device)
        batch = torch.repeat_interleave(torch.arange(n, device=d.device), counts)
        cells, pbcs = prepare_cells(batch_cells, batch_pbc, d.dtype, d.device)
        return torch.cat(positions), species, batch, cells, pbcs
