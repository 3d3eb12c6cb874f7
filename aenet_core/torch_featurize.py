"""aenet-python's ``aenet.torch_featurize`` under aenet_core: ``from aenet_core.torch_featurize import ...``."""
from aenet_core.chebyshev import AngularBasis, ChebyshevPolynomials, RadialBasis
from aenet_core.derivatives import LocalDerivatives
from aenet_core.descriptor import BatchedFeaturizer, ChebyshevDescriptor
from aenet_core.feature_files import write_features_to_hdf5
from aenet_core.featurizer import TorchAUCFeaturizer, featurize_and_write_hdf5
from aenet_core.neighbor_list import TorchNeighborList

__all__ = ["AngularBasis", "BatchedFeaturizer", "ChebyshevDescriptor", "ChebyshevPolynomials", "LocalDerivatives",
           "RadialBasis", "TorchAUCFeaturizer", "TorchNeighborList", "featurize_and_write_hdf5",
           "write_features_to_hdf5"]
