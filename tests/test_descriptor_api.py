"""aenet-python's descriptor API on ChebyshevDescriptor, BatchedFeaturizer and the basis classes, each method
against independent truth: numpy's Chebyshev series, finite differences, the sparse derivatives."""
import copy

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev as npcheb

from aenet_core.descriptor import UnknownSpeciesError
from aenet_core.torch_featurize import (AngularBasis, BatchedFeaturizer, ChebyshevDescriptor, ChebyshevPolynomials,
                                        RadialBasis)
from training_setup import dense_jacobian, finite_difference_jacobian


def periodic_case():
    """Two species in a small triclinic cell, with atoms outside the home cell (negative and > 1 fractional)."""
    descriptor = ChebyshevDescriptor(["Ti", "O"], 6, 3.2, 3, 2.6, min_cutoff=0.5)
    cell = torch.tensor([[3.1, 0.0, 0.0], [0.4, 2.9, 0.0], [0.2, 0.3, 3.3]], dtype=torch.float64)
    positions = torch.tensor([[0.1, 0.2, 0.3], [1.6, 1.4, -0.9], [4.0, 0.5, 1.7], [-1.2, 2.6, 2.4]],
                             dtype=torch.float64)
    return descriptor, positions, ["Ti", "O", "O", "Ti"], cell, torch.tensor([True, True, True])


def molecule_case():
    descriptor = ChebyshevDescriptor(["O", "H"], 5, 3.0, 3, 2.5, min_cutoff=0.3)
    positions = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0], [0.5, 0.4, 1.1]],
                             dtype=torch.float64)
    return descriptor, positions, ["O", "H", "H", "H"]


# ------------------------------------------------------------------------------ basis classes

def test_chebyshev_polynomials_match_numpy():
    cheb = ChebyshevPolynomials(max_order=7, r_min=0.5, r_max=4.0)
    r = torch.linspace(0.5, 4.0, 23, dtype=torch.float64)
    x = (2 * r.numpy() - 4.5) / 3.5
    expected = np.stack([npcheb.chebval(x, np.eye(8)[n]) for n in range(8)], axis=-1)
    np.testing.assert_allclose(cheb(r).numpy(), expected, rtol=0, atol=1e-13)
    assert cheb(r.reshape(1, -1)).shape == (1, 23, 8)
    np.testing.assert_allclose(cheb.rescale_distances(torch.tensor([0.0, 9.0])).numpy(), [-1.0, 1.0])  # clamped


def test_chebyshev_derivatives_match_numpy_and_are_exact_at_the_ends():
    cheb = ChebyshevPolynomials(max_order=6, r_min=-1.0, r_max=1.0)
    x = torch.tensor([-1.0, -0.3, 0.2, 0.9, 1.0], dtype=torch.float64)
    t, dt = cheb.evaluate_with_derivatives(x)
    expected = np.stack([npcheb.chebval(x.numpy(), npcheb.chebder(np.eye(7)[n])) for n in range(7)], axis=-1)
    np.testing.assert_allclose(dt.numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dt[-1].numpy(), np.arange(7) ** 2)  # dT_n/dx(1) = n^2
    torch.testing.assert_close(t, cheb(x))


def test_chebyshev_radial_derivative_matches_finite_differences():
    cheb = ChebyshevPolynomials(max_order=5, r_min=0.0, r_max=4.0)
    r = torch.tensor([0.3, 1.1, 2.5, 3.7], dtype=torch.float64)
    _, dt = cheb.evaluate_with_derivatives(r)
    h = 1e-6
    torch.testing.assert_close(dt, (cheb(r + h) - cheb(r - h)) / (2 * h), rtol=0, atol=1e-7)


def test_cutoff_function_and_its_derivative():
    cheb = ChebyshevPolynomials(3, 0.0, 4.0)
    r = torch.tensor([0.0, 1.0, 2.0, 3.9, 4.0, 5.0], dtype=torch.float64)
    expected = np.where(r.numpy() < 4.0, 0.5 * (np.cos(np.pi * r.numpy() / 4.0) + 1), 0.0)
    np.testing.assert_allclose(cheb.cutoff_function(r, 4.0).numpy(), expected, rtol=0, atol=1e-15)
    h = 1e-6
    inside = r[:4]
    fd = (cheb.cutoff_function(inside + h, 4.0) - cheb.cutoff_function(inside - h, 4.0)) / (2 * h)
    torch.testing.assert_close(cheb.cutoff_derivative(inside, 4.0), fd, rtol=0, atol=1e-8)
    assert cheb.cutoff_derivative(r[4:], 4.0).abs().max() == 0


def test_radial_basis_values_and_derivatives():
    basis = RadialBasis(rad_order=6, rad_cutoff=4.0)
    d = torch.tensor([0.7, 1.5, 2.8, 3.95, 4.5], dtype=torch.float64)
    x = 2 * d.numpy() / 4.0 - 1
    fc = np.where(d.numpy() < 4.0, 0.5 * (np.cos(np.pi * d.numpy() / 4.0) + 1), 0.0)
    expected = np.stack([npcheb.chebval(x, np.eye(7)[n]) for n in range(7)], axis=-1) * fc[:, None]
    np.testing.assert_allclose(basis(d).numpy(), expected, rtol=0, atol=1e-14)
    g, dg = basis.forward_with_derivatives(d[:4])
    h = 1e-6
    torch.testing.assert_close(g, basis(d[:4]))
    torch.testing.assert_close(dg, (basis(d[:4] + h) - basis(d[:4] - h)) / (2 * h), rtol=0, atol=1e-7)


def test_angular_basis_values_and_derivatives():
    basis = AngularBasis(ang_order=4, ang_cutoff=3.0)
    r_ij = torch.tensor([1.0, 2.2, 2.9], dtype=torch.float64)
    r_ik = torch.tensor([1.4, 0.9, 2.5], dtype=torch.float64)
    cos = torch.tensor([0.3, -0.7, 0.95], dtype=torch.float64)
    fc = 0.25 * (np.cos(np.pi * r_ij.numpy() / 3) + 1) * (np.cos(np.pi * r_ik.numpy() / 3) + 1)
    expected = np.stack([npcheb.chebval(cos.numpy(), np.eye(5)[n]) for n in range(5)], axis=-1) * fc[:, None]
    np.testing.assert_allclose(basis(r_ij, r_ik, cos).numpy(), expected, rtol=0, atol=1e-14)
    g, dg_dcos, dg_dij, dg_dik = basis.forward_with_derivatives(r_ij, r_ik, cos)
    torch.testing.assert_close(g, basis(r_ij, r_ik, cos))
    h = 1e-6
    for analytic, shift in ((dg_dij, (h, 0, 0)), (dg_dik, (0, h, 0)), (dg_dcos, (0, 0, h))):
        up = basis(r_ij + shift[0], r_ik + shift[1], cos + shift[2])
        down = basis(r_ij - shift[0], r_ik - shift[1], cos - shift[2])
        torch.testing.assert_close(analytic, (up - down) / (2 * h), rtol=0, atol=1e-7)


def test_bases_keep_nothing_in_a_state_dict_and_follow_to():
    basis = RadialBasis(3, 4.0)
    assert basis.state_dict() == {}
    assert basis.to(torch.float32).cheb.orders.dtype == torch.float32


# ------------------------------------------------------------------------------ the descriptor as a module

def test_descriptor_is_a_callable_module():
    descriptor, positions, species, cell, pbc = periodic_case()
    assert isinstance(descriptor, torch.nn.Module) and descriptor.get_n_features() == descriptor.n_features == 22
    expected = descriptor.forward_from_positions(positions, species, cell, pbc)
    torch.testing.assert_close(descriptor(positions, species, cell=cell, pbc=pbc), expected, rtol=0, atol=0)
    assert descriptor.state_dict() == {}  # holding it in a model adds no keys to the model's checkpoints
    clone = copy.deepcopy(descriptor)
    assert clone is not descriptor and clone.identity() == descriptor.identity()
    torch.testing.assert_close(clone(positions, species, cell=cell, pbc=pbc), expected, rtol=0, atol=0)
    assert {descriptor, clone} == {descriptor, clone} and len({descriptor, clone}) == 2  # hashable, by identity
    single = descriptor.to(torch.float32)  # a copy, as nn.Module.to takes a dtype first
    assert single.dtype == torch.float32 and descriptor.dtype == torch.float64 and single.identity() == clone.identity()


def test_the_descriptors_neighbour_list_finds_every_image_within_the_larger_cutoff():
    descriptor, positions, species, cell, pbc = periodic_case()
    assert descriptor.nbl.cutoff == max(descriptor.rad_cutoff, descriptor.ang_cutoff) == 3.2
    found = descriptor.nbl.get_neighbors(positions, cell, pbc, fractional=False)
    shifts = torch.cartesian_prod(*[torch.arange(-3, 4, dtype=torch.float64)] * 3) @ cell
    for i in range(len(positions)):
        d = (positions[None, :, :] + shifts[:, None, :] - positions[i]).norm(dim=-1).flatten()
        expected = d[(d > 0) & (d <= 3.2)].sort().values
        torch.testing.assert_close(found["distances"][found["edge_index"][0] == i].sort().values, expected)


def test_batched_featurizer_takes_featurizer_and_equals_single_calls():
    descriptor, positions, species, cell, pbc = periodic_case()
    batched = BatchedFeaturizer(featurizer=descriptor)
    assert isinstance(batched, torch.nn.Module) and batched.featurizer is descriptor
    mol, mol_positions, mol_species = molecule_case()
    features, batch = batched([positions, positions[:2]], [species, species[:2]], [cell, None], [pbc, None])
    torch.testing.assert_close(features[:4], descriptor(positions, species, cell=cell, pbc=pbc))
    torch.testing.assert_close(features[4:], descriptor(positions[:2], species[:2]))
    assert batch.tolist() == [0, 0, 0, 0, 1, 1]


def test_unknown_species_is_a_key_error_and_a_value_error():
    descriptor, positions, species, cell, pbc = periodic_case()
    for kind in (KeyError, ValueError):
        with pytest.raises(kind, match="'Zr' is not in the descriptor species"):
            descriptor(positions, ["Zr"] + species[1:], cell=cell)
    assert issubclass(UnknownSpeciesError, KeyError)


# ------------------------------------------------------------------------------ dense gradients and forces

@pytest.mark.parametrize("case", ["periodic", "molecule"])
def test_dense_gradients_match_finite_differences_and_sparse_derivatives(case):
    if case == "periodic":
        descriptor, positions, species, cell, pbc = periodic_case()
    else:
        (descriptor, positions, species), cell, pbc = molecule_case(), None, None
    features, gradients = descriptor.compute_feature_gradients(positions, species, cell, pbc)
    n = len(positions)
    assert gradients.shape == (n, descriptor.n_features, n, 3)
    torch.testing.assert_close(features, descriptor(positions, species, cell=cell, pbc=pbc))
    fd = finite_difference_jacobian(lambda x: descriptor.forward_from_positions(x, species, cell, pbc), positions)
    torch.testing.assert_close(gradients, fd, rtol=0, atol=1e-7)
    weights = torch.randn(n, descriptor.n_features, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    _, sparse = descriptor.forward_with_derivatives(positions, species, cell, pbc)
    torch.testing.assert_close(torch.einsum("if,ifac->ac", weights, gradients), sparse.contract(weights),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("alat", [1.5, 1.8])
def test_dense_gradients_in_tiny_cells_with_many_images(alat):
    """aenet-python's 'stress' gradient tests: one atom in a cell far smaller than the cutoffs."""
    descriptor = ChebyshevDescriptor(["H"], 5, 4.0, 3, 3.0)
    cell = torch.eye(3, dtype=torch.float64) * alat
    positions = torch.tensor([[0.1, 0.05, -0.02], [0.7, 0.6, 0.9]], dtype=torch.float64)
    features, gradients = descriptor.compute_feature_gradients(positions, ["H", "H"], cell)
    assert torch.isfinite(features).all() and torch.isfinite(gradients).all() and features[0, 0] > 10
    fd = finite_difference_jacobian(lambda x: descriptor.forward_from_positions(x, ["H", "H"], cell), positions)
    torch.testing.assert_close(gradients, fd, rtol=0, atol=1e-6 * float(fd.abs().max()))


def test_forces_from_energy_match_finite_differences_and_keep_the_graph():
    descriptor, positions, species, cell, pbc = periodic_case()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(descriptor.n_features, 5), torch.nn.Tanh(),
                                torch.nn.Linear(5, 1)).double()
    energy, forces = descriptor.compute_forces_from_energy(positions, species, model, cell, pbc)
    assert energy.shape == () and forces.shape == (len(positions), 3)

    def total_energy(x):
        with torch.no_grad():
            return model(descriptor.forward_from_positions(x, species, cell, pbc)).sum()

    torch.testing.assert_close(energy.detach(), total_energy(positions))
    torch.testing.assert_close(forces.detach(), -finite_difference_jacobian(total_energy, positions),
                               rtol=0, atol=1e-7)
    forces.pow(2).sum().backward()  # a force loss trains the model
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ per-atom neighbour lists

def test_featurize_with_neighbor_info_lists_the_neighbours_and_round_trips():
    descriptor, positions, species, cell, pbc = periodic_case()
    features, info = descriptor.featurize_with_neighbor_info(positions, species, cell, pbc)
    torch.testing.assert_close(features, descriptor(positions, species, cell=cell, pbc=pbc), rtol=0, atol=0)
    assert set(info) == {"neighbor_counts", "neighbor_lists", "neighbor_vectors", "max_neighbors"}
    counts = info["neighbor_counts"]
    assert isinstance(counts, np.ndarray) and counts.tolist() == [len(a) for a in info["neighbor_lists"]]
    assert info["max_neighbors"] == counts.max() and isinstance(info["max_neighbors"], int)
    for vectors in info["neighbor_vectors"]:
        distances = np.linalg.norm(vectors, axis=1)
        assert isinstance(vectors, np.ndarray) and vectors.shape[1] == 3
        assert (distances > descriptor.min_cutoff).all() and (distances <= descriptor.max_cutoff + 1e-12).all()
    lists = [torch.as_tensor(a) for a in info["neighbor_lists"]]
    vectors = [torch.as_tensor(v) for v in info["neighbor_vectors"]]
    torch.testing.assert_close(descriptor(positions, species, lists, vectors), features, rtol=0, atol=1e-12)
    _, dense = descriptor.compute_feature_gradients_from_neighbor_info(positions, species, lists, vectors)
    torch.testing.assert_close(dense, descriptor.compute_feature_gradients(positions, species, cell, pbc)[1],
                               rtol=0, atol=1e-12)


def test_radial_and_angular_features_from_neighbor_lists_match_direct_sums():
    descriptor, positions, species = molecule_case()
    idx = descriptor.species_indices(species)
    n = len(positions)
    lists = [torch.tensor([j for j in range(n) if j != i]) for i in range(n)]
    vectors = [positions[nb] - positions[i] for i, nb in enumerate(lists)]
    radial = descriptor.compute_radial_features(positions, idx, lists, vectors)
    angular = descriptor.compute_angular_features(positions, idx, lists, vectors)
    assert radial.shape == (n, 2 * 6) and angular.shape == (n, 2 * 4)
    spin = {"O": -1.0, "H": 1.0}
    basis = RadialBasis(5, 3.0)
    for i in range(n):
        d = vectors[i].norm(dim=1)
        g = basis(d)
        s = torch.tensor([spin[species[j]] for j in lists[i].tolist()], dtype=torch.float64)
        torch.testing.assert_close(radial[i], torch.cat([g.sum(0), (s[:, None] * g).sum(0)]))
        expected = torch.zeros(8, dtype=torch.float64)
        for a in range(len(d)):
            for b in range(a + 1, len(d)):
                cos = float(vectors[i][a] @ vectors[i][b] / (d[a] * d[b]))
                fc = 0.25 * (np.cos(np.pi * float(d[a]) / 2.5) + 1) * (np.cos(np.pi * float(d[b]) / 2.5) + 1)
                fc *= float(d[a] < 2.5 and d[b] < 2.5)
                t = torch.tensor([npcheb.chebval(cos, np.eye(4)[k]) for k in range(4)]) * fc
                expected += torch.cat([t, s[a] * s[b] * t])
        torch.testing.assert_close(angular[i], expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(descriptor(positions, species, lists, vectors),
                               descriptor.forward_from_positions(positions, species), rtol=0, atol=1e-12)


def test_neighbor_lists_drop_pairs_within_min_cutoff_without_nan_gradients():
    descriptor, positions, species = molecule_case()
    x = positions.clone().requires_grad_(True)
    lists = [torch.tensor([1, 1]), torch.tensor([0]), torch.tensor([], dtype=torch.long), torch.tensor([0])]
    vectors = [torch.stack([x[1] - x[0], torch.zeros(3, dtype=torch.float64)]), (x[0] - x[1])[None],
               torch.zeros(0, 3, dtype=torch.float64), (x[0] - x[3])[None]]
    features = descriptor(x, species, lists, vectors)
    (grad,) = torch.autograd.grad(features.sum(), x)
    assert torch.isfinite(grad).all()
    assert features[2].abs().max() == 0 and features[0, 0] > 0


# ------------------------------------------------------------------------------ CSR graph and triplets

def test_graph_paths_match_positions_with_atoms_outside_the_home_cell():
    """r_ij of the graph come from wrapped positions, as the image offsets do (aenet-python's graph builder
    takes them from the unwrapped ones)."""
    descriptor, positions, species, cell, pbc = periodic_case()
    graph, triplets = descriptor.neighbor_graph(positions, cell, pbc)
    assert graph["center_ptr"].dtype == torch.int32 and len(graph["center_ptr"]) == len(positions) + 1
    torch.testing.assert_close(graph["r_ij"].norm(dim=1), graph["d_ij"], rtol=0, atol=1e-12)
    idx = descriptor.species_indices(species)
    expected, dense = descriptor.compute_feature_gradients(positions, species, cell, pbc)
    torch.testing.assert_close(descriptor.forward_with_graph(positions, idx, graph, triplets), expected,
                               rtol=0, atol=1e-12)
    features, graph_dense = descriptor.compute_feature_gradients_with_graph(positions, idx, graph, triplets)
    torch.testing.assert_close(features, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(graph_dense, dense, rtol=0, atol=1e-12)
    without = descriptor.forward_with_graph(positions, idx, graph)
    radial = list(range(7)) + list(range(11, 18))  # [radial, angular, radial_w, angular_w] of R = 6, A = 3
    angular = [7, 8, 9, 10, 18, 19, 20, 21]
    torch.testing.assert_close(without[:, radial], expected[:, radial], rtol=0, atol=1e-12)
    assert without[:, angular].abs().max() == 0
    torch.testing.assert_close(descriptor.compute_radial_features(positions, idx, *lists_of(graph)),
                               expected[:, radial], rtol=0, atol=1e-12)
    torch.testing.assert_close(descriptor.compute_angular_features(positions, idx, *lists_of(graph)),
                               expected[:, angular], rtol=0, atol=1e-12)


def lists_of(graph):
    """Per-atom neighbour indices and vectors of a CSR graph."""
    sizes = graph["center_ptr"].diff().tolist()
    return list(torch.split(graph["nbr_idx"].long(), sizes)), list(torch.split(graph["r_ij"], sizes))


def test_local_derivative_dicts_rebuild_the_dense_gradients():
    descriptor, positions, species, cell, pbc = periodic_case()
    graph, triplets = descriptor.neighbor_graph(positions, cell, pbc)
    idx = descriptor.species_indices(species)
    features, local = descriptor.compute_features_and_local_derivatives_with_graph(positions, idx, graph, triplets)
    radial, angular = local["radial"], local["angular"]
    assert set(radial) == {"center_idx", "neighbor_idx", "dG_drij", "neighbor_typespin"}
    assert set(angular) == {"center_idx", "neighbor_j_idx", "neighbor_k_idx", "grads_i", "grads_j", "grads_k",
                            "triplet_typespin"}
    n, nr, na = len(positions), descriptor.rad_order + 1, descriptor.ang_order + 1
    assert radial["dG_drij"].shape == (len(radial["center_idx"]), nr, 3)
    assert angular["grads_i"].shape == (len(angular["center_idx"]), na, 3) and len(angular["center_idx"]) > 0
    dense = dense_jacobian(local, n, descriptor)
    torch.testing.assert_close(dense, descriptor.compute_feature_gradients(positions, species, cell, pbc)[1],
                               rtol=0, atol=1e-12)
    single = ChebyshevDescriptor(["Ti"], 4, 3.0, 2, 2.5)
    _, local = single.compute_features_and_local_derivatives_with_graph(
        positions, torch.zeros(4, dtype=torch.long), *single.neighbor_graph(positions, cell, pbc))
    assert local["radial"]["neighbor_typespin"] is None and local["angular"]["triplet_typespin"] is None


# ------------------------------------------------------------------------------ timing

def test_timing_stats_count_searches_only_when_profiling():
    descriptor, positions, species, cell, pbc = periodic_case()
    descriptor(positions, species, cell=cell, pbc=pbc)
    assert descriptor.get_timing_stats() == {"nblist_time": 0.0, "feature_time": 0.0, "nblist_calls": 0,
                                             "nblist_time_per_call": 0.0, "feature_time_per_call": 0.0}
    profiled = ChebyshevDescriptor(["Ti", "O"], 6, 3.2, 3, 2.6, profile_timing=True)
    for _ in range(2):
        profiled(positions, species, cell=cell, pbc=pbc)
    stats = profiled.get_timing_stats()
    assert stats["nblist_calls"] == 2 and stats["nblist_time"] > 0 and stats["feature_time"] > 0
    assert stats["nblist_time_per_call"] == pytest.approx(stats["nblist_time"] / 2)
    profiled.reset_timing_stats()
    assert profiled.get_timing_stats()["nblist_calls"] == 0 and profiled.nblist_time == 0.0


def test_graph_edges_within_min_cutoff_and_their_triplets_are_dropped():
    descriptor, positions, species, cell, pbc = periodic_case()
    graph, triplets = descriptor.neighbor_graph(positions, cell, pbc)
    idx = descriptor.species_indices(species)
    # Atom 0 gets a first edge at 0.1 Å (within min_cutoff), and a triplet with it and each of its other edges.
    close = torch.tensor([[0.1, 0.0, 0.0]], dtype=torch.float64)
    n0 = int(graph["center_ptr"][1])
    ptr = graph["center_ptr"]
    padded = {"center_ptr": torch.cat([ptr[:1], ptr[1:] + 1]),
              "nbr_idx": torch.cat([torch.tensor([1], dtype=torch.int32), graph["nbr_idx"]]),
              "r_ij": torch.cat([close, graph["r_ij"]]), "d_ij": torch.cat([close.norm(dim=1), graph["d_ij"]])}
    shift = (triplets["tri_i"] == 0).int()
    moved = dict(triplets, tri_j_local=triplets["tri_j_local"] + shift, tri_k_local=triplets["tri_k_local"] + shift)
    added = {"tri_i": torch.zeros(n0), "tri_j": torch.ones(n0), "tri_k": graph["nbr_idx"][:n0],
             "tri_j_local": torch.zeros(n0), "tri_k_local": torch.arange(1, n0 + 1)}
    padded_triplets = {key: torch.cat([added[key].int(), moved[key]]) for key in triplets}
    expected = descriptor.compute_feature_gradients_with_graph(positions, idx, graph, triplets)
    result = descriptor.compute_feature_gradients_with_graph(positions, idx, padded, padded_triplets)
    for got, want in zip(result, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_bad_inputs_are_refused_with_what_was_expected():
    with pytest.raises(ValueError, match="r_max must exceed r_min"):
        ChebyshevPolynomials(3, 2.0, 2.0)
    descriptor, positions, species = molecule_case()
    with pytest.raises(ValueError, match=r"one entry per atom \(4\)"):
        descriptor(positions, species, [torch.tensor([1])], [torch.zeros(1, 3)])
    with pytest.raises(ValueError, match="as many rows"):
        descriptor(positions, species, [torch.tensor([1])] * 4, [torch.zeros(2, 3)] * 4)
    graph, triplets = descriptor.neighbor_graph(positions)
    with pytest.raises(ValueError, match=r"center_ptr'\] must have N \+ 1 = 4"):
        descriptor.forward_with_graph(positions[:3], descriptor.species_indices(species[:3]), graph, triplets)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_api_runs_on_cuda_as_on_the_cpu():
    cpu, positions, species, cell, pbc = periodic_case()
    gpu = cpu.to(device="cuda")
    torch.testing.assert_close(gpu.compute_feature_gradients(positions, species, cell, pbc)[1].cpu(),
                               cpu.compute_feature_gradients(positions, species, cell, pbc)[1], rtol=0, atol=1e-10)
    features, info = gpu.featurize_with_neighbor_info(positions, species, cell, pbc)
    assert features.is_cuda and info["neighbor_counts"].tolist() == cpu.featurize_with_neighbor_info(
        positions, species, cell, pbc)[1]["neighbor_counts"].tolist()
    graph, triplets = gpu.neighbor_graph(positions, cell, pbc)
    idx = gpu.species_indices(species)
    torch.testing.assert_close(gpu.forward_with_graph(positions, idx, graph, triplets).cpu(),
                               cpu(positions, species, cell=cell, pbc=pbc), rtol=0, atol=1e-10)
    lists = [torch.as_tensor(a) for a in info["neighbor_lists"]]
    vectors = [torch.as_tensor(v) for v in info["neighbor_vectors"]]
    torch.testing.assert_close(gpu.compute_radial_features(positions, idx, lists, vectors).cpu(),
                               cpu.compute_radial_features(positions, idx.cpu(), lists, vectors), rtol=0, atol=1e-10)
