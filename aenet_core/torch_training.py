"""Seed-compatible public module: ``from aenet_core.torch_training import TorchANNPotential, ...``."""
from aenet_core.committee import (AenetEnsembleResult, TorchCommitteeConfig, TorchCommitteePotential,
                                  TorchCommitteePredictResult, TorchCommitteeTrainResult)
from aenet_core.database import HDF5StructureDataset
from aenet_core.structure import Structure
from aenet_core.training.config import SGD, Adam, TorchTrainingConfig
from aenet_core.training.data import CachedStructureDataset, StructureDataset
from aenet_core.training.potential import PredictOut, TorchANNPotential
from aenet_core.training.trainout import TrainOut

__all__ = ["SGD", "Adam", "AenetEnsembleResult", "CachedStructureDataset", "HDF5StructureDataset", "PredictOut",
           "Structure", "StructureDataset", "TorchANNPotential", "TorchCommitteeConfig", "TorchCommitteePotential",
           "TorchCommitteePredictResult", "TorchCommitteeTrainResult", "TorchTrainingConfig", "TrainOut"]
