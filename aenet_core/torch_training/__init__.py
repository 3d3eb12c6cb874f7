"""Seed-compatible public module: ``from aenet_core.torch_training import TorchANNPotential, ...``."""
from aenet_core.committee import (AenetEnsembleResult, TorchCommitteeConfig, TorchCommitteePotential,
                                  TorchCommitteePredictResult, TorchCommitteeTrainResult)
from aenet_core.data import CachedStructureDataset, HDF5StructureDataset, StructureDataset
from aenet_core.model.predict import PredictOut
from aenet_core.potential import TorchANNPotential
from aenet_core.split import train_test_split, train_test_split_dataset
from aenet_core.structure import Structure
from aenet_core.training.config import SGD, Adam, TorchTrainingConfig
from aenet_core.training.trainout import TrainOut

__all__ = ["SGD", "Adam", "AenetEnsembleResult", "CachedStructureDataset", "HDF5StructureDataset", "PredictOut",
           "Structure", "StructureDataset", "TorchANNPotential", "TorchCommitteeConfig", "TorchCommitteePotential",
           "TorchCommitteePredictResult", "TorchCommitteeTrainResult", "TorchTrainingConfig", "TrainOut",
           "train_test_split", "train_test_split_dataset"]
