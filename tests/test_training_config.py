"""TorchTrainingConfig and the optimizer methods: defaults, seed-page examples, validation, serialisation."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from aenet_core.training.config import SGD, Adam, TorchTrainingConfig, method_from_dict

DEFAULTS = dict(
    iterations=100, method=Adam(), testpercent=10, seed=None, split_seed=None,
    force_weight=0.0, stress_weight=0.0, config_type_weights=None, force_fraction=1.0, sampling_policy="uniform",
    force_sampling="random",
    force_resample_num_epochs=0, force_min_structures_per_epoch=1, force_scale_unbiased=False,
    cache_features=False, cache_feature_max_entries=1024, cache_neighbors=False,
    cache_neighbor_max_entries=512, cache_force_triplets=False,
    cache_force_triplet_max_entries=256, cache_persist_dir=None, cache_scope="all",
    cache_warmup=False, memory_mode="gpu", max_energy=None, max_forces=None,
    save_energies=False, save_forces=False, timing=False, device=None, precision="auto",
    derivative_precision="auto",
    atomic_energies=None, normalize_features=True, normalize_energy=True, num_workers=0,
    prefetch_factor=2, persistent_workers=True, feature_stats=None, E_shift=None,
    E_scaling=None, show_progress=True, show_batch_progress=False,
    checkpoint_dir="checkpoints", checkpoint_interval=1, max_checkpoints=None, save_best=True,
    use_scheduler=False, scheduler_patience=10, scheduler_factor=0.5, scheduler_min_lr=1e-6,
    scheduler="plateau", scheduler_gamma=0.99, scheduler_warmup_epochs=0, ema_decay=None,
    early_stopping_patience=None, early_stopping_min_delta=0.0, clip_grad_norm=None,
)


def test_defaults_match_reference_table():
    config = TorchTrainingConfig()
    actual = {name: getattr(config, name) for name in DEFAULTS}
    assert actual == DEFAULTS
    assert {f for f in config.__dataclass_fields__} == set(DEFAULTS)


def test_method_defaults():
    assert Adam().to_params_dict() == dict(mu=0.001, batchsize=32, weight_decay=0.0,
                                           beta1=0.9, beta2=0.999, epsilon=1e-8)
    assert SGD().to_params_dict() == dict(lr=0.01, batchsize=32, momentum=0.0, weight_decay=0.0)


# --- examples from the seed documentation page -------------------------------------------

def test_seed_page_reproducibility():
    config = TorchTrainingConfig(seed=11, split_seed=7)
    assert (config.seed, config.split_seed) == (11, 7)


@pytest.mark.parametrize("policy", ["uniform", "energy_weighted", "error_weighted"])
def test_seed_page_sampling_policies(policy):
    extra = {"atomic_energies": {"H": 0.0}} if policy == "energy_weighted" else {}
    assert TorchTrainingConfig(sampling_policy=policy, **extra).sampling_policy == policy


def test_seed_page_force_training():
    config = TorchTrainingConfig(iterations=2, method=Adam(mu=0.001, batchsize=1),
                                 testpercent=50, force_weight=0.1, force_fraction=0.5,
                                 force_sampling="fixed")
    assert (config.force_weight, config.force_fraction, config.force_sampling) == (0.1, 0.5, "fixed")
    assert (config.alpha, config.batch_size) == (0.1, 1)


def test_seed_page_performance_tips():
    config = TorchTrainingConfig(force_weight=0.0, cache_features=True, num_workers=4,
                                 prefetch_factor=4, persistent_workers=True)
    assert (config.cache_features, config.num_workers, config.prefetch_factor) == (True, 4, 4)
    config = TorchTrainingConfig(force_weight=0.1, force_fraction=0.3, force_sampling="random",
                                 cache_features=True, cache_neighbors=True, num_workers=4,
                                 prefetch_factor=4)
    assert (config.cache_neighbors, config.cache_force_triplets) == (True, False)


def test_seed_page_basic_settings_and_scheduler():
    config = TorchTrainingConfig(iterations=100, testpercent=10, device="cpu", show_progress=True)
    assert (config.iterations, config.device, config.show_progress) == (100, "cpu", True)
    config = TorchTrainingConfig(iterations=200, method=Adam(mu=0.001, batchsize=32),
                                 testpercent=10, use_scheduler=True, scheduler_patience=10,
                                 scheduler_factor=0.5, scheduler_min_lr=1e-6)
    assert (config.use_scheduler, config.scheduler_patience) == (True, 10)


def test_seed_page_optimizer_selection():
    method = Adam(mu=0.001, batchsize=32, beta1=0.9, beta2=0.999, weight_decay=0.0)
    assert (method.method_name, method.batchsize) == ("adam", 32)
    method = SGD(lr=0.01, batchsize=32, momentum=0.9, weight_decay=0.0)
    assert TorchTrainingConfig(iterations=100, method=method).method.method_name == "sgd"


def test_seed_page_energy_only_example_config():
    config = TorchTrainingConfig(
        iterations=1, method=Adam(mu=0.001, batchsize=1), testpercent=50, force_weight=0.0,
        atomic_energies={"H": 0.0}, normalize_features=False, normalize_energy=False,
        memory_mode="cpu", device="cpu", checkpoint_dir=None, checkpoint_interval=0,
        max_checkpoints=None, save_best=False, use_scheduler=False)
    assert (config.batch_size, config.checkpoint_dir, config.atomic_energies) == (1, None, {"H": 0.0})


# --- validation --------------------------------------------------------------------------

INVALID = [
    ("iterations", -1), ("iterations", 2.5), ("iterations", True),
    ("testpercent", -1), ("testpercent", 100), ("testpercent", 101), ("testpercent", math.nan),
    ("seed", True), ("seed", 1.5), ("seed", "7"), ("seed", -1), ("seed", 2**32), ("split_seed", False), ("split_seed", -3),
    ("force_weight", -0.1), ("force_weight", 1.5), ("force_fraction", 1.01),
    ("force_fraction", math.inf),
    ("sampling_policy", "energy"), ("force_sampling", "always"), ("cache_scope", "test"),
    ("precision", "float16"), ("derivative_precision", "half"), ("memory_mode", "disk"),
    ("force_resample_num_epochs", -1), ("force_resample_num_epochs", 1.0),
    ("force_min_structures_per_epoch", -1),
    ("cache_feature_max_entries", -1), ("cache_neighbor_max_entries", 2.0),
    ("cache_force_triplet_max_entries", -5),
    ("max_energy", math.inf), ("max_energy", "high"), ("max_forces", 0.0), ("max_forces", -1.0),
    ("num_workers", -1), ("prefetch_factor", 0), ("checkpoint_interval", -1),
    ("max_checkpoints", 0), ("scheduler_patience", -1), ("scheduler_factor", 0.0),
    ("scheduler_factor", 1.0), ("scheduler_min_lr", -1e-6),
    ("atomic_energies", [("H", 0.0)]), ("atomic_energies", {"H": math.nan}),
    ("config_type_weights", {"md": -1.0}), ("config_type_weights", {1: 2.0}), ("config_type_weights", ["md"]),
    ("stress_weight", -0.5),
    ("atomic_energies", {1: 0.0}),
    ("feature_stats", {"mean": [0.0, 1.0]}), ("feature_stats", {"mean": [0.0], "std": [1.0, 2.0]}),
    ("feature_stats", {"mean": [0.0, 1.0], "std": [1.0, 0.0]}),
    ("feature_stats", {"mean": [[0.0]], "std": [[1.0]]}),
    ("method", "adam"), ("device", "nonsense"), ("device", 0), ("cache_persist_dir", 3),
    ("checkpoint_dir", 1.0), ("cache_features", 1), ("show_progress", "yes"),
    ("scheduler", "step"), ("scheduler", None), ("scheduler_gamma", 0.0), ("scheduler_gamma", 1.0),
    ("scheduler_warmup_epochs", -1), ("scheduler_warmup_epochs", 1.5), ("ema_decay", 1.0), ("ema_decay", -0.1),
    ("ema_decay", "0.99"), ("early_stopping_patience", 0), ("early_stopping_patience", 2.0),
    ("early_stopping_min_delta", -1e-3), ("early_stopping_min_delta", None), ("clip_grad_norm", 0.0),
    ("clip_grad_norm", -1.0), ("clip_grad_norm", math.inf),
]


@pytest.mark.parametrize("name,value", INVALID)
def test_invalid_values_name_the_field(name, value):
    with pytest.raises(ValueError, match=rf"TorchTrainingConfig\.{name} must be .*; got "):
        TorchTrainingConfig(**{name: value})


def test_invalid_choice_message_lists_allowed_values():
    with pytest.raises(ValueError) as err:
        TorchTrainingConfig(sampling_policy="energy")
    assert str(err.value) == ("TorchTrainingConfig.sampling_policy must be one of 'uniform', "
                              "'energy_weighted', 'error_weighted'; got 'energy'")


@pytest.mark.parametrize("settings,message", [
    ({"scheduler": "cosine"}, "TorchTrainingConfig.scheduler='cosine' takes effect only with use_scheduler=True"),
    ({"use_scheduler": True, "scheduler_warmup_epochs": 2},
     "TorchTrainingConfig.scheduler_warmup_epochs needs use_scheduler=True and scheduler 'exponential' or 'cosine'"),
    ({"use_scheduler": True, "scheduler": "exponential", "scheduler_min_lr": 0.01},
     r"TorchTrainingConfig.scheduler_min_lr must not exceed the method's learning rate \(0.001\) for the "
     r"exponential schedule; got 0.01"),
    ({"use_scheduler": True, "scheduler": "cosine", "method": SGD(lr=1e-7)},
     r"scheduler_min_lr must not exceed the method's learning rate \(1e-07\) for the cosine schedule"),
])
def test_schedule_settings_that_would_not_take_effect_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        TorchTrainingConfig(**settings)


def test_optimisation_controls_are_accepted_and_survive_json():
    config = TorchTrainingConfig(use_scheduler=True, scheduler="cosine", scheduler_warmup_epochs=np.int64(3),
                                 scheduler_min_lr=0, ema_decay=0.99, early_stopping_patience=5,
                                 early_stopping_min_delta=1e-4, clip_grad_norm=10)
    assert type(config.scheduler_warmup_epochs) is int and type(config.clip_grad_norm) is float
    assert config.scheduled_by_epoch and not TorchTrainingConfig(use_scheduler=True).scheduled_by_epoch
    assert TorchTrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TorchTrainingConfig(ema_decay=0).ema_decay == 0.0  # 0 is off, like None
    # a plateau scheduler keeps its floor above the learning rate allowed: it then never reduces (as before)
    assert TorchTrainingConfig(use_scheduler=True, scheduler_min_lr=1.0).scheduler_min_lr == 1.0


@pytest.mark.parametrize("value", [0.0, -1.0, math.inf])
def test_invalid_E_scaling(value):
    with pytest.raises(ValueError, match="E_scaling"):
        TorchTrainingConfig(E_shift=0.0, E_scaling=value)


@pytest.mark.parametrize("given", [{"E_shift": 0.5}, {"E_scaling": 2.0}])
def test_energy_normalisation_override_needs_both(given):
    with pytest.raises(ValueError, match="E_shift and E_scaling must be given together"):
        TorchTrainingConfig(**given)


def test_mixed_memory_mode_not_implemented():
    with pytest.raises(NotImplementedError, match="memory_mode='mixed' is not implemented"):
        TorchTrainingConfig(memory_mode="mixed")


@pytest.mark.parametrize("old", ["force_resample_each_epoch", "epochs_per_force_window"])
def test_removed_options_name_the_replacement(old):
    with pytest.raises(TypeError, match="force_resample_num_epochs"):
        TorchTrainingConfig(**{old: 1})
    with pytest.raises(ValueError, match=old):
        TorchTrainingConfig(**{old: 1})


@pytest.mark.parametrize("cls,name,value", [
    (Adam, "mu", 0.0), (Adam, "mu", math.inf), (Adam, "batchsize", 0), (Adam, "batchsize", True),
    (Adam, "batchsize", 4.0), (Adam, "weight_decay", -1e-3), (Adam, "beta1", 1.0),
    (Adam, "beta2", -0.1), (Adam, "epsilon", 0.0), (SGD, "lr", -0.1), (SGD, "lr", math.nan),
    (SGD, "batchsize", 0), (SGD, "momentum", -0.5), (SGD, "weight_decay", -1.0),
])
def test_invalid_method_parameters(cls, name, value):
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{name} must be"):
        cls(**{name: value})


def test_valid_edge_values_are_accepted_and_normalised():
    config = TorchTrainingConfig(
        iterations=np.int64(0), testpercent=0, seed=0, force_weight=1, force_fraction=0.0,
        force_min_structures_per_epoch=None, cache_feature_max_entries=None,
        cache_neighbor_max_entries=0, max_energy=-3.5, max_forces=10, prefetch_factor=1,
        max_checkpoints=1, checkpoint_interval=0, cache_persist_dir=Path("cache"),
        checkpoint_dir=Path("ckpt"), device=torch.device("cpu"), E_shift=-1, E_scaling=2,
        feature_stats={"mean": np.zeros(3), "std": torch.ones(3)})
    assert type(config.iterations) is int and config.iterations == 0
    assert type(config.force_weight) is float and config.alpha == 1.0
    assert (config.cache_persist_dir, config.checkpoint_dir, config.device) == ("cache", "ckpt", "cpu")
    assert config.feature_stats == {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    assert (config.E_shift, config.E_scaling) == (-1.0, 2.0)


# --- serialisation, optimizers, helpers --------------------------------------------------

def test_to_dict_round_trip_through_json():
    config = TorchTrainingConfig(
        iterations=5, method=SGD(lr=0.1, batchsize=4, momentum=0.9), testpercent=20, seed=3,
        split_seed=4, force_weight=0.2, sampling_policy="error_weighted", device="cpu",
        atomic_energies={"Ti": -1.5, "O": -0.25}, cache_persist_dir=Path("cache"),
        feature_stats={"mean": np.array([0.5, 1.5]), "std": np.array([1.0, 2.0])},
        E_shift=0.1, E_scaling=3.0, precision="float64", max_checkpoints=2)
    d = config.to_dict()
    assert d["method"] == {"name": "sgd", "lr": 0.1, "batchsize": 4, "momentum": 0.9,
                           "weight_decay": 0.0}
    restored = TorchTrainingConfig.from_dict(json.loads(json.dumps(d)))
    assert restored == config
    assert TorchTrainingConfig.from_dict(TorchTrainingConfig().to_dict()) == TorchTrainingConfig()


def test_method_from_dict():
    assert method_from_dict({"name": "adam", "mu": 0.01, "batchsize": 8}) == Adam(mu=0.01, batchsize=8)
    assert method_from_dict({"name": "sgd"}) == SGD()
    with pytest.raises(ValueError, match="'rmsprop'"):
        method_from_dict({"name": "rmsprop"})


def test_build_optimizers():
    params = [torch.nn.Parameter(torch.zeros(2))]
    adam = Adam(mu=0.005, weight_decay=0.01, beta1=0.8, beta2=0.99, epsilon=1e-6).build(params)
    assert isinstance(adam, torch.optim.Adam)
    assert (adam.defaults["lr"], adam.defaults["betas"], adam.defaults["eps"],
            adam.defaults["weight_decay"]) == (0.005, (0.8, 0.99), 1e-6, 0.01)
    sgd = SGD(lr=0.2, momentum=0.9, weight_decay=0.001).build(params)
    assert isinstance(sgd, torch.optim.SGD)
    assert (sgd.defaults["lr"], sgd.defaults["momentum"], sgd.defaults["weight_decay"]) == (0.2, 0.9, 0.001)


def test_batch_size_follows_method():
    assert TorchTrainingConfig().batch_size == 32
    assert TorchTrainingConfig(method=SGD(batchsize=7)).batch_size == 7


@pytest.mark.parametrize("precision,descriptor,expected", [
    ("auto", torch.float64, torch.float64), ("auto", torch.float32, torch.float32),
    ("float32", torch.float64, torch.float32), ("float64", torch.float32, torch.float64),
])
def test_resolved_dtype(precision, descriptor, expected):
    assert TorchTrainingConfig(precision=precision).resolved_dtype(descriptor) is expected


def test_resolved_device():
    assert TorchTrainingConfig(device="cpu").resolved_device() == torch.device("cpu")
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    assert TorchTrainingConfig().resolved_device() == torch.device(auto)


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
