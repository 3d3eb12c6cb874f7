"""Potentials in other programs' formats: aenet's ``.nn.ascii`` and binary ``.nn`` (one file per species)."""
from aenet_core.export.nn_ascii import DEFAULT_PREFIX, load_aenet, to_aenet_ascii
from aenet_core.export.nn_ascii_file import NNAsciiError, NNAsciiFile, read_nn_ascii, write_nn_ascii
from aenet_core.export.nn_binary import NNBinaryError, read_nn_binary, read_potential_file, write_nn_binary

__all__ = ["DEFAULT_PREFIX", "NNAsciiError", "NNAsciiFile", "NNBinaryError", "load_aenet", "read_nn_ascii",
           "read_nn_binary", "read_potential_file", "to_aenet_ascii", "write_nn_ascii", "write_nn_binary"]
