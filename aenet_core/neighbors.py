"""Periodic neighbour lists for batches of structures, in pure torch or with torch-cluster.

Every structure of a batch is handled at once, without Python loops over
atoms or pairs:

1. positions are wrapped once into the home cell along periodic axes
   (fractional coordinates in [0, 1)); every vector r_ij is derived from these
   same wrapped coordinates, r_ij = w_j + k @ cell - w_i, where k is the
   integer image offset of atom j;
2. periodic images are generated for every offset within
   ``ceil(cutoff / width)`` cells along each periodic axis (width = distance
   between opposite cell faces) and kept only when they lie within ``cutoff``
   of the home cell; this covers cells much smaller than the cutoff,
   including images of the central atom itself;
3. candidate pairs come, in pure torch, from all (atom, image) pairs of a
   structure while their number is small, else from a cell list (points
   hashed into cubic bins of edge >= cutoff, each atom looking into its 27
   surrounding bins); or from ``torch_cluster.radius`` when the backend
   allows it;
4. pairs with ``min_distance < d <= cutoff`` are kept (so an atom is never
   its own neighbour at zero offset) and returned sorted by (centre,
   neighbour, image), so every path produces the identical list.

Structures without a cell are passed with the identity cell and no periodic
axis; mixed periodicity (e.g. slabs) is supported.
"""
from dataclasses import dataclass

import torch

from aenet_core import backend


@dataclass
class NeighborList:
    """Directed pairs (i, j, k) with r_ij = w_j + k @ cell - w_i, |r_ij| <= cutoff.

    ``wrapped_positions`` are the w above: the input positions moved into the
    home cell along periodic axes (still differentiable with respect to the
    input positions).  Pairs are sorted by centre, then neighbour, then image.
    """

    center: torch.Tensor  # (E,) int64 index of atom i
    neighbor: torch.Tensor  # (E,) int64 index of atom j
    offset: torch.Tensor  # (E, 3) int64 image k of j, relative to wrapped positions
    vectors: torch.Tensor  # (E, 3) r_ij
    distances: torch.Tensor  # (E,)
    wrapped_positions: torch.Tensor  # (N, 3)

    def __len__(self) -> int:
        return int(self.center.numel())


def neighbor_list(positions, cutoff: float, cell=None, pbc=None) -> NeighborList:
    """Neighbour list of one structure (see ``batched_neighbor_list``).

    ``cell`` rows are lattice vectors; ``pbc`` defaults to all periodic when a
    cell is given.  Without a cell the structure is isolated.
    """
    positions = torch.as_tensor(positions)
    cells, pbcs = prepare_cells([cell], [pbc], positions.dtype, positions.device)
    batch = torch.zeros(len(positions), dtype=torch.long, device=positions.device)
    return batched_neighbor_list(positions, batch, cells, pbcs, cutoff)


def prepare_cells(cells, pbcs, dtype, device):
    """Stack per-structure cells/pbc into (B, 3, 3) and (B, 3) tensors.

    A missing cell becomes the identity with no periodic axis.  A missing pbc
    means all periodic when a cell is given.  Raises ValueError for malformed
    or singular cells and for pbc without a cell.
    """
    out_cells, out_pbc = [], []
    for b, (cell, pbc) in enumerate(zip(cells, pbcs)):
        if cell is None:
            if pbc is not None and bool(torch.as_tensor(pbc).any()):
                raise ValueError(f"structure {b}: pbc={pbc} is periodic but no cell was given")
            out_cells.append(torch.eye(3, dtype=dtype, device=device))
            out_pbc.append(torch.zeros(3, dtype=torch.bool, device=device))
            continue
        cell = torch.as_tensor(cell, dtype=dtype, device=device)
        if cell.shape != (3, 3):
            raise ValueError(f"structure {b}: cell must have shape (3, 3); got {tuple(cell.shape)}")
        pbc = torch.ones(3, dtype=torch.bool) if pbc is None else torch.as_tensor(pbc, dtype=torch.bool)
        if pbc.shape != (3,):
            raise ValueError(f"structure {b}: pbc must have 3 entries; got {tuple(pbc.shape)}")
        if not bool(pbc.any()):
            cell = torch.eye(3, dtype=dtype, device=device)  # isolated: the cell plays no role
        elif abs(float(torch.dot(cell[0], torch.linalg.cross(cell[1], cell[2])))) < 1e-12:
            raise ValueError(f"structure {b}: cell is singular (zero volume): {cell.tolist()}")
        out_cells.append(cell)
        out_pbc.append(pbc.to(device))
    return torch.stack(out_cells), torch.stack(out_pbc)


# Above this many (atom, image) candidate pairs the cell list replaces the all-pairs search.
ALL_PAIRS_LIMIT = 1 << 21


def batched_neighbor_list(positions, batch, cells, pbc, cutoff: float, min_distance: float = 0.0) -> NeighborList:
    """All pairs with ``min_distance < d <= cutoff`` for a batch of structures.

    positions (N, 3) may require grad; batch (N,) int64 structure index of
    each atom, non-decreasing; cells (B, 3, 3) with lattice vectors as rows;
    pbc (B, 3) bool.  Atom indices in the result are global (into positions).
    Coincident atoms (d = 0) are never neighbours.
    """
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive; got {cutoff}")
    # Rows b x c, c x a, a x b: the reciprocal vectors times the volume, and the face normals.
    normals = torch.linalg.cross(cells[:, [1, 2, 0]], cells[:, [2, 0, 1]], dim=2)
    volume = (cells[:, 0] * normals[:, 0]).sum(1)
    with torch.no_grad():
        frac = _times(positions.detach(), (normals / volume[:, None, None]).transpose(1, 2).index_select(0, batch))
        home = torch.floor(frac) * pbc.index_select(0, batch)
        frac = frac - home
    wrapped = positions - _times(home, cells.index_select(0, batch))
    widths = volume.abs()[:, None] / torch.linalg.norm(normals, dim=2)
    points = _periodic_images(wrapped, frac, batch, cells, pbc, cutoff / widths)

    with torch.no_grad():
        if backend.cluster_module() is not None:
            center, point = _candidates_cluster(wrapped.detach(), batch, points, cutoff)
        elif _count_all_pairs(batch, points) <= ALL_PAIRS_LIMIT:
            center, point = _candidates_all_pairs(batch, points)
        else:
            center, point = _candidates_cell_list(wrapped.detach(), batch, points, cutoff)
        distance = torch.linalg.norm(_take(points["pos"], point) - _take(wrapped, center), dim=1)
        keep = torch.nonzero((distance <= cutoff) & (distance > min_distance)).squeeze(1)
        center, point = _take(center, keep), _take(point, keep)
        order = torch.argsort(center * len(points["atom"]) + point)
        center, point = _take(center, order), _take(point, order)

    vectors = _take(points["pos"], point) - _take(wrapped, center)
    return NeighborList(center, _take(points["atom"], point), _take(points["offset"], point), vectors,
                        torch.linalg.norm(vectors, dim=1), wrapped)


def _take(tensor, index):
    """Rows of ``tensor`` at ``index`` (index_select is much faster than advanced indexing on CPU)."""
    return tensor.index_select(0, index)


def _times(vectors, matrices):
    """Row vector times matrix for each row: out[n, j] = sum_i vectors[n, i] matrices[n, i, j]."""
    return (vectors.unsqueeze(2) * matrices).sum(1)


def _segment_arange(counts):
    """For counts [2, 3] return ([0, 0, 1, 1, 1], [0, 1, 0, 1, 2]): segment id and rank within it."""
    segment = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    return segment, torch.arange(len(segment), device=counts.device) - _take(starts, segment)


def _periodic_images(wrapped, frac, batch, cells, pbc, reach):
    """Every image of every atom that lies within ``reach`` cell widths of its home cell.

    ``frac`` are the wrapped fractional coordinates, ``reach`` (B, 3) the
    cutoff in units of the distance between opposite cell faces.  Returns a
    dict of per-point tensors: ``atom`` (index of the original atom),
    ``offset`` (int64 lattice offset), ``pos`` (Cartesian position, carrying
    the gradient of ``wrapped``) and ``structure``; points are ordered by
    atom, then offset, and the zero-offset copy of each atom is always present.
    """
    with torch.no_grad():
        reach = torch.where(pbc, reach, torch.zeros_like(reach))
        n_images = torch.ceil(reach).long()  # images needed along each axis, per structure
        sizes = 2 * n_images + 1

        # Offsets of structure b: all k with |k_a| <= n_images[b, a], in row-major order.
        per_structure = sizes.prod(1)
        offset_structure, rank = _segment_arange(per_structure)
        sz, sy = sizes[offset_structure, 2], sizes[offset_structure, 1]
        grid = torch.stack([rank // (sy * sz), (rank // sz) % sy, rank % sz], dim=1)
        offsets = grid - _take(n_images, offset_structure)
        first_offset = torch.cumsum(per_structure, 0) - per_structure

        # Pair every atom with every offset of its structure, then drop distant images.
        atom, rank = _segment_arange(_take(per_structure, batch))
        structure = _take(batch, atom)
        offset = _take(offsets, _take(first_offset, structure) + rank)
        image_frac = _take(frac, atom) + offset
        slack = _take(reach, structure) + 1e-6
        inside = (image_frac >= -slack) & (image_frac <= 1 + slack)
        keep = torch.nonzero((inside | ~_take(pbc, structure)).all(1)).squeeze(1)
        atom, offset, structure = _take(atom, keep), _take(offset, keep), _take(structure, keep)
    pos = _take(wrapped, atom) + _times(offset.to(wrapped.dtype), _take(cells, structure))
    return {"atom": atom, "offset": offset, "pos": pos, "structure": structure}


def _points_per_structure(batch, points):
    n_structures = int(batch[-1]) + 1 if len(batch) else 0
    return torch.bincount(points["structure"], minlength=n_structures)


def _count_all_pairs(batch, points):
    atoms = torch.bincount(batch) if len(batch) else batch
    return int((atoms * _points_per_structure(batch, points)[: len(atoms)]).sum())


def _candidates_all_pairs(batch, points):
    """Every (centre atom, point of the same structure) pair, sorted by centre then point."""
    per_structure = _points_per_structure(batch, points)
    first_point = torch.cumsum(per_structure, 0) - per_structure
    center, rank = _segment_arange(per_structure[batch])
    return center, first_point[batch[center]] + rank


def _candidates_cell_list(wrapped, batch, points, cutoff):
    """Candidate pairs (centre atom, point) from a hashed cell list of bins a bit wider than the cutoff."""
    pos, structure = points["pos"].detach(), points["structure"]
    n_structures = int(batch[-1]) + 1
    bin_edge = cutoff * (1 + 1e-4)  # neighbours are then never two bins apart

    origin = torch.full((n_structures, 3), float("inf"), dtype=pos.dtype, device=pos.device)
    origin = origin.scatter_reduce(0, structure.unsqueeze(1).expand(-1, 3), pos, "amin")
    point_bin = torch.floor((pos - origin[structure]) / bin_edge).long()
    n_bins = torch.zeros((n_structures, 3), dtype=torch.long, device=pos.device)
    n_bins = n_bins.scatter_reduce(0, structure.unsqueeze(1).expand(-1, 3), point_bin + 1, "amax")
    dims = n_bins.max(0).values

    def bin_hash(structure_id, bins):
        return ((structure_id * dims[0] + bins[..., 0]) * dims[1] + bins[..., 1]) * dims[2] + bins[..., 2]

    sorted_hash, sorted_point = torch.sort(bin_hash(structure, point_bin))

    center_bin = torch.floor((wrapped - origin[batch]) / bin_edge).long()
    steps = torch.tensor([-1, 0, 1], device=pos.device)
    nearby = center_bin.unsqueeze(1) + torch.cartesian_prod(steps, steps, steps)  # (N, 27, 3)
    valid = ((nearby >= 0) & (nearby < n_bins[batch].unsqueeze(1))).all(2)
    query = bin_hash(batch.unsqueeze(1), nearby)
    start = torch.searchsorted(sorted_hash, query)
    count = (torch.searchsorted(sorted_hash, query, right=True) - start) * valid

    query_id, rank = _segment_arange(count.flatten())
    return query_id // 27, sorted_point[start.flatten()[query_id] + rank]


def _candidates_cluster(wrapped, batch, points, cutoff):
    """Candidate pairs from torch_cluster.radius, with the neighbour cap raised until nothing is cut."""
    radius = backend.cluster_module().radius
    pos = points["pos"].detach()
    cap = 64
    while True:
        found = radius(pos, wrapped, cutoff * (1 + 1e-6), points["structure"], batch, max_num_neighbors=cap)
        per_center = torch.bincount(found[0], minlength=len(wrapped))
        if len(per_center) == 0 or int(per_center.max()) < cap:
            return found[0], found[1]
        cap *= 4
