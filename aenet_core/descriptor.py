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
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch

from aenet_core import backend
from aenet_core.neighbors import (batched_neighbor_list, neighbor_list_from_pairs, pairs_by_structure,
                                  prepare_cells, row_dot, rows_per_structure)

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


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


def _sum_into(values, index, n: int):
    """Sums of the columns of ``values`` (K, E) grouped by ``index`` (E,) into ``n`` columns."""
    scatter = backend.scatter_module()
    if scatter is not None:
        return scatter.scatter_add(values, index, dim=1, dim_size=n)
    out = torch.zeros((values.shape[0], n), dtype=values.dtype, device=values.device)
    return out.index_add_(1, index, values)


@dataclass
class LocalDerivatives:
    """Sparse analytic derivatives of the raw features of one batch of atoms, in factored form.

    Radial, per edge e = (i, j) with r_ij = r_j - r_i:
    dG^rad_{i,n} / d r_j = ``radial_dG_dd[n, e]`` * ``radial_unit[:, e]``
    (= -d/d r_i), i.e. dG/dd_ij times the unit vector u_ij.

    Angular, per triplet t = (i, j, k):
    dG^ang_{i,n} / d r_j = dG_dcos[n, t] dcos/dr_j[:, t] + dG_ddij[n, t] u_ij[:, t],
    likewise for r_k, and d/d r_i = -(d/d r_j + d/d r_k).

    Values are order-major ((orders, E) and (3, E)), which keeps both their
    computation and the contraction fast; ``dG_drij`` (E, R+1, 3) and
    ``grads_i/j/k`` (T, A+1, 3) give the expanded per-edge/per-triplet
    gradients.  All derivatives are of the unweighted basis; ``neighbor_typespin``
    (s_j) and ``triplet_typespin`` (s_j s_k) weight the second set (None with one
    species).  Atom indices are into the batch the payload was computed for.
    """

    n_atoms: int
    n_radial: int  # R + 1
    n_angular: int  # A + 1
    center_idx: torch.Tensor  # (E,)
    neighbor_idx: torch.Tensor  # (E,)
    radial_dG_dd: torch.Tensor  # (R+1, E)
    radial_unit: torch.Tensor  # (3, E)
    neighbor_typespin: Optional[torch.Tensor]  # (E,)
    triplet_center_idx: torch.Tensor  # (T,)
    neighbor_j_idx: torch.Tensor
    neighbor_k_idx: torch.Tensor
    angular_dG_dcos: torch.Tensor  # (A+1, T)
    angular_dG_ddij: torch.Tensor
    angular_dG_ddik: torch.Tensor
    dcos_drj: torch.Tensor  # (3, T)
    dcos_drk: torch.Tensor
    unit_ij: torch.Tensor  # (3, T)
    unit_ik: torch.Tensor
    triplet_typespin: Optional[torch.Tensor]  # (T,)

    _EDGE_FIELDS = ("center_idx", "neighbor_idx", "radial_dG_dd", "radial_unit", "neighbor_typespin")
    _TRIPLET_FIELDS = ("triplet_center_idx", "neighbor_j_idx", "neighbor_k_idx", "angular_dG_dcos",
                       "angular_dG_ddij", "angular_dG_ddik", "dcos_drj", "dcos_drk", "unit_ij", "unit_ik",
                       "triplet_typespin")
    _ATOM_INDEX_FIELDS = ("center_idx", "neighbor_idx", "triplet_center_idx", "neighbor_j_idx", "neighbor_k_idx")

    @property
    def multi(self) -> bool:
        return self.neighbor_typespin is not None

    @property
    def dG_drij(self):
        """(E, R+1, 3): dG^rad_{i,n} / d r_ij per edge."""
        return (self.radial_dG_dd.unsqueeze(1) * self.radial_unit).permute(2, 0, 1)

    @property
    def grads_j(self):
        """(T, A+1, 3): dG^ang_{i,n} / d r_j per triplet."""
        return self._angular(self.dcos_drj, self.angular_dG_ddij, self.unit_ij)

    @property
    def grads_k(self):
        return self._angular(self.dcos_drk, self.angular_dG_ddik, self.unit_ik)

    @property
    def grads_i(self):
        return -(self.grads_j + self.grads_k)

    def _angular(self, dcos, dG_dd, unit):
        grads = self.angular_dG_dcos.unsqueeze(1) * dcos + dG_dd.unsqueeze(1) * unit
        return grads.permute(2, 0, 1)

    def _fields(self, names):
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def to(self, device=None, dtype=None) -> "LocalDerivatives":
        """A copy on ``device``, with floating-point tensors cast to ``dtype`` when given."""
        moved = {name: t.to(device=device, dtype=dtype if t.is_floating_point() else None)
                 for name, t in self._fields(self._EDGE_FIELDS + self._TRIPLET_FIELDS).items()}
        return replace(self, **moved)

    def split(self, atoms_per_structure) -> list:
        """One payload per structure of a batch (atoms in consecutive blocks), with local atom indices.

        Edges and triplets are sorted by centre, so each structure's rows are one contiguous block.
        """
        blocks = {}
        for names, centers in ((self._EDGE_FIELDS, self.center_idx), (self._TRIPLET_FIELDS, self.triplet_center_idx)):
            first_atom, sizes = rows_per_structure(centers, atoms_per_structure)
            for name, tensor in self._fields(names).items():
                blocks[name] = torch.split(tensor, sizes, dim=-1)
        parts = []
        for b, n in enumerate(torch.as_tensor(atoms_per_structure).tolist()):
            fields = {name: pieces[b] for name, pieces in blocks.items()}
            for name in self._ATOM_INDEX_FIELDS:
                fields[name] = fields[name] - first_atom[b]
            parts.append(replace(self, n_atoms=n, **fields))
        return parts

    @classmethod
    def concatenate(cls, parts) -> "LocalDerivatives":
        """One payload for consecutive blocks of atoms, the inverse of ``split``."""
        offsets, total = [], 0
        for part in parts:
            offsets.append(total)
            total += part.n_atoms
        fields = {}
        for name in cls._EDGE_FIELDS + cls._TRIPLET_FIELDS:
            if getattr(parts[0], name) is None:
                continue
            pieces = [getattr(p, name) for p in parts]
            if name in cls._ATOM_INDEX_FIELDS:
                pieces = [piece + offset for piece, offset in zip(pieces, offsets)]
            fields[name] = torch.cat(pieces, dim=-1)
        return replace(parts[0], n_atoms=total, **fields)

    def contract(self, grad_features):
        """Gradient with respect to positions (N, 3) of sum(grad_features * G).

        ``grad_features`` (N, F) is dE/dG for the raw features; forces are
        ``-contract(dE/dG)``.  Differentiable in ``grad_features`` (for force
        training through the network).
        """
        nr, na = self.n_radial, self.n_angular
        g = grad_features.t().contiguous()  # (F, N): gathering along the last axis is fast
        g_rad = g[:nr].index_select(1, self.center_idx)
        g_ang = g[nr: nr + na].index_select(1, self.triplet_center_idx)
        if self.multi:
            g_rad = g_rad + self.neighbor_typespin * g[nr + na: 2 * nr + na].index_select(1, self.center_idx)
            g_ang = g_ang + self.triplet_typespin * g[2 * nr + na:].index_select(1, self.triplet_center_idx)
        radial = self.radial_unit * (g_rad * self.radial_dG_dd).sum(0)
        via_cos = (g_ang * self.angular_dG_dcos).sum(0)
        on_j = self.dcos_drj * via_cos + self.unit_ij * (g_ang * self.angular_dG_ddij).sum(0)
        on_k = self.dcos_drk * via_cos + self.unit_ik * (g_ang * self.angular_dG_ddik).sum(0)
        index = torch.cat([self.neighbor_idx, self.center_idx, self.triplet_center_idx, self.neighbor_j_idx,
                           self.neighbor_k_idx])
        terms = torch.cat([radial, -radial, -(on_j + on_k), on_j, on_k], dim=1)
        return _sum_into(terms, index, self.n_atoms).t()

    def to_dense(self):
        """The full Jacobian dG_{i,f} / dr_{a,c} as an (N, F, N, 3) tensor (tests and debugging only)."""
        nr, na, n = self.n_radial, self.n_angular, self.n_atoms
        weights = [(None, None)] + ([(self.neighbor_typespin, self.triplet_typespin)] if self.multi else [])
        dG_drij, grads = self.dG_drij, (self.grads_i, self.grads_j, self.grads_k)
        jac = torch.zeros((n, len(weights) * (nr + na), n, 3), dtype=dG_drij.dtype, device=dG_drij.device)
        for block, (s_rad, s_ang) in enumerate(weights):
            rad_cols = block * (nr + na) + torch.arange(nr, device=jac.device)
            ang_cols = block * (nr + na) + nr + torch.arange(na, device=jac.device)
            d = dG_drij if s_rad is None else dG_drij * s_rad[:, None, None]
            _accumulate(jac, rad_cols, self.center_idx, self.neighbor_idx, d)
            _accumulate(jac, rad_cols, self.center_idx, self.center_idx, -d)
            w = 1.0 if s_ang is None else s_ang[:, None, None]
            for atom, values in zip((self.triplet_center_idx, self.neighbor_j_idx, self.neighbor_k_idx), grads):
                _accumulate(jac, ang_cols, self.triplet_center_idx, atom, values * w)
        return jac


def _accumulate(jac, cols, center, atom, values):
    """jac[center[e], cols[w], atom[e], :] += values[e, w, :] for every edge/triplet e."""
    shape = (len(center), len(cols))
    index = (center[:, None].expand(shape), cols[None, :].expand(shape), atom[:, None].expand(shape))
    jac.index_put_(index, values, accumulate=True)


class ChebyshevDescriptor:
    """Chebyshev radial and angular features, identical to Fortran aenet's.

    ``species`` fixes the typespin weights (its order is the Fortran ENV
    order), ``rad_order``/``ang_order`` are the polynomial orders R and A
    (Fortran ``radial_N``/``angular_N``), cutoffs are in Å, neighbours at
    ``d <= min_cutoff`` are ignored.  ``n_features`` = R + A + 2, doubled for
    more than one species.
    """

    def __init__(self, species, rad_order: int, rad_cutoff: float, ang_order: int, ang_cutoff: float,
                 min_cutoff: float = 0.55, device="cpu", dtype=torch.float64):
        self.species = list(species)
        if not self.species or len(set(self.species)) != len(self.species):
            raise ValueError(f"species must be a non-empty list of distinct symbols; got {species}")
        for name, order in (("rad_order", rad_order), ("ang_order", ang_order)):
            if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0:
                raise ValueError(f"{name} must be a non-negative integer; got {order!r}")
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

    @classmethod
    def from_config(cls, config: dict, device=None) -> "ChebyshevDescriptor":
        params = {k: config[k] for k in ("species", "rad_order", "rad_cutoff", "ang_order", "ang_cutoff", "min_cutoff", "dtype")}
        return cls(**params, device=device or config.get("device", "cpu"))

    def to(self, device=None, dtype=None) -> "ChebyshevDescriptor":
        """A copy on another device and/or dtype."""
        config = self.get_config()
        if dtype is not None:
            config["dtype"] = dtype
        return ChebyshevDescriptor.from_config(config, device=device or self.device)

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
            nl = batched_neighbor_list(positions, batch, cells, pbc, self.max_cutoff, self.min_cutoff)
        else:
            nl = neighbor_list_from_pairs(positions, batch, cells, pbc, *pairs)
        edges = (nl.center, nl.neighbor, nl.vectors, nl.distances)
        r_center, r_neighbor, r_vec, r_dist = _select(nl.distances <= self.rad_cutoff, *edges)
        a_center, a_neighbor, a_vec, a_dist = _select(nl.distances <= self.ang_cutoff, *edges)

        # Per-order quantities are (order, E): broadcasting along the last axis is fast on CPU.
        x = (2 / self.rad_cutoff) * r_dist - 1
        t, dt = chebyshev(x, self.rad_order, True) if with_derivatives else (chebyshev(x, self.rad_order), None)
        fc, dfc = cosine_cutoff(r_dist, self.rad_cutoff, True) if with_derivatives else (cosine_cutoff(r_dist, self.rad_cutoff), None)
        g_rad = t * fc

        # Triplets (i, j, k), j < k: every pair of angular edges sharing a centre.
        first, second = _pairs_within_center(a_center, n_atoms)
        fa, dfa = cosine_cutoff(a_dist, self.ang_cutoff, True) if with_derivatives else (cosine_cutoff(a_dist, self.ang_cutoff), None)
        u = a_vec / a_dist.unsqueeze(1)
        u_ij, u_ik = _take(u, first), _take(u, second)
        cos = row_dot(u_ij, u_ik)
        ta, dta = chebyshev(cos, self.ang_order, True) if with_derivatives else (chebyshev(cos, self.ang_order), None)
        fcj, fck = _take(fa, first), _take(fa, second)
        fcjk = fcj * fck
        g_ang = ta * fcjk
        t_center = _take(a_center, first)
        j_idx, k_idx = _take(a_neighbor, first), _take(a_neighbor, second)

        s_j = s_jk = None
        if self.multi:
            # Sum each centre's terms per neighbour species (pair) once; both the plain and the
            # typespin-weighted sets follow from those partial sums without per-edge products.
            n_sp = self.n_species
            sp_j, sp_k = _take(species_idx, j_idx), _take(species_idx, k_idx)
            by_species = _sum_into(g_rad, r_center * n_sp + _take(species_idx, r_neighbor), n_atoms * n_sp)
            by_pair = _sum_into(g_ang, (t_center * n_sp + sp_j) * n_sp + sp_k, n_atoms * n_sp * n_sp)
            by_species = by_species.reshape(-1, n_atoms, n_sp)
            by_pair = by_pair.reshape(-1, n_atoms, n_sp * n_sp)
            pair_spin = torch.outer(self.typespin, self.typespin).reshape(-1)
            blocks = [by_species.sum(2), by_pair.sum(2), by_species @ self.typespin, by_pair @ pair_spin]
            if with_derivatives:
                spin = _take(self.typespin, species_idx)
                s_j, s_jk = _take(spin, r_neighbor), _take(spin, j_idx) * _take(spin, k_idx)
        else:
            blocks = [_sum_into(g_rad, r_center, n_atoms), _sum_into(g_ang, t_center, n_atoms)]
        features = torch.cat(blocks).t().contiguous()
        if not with_derivatives:
            return features

        # dG/dd_ij = dT/dd fc + T dfc/dd per radial edge; the chain rule through cos(theta_ijk),
        # d_ij and d_ik per triplet.  Kept factored: see LocalDerivatives.
        u_ij, u_ik = u_ij.t().contiguous(), u_ik.t().contiguous()
        derivatives = LocalDerivatives(
            n_atoms=n_atoms, n_radial=self.rad_order + 1, n_angular=self.ang_order + 1,
            center_idx=r_center, neighbor_idx=r_neighbor,
            radial_dG_dd=dt * ((2 / self.rad_cutoff) * fc) + t * dfc,
            radial_unit=(r_vec / r_dist.unsqueeze(1)).t().contiguous(), neighbor_typespin=s_j,
            triplet_center_idx=t_center, neighbor_j_idx=j_idx, neighbor_k_idx=k_idx,
            angular_dG_dcos=dta * fcjk, angular_dG_ddij=ta * (_take(dfa, first) * fck),
            angular_dG_ddik=ta * (fcj * _take(dfa, second)),
            dcos_drj=(u_ik - cos * u_ij) / _take(a_dist, first), dcos_drk=(u_ij - cos * u_ik) / _take(a_dist, second),
            unit_ij=u_ij, unit_ik=u_ik, triplet_typespin=s_jk,
        )
        return features, derivatives


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
        nl = batched_neighbor_list(positions, batch, cells, pbcs, d.max_cutoff, d.min_cutoff)
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
