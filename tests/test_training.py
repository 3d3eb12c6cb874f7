"""Training one potential: the seed example, reproducibility, forces, normalisation, sampling, files."""
import math
import random

import numpy as np
import pytest
import torch

from aenet_core.example_data import make_cuau_structures
from aenet_core.model import energy_normalization, feature_statistics
from aenet_core.split import split_indices
from aenet_core.torch_featurize import ChebyshevDescriptor
from aenet_core.torch_training import Adam, Structure, TorchANNPotential, TorchTrainingConfig
from aenet_core.data import StructureDataset
from aenet_core.data.batch import FeatureSource
from aenet_core.data.cache import LRUCache, PersistentCache
from aenet_core.training.loop import feature_source, warm_up
from aenet_core.training.loss import EnergyForceLoss
from aenet_core.training.sampling import ForceSelection, Sampler, adaptive_weights

REFERENCES = {"Cu": -0.5, "Au": -0.2}
# The small test sets here are deliberate; the warning itself is tested below.
pytestmark = pytest.mark.filterwarnings("ignore:the validation set has only:UserWarning")


@pytest.fixture(scope="module")
def cuau():
    return make_cuau_structures(14, seed=5)


def descriptor():
    return ChebyshevDescriptor(["Cu", "Au"], 4, 4.5, 2, 3.5, min_cutoff=0.5)


def potential():
    return TorchANNPotential({"Cu": [(6, "tanh"), (6, "tanh")], "Au": [(6, "tanh")]}, descriptor())


def config(**overrides):
    settings = dict(iterations=4, method=Adam(mu=0.01, batchsize=4), testpercent=25, split_seed=3, seed=7,
                    device="cpu", atomic_energies=REFERENCES, checkpoint_dir=None, save_best=False,
                    show_progress=False)
    return TorchTrainingConfig(**(settings | overrides))


def test_seed_energy_only_example_runs():
    structures = [
        Structure(positions=np.array([[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.0, 0.9, 0.0]]), species=["H"] * 3, energy=0.0),
        Structure(positions=np.array([[0.1, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), species=["H"] * 3, energy=0.5),
    ]
    desc = ChebyshevDescriptor(species=["H"], rad_order=1, rad_cutoff=2.0, ang_order=0, ang_cutoff=2.0,
                               min_cutoff=0.1, device="cpu", dtype=torch.float64)
    mlp = TorchANNPotential({"H": [(4, "tanh")]}, descriptor=desc)
    cfg = TorchTrainingConfig(iterations=1, method=Adam(mu=0.001, batchsize=1), testpercent=50, force_weight=0.0,
                              atomic_energies={"H": 0.0}, normalize_features=False, normalize_energy=False,
                              memory_mode="cpu", device="cpu", checkpoint_dir=None, checkpoint_interval=0,
                              max_checkpoints=None, save_best=False, use_scheduler=False, show_progress=False)
    results = mlp.train(structures=structures, config=cfg)
    tail = results.errors[["RMSE_train", "RMSE_test"]].tail(1)
    assert len(results.errors) == 1 and np.isfinite(tail.to_numpy()).all()


def test_same_seed_gives_bit_identical_weights_and_history(cuau):
    runs = []
    for _ in range(2):
        p = potential()
        out = p.train(structures=cuau, config=config(force_weight=0.2, force_fraction=0.5))
        runs.append((p.model.state_dict(), out.errors))
    (a, errors_a), (b, errors_b) = runs
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert errors_a.equals(errors_b)
    other = potential()
    other.train(structures=cuau, config=config(force_weight=0.2, force_fraction=0.5, seed=8))
    assert not torch.equal(other.model.state_dict()["networks.functions.0.0.weight"],
                           a["networks.functions.0.0.weight"])


def test_training_reduces_energy_and_force_errors(cuau):
    p = potential()
    out = p.train(structures=cuau, config=config(iterations=40, force_weight=0.3))
    errors = out.errors
    assert errors["RMSE_train"].iloc[-1] < 0.5 * errors["RMSE_train"].iloc[0]
    assert errors["RMSE_force_train"].iloc[-1] < errors["RMSE_force_train"].iloc[0]
    assert np.isfinite(errors["RMSE_force_test"]).all() and out.has_force_data


def test_predicted_forces_are_the_negative_energy_gradient(cuau):
    p = potential()
    p.train(structures=cuau[:6], config=config(iterations=2, force_weight=0.5))
    s = cuau[0]
    moved = Structure(s.positions + np.array([1, -2, 0]) @ s.cell + 0.3 * s.cell[0], s.species, cell=s.cell)
    out = p.predict([moved], eval_forces=True)
    h = 1e-5
    for atom in range(moved.n_atoms):
        for c in range(3):
            plus, minus = moved.positions.copy(), moved.positions.copy()
            plus[atom, c] += h
            minus[atom, c] -= h
            e = p.predict([Structure(plus, s.species, cell=s.cell), Structure(minus, s.species, cell=s.cell)])
            numeric = -(e.total_energy[0] - e.total_energy[1]) / (2 * h)
            assert math.isclose(out.forces[0][atom, c], numeric, abs_tol=1e-6)


def test_predict_reports_physical_energies(cuau):
    p = potential()
    p.train(structures=cuau, config=config(iterations=2))
    out = p.predict(cuau[:3])
    for total, cohesive, atom_energies, s in zip(out.total_energy, out.cohesive_energy, out.atom_energies, cuau):
        assert math.isclose(float(np.sum(atom_energies)), total, rel_tol=1e-12)
        references = sum(REFERENCES[x] for x in s.species)
        assert math.isclose(cohesive, total - references, rel_tol=1e-12)
    assert out.forces is None and out.num_structures == 3
    assert out.num_atoms(1) == cuau[1].n_atoms
    assert out.total_energy_per_atom[1] == pytest.approx(out.total_energy[1] / cuau[1].n_atoms)
    assert out.cohesive_energy_per_atom[2] == pytest.approx(out.cohesive_energy[2] / cuau[2].n_atoms)


def test_save_and_load_reproduce_predictions(cuau, tmp_path):
    p = potential()
    p.train(structures=cuau, config=config(iterations=3, force_weight=0.1))
    path = tmp_path / "model.pt"
    p.save(path)
    q = TorchANNPotential.from_file(path)
    assert q.arch == p.arch and q.descriptor.get_config() == p.descriptor.get_config()
    assert q.training_config == p.training_config and q.history == p.history
    a, b = p.predict(cuau[:4], eval_forces=True), q.predict(cuau[:4], eval_forces=True)
    assert a.total_energy == b.total_energy
    assert all(np.array_equal(x, y) for x, y in zip(a.forces, b.forces))
    assert [f.name for f in tmp_path.iterdir()] == ["model.pt"]


def test_split_recipe():
    train, test = split_indices(20, 25, 11)
    order = list(range(20))
    random.Random(11).shuffle(order)
    assert test == sorted(order[:5]) and train == sorted(order[5:])
    assert split_indices(7, 0, 1) == (list(range(7)), [])


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


def test_energy_and_force_filters(cuau):
    desc = descriptor()
    e = [StructureDataset([s], desc, atomic_energies=REFERENCES).referenced_energy_per_atom(0) for s in cuau]
    threshold = sorted(e)[len(e) // 2]
    kept = StructureDataset(cuau, desc, max_energy=threshold, atomic_energies=REFERENCES)
    assert kept.source_indices == [i for i, v in enumerate(e) if v <= threshold]
    biggest = [np.abs(s.forces).max() for s in cuau]
    kept = StructureDataset(cuau, desc, max_forces=float(np.median(biggest)))
    assert kept.source_indices == [i for i, f in enumerate(biggest) if f <= np.median(biggest)]
    with pytest.raises(ValueError, match="no energy"):
        StructureDataset([Structure(cuau[0].positions, cuau[0].species, cell=cuau[0].cell)], desc)


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


def test_schema_1_0_model_files_load_with_their_statistics_for_every_species(cuau, tmp_path):
    p = potential()
    p.train(structures=cuau, config=config(iterations=1))
    p.save(tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    payload["schema_version"] = "1.0"  # one (F,) mean/std row shared by all species
    for key in ("feature_mean", "feature_std"):
        payload["model_state_dict"][key] = payload["model_state_dict"][key][0].clone()
    torch.save(payload, tmp_path / "old.pt")
    old = TorchANNPotential.from_file(tmp_path / "old.pt")
    assert old.model.feature_mean.shape == (2, p.descriptor.n_features)
    assert old.predict(cuau[:3]).total_energy == p.predict(cuau[:3]).total_energy
    payload["schema_version"] = "0.9"
    torch.save(payload, tmp_path / "older.pt")
    with pytest.raises(ValueError, match="model schema '0.9'"):
        TorchANNPotential.from_file(tmp_path / "older.pt")


def test_float32_precision_builds_a_float32_model(cuau, tmp_path):
    p = potential()
    p.train(structures=cuau, config=config(iterations=1, precision="float32"))
    assert p.model.feature_mean.dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in p.model.parameters())
    p.save(tmp_path / "model.pt")
    q = TorchANNPotential.from_file(tmp_path / "model.pt")
    assert all(t.dtype == torch.float32 for t in q.model.state_dict().values())
    assert q.predict(cuau[:2]).total_energy == p.predict(cuau[:2]).total_energy


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


def test_energy_and_force_files(cuau, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    p = potential()
    p.train(structures=cuau, config=config(iterations=2, force_weight=0.2, save_energies=True, save_forces=True,
                                           timing=True))
    assert "Timing (s):" in capsys.readouterr().out
    rows = [line.split() for line in (tmp_path / "energies.test.0").read_text().splitlines()[1:]]
    dataset = StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES)
    _, test = split_indices(len(dataset), 25, 3)
    assert [r[-1] for r in rows] == [dataset.get_structure_identifier(i) for i in test]
    predicted = p.predict([dataset.get_structure(i) for i in test]).total_energy
    for row, i, e in zip(rows, test, predicted):
        s = dataset.get_structure(i)
        assert float(row[0]) == pytest.approx(s.energy, rel=1e-6) and float(row[1]) == pytest.approx(e, rel=1e-6)
        assert int(row[2]) == s.n_atoms and [int(row[7]), int(row[8])] == [s.species.count("Cu"), s.species.count("Au")]
    forces = (tmp_path / "forces.train.0").read_text().splitlines()
    assert forces[1].startswith("# ") and len(forces[2].split()) == 10
    assert (tmp_path / "energies.train.0").exists() and (tmp_path / "forces.test.0").exists()


def test_prebuilt_datasets_own_their_references(cuau):
    desc = descriptor()
    dataset = StructureDataset(cuau, desc, atomic_energies=REFERENCES)
    with pytest.raises(ValueError, match="conflicts with the dataset"):
        potential().train(dataset=dataset, config=config(atomic_energies={"Cu": 0.0, "Au": 0.0}))
    with pytest.raises(ValueError, match="different atomic reference energies"):
        potential().train(train_dataset=dataset, test_dataset=StructureDataset(cuau[:3], desc),
                          config=config(atomic_energies=None))
    with pytest.warns(UserWarning, match="max_energy/max_forces apply only"):
        out = potential().train(train_dataset=dataset, test_dataset=None,
                                config=config(iterations=1, max_energy=0.0, atomic_energies=None))
    assert out.errors["RMSE_test"].isna().all()


def test_small_validation_set_warns(cuau):
    with pytest.warns(UserWarning, match="validation set has only 3 structures"):
        potential().train(structures=cuau, config=config(iterations=1, use_scheduler=True))


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


def test_predict_dataset_matches_predict(cuau):
    p = potential()
    p.train(structures=cuau, config=config(iterations=1))
    dataset = StructureDataset(cuau[:5], p.descriptor)
    a, b = p.predict_dataset(dataset, eval_forces=True), p.predict(cuau[:5], eval_forces=True)
    assert a.total_energy == b.total_energy and a.structure_paths == [s.name for s in cuau[:5]]
    assert all(np.array_equal(x, y) for x, y in zip(a.forces, b.forces))


def test_seed_page_training_patterns_and_scheduler_example():
    """The configuration blocks of the seed page's 'Common Training Patterns' and scheduler example."""
    small = TorchTrainingConfig(iterations=200, method=Adam(mu=0.001, batchsize=16), testpercent=10,
                                force_weight=0.1, device="cpu")
    large = TorchTrainingConfig(iterations=50, method=Adam(mu=0.001, batchsize=64), testpercent=10,
                                force_weight=0.1, device="cuda", cache_features=True,
                                cache_feature_max_entries=1024, num_workers=8, prefetch_factor=4)
    fastest = TorchTrainingConfig(iterations=100, method=Adam(mu=0.001, batchsize=32), testpercent=10,
                                  force_weight=0.0, cache_features=True, cache_warmup=True, device="cuda")
    forces = TorchTrainingConfig(iterations=100, method=Adam(mu=0.001, batchsize=32), testpercent=10,
                                 force_weight=0.1, force_fraction=0.3, cache_neighbors=True, num_workers=4,
                                 device="cuda")
    assert (small.batch_size, large.batch_size, fastest.cache_warmup, forces.force_fraction) == (16, 64, True, 0.3)
    assert str(large.resolved_device()) == "cuda"
    scheduled = TorchTrainingConfig(iterations=200, method=Adam(mu=0.001, batchsize=32), testpercent=10,
                                    use_scheduler=True, scheduler_patience=10, scheduler_factor=0.5,
                                    scheduler_min_lr=1e-6)
    assert (scheduled.use_scheduler, scheduled.scheduler_patience) == (True, 10)


def test_scheduler_reduces_the_learning_rate_on_a_plateau(cuau):
    out = potential().train(structures=cuau, config=config(iterations=6, use_scheduler=True, scheduler_patience=0,
                                                           scheduler_factor=0.5, method=Adam(mu=0.5, batchsize=4)))
    rates = out.learning_rate
    assert rates[0] <= 0.5 and min(rates) < 0.5 and all(b <= a for a, b in zip(rates, rates[1:]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_training_on_cuda_with_a_cpu_descriptor_matches_cpu(cuau):
    cpu, gpu = potential(), potential()
    cpu_out = cpu.train(structures=cuau, config=config(iterations=2, force_weight=0.2))
    gpu_out = gpu.train(structures=cuau, config=config(iterations=2, force_weight=0.2, device="cuda"))
    assert next(gpu.model.parameters()).is_cuda
    np.testing.assert_allclose(gpu_out.errors.to_numpy(), cpu_out.errors.to_numpy(), rtol=1e-6)
    a = cpu.predict(cuau[:3], eval_forces=True)
    b = gpu.predict(cuau[:3], eval_forces=True)
    np.testing.assert_allclose(a.total_energy, b.total_energy, rtol=1e-9)


def test_error_weighted_scores_update_on_the_cached_energy_only_path(cuau):
    p = potential()
    p.train(structures=cuau, config=config(iterations=2, sampling_policy="error_weighted", cache_features=True))
    scores = p._run_state["sampler"]["scores"]
    assert not torch.equal(scores, torch.ones_like(scores))  # the reference never updates them on this path
    weights = p._run_state["sampler"]["weights"]
    torch.testing.assert_close(weights, adaptive_weights(scores))


def test_force_scale_unbiased_divides_by_the_root_of_the_supervised_fraction(cuau):
    from aenet_core.model import AtomisticModel

    dataset = StructureDataset(cuau[:4], descriptor(), atomic_energies=REFERENCES)
    batch = FeatureSource(dataset).batch([0, 1, 2, 3], lambda i: i == 0)
    model = AtomisticModel({"Cu": [(3, "tanh")], "Au": [(3, "tanh")]}, ["Cu", "Au"], descriptor().n_features)
    labelled = sum(s.n_atoms for s in cuau[:4])
    plain, m_plain = EnergyForceLoss(0.5, False).of_batch(model, batch, labelled, train=False)
    scaled, m_scaled = EnergyForceLoss(0.5, True).of_batch(model, batch, labelled, train=False)
    fraction = cuau[0].n_atoms / labelled
    assert m_scaled.force_rmse == pytest.approx(m_plain.force_rmse / math.sqrt(fraction))
    assert float((scaled - plain).detach()) == pytest.approx(0.5 * (m_scaled.force_rmse - m_plain.force_rmse))


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


def test_cache_scope_limits_caching_to_a_split(cuau):
    p = potential()
    dataset = StructureDataset(cuau, p.descriptor)
    cfg = config(cache_features=True, cache_neighbors=True, cache_scope="train")
    assert feature_source(dataset, cfg, "train").feature_cache is not None
    assert feature_source(dataset, cfg, "val").feature_cache is None and feature_source(dataset, cfg, "val").neighbor_cache is None
    bounded = feature_source(dataset, config(cache_features=True, cache_feature_max_entries=0), "train")
    bounded.batch([0, 1], lambda _: False)
    assert len(bounded.feature_cache) == 0
