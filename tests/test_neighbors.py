"""Neighbour lists against ase.neighborlist, for every backend, on awkward cells."""
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list

from aenet_core import backend, neighbors
from aenet_core.descriptor import ChebyshevDescriptor
from aenet_core.neighbors import batched_neighbor_list, neighbor_list, prepare_cells

PATHS = ["pair_images", "cell_list", "torch_cluster"]


@pytest.fixture(params=PATHS)
def search(request, monkeypatch):
    """Select one candidate search: per-pair image ranges, the pure-torch cell list, or torch-cluster."""
    if request.param == "torch_cluster" and backend.cluster_module("auto") is None:
        pytest.skip("torch-cluster is not installed")
    monkeypatch.setenv("AENET_CORE_BACKEND", "auto" if request.param == "torch_cluster" else "torch")
    if request.param != "pair_images":
        monkeypatch.setattr(neighbors, "PAIR_LIMIT", 0)
    return request.param


def ase_pairs(positions, cell, pbc, cutoff):
    atoms = Atoms(numbers=[1] * len(positions), positions=positions,
                  cell=np.zeros((3, 3)) if cell is None else cell, pbc=False if pbc is None else pbc)
    i, j, shift = ase_neighbor_list("ijS", atoms, cutoff)
    return sorted(zip(i.tolist(), j.tolist(), map(tuple, shift.tolist())))


def our_pairs(nl, positions, cell):
    """(i, j, S) with S the lattice shift relative to the *input* positions, as ASE reports it."""
    c, n, v = nl.center.numpy(), nl.neighbor.numpy(), nl.vectors.detach().numpy()
    if cell is None:
        shift = np.zeros((len(c), 3), dtype=int)
    else:
        shift = np.rint((v - (positions[n] - positions[c])) @ np.linalg.inv(cell)).astype(int)
    return sorted(zip(c.tolist(), n.tolist(), map(tuple, shift.tolist())))


def random_case(rng):
    cell = np.diag(rng.uniform(1.5, 6.0, size=3)) + rng.normal(size=(3, 3))  # triclinic, not degenerate
    positions = rng.normal(size=(int(rng.integers(1, 12)), 3)) * 3  # many atoms outside the home cell
    return positions, cell, rng.random(3) < 0.7, float(rng.uniform(0.5, 7.0))


def test_random_triclinic_cells_match_ase(search):
    rng = np.random.default_rng(42)
    for _ in range(40):
        positions, cell, pbc, cutoff = random_case(rng)
        nl = neighbor_list(torch.tensor(positions), cutoff, torch.tensor(cell), torch.tensor(pbc))
        assert our_pairs(nl, positions, cell) == ase_pairs(positions, cell, pbc, cutoff)
        assert torch.all(nl.distances <= cutoff) and torch.all(nl.distances > 0)
        np.testing.assert_allclose(nl.distances.numpy(), np.linalg.norm(nl.vectors.numpy(), axis=1))


def test_isolated_molecule_matches_ase(search):
    positions = np.random.default_rng(1).normal(size=(15, 3)) * 2
    nl = neighbor_list(torch.tensor(positions), 2.5)
    assert len(nl) > 0
    assert our_pairs(nl, positions, None) == ase_pairs(positions, None, None, 2.5)
    assert torch.all(nl.offset == 0)


def test_cell_much_smaller_than_cutoff_includes_images_of_the_atom_itself(search):
    cell = np.array([[1.1, 0.0, 0.0], [0.4, 1.3, 0.0], [0.2, 0.3, 0.9]])
    positions = np.array([[0.1, 0.2, 0.3]])
    nl = neighbor_list(torch.tensor(positions), 4.0, torch.tensor(cell))
    pairs = our_pairs(nl, positions, cell)
    assert pairs == ase_pairs(positions, cell, [True] * 3, 4.0)
    assert len(pairs) > 100 and all(i == j == 0 for i, j, _ in pairs)


def test_mixed_periodicity_slab_matches_ase(search):
    rng = np.random.default_rng(3)
    cell = np.array([[3.0, 0.0, 0.0], [1.0, 2.8, 0.0], [0.0, 0.0, 10.0]])
    positions = rng.uniform(-1, 4, size=(8, 3))
    nl = neighbor_list(torch.tensor(positions), 3.5, torch.tensor(cell), torch.tensor([True, True, False]))
    assert our_pairs(nl, positions, cell) == ase_pairs(positions, cell, [True, True, False], 3.5)
    assert torch.all(nl.offset[:, 2] == 0)


def test_vectors_come_from_wrapped_coordinates(search):
    """Moving an atom by lattice vectors changes nothing: vectors, offsets and wrapped positions agree."""
    rng = np.random.default_rng(5)
    cell = np.array([[4.0, 0.2, 0.1], [0.3, 3.5, 0.0], [0.5, -0.2, 3.8]])
    inside = rng.uniform(0, 1, size=(6, 3)) @ cell
    outside = inside + np.array([[2, -1, 0], [0, 0, 0], [-3, 1, 5], [1, 1, 1], [0, -2, 0], [7, 0, -1]]) @ cell
    a = neighbor_list(torch.tensor(inside), 5.0, torch.tensor(cell))
    b = neighbor_list(torch.tensor(outside), 5.0, torch.tensor(cell))
    assert torch.equal(a.center, b.center) and torch.equal(a.neighbor, b.neighbor)
    assert torch.equal(a.offset, b.offset)
    torch.testing.assert_close(a.vectors, b.vectors, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.wrapped_positions, b.wrapped_positions, rtol=0, atol=1e-12)


def test_all_paths_give_identical_lists(monkeypatch):
    rng = np.random.default_rng(11)
    cases = [random_case(rng) for _ in range(10)]
    results = {}
    for path in PATHS:
        if path == "torch_cluster" and backend.cluster_module("auto") is None:
            continue
        monkeypatch.setenv("AENET_CORE_BACKEND", "auto" if path == "torch_cluster" else "torch")
        monkeypatch.setattr(neighbors, "PAIR_LIMIT", 1 << 20 if path == "pair_images" else 0)
        results[path] = [neighbor_list(torch.tensor(p), cut, torch.tensor(c), torch.tensor(q)) for p, c, q, cut in cases]
    assert len(results) >= 2
    reference = results.pop("pair_images")
    for runs in results.values():
        for nl, ref in zip(runs, reference):
            for field in ("center", "neighbor", "offset", "vectors", "distances"):
                assert torch.equal(getattr(nl, field), getattr(ref, field)), field


def test_batch_equals_structures_one_by_one(search):
    rng = np.random.default_rng(8)
    cases = [random_case(rng) for _ in range(5)]
    cutoff = 3.0
    cases.append((rng.normal(size=(4, 3)), None, None, cutoff))  # an isolated molecule in the batch
    positions = torch.tensor(np.concatenate([c[0] for c in cases]))
    counts = torch.tensor([len(c[0]) for c in cases])
    batch = torch.repeat_interleave(torch.arange(len(cases)), counts)
    cells, pbc = prepare_cells([c[1] for c in cases], [c[2] for c in cases], torch.float64, "cpu")
    together = batched_neighbor_list(positions, batch, cells, pbc, cutoff)
    start = 0
    for b, (pos, cell, p, _) in enumerate(cases):
        alone = neighbor_list(torch.tensor(pos), cutoff, None if cell is None else torch.tensor(cell), p)
        mine = batch[together.center] == b
        assert torch.equal(together.center[mine] - start, alone.center)
        assert torch.equal(together.neighbor[mine] - start, alone.neighbor)
        torch.testing.assert_close(together.vectors[mine], alone.vectors, rtol=0, atol=1e-12)
        start += len(pos)


def test_min_distance_excludes_close_pairs():
    positions = torch.tensor([[0.0, 0.0, 0.0], [0.4, 0.0, 0.0], [2.0, 0.0, 0.0]], dtype=torch.float64)
    cells, pbc = prepare_cells([None], [None], torch.float64, "cpu")
    nl = batched_neighbor_list(positions, torch.zeros(3, dtype=torch.long), cells, pbc, 3.0, min_distance=0.5)
    assert sorted(zip(nl.center.tolist(), nl.neighbor.tolist())) == [(0, 2), (1, 2), (2, 0), (2, 1)]


def test_gradient_flows_to_positions():
    cell = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.2, 0.0], [0.3, 0.0, 2.9]], dtype=torch.float64)
    positions = torch.tensor([[0.1, 0.2, 0.3], [1.5, 1.7, 1.2], [4.0, -1.0, 0.5]], dtype=torch.float64,
                             requires_grad=True)
    nl = neighbor_list(positions, 3.0, cell)
    (grad,) = torch.autograd.grad(nl.distances.sum(), positions)
    expected = torch.zeros_like(positions)
    u = (nl.vectors / nl.distances[:, None]).detach()
    expected.index_add_(0, nl.neighbor, u).index_add_(0, nl.center, -u)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("cell, pbc, message", [
    (None, [True, False, False], "no cell"),
    (np.zeros((3, 3)), None, "singular"),
    (np.eye(2), None, r"shape \(3, 3\)"),
    (np.eye(3), [True, True], "3 entries"),
])
def test_bad_cells_are_rejected(cell, pbc, message):
    with pytest.raises(ValueError, match=message):
        neighbor_list(torch.zeros((1, 3), dtype=torch.float64), 2.0, cell, pbc)


def test_cutoff_must_be_positive():
    with pytest.raises(ValueError, match="cutoff"):
        neighbor_list(torch.zeros((2, 3), dtype=torch.float64), 0.0)


def test_backend_is_an_argument_and_the_environment_only_its_default(monkeypatch):
    with pytest.raises(ValueError, match="backend"):
        backend.resolve("fortran")
    monkeypatch.setenv("AENET_CORE_BACKEND", "fortran")
    with pytest.raises(ValueError, match="AENET_CORE_BACKEND"):
        neighbor_list(torch.zeros((2, 3), dtype=torch.float64), 1.0)
    assert len(neighbor_list(torch.tensor([[0.0, 0, 0], [0.5, 0, 0]]), 1.0, backend="torch")) == 2
    monkeypatch.setenv("AENET_CORE_BACKEND", "torch")
    assert backend.resolve() == "torch" and backend.resolve("auto") == "auto"
    assert ChebyshevDescriptor(["H"], 1, 2.0, 0, 2.0).backend == "torch"
    assert ChebyshevDescriptor(["H"], 1, 2.0, 0, 2.0, backend="auto").backend == "auto"



# --------------------------------------------------------------------------- pair_search: vesin or pure torch

TRICLINIC = [[4.1, 0.0, 0.0], [1.3, 3.9, 0.0], [0.7, -0.9, 4.4]]
PAIR_CASES = {
    "triclinic": (np.random.default_rng(21).uniform(0, 1, (9, 3)) @ np.array(TRICLINIC), TRICLINIC, [True] * 3, 5.0),
    "cell smaller than the cutoff": (np.array([[0.1, 0.2, 0.3], [0.9, 0.4, 0.5]]),
                                     [[1.6, 0.0, 0.0], [0.4, 1.7, 0.0], [0.2, 0.5, 1.5]], [True] * 3, 4.5),
    "atoms outside the home cell": (np.random.default_rng(22).normal(size=(8, 3)) * 6, TRICLINIC, [True] * 3, 4.0),
    "slab": (np.random.default_rng(23).uniform(-1, 4, (8, 3)), [[3.0, 0, 0], [1.0, 2.8, 0], [0, 0, 10.0]],
             [True, True, False], 3.5),
    "isolated molecule": (np.random.default_rng(24).normal(size=(12, 3)) * 2, None, False, 3.0),
}


def keyed(center, neighbor, shift, distances):
    """{(i, j, S): distance} of a pair list."""
    keys = zip(np.asarray(center).tolist(), np.asarray(neighbor).tolist(), map(tuple, np.asarray(shift).tolist()))
    return dict(zip(keys, np.asarray(distances)))


def distances(center, neighbor, shift, positions, cell):
    """|x_j - x_i + S @ cell| of each pair, S relative to the positions as given."""
    vectors = positions[neighbor] - positions[center] + (0 if cell is None else np.asarray(shift) @ np.asarray(cell))
    return np.linalg.norm(vectors, axis=1)


@pytest.mark.parametrize("positions, cell, pbc, cutoff", PAIR_CASES.values(), ids=PAIR_CASES)
def test_vesin_and_the_torch_search_find_the_same_pairs(positions, cell, pbc, cutoff, monkeypatch):
    vesin = pytest.importorskip("vesin")
    box = np.zeros((3, 3)) if cell is None else np.array(cell)
    from_vesin = keyed(*vesin.NeighborList(cutoff=cutoff, full_list=True).compute(positions, box, pbc, "ijSd"))
    nl = neighbor_list(torch.tensor(positions), cutoff, None if cell is None else torch.tensor(box), pbc)
    shift = np.zeros((len(nl), 3)) if cell is None else np.linalg.solve(  # S relative to the input positions
        box.T, (nl.vectors.numpy() - positions[nl.neighbor] + positions[nl.center]).T).T
    from_torch = keyed(nl.center, nl.neighbor, np.rint(shift).astype(int), nl.distances)
    assert len(from_torch) > 0 and from_vesin.keys() == from_torch.keys()
    np.testing.assert_allclose([from_vesin[k] for k in from_torch], list(from_torch.values()), rtol=0, atol=1e-12)

    searched = neighbors.pair_search(torch.tensor(positions), cutoff, cell, pbc)
    monkeypatch.setitem(sys.modules, "vesin", None)  # import vesin now fails: the pure-torch search
    fallback = neighbors.pair_search(torch.tensor(positions), cutoff, cell, pbc)
    for a, b in zip(searched, fallback):
        assert torch.equal(a, b)  # the same pairs in the same order
    found = keyed(*searched, distances(*searched, positions, cell))
    assert found.keys() == from_vesin.keys()
    np.testing.assert_allclose(list(found.values()), [from_vesin[k] for k in found], rtol=0, atol=1e-12)


def test_without_vesin_pair_search_uses_the_torch_search(monkeypatch):
    monkeypatch.setitem(sys.modules, "vesin", None)
    calls = []
    search = neighbors.batched_neighbor_list
    monkeypatch.setattr(neighbors, "batched_neighbor_list", lambda *a, **k: calls.append(a) or search(*a, **k))
    positions, cell, pbc, cutoff = PAIR_CASES["atoms outside the home cell"]
    center, neighbor, shift = neighbors.pair_search(torch.tensor(positions), cutoff, cell, pbc)
    assert len(calls) == 1
    assert (distances(center, neighbor, shift, positions, cell) <= cutoff).all()
    assert sorted(zip(center.tolist(), neighbor.tolist(), map(tuple, shift.tolist()))) == ase_pairs(
        positions, cell, pbc, cutoff)


def test_wrapped_offsets_give_the_vectors_of_the_positions_as_given():
    """Offsets relative to the input positions, converted for the wrapped ones, rebuild the same vectors."""
    positions, cell, pbc, cutoff = PAIR_CASES["atoms outside the home cell"]
    center, neighbor, shift = neighbors.pair_search(torch.tensor(positions), cutoff, cell, pbc)
    offset = neighbors.wrapped_offsets(torch.tensor(positions), cell, pbc, center, neighbor, shift)
    assert not torch.equal(offset, shift)  # the atoms are outside the home cell: wrapping moves them
    cells, pbcs = prepare_cells([cell], [pbc], torch.float64, "cpu")
    nl = neighbors.neighbor_list_from_pairs(torch.tensor(positions), torch.zeros(len(positions), dtype=torch.long),
                                            cells, pbcs, center, neighbor, offset)
    expected = positions[neighbor] - positions[center] + shift.numpy() @ np.array(cell)
    np.testing.assert_allclose(nl.vectors.numpy(), expected, rtol=0, atol=1e-12)
