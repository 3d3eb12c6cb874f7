"""``aenet.torch_training.trainer``, the import path aenet-python's documentation uses for TorchANNPotential."""
from aenet_core.potential import TorchANNPotential

__all__ = ["TorchANNPotential"]
