"""Compiled kernels: the fused force contraction against the dense Jacobian and the uncompiled functions, the
descriptor's compiled terms, the CSR sums per centre, the fallback when compiling fails, and when training
compiles."""
import pytest
import torch

from aenet_core import compiled, contraction
from aenet_core.data.memory import StructureDataset
from aenet_core.descriptor import BatchedFeaturizer, structure_batch
from aenet_core.derivatives import _segment_sums
from aenet_core.torch_featurize import ChebyshevDescriptor
from aenet_core.torch_training import Adam, TorchANNPotential, TorchTrainingConfig


def descriptor():
    return ChebyshevDescriptor(["Cu", "Au"], 6, 5.0, 3, 4.0, min_cutoff=0.55)


@pytest.fixture(scope="module")
def payload(cuau):
    """Features and derivatives of five Cu-Au cells in one batch (two species: typespin-weighted sets)."""
    dataset = StructureDataset(cuau[:5], descriptor())
    features, _, derivatives = BatchedFeaturizer(dataset.descriptor).with_derivatives(
        *structure_batch([dataset.get_structure(i) for i in range(5)]))
    return features, derivatives


@pytest.fixture
def fresh_kernels(monkeypatch):
    """The module's compiled kernels and failures, emptied for this test only."""
    monkeypatch.setattr(compiled, "_kernels", {})
    monkeypatch.setattr(compiled, "_failures", [])


def forces_and_gradient(derivatives, weights, upstream):
    weights = weights.clone().requires_grad_(True)
    gradient = derivatives.contract(weights)
    (back,) = torch.autograd.grad(gradient, weights, upstream)
    return gradient.detach(), back


@pytest.mark.slow
def test_compiled_kernels_give_the_plain_functions_numbers_every_time(payload, fresh_kernels):
    features, derivatives = payload
    torch.manual_seed(0)
    weights = torch.randn(features.shape, dtype=torch.float64)
    upstream = torch.randn(derivatives.n_atoms, 3, dtype=torch.float64)
    plain = forces_and_gradient(derivatives, weights, upstream)
    with compiled.enabled():
        first = forces_and_gradient(derivatives, weights, upstream)
        again = forces_and_gradient(derivatives, weights, upstream)
    assert set(compiled._kernels) >= {contraction._atom_terms, contraction._coefficient_rows_from_atoms}
    assert not compiled._failures
    for ours, reference in zip(first, plain):
        torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # deterministic on the CPU
    # The independent truth: the dense Jacobian dG/dr, contracted by hand.
    dense = derivatives.to_dense()
    torch.testing.assert_close(first[0], torch.einsum("if,ifac->ac", weights, dense), rtol=0, atol=1e-11)
    torch.testing.assert_close(first[1], torch.einsum("ifac,ac->if", dense, upstream), rtol=0, atol=1e-11)


@pytest.mark.slow
def test_compiled_descriptor_terms_give_the_plain_features_and_derivatives(cuau, fresh_kernels):
    featurizer = BatchedFeaturizer(descriptor())
    inputs = structure_batch(cuau[:5])
    plain = featurizer.with_derivatives(*inputs)
    with compiled.enabled():
        ours = featurizer.with_derivatives(*inputs)
        features_only = featurizer(*inputs)[0]
    assert not compiled._failures and len(compiled._kernels) == 2
    torch.testing.assert_close(ours[0], plain[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(features_only, plain[0], rtol=0, atol=1e-12)
    for name in ("radial_dG_dd", "radial_unit", "angular_dG_dcos", "angular_dG_ddij", "angular_dG_ddik", "dcos_drj",
                 "dcos_drk", "unit_ij", "unit_ik", "distance_ij", "distance_ik"):
        torch.testing.assert_close(getattr(ours[2], name), getattr(plain[2], name), rtol=0, atol=1e-12, msg=name)


def test_a_compiler_that_fails_leaves_the_plain_functions_with_one_warning(payload, fresh_kernels, monkeypatch):
    features, derivatives = payload
    weights = torch.randn(features.shape, dtype=torch.float64)
    upstream = torch.randn(derivatives.n_atoms, 3, dtype=torch.float64)

    def broken(function, **_):
        def fails(*args):
            raise RuntimeError("no C++ compiler found\ndetails")
        return fails

    monkeypatch.setattr(torch, "compile", broken)
    plain = forces_and_gradient(derivatives, weights, upstream)
    with compiled.enabled(), pytest.warns(UserWarning, match="torch.compile failed .*no C\\+\\+ compiler found"):
        result = forces_and_gradient(derivatives, weights, upstream)
    assert all(torch.equal(a, b) for a, b in zip(result, plain))
    assert len(compiled._failures) == 1  # the backward pass tried no more


def test_segment_sums_sum_rows_per_owner_in_any_order():
    owner = torch.tensor([2, 0, 2, 1, 0, 2])
    rows = torch.arange(12, dtype=torch.float64).reshape(6, 2)
    spins = torch.tensor([1.0, -1.0, 0.5, 2.0, 1.0, -2.0], dtype=torch.float64)
    expected = torch.zeros(4, 2, dtype=torch.float64).index_add_(0, owner, rows)
    assert torch.equal(_segment_sums(owner, 4, None, torch.float64) @ rows, expected)
    weighted = torch.zeros(4, 2, dtype=torch.float64).index_add_(0, owner, spins[:, None] * rows)
    assert torch.equal(_segment_sums(owner, 4, spins, torch.float64) @ rows, weighted)
    order = torch.argsort(owner, stable=True)  # sorted owners, as producers write them
    assert torch.equal(_segment_sums(owner[order], 4, None, torch.float64) @ rows[order], expected)


def test_training_compiles_only_when_the_work_pays_for_it(monkeypatch):
    monkeypatch.delenv("AENET_CORE_COMPILE", raising=False)
    assert not compiled.worthwhile(compiled.WORTHWHILE_ATOM_EPOCHS - 1)
    assert compiled.worthwhile(compiled.WORTHWHILE_ATOM_EPOCHS)
    monkeypatch.setenv("AENET_CORE_COMPILE", "0")
    assert not compiled.worthwhile(10**9)
    monkeypatch.setenv("AENET_CORE_COMPILE", "1")
    assert compiled.worthwhile(1) and not compiled.worthwhile(0)  # energy only: nothing to compile


def test_a_training_run_asks_for_compiled_kernels_by_its_force_atom_epochs(cuau, monkeypatch):
    asked = []
    monkeypatch.setattr(compiled, "worthwhile", lambda atom_epochs: asked.append(atom_epochs) or False)
    config = TorchTrainingConfig(iterations=3, method=Adam(mu=1e-3, batchsize=8), testpercent=0, seed=1,
                                 force_weight=0.1, force_fraction=1.0, atomic_energies={"Cu": 0.0, "Au": 0.0},
                                 checkpoint_dir=None, save_best=False, show_progress=False)
    TorchANNPotential({s: [(3, "tanh")] for s in ["Cu", "Au"]}, descriptor()).train(structures=cuau[:6],
                                                                                     config=config)
    assert asked == [3 * sum(s.n_atoms for s in cuau[:6])]


def test_float32_derivatives_train_a_float64_model_to_the_float64_numbers_within_their_rounding(cuau):
    runs = {}
    for precision in ("auto", "float32"):
        config = TorchTrainingConfig(iterations=4, method=Adam(mu=1e-2, batchsize=8), testpercent=20, seed=1,
                                     split_seed=3, force_weight=0.5, force_fraction=1.0, derivative_precision=precision,
                                     atomic_energies={"Cu": 0.0, "Au": 0.0}, checkpoint_dir=None, save_best=False,
                                     show_progress=False)
        potential = TorchANNPotential({s: [(3, "tanh")] for s in ["Cu", "Au"]}, descriptor())
        runs[precision] = (potential.train(structures=cuau[:16], config=config), potential)
    (wide, _), (narrow, narrow_model) = runs["auto"], runs["float32"]
    assert next(narrow_model.model.parameters()).dtype == torch.float64
    for key in ("final_RMSE_train", "final_RMSE_force_train", "final_RMSE_force_test"):
        assert narrow.stats[key] == pytest.approx(wide.stats[key], rel=1e-5), key
        assert narrow.stats[key] != wide.stats[key], key  # the float32 path did run
    # Forces of the same model from float32 derivatives: float32 rounding (relative 1e-7), not worse.
    _, _, derivatives = BatchedFeaturizer(descriptor()).with_derivatives(*structure_batch(cuau[:3]))
    weights = torch.randn(derivatives.n_atoms, descriptor().n_features, dtype=torch.float64)
    exact = derivatives.contract(weights)
    rounded = derivatives.to(dtype=torch.float32).contract(weights)
    assert rounded.dtype == torch.float64
    assert float((rounded - exact).abs().max() / exact.abs().max()) < 1e-6


def test_float32_derivatives_of_a_database_are_cached_as_float32(tmp_path, cuau):
    from aenet_core.data import HDF5StructureDataset

    db = HDF5StructureDataset(descriptor(), tmp_path / "db.h5", sources=cuau[:6], mode="build",
                              atomic_energies={"Cu": 0.0, "Au": 0.0})
    db.build_database(show_progress=False, persist_features=True, persist_force_derivatives=True)
    features, exact = db.stored_derivatives([0, 3])
    assert features.dtype == exact.radial_dG_dd.dtype == torch.float64
    fresh = HDF5StructureDataset(None, tmp_path / "db.h5", mode="load")
    _, narrow = fresh.stored_derivatives([3, 0], torch.float32)  # read now, cached as float32
    assert narrow.radial_dG_dd.dtype == narrow.triplet_typespin.dtype == torch.float32
    entry = fresh._payload_reader().cache.entries[3]
    assert all(t.dtype != torch.float64 for group in entry[1].values() for t in group.values())
    _, again = fresh.stored_derivatives([0, 3], torch.float32)  # from the cache
    assert again.angular_dG_dcos.dtype == torch.float32
    torch.testing.assert_close(again.radial_dG_dd, exact.radial_dG_dd.float(), rtol=0, atol=0)
    weights = torch.randn(features.shape, dtype=torch.float64)
    assert float((again.contract(weights) - exact.contract(weights)).abs().max()) < 1e-5
