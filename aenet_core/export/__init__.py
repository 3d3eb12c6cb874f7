"""Potentials in other programs' formats: aenet's ``.nn.ascii`` and binary ``.nn`` (one file per species).
Each name is imported from its module on first use (``aenet_core.lazy``): reading the files needs no torch."""
from aenet_core.lazy import lazy_attributes

_HOMES = {
    "DEFAULT_PREFIX": "nn_ascii_file",
    "NNAsciiError": "nn_ascii_file",
    "NNAsciiFile": "nn_ascii_file",
    "NNBinaryError": "nn_binary",
    "load_aenet": "nn_ascii",
    "read_nn_ascii": "nn_ascii_file",
    "read_nn_binary": "nn_binary",
    "read_potential_file": "nn_binary",
    "to_aenet_ascii": "nn_ascii",
    "write_nn_ascii": "nn_ascii_file",
    "write_nn_binary": "nn_binary",
}
__getattr__ = lazy_attributes(__name__, _HOMES)
__all__ = sorted(_HOMES)
