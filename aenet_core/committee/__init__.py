"""Committees of independently trained potentials: configuration, one member, the metadata file, prediction
results and the committee potential (calibration lives in ``aenet_core.uncertainty``)."""
from aenet_core.committee.config import TorchCommitteeConfig
from aenet_core.committee.member import train_member
from aenet_core.committee.metadata import METADATA_FILE, TorchCommitteeTrainResult, aggregate_committee
from aenet_core.committee.potential import TorchCommitteePotential
from aenet_core.committee.results import AenetEnsembleResult, TorchCommitteePredictResult

__all__ = ["METADATA_FILE", "AenetEnsembleResult", "TorchCommitteeConfig", "TorchCommitteePotential",
           "TorchCommitteePredictResult", "TorchCommitteeTrainResult", "aggregate_committee", "train_member"]
