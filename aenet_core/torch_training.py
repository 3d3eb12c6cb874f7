"""Seed-compatible public module: ``from aenet_core.torch_training import TorchANNPotential, ...``."""
from aenet_core.structure import Structure
from aenet_core.training.config import SGD, Adam, TorchTrainingConfig
from aenet_core.training.data import StructureDataset
from aenet_core.training.potential import PredictOut, TorchANNPotential
from aenet_core.training.trainout import TrainOut

__all__ = ["Adam", "PredictOut", "SGD", "Structure", "StructureDataset", "TorchANNPotential", "TorchTrainingConfig",
           "TrainOut"]
