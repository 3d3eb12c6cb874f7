"""Committees of independently trained potentials: configuration, one member, the metadata file, prediction
results and the committee potential (calibration lives in ``aenet_core.uncertainty``).  Each name is imported
from its module on first use (``aenet_core.lazy``)."""
from aenet_core.lazy import lazy_attributes

_HOMES = {
    "TorchCommitteeConfig": "config",
    "train_member": "member",
    "METADATA_FILE": "metadata",
    "TorchCommitteeMemberResult": "metadata",
    "TorchCommitteeTrainResult": "metadata",
    "aggregate_committee": "metadata",
    "TorchCommitteePotential": "potential",
    "AenetEnsembleResult": "results",
    "TorchCommitteePredictResult": "results",
}
__getattr__ = lazy_attributes(__name__, _HOMES)
__all__ = sorted(_HOMES)
