"""Which compute backend the neighbour search and the descriptor sums use.

``'auto'`` (the default) uses torch-cluster for the radius search and
torch-scatter for the per-atom sums when they import; ``'torch'`` forces the
pure-torch path, which is also the deterministic one (results do not depend on
which optional packages are installed).  The initial value comes from the
environment variable ``AENET_CORE_BACKEND``; ``set_backend`` changes it at run
time.
"""
import os

_VALID = ("auto", "torch")
_backend = os.environ.get("AENET_CORE_BACKEND", "auto").strip().lower() or "auto"
if _backend not in _VALID:
    raise ValueError(f"AENET_CORE_BACKEND must be one of {_VALID}; got {_backend!r}")

try:
    import torch_cluster
except ImportError:
    torch_cluster = None

try:
    import torch_scatter
except ImportError:
    torch_scatter = None


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
