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

Besides positions, the features take aenet-python's other inputs (per-atom
neighbour lists, which are Python lists of one entry per atom, and a CSR
neighbour graph with triplets): each becomes the same edges, and the dense
gradients (N, F, N, 3) it offers are ``LocalDerivatives.to_dense``.
"""
import contextlib
import math
import time

import numpy as np
import torch
from torch import nn

from aenet_core import backend as backends
from aenet_core import compiled
from aenet_core.backend import sum_columns
from aenet_core.chebyshev import AngularBasis, RadialBasis, chebyshev, cosine_cutoff
from aenet_core.derivatives import LocalDerivatives
from aenet_core.neighbor_list import TorchNeighborList
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


class UnknownSpeciesError(ValueError, KeyError):
    """A species the descriptor does not know: a ValueError, and the KeyError aenet-python raises for it."""

    def __str__(self) -> str:
        return str(self.args[0])  # KeyError would quote the message


class ChebyshevDescriptor(nn.Module):
    """Chebyshev radial and angular features, identical to Fortran aenet's.

    ``species`` fixes the typespin weights (its order is the Fortran ENV
    order), ``rad_order``/``ang_order`` are the polynomial orders R and A
    (Fortran ``radial_N``/``angular_N``), cutoffs are in Å, neighbours at
    ``d <= min_cutoff`` are ignored.  ``n_features`` = R + A + 2, doubled for
    more than one species.  ``profile_timing`` adds up the time spent in
    neighbour searches and in features (``get_timing_stats``).  ``backend``
    ('auto' or 'torch', see ``aenet_core.backend``) picks the neighbour search
    and the sums; every backend gives the same features.

    A ``torch.nn.Module`` without parameters: ``descriptor(positions, species,
    cell=..., pbc=...)`` is ``forward``.  Every path, the neighbour-list and
    graph inputs of aenet-python included, computes through the same sparse
    per-edge and per-triplet terms.  ``nbl`` is a ``TorchNeighborList`` for the
    larger cutoff, as aenet-python's descriptor carries one.
    """

    def __init__(self, species, rad_order: int, rad_cutoff: float, ang_order: int, ang_cutoff: float,
                 min_cutoff: float = DEFAULT_MIN_CUTOFF, device="cpu", dtype=torch.float64,
                 profile_timing: bool = False, backend=None):
        super().__init__()
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
        self.rad_basis = RadialBasis(self.rad_order, self.rad_cutoff, self.min_cutoff, dtype).to(self.device)
        self.ang_basis = AngularBasis(self.ang_order, self.ang_cutoff, self.min_cutoff, dtype).to(self.device)
        self.nbl = TorchNeighborList(cutoff=self.max_cutoff, device=self.device, dtype=dtype)
        self.profile_timing = bool(profile_timing)
        self.reset_timing_stats()

    @property
    def n_species(self) -> int:
        return len(self.species)

    @property
    def max_cutoff(self) -> float:
        return max(self.rad_cutoff, self.ang_cutoff)

    def get_n_features(self) -> int:
        return self.n_features

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
        """A copy on another device and/or dtype (same backend); unlike ``nn.Module.to``, self is unchanged.
        As there, a dtype may come first: ``descriptor.to(torch.float32)``."""
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        config = self.get_config()
        if dtype is not None:
            config["dtype"] = dtype
        return ChebyshevDescriptor.from_config(config, device=device or self.device, backend=self.backend)

    def __repr__(self) -> str:
        c = self.get_config()
        return "ChebyshevDescriptor(" + ", ".join(f"{k}={v!r}" for k, v in c.items() if k != "n_features") + ")"

    # ------------------------------------------------------------------ timing (profile_timing)

    def get_timing_stats(self) -> dict:
        """Seconds spent in neighbour searches and in features since the last reset, and per search."""
        calls = max(self.nblist_calls, 1)
        return {"nblist_time": self.nblist_time, "feature_time": self.feature_time, "nblist_calls": self.nblist_calls,
                "nblist_time_per_call": self.nblist_time / calls, "feature_time_per_call": self.feature_time / calls}

    def reset_timing_stats(self) -> None:
        self.nblist_time, self.feature_time, self.nblist_calls = 0.0, 0.0, 0

    @contextlib.contextmanager
    def _timed(self, total: str):
        """Adds the time of the block to the attribute ``total`` when profiling."""
        start = time.perf_counter()
        yield
        if self.profile_timing:
            setattr(self, total, getattr(self, total) + time.perf_counter() - start)

    # ------------------------------------------------------------------ features from positions

    def species_indices(self, species) -> torch.Tensor:
        """Species symbols (or already an index tensor) to indices into ``self.species``."""
        if isinstance(species, torch.Tensor):
            return species.to(device=self.device, dtype=torch.long)
        try:
            return torch.tensor([self.species_to_idx[s] for s in species], dtype=torch.long, device=self.device)
        except KeyError as err:
            raise UnknownSpeciesError(f"species {err.args[0]!r} is not in the descriptor species "
                                      f"{self.species}") from None

    def forward(self, positions, species, neighbor_indices=None, neighbor_vectors=None, cell=None, pbc=None):
        """Raw features (N, F) of one structure: from per-atom neighbour lists when both are given (per atom
        its neighbours' indices and vectors r_ij, as ``featurize_with_neighbor_info`` returns them),
        else from a neighbour search (``forward_from_positions``)."""
        if neighbor_indices is None or neighbor_vectors is None:
            return self.forward_from_positions(positions, species, cell, pbc)
        return self._from_neighbor_info(positions, species, neighbor_indices, neighbor_vectors, False)

    def forward_from_positions(self, positions, species, cell=None, pbc=None):
        """Raw features (N, F) of one structure; cell rows are lattice vectors."""
        return self._featurize(*self._single(positions, species, cell, pbc), with_derivatives=False)

    def forward_with_derivatives(self, positions, species, cell=None, pbc=None):
        """Raw features (N, F) of one structure and their sparse analytic derivatives (``LocalDerivatives``)."""
        return self._featurize(*self._single(positions, species, cell, pbc), with_derivatives=True)

    def compute_feature_gradients(self, positions, species, cell=None, pbc=None) -> tuple:
        """(features (N, F), dense gradients (N, F, N, 3)) with gradients[i, f, a, c] = dG_{i,f} / dr_{a,c}.

        Dense is O(N^2 F) memory: for tests and small structures; forces use ``forward_with_derivatives``.
        """
        features, derivatives = self.forward_with_derivatives(positions, species, cell, pbc)
        return features, derivatives.to_dense()

    def compute_forces_from_energy(self, positions, species, energy_model, cell=None, pbc=None) -> tuple:
        """(energy, forces (N, 3)) of ``energy_model(features).sum()``, forces = -dE/dr by autograd; both keep
        their graph (``create_graph``), so a loss on them trains ``energy_model``."""
        x = torch.as_tensor(positions, dtype=self.dtype, device=self.device).detach().clone().requires_grad_(True)
        energy = energy_model(self.forward_from_positions(x, species, cell, pbc)).sum()
        (gradient,) = torch.autograd.grad(energy, x, create_graph=True)
        return energy, -gradient

    # ------------------------------------------------------------------ per-atom neighbour lists

    def featurize_with_neighbor_info(self, positions, species, cell=None, pbc=None) -> tuple:
        """(features (N, F), neighbour info): the info dict holds ``neighbor_counts`` (N,), per atom its
        ``neighbor_lists`` (indices) and ``neighbor_vectors`` (r_ij, (n_i, 3), periodic images included), all
        numpy, and ``max_neighbors``; neighbours are those with min_cutoff < d <= max(cutoffs)."""
        positions, species_idx, batch, cells, pbcs = self._single(positions, species, cell, pbc)
        nl = self._search(positions, batch, cells, pbcs)
        with self._timed("feature_time"):
            features = self._from_edges(len(positions), species_idx, _edges_of(nl), False)
        counts = torch.bincount(nl.center, minlength=len(positions)).cpu().numpy()
        ends = np.cumsum(counts)[:-1]
        info = {"neighbor_counts": counts,
                "neighbor_lists": np.split(nl.neighbor.cpu().numpy(), ends),
                "neighbor_vectors": np.split(nl.vectors.detach().cpu().numpy(), ends),
                "max_neighbors": int(counts.max()) if len(counts) else 0}
        return features, info

    def compute_radial_features(self, positions, species_indices, neighbor_indices, neighbor_vectors):
        """The radial columns (N, R+1), with more than one species also the weighted ones (N, 2(R+1)), from
        per-atom neighbour lists (see ``forward``)."""
        no_triplets = (torch.zeros(0, dtype=torch.long, device=self.device),) * 2
        features = self._from_neighbor_info(positions, species_indices, neighbor_indices, neighbor_vectors, False,
                                            no_triplets)
        return features.index_select(1, self._columns(radial=True))

    def compute_angular_features(self, positions, species_indices, neighbor_indices, neighbor_vectors):
        """The angular columns (N, A+1), or (N, 2(A+1)) with the weighted ones, from per-atom neighbour lists."""
        features = self._from_neighbor_info(positions, species_indices, neighbor_indices, neighbor_vectors, False)
        return features.index_select(1, self._columns(radial=False))

    def compute_feature_gradients_from_neighbor_info(self, positions, species, neighbor_indices,
                                                     neighbor_vectors) -> tuple:
        """``compute_feature_gradients`` from per-atom neighbour lists instead of a search."""
        features, derivatives = self._from_neighbor_info(positions, species, neighbor_indices, neighbor_vectors,
                                                         True)
        return features, derivatives.to_dense()

    # ------------------------------------------------------------------ CSR graph and triplets

    def neighbor_graph(self, positions, cell=None, pbc=None) -> tuple:
        """(graph, triplets) of one structure: aenet-python's ``NeighborGraph`` (``center_ptr`` (N+1,),
        ``nbr_idx`` (E,), ``r_ij`` (E, 3), ``d_ij`` (E,)) and ``TripletIndex`` (``tri_i``, ``tri_j``, ``tri_k``,
        ``tri_j_local``, ``tri_k_local``) dicts, what the ``*_with_graph`` methods take.

        Every r_ij comes from the positions wrapped into the home cell, the frame of the image offsets.
        """
        positions, batch, cells, pbcs = self._geometry(positions, cell, pbc)
        nl = self._search(positions, batch, cells, pbcs)
        degree = torch.bincount(nl.center, minlength=len(positions))
        center_ptr = torch.cat([degree.new_zeros(1), torch.cumsum(degree, 0)])
        angular = torch.nonzero(nl.distances <= self.ang_cutoff).squeeze(1)
        first, second = (_take(angular, t) for t in _pairs_within_center(_take(nl.center, angular), len(positions)))
        tri_i = _take(nl.center, first)
        start = _take(center_ptr, tri_i)
        graph = {"center_ptr": center_ptr.int(), "nbr_idx": nl.neighbor.int(), "r_ij": nl.vectors,
                 "d_ij": nl.distances}
        triplets = {"tri_i": tri_i.int(), "tri_j": _take(nl.neighbor, first).int(),
                    "tri_k": _take(nl.neighbor, second).int(), "tri_j_local": (first - start).int(),
                    "tri_k_local": (second - start).int()}
        return graph, triplets

    def forward_with_graph(self, positions, species_indices, graph, triplets=None, center_indices=None):
        """Raw features (N, F) from a CSR neighbour graph and its triplets (see ``neighbor_graph``); without
        triplets the angular columns are zero.  ``center_indices`` is accepted and, as in aenet-python,
        unused: every centre is computed."""
        return self._with_graph(positions, species_indices, graph, triplets, False)

    def compute_features_and_local_derivatives_with_graph(self, positions, species_indices, graph, triplets,
                                                          center_indices=None) -> tuple:
        """(features, {"radial": ..., "angular": ...}): the sparse derivatives of the unweighted basis as
        aenet-python's dicts: radial ``center_idx``, ``neighbor_idx``, ``dG_drij`` (E, R+1, 3),
        ``neighbor_typespin``; angular ``center_idx``, ``neighbor_j_idx``, ``neighbor_k_idx``, ``grads_i/j/k``
        (T, A+1, 3), ``triplet_typespin`` (typespins None with one species).  Radial rows are the edges
        within ``rad_cutoff`` (edges beyond it contribute zero)."""
        features, d = self._with_graph(positions, species_indices, graph, triplets, True)
        radial = {"center_idx": d.center_idx, "neighbor_idx": d.neighbor_idx, "dG_drij": d.dG_drij,
                  "neighbor_typespin": d.neighbor_typespin}
        angular = {"center_idx": d.triplet_center_idx, "neighbor_j_idx": d.neighbor_j_idx,
                   "neighbor_k_idx": d.neighbor_k_idx, "grads_i": d.grads_i, "grads_j": d.grads_j,
                   "grads_k": d.grads_k, "triplet_typespin": d.triplet_typespin}
        return features, {"radial": radial, "angular": angular}

    def compute_feature_gradients_with_graph(self, positions, species_indices, graph, triplets,
                                             center_indices=None) -> tuple:
        """(features (N, F), dense gradients (N, F, N, 3)) from a graph and its triplets."""
        features, derivatives = self._with_graph(positions, species_indices, graph, triplets, True)
        return features, derivatives.to_dense()

    # ------------------------------------------------------------------ inputs to edges

    def _geometry(self, positions, cell, pbc):
        positions = self._as_positions(positions)
        cells, pbcs = prepare_cells([cell], [pbc], self.dtype, self.device)
        return positions, torch.zeros(len(positions), dtype=torch.long, device=self.device), cells, pbcs

    def _single(self, positions, species, cell, pbc):
        positions, batch, cells, pbcs = self._geometry(positions, cell, pbc)
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

    def _columns(self, radial: bool):
        """Feature columns of the radial (else angular) blocks, weighted ones included."""
        nr, na = self.rad_order + 1, self.ang_order + 1
        block = torch.arange(nr) if radial else nr + torch.arange(na)
        return (torch.cat([block, block + nr + na]) if self.multi else block).to(self.device)

    def _from_neighbor_info(self, positions, species, neighbor_indices, neighbor_vectors, with_derivatives,
                            triplets=None):
        positions = self._as_positions(positions)
        n_atoms = len(positions)
        species_idx = self._checked_species(species, n_atoms)
        if len(neighbor_indices) != n_atoms or len(neighbor_vectors) != n_atoms:
            raise ValueError(f"neighbor_indices and neighbor_vectors need one entry per atom ({n_atoms}); got "
                             f"{len(neighbor_indices)} and {len(neighbor_vectors)}")
        neighbor = [torch.as_tensor(i, device=self.device).reshape(-1).long() for i in neighbor_indices]
        vectors = [torch.as_tensor(v, dtype=self.dtype, device=self.device).reshape(-1, 3) for v in neighbor_vectors]
        counts = [len(i) for i in neighbor]
        if counts != [len(v) for v in vectors]:
            raise ValueError("neighbor_indices and neighbor_vectors must have as many rows for every atom")
        center = torch.repeat_interleave(torch.arange(n_atoms, device=self.device),
                                         torch.tensor(counts, dtype=torch.long, device=self.device))
        edges, _ = self._kept_edges(center, _cat(neighbor, (0,), torch.long, self.device),
                                    _cat(vectors, (0, 3), self.dtype, self.device))
        return self._from_edges(n_atoms, species_idx, edges, with_derivatives, triplets)

    def _with_graph(self, positions, species_indices, graph, triplets, with_derivatives):
        n_atoms = len(self._as_positions(positions))
        species_idx = self._checked_species(species_indices, n_atoms)
        center_ptr = graph["center_ptr"].to(device=self.device, dtype=torch.long)
        if len(center_ptr) != n_atoms + 1:
            raise ValueError(f"graph['center_ptr'] must have N + 1 = {n_atoms + 1} entries; got {len(center_ptr)}")
        center = torch.repeat_interleave(torch.arange(n_atoms, device=self.device), center_ptr.diff())
        if triplets is None:
            first = second = torch.zeros(0, dtype=torch.long, device=self.device)
        else:
            start = _take(center_ptr, triplets["tri_i"].to(device=self.device, dtype=torch.long))
            first, second = (start + triplets[key].to(device=self.device, dtype=torch.long)
                             for key in ("tri_j_local", "tri_k_local"))
        edges, kept = self._kept_edges(center, graph["nbr_idx"].to(device=self.device, dtype=torch.long),
                                       graph["r_ij"].to(device=self.device, dtype=self.dtype), (first, second))
        return self._from_edges(n_atoms, species_idx, edges, with_derivatives, kept)

    def _kept_edges(self, center, neighbor, vectors, triplets=None):
        """The edges (centre, neighbour, r_ij, d_ij) with d_ij > min_cutoff, and ``triplets`` (pairs of edge
        indices) renumbered to them, dropping those with a dropped edge.  Distances are taken only of the
        kept vectors, so coincident atoms never put a NaN into a gradient."""
        with torch.no_grad():
            keep = row_dot(vectors, vectors) > self.min_cutoff ** 2
        index = torch.nonzero(keep).squeeze(1)
        center, neighbor, vectors = (_take(t, index) for t in (center, neighbor, vectors))
        edges = (center, neighbor, vectors, row_dot(vectors, vectors).sqrt())
        if triplets is None:
            return edges, None
        first, second = _select(_take(keep, triplets[0]) & _take(keep, triplets[1]), *triplets)
        position = torch.cumsum(keep, 0) - 1
        return edges, (_take(position, first), _take(position, second))

    def _search(self, positions, batch, cells, pbc):
        with self._timed("nblist_time"):
            nl = batched_neighbor_list(positions, batch, cells, pbc, self.max_cutoff, self.min_cutoff, self.backend)
        self.nblist_calls += int(self.profile_timing)
        return nl

    # ------------------------------------------------------------------ the features

    def _featurize(self, positions, species_idx, batch, cells, pbc, with_derivatives, pairs=None):
        if pairs is None:
            nl = self._search(positions, batch, cells, pbc)
        else:
            nl = neighbor_list_from_pairs(positions, batch, cells, pbc, *pairs)
        with self._timed("feature_time"):
            return self._from_edges(len(positions), species_idx, _edges_of(nl), with_derivatives)

    def _from_edges(self, n_atoms, species_idx, edges, with_derivatives, triplets=None):
        """Features (and derivatives) of edges (centre, neighbour, r_ij, d_ij) sorted by centre, with
        min_cutoff < d_ij; angular triplets are every pair of edges of a centre within ``ang_cutoff``, or
        ``triplets`` (pairs of edge indices) where given, of which those within ``ang_cutoff`` count."""
        distances = edges[3]
        r_center, r_neighbor, r_vec, r_dist = _select(distances <= self.rad_cutoff, *edges)
        in_reach = distances <= self.ang_cutoff
        if triplets is None:
            a_center, a_neighbor, a_vec, a_dist = _select(in_reach, *edges)
            # Triplets (i, j, k), j < k: every pair of angular edges sharing a centre.
            first, second = _pairs_within_center(a_center, n_atoms)
        else:
            a_center, a_neighbor, a_vec, a_dist = edges
            first, second = _select(_take(in_reach, triplets[0]) & _take(in_reach, triplets[1]), *triplets)
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


def _edges_of(nl):
    """The (centre, neighbour, r_ij, d_ij) edges of a NeighborList."""
    return nl.center, nl.neighbor, nl.vectors, nl.distances


def _cat(tensors, empty_shape, dtype, device):
    """torch.cat of a list that may be empty (then an empty tensor of ``empty_shape``)."""
    return torch.cat(tensors) if tensors else torch.zeros(empty_shape, dtype=dtype, device=device)


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


class BatchedFeaturizer(nn.Module):
    """Featurise many structures in one pass of the descriptor.

    ``featurizer(batch_positions, batch_species, batch_cells=None, batch_pbc=None)``
    takes per-structure lists (positions (N_b, 3), species symbols, cell or
    None, pbc or None) and returns ``(features, batch_indices)``: the raw
    features of all atoms concatenated in input order, and the structure
    index of each atom.  ``with_derivatives`` also returns the
    ``LocalDerivatives`` of the whole batch (atom indices are global).
    """

    def __init__(self, featurizer: ChebyshevDescriptor):
        super().__init__()
        self.featurizer = featurizer

    def forward(self, batch_positions, batch_species, batch_cells=None, batch_pbc=None, pairs=None):
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
        nl = self.featurizer._search(positions, batch, cells, pbcs)
        return pairs_by_structure(nl, torch.bincount(batch, minlength=len(batch_positions)))

    def _run(self, batch_positions, batch_species, batch_cells, batch_pbc, with_derivatives, pairs=None):
        positions, species, batch, cells, pbcs = self._inputs(batch_positions, batch_species, batch_cells, batch_pbc)
        out = self.featurizer._featurize(positions, species, batch, cells, pbcs, with_derivatives, pairs)
        if with_derivatives:
            return out[0], batch, out[1]
        return out, batch

    def _inputs(self, batch_positions, batch_species, batch_cells, batch_pbc):
        d = self.featurizer
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
