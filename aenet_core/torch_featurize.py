"""Seed-compatible public module: ``from aenet_core.torch_featurize import ChebyshevDescriptor``."""
from aenet_core.chebyshev import AngularBasis, ChebyshevPolynomials, RadialBasis
from aenet_core.derivatives import LocalDerivatives
from aenet_core.descriptor import BatchedFeaturizer, ChebyshevDescriptor

__all__ = ["AngularBasis", "BatchedFeaturizer", "ChebyshevDescriptor", "ChebyshevPolynomials", "LocalDerivatives",
           "RadialBasis"]
