"""The training run: normalisation, validation, checkpoints, resume, DataLoader workers, caches, scheduler."""
import pytest
import torch

from aenet_core.data import StructureDataset
from aenet_core.data.batch import FeatureSource
from aenet_core.data.cache import LRUCache
from aenet_core.model import energy_normalization, feature_statistics
from aenet_core.split import split_indices
from aenet_core.torch_featurize import ChebyshevDescriptor
from aenet_core.torch_training import Adam, TorchANNPotential
from aenet_core.training.loop import feature_source, warm_up
from training_setup import REFERENCES, SMALL_VALIDATION, config, cuau_structures, descriptor, potential

pytestmark = pytest.mark.filterwarnings(SMALL_VALIDATION)


@pytest.fixture(scope="module")
def cuau():
    return cuau_structures()


def test_no_test_set_gives_nan_test_columns(cuau):
    out = potential().train(structures=cuau, config=config(testpercent=0, iterations=2))
    assert out.errors["RMSE_test"].isna().all() and out.errors["RMSE_train"].notna().all()


def test_normalisation_comes_from_the_training_split(cuau):
    p = potential()
    cfg = config(iterations=1)
    p.train(structures=cuau, config=cfg)
    dataset = StructureDataset(cuau, p.descriptor, atomic_energies=REFERENCES)
    train, _ = split_indices(len(dataset), cfg.testpercent, cfg.split_seed)
    features = FeatureSource(dataset).batch(train, lambda _: False).features
    stats = feature_statistics([features])
    for species_row in range(len(p.descriptor.species)):  # the same global statistics for every species
        torch.testing.assert_close(p.model.feature_mean[species_row], stats["mean"])
        torch.testing.assert_close(p.model.feature_std[species_row], stats["std"])
    shift, scaling = energy_normalization(dataset.referenced_energy_per_atom(i) for i in train)
    assert float(p.model.E_shift) == pytest.approx(shift) and float(p.model.E_scaling) == pytest.approx(scaling)


def test_checkpoints_rotation_and_best_model(cuau, tmp_path):
    p = potential()
    p.train(structures=cuau, config=config(iterations=5, checkpoint_dir=str(tmp_path), checkpoint_interval=2,
                                           save_best=True))
    assert sorted(f.name for f in tmp_path.glob("checkpoint_epoch_*.pt")) == ["checkpoint_epoch_0001.pt",
                                                                               "checkpoint_epoch_0003.pt"]
    best = TorchANNPotential.from_file(tmp_path / "best_model.pt")
    assert best.best_val_loss is not None and len(best.history["train_energy_rmse"]) <= 5
    rotated = tmp_path / "rotated"
    potential().train(structures=cuau, config=config(iterations=5, checkpoint_dir=str(rotated), max_checkpoints=2))
    assert sorted(f.name for f in rotated.glob("checkpoint_epoch_*.pt")) == ["checkpoint_epoch_0003.pt",
                                                                              "checkpoint_epoch_0004.pt"]


@pytest.mark.parametrize("policy", ["uniform", "error_weighted"])
def test_resume_gives_the_same_weights_as_one_run(cuau, tmp_path, policy):
    settings = dict(force_weight=0.3, force_fraction=0.5, force_resample_num_epochs=2, sampling_policy=policy,
                    use_scheduler=True, scheduler_patience=0)
    whole = potential()
    whole.train(structures=cuau, config=config(iterations=6, **settings))
    first = potential()
    first.train(structures=cuau, config=config(iterations=3, checkpoint_dir=str(tmp_path), **settings))
    second = potential()
    out = second.train(structures=cuau, config=config(iterations=3, **settings),
                       resume_from=tmp_path / "checkpoint_epoch_0002.pt")
    a, b = whole.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(out.errors) == 6
    assert out.learning_rate == whole.history["learning_rate"]


def test_resume_refuses_another_descriptor(cuau, tmp_path):
    potential().train(structures=cuau, config=config(iterations=1, checkpoint_dir=str(tmp_path)))
    other = TorchANNPotential({"Cu": [(6, "tanh"), (6, "tanh")], "Au": [(6, "tanh")]},
                              ChebyshevDescriptor(["Cu", "Au"], 5, 4.5, 2, 3.5, min_cutoff=0.5))
    with pytest.raises(ValueError, match="descriptor or architecture differs"):
        other.train(structures=cuau, config=config(iterations=1), resume_from=tmp_path / "checkpoint_epoch_0000.pt")
    with pytest.raises(ValueError, match="not a readable"):
        (tmp_path / "junk.pt").write_text("not a model")
        TorchANNPotential.from_file(tmp_path / "junk.pt")


def test_dataloader_workers_give_the_same_training(cuau):
    settings = dict(iterations=3, force_weight=0.2, force_fraction=0.5, force_resample_num_epochs=1,
                    cache_features=True)
    serial, parallel = potential(), potential()
    serial_out = serial.train(structures=cuau, config=config(**settings))
    parallel_out = parallel.train(structures=cuau, config=config(num_workers=2, prefetch_factor=2,
                                                                 persistent_workers=True, **settings))
    a, b = serial.model.state_dict(), parallel.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    columns = ["RMSE_train", "RMSE_test", "RMSE_force_train", "RMSE_force_test"]
    assert serial_out.errors[columns].equals(parallel_out.errors[columns])


def test_cache_warmup_fills_the_caches_before_training(cuau):

    dataset = StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES)
    source = FeatureSource(dataset, feature_cache=LRUCache(None), derivative_cache=LRUCache(None))
    warm_up(config(cache_warmup=True, force_weight=0.2), [(source, list(range(10))), (None, [])])
    assert len(source.feature_cache) == 10 and len(source.derivative_cache) == 10
    calls = source.featurizer_calls
    source.batch(list(range(10)), lambda i: i % 2 == 0)
    assert source.featurizer_calls == calls == 2
    with pytest.warns(UserWarning, match="cache_warmup is skipped"):
        potential().train(structures=cuau, config=config(iterations=1, cache_warmup=True, num_workers=1))


def test_scheduler_reduces_the_learning_rate_on_a_plateau(cuau):
    out = potential().train(structures=cuau, config=config(iterations=6, use_scheduler=True, scheduler_patience=0,
                                                           scheduler_factor=0.5, method=Adam(mu=0.5, batchsize=4)))
    rates = out.learning_rate
    assert rates[0] <= 0.5 and min(rates) < 0.5 and all(b <= a for a, b in zip(rates, rates[1:]))


def test_cache_scope_limits_caching_to_a_split(cuau):
    p = potential()
    dataset = StructureDataset(cuau, p.descriptor)
    cfg = config(cache_features=True, cache_neighbors=True, cache_scope="train")
    assert feature_source(dataset, cfg, "train").feature_cache is not None
    assert feature_source(dataset, cfg, "val").feature_cache is None and feature_source(dataset, cfg, "val").neighbor_cache is None
    bounded = feature_source(dataset, config(cache_features=True, cache_feature_max_entries=0), "train")
    bounded.batch([0, 1], lambda _: False)
    assert len(bounded.feature_cache) == 0
