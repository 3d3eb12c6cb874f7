"""One feed-forward network per species, as in aenet: hidden layers given by ``arch``, a linear output."""
import torch
from torch import nn

from aenet_core.export.nn_ascii_file import ACTIVATION_CODES


class ScaledTanh(nn.Module):
    """aenet's 'mtanh': 1.7159 tanh(2x/3); with ``linear_slope`` > 0 it is aenet's 'twist' (mtanh + 0.1 x)."""

    def __init__(self, linear_slope: float = 0.0):
        super().__init__()
        self.linear_slope = linear_slope

    def forward(self, x):
        y = 1.7159 * torch.tanh(x * (2.0 / 3.0))
        return y + self.linear_slope * x if self.linear_slope else y


# Activation name -> (module factory, aenet .nn.ascii activation code).
_FACTORIES = {"linear": nn.Identity, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "mtanh": ScaledTanh,
              "twist": lambda: ScaledTanh(0.1)}
ACTIVATIONS = {name: (factory, ACTIVATION_CODES[name]) for name, factory in _FACTORIES.items()}


def normalize_arch(arch, species) -> dict:
    """Validate ``{species: [(nodes, activation), ...]}`` and return it with lower-case activation names."""
    if not isinstance(arch, dict):
        raise ValueError(f"arch must be a dict {{species: [(nodes, activation), ...]}}; got {type(arch).__name__}")
    missing = [s for s in species if s not in arch]
    if missing:
        raise ValueError(f"arch has no network for species {missing}; descriptor species are {list(species)}")
    extra = [s for s in arch if s not in species]
    if extra:
        raise ValueError(f"arch has networks for {extra}, which are not descriptor species {list(species)}")
    out = {}
    for s in species:
        layers = list(arch[s])
        if not layers:
            raise ValueError(f"arch[{s!r}] is empty; give at least one hidden layer (nodes, activation)")
        checked = []
        for position, layer in enumerate(layers):
            try:
                nodes, activation = layer
            except (TypeError, ValueError):
                raise ValueError(f"arch[{s!r}][{position}] must be (nodes, activation); got {layer!r}") from None
            if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
                raise ValueError(f"arch[{s!r}][{position}]: nodes must be a positive integer; got {nodes!r}")
            name = str(activation).lower()
            if name not in ACTIVATIONS:
                raise ValueError(f"arch[{s!r}][{position}]: activation must be one of {sorted(ACTIVATIONS)}; "
                                 f"got {activation!r}")
            checked.append((nodes, name))
        out[s] = checked
    return out


class AtomicNetworks(nn.Module):
    """``functions[s]`` maps the normalised features of an atom of species s to its network output."""

    def __init__(self, arch, species, n_features: int):
        super().__init__()
        self.species = list(species)
        self.arch = normalize_arch(arch, self.species)
        self.functions = nn.ModuleList(self._build(self.arch[s], n_features) for s in self.species)

    @staticmethod
    def _build(layers, n_features):
        modules, width = [], n_features
        for nodes, activation in layers:
            modules += [nn.Linear(width, nodes), ACTIVATIONS[activation][0]()]
            width = nodes
        modules.append(nn.Linear(width, 1))
        return nn.Sequential(*modules)

    def forward(self, features, species_idx, mean=None, inverse_std=None):
        """Per-atom outputs (N,) for features (N, F) and species indices (N,); with ``mean`` and
        ``inverse_std`` (S, F) each species' features are first standardised with its own row."""
        out = features.new_zeros(len(features))
        for s, network in enumerate(self.functions):
            atoms = torch.nonzero(species_idx == s).squeeze(1)
            if len(atoms):
                x = features.index_select(0, atoms)
                if mean is not None:
                    x = (x - mean[s]) * inverse_std[s]
                out = out.index_put((atoms,), network(x).squeeze(1))
        return out
