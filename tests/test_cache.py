"""Per-structure caches: the LRU bounds, and the persistent cache on disk."""
import torch

from aenet_core.data import StructureDataset
from aenet_core.data.batch import FeatureSource
from aenet_core.data.cache import PersistentCache
from aenet_core.split import split_indices
from training_setup import REFERENCES, config, descriptor, potential


def test_persisted_caches_are_reused_by_a_later_run(cuau, tmp_path):
    settings = dict(iterations=2, force_weight=0.2, cache_features=True, cache_neighbors=True,
                    cache_force_triplets=True, cache_persist_dir=str(tmp_path / "cache"))
    first = potential()
    first.train(structures=cuau, config=config(**settings))
    files = sorted(p.relative_to(tmp_path) for p in (tmp_path / "cache").rglob("*.pt"))
    kinds = {p.parts[2] for p in files}
    assert kinds == {"features", "neighbors", "derivatives"}

    dataset = StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES)
    source = FeatureSource(dataset, feature_cache=PersistentCache(None, tmp_path / "cache", dataset, "features"),
                           derivative_cache=PersistentCache(None, tmp_path / "cache", dataset, "derivatives"))
    train, _ = split_indices(len(dataset), 25, 3)
    forced = set(range(len(cuau))) - set(train[:4])  # train[:4] come from the energy-view feature files
    fresh = FeatureSource(dataset).batch(list(range(len(cuau))), forced.__contains__)
    reused = source.batch(list(range(len(cuau))), forced.__contains__)
    assert source.featurizer_calls == 0
    assert source.feature_cache.disk_hits == 4 and source.derivative_cache.disk_hits == len(cuau) - 4
    assert torch.equal(fresh.features, reused.features)
    weights = torch.randn_like(fresh.features[: fresh.n_force_atoms])
    assert torch.equal(fresh.derivatives.contract(weights), reused.derivatives.contract(weights))

    second = potential()
    second.train(structures=cuau, config=config(**settings))
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
