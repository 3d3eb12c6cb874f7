"""Per-species networks, normalisation statistics, energy assembly and exact forces."""
import math

import numpy as np
import pytest
import torch

from aenet_core.model import AtomicNetworks, AtomisticModel, energy_normalization, feature_statistics
from aenet_core.torch_featurize import BatchedFeaturizer, ChebyshevDescriptor


def test_activations_follow_aenet():
    x = torch.linspace(-2, 2, 9, dtype=torch.float64).unsqueeze(1)
    expected = {
        "linear": x, "tanh": torch.tanh(x), "sigmoid": torch.sigmoid(x),
        "mtanh": 1.7159 * torch.tanh(2 * x / 3), "twist": 1.7159 * torch.tanh(2 * x / 3) + 0.1 * x,
    }
    for name, values in expected.items():
        net = AtomicNetworks({"H": [(1, name.upper())]}, ["H"], 1).double()
        activation = net.functions[0][1]
        torch.testing.assert_close(activation(x), values, rtol=0, atol=1e-15)


@pytest.mark.parametrize("arch, message", [
    ({"H": [(4, "tanh")]}, r"no network for species \['O'\]"),
    ({"H": [(4, "tanh")], "O": [(4, "tanh")], "C": [(2, "tanh")]}, "not descriptor species"),
    ({"H": [], "O": [(4, "tanh")]}, "empty"),
    ({"H": [(0, "tanh")], "O": [(4, "tanh")]}, "positive integer"),
    ({"H": [(4, "relu")], "O": [(4, "tanh")]}, "activation must be one of"),
    ({"H": [4], "O": [(4, "tanh")]}, r"\(nodes, activation\)"),
])
def test_bad_architectures_are_rejected(arch, message):
    with pytest.raises(ValueError, match=message):
        AtomicNetworks(arch, ["H", "O"], 5)


def test_layer_sizes_and_species_dispatch():
    torch.manual_seed(0)
    net = AtomicNetworks({"H": [(3, "tanh"), (2, "sigmoid")], "O": [(4, "linear")]}, ["H", "O"], 5).double()
    shapes = [tuple(p.shape) for p in net.functions[0].parameters()]
    assert shapes == [(3, 5), (3,), (2, 3), (2,), (1, 2), (1,)]
    features = torch.randn(6, 5, dtype=torch.float64)
    species = torch.tensor([0, 1, 1, 0, 1, 0])
    out = net(features, species)
    for i, s in enumerate(species.tolist()):
        torch.testing.assert_close(out[i], net.functions[s](features[i: i + 1])[0, 0])


def test_feature_statistics_streaming_matches_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(loc=3.0, scale=2.0, size=(50, 4))
    data[:, 2] = 7.0  # a constant column: std falls back to sqrt(1e-12)
    stats = feature_statistics([torch.tensor(data[:20]), torch.tensor(data[20:])])
    np.testing.assert_allclose(stats["mean"].numpy(), data.mean(0), rtol=1e-13)
    expected_std = np.sqrt(np.maximum((data**2).mean(0) - data.mean(0) ** 2, 0) + 1e-12)
    np.testing.assert_allclose(stats["std"].numpy(), expected_std, rtol=1e-9)
    assert stats["std"][2] == pytest.approx(1e-6, rel=1e-3)
    np.testing.assert_array_equal(stats["min"].numpy(), data.min(0))
    np.testing.assert_array_equal(stats["max"].numpy(), data.max(0))
    with pytest.raises(ValueError, match="at least one atom"):
        feature_statistics([])


def test_energy_normalization():
    shift, scaling = energy_normalization([-3.0, -1.0, -2.5])
    assert (shift, scaling) == (-2.0, 1.0)
    assert energy_normalization([-4.2, -4.2]) == (0.0, 1.0)
    with pytest.raises(ValueError):
        energy_normalization([float("nan")])


def test_energy_assembly_uses_physical_units():
    model = AtomisticModel({"H": [(2, "tanh")], "O": [(2, "tanh")]}, ["H", "O"], 3, atomic_energies={"O": -432.5})
    model.set_energy_normalization(-2.0, 4.0)
    features = torch.randn(5, 3, dtype=torch.float64)
    species = torch.tensor([0, 1, 0, 1, 1])
    batch = torch.tensor([0, 0, 0, 1, 1])
    outputs = model.network_outputs(features, species)
    energies = model(features, species, batch, 2)
    expected0 = outputs[:3].sum() / 4.0 + 3 * -2.0 - 432.5
    expected1 = outputs[3:].sum() / 4.0 + 2 * -2.0 - 2 * 432.5
    torch.testing.assert_close(energies, torch.stack([expected0, expected1]))
    atom = model.atom_energies(outputs, species)
    torch.testing.assert_close(atom[1], outputs[1] / 4.0 - 2.0 - 432.5)


def structures_for_forces():
    rng = np.random.default_rng(4)
    cell = np.array([[4.1, 0.2, 0.0], [0.3, 3.9, 0.1], [0.0, -0.3, 4.4]])
    periodic = rng.uniform(-0.6, 1.6, size=(7, 3)) @ cell  # several atoms outside the home cell
    molecule = rng.normal(size=(4, 3)) * 1.1
    return [(periodic, ["Ti", "O", "O", "Ti", "O", "O", "Ti"], cell), (molecule, ["O", "Ti", "O", "O"], None)]


def test_forces_are_the_negative_gradient_of_the_energy():
    torch.manual_seed(3)
    descriptor = ChebyshevDescriptor(["Ti", "O"], 6, 4.0, 3, 3.0, min_cutoff=0.3)
    model = AtomisticModel({"Ti": [(6, "tanh"), (4, "twist")], "O": [(5, "sigmoid")]}, ["Ti", "O"],
                           descriptor.n_features, atomic_energies={"Ti": -1604.6, "O": -432.5})
    model.set_feature_statistics(torch.rand(descriptor.n_features) - 0.5, torch.rand(descriptor.n_features) + 0.5)
    model.set_energy_normalization(-7.0, 1.3)
    featurizer = BatchedFeaturizer(descriptor)
    structures = structures_for_forces()
    positions = [p for p, _, _ in structures]
    species = [s for _, s, _ in structures]
    cells = [c for _, _, c in structures]

    def energies(positions):
        features, batch = featurizer(positions, species, cells)
        return model(features, torch.cat([descriptor.species_indices(s) for s in species]), batch, 2)

    features, batch, derivatives = featurizer.with_derivatives(positions, species, cells)
    species_idx = torch.cat([descriptor.species_indices(s) for s in species])
    energy, forces = model.energies_and_forces(features, species_idx, batch, 2, derivatives)
    torch.testing.assert_close(energy, energies(positions), rtol=0, atol=1e-9)

    h, offset = 1e-5, 0
    for b, pos in enumerate(positions):
        for atom in range(len(pos)):
            for c in range(3):
                plus = [p.copy() for p in positions]
                minus = [p.copy() for p in positions]
                plus[b][atom, c] += h
                minus[b][atom, c] -= h
                numeric = -(energies(plus)[b] - energies(minus)[b]) / (2 * h)
                assert math.isclose(float(forces[offset + atom, c]), float(numeric.detach()), abs_tol=1e-6)
        offset += len(pos)
    assert float(forces.abs().max()) > 0.01


def test_force_graph_reaches_the_weights():
    descriptor = ChebyshevDescriptor(["Ti", "O"], 4, 4.0, 2, 3.0, min_cutoff=0.3)
    model = AtomisticModel({"Ti": [(4, "tanh")], "O": [(4, "tanh")]}, ["Ti", "O"], descriptor.n_features)
    positions, species, cell = structures_for_forces()[0]
    features, derivatives = descriptor.forward_with_derivatives(positions, species, cell)
    species_idx = descriptor.species_indices(species)
    _, forces = model.energies_and_forces(features, species_idx, torch.zeros(len(species), dtype=torch.long), 1,
                                          derivatives, create_graph=True)
    (forces**2).sum().backward()
    for network in model.networks.functions:
        hidden = [p for p in network[:-1].parameters()]
        assert all(p.grad is not None and float(p.grad.abs().max()) > 0 for p in hidden)
        assert float(network[-1].weight.grad.abs().max()) > 0
        assert network[-1].bias.grad is None  # a constant shift of the energy exerts no force


def test_state_dict_carries_normalisation_and_references():
    model = AtomisticModel({"H": [(2, "tanh")]}, ["H"], 3, atomic_energies={"H": -1604.604515075})
    model.set_feature_statistics([1.0, 2.0, 3.0], [0.5, 0.5, 2.0])
    model.set_energy_normalization(-1.5, 3.0)
    copy = AtomisticModel({"H": [(2, "tanh")]}, ["H"], 3)
    copy.load_state_dict(model.state_dict())
    assert float(copy.E_shift) == -1.5 and float(copy.E_scaling) == 3.0
    assert copy.atomic_energies.tolist() == [-1604.604515075] and copy.feature_std.tolist() == [[0.5, 0.5, 2.0]]
    assert all(t.dtype == torch.float64 for t in copy.state_dict().values())
    with pytest.raises(ValueError, match="non-negative"):
        model.set_feature_statistics([0.0] * 3, [1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="shape"):
        model.set_feature_statistics([0.0] * 4, [1.0] * 4)
    with pytest.raises(ValueError, match="E_scaling"):
        model.set_energy_normalization(0.0, 0.0)
