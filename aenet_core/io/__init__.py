"""Reading and writing structure files.

``iter_structures`` and ``read_structures`` read with our own parsers aenet's XSF (``.xsf``), FHI-aims
standard output (found by its first lines; ASE cannot read older versions), ATAT's ``str.out`` and Tinker XYZ
(``.tinker``, ``.arc``), everything else with ASE (frame by frame, ``ase.io.iread``).  ``format`` takes ASE's format names and aenet-python's (``AENET_FORMATS``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ase.io.formats import string2index

from aenet_core.io.atat import read_atat
from aenet_core.io.aims import is_aims_output, is_molecular_dynamics, read_aims_output
from aenet_core.io.ase_io import iter_ase, write_extxyz
from aenet_core.io.common import StructureFileError
from aenet_core.io.tinker import read_tinker
from aenet_core.io.xsf import read_xsf, write_xsf
from aenet_core.structure import Structure

__all__ = ["AENET_FORMATS", "StructureFileError", "iter_structures", "read_aims_output", "read_atat",
           "read_structures", "read_tinker", "read_xsf", "write_xsf", "write_extxyz"]

# aenet-python's readable formats (aenet.io.structure.read's ``frmt``): our parser's name, or the ASE format of
# the same files.  Its cp format (cp.x trajectories) has no reader here.
AENET_FORMATS = {"aims": "aims", "aimsout": "aimsout", "ase": "traj", "atat": "atat", "crystal": "crystal",
                 "espresso": "espresso-in", "gap": "extxyz", "lammps": "lammps-dump-text", "prism": "prismatic",
                 "pw": "espresso-out", "runner": "runnerdata", "tinker": "tinker", "vasp": "vasp", "vasprun": "vasp-xml",
                 "xdatcar": "vasp-xdatcar", "xsf": "xsf", "xyz": "extxyz"}
OWN_READERS = {"xsf": read_xsf, "aimsout": read_aims_output, "atat": read_atat, "tinker": read_tinker}


def iter_structures(path, format=None, index=":") -> Iterator[Structure]:
    """One Structure per frame of ``path``, read as they are reached (``index`` selects frames as in
    ``ase.io.read``): a multi-frame file of an ASE format is never held whole; one of our formats is."""
    format = _format(path, AENET_FORMATS.get(format, format))
    if format not in OWN_READERS:
        yield from iter_ase(path, index=index, format=format)
        return
    frames = OWN_READERS[format](path)
    try:
        selected = frames[string2index(index) if isinstance(index, str) else index]
    except IndexError:
        raise StructureFileError(f"{path}: frame index {index} is out of range ({len(frames)} frames)") from None
    yield from selected if isinstance(selected, list) else [selected]


def _format(path, format):
    """The format to read ``path`` as: ``format``, else ours by extension or content, else None (ASE guesses);
    FHI-aims molecular dynamics goes to ASE (our parser reads single points and relaxations)."""
    if format is None and Path(path).suffix.lower() == ".xsf":
        return "xsf"
    if format is None and Path(path).name == "str.out":  # ATAT's file name
        return "atat"
    if format is None and Path(path).suffix.lower() in (".tinker", ".arc"):
        return "tinker"
    if format == "aimsout" or (format is None and is_aims_output(path)):
        return "aims-output" if is_molecular_dynamics(path) else "aimsout"
    return format


def read_structures(path, format=None, index=":") -> list[Structure]:
    """Every frame of ``path`` (``index`` selects frames as in ``ase.io.read``), as a list."""
    return list(iter_structures(path, format, index))
