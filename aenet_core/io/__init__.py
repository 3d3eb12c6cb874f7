"""Reading and writing structure files.

``read_structures`` dispatches on the extension: ``.xsf`` goes to the aenet XSF
parser, everything else to ``ase.io.read``.
"""
from __future__ import annotations

from pathlib import Path

from ase.io.formats import string2index

from aenet_core.io.ase_io import read_ase, write_extxyz
from aenet_core.io.common import StructureFileError
from aenet_core.io.xsf import read_xsf, write_xsf
from aenet_core.structure import Structure

__all__ = ["StructureFileError", "read_structures", "read_xsf", "write_xsf", "write_extxyz"]


def read_structures(path, format=None, index=":") -> list[Structure]:
    """One Structure per frame of ``path`` (``index`` selects frames as in ``ase.io.read``)."""
    if format != "xsf" and not (format is None and Path(path).suffix.lower() == ".xsf"):
        return read_ase(path, index=index, format=format)
    frames = read_xsf(path)
    try:
        selected = frames[string2index(index) if isinstance(index, str) else index]
    except IndexError:
        raise StructureFileError(f"{path}: frame index {index} is out of range ({len(frames)} frames)") from None
    return selected if isinstance(selected, list) else [selected]
