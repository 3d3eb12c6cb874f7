"""Reading and writing structure files.

``iter_structures`` and ``read_structures`` dispatch on the extension: ``.xsf`` goes to the aenet XSF
parser, everything else to ASE (read frame by frame, ``ase.io.iread``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ase.io.formats import string2index

from aenet_core.io.ase_io import iter_ase, write_extxyz
from aenet_core.io.common import StructureFileError
from aenet_core.io.xsf import read_xsf, write_xsf
from aenet_core.structure import Structure

__all__ = ["StructureFileError", "iter_structures", "read_structures", "read_xsf", "write_xsf", "write_extxyz"]


def iter_structures(path, format=None, index=":") -> Iterator[Structure]:
    """One Structure per frame of ``path``, read as they are reached (``index`` selects frames as in
    ``ase.io.read``): a multi-frame file of an ASE format is never held whole; an XSF file is (they are small)."""
    if format != "xsf" and not (format is None and Path(path).suffix.lower() == ".xsf"):
        yield from iter_ase(path, index=index, format=format)
        return
    frames = read_xsf(path)
    try:
        selected = frames[string2index(index) if isinstance(index, str) else index]
    except IndexError:
        raise StructureFileError(f"{path}: frame index {index} is out of range ({len(frames)} frames)") from None
    yield from selected if isinstance(selected, list) else [selected]


def read_structures(path, format=None, index=":") -> list[Structure]:
    """Every frame of ``path`` (``index`` selects frames as in ``ase.io.read``), as a list."""
    return list(iter_structures(path, format, index))
