"""Data parallelism for one training run: torch.distributed processes share each batch.

A run is data parallel when torch.distributed's default process group holds more than one process
(``launch`` starts them, or torchrun does).  Every process holds the whole data set and draws the same
batch plan (the same seeds); each takes its share of every batch (``shard``: the force-supervised
structures and the others dealt out in turn), so that N processes with batch size B train exactly as one
process with batch size B.

The loss is not a sum over structures: each term is a (weighted) root mean over the whole batch,
RMSE = sqrt(S / W) with S the weighted sum of squared errors and W the sum of weights.  Each process
computes its share's sums, one all-reduce gives every process the batch's S and W (so the metrics are the
batch's), and each process back-propagates the surrogate c S_r with c = coef / (2 sqrt(S / W) W), the
derivative of the batch's term with respect to S (detached), so that the gradients summed over the
processes (``sum_gradients``) are the batch loss's.  The per-structure errors of the adaptive sampler are
summed over the processes too, so every sampler keeps the same state.  Process 0 alone writes files.

Backends: gloo on CPU, NCCL on CUDA with one GPU per process (cuda:LOCAL_RANK).
"""
from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
import traceback

import torch
import torch.distributed as dist

from aenet_core.training.loss import BatchMetrics, recorded_pairs

# Seconds a failed process other than the first waits before it reports (see _process).
FAILURE_GRACE_S = 3.0
# The per-batch sums each process contributes, in the order of the all-reduced vector.
SUMS = ("energy_squares", "energy_rows", "energy_weighted", "energy_weights", "energy_abs",
        "force_squares", "force_components", "force_weighted", "force_weights", "force_atoms",
        "stress_squares", "stress_components", "stress_weighted", "stress_weights")


class DistributedSetupError(ValueError):
    """Processes that cannot be started as asked (devices, backends, torchrun's variables)."""


def data_parallel() -> DataParallel | None:
    """The data parallelism of this process: None unless torch.distributed's default group holds more than
    one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return DataParallel()


def is_main() -> bool:
    """Whether this process writes files: always, unless it is a process of a group other than its first."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class DataParallel:
    """This process's place in the default process group and the collectives a training run needs."""

    def __init__(self):
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.backend = dist.get_backend()
        self.device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    # -- a training run

    def share(self, run) -> None:
        """Make ``run`` (a ``TrainingRun``, before its optimizer exists) one of the group's: the model as
        process 0 holds it, its loaders taking this process's shares, a loss over the whole batch; only
        process 0 saves."""
        if run.config.seed is None:
            raise ValueError("data-parallel training needs TorchTrainingConfig.seed: every process must draw "
                             "the same batches")
        for tensor in run.model.state_dict().values():  # initial weights and normalisation alike
            self.broadcast(tensor)
        run.loss = ShardedLoss(run.loss, self)
        run.train_loader = ShardedLoader(run.train_loader, self)
        if run.test_loader is not None:
            run.test_loader = ShardedLoader(run.test_loader, self)
        if not self.main:
            run.save = None

    def shard(self, indices, forced) -> tuple:
        """This process's share of a batch (dataset indices, force-supervised indices): every size-th
        force-supervised structure and every size-th other one, from the rank-th on."""
        chosen = set(forced)
        supervised = [i for i in indices if i in chosen][self.rank::self.size]
        others = [i for i in indices if i not in chosen][self.rank::self.size]
        return tuple(supervised + others), tuple(supervised)

    def sum_gradients(self, model) -> None:
        """Sum the parameters' gradients over the processes (one all-reduce); a parameter keeps no gradient
        only when no process gave it one (no atom of its species in the batch), as in one process."""
        parameters = [p for p in model.parameters() if p.requires_grad]
        if not parameters:
            return
        flat = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in parameters]
                         + [torch.tensor([p.grad is not None for p in parameters], dtype=parameters[0].dtype,
                                         device=parameters[0].device)])
        flat = self.all_reduce(flat)
        present = (flat[len(flat) - len(parameters):] > 0).tolist()
        offset = 0
        for parameter, given in zip(parameters, present):
            n = parameter.numel()
            parameter.grad = flat[offset: offset + n].view_as(parameter).clone() if given else None
            offset += n

    def epoch_errors(self, recorded, indices) -> dict:
        """The training epoch's mean |dE|/N per sampled structure of ``indices`` (the split's), over every
        process's shares (``recorded``: this process's, as ``EpochSums`` records them)."""
        position = {index: k for k, index in enumerate(indices)}
        totals = torch.zeros(2, len(indices), dtype=torch.float64)
        for index, error in recorded_pairs(recorded):
            totals[0, position[index]] += error
            totals[1, position[index]] += 1
        totals = self.all_reduce(totals.to(self.device)).cpu()
        return {indices[k]: float(totals[0, k] / totals[1, k]) for k in torch.nonzero(totals[1]).flatten().tolist()}

    def shared_seed(self, seed=None) -> int:
        """``seed``, or one process 0 draws, the same in every process."""
        value = torch.tensor([-1 if seed is None else seed], dtype=torch.int64)
        if value.item() < 0 and self.main:
            value[0] = int.from_bytes(os.urandom(4), "little") >> 1
        return int(self.broadcast(value.to(self.device)).item())

    def shared_text(self, text: str | None) -> str | None:
        """Process 0's ``text`` (None passes as None), in every process."""
        data = b"" if text is None else text.encode()
        size = self.broadcast(torch.tensor([len(data) if text is not None else -1], dtype=torch.int64,
                                            device=self.device))
        if int(size.item()) < 0:
            return None
        buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=self.device)
        if self.main:
            buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        return bytes(self.broadcast(buffer).cpu().tolist()).decode()

    # -- collectives on the group's device (the tensors come back where they were)

    def all_reduce(self, tensor):
        moved = tensor.to(self.device)
        dist.all_reduce(moved)
        return moved.to(tensor.device)

    def broadcast(self, tensor):
        moved = tensor.detach().to(self.device)
        dist.broadcast(moved, src=0)
        with torch.no_grad():
            tensor.copy_(moved.to(tensor.device))
        return tensor


class ShardedLoss:
    """A loss whose metrics and gradients are the whole batch's while each process holds its share of it
    (``EnergyForceLoss`` in every process).  The loss tensor it returns has the batch loss's value and, summed
    over the processes, its gradient."""

    def __init__(self, loss, parallel: DataParallel):
        self.loss, self.parallel = loss, parallel

    @property
    def needs_derivatives(self) -> bool:
        return self.loss.needs_derivatives

    def combine(self, energy_rmse, force_rmse, stress_rmse=None):
        return self.loss.combine(energy_rmse, force_rmse, stress_rmse)

    def of_batch(self, model, batch, n_labelled_atoms: int, train: bool):
        """(loss tensor, BatchMetrics of the whole batch) for this process's share ``batch``; ``n_labelled_atoms``
        counts the whole batch's force-labelled atoms."""
        parameter = next(model.parameters())
        if batch.n_structures:
            errors = self.loss.batch_errors(model, batch, train)
            local = share_sums(errors, batch.n_force_atoms)
        else:  # more processes than structures in this batch
            errors, local = None, {key: parameter.new_zeros((), dtype=torch.float64) for key in SUMS}
        totals = dict(zip(SUMS, self.parallel.all_reduce(torch.stack([local[key].detach().double()
                                                                        for key in SUMS])).tolist()))
        terms = [("energy", 1 - self.loss.force_weight, 1.0)]
        reported = {"energy": math.sqrt(totals["energy_squares"] / totals["energy_rows"])}
        for name, weight in (("force", self.loss.force_weight), ("stress", self.loss.stress_weight)):
            if not totals[f"{name}_components"]:
                reported[name] = float("nan")
                continue
            scale = 1.0
            if name == "force" and n_labelled_atoms:
                supervised = totals["force_atoms"] / n_labelled_atoms
                if self.loss.scale_unbiased and 0 < supervised < 1:
                    scale = 1 / math.sqrt(supervised)
            reported[name] = scale * math.sqrt(totals[f"{name}_squares"] / totals[f"{name}_components"])
            if weight > 0:
                terms.append((name, weight, scale))
        value, surrogate = 0.0, None
        for name, weight, scale in terms:
            total_weight = totals[f"{name}_weights"]
            if total_weight <= 0:  # every weight 0: the term is zero and gives no gradient
                continue
            rmse = math.sqrt(totals[f"{name}_weighted"] / total_weight)
            value += weight * scale * rmse
            if rmse > 0 and errors is not None:
                part = weight * scale / (2 * rmse * total_weight) * local[f"{name}_weighted"]
                surrogate = part if surrogate is None else surrogate + part
        if surrogate is None:  # nothing of this share reaches the loss: no gradient from this process
            surrogate = parameter.new_zeros((), requires_grad=torch.is_grad_enabled())
        loss = surrogate + (value - surrogate.detach())
        abs_errors = errors.energy.detach().abs() if errors is not None else parameter.new_zeros(0)
        metrics = BatchMetrics(reported["energy"], totals["energy_abs"] / totals["energy_rows"], reported["force"],
                               abs_errors, reported["stress"])
        return loss, metrics


def share_sums(errors, n_force_atoms: int) -> dict:
    """A share's sums (``SUMS``) of its squared errors, weighted and not, their counts and weights, as 0-d
    tensors (the weighted ones differentiable)."""
    sums = {}
    terms = (("energy", errors.energy, errors.energy_weights), ("force", errors.forces, errors.force_weights),
             ("stress", errors.stress, errors.stress_weights))
    for name, values, weights in terms:
        if values is None or not len(values):
            for key in SUMS:
                if key.startswith(f"{name}_"):
                    sums[key] = errors.energy.new_zeros(())
            continue
        squares = values**2
        rows = squares.reshape(len(values), -1).mean(1)
        w = torch.ones_like(rows) if weights is None else weights.to(rows)
        sums[f"{name}_squares"] = squares.detach().sum()
        sums[f"{name}_weighted"] = (w * rows).sum()
        sums[f"{name}_weights"] = w.sum()
        count = float(values.numel())
        sums["energy_rows" if name == "energy" else f"{name}_components"] = values.new_tensor(count)
    sums["energy_abs"] = errors.energy.detach().abs().sum()
    sums["force_atoms"] = errors.energy.new_tensor(float(n_force_atoms))
    return sums


class _NoStructures:
    """The share of a process that a batch has no structure for."""

    indices = ()
    n_structures = 0

    def to(self, device, dtype):
        return self


class ShardedLoader:
    """A ``BatchLoader`` that featurizes, for each batch of a plan, this process's share of it."""

    def __init__(self, loader, parallel: DataParallel):
        self.loader, self.parallel = loader, parallel
        self.source = loader.source

    def __call__(self, plan):
        shares = [self.parallel.shard(indices, forced) for indices, forced in plan]
        batches = self.loader([share for share in shares if share[0]])
        return (next(batches) if share[0] else _NoStructures() for share in shares)


# -- starting the processes ------------------------------------------------------------------------


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def process_device(device: str) -> str:
    """This process's device: cuda:LOCAL_RANK for cuda in a group of several processes, else ``device``."""
    if device == "cuda" and dist.is_initialized() and dist.get_world_size() > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return device


def check_processes(nproc: int, device: str, per_node: int | None = None) -> None:
    """Refuse ``nproc`` processes on ``device`` (cpu or cuda; ``per_node`` of them on this machine) that
    cannot start: a numbered GPU, more processes than GPUs, a backend torch lacks."""
    if nproc < 1:
        raise DistributedSetupError(f"--nproc must be at least 1; got {nproc}")
    if nproc == 1:
        return
    if not dist.is_available():
        raise DistributedSetupError("--nproc > 1 needs torch.distributed, which this torch is built without")
    if device == "cpu":
        if not dist.is_gloo_available():
            raise DistributedSetupError("--nproc > 1 on the CPU needs torch.distributed's gloo backend, which this "
                                        "torch is built without")
        return
    if device != "cuda":
        raise DistributedSetupError(f"--nproc {nproc} gives each process a GPU of its own (cuda:LOCAL_RANK): give "
                                    f"--device cuda or cpu, not {device}")
    if not torch.cuda.is_available():
        raise DistributedSetupError(f"--device cuda with --nproc {nproc}: torch finds no CUDA GPU (NCCL needs one "
                                    "per process); use --device cpu for gloo processes")
    if not dist.is_nccl_available():
        raise DistributedSetupError("--device cuda with --nproc > 1 needs the NCCL backend, which this torch is "
                                    "built without")
    local = nproc if per_node is None else per_node
    if local > torch.cuda.device_count():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise DistributedSetupError(
            f"{local} processes on this machine need {local} GPUs (one each) and torch sees "
            f"{torch.cuda.device_count()}" + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""))


@contextlib.contextmanager
def process_group(device: str):
    """This process in the default group that torchrun's variables (or ``launch``'s) describe: gloo on the
    CPU, NCCL on cuda:LOCAL_RANK; yields this process's device."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield process_device(device)
    finally:
        dist.destroy_process_group()


def launch(function, nproc: int, device: str, *args) -> None:
    """``function(device, *args)`` in ``nproc`` processes that share each batch: in this one (``nproc`` 1), in
    the group torchrun started this process in, or in ``nproc`` processes it starts on this machine (a
    ProcessFailed carries the first failure of one of them)."""
    if launched_by_torchrun():
        size = int(os.environ["WORLD_SIZE"])
        if nproc not in (1, size):
            raise DistributedSetupError(f"--nproc {nproc}: torchrun started this process in a group of {size} "
                                        "(WORLD_SIZE); leave --nproc out under torchrun")
        check_processes(size, device, int(os.environ.get("LOCAL_WORLD_SIZE", size)))
        if size == 1:
            function(device, *args)
            return
        with process_group(device) as own:
            function(own, *args)
        return
    check_processes(nproc, device)
    if nproc == 1:
        function(device, *args)
        return
    import torch.multiprocessing as mp

    try:
        mp.start_processes(_process, args=(nproc, _free_port(), function, device, args), nprocs=nproc, join=True,
                           start_method="spawn")
    except mp.ProcessRaisedException as error:
        raise ProcessFailed(_error_message(str(error))) from None
    except mp.ProcessExitedException as error:
        raise ProcessFailed(f"process {error.error_index} of {nproc} ended with exit status {error.exit_code}") \
            from None


class ProcessFailed(RuntimeError):
    """The failure of a process ``launch`` started, with its message."""


def _process(rank: int, nproc: int, port: int, function, device: str, args) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())  # tqdm's own, a multiprocessing semaphore, would outlive this process
    try:
        with process_group(device) as own:
            function(own, *args)
        return
    except SystemExit as stop:  # a command's failure: its message reaches the starting process
        if stop.code in (None, 0):
            return
        failure = ProcessFailed(stop.code if isinstance(stop.code, str) else f"exit status {stop.code}")
    except Exception as error:
        traceback.print_exc()  # where it failed, in this process's stderr (the job's log)
        failure = ProcessFailed(f"process {rank} of {nproc}: {type(error).__name__}: {error}")
    if rank:  # when process 0 failed first, the others fail for want of it: the error reported is its own
        time.sleep(FAILURE_GRACE_S)
    raise failure


def _error_message(report: str) -> str:
    """The error of a started process's traceback: what follows its last indented line (the class of a
    ProcessFailed left out)."""
    lines = report.strip().splitlines()
    code = [k for k, line in enumerate(lines) if line.startswith(" ")]
    message = "\n".join(lines[code[-1] + 1:] if code else lines[-1:])
    prefix = f"{__name__}.{ProcessFailed.__name__}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

