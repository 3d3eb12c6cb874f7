"""Sparse analytic derivatives of Chebyshev features: per radial edge and per angular triplet.

``LocalDerivatives`` holds them in factored, order-major form and contracts
them with dE/dG into gradients with respect to the positions (forces are the
negative); it also splits and joins them per structure, which is how they are
cached and stored.
"""
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Optional

import torch

from aenet_core import backend as backends
from aenet_core.backend import sum_columns, transfer
from aenet_core.contraction import Contraction, VectorGradients, laid_out, positions_gradient
from aenet_core.neighbors import rows_per_structure


@dataclass
class LocalDerivatives:
    """Sparse analytic derivatives of the raw features of one batch of atoms, in factored form.

    Radial, per edge e = (i, j) with r_ij = r_j - r_i:
    dG^rad_{i,n} / d r_j = ``radial_dG_dd[n, e]`` * ``radial_unit[:, e]``
    (= -d/d r_i), i.e. dG/dd_ij times the unit vector u_ij.

    Angular, per triplet t = (i, j, k):
    dG^ang_{i,n} / d r_j = dG_dcos[n, t] dcos/dr_j[:, t] + dG_ddij[n, t] u_ij[:, t],
    likewise for r_k, and d/d r_i = -(d/d r_j + d/d r_k).

    The distances (``radial_distance`` per edge, ``distance_ij``/``distance_ik``
    per triplet) give the relative vectors d u the virial needs; they are None
    where a source did not keep them (``virial`` then refuses).

    Values are order-major ((orders, E) and (3, E)), which keeps both their
    computation and the contraction fast; ``dG_drij`` (E, R+1, 3) and
    ``grads_i/j/k`` (T, A+1, 3) give the expanded per-edge/per-triplet
    gradients.  All derivatives are of the unweighted basis; ``neighbor_typespin``
    (s_j) and ``triplet_typespin`` (s_j s_k) weight the second set (None with one
    species).  Atom indices are into the batch the payload was computed for;
    ``backend`` is the one the contraction's sums use.
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
    backend: str = field(default_factory=backends.resolve)
    radial_distance: Optional[torch.Tensor] = None  # (E,)
    distance_ij: Optional[torch.Tensor] = None  # (T,)
    distance_ik: Optional[torch.Tensor] = None

    _EDGE_FIELDS = ("center_idx", "neighbor_idx", "radial_dG_dd", "radial_unit", "neighbor_typespin",
                    "radial_distance")
    _TRIPLET_FIELDS = ("triplet_center_idx", "neighbor_j_idx", "neighbor_k_idx", "angular_dG_dcos",
                       "angular_dG_ddij", "angular_dG_ddik", "dcos_drj", "dcos_drk", "unit_ij", "unit_ik",
                       "triplet_typespin", "distance_ij", "distance_ik")
    _ATOM_INDEX_FIELDS = ("center_idx", "neighbor_idx", "triplet_center_idx", "neighbor_j_idx", "neighbor_k_idx")

    def __post_init__(self):
        self._sums = {}  # segment_sums' matrices, made when first asked for (not a field: never stored)

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
        fields = self._fields(self._EDGE_FIELDS + self._TRIPLET_FIELDS)
        moved = {name: transfer(t, device, dtype) for name, t in fields.items()}
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
        return Contraction.apply(grad_features, self)

    def contract_with_virial(self, grad_features, structure_of_atom=None, n_structures: int = 0):
        """(``contract(grad_features)``, virials): with ``structure_of_atom`` (N,), also the strain derivative
        of sum(grad_features * G) per structure, (B, 3, 3) with [b, a, c] = sum over the relative vectors r
        of the structure's edges and triplets of d/dr_a * r_c; else None.  Stress is virial / volume."""
        if structure_of_atom is None:
            return self.contract(grad_features), None
        if self.radial_distance is None or self.distance_ij is None:
            raise ValueError("these derivatives hold no distances, which the virial (stress) needs: they come from "
                             "a database or cache written before stresses were supported; rebuild it")
        # d/dr of sum(grad_features * G) per relative vector: (3, E) of each edge's r_ij, (3, T) of each
        # triplet's r_ij and r_ik.
        terms = laid_out(*VectorGradients.apply(grad_features, self))
        gradients = terms[2]  # d/dr of each relative vector r
        vectors = torch.cat([self.radial_unit * self.radial_distance, self.unit_ij * self.distance_ij,
                             self.unit_ik * self.distance_ik], dim=1)
        outer = (gradients.unsqueeze(1) * vectors.unsqueeze(0)).reshape(9, -1)
        owner = structure_of_atom.index_select(0, torch.cat([self.center_idx, self.triplet_center_idx,
                                                             self.triplet_center_idx]))
        virials = sum_columns(outer, owner, n_structures, self.backend).t().reshape(-1, 3, 3)
        return positions_gradient(self, *terms), virials

    def segment_sums(self, rows: str, dtype, spin: bool = False):
        """(N, E) for ``rows`` "edges", (N, T) for "triplets": a sparse CSR matrix of ``dtype`` whose product
        with per-edge (per-triplet) rows sums them per centre atom, weighted with their typespins when
        ``spin``."""
        key = (rows, dtype, spin)
        if key not in self._sums:
            owner, weights = ((self.center_idx, self.neighbor_typespin) if rows == "edges"
                              else (self.triplet_center_idx, self.triplet_typespin))
            self._sums[key] = _segment_sums(owner, self.n_atoms, weights if spin else None, dtype)
        return self._sums[key]

    @cached_property
    def neighbor_terms_index(self):
        """The atom each column of ``contraction``'s neighbour terms goes to: edges' j, triplets' j, then k."""
        return torch.cat([self.neighbor_idx, self.neighbor_j_idx, self.neighbor_k_idx])

    def to_dense(self):
        """The full Jacobian dG_{i,f} / dr_{a,c} as an (N, F, N, 3) tensor (O(N^2 F) memory: small structures)."""
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


def _segment_sums(owner, n_rows: int, weights, dtype):
    """A sparse CSR matrix (n_rows, len(owner)) with row ``owner[e]`` holding column e, of value ``weights[e]``
    (1 when None); rows come out in order when ``owner`` is sorted (as producers write it), else after a
    stable sort."""
    columns = torch.arange(len(owner), device=owner.device)
    if len(owner) > 1 and not bool((owner[1:] >= owner[:-1]).all()):
        columns = torch.argsort(owner, stable=True)
    counts = torch.bincount(owner, minlength=n_rows)
    rows = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    values = (torch.ones(len(owner), dtype=dtype, device=owner.device) if weights is None
              else weights[columns].to(dtype))
    with warnings.catch_warnings():  # torch calls its sparse CSR support beta; what this uses of it is tested
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(rows, columns, values, size=(n_rows, len(owner)), check_invariants=False)


def _accumulate(jac, cols, center, atom, values):
    """jac[center[e], cols[w], atom[e], :] += values[e, w, :] for every edge/triplet e."""
    shape = (len(center), len(cols))
    index = (center[:, None].expand(shape), cols[None, :].expand(shape), atom[:, None].expand(shape))
    jac.index_put_(index, values, accumulate=True)
