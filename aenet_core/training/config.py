"""Training configuration: optimizer methods and ``TorchTrainingConfig``.

Every value is checked on construction; a bad one raises ``ValueError`` naming
the field, the allowed values and what was received.  Numbers, paths, devices
and statistics are normalised to plain Python types so that a configuration
survives ``to_dict`` -> JSON -> ``from_dict`` unchanged.
"""
from __future__ import annotations

import functools
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from aenet_core.rules import (ANY, BETA, COUNT, DEFAULT_TESTPERCENT, NONNEG, POSITIVE, SEED, TESTPERCENT, UNIT,
                              NumberRule, check_numbers)

if TYPE_CHECKING:  # torch is imported where it is used: the workflow checks configs with this module, without torch
    import torch


@dataclass(frozen=True)
class TrainingMethod:
    """An optimizer method: its name (``method_name``) and hyper-parameters (the dataclass fields).

    Methods are frozen and checked on construction; ``Adam`` and ``SGD`` are the ones training builds.
    """

    _rules: ClassVar[dict[str, NumberRule]] = {}

    def __post_init__(self):
        check_numbers(self, self._rules)

    @property
    def method_name(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} is not an optimizer method; use Adam or SGD")

    def to_params_dict(self) -> dict[str, Any]:
        """The hyper-parameters as a plain, JSON-serialisable dict."""
        return asdict(self)


@dataclass(frozen=True)
class Adam(TrainingMethod):
    """Adam with learning rate ``mu``; ``batchsize`` structures per step."""

    mu: float = 0.001
    batchsize: int = 32
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8

    _rules: ClassVar[dict[str, NumberRule]] = {
        "mu": POSITIVE, "batchsize": NumberRule(True, 1), "weight_decay": NONNEG, "beta1": BETA, "beta2": BETA,
        "epsilon": POSITIVE,
    }

    @property
    def method_name(self) -> str:
        return "adam"

    @property
    def learning_rate(self) -> float:
        return self.mu

    def build(self, parameters) -> torch.optim.Adam:
        import torch

        # fused: one kernel updates every tensor (the per-tensor loop cost more than a small network's step)
        return torch.optim.Adam(parameters, lr=self.mu, betas=(self.beta1, self.beta2),
                                eps=self.epsilon, weight_decay=self.weight_decay, fused=True)


@dataclass(frozen=True)
class SGD(TrainingMethod):
    """Stochastic gradient descent with optional momentum."""

    lr: float = 0.01
    batchsize: int = 32
    momentum: float = 0.0
    weight_decay: float = 0.0

    _rules: ClassVar[dict[str, NumberRule]] = {
        "lr": POSITIVE, "batchsize": NumberRule(True, 1), "momentum": NONNEG, "weight_decay": NONNEG,
    }

    @property
    def method_name(self) -> str:
        return "sgd"

    @property
    def learning_rate(self) -> float:
        return self.lr

    def build(self, parameters) -> torch.optim.SGD:
        import torch

        return torch.optim.SGD(parameters, lr=self.lr, momentum=self.momentum,
                               weight_decay=self.weight_decay)


_METHODS = {"adam": Adam, "sgd": SGD}


def method_from_dict(d: Mapping[str, Any]) -> Adam | SGD:
    """Rebuild a method from ``{'name': 'adam'|'sgd', **params}``."""
    params = dict(d)
    name = params.pop("name", None)
    if name not in _METHODS:
        raise ValueError(f"optimizer method name must be one of 'adam', 'sgd'; got {name!r}")
    return _METHODS[name](**params)


class RemovedOptionError(TypeError, ValueError):
    """A configuration option that no longer exists was passed."""


_REMOVED = ("force_resample_each_epoch", "epochs_per_force_window")

_CHOICES = {
    "sampling_policy": ("uniform", "energy_weighted", "error_weighted"),
    "force_sampling": ("random", "fixed"),
    "cache_scope": ("train", "val", "all"),
    "precision": ("auto", "float32", "float64"),
    "derivative_precision": ("auto", "float32", "float64"),
    "memory_mode": ("cpu", "gpu"),  # 'mixed' is refused separately
    "scheduler": ("plateau", "exponential", "cosine"),
}
# The schedules that set the rate from the epoch alone (no validation loss needed).
_EPOCH_SCHEDULES = ("exponential", "cosine")
_FRACTION = NumberRule(False, 0, 1, low_open=True, high_open=True)

_OPTIONAL_COUNT = COUNT._replace(optional=True)
_NUMBERS = {
    "iterations": COUNT,
    "testpercent": TESTPERCENT,
    "seed": SEED._replace(optional=True),
    "split_seed": _OPTIONAL_COUNT,
    "force_weight": UNIT,
    "stress_weight": NONNEG,
    "force_fraction": UNIT,
    "force_resample_num_epochs": COUNT,
    "force_min_structures_per_epoch": _OPTIONAL_COUNT,
    "cache_feature_max_entries": _OPTIONAL_COUNT,
    "cache_neighbor_max_entries": _OPTIONAL_COUNT,
    "cache_force_triplet_max_entries": _OPTIONAL_COUNT,
    "max_energy": ANY._replace(optional=True),
    "max_forces": POSITIVE._replace(optional=True),
    "num_workers": COUNT,
    "prefetch_factor": NumberRule(True, 1),
    "E_shift": ANY._replace(optional=True),
    "E_scaling": POSITIVE._replace(optional=True),
    "checkpoint_interval": COUNT,
    "max_checkpoints": NumberRule(True, 1, optional=True),
    "scheduler_patience": COUNT,
    "scheduler_factor": _FRACTION,
    "scheduler_min_lr": NONNEG,
    "scheduler_gamma": _FRACTION,
    "scheduler_warmup_epochs": COUNT,
    "ema_decay": BETA._replace(optional=True),
    "early_stopping_patience": NumberRule(True, 1, optional=True),
    "early_stopping_min_delta": NONNEG,
    "clip_grad_norm": POSITIVE._replace(optional=True),
}

_BOOLS = (
    "force_scale_unbiased", "cache_features", "cache_neighbors", "cache_force_triplets",
    "cache_warmup", "save_energies", "save_forces", "timing", "normalize_features",
    "normalize_energy", "persistent_workers", "show_progress", "show_batch_progress",
    "save_best", "use_scheduler",
)


def _dtype(precision: str, auto):
    """The torch dtype a precision setting names; ``auto`` for 'auto'."""
    import torch

    return {"float32": torch.float32, "float64": torch.float64}.get(precision, auto)


def _fail(name: str, allowed: str, value) -> ValueError:
    return ValueError(f"TorchTrainingConfig.{name} must be {allowed}; got {value!r}")


def _path(name: str, value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise _fail(name, "None or a path (str or os.PathLike)", value)
    return os.fspath(value)


def _device(value) -> str | None:
    if value is None:
        return None
    import torch

    try:
        if not isinstance(value, (str, torch.device)):
            raise TypeError
        return str(torch.device(value))
    except (RuntimeError, TypeError):
        raise _fail("device", "None, a device string such as 'cpu' or 'cuda:0', or a torch.device",
                    value) from None


def _number_mapping(name: str, value, allowed: str, minimum=-math.inf) -> dict[str, float] | None:
    """None, or a plain dict of string keys to finite numbers of at least ``minimum``."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _fail(name, allowed, value)
    for key, number in value.items():
        if not (isinstance(key, str) and isinstance(number, numbers.Real) and not isinstance(number, bool)
                and math.isfinite(number) and number >= minimum):
            raise _fail(name, allowed, value)
    return {key: float(number) for key, number in value.items()}


def _feature_stats(value) -> dict[str, tuple[float, ...]] | None:
    if value is None:
        return None
    allowed = ("None or a mapping with keys 'mean' and 'std' holding 1-D arrays of equal,"
               " non-zero length, finite values and std > 0")
    if not isinstance(value, Mapping) or set(value) != {"mean", "std"}:
        raise _fail("feature_stats", allowed, value)
    try:
        mean, std = (np.asarray(value[k], dtype=float) for k in ("mean", "std"))
    except (TypeError, ValueError):
        raise _fail("feature_stats", allowed, value) from None
    if not (mean.ndim == 1 and mean.shape == std.shape and mean.size > 0
            and np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise _fail("feature_stats", allowed, value)
    return {"mean": tuple(mean.tolist()), "std": tuple(std.tolist())}


@dataclass
class TorchTrainingConfig:
    """Settings of one training run (defaults follow the aenet-python reference).

    On construction ``method=None`` becomes ``Adam()``, numbers become int/float,
    paths and devices become strings, ``atomic_energies`` a plain dict and
    ``feature_stats`` a dict of float tuples.

    The loss is (1 - ``force_weight``) RMSE_E + ``force_weight`` RMSE_F + ``stress_weight`` RMSE_S
    (``aenet_core.training.loss``): RMSE_S (eV/Å³) over the stress components of the
    force-supervised structures that have a stress label (``Structure.stress``), so the force
    subsets (``force_fraction``, ``force_sampling``) choose the stress-supervised structures too.
    Each structure's terms are weighted by ``Structure.weight`` times
    ``config_type_weights[config_type]`` (MACE's name; 1 for a type it does not name); see
    ``aenet_core.training.loss`` for how.

    Optimisation controls (all off by default, which trains as aenet-python does):

    * ``use_scheduler`` switches on the learning-rate schedule named by ``scheduler``:
      ``'plateau'`` (ReduceLROnPlateau on the validation loss: ``scheduler_patience``,
      ``scheduler_factor``, ``scheduler_min_lr``), ``'exponential'`` or ``'cosine'``.  With
      W = ``scheduler_warmup_epochs`` (exponential and cosine only; fewer than ``iterations``),
      0-based epoch e < W trains with ``lr * (e + 1) / (W + 1)``, and from epoch W on the
      exponential with ``lr * scheduler_gamma**(e - W)``, the cosine from ``lr`` down to
      ``scheduler_min_lr`` at the last epoch.  ``scheduler_min_lr`` is the floor of every schedule.
      The cosine spans the ``iterations`` of the run that started at epoch 0; a resumed run
      continues that curve.  ``lr`` is the method's ``mu`` (Adam) or ``lr`` (SGD).
    * ``ema_decay`` d (None or 0: off): after every optimizer step the average of the trainable
      weights becomes ``d * average + (1 - d) * weights`` (starting from the initial weights).
      Validation, ``best_model.pt``, the saved model and its export use the average; the raw
      weights keep training, and checkpoints hold both.
    * ``early_stopping_patience`` P (None: off): training stops after P epochs in a row whose
      validation loss (the one the scheduler and ``save_best`` use) is not below the best so far
      by more than ``early_stopping_min_delta``.  It needs validation structures.
    * ``clip_grad_norm`` (None: off): the gradient norm is clipped to this before each step.
    """

    iterations: int = 100
    method: TrainingMethod | None = None
    testpercent: int = int(DEFAULT_TESTPERCENT)  # a float percentage is accepted too
    seed: int | None = None
    split_seed: int | None = None
    force_weight: float = 0.0
    force_fraction: float = 1.0
    sampling_policy: str = "uniform"
    force_sampling: str = "random"
    force_resample_num_epochs: int = 0
    force_min_structures_per_epoch: int | None = 1
    force_scale_unbiased: bool = False
    cache_features: bool = False
    cache_feature_max_entries: int | None = 1024
    cache_neighbors: bool = False
    cache_neighbor_max_entries: int | None = 512
    cache_force_triplets: bool = False
    cache_force_triplet_max_entries: int | None = 256
    cache_persist_dir: str | None = None
    cache_scope: str = "all"
    cache_warmup: bool = False
    memory_mode: str = "gpu"
    max_energy: float | None = None
    max_forces: float | None = None
    save_energies: bool = False
    save_forces: bool = False
    timing: bool = False
    device: str | None = None
    precision: str = "auto"
    atomic_energies: dict[str, float] | None = None
    normalize_features: bool = True
    normalize_energy: bool = True
    num_workers: int = 0
    prefetch_factor: int = 2
    persistent_workers: bool = True
    feature_stats: dict[str, Any] | None = None
    E_shift: float | None = None
    E_scaling: float | None = None
    show_progress: bool = True
    show_batch_progress: bool = False
    checkpoint_dir: str | None = "checkpoints"
    checkpoint_interval: int = 1
    max_checkpoints: int | None = None
    save_best: bool = True
    use_scheduler: bool = False
    scheduler_patience: int = 10
    scheduler_factor: float = 0.5
    scheduler_min_lr: float = 1e-6
    # Ours, after aenet-python's fields (which keep its order and defaults):
    stress_weight: float = 0.0
    config_type_weights: dict[str, float] | None = None
    # The descriptor derivatives the force contraction reads: "float32" halves their memory and traffic
    # (forces then carry relative rounding of about 1e-7); "auto" keeps the model's precision.
    derivative_precision: str = "auto"
    scheduler: str = "plateau"
    scheduler_gamma: float = 0.99
    scheduler_warmup_epochs: int = 0
    ema_decay: float | None = None
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    clip_grad_norm: float | None = None

    def __post_init__(self):
        if self.method is None:
            self.method = Adam()
        if not isinstance(self.method, (Adam, SGD)):
            raise _fail("method", "an Adam or SGD instance or None", self.method)
        self.refuse_mixed_memory()
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise _fail(name, "one of " + ", ".join(map(repr, choices)), getattr(self, name))
        for name in _BOOLS:
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise _fail(name, "True or False", value)
            setattr(self, name, bool(value))
        percent = self.testpercent
        check_numbers(self, _NUMBERS)
        if isinstance(percent, numbers.Integral):  # an int stays an int, as aenet-python keeps it
            self.testpercent = int(percent)
        if (self.E_shift is None) != (self.E_scaling is None):
            raise ValueError("TorchTrainingConfig.E_shift and E_scaling must be given together "
                             f"or both left None; got E_shift={self.E_shift!r}, "
                             f"E_scaling={self.E_scaling!r}")
        self._check_schedule()
        self.checkpoint_dir = _path("checkpoint_dir", self.checkpoint_dir)
        self.cache_persist_dir = _path("cache_persist_dir", self.cache_persist_dir)
        self.device = _device(self.device)
        self.atomic_energies = _number_mapping("atomic_energies", self.atomic_energies,
                                               "None or a mapping of element symbol to finite energy")
        self.config_type_weights = _number_mapping(
            "config_type_weights", self.config_type_weights,
            "None or a mapping of config_type (a string) to a finite weight >= 0", minimum=0.0)
        self.feature_stats = _feature_stats(self.feature_stats)

    def refuse_mixed_memory(self) -> None:
        """NotImplementedError for memory_mode 'mixed' (also when set after construction)."""
        if self.memory_mode == "mixed":
            raise NotImplementedError("TorchTrainingConfig.memory_mode='mixed' is not implemented (the name is "
                                      "kept for a future mixed-memory mode); use memory_mode='cpu' or 'gpu'")

    def _check_schedule(self) -> None:
        if self.scheduler != "plateau" and not self.use_scheduler:
            raise ValueError(f"TorchTrainingConfig.scheduler={self.scheduler!r} takes effect only with "
                             "use_scheduler=True; set use_scheduler=True (or leave scheduler 'plateau')")
        if self.scheduler_warmup_epochs and not self.scheduled_by_epoch:
            raise ValueError("TorchTrainingConfig.scheduler_warmup_epochs needs use_scheduler=True and scheduler "
                             f"'exponential' or 'cosine'; got scheduler_warmup_epochs={self.scheduler_warmup_epochs}"
                             f" with use_scheduler={self.use_scheduler}, scheduler={self.scheduler!r}")
        if self.scheduled_by_epoch and self.scheduler_min_lr > self.method.learning_rate:
            raise ValueError(f"TorchTrainingConfig.scheduler_min_lr must not exceed the method's learning rate "
                             f"({self.method.learning_rate:g}) for the {self.scheduler} schedule; got "
                             f"{self.scheduler_min_lr:g}")

    @property
    def scheduled_by_epoch(self) -> bool:
        """Whether the learning rate follows an epoch schedule (exponential or cosine)."""
        return self.use_scheduler and self.scheduler in _EPOCH_SCHEDULES

    @property
    def alpha(self) -> float:
        """Force weight α of the loss (1-α)·RMSE_E + α·RMSE_F."""
        return self.force_weight

    @property
    def batch_size(self) -> int:
        return self.method.batchsize

    def resolved_device(self) -> torch.device:
        """The training device: ``device``, or CUDA when available, else CPU."""
        import torch

        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def resolved_dtype(self, descriptor_dtype: torch.dtype) -> torch.dtype:
        """The model dtype: ``precision``, or the descriptor's dtype for 'auto'."""
        return _dtype(self.precision, descriptor_dtype)

    def derivative_dtype(self):
        """The dtype training keeps the descriptor derivatives in; None: the model's."""
        return _dtype(self.derivative_precision, None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict that ``from_dict`` turns back into an equal config."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["method"] = {"name": self.method.method_name, **self.method.to_params_dict()}
        for name in ("atomic_energies", "config_type_weights"):
            if d[name] is not None:
                d[name] = dict(d[name])
        if self.feature_stats is not None:
            d["feature_stats"] = {k: list(v) for k, v in self.feature_stats.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TorchTrainingConfig:
        d = dict(d)
        if isinstance(d.get("method"), Mapping):
            d["method"] = method_from_dict(d["method"])
        return cls(**d)


def _refuse_removed(init):
    """``init`` that names the replacement of a removed option (the generated one only says "unexpected
    keyword"); its signature stays the dataclass's."""
    @functools.wraps(init)
    def checked(self, *args, **kwargs):
        for name in _REMOVED:
            if name in kwargs:
                raise RemovedOptionError(
                    f"TorchTrainingConfig.{name} was removed; use force_resample_num_epochs "
                    "(epochs between force-subset resamples, 0 = never) instead")
        init(self, *args, **kwargs)
    return checked


TorchTrainingConfig.__init__ = _refuse_removed(TorchTrainingConfig.__init__)

_PATHS_AND_DEVICES = ("cache_persist_dir", "checkpoint_dir", "device")


def config_json_schema() -> dict:
    """A JSON schema of every ``TorchTrainingConfig`` field, derived from the checks above: types, ranges and
    choices, no defaults (those stay in the dataclass).  The workflow's ``training`` block is this minus the
    fields the workflow sets itself (a test keeps them equal)."""
    properties = {}
    for f in fields(TorchTrainingConfig):
        if f.name in _NUMBERS:
            properties[f.name] = _NUMBERS[f.name].json_schema()
        elif f.name in _CHOICES:
            properties[f.name] = {"enum": list(_CHOICES[f.name])}
        elif f.name in _BOOLS:
            properties[f.name] = {"type": "boolean"}
        elif f.name in _PATHS_AND_DEVICES:
            properties[f.name] = {"type": ["string", "null"]}
        elif f.name == "method":
            properties[f.name] = {"oneOf": [
                {"type": "object", "additionalProperties": False, "required": ["name"],
                 "properties": {"name": {"const": name}, **{k: r.json_schema() for k, r in cls._rules.items()}}}
                for name, cls in _METHODS.items()]}
        elif f.name == "atomic_energies":
            properties[f.name] = {"type": ["object", "null"], "additionalProperties": {"type": "number"}}
        elif f.name == "config_type_weights":
            properties[f.name] = {"type": ["object", "null"], "additionalProperties": {"type": "number", "minimum": 0}}
        elif f.name == "feature_stats":
            array = {"type": "array", "items": {"type": "number"}, "minItems": 1}
            properties[f.name] = {"type": ["object", "null"], "additionalProperties": False,
                                  "required": ["mean", "std"], "properties": {"mean": array, "std": array}}
        else:
            raise AssertionError(f"config_json_schema does not know how to describe {f.name}")
    return properties
