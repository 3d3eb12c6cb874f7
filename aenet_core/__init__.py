"""aenet_core: training aenet-style atomic neural network potentials with PyTorch."""
from aenet_core.allocator import keep_freed_memory
from aenet_core.backend import get_backend, set_backend

keep_freed_memory()

__version__ = "0.1.0"

__all__ = ["__version__", "get_backend", "set_backend"]
