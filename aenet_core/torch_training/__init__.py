"""aenet-python's ``aenet.torch_training`` under aenet_core: ``from aenet_core.torch_training import ...``."""
from aenet_core.committee import (AenetEnsembleResult, TorchCommitteeConfig, TorchCommitteeMemberResult,
                                  TorchCommitteePotential, TorchCommitteePredictResult, TorchCommitteeTrainResult)
from aenet_core.data import CachedStructureDataset, HDF5StructureDataset, StructureDataset
from aenet_core.model.normalization import NormalizationManager
from aenet_core.model.predict import PredictOut
from aenet_core.model.predictor import EnergyModelAdapter, Predictor
from aenet_core.potential import TorchANNPotential, export_history, load_model, save_model
from aenet_core.split import train_test_split, train_test_split_dataset
from aenet_core.structure import Structure
from aenet_core.training.builders import NetworkBuilder, OptimizerBuilder
from aenet_core.training.config import SGD, Adam, TorchTrainingConfig, TrainingMethod
from aenet_core.training.custom_loop import TrainingLoop
from aenet_core.training.managers import CheckpointManager, MetricsTracker
from aenet_core.training.trainout import TrainOut

__all__ = ["SGD", "Adam", "AenetEnsembleResult", "CachedStructureDataset", "CheckpointManager", "EnergyModelAdapter",
           "HDF5StructureDataset", "MetricsTracker", "NetworkBuilder", "NormalizationManager", "OptimizerBuilder",
           "PredictOut", "Predictor", "Structure", "StructureDataset", "TorchANNPotential", "TorchCommitteeConfig",
           "TorchCommitteeMemberResult", "TorchCommitteePotential", "TorchCommitteePredictResult",
           "TorchCommitteeTrainResult", "TorchTrainingConfig", "TrainOut", "TrainingLoop", "TrainingMethod",
           "export_history", "load_model", "save_model", "train_test_split",
           "train_test_split_dataset"]
