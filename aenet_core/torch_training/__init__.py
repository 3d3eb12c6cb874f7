"""Seed-compatible public module: ``from aenet_core.torch_training import TorchANNPotential, ...``."""
from aenet_core.committee import (AenetEnsembleResult, TorchCommitteeConfig, TorchCommitteeMemberResult,
                                  TorchCommitteePotential, TorchCommitteePredictResult, TorchCommitteeTrainResult)
from aenet_core.data import CachedStructureDataset, HDF5StructureDataset, StructureDataset
from aenet_core.model.predict import PredictOut
from aenet_core.potential import TorchANNPotential, export_history, load_model, save_model
from aenet_core.structure import Structure
from aenet_core.training.config import SGD, Adam, TorchTrainingConfig, TrainingMethod
from aenet_core.training.trainout import TrainOut

__all__ = ["SGD", "Adam", "AenetEnsembleResult", "CachedStructureDataset", "HDF5StructureDataset", "PredictOut",
           "Structure", "StructureDataset", "TorchANNPotential", "TorchCommitteeConfig", "TorchCommitteeMemberResult",
           "TorchCommitteePotential", "TorchCommitteePredictResult", "TorchCommitteeTrainResult", "TorchTrainingConfig",
           "TrainOut", "TrainingMethod", "export_history", "load_model", "save_model"]
