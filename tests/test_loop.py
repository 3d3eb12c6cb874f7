"""The training run: normalisation, validation, checkpoints, resume, DataLoader workers, caches, schedulers,
weight average, early stopping and gradient clipping."""
import json
import math

import numpy as np
import pytest
import torch

from aenet_core.committee import train_member
from aenet_core.committee.member import _fingerprint
from aenet_core.data import StructureDataset
from aenet_core.data.batch import FeatureSource
from aenet_core.data.cache import LRUCache
from aenet_core.model import energy_normalization, feature_statistics
from aenet_core.model.checkpoint import read_model_file
from aenet_core.split import Split, split_indices
from aenet_core.torch_featurize import ChebyshevDescriptor
from aenet_core.torch_training import SGD, Adam, TorchANNPotential
from aenet_core.training.loop import HISTORY_KEYS, TrainingRun, feature_source, warm_up
from aenet_core.training.trainout import TrainOut
from training_setup import MEMBER_ARCH, REFERENCES, config, descriptor, member_config, potential


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


# -- optimisation controls ----------------------------------------------------------------

ONE_STEP = Adam(mu=0.01, batchsize=16)  # the 11 training structures in one batch: one step per epoch


def parameters(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def initial_parameters(cuau, **settings) -> dict:
    """The weights a run with these settings starts from (the seeded initialisation)."""
    p = potential()
    p.train(structures=cuau, config=config(iterations=0, **settings))
    return parameters(p.model)


def assert_same_history(a: TrainOut, b: TrainOut):
    """Equal values (NaN equal to NaN) of every history entry but the timings, and the same early stop."""
    for key in HISTORY_KEYS:
        if not key.endswith("_time"):
            np.testing.assert_array_equal(a.history[key], b.history[key], err_msg=key)
    assert a.stopped_early == b.stopped_early


@pytest.fixture
def validation_curve(monkeypatch):
    """Makes the validation energy RMSE (= the validation loss, energy only) of successive epochs follow
    the given values."""
    def install(values):
        curve = iter(values)
        real = TrainingRun.evaluate

        def evaluate(self, loader, indices, forces):
            means = real(self, loader, indices, forces)
            return {**means, "energy_rmse": next(curve)} if loader is self.test_loader else means

        monkeypatch.setattr(TrainingRun, "evaluate", evaluate)
    return install


def test_early_stopping_stops_where_the_validation_curve_says(cuau, tmp_path, validation_curve):
    # patience 3, min_delta 0.05: 0.79 and 0.66 are better than the best so far, but not by more than 0.05
    validation_curve([1.0, 0.8, 0.79, 0.81, 0.70, 0.75, 0.66, 0.68, 0.5])  # the last: the final pass
    out = potential().train(structures=cuau, config=config(
        iterations=20, early_stopping_patience=3, early_stopping_min_delta=0.05, checkpoint_dir=str(tmp_path),
        checkpoint_interval=5, save_best=True))
    assert len(out.errors) == 8
    assert out.stopped_early == {"epoch": 7, "best_epoch": 4, "reason": "the validation loss did not improve by "
                                 "more than 0.05 for 3 epochs (best 0.7)"}
    assert "stopped early after 8 epochs: the validation loss did not improve" in str(out)
    out.to_json(tmp_path / "history.json")
    assert json.loads((tmp_path / "history.json").read_text())["stopped_early"] == out.stopped_early
    assert TrainOut.from_json(tmp_path / "history.json").stopped_early == out.stopped_early
    # the stopping epoch is checkpointed besides the periodic ones; save_best keeps its own (plain) minimum
    assert sorted(f.name for f in tmp_path.glob("checkpoint_epoch_*.pt")) == ["checkpoint_epoch_0004.pt",
                                                                               "checkpoint_epoch_0007.pt"]
    assert TorchANNPotential.from_file(tmp_path / "best_model.pt").best_val_loss == 0.66


def test_early_stopping_needs_a_validation_set(cuau):
    with pytest.raises(ValueError, match=r"TorchTrainingConfig.early_stopping_patience needs validation structures "
                                         r"and this run has none \(testpercent 0"):
        potential().train(structures=cuau, config=config(testpercent=0, early_stopping_patience=2))


def test_a_member_that_stopped_early_is_not_trained_further_when_resumed(cuau, tmp_path, capsys):
    dataset = StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES)
    split = Split.create(dataset, 25, 2)
    settings = member_config(iterations=10, force_weight=0.0, checkpoint_interval=4, early_stopping_patience=2,
                             early_stopping_min_delta=1e9)  # no epoch after the first improves: stops after epoch 2
    member, first = tmp_path / "member", TorchANNPotential(MEMBER_ARCH, descriptor())
    summary = train_member(first, member, settings, dataset, split, seed=3)
    assert summary["status"] == "completed", summary["error"]
    assert summary["stopped_early"]["epoch"] == 2 and summary["metrics"]["epochs_recorded"] == 3
    assert json.loads((member / "summary.json").read_text())["stopped_early"] == summary["stopped_early"]
    history = (member / "history.json").read_bytes()
    for name in ("model.pt", "summary.json", "history.json", "history.csv"):
        (member / name).unlink()
    again = TorchANNPotential(MEMBER_ARCH, descriptor())
    capsys.readouterr()
    resumed = train_member(again, member, settings, dataset, split, seed=3)
    assert "(3 of 10 epochs done)" in capsys.readouterr().err
    assert resumed["resumed_from"] == "checkpoints/checkpoint_epoch_0002.pt"
    assert resumed["stopped_early"] == summary["stopped_early"] and resumed["metrics"] == summary["metrics"]
    assert (member / "history.json").read_bytes() == history
    a, b = first.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_member_fingerprint_counts_the_iterations_only_under_a_cosine_schedule(cuau):
    dataset = StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES)
    split, member = Split.create(dataset, 25, 2), TorchANNPotential(MEMBER_ARCH, descriptor())

    def fingerprint(**settings):
        return _fingerprint(member, member_config(**settings), dataset, split, 3)

    assert fingerprint(iterations=4) == fingerprint(iterations=8)
    assert fingerprint(iterations=4, ema_decay=0.9) != fingerprint(iterations=4)
    cosine = dict(use_scheduler=True, scheduler="cosine")  # its length is the iteration count
    assert fingerprint(iterations=4, **cosine) != fingerprint(iterations=8, **cosine)


class Interrupted(Exception):
    pass


def test_an_interrupted_run_with_every_control_on_resumes_bit_for_bit(cuau, tmp_path, monkeypatch):
    # 8 epochs planned (the cosine's length); early stopping ends the run after epoch 5 (the 6th)
    settings = dict(ema_decay=0.6, use_scheduler=True, scheduler="cosine", scheduler_warmup_epochs=1,
                    scheduler_min_lr=1e-4, clip_grad_norm=0.01, early_stopping_patience=5,
                    early_stopping_min_delta=1e9, checkpoint_interval=1, save_best=True)
    straight = potential()
    whole = straight.train(structures=cuau, config=config(iterations=8, checkpoint_dir=str(tmp_path / "straight"),
                                                          **settings))
    assert whole.stopped_early["epoch"] == 5 and len(whole.errors) == 6
    real = TrainingRun._checkpoint

    def killed_after_epoch_2(self, epoch, improved):
        real(self, epoch, improved)
        if epoch == 2:
            raise Interrupted

    with monkeypatch.context() as patched:
        patched.setattr(TrainingRun, "_checkpoint", killed_after_epoch_2)
        with pytest.raises(Interrupted):
            potential().train(structures=cuau, config=config(iterations=8, checkpoint_dir=str(tmp_path / "killed"),
                                                             **settings))
    resumed = potential()  # the remaining 5 epochs, as a committee member resumes
    out = resumed.train(structures=cuau, config=config(iterations=5, **settings),
                        resume_from=tmp_path / "killed/checkpoint_epoch_0002.pt")
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    raw_a, raw_b = straight._run_state["ema"]["raw"], resumed._run_state["ema"]["raw"]
    assert all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a)
    assert_same_history(whole, out)
    assert straight.best_val_loss == resumed.best_val_loss
    # resumed from the checkpoint it stopped at, it trains no further
    final = potential()
    again = final.train(structures=cuau, config=config(iterations=2, **settings),
                        resume_from=tmp_path / "straight/checkpoint_epoch_0005.pt")
    assert_same_history(whole, again)
    c = final.model.state_dict()
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_the_saved_model_holds_the_weight_average_and_training_the_raw_weights(cuau, tmp_path):
    decay = 0.5
    start = initial_parameters(cuau, method=ONE_STEP)
    p = potential()
    out = p.train(structures=cuau, config=config(iterations=3, method=ONE_STEP, ema_decay=decay,
                                                 checkpoint_dir=str(tmp_path), save_best=True))
    raw = [read_model_file(tmp_path / f"checkpoint_epoch_{e:04d}.pt")["run_state"]["ema"]["raw"] for e in range(3)]
    average = dict(start)
    for step, weights in enumerate(raw):  # by hand: one optimizer step per epoch
        average = {k: decay * average[k] + (1 - decay) * weights[k] for k in average}
        saved = read_model_file(tmp_path / f"checkpoint_epoch_{step:04d}.pt")["model_state_dict"]
        for k in average:
            torch.testing.assert_close(saved[k], average[k], rtol=1e-12, atol=1e-14)
    final = parameters(p.model)
    for k in average:
        torch.testing.assert_close(final[k], average[k], rtol=1e-12, atol=1e-14)
    assert not all(torch.equal(final[k], raw[-1][k]) for k in final)
    p.save(tmp_path / "model.pt")
    saved = parameters(TorchANNPotential.from_file(tmp_path / "model.pt").model)
    assert all(torch.equal(saved[k], final[k]) for k in final)
    best = read_model_file(tmp_path / "best_model.pt")
    at_best = read_model_file(tmp_path / f"checkpoint_epoch_{best['run_state']['epoch']:04d}.pt")
    assert all(torch.equal(best["model_state_dict"][k], at_best["model_state_dict"][k]) for k in final)
    # the raw weights train as without an average; validation (and the final pass) sees the average
    plain = potential()
    plain_out = plain.train(structures=cuau, config=config(iterations=3, method=ONE_STEP))
    assert all(torch.equal(parameters(plain.model)[k], raw[-1][k]) for k in final)
    assert out.errors["RMSE_train"][:-1].equals(plain_out.errors["RMSE_train"][:-1])
    assert (out.errors["RMSE_test"] != plain_out.errors["RMSE_test"]).all()


def test_a_checkpoint_from_before_the_controls_still_resumes_exactly(cuau, tmp_path):
    whole = potential()
    whole.train(structures=cuau, config=config(iterations=2))
    potential().train(structures=cuau, config=config(iterations=1, checkpoint_dir=str(tmp_path)))
    payload = torch.load(tmp_path / "checkpoint_epoch_0000.pt", weights_only=True)
    for key in ("planned_epochs", "ema", "early_stopping"):
        del payload["run_state"][key]
    torch.save(payload, tmp_path / "older.pt")
    resumed = potential()
    resumed.train(structures=cuau, config=config(iterations=1), resume_from=tmp_path / "older.pt")
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def cosine(epoch, base, floor, warmup, epochs):
    if epoch < warmup:
        return base * (epoch + 1) / (warmup + 1)
    return floor + (base - floor) * (1 + math.cos(math.pi * (epoch - warmup) / (epochs - 1 - warmup))) / 2


@pytest.mark.parametrize("schedule,expected", [
    (dict(scheduler="exponential", scheduler_gamma=0.5, scheduler_min_lr=0.0015),
     [0.01, 0.005, 0.0025, 0.0015, 0.0015]),
    (dict(scheduler="exponential", scheduler_gamma=0.5, scheduler_warmup_epochs=2, scheduler_min_lr=0.0),
     [0.01 / 3, 0.02 / 3, 0.01, 0.005, 0.0025]),
    (dict(scheduler="cosine", scheduler_warmup_epochs=2, scheduler_min_lr=1e-4),
     [cosine(e, 0.01, 1e-4, 2, 5) for e in range(5)]),
])
def test_each_schedule_sets_the_learning_rate_of_its_formula(cuau, schedule, expected):
    out = potential().train(structures=cuau, config=config(iterations=5, use_scheduler=True, **schedule))
    assert out.learning_rate == pytest.approx(expected, rel=1e-12, abs=0)
    if schedule["scheduler"] == "cosine":
        assert out.learning_rate[2] == 0.01 and out.learning_rate[-1] == pytest.approx(1e-4)


def test_a_warm_up_as_long_as_the_run_is_refused(cuau):
    with pytest.raises(ValueError, match=r"scheduler_warmup_epochs \(3\) must be fewer than iterations \(3\)"):
        potential().train(structures=cuau, config=config(iterations=3, use_scheduler=True, scheduler="cosine",
                                                         scheduler_warmup_epochs=3))


def test_gradient_clipping_bounds_the_step(cuau):
    lr, max_norm = 0.1, 1e-3
    method = SGD(lr=lr, batchsize=16)  # one plain gradient step: the update is -lr times the gradient
    start = initial_parameters(cuau, method=method)

    def update(**clip):
        p = potential()
        p.train(structures=cuau, config=config(iterations=1, method=method, **clip))
        after = parameters(p.model)
        return torch.cat([(after[k] - start[k]).flatten() for k in start])

    free, clipped = update(), update(clip_grad_norm=max_norm)
    assert free.norm() > 10 * lr * max_norm  # the clip binds
    assert clipped.norm() <= lr * max_norm * (1 + 1e-9)
    torch.testing.assert_close(clipped, free * (lr * max_norm / free.norm()), rtol=1e-4, atol=1e-12)
