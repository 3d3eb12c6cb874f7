"""Optimisation controls of a training run: the weight average (EMA), early stopping and epoch schedules.

Each keeps its state as tensors and plain data so that a checkpoint can hold it.
"""
import contextlib
import math

import torch


class WeightAverage:
    """Exponential moving average of a model's trainable parameters (buffers such as the feature and
    energy normalisation are not averaged).

    ``put_in`` loads the average into the model and keeps the raw weights aside; ``take_out`` puts them
    back.  The state holds both, whichever the model holds at the moment."""

    def __init__(self, model, decay: float):
        self.decay = decay
        self.parameters = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.average = {name: p.detach().clone() for name, p in self.parameters.items()}
        self._raw = None  # the trained weights while the model holds the average

    @torch.no_grad()
    def update(self) -> None:
        for name, p in self.parameters.items():
            self.average[name].mul_(self.decay).add_(p, alpha=1 - self.decay)

    @torch.no_grad()
    def put_in(self) -> None:
        self._raw = {name: p.detach().clone() for name, p in self.parameters.items()}
        _copy_into(self.parameters, self.average)

    @torch.no_grad()
    def take_out(self) -> None:
        _copy_into(self.parameters, self._raw)
        self._raw = None

    @contextlib.contextmanager
    def applied(self):
        """The model holds the average inside the block."""
        self.put_in()
        try:
            yield
        finally:
            self.take_out()

    def state_dict(self) -> dict:
        raw = self._raw if self._raw is not None else self.parameters
        return {"raw": _copies(raw), "average": _copies(self.average)}

    @torch.no_grad()
    def load_average(self, average) -> None:
        _copy_into(self.average, average)


def load_raw_weights(model, saved_state) -> None:
    """Put the trained weights a checkpoint's ``ema`` state keeps aside back into ``model`` (whose file
    weights are the average)."""
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        _copy_into(parameters, saved_state["raw"])


def _copy_into(targets: dict, sources: dict) -> None:
    for name, target in targets.items():
        target.copy_(sources[name])


def _copies(tensors: dict) -> dict:
    return {name: t.detach().cpu().clone() for name, t in tensors.items()}


class EarlyStopping:
    """Stops after ``patience`` epochs in a row whose validation loss is not below the best by more than
    ``min_delta`` (a NaN loss never improves).  ``stopped`` is None, or when and why it stopped: the last
    epoch and the best one (0-based, as the history's lists and the checkpoint names) and the reason."""

    def __init__(self, patience: int, min_delta: float):
        self.patience, self.min_delta = patience, min_delta
        self.best, self.best_epoch, self.waited, self.stopped = None, None, 0, None

    def update(self, epoch: int, val_loss: float) -> None:
        if not math.isnan(val_loss) and (self.best is None or val_loss < self.best - self.min_delta):
            self.best, self.best_epoch, self.waited = float(val_loss), epoch, 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            self.stopped = {"epoch": epoch, "best_epoch": self.best_epoch, "reason": self._reason()}

    def _reason(self) -> str:
        if self.best is None:
            return f"no finite validation loss in the first {self.patience} epochs"
        return (f"the validation loss did not improve by more than {self.min_delta:g} for {self.patience} epochs "
                f"(best {self.best:.6g})")

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "waited": self.waited, "stopped": self.stopped}

    def load_state_dict(self, state) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.waited, self.stopped = state["waited"], state["stopped"]


def plateau_scheduler(optimizer, patience: int, factor: float, min_lr: float):
    """Multiplies the learning rate by ``factor`` (not below ``min_lr``) after ``patience`` epochs without a
    lower validation loss."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", patience=patience, factor=factor,
                                                      min_lr=min_lr)


def scheduled_rate(config, epoch: int, planned_epochs: int) -> float:
    """The learning rate of 0-based ``epoch`` under the exponential or cosine schedule of ``config`` (see
    ``TorchTrainingConfig``), for a run planned over ``planned_epochs`` epochs."""
    base, floor, warmup = config.method.learning_rate, config.scheduler_min_lr, config.scheduler_warmup_epochs
    if epoch < warmup:
        return base * (epoch + 1) / (warmup + 1)
    if config.scheduler == "exponential":
        return max(base * config.scheduler_gamma ** (epoch - warmup), floor)
    progress = min(1.0, (epoch - warmup) / max(1, planned_epochs - 1 - warmup))
    return floor + (base - floor) * (1 + math.cos(math.pi * progress)) / 2
