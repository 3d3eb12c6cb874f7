"""aenet-python's building blocks (NetworkBuilder, OptimizerBuilder, CheckpointManager, MetricsTracker,
NormalizationManager, TrainingLoop, Predictor, EnergyModelAdapter) used as its API documents them, each checked
against our model and against quantities computed here by hand."""
import math

import numpy as np
import pytest
import torch

from aenet_core.data import StructureDataset
from aenet_core.data.batch import FeatureSource
from aenet_core.model import AtomisticModel
from aenet_core.model.checkpoint import read_model_file
from aenet_core.torch_training import (SGD, Adam, CheckpointManager, EnergyModelAdapter, MetricsTracker,
                                       NetworkBuilder, NormalizationManager, OptimizerBuilder, Predictor,
                                       TorchANNPotential, TrainingLoop)
from training_setup import REFERENCES, config, descriptor

ARCH = {"Cu": [(6, "tanh"), (5, "sigmoid")], "Au": [(4, "Linear")]}
CPU = torch.device("cpu")


def dict_batches(structures, desc, size=4, with_forces=False):
    """aenet-python-style dict batches (energy view) of ``structures``, and the aenet_core Batches they came from."""
    source = FeatureSource(StructureDataset(structures, desc))
    batches = [source.batch(list(range(i, min(i + size, len(structures)))), lambda _: with_forces)
               for i in range(0, len(structures), size)]
    dicts = [{"features": b.features, "species_indices": b.species_idx, "n_atoms": b.n_atoms,
              "energy_ref": b.energy_ref, "sample_indices": torch.tensor(b.indices)} for b in batches]
    return dicts, batches


def components(desc, seed=0):
    torch.manual_seed(seed)
    net = NetworkBuilder(desc, CPU, torch.float64).build_network(ARCH)
    return net, EnergyModelAdapter(net, n_species=len(desc.species))


def referenced(structures):
    return np.array([(s.energy - sum(REFERENCES[x] for x in s.species)) / s.n_atoms for s in structures])


@pytest.fixture(scope="module")
def trained(cuau):
    """A potential trained briefly on the Cu-Au structures, and a NormalizationManager holding its statistics."""
    pot = TorchANNPotential(ARCH, descriptor())
    pot.train(structures=cuau, config=config(iterations=2))
    normalizer = NormalizationManager()
    normalizer.set_feature_stats(pot.model.feature_mean[0], pot.model.feature_std[0])
    normalizer.set_energy_stats(float(pot.model.E_shift), float(pot.model.E_scaling))
    return pot, normalizer


# ------------------------------------------------------------------------------------------- builders


def test_network_builder_builds_the_model_networks():
    desc = descriptor()
    builder = NetworkBuilder(desc, CPU, torch.float64)
    sizes, activations = builder.validate_arch(ARCH)
    assert sizes == [[6, 5], [4]] and activations == [["tanh", "sigmoid"], ["linear"]]  # descriptor species order
    net = builder.build_network(ARCH)
    assert net.device == "cpu" and all(p.dtype == torch.float64 for p in net.parameters())
    model = AtomisticModel(ARCH, desc.species, desc.n_features)
    assert str(net) == str(model.networks)  # the same layers and activations
    net.load_state_dict(model.networks.state_dict())
    x = torch.randn(7, desc.n_features, dtype=torch.float64)
    species = torch.tensor([0, 1, 1, 0, 0, 1, 0])
    by_hand = torch.stack([net.functions[int(s)](row)[0] for row, s in zip(x, species)])
    torch.testing.assert_close(EnergyModelAdapter(net, 2).forward_atomic(x, species), by_hand)
    # with identity normalisation the model's outputs are the networks' outputs
    torch.testing.assert_close(model.network_outputs(x, species), by_hand)
    single = NetworkBuilder(desc, CPU, torch.float32).build_network(ARCH)
    assert all(p.dtype == torch.float32 for p in single.parameters())


@pytest.mark.parametrize("arch, words", [
    ({"Cu": [(4, "relu")], "Au": [(4, "tanh")]}, ["relu", "activation"]),
    ({"Cu": [(4, "tanh")]}, ["Au"]),
    ({"Cu": [], "Au": [(4, "tanh")]}, ["Cu", "empty"]),
    ({"Cu": [(4, "tanh")], "Au": [(4, "tanh")], "Ag": [(4, "tanh")]}, ["Ag", "not descriptor species"]),
])
def test_network_builder_refuses_bad_architectures(arch, words):
    with pytest.raises(ValueError) as err:
        NetworkBuilder(descriptor(), CPU, torch.float64).validate_arch(arch)
    assert all(word in str(err.value) for word in words)


def test_network_builder_knows_aenets_other_activations():
    """Fortran aenet's mtanh and twist, which aenet-python's builder refuses."""
    sizes, activations = NetworkBuilder(descriptor(), CPU, torch.float64).validate_arch(
        {"Cu": [(4, "mtanh")], "Au": [(3, "TWIST")]})
    assert activations == [["mtanh"], ["twist"]]


def test_energy_model_adapter_checks_shapes():
    net, adapter = components(descriptor())
    assert adapter.net is net and adapter.n_species == 2 and adapter.device == "cpu"
    with pytest.raises(AssertionError, match="features"):
        adapter.forward_atomic(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(AssertionError, match="species_indices"):
        adapter.forward_atomic(torch.zeros(3, 20, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="n_species=2"):
        adapter.forward_atomic(torch.zeros(1, 20, dtype=torch.float64), torch.tensor([2]))


def test_optimizer_builder_uses_the_method_settings():
    net, _ = components(descriptor())
    builder = OptimizerBuilder(net)
    adam = builder.build_optimizer(Adam(mu=0.02, beta1=0.8, beta2=0.99, epsilon=1e-7, weight_decay=0.1))
    group = adam.param_groups[0]
    assert isinstance(adam, torch.optim.Adam)
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (0.02, (0.8, 0.99), 1e-7, 0.1)
    assert sum(len(g["params"]) for g in adam.param_groups) == len(list(net.parameters()))
    sgd = builder.build_optimizer(SGD(lr=0.3, momentum=0.5, weight_decay=0.01))
    assert isinstance(sgd, torch.optim.SGD)
    assert (sgd.param_groups[0]["lr"], sgd.param_groups[0]["momentum"]) == (0.3, 0.5)
    with pytest.raises(TypeError, match="Adam or SGD"):
        builder.build_optimizer("adam")
    assert OptimizerBuilder.build_scheduler(adam) is None
    scheduler = OptimizerBuilder.build_scheduler(adam, True, scheduler_patience=3, scheduler_factor=0.2,
                                                 scheduler_min_lr=1e-5)
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (scheduler.patience, scheduler.factor, scheduler.min_lrs, scheduler.mode) == (3, 0.2, [1e-5], "min")
    assert OptimizerBuilder.get_batch_size(SGD(batchsize=7)) == 7 and OptimizerBuilder.get_batch_size(object()) == 32


# ------------------------------------------------------------------------------------------- normalisation


def test_normalization_manager_statistics_match_numpy(cuau):
    desc = descriptor()
    dicts, batches = dict_batches(cuau, desc)
    normalizer = NormalizationManager()
    assert not normalizer.has_feature_stats()
    normalizer.compute_feature_stats(dicts, desc.n_features, show_progress=False)
    raw = torch.cat([b.features for b in batches]).numpy()
    np.testing.assert_allclose(normalizer.feature_mean.numpy(), raw.mean(0), rtol=1e-12)
    np.testing.assert_allclose(normalizer.feature_std.numpy(), np.sqrt(raw.var(0) + 1e-12), rtol=1e-8)
    np.testing.assert_array_equal(normalizer.feature_min.numpy(), raw.min(0))
    np.testing.assert_array_equal(normalizer.feature_max.numpy(), raw.max(0))
    by_index = torch.tensor([REFERENCES[s] for s in desc.species], dtype=torch.float64)
    normalizer.compute_energy_stats(dicts, atomic_energies_by_index=by_index, show_progress=False)
    e = referenced(cuau)
    assert normalizer.E_shift == pytest.approx((e.max() + e.min()) / 2, abs=1e-12)
    assert normalizer.E_scaling == pytest.approx(2 / (e.max() - e.min()), rel=1e-12)
    normalizer.compute_energy_stats(dicts, by_index, provided_shift=0.25, show_progress=False)
    assert normalizer.E_shift == 0.25 and normalizer.E_scaling == pytest.approx(2 / (e.max() - e.min()))


def test_normalization_manager_round_trips():
    normalizer = NormalizationManager()
    mean, std = np.array([1.0, -2.0, 0.5]), np.array([0.5, 2.0, 3.0])
    normalizer.set_feature_stats(mean, std)
    normalizer.set_energy_stats(-0.3, 4.0)
    x = torch.randn(5, 3, dtype=torch.float64)
    normalized = normalizer.apply_feature_normalization(x)
    torch.testing.assert_close(normalized * torch.from_numpy(std) + torch.from_numpy(mean), x)
    energy, n_atoms = -7.25, 5  # the summed outputs of a model that predicts ``energy`` exactly
    outputs = torch.tensor(normalizer.E_scaling * (energy - n_atoms * normalizer.E_shift))
    assert normalizer.denormalize_energy(outputs, n_atoms) == pytest.approx(energy, abs=1e-12)
    assert normalizer.apply_energy_normalization(outputs) is outputs
    restored = NormalizationManager()
    restored.set_state(normalizer.get_state())
    torch.testing.assert_close(restored.apply_feature_normalization(x), normalized)
    assert (restored.E_shift, restored.E_scaling) == (-0.3, 4.0)
    off = NormalizationManager(normalize_features=False, normalize_energy=False)
    off.set_feature_stats(mean, std)
    assert off.apply_feature_normalization(x) is x and off.denormalize_energy(torch.tensor(2.5), 4) == 2.5
    with pytest.raises(ValueError, match="E_scaling"):
        normalizer.set_energy_stats(0.0, 0.0)
    # a column without spread normalises to 0, as in the model (aenet-python divides by 1e-12)
    normalizer.set_feature_stats([2.0, 1.0], [0.0, 2.0])
    torch.testing.assert_close(normalizer.apply_feature_normalization(torch.tensor([[2.5, 3.0]], dtype=torch.float64)),
                               torch.tensor([[0.0, 1.0]], dtype=torch.float64))


def test_provided_feature_stats_take_arrays_and_aenet_cov():
    """aenet-python's ``a or b`` raised for NumPy arrays, and took 'cov' for the std; aenet's cov is E[x^2]."""
    normalizer = NormalizationManager()
    mean, std = np.array([1.0, 2.0]), np.array([0.5, 3.0])
    normalizer.compute_feature_stats([], 2, provided_stats={"mean": mean, "std": std}, show_progress=False)
    np.testing.assert_allclose(normalizer.feature_std.numpy(), std)
    normalizer.compute_feature_stats([], 2, provided_stats={"mean": mean, "cov": std**2 + mean**2},
                                     show_progress=False)
    np.testing.assert_allclose(normalizer.feature_std.numpy(), std, rtol=1e-12)


def test_normalization_manager_refuses_empty_data():
    """aenet-python leaves the features unnormalised and the energy scale 1 when the loader is empty."""
    with pytest.raises(ValueError, match="at least one atom"):
        NormalizationManager().compute_feature_stats([], 3, show_progress=False)
    with pytest.raises(ValueError, match="at least one finite energy"):
        NormalizationManager().compute_energy_stats([], show_progress=False)
    given = NormalizationManager()
    given.compute_energy_stats([], provided_shift=0.1, provided_scaling=2.0, show_progress=False)
    assert (given.E_shift, given.E_scaling) == (0.1, 2.0)


# ------------------------------------------------------------------------------------------- metrics


def test_metrics_tracker_latest_best_and_replace():
    tracker = MetricsTracker(track_detailed_timing=True)
    assert math.isnan(tracker.get_latest("train_energy_rmse")) and math.isnan(tracker.get_best("train_energy_rmse"))
    timing = {"data_loading": 0.1, "loss_computation": 0.2, "optimizer": 0.3, "total": 0.7}
    for rmse in (float("nan"), 0.3, 0.1, 0.2):
        tracker.update(rmse, 0.05, float("nan"), rmse * 2, 0.1, float("nan"), 1e-3, 1.0, 0.4, 0.2, timing, {})
    history = tracker.get_history()
    assert len(history["train_energy_rmse"]) == 4 and history["epoch_optimizer_time_train"] == [0.3] * 4
    assert history["epoch_val_time"] == [0.0] * 4
    assert tracker.get_latest("train_energy_rmse") == 0.2
    assert tracker.get_best("train_energy_rmse") == 0.1  # the NaN epoch is left out
    assert tracker.get_best("test_energy_rmse", mode="max") == 0.6
    assert math.isnan(tracker.get_best("train_force_rmse"))
    with pytest.raises(ValueError, match="'min' or 'max'"):
        tracker.get_best("train_energy_rmse", mode="median")
    tracker.replace_latest(0.05, 0.04, 0.5, 0.06, 0.03, 0.6)
    assert tracker.get_latest("train_energy_rmse") == 0.05 and tracker.get_latest("test_force_rmse") == 0.6
    assert len(history["train_energy_rmse"]) == 4
    tracker.reset()
    assert all(values == [] for values in tracker.get_history().values())
    tracker.set_history({"train_energy_rmse": [1.0, 0.5]})
    assert tracker.get_best("train_energy_rmse") == 0.5
    assert "epoch_train_time" not in MetricsTracker().get_history()


# ------------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_manager_round_trip_and_pruning(trained, cuau, tmp_path):
    pot, _ = trained
    manager = CheckpointManager(tmp_path / "ckpt", max_to_keep=2)
    optimizer = OptimizerBuilder(pot.model).build_optimizer(Adam(mu=0.01))
    pot.model.zero_grad()
    pot.model.networks.functions[0][0].weight.sum().backward()
    optimizer.step()  # an optimizer with state
    for epoch in range(4):
        manager.save_checkpoint(pot, optimizer, epoch)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["checkpoint_epoch_0002.pt",
                                                                       "checkpoint_epoch_0003.pt"]
    path = tmp_path / "ckpt" / "checkpoint_epoch_0003.pt"
    payload = read_model_file(path)  # our format, plain data
    assert payload["extra_metadata"]["epoch"] == 3 and payload["run_state"] is None
    loaded = TorchANNPotential.from_file(path)  # also a complete model file
    np.testing.assert_allclose(loaded.predict(cuau[:3]).total_energy, pot.predict(cuau[:3]).total_energy,
                               rtol=0, atol=1e-12)
    model = AtomisticModel(ARCH, pot.descriptor.species, pot.descriptor.n_features)
    fresh = OptimizerBuilder(model).build_optimizer(Adam(mu=0.01))
    out = CheckpointManager().load_checkpoint(path, model, fresh, CPU)
    assert out["epoch"] == 3 and out["history"]["train_energy_rmse"] == pot.history["train_energy_rmse"]
    for key, value in pot.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    torch.testing.assert_close(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    net, adapter = components(pot.descriptor, seed=3)
    normalizer = NormalizationManager()
    normalizer.set_state(CheckpointManager().load_checkpoint(path, adapter, None, CPU)["normalization"])
    torch.testing.assert_close(net.functions[1][0].weight, pot.model.networks.functions[1][0].weight)
    np.testing.assert_allclose(Predictor(adapter, pot.descriptor, normalizer, REFERENCES).predict(cuau[:3])[0],
                               pot.predict(cuau[:3]).total_energy, rtol=0, atol=1e-10)
    assert CheckpointManager().infer_start_epoch(path, out) == 4
    assert CheckpointManager().infer_start_epoch("checkpoint_epoch_0012.pt") == 13
    assert CheckpointManager().infer_start_epoch("model.pt") == 0
    with pytest.raises(RuntimeError, match="nothing.pt"):
        CheckpointManager().load_checkpoint(tmp_path / "nothing.pt", model, fresh, CPU)
    with pytest.raises(ValueError, match="not a training checkpoint"):  # train(resume_from=) needs a run's state
        TorchANNPotential(ARCH, descriptor()).train(structures=cuau, config=config(), resume_from=path)


def test_checkpoint_manager_best_model(trained, tmp_path):
    pot, _ = trained
    manager = CheckpointManager(tmp_path, save_best=True)
    optimizer = torch.optim.SGD(pot.model.parameters(), lr=0.1)
    assert [manager.should_save_best(v) for v in (3.0, float("nan"), 4.0, 2.0)] == [True, False, False, True]
    assert manager.best_val_loss == 2.0
    manager.save_best_model(pot, optimizer, 7)
    payload = read_model_file(tmp_path / "best_model.pt")
    assert payload["best_val_loss"] == 2.0 and payload["extra_metadata"]["epoch"] == 7
    assert CheckpointManager(save_best=False).should_save_best(1.0) is False
    CheckpointManager().save_checkpoint(pot, optimizer, 0)  # no directory: nothing written, no error
    (tmp_path / "checkpoint_epoch_0000.pt").mkdir()
    with pytest.raises(OSError):  # a checkpoint that cannot be written stops the loop (aenet-python only warns)
        manager.save_checkpoint(pot, optimizer, 0)


def test_checkpoint_manager_reads_the_checkpoints_train_writes(cuau, tmp_path):
    pot = TorchANNPotential(ARCH, descriptor())
    pot.train(structures=cuau, config=config(iterations=2, checkpoint_dir=str(tmp_path), checkpoint_interval=1))
    model = AtomisticModel(ARCH, pot.descriptor.species, pot.descriptor.n_features)
    optimizer = Adam(mu=0.01).build(model.parameters())
    manager = CheckpointManager()
    payload = manager.load_checkpoint(tmp_path / "checkpoint_epoch_0001.pt", model, optimizer, CPU)
    assert manager.infer_start_epoch(tmp_path / "checkpoint_epoch_0001.pt", payload) == 2
    assert len(payload["history"]["train_energy_rmse"]) == 2 and optimizer.state_dict()["state"]


# ------------------------------------------------------------------------------------------- training loop


def test_training_loop_lowers_the_loss(cuau):
    desc = descriptor()
    dicts, batches = dict_batches(cuau, desc)
    net, adapter = components(desc)
    normalizer = NormalizationManager()
    normalizer.compute_feature_stats(dicts, desc.n_features, show_progress=False)
    by_index = torch.tensor([REFERENCES[s] for s in desc.species], dtype=torch.float64)
    normalizer.compute_energy_stats(dicts, by_index, show_progress=False)
    optimizer = OptimizerBuilder(adapter).build_optimizer(Adam(mu=0.01))
    loop = TrainingLoop(adapter, desc, normalizer, CPU, torch.float64)
    before = loop.run_epoch(dicts, None, 0.0, by_index, train=False)
    for _ in range(20):
        rmse, mae, force_rmse, timing, scores = loop.run_epoch(dicts, optimizer, 0.0, by_index)
    after = loop.run_epoch(dicts, None, 0.0, by_index, train=False, collect_structure_scores=True)
    assert after[0] < 0.5 * before[0] and math.isnan(force_rmse) and scores is None
    assert set(timing) == {"data_loading", "loss_computation", "optimizer", "total"} and timing["total"] > 0
    # the epoch's errors by hand: means over batches of each batch's RMSE and MAE of (E_pred - E) / N
    predicted = np.array(Predictor(adapter, desc, normalizer, REFERENCES).predict(cuau)[0])
    labels = np.array([s.energy for s in cuau])
    sizes = np.array([s.n_atoms for s in cuau])
    errors = [((predicted - labels) / sizes)[i: i + 4] for i in range(0, len(cuau), 4)]
    assert after[0] == pytest.approx(np.mean([np.sqrt(np.mean(e**2)) for e in errors]), rel=1e-9)
    assert after[1] == pytest.approx(np.mean([np.mean(np.abs(e)) for e in errors]), rel=1e-9)
    np.testing.assert_allclose([after[4][i] for i in range(len(cuau))], np.abs(predicted - labels) / sizes,
                               rtol=1e-9)


def test_training_loop_force_rmse_from_aenet_core_batches(cuau):
    desc = descriptor()
    _, batches = dict_batches(cuau[:4], desc, with_forces=True)
    net, adapter = components(desc)
    normalizer = NormalizationManager(normalize_features=False, normalize_energy=False)
    loop = TrainingLoop(adapter, desc, normalizer, CPU, torch.float64)
    _, _, force_rmse, _, _ = loop.run_epoch(batches, None, 0.5, train=False)
    forces = Predictor(adapter, desc, normalizer).predict(cuau[:4], eval_forces=True)[1]
    by_hand = np.sqrt(np.mean(np.concatenate([(f.numpy() - s.forces) ** 2 for f, s in zip(forces, cuau)])))
    assert force_rmse == pytest.approx(by_hand, rel=1e-9)
    force_view = {**dict_batches(cuau[:4], desc)[0][0], "positions_f": torch.zeros(3, 3)}
    with pytest.raises(RuntimeError, match="local derivatives"):
        loop.run_epoch([force_view], None, 0.5, train=False)


# ------------------------------------------------------------------------------------------- prediction


def test_predictor_equals_the_potential(trained, cuau):
    pot, normalizer = trained
    adapter = EnergyModelAdapter(pot.model.networks, n_species=2)
    predictor = Predictor(adapter, pot.descriptor, normalizer, atomic_energies=REFERENCES)
    energies, forces, atom_energies, timing = predictor.predict(cuau[:5], eval_forces=True,
                                                                return_atom_energies=True, track_timing=True,
                                                                batch_size=2)
    expected = pot.predict(cuau[:5], eval_forces=True)
    np.testing.assert_allclose(energies, expected.total_energy, rtol=0, atol=1e-10)
    for f, e, a, s in zip(forces, expected.forces, atom_energies, cuau):
        np.testing.assert_allclose(f.numpy(), e, rtol=0, atol=1e-10)
        assert len(a) == s.n_atoms
    # physical per-atom energies: they add up to the total energy
    np.testing.assert_allclose([float(a.sum()) for a in atom_energies], energies, rtol=1e-12)
    assert len(timing["total"]) == 5 and all(t > 0 for t in timing["total"])
    plain = Predictor(pot.model, pot.descriptor, None).predict(cuau[:5])
    np.testing.assert_allclose(plain[0], expected.total_energy, rtol=0, atol=1e-10)
    assert plain[1] is None and plain[2] is None and plain[3] is None


def test_predictor_dataset_and_cohesive_energy(trained, cuau):
    pot, normalizer = trained
    predictor = Predictor(EnergyModelAdapter(pot.model.networks, 2), pot.descriptor, normalizer, REFERENCES)
    dataset = StructureDataset(cuau[:6], pot.descriptor)
    subset = torch.utils.data.Subset(torch.utils.data.Subset(dataset, [5, 3, 1, 0]), [1, 2])
    energies, forces, _, _, metadata = predictor.predict_dataset(subset, eval_forces=True)
    expected = pot.predict([cuau[3], cuau[1]], eval_forces=True)
    np.testing.assert_allclose(energies, expected.total_energy, rtol=0, atol=1e-10)
    np.testing.assert_allclose(forces[1].numpy(), expected.forces[1], rtol=0, atol=1e-10)
    assert metadata["atom_types"] == [list(cuau[3].species), list(cuau[1].species)]
    np.testing.assert_array_equal(metadata["coords"][0], cuau[3].positions)
    structure = cuau[0]
    by_hand = structure.energy - sum(REFERENCES[s] for s in structure.species)
    assert predictor.cohesive_energy(structure) == pytest.approx(by_hand, abs=1e-12)
    assert predictor.cohesive_energy(structure, {"Cu": 0.0, "Au": 0.0}) == structure.energy
    with pytest.raises(ValueError, match="Atomic energies not available"):
        Predictor(pot.model, pot.descriptor, normalizer).cohesive_energy(structure)
