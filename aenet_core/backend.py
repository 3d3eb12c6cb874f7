"""Which compute backend the neighbour search and the descriptor sums use.

``'auto'`` uses torch-cluster for the radius search of large batches and
torch-scatter for the per-atom sums when they import; ``'torch'`` forces the
pure-torch path, which is also the deterministic one.  Every path gives
identical results.  The backend is an argument (``ChebyshevDescriptor(...,
backend='torch')``, ``batched_neighbor_list(..., backend='torch')``); only when
it is not given does the environment variable ``AENET_CORE_BACKEND`` (default
``auto``) decide, read at that moment.
"""
import functools
import importlib
import os
import warnings

import torch

BACKENDS = ("auto", "torch")
ENVIRONMENT_VARIABLE = "AENET_CORE_BACKEND"


def resolve(name=None) -> str:
    """The backend to use: ``name`` when given, else the environment's choice; refuses unknown names."""
    if name is None:
        name = os.environ.get(ENVIRONMENT_VARIABLE, "auto").strip().lower() or "auto"
        if name not in BACKENDS:
            raise ValueError(f"{ENVIRONMENT_VARIABLE} must be one of {BACKENDS}; got {name!r}")
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {name!r}")
    return name


@functools.cache
def _optional(module_name):
    """The module, or None when it is not installed or does not load against this torch; imported on first
    use (torch_cluster imports scipy: 0.4 s that a job without neighbour lists need not pay)."""
    try:
        return importlib.import_module(module_name)
    except ImportError:
        return None
    except OSError as err:  # e.g. built against another torch: undefined symbols
        warnings.warn(f"{module_name} is installed but does not load ({err}); using the pure-torch path")
        return None


def cluster_module(name: str):
    """torch_cluster when it imports and backend ``name`` allows it, else None."""
    return _optional("torch_cluster") if name == "auto" else None


def scatter_module(name: str):
    """torch_scatter when it imports and backend ``name`` allows it, else None."""
    return _optional("torch_scatter") if name == "auto" else None


def sum_columns(values, index, n: int, backend: str):
    """Sums of the columns of ``values`` (K, E) grouped by ``index`` (E,) into ``n`` columns (K, n)."""
    scatter = scatter_module(backend)
    if scatter is not None:
        return scatter.scatter_add(values, index, dim=1, dim_size=n)
    out = torch.zeros((values.shape[0], n), dtype=values.dtype, device=values.device)
    return out.index_add_(1, index, values)


def transfer(tensor, device=None, dtype=None):
    """``tensor`` on ``device``, floating point cast to ``dtype`` when given; a copy from the host to a GPU
    goes through pinned memory without waiting, so it overlaps with the work already queued there."""
    dtype = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
    device = torch.device(device) if device is not None else tensor.device
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.to(dtype=dtype).pin_memory().to(device, non_blocking=True)
    return tensor.to(device=device, dtype=dtype)
