"""Periodic neighbour lists for batches of structures, in pure torch or with torch-cluster.

Every structure of a batch is handled at once, without Python loops over
atoms or pairs:

1. positions are wrapped once into the home cell along periodic axes
   (fractional coordinates in [0, 1)); every vector r_ij is derived from these
   same wrapped coordinates, r_ij = w_j + k @ cell - w_i, where k is the
   integer image offset of atom j;
2. a neighbour within the cutoff is at most ``reach = cutoff / width`` cells
   away along each periodic axis (width = distance between opposite cell
   faces), so cells much smaller than the cutoff, and images of the central
   atom itself, are covered;
3. candidates: while a batch has few atom pairs, every atom pair (i, j) of a
   structure is paired with exactly the images k that satisfy
   |f_j + k - f_i| <= reach on every axis (no search at all).  Larger batches
   replicate the atoms into the images within ``reach`` of the home cell and
   search them with ``torch_cluster.radius`` when the backend allows it, or
   else with a pure-torch cell list (bins of edge >= cutoff, each atom
   looking into its 27 surrounding bins);
4. pairs with ``min_distance < d <= cutoff`` are kept (so an atom is never
   its own neighbour at zero offset) and returned sorted by (centre,
   neighbour, image), so every path produces the identical list.

Structures without a cell are passed with the identity cell and no periodic
axis; mixed periodicity (e.g. slabs) is supported.

``pair_search`` lists one structure's pairs with image offsets relative to the
positions as given (vesin searches when installed), for a Verlet list that
outlives atoms crossing the cell faces; ``wrapped_offsets`` converts them to
the offsets above.
"""
from dataclasses import dataclass

import numpy as np
import torch

from aenet_core import backend as backends
from aenet_core.structure import SINGULAR_VOLUME


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


def neighbor_list(positions, cutoff: float, cell=None, pbc=None, backend=None) -> NeighborList:
    """Neighbour list of one structure (see ``batched_neighbor_list``).

    ``cell`` rows are lattice vectors; ``pbc`` defaults to all periodic when a
    cell is given.  Without a cell the structure is isolated.
    """
    positions = torch.as_tensor(positions)
    cells, pbcs = prepare_cells([cell], [pbc], positions.dtype, positions.device)
    batch = torch.zeros(len(positions), dtype=torch.long, device=positions.device)
    return batched_neighbor_list(positions, batch, cells, pbcs, cutoff, backend=backend)


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
        elif abs(float(torch.dot(cell[0], torch.linalg.cross(cell[1], cell[2])))) < SINGULAR_VOLUME:
            raise ValueError(f"structure {b}: cell is singular (zero volume): {cell.tolist()}")
        out_cells.append(cell)
        out_pbc.append(pbc.to(device))
    return torch.stack(out_cells), torch.stack(out_pbc)


# Above this many atom pairs in a batch, candidates come from a radius search over images.
PAIR_LIMIT = 1 << 20


def batched_neighbor_list(positions, batch, cells, pbc, cutoff: float, min_distance: float = 0.0,
                          backend=None) -> NeighborList:
    """All pairs with ``min_distance < d <= cutoff`` for a batch of structures.

    positions (N, 3) may require grad; batch (N,) int64 structure index of
    each atom, non-decreasing; cells (B, 3, 3) with lattice vectors as rows;
    pbc (B, 3) bool.  Atom indices in the result are global (into positions).
    Coincident atoms (d = 0) are never neighbours.  ``backend`` ('auto' or
    'torch', see ``aenet_core.backend``) chooses the radius search of large batches.
    """
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive; got {cutoff}")
    cluster = backends.cluster_module(backends.resolve(backend))
    wrapped, frac, normals, volume = _wrap(positions, batch, cells, pbc)
    with torch.no_grad():
        reach = torch.where(pbc, cutoff * torch.linalg.norm(normals, dim=2) / volume.abs()[:, None], 0.0)
        table = _offset_table(cells, reach)
        atoms_per_structure = torch.bincount(batch)
        if int((atoms_per_structure * atoms_per_structure).sum()) <= PAIR_LIMIT:
            center, neighbor, which = _pair_images(frac, batch, atoms_per_structure, reach, pbc, table)
        else:
            center, neighbor, which = _searched_images(wrapped.detach(), frac, batch, pbc, reach, table, cutoff,
                                                       cluster)
        gap = _take(wrapped.detach(), neighbor) - _take(wrapped.detach(), center) + _take(table["shift"], which)
        distance2 = row_dot(gap, gap)
        keep = torch.nonzero((distance2 <= cutoff**2) & (distance2 > min_distance**2)).squeeze(1)
        center, neighbor, which = _take(center, keep), _take(neighbor, keep), _take(which, keep)
    shift = _take(table["shift"].to(wrapped.dtype), which)
    return _edges(wrapped, center, neighbor, _take(table["offset"], which), shift)


def neighbor_list_from_pairs(positions, batch, cells, pbc, center, neighbor, offset) -> NeighborList:
    """The NeighborList of known pairs (i, j, image k), e.g. cached from an earlier search.

    Vectors are recomputed from ``positions``, wrapped as ``batched_neighbor_list`` wraps them.
    """
    wrapped = _wrap(positions, batch, cells, pbc)[0]
    shift = _times(offset.to(wrapped.dtype), _take(cells, _take(batch, center)))
    return _edges(wrapped, center, neighbor, offset, shift)


def pair_search(positions, cutoff: float, cell=None, pbc=None, backend=None) -> tuple:
    """Pairs (i, j, S) of one structure with 0 < d <= cutoff, where r_ij = x_j - x_i + S @ cell for the
    positions x as given (not wrapped: an atom outside the home cell keeps its own images), sorted by
    i, then j, then S; int64 tensors.

    vesin searches when it imports and ``backend`` (see ``aenet_core.backend``) is 'auto'; otherwise
    ``batched_neighbor_list`` does.  Both find the same pairs.
    """
    positions = torch.as_tensor(positions)
    batch, cells, pbcs = _one_structure(positions, cell, pbc)
    vesin = _vesin() if backends.resolve(backend) == "auto" else None
    if vesin is None:
        nl = batched_neighbor_list(positions.detach(), batch, cells, pbcs, cutoff, backend=backend)
        home = _home(positions, batch, cells, pbcs)[1].long()
        return nl.center, nl.neighbor, nl.offset - _take(home, nl.neighbor) + _take(home, nl.center)
    search = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shift, distance = search.compute(positions.detach().cpu().numpy(), cells[0].cpu().numpy(),
                                           pbcs[0].cpu().numpy(), "ijSd")
    keep = distance > 0  # coincident atoms are never neighbours, as in batched_neighbor_list
    i, j, shift = i[keep].astype(np.int64), j[keep].astype(np.int64), shift[keep].astype(np.int64)
    order = np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], j, i))
    return tuple(torch.from_numpy(np.ascontiguousarray(a[order])).to(positions.device) for a in (i, j, shift))


def wrapped_offsets(positions, cell, pbc, center, neighbor, shift):
    """The image offsets k relative to the wrapped positions (what ``neighbor_list_from_pairs`` and the
    descriptor's ``pairs=`` take) of one structure's pairs whose ``shift`` S is relative to ``positions``
    as given (``pair_search``): k = S + h_j - h_i, with h the home-cell image that wrapping removes.

    ``positions`` and ``cell`` must have the dtype the descriptor computes in, so that h is the same.
    """
    positions = torch.as_tensor(positions)
    home = _home(positions, *_one_structure(positions, cell, pbc))[1].long()
    return shift + _take(home, neighbor) - _take(home, center)


def _one_structure(positions, cell, pbc):
    """(batch, cells, pbc) of one structure, as ``neighbor_list`` passes it to ``batched_neighbor_list``."""
    cells, pbcs = prepare_cells([cell], [pbc], positions.dtype, positions.device)
    return torch.zeros(len(positions), dtype=torch.long, device=positions.device), cells, pbcs


def _vesin():
    """The vesin module, or None when it is not installed."""
    try:
        import vesin
    except ImportError:
        return None
    return vesin


def pairs_by_structure(nl: NeighborList, atoms_per_structure) -> list:
    """(centre, neighbour, offset) per structure of a batch, with atom indices local to the structure."""
    first_atom, sizes = rows_per_structure(nl.center, atoms_per_structure)
    blocks = zip(torch.split(nl.center, sizes), torch.split(nl.neighbor, sizes), torch.split(nl.offset, sizes))
    return [(c - first_atom[b], n - first_atom[b], k) for b, (c, n, k) in enumerate(blocks)]


def rows_per_structure(center, atoms_per_structure):
    """For rows sorted by centre atom: each structure's first atom index and its number of rows."""
    counts = torch.as_tensor(atoms_per_structure, device=center.device)
    first_atom = torch.cumsum(counts, 0) - counts
    structure = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    return first_atom, torch.bincount(_take(structure, center), minlength=len(counts)).tolist()


def _wrap(positions, batch, cells, pbc):
    """Positions moved into the home cell along periodic axes (differentiable), their fractional
    coordinates, and each cell's face normals (b x c, c x a, a x b) and signed volume."""
    frac, home, normals, volume = _home(positions, batch, cells, pbc)
    wrapped = positions - _times(home, _take(cells, batch))
    return wrapped, frac - home, normals, volume


def _home(positions, batch, cells, pbc):
    """Fractional coordinates of the positions, the image h of each atom's home cell (floor of its fractional
    coordinates along periodic axes, 0 along the others; as floats), and each cell's face normals and volume."""
    normals = torch.linalg.cross(cells[:, [1, 2, 0]], cells[:, [2, 0, 1]], dim=2)
    volume = (cells[:, 0] * normals[:, 0]).sum(1)
    with torch.no_grad():
        frac = _times(positions.detach(), _take((normals / volume[:, None, None]).transpose(1, 2), batch))
        home = torch.floor(frac) * _take(pbc, batch)
    return frac, home, normals, volume


def _edges(wrapped, center, neighbor, offset, shift) -> NeighborList:
    vectors = _take(wrapped, neighbor) - _take(wrapped, center) + shift
    return NeighborList(center, neighbor, offset, vectors, row_dot(vectors, vectors).sqrt(), wrapped)


def _offset_table(cells, reach):
    """Every lattice offset k a neighbour can need, per structure, with its Cartesian shift k @ cell.

    Structure b gets the grid |k_a| <= floor(reach[b, a]) + 1 (0 along
    non-periodic axes) in row-major order starting at row ``first[b]``;
    ``index(structure, k)`` gives the row of offset k of that structure.
    """
    half = torch.where(reach > 0, torch.floor(reach) + 1, 0.0).long()
    sizes = 2 * half + 1
    per_structure = sizes.prod(1)
    structure, rank = _segment_arange(per_structure)
    offset = _unravel(rank, _take(sizes, structure)) - _take(half, structure)
    first = torch.cumsum(per_structure, 0) - per_structure

    def index(of_structure, k):
        grid = k + _take(half, of_structure)
        size = _take(sizes, of_structure)
        return _take(first, of_structure) + (grid[:, 0] * size[:, 1] + grid[:, 1]) * size[:, 2] + grid[:, 2]

    shift = _times(offset.to(cells.dtype), _take(cells, structure))
    return {"offset": offset, "shift": shift, "structure": structure, "first": first, "sizes": sizes,
            "per_structure": per_structure, "index": index}


def _take(tensor, index):
    """Rows of ``tensor`` at ``index`` (index_select is much faster than advanced indexing on CPU)."""
    return tensor.index_select(0, index)


def _times(vectors, matrices):
    """Row vector times matrix for each row: out[n, j] = sum_i vectors[n, i] matrices[n, i, j]."""
    return torch.bmm(vectors.unsqueeze(1), matrices).squeeze(1)


def row_dot(a, b):
    """Dot products of corresponding rows of two (E, 3) tensors (a matrix-vector product is far faster
    than ``.sum(1)`` on CPU)."""
    return (a * b) @ a.new_ones(3)


def _segment_arange(counts):
    """For counts [2, 3] return ([0, 0, 1, 1, 1], [0, 1, 0, 1, 2]): segment id and rank within it."""
    segment = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    return segment, torch.arange(len(segment), device=counts.device) - _take(starts, segment)


def _unravel(rank, sizes):
    """Row-major multi-index (R, 3) of ``rank`` in grids of the given (R, 3) sizes."""
    sy, sz = sizes[:, 1], sizes[:, 2]
    return torch.stack([rank // (sy * sz), (rank // sz) % sy, rank % sz], dim=1)


def _pair_images(frac, batch, atoms_per_structure, reach, pbc, table):
    """(i, j, row of k in the offset table) for every atom pair of a structure and every image k
    with |f_j + k - f_i| <= reach on each periodic axis.  Sorted by i, then j, then k (row-major).
    """
    first_atom = torch.cumsum(atoms_per_structure, 0) - atoms_per_structure
    center, rank = _segment_arange(_take(atoms_per_structure, batch))
    structure = _take(batch, center)
    neighbor = _take(first_atom, structure) + rank
    periodic_frac = frac * _take(pbc, batch)  # zero along non-periodic axes: only k = 0 fits there
    f_diff = _take(periodic_frac, center) - _take(periodic_frac, neighbor)
    r = _take(reach, structure) + 1e-9
    low = torch.ceil(f_diff - r).long()
    sizes = torch.floor(f_diff + r).long() - low + 1  # the box of offsets each pair needs
    # Per pair: the table row of offset ``low`` and the table's row strides along x and y; each
    # candidate then adds its position inside the box (row-major, like the table).
    table_sizes = _take(table["sizes"], structure)
    per_pair = torch.stack([table["index"](structure, low), table_sizes[:, 1] * table_sizes[:, 2], table_sizes[:, 2],
                            sizes[:, 1] * sizes[:, 2], sizes[:, 2], sizes[:, 1]], dim=1)
    pair, rank = _segment_arange(sizes.prod(1))
    base, stride_x, stride_y, box_yz, box_z, box_y = _take(per_pair, pair).unbind(1)
    which = base + (rank // box_yz) * stride_x + ((rank // box_z) % box_y) * stride_y + rank % box_z
    return _take(center, pair), _take(neighbor, pair), which


def _searched_images(wrapped, frac, batch, pbc, reach, table, cutoff, cluster):
    """(i, j, row of k in the offset table) candidates from a radius search (torch_cluster when ``cluster``
    is that module) over the images that lie within ``reach`` of the home cell, sorted like ``_pair_images``."""
    points = _periodic_images(wrapped, frac, batch, pbc, reach, table)
    if cluster is not None:
        center, point = _candidates_cluster(wrapped, batch, points, cutoff, cluster.radius)
    else:
        center, point = _candidates_cell_list(wrapped, batch, points, cutoff)
    order = torch.argsort(center * len(points["atom"]) + point)  # points are ordered by atom, then offset
    center, point = _take(center, order), _take(point, order)
    return center, _take(points["atom"], point), _take(points["which"], point)


def _periodic_images(wrapped, frac, batch, pbc, reach, table):
    """Every image of every atom that lies within ``reach`` cell widths of its home cell.

    Returns a dict of per-point tensors: ``atom`` (index of the original
    atom), ``which`` (row of its offset in the offset table), ``pos``
    (Cartesian position) and ``structure``; points are ordered by atom, then offset.
    """
    atom, rank = _segment_arange(_take(table["per_structure"], batch))
    structure = _take(batch, atom)
    which = _take(table["first"], structure) + rank
    image_frac = _take(frac, atom) + _take(table["offset"], which)
    slack = _take(reach, structure) + 1e-6
    inside = (image_frac >= -slack) & (image_frac <= 1 + slack)
    keep = torch.nonzero((inside | ~_take(pbc, structure)).all(1)).squeeze(1)
    atom, which, structure = _take(atom, keep), _take(which, keep), _take(structure, keep)
    pos = _take(wrapped, atom) + _take(table["shift"], which)
    return {"atom": atom, "which": which, "pos": pos, "structure": structure}


def _candidates_cell_list(wrapped, batch, points, cutoff):
    """Candidate pairs (centre atom, point) from a hashed cell list of bins a bit wider than the cutoff."""
    pos, structure = points["pos"], points["structure"]
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


def _candidates_cluster(wrapped, batch, points, cutoff, radius):
    """Candidate pairs from torch_cluster's ``radius``, with the neighbour cap raised until nothing is cut."""
    pos = points["pos"]
    cap = 64
    while True:
        found = radius(pos, wrapped, cutoff * (1 + 1e-6), points["structure"], batch, max_num_neighbors=cap)
        per_center = torch.bincount(found[0], minlength=len(wrapped))
        if len(per_center) == 0 or int(per_center.max()) < cap:
            return found[0], found[1]
        cap *= 4
