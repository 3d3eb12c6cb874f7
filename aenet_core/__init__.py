"""aenet_core: training aenet-style atomic neural network potentials with PyTorch.

Importing it changes nothing in the host process: the compute backend is an
argument (``aenet_core.backend``), and the allocator tuning the command line and
benchmarks use (``aenet_core.allocator.keep_freed_memory``) is opt-in.
"""
__version__ = "0.1.0"
