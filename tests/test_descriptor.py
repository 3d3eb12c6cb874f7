"""The Chebyshev descriptor: Fortran reference values, analytic derivatives, invariances, batching."""
import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.io import read

from aenet_core import backend
from aenet_core.descriptor import chebyshev, typespins
from aenet_core.torch_featurize import BatchedFeaturizer, ChebyshevDescriptor, LocalDerivatives

# (structure, reference, species order, rad order, rad cutoff, ang order, ang cutoff), per reference/README.md
FORTRAN_CASES = [
    ("water.xyz", "water_ref.csv", ["O", "H"], 10, 4.0, 3, 1.5),
    ("aucu.xsf", "aucu_ref.csv", ["Au", "Cu"], 5, 3.5, 5, 3.5),
    ("lmnto_structure001.xsf", "lmnto_ref.csv", ["Li", "Mo", "Ni", "Ti", "O"], 10, 4.0, 3, 1.5),
]


@pytest.mark.parametrize("case", FORTRAN_CASES, ids=[c[0] for c in FORTRAN_CASES])
def test_features_match_fortran(shared_data, case):
    name, ref_name, species, r, rc_r, a, rc_a = case
    atoms = read(shared_data / "reference" / "descriptor" / name)
    reference = np.loadtxt(shared_data / "reference" / "descriptor" / ref_name, delimiter=",")
    descriptor = ChebyshevDescriptor(species, r, rc_r, a, rc_a)
    cell = atoms.cell.array if atoms.pbc.any() else None
    features = descriptor.forward_from_positions(atoms.positions, atoms.get_chemical_symbols(), cell)
    assert features.shape == reference.shape == (len(atoms), descriptor.n_features)
    np.testing.assert_allclose(features.numpy(), reference, rtol=0, atol=1e-10)


def test_species_order_matters_for_fortran_parity(shared_data):
    atoms = read(shared_data / "reference" / "descriptor" / "aucu.xsf")
    reference = np.loadtxt(shared_data / "reference" / "descriptor" / "aucu_ref.csv", delimiter=",")
    swapped = ChebyshevDescriptor(["Cu", "Au"], 5, 3.5, 5, 3.5)
    features = swapped.forward_from_positions(atoms.positions, atoms.get_chemical_symbols(), atoms.cell.array)
    assert np.abs(features.numpy() - reference).max() > 0.1


def test_typespins():
    assert typespins(1) == [0]
    assert typespins(2) == [-1, 1]
    assert typespins(3) == [-1, 0, 1]
    assert typespins(4) == [-2, -1, 1, 2]
    assert typespins(5) == [-2, -1, 0, 1, 2]
    assert typespins(6) == [-3, -2, -1, 1, 2, 3]


def test_feature_count_and_config_round_trip():
    single = ChebyshevDescriptor(["Si"], 8, 5.0, 4, 4.0)
    multi = ChebyshevDescriptor(["Ti", "O"], 10, 6.0, 3, 3.5, min_cutoff=0.5, dtype=torch.float32)
    assert single.n_features == 8 + 4 + 2 and multi.n_features == 2 * (10 + 3 + 2) == 30
    assert multi.species_to_idx == {"Ti": 0, "O": 1}
    config = json.loads(json.dumps(multi.get_config()))
    assert config["dtype"] == "float32" and config["n_features"] == 30
    rebuilt = ChebyshevDescriptor.from_config(config)
    assert rebuilt.get_config() == multi.get_config() and rebuilt.dtype == torch.float32


def test_chebyshev_recurrence_is_exact_at_the_ends():
    x = torch.tensor([-1.0, -0.3, 0.0, 0.7, 1.0], dtype=torch.float64)
    t, dt = chebyshev(x, 8, with_derivative=True)
    t, dt = t.t(), dt.t()  # (order, x) -> (x, order)
    n = torch.arange(9, dtype=torch.float64)
    torch.testing.assert_close(t[1:4], torch.cos(n * torch.acos(x[1:4, None])), rtol=0, atol=1e-14)
    assert torch.equal(t[0], (-1.0) ** n) and torch.equal(t[-1], torch.ones(9, dtype=torch.float64))
    assert torch.equal(dt[-1], n**2) and torch.equal(dt[0], (-1.0) ** (n + 1) * n**2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(species=[]), "species"),
    (dict(species=["H", "H"]), "species"),
    (dict(rad_order=-1), "rad_order"),
    (dict(ang_order=2.5), "ang_order"),
    (dict(rad_cutoff=0.0), "rad_cutoff"),
    (dict(ang_cutoff=float("nan")), "ang_cutoff"),
    (dict(min_cutoff=5.0), "min_cutoff"),
    (dict(dtype=torch.int32), "dtype"),
])
def test_bad_parameters_are_rejected(kwargs, message):
    params = dict(species=["H", "O"], rad_order=4, rad_cutoff=4.0, ang_order=2, ang_cutoff=3.0) | kwargs
    with pytest.raises(ValueError, match=message):
        ChebyshevDescriptor(**params)


def test_bad_inputs_are_rejected():
    descriptor = ChebyshevDescriptor(["H", "O"], 4, 4.0, 2, 3.0)
    with pytest.raises(ValueError, match="'C' is not in the descriptor species"):
        descriptor.forward_from_positions(np.zeros((1, 3)), ["C"])
    with pytest.raises(ValueError, match=r"positions must have shape \(N, 3\)"):
        descriptor.forward_from_positions(np.zeros((2, 2)), ["H", "H"])
    with pytest.raises(ValueError, match="species has 1 entries but positions has 2"):
        descriptor.forward_from_positions(np.zeros((2, 3)), ["H"])


# --- derivatives --------------------------------------------------------------------------

def periodic_case():
    """A small triclinic three-species cell with atoms outside the home cell and a short cell axis."""
    rng = np.random.default_rng(7)
    cell = np.array([[4.0, 0.3, 0.0], [0.5, 3.8, 0.2], [0.1, -0.4, 2.9]])
    positions = rng.uniform(-0.5, 1.5, size=(6, 3)) @ cell
    species = ["Ti", "O", "O", "Li", "Ti", "O"]
    return ChebyshevDescriptor(["Ti", "O", "Li"], 6, 4.0, 4, 3.0, min_cutoff=0.3), positions, species, cell


def isolated_case():
    rng = np.random.default_rng(3)
    positions = rng.normal(size=(7, 3)) * 1.2
    species = ["H", "O", "H", "H", "O", "H", "O"]
    return ChebyshevDescriptor(["O", "H"], 5, 3.5, 3, 3.0, min_cutoff=0.1), positions, species, None


def finite_difference_jacobian(descriptor, positions, species, cell, h=1e-5):
    n = len(positions)
    jac = np.zeros((n, descriptor.n_features, n, 3))
    for a in range(n):
        for c in range(3):
            shifted = positions.copy()
            shifted[a, c] += h
            plus = descriptor.forward_from_positions(shifted, species, cell).numpy()
            shifted[a, c] -= 2 * h
            minus = descriptor.forward_from_positions(shifted, species, cell).numpy()
            jac[:, :, a, c] = (plus - minus) / (2 * h)
    return jac


@pytest.mark.parametrize("case", [periodic_case, isolated_case])
def test_derivatives_match_finite_differences(case):
    descriptor, positions, species, cell = case()
    features, derivatives = descriptor.forward_with_derivatives(positions, species, cell)
    torch.testing.assert_close(features, descriptor.forward_from_positions(positions, species, cell), rtol=0, atol=0)
    dense = derivatives.to_dense().numpy()
    assert np.abs(dense).max() > 0.1
    np.testing.assert_allclose(dense, finite_difference_jacobian(descriptor, positions, species, cell), rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", [periodic_case, isolated_case])
def test_derivatives_match_autograd(case):
    descriptor, positions, species, cell = case()
    _, derivatives = descriptor.forward_with_derivatives(positions, species, cell)
    autograd = torch.autograd.functional.jacobian(
        lambda x: descriptor.forward_from_positions(x, species, cell), torch.tensor(positions))
    torch.testing.assert_close(derivatives.to_dense(), autograd, rtol=0, atol=1e-10)

    weights = torch.randn(len(positions), descriptor.n_features, dtype=torch.float64)
    x = torch.tensor(positions, requires_grad=True)
    (expected,) = torch.autograd.grad((weights * descriptor.forward_from_positions(x, species, cell)).sum(), x)
    torch.testing.assert_close(derivatives.contract(weights), expected, rtol=0, atol=1e-10)


def test_collinear_triplets_are_finite_and_exact():
    """A linear chain: cos(theta) = -1 at the middle atom, +1 at the ends; derivatives stay exact."""
    descriptor = ChebyshevDescriptor(["C"], 3, 4.0, 4, 4.0, min_cutoff=0.1)
    positions = np.array([[0.0, 0.0, 0.0], [1.3, 0.0, 0.0], [2.6, 0.0, 0.0]])
    features, derivatives = descriptor.forward_with_derivatives(positions, ["C"] * 3)
    fc = 0.5 * (np.cos(np.pi * 1.3 / 4.0) + 1)
    n = np.arange(5)
    np.testing.assert_allclose(features[1, 4:].numpy(), (-1.0) ** n * fc * fc, rtol=1e-14)
    fc_far = 0.5 * (np.cos(np.pi * 2.6 / 4.0) + 1)
    np.testing.assert_allclose(features[0, 4:].numpy(), fc * fc_far, rtol=1e-14)
    dense = derivatives.to_dense().numpy()
    assert np.isfinite(dense).all()
    np.testing.assert_allclose(dense, finite_difference_jacobian(descriptor, positions, ["C"] * 3, None), atol=1e-6)


# --- invariances -------------------------------------------------------------------------

def tio2_like():
    rng = np.random.default_rng(0)
    atoms = bulk("TiO", "rocksalt", a=4.2, cubic=True)
    atoms.rattle(0.15, rng=rng)
    atoms.set_cell(atoms.cell.array + rng.normal(scale=0.2, size=(3, 3)), scale_atoms=True)
    descriptor = ChebyshevDescriptor(["Ti", "O"], 8, 5.0, 4, 3.5, min_cutoff=0.5)
    return descriptor, atoms


def features_of(descriptor, atoms):
    return descriptor.forward_from_positions(atoms.positions, atoms.get_chemical_symbols(), atoms.cell.array)


def test_translation_rotation_and_permutation_invariance():
    descriptor, atoms = tio2_like()
    reference = features_of(descriptor, atoms)
    moved = atoms.copy()
    moved.translate([3.3, -7.1, 12.0])  # most atoms leave the home cell
    torch.testing.assert_close(features_of(descriptor, moved), reference, rtol=0, atol=1e-11)
    rotated = atoms.copy()
    rotated.rotate(37, (1, 2, 3), rotate_cell=True)
    torch.testing.assert_close(features_of(descriptor, rotated), reference, rtol=0, atol=1e-11)
    order = np.random.default_rng(1).permutation(len(atoms))
    torch.testing.assert_close(features_of(descriptor, atoms[order]), reference[order], rtol=0, atol=1e-11)


def test_supercell_has_the_same_per_atom_features():
    descriptor, atoms = tio2_like()
    reference = features_of(descriptor, atoms)
    supercell = features_of(descriptor, atoms.repeat((2, 2, 2)))
    torch.testing.assert_close(supercell, reference.repeat(8, 1), rtol=0, atol=1e-10)


def test_float32_is_close_to_float64():
    descriptor, atoms = tio2_like()
    single = descriptor.to(dtype=torch.float32)
    f64 = features_of(descriptor, atoms)
    f32 = features_of(single, atoms)
    assert f32.dtype == torch.float32
    scale = f64.abs().max()
    assert float((f32.double() - f64).abs().max() / scale) < 1e-5
    _, d64 = descriptor.forward_with_derivatives(atoms.positions, atoms.get_chemical_symbols(), atoms.cell.array)
    _, d32 = single.forward_with_derivatives(atoms.positions, atoms.get_chemical_symbols(), atoms.cell.array)
    g = torch.ones(len(atoms), descriptor.n_features, dtype=torch.float64)
    ref = d64.contract(g)
    assert float((d32.contract(g.float()).double() - ref).abs().max() / ref.abs().max()) < 1e-5


# --- batching and backends --------------------------------------------------------------

def mixed_batch():
    descriptor, atoms = tio2_like()
    water = [[0.0, 0.0, 0.117], [0.0, 0.755, -0.471], [0.0, -0.755, -0.471]]
    positions = [atoms.positions, np.array(water), atoms.repeat((1, 2, 1)).positions]
    species = [atoms.get_chemical_symbols(), ["O", "Ti", "Ti"], atoms.repeat((1, 2, 1)).get_chemical_symbols()]
    cells = [atoms.cell.array, None, atoms.repeat((1, 2, 1)).cell.array]
    return descriptor, positions, species, cells


def test_batched_featurizer_equals_one_structure_at_a_time():
    descriptor, positions, species, cells = mixed_batch()
    featurizer = BatchedFeaturizer(descriptor)
    features, batch = featurizer(positions, species, cells)
    assert batch.tolist() == sum(([b] * len(p) for b, p in enumerate(positions)), [])
    one_by_one = torch.cat([descriptor.forward_from_positions(p, s, c) for p, s, c in zip(positions, species, cells)])
    torch.testing.assert_close(features, one_by_one, rtol=0, atol=1e-12)

    features_d, batch_d, derivatives = featurizer.with_derivatives(positions, species, cells)
    torch.testing.assert_close(features_d, features, rtol=0, atol=0)
    weights = torch.randn(features.shape, dtype=torch.float64)
    offset, expected = 0, []
    for p, s, c in zip(positions, species, cells):
        _, d = descriptor.forward_with_derivatives(p, s, c)
        expected.append(d.contract(weights[offset: offset + len(p)]))
        offset += len(p)
    torch.testing.assert_close(derivatives.contract(weights), torch.cat(expected), rtol=0, atol=1e-12)


def test_batched_featurizer_checks_lengths():
    descriptor, positions, species, cells = mixed_batch()
    with pytest.raises(ValueError, match="batch_species"):
        BatchedFeaturizer(descriptor)(positions, species[:2], cells)
    with pytest.raises(ValueError, match="one entry per structure"):
        BatchedFeaturizer(descriptor)(positions, species, cells[:1])
    with pytest.raises(ValueError, match="at least one structure"):
        BatchedFeaturizer(descriptor)([], [])


def test_atoms_without_neighbours_have_zero_features_and_derivatives():
    descriptor = ChebyshevDescriptor(["H", "O"], 3, 3.0, 2, 2.0)
    features, derivatives = descriptor.forward_with_derivatives([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]], ["H", "O"])
    assert torch.equal(features, torch.zeros(2, descriptor.n_features, dtype=torch.float64))
    assert torch.equal(derivatives.contract(torch.ones_like(features)), torch.zeros(2, 3, dtype=torch.float64))


def test_torch_scatter_and_torch_cluster_give_identical_results():
    if backend.scatter_module("auto") is None and backend.cluster_module("auto") is None:
        pytest.skip("neither torch-scatter nor torch-cluster is installed")
    descriptor, positions, species, cells = mixed_batch()
    results = []
    for name in ("torch", "auto"):
        featurizer = BatchedFeaturizer(ChebyshevDescriptor.from_config(descriptor.get_config(), backend=name))
        features, _, derivatives = featurizer.with_derivatives(positions, species, cells)
        assert derivatives.backend == name
        weights = torch.randn_like(features, generator=torch.Generator().manual_seed(0))
        results.append((features, derivatives.dG_drij, derivatives.grads_j, derivatives.contract(weights)))
    for native, optional in zip(*results):
        assert torch.equal(native, optional)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    descriptor, positions, species, cells = mixed_batch()
    cpu_features, _, cpu_der = BatchedFeaturizer(descriptor).with_derivatives(positions, species, cells)
    gpu = descriptor.to(device="cuda")
    features, _, derivatives = BatchedFeaturizer(gpu).with_derivatives(positions, species, cells)
    assert features.is_cuda
    torch.testing.assert_close(features.cpu(), cpu_features, rtol=0, atol=1e-10)
    weights = torch.randn(cpu_features.shape, dtype=torch.float64)
    torch.testing.assert_close(derivatives.contract(weights.cuda()).cpu(), cpu_der.contract(weights), rtol=0, atol=1e-10)


def test_derivatives_split_and_concatenate_round_trip():
    descriptor, positions, species, cells = mixed_batch()
    featurizer = BatchedFeaturizer(descriptor)
    features, batch, together = featurizer.with_derivatives(positions, species, cells)
    parts = together.split([len(p) for p in positions])
    weights = torch.randn(features.shape, dtype=torch.float64)
    offset = 0
    for part, p, s, c in zip(parts, positions, species, cells):
        _, alone = descriptor.forward_with_derivatives(p, s, c)
        assert part.n_atoms == len(p)
        torch.testing.assert_close(part.contract(weights[offset: offset + len(p)]),
                                   alone.contract(weights[offset: offset + len(p)]), rtol=0, atol=1e-12)
        offset += len(p)
    rejoined = LocalDerivatives.concatenate(parts)
    assert rejoined.n_atoms == together.n_atoms
    for name in ("center_idx", "neighbor_j_idx", "dG_drij", "grads_k", "triplet_typespin"):
        assert torch.equal(getattr(rejoined, name), getattr(together, name)), name


@pytest.mark.parametrize("case", [periodic_case, isolated_case])
def test_contraction_backward_is_its_exact_transpose(case):
    descriptor, positions, species, cell = case()
    _, derivatives = descriptor.forward_with_derivatives(positions, species, cell)
    weights = torch.randn(len(positions), descriptor.n_features, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(derivatives.contract, (weights,))
    upstream = torch.randn(len(positions), 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad(derivatives.contract(weights), weights, upstream)
    expected = torch.einsum("ifac,ac->if", derivatives.to_dense(), upstream)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)
