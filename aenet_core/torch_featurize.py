"""Seed-compatible public module: ``from aenet_core.torch_featurize import ChebyshevDescriptor``."""
from aenet_core.derivatives import LocalDerivatives
from aenet_core.descriptor import BatchedFeaturizer, ChebyshevDescriptor

__all__ = ["BatchedFeaturizer", "ChebyshevDescriptor", "LocalDerivatives"]
