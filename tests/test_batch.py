"""Featurized batches: feature, derivative and neighbour caches give the same batches with fewer passes."""
import torch

from aenet_core.data import StructureDataset
from aenet_core.data.batch import FeatureSource
from aenet_core.data.cache import LRUCache
from training_setup import REFERENCES, descriptor


def test_feature_cache_avoids_recomputation(cuau):
    dataset = StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES)
    source = FeatureSource(dataset, feature_cache=LRUCache(None), derivative_cache=LRUCache(None))
    first = source.batch([0, 1, 2], lambda i: i == 1)
    calls = source.featurizer_calls
    again = source.batch([2, 1, 0], lambda i: i == 1)
    assert source.featurizer_calls == calls == 2
    assert torch.equal(first.features[first.n_atoms[0]:], torch.cat([again.features[again.n_atoms[0]:][
        again.n_atoms[1]:], again.features[again.n_atoms[0]:][: again.n_atoms[1]]]))
    limited = FeatureSource(dataset, feature_cache=LRUCache(1))
    limited.batch([0, 1], lambda _: False)
    assert len(limited.feature_cache) == 1


def test_neighbor_cache_avoids_neighbor_searches(cuau):

    dataset = StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES)
    plain = FeatureSource(dataset)
    cached = FeatureSource(dataset, neighbor_cache=LRUCache(None))
    for indices, forced in (([0, 1, 2, 3], {1}), ([3, 2, 1, 0], {0, 2}), ([4, 0, 4], set())):
        a, b = plain.batch(indices, forced.__contains__), cached.batch(indices, forced.__contains__)
        assert torch.equal(a.features, b.features)
        if forced:
            weights = torch.randn_like(a.features[: a.n_force_atoms])
            assert torch.equal(a.derivatives.contract(weights), b.derivatives.contract(weights))
    assert cached.neighbor_searches == 3 and len(cached.neighbor_cache) == 5
    cached.batch([0, 1, 2, 3, 4], lambda _: True)
    assert cached.neighbor_searches == 3
