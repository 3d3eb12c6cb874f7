"""Seed-compatible public module: ``from aenet_core.torch_featurize import ChebyshevDescriptor``."""
from aenet_core.derivatives import LocalDerivatives
from aenet_core.descriptor import BatchedFeaturizer, ChebyshevDescriptor
from aenet_core.featurizer import TorchAUCFeaturizer, featurize_and_write_hdf5
from aenet_core.feature_files import write_features_to_hdf5
from aenet_core.neighbor_list import TorchNeighborList

__all__ = ["BatchedFeaturizer", "ChebyshevDescriptor", "LocalDerivatives", "TorchAUCFeaturizer", "TorchNeighborList",
           "featurize_and_write_hdf5", "write_features_to_hdf5"]
