"""Which compute backend the neighbour search and the descriptor sums use.

``'auto'`` (the default) uses torch-cluster for the radius search of large
batches and torch-scatter for the per-atom sums when they import; ``'torch'``
forces the pure-torch path, which is also the deterministic one.  Every path
gives identical results.  The initial value comes from the
environment variable ``AENET_CORE_BACKEND``; ``set_backend`` changes it at run
time.
"""
import importlib
import os
import warnings

_VALID = ("auto", "torch")
_backend = os.environ.get("AENET_CORE_BACKEND", "auto").strip().lower() or "auto"
if _backend not in _VALID:
    raise ValueError(f"AENET_CORE_BACKEND must be one of {_VALID}; got {_backend!r}")


def _optional(name):
    """The module, or None when it is not installed or does not load against this torch."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
    except OSError as err:  # e.g. built against another torch: undefined symbols
        warnings.warn(f"{name} is installed but does not load ({err}); using the pure-torch path")
        return None


torch_cluster = _optional("torch_cluster")
torch_scatter = _optional("torch_scatter")


def set_backend(name: str) -> None:
    """Select 'auto' (use torch-cluster/torch-scatter when installed) or 'torch'."""
    global _backend
    if name not in _VALID:
        raise ValueError(f"backend must be one of {_VALID}; got {name!r}")
    _backend = name


def get_backend() -> str:
    return _backend


def cluster_module():
    """torch_cluster when it imports and the backend allows it, else None."""
    return torch_cluster if _backend == "auto" else None


def scatter_module():
    """torch_scatter when it imports and the backend allows it, else None."""
    return torch_scatter if _backend == "auto" else None
