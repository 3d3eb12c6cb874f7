"""aenet-python's builders for a training loop the caller writes: ``NetworkBuilder`` (the per-species networks
of an architecture) and ``OptimizerBuilder`` (the optimizer of a training method, the plateau scheduler)."""
from __future__ import annotations

import torch

from aenet_core.model.network import AtomicNetworks, normalize_arch
from aenet_core.training.config import SGD, Adam
from aenet_core.training.controls import plateau_scheduler


class NetworkBuilder:
    """Per-species networks for ``descriptor``'s species and feature count, on ``device`` in ``dtype``."""

    def __init__(self, descriptor, device, dtype):
        self.descriptor, self.device, self.dtype = descriptor, device, dtype

    def validate_arch(self, arch) -> tuple:
        """(hidden layer sizes, activation names) per species in the descriptor's order, from
        ``{species: [(nodes, activation), ...]}``; ValueError naming the species and layer at fault."""
        checked = normalize_arch(arch, list(self.descriptor.species))
        layers = [checked[s] for s in self.descriptor.species]
        return [[nodes for nodes, _ in species] for species in layers], [[a for _, a in species] for species in layers]

    def build_network(self, arch) -> AtomicNetworks:
        """``AtomicNetworks``: ``functions[s]`` maps an atom's (normalised) features to its output; called as
        ``net(features, species_indices)`` it gives the per-atom outputs.  ``net.device`` names the device."""
        net = AtomicNetworks(arch, self.descriptor.species, self.descriptor.n_features)
        net = net.to(device=self.device, dtype=self.dtype)
        net.device = str(self.device)
        return net


class OptimizerBuilder:
    """The optimizer of a training method (``Adam`` or ``SGD``) over ``model``'s parameters."""

    def __init__(self, model):
        self.model = model

    def build_optimizer(self, method) -> torch.optim.Optimizer:
        """``torch.optim.Adam`` or ``torch.optim.SGD`` with the method's hyper-parameters."""
        if not isinstance(method, (Adam, SGD)):
            raise TypeError(f"method must be aenet_core's Adam or SGD; got {type(method).__name__}")
        return method.build(self.model.parameters())

    @staticmethod
    def build_scheduler(optimizer, use_scheduler=False, scheduler_patience=10, scheduler_factor=0.5,
                        scheduler_min_lr=1e-06):
        """ReduceLROnPlateau on the validation loss (mode 'min'), or None without ``use_scheduler``."""
        if not use_scheduler:
            return None
        return plateau_scheduler(optimizer, scheduler_patience, scheduler_factor, scheduler_min_lr)

    @staticmethod
    def get_batch_size(method) -> int:
        """The method's ``batchsize`` (or ``batch_size``); 32 for an object with neither."""
        for name in ("batchsize", "batch_size"):
            if hasattr(method, name):
                return int(getattr(method, name))
        return 32
