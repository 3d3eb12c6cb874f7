"""TorchNeighborList (aenet-python's interface) against ASE's neighbour list and aenet-python's documented examples."""
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list

from aenet_core import neighbor_list as module
from aenet_core.torch_featurize import TorchNeighborList

WATER = np.array([[0.0, 0.0, 0.11779], [0.0, 0.75545, -0.47116], [0.0, -0.75545, -0.47116]])
WATER_CUTOFFS = {(1, 1): 1.0, (1, 8): 2.5, (8, 8): 3.0}


def ase_pairs(positions, cutoff, cell=None, pbc=False):
    """{(i, j, offset): distance} from ASE (positions inside the home cell, so offsets agree)."""
    atoms = Atoms("X" * len(positions), positions=positions, cell=cell if cell is not None else np.zeros((3, 3)),
                  pbc=pbc)
    i, j, shift, d = ase_neighbor_list("ijSd", atoms, cutoff, self_interaction=False)
    return {(a, b, tuple(s)): x for a, b, s, x in zip(i.tolist(), j.tolist(), shift.tolist(), d)}


def our_pairs(result):
    edge = result["edge_index"].T.tolist()
    offsets = result["offsets"].tolist() if result["offsets"] is not None else [[0, 0, 0]] * len(edge)
    return {(i, j, tuple(k)): d for (i, j), k, d in zip(edge, offsets, result["distances"].tolist())}


def assert_same_pairs(ours, truth):
    assert ours.keys() == truth.keys()
    assert np.allclose([ours[k] for k in truth], [truth[k] for k in truth], atol=1e-12)


@pytest.fixture
def triclinic():
    """A small skewed cell, narrower than the cutoff, so neighbours include images several cells away
    and images of the atom itself."""
    rng = np.random.default_rng(7)
    cell = np.array([[3.1, 0.0, 0.0], [0.9, 2.8, 0.0], [0.4, -0.6, 3.3]])
    return rng.random((5, 3)), cell


def test_periodic_pairs_match_ase_for_fractional_and_cartesian_input(triclinic):
    fractional, cell = triclinic
    truth = ase_pairs(fractional @ cell, 4.5, cell, True)
    nbl = TorchNeighborList(cutoff=4.5)
    assert_same_pairs(our_pairs(nbl.get_neighbors(fractional, cell)), truth)
    result = nbl.get_neighbors(torch.tensor(fractional @ cell), torch.tensor(cell), fractional=False)
    assert_same_pairs(our_pairs(result), truth)
    assert result["edge_index"].dtype == torch.long and result["offsets"].dtype == torch.long
    assert result["offsets"].shape == (result["edge_index"].shape[1], 3)
    counts = np.bincount([i for i, _, _ in truth], minlength=5)
    assert result["num_neighbors"].tolist() == counts.tolist()


def test_slab_is_periodic_only_along_its_periodic_axes(triclinic):
    fractional, cell = triclinic
    positions = (fractional + [0.0, 0.0, 1.5]) @ cell  # beyond the cell along the open axis
    pbc = [True, True, False]
    truth = ase_pairs(positions, 4.0, cell, pbc)
    result = TorchNeighborList(cutoff=4.0).get_neighbors(positions, cell, torch.tensor(pbc), fractional=False)
    assert_same_pairs(our_pairs(result), truth)


def test_isolated_pairs_match_ase():
    rng = np.random.default_rng(3)
    positions = rng.random((12, 3)) * 6.0
    edge_index, distances = TorchNeighborList(cutoff=3.0).get_neighbors_isolated(torch.tensor(positions))
    ours = our_pairs({"edge_index": edge_index, "distances": distances, "offsets": None})
    assert_same_pairs(ours, ase_pairs(positions, 3.0))
    result = TorchNeighborList(cutoff=3.0).get_neighbors(torch.tensor(positions))
    assert result["offsets"] is None and result["num_neighbors"].sum() == len(distances)


def test_get_neighbors_pbc_returns_edges_distances_and_offsets(triclinic):
    fractional, cell = triclinic
    edge_index, distances, offsets = TorchNeighborList(cutoff=4.5).get_neighbors_pbc(
        torch.tensor(fractional), torch.tensor(cell))
    ours = our_pairs({"edge_index": edge_index, "distances": distances, "offsets": offsets})
    assert_same_pairs(ours, ase_pairs(fractional @ cell, 4.5, cell, True))


def test_documented_single_atom_query_of_an_isolated_chain():
    result = TorchNeighborList(cutoff=4.0, device="cpu").get_neighbors_of_atom(
        0, np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [3.0, 0.0, 0.0]]))
    assert result["indices"].tolist() == [1, 2]
    assert [round(float(d), 1) for d in result["distances"]] == [1.5, 3.0]
    assert result["offsets"] is None


def test_neighbour_coordinates_are_cartesian_for_fractional_and_cartesian_input():
    """aenet-python adds ``offsets @ cell`` to the positions as given, so fractional input yields mixed
    units ([-4.1, 0.5, 0.5] here); ours are the Cartesian image positions either way."""
    cell = np.eye(3) * 5.0
    cartesian = np.array([[0.5, 2.5, 2.5], [4.5, 2.5, 2.5]])
    nbl = TorchNeighborList(cutoff=2.0)
    for positions, fractional in ((cartesian, False), (cartesian / 5.0, True)):
        result = nbl.get_neighbors_of_atom(0, positions, cell=cell, fractional=fractional, return_coordinates=True)
        assert result["offsets"].tolist() == [[-1, 0, 0]]
        assert np.allclose(result["coordinates"].numpy(), [[-0.5, 2.5, 2.5]])


def test_full_star_lists_each_neighbour_once():
    """aenet-python lists every neighbour of an isolated structure twice with full_star=True."""
    positions = np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [3.0, 0.0, 0.0]])
    nbl = TorchNeighborList(cutoff=4.0)
    full = nbl.get_neighbors_of_atom(0, positions, full_star=True)
    assert full["indices"].tolist() == [1, 2]
    assert full["distances"].tolist() == nbl.get_neighbors_of_atom(0, positions)["distances"].tolist()


def test_type_pair_cutoffs_of_the_documented_water_example():
    nbl = TorchNeighborList(cutoff=5.0, atom_types=torch.tensor([8, 1, 1]), cutoff_dict=WATER_CUTOFFS)
    assert nbl.get_neighbors_of_atom(0, WATER)["indices"].tolist() == [1, 2]
    assert nbl.get_neighbors_of_atom(1, WATER)["indices"].tolist() == [0]
    assert [r["indices"].tolist() for r in nbl.get_neighbors_by_atom(torch.tensor(WATER))] == [[1, 2], [0], [0]]


def test_get_neighbors_by_atom_applies_per_call_types_and_cutoffs():
    """aenet-python passes these two arguments into the wrong parameters and returns the unfiltered list."""
    by_atom = TorchNeighborList(cutoff=5.0).get_neighbors_by_atom(
        torch.tensor(WATER), atom_types=torch.tensor([8, 1, 1]), cutoff_dict=WATER_CUTOFFS)
    assert [r["indices"].tolist() for r in by_atom] == [[1, 2], [0], [0]]
    symbols = TorchNeighborList(cutoff=5.0).get_neighbors_by_atom(
        WATER, atom_types=["O", "H", "H"], cutoff_dict={("H", "H"): 1.0, ("H", "O"): 2.5})
    assert [r["indices"].tolist() for r in symbols] == [[1, 2], [0], [0]]


@pytest.mark.parametrize("cutoff_dict, message", [
    ({(1, 1): 6.0}, "exceeds maximum cutoff 5.0"),
    ({(1, 6): 2.0}, "Type 6 in cutoff_dict not found in atom_types. Available types: [1, 8]"),
    ({(1, 8): 2.0, (8, 1): 2.5}, "two cutoffs"),
])
def test_inconsistent_cutoff_dict_is_refused(cutoff_dict, message):
    with pytest.raises(ValueError) as err:
        TorchNeighborList(cutoff=5.0, atom_types=torch.tensor([8, 1, 1]), cutoff_dict=cutoff_dict)
    assert message in str(err.value)


@pytest.mark.parametrize("options, message", [
    ({"truncation_handling": "silent"}, "truncation_handling must be one of"),
    ({"pbc_backend": "cells"}, "Unknown pbc_backend"),
    ({"auto_multiplier": 1}, "auto_multiplier must be an integer >= 2"),
    ({"max_num_neighbors": 0}, "max_num_neighbors must be an integer >= 1"),
    ({"cutoff": -1.0}, "cutoff must be a positive number"),
])
def test_invalid_settings_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        TorchNeighborList(**{"cutoff": 4.0, **options})


def test_legacy_backend_is_deprecated():
    with pytest.warns(DeprecationWarning, match="legacy"):
        TorchNeighborList(cutoff=4.0, pbc_backend="legacy")


def test_atom_index_out_of_range_is_an_index_error():
    with pytest.raises(IndexError, match="atom_idx 3 is out of range for 3 atoms"):
        TorchNeighborList(cutoff=4.0).get_neighbors_of_atom(3, WATER)


def cluster(n=7):
    """n atoms within 1 Å of each other: each has n - 1 neighbours within 2 Å."""
    return torch.tensor(np.random.default_rng(1).random((n, 3)) * 0.5)


def test_auto_raises_max_num_neighbors_with_a_warning_and_keeps_every_neighbour():
    nbl = TorchNeighborList(cutoff=2.0, max_num_neighbors=2)
    with pytest.warns(RuntimeWarning, match="more than max_num_neighbors=2; max_num_neighbors is raised to 8"):
        result = nbl.get_neighbors(cluster())
    assert nbl.max_num_neighbors == 8 and result["num_neighbors"].tolist() == [6] * 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nbl.get_neighbors(cluster())  # within the raised limit now


def test_auto_past_auto_max_neighbors_is_an_error_not_a_truncation():
    nbl = TorchNeighborList(cutoff=2.0, max_num_neighbors=2, auto_max_neighbors=4)
    with pytest.raises(RuntimeError, match="auto_max_neighbors=4"):
        nbl.get_neighbors(cluster())


def test_error_mode_raises_and_warn_mode_returns_every_neighbour():
    with pytest.raises(RuntimeError, match="max_num_neighbors=3. Increase max_num_neighbors or reduce cutoff"):
        TorchNeighborList(cutoff=2.0, max_num_neighbors=3, truncation_handling="error").get_neighbors(cluster())
    nbl = TorchNeighborList(cutoff=2.0, max_num_neighbors=3, truncation_handling="warn")
    with pytest.warns(RuntimeWarning, match="all of them are returned"):
        assert nbl.get_neighbors(cluster())["num_neighbors"].tolist() == [6] * 7
    assert nbl.max_num_neighbors == 3


def test_repeated_queries_reuse_the_cached_list(monkeypatch):
    calls = []
    search = module.neighbor_list
    monkeypatch.setattr(module, "neighbor_list", lambda *a, **k: calls.append(1) or search(*a, **k))
    nbl = TorchNeighborList(cutoff=1.5)
    for i in range(3):
        nbl.get_neighbors_of_atom(i, WATER)
    assert len(calls) == 1
    nbl.get_neighbors_of_atom(0, WATER + 0.1)
    assert len(calls) == 2


def test_distances_are_differentiable_with_respect_to_positions():
    positions = torch.tensor(WATER, requires_grad=True)
    result = TorchNeighborList(cutoff=2.0).get_neighbors_of_atom(0, positions)
    result["distances"].sum().backward()
    expected = -sum((WATER[j] - WATER[0]) / np.linalg.norm(WATER[j] - WATER[0]) for j in (1, 2))
    assert np.allclose(positions.grad[0].numpy(), expected)


def test_from_atomic_structure_configures_a_list_without_reading_the_structure():
    class StandIn:  # aenet-python reads nothing from the structure either
        coords = [WATER]
        types = ["O", "H", "H"]

    nbl = TorchNeighborList.from_AtomicStructure(StandIn(), cutoff=2.0, device="cpu")
    assert (nbl.cutoff, nbl.max_num_neighbors, nbl.dtype) == (2.0, 256, torch.float64)
    assert nbl.get_neighbors_of_atom(0, StandIn.coords[-1])["indices"].tolist() == [1, 2]
