"""Potentials in other programs' formats: aenet's ``.nn.ascii`` (one file per species)."""
from aenet_core.export.nn_ascii import DEFAULT_PREFIX, load_aenet_ascii, to_aenet_ascii
from aenet_core.export.nn_ascii_file import NNAsciiError, NNAsciiFile, read_nn_ascii, write_nn_ascii

__all__ = ["DEFAULT_PREFIX", "NNAsciiError", "NNAsciiFile", "load_aenet_ascii", "read_nn_ascii", "to_aenet_ascii",
           "write_nn_ascii"]
