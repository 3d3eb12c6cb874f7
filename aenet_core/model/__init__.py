"""Per-species atomic networks, normalisation and energy/force evaluation."""
from aenet_core.model.atomistic import AtomisticModel
from aenet_core.model.network import ACTIVATIONS, AtomicNetworks
from aenet_core.model.normalization import energy_normalization, feature_statistics

__all__ = ["ACTIVATIONS", "AtomicNetworks", "AtomisticModel", "energy_normalization", "feature_statistics"]
