"""Sampling orders and force-supervised subsets: policies, weights, seeds and resampling."""
import random

import numpy as np
import torch

from aenet_core.data import StructureDataset
from aenet_core.training.sampling import ForceSelection, Sampler, adaptive_weights
from training_setup import REFERENCES, config, descriptor, potential


def test_force_fraction_and_minimum():
    selection = ForceSelection(list(range(10)), 0.25, 1, random.Random(0))
    selection.draw()
    assert len(selection.selected) == 2
    selection = ForceSelection(list(range(10)), 0.05, 3, random.Random(0))
    selection.draw()
    assert len(selection.selected) == 3
    selection = ForceSelection(list(range(4)), 1.0, 1, random.Random(0))
    selection.draw()
    assert selection.selected == {0, 1, 2, 3}


def test_energy_weighted_sampling_weights(cuau):
    dataset = StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES)
    indices = list(range(len(dataset)))
    sampler = Sampler("energy_weighted", dataset, indices, seed=1)
    e = np.array([dataset.referenced_energy_per_atom(i) for i in indices])
    delta = e - e.min()
    np.testing.assert_allclose(sampler.weights.numpy(), 1 / (1 + delta / delta.max()))
    assert len(sampler.order()) == len(indices)


def test_error_weighted_scores_follow_the_seed_formula():
    scores = torch.tensor([0.0, float("nan"), -1.0, 2.0, 6.0], dtype=torch.float64)
    weights = adaptive_weights(scores)
    expected = torch.tensor([1e-12, 1e-12, 1e-12, 2.0, 6.0], dtype=torch.float64)
    torch.testing.assert_close(weights, expected / expected.mean())
    assert torch.equal(adaptive_weights(torch.zeros(3, dtype=torch.float64)), torch.ones(3, dtype=torch.float64))


def test_error_weighted_training_updates_scores(cuau):
    p = potential()
    out = p.train(structures=cuau, config=config(iterations=3, sampling_policy="error_weighted"))
    assert len(out.errors) == 3  # the sampler ran; its update is covered below
    dataset = StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES)
    sampler = Sampler("error_weighted", dataset, [0, 1, 2, 3], seed=0)
    sampler.update({1: 0.4, 3: 0.1})
    torch.testing.assert_close(sampler.scores, torch.tensor([1.0, 0.4, 1.0, 0.1], dtype=torch.float64))
    torch.testing.assert_close(sampler.weights.mean(), torch.tensor(1.0, dtype=torch.float64))


def test_error_weighted_scores_update_on_the_cached_energy_only_path(cuau):
    p = potential()
    p.train(structures=cuau, config=config(iterations=2, sampling_policy="error_weighted", cache_features=True))
    scores = p._run_state["sampler"]["scores"]
    assert not torch.equal(scores, torch.ones_like(scores))  # the reference never updates them on this path
    weights = p._run_state["sampler"]["weights"]
    torch.testing.assert_close(weights, adaptive_weights(scores))


def test_fixed_force_subsets_stay_and_random_ones_are_resampled(cuau):
    def subsets(sampling):
        p = potential()
        p.train(structures=cuau, config=config(iterations=1, force_weight=0.2, force_fraction=0.4,
                                               force_sampling=sampling, force_resample_num_epochs=1))
        first = p._run_state["forces"]["train"][1]
        p.train(structures=cuau, config=config(iterations=4, force_weight=0.2, force_fraction=0.4,
                                               force_sampling=sampling, force_resample_num_epochs=1))
        return first, p._run_state["forces"]["train"][1]

    first, last = subsets("fixed")
    assert first == last and len(first) == int(11 * 0.4)
    first, last = subsets("random")
    assert first != last and len(last) == len(first)
