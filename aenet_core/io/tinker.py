"""Tinker XYZ coordinates and ``.arc`` trajectories, which ASE does not read.

A frame is a header ``natoms [title]``, optionally a box line ``a b c alpha beta gamma`` (Å, degrees), then
one row ``index name x y z [type bonded...]`` per atom (Fortran ``D`` exponents allowed); frames follow each
other.  The atom name is the species label.  Without box lines the cell comes from ``A-AXIS``, ``B-AXIS``,
``C-AXIS``, ``ALPHA``, ``BETA``, ``GAMMA`` of the keyword file beside it (same stem, ``.key``), if any.
Tinker writes energies and forces elsewhere: frames have none.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from ase.geometry import cellpar_to_cell

from aenet_core.io.common import StructureFileError
from aenet_core.structure import Structure

KEY_CELL = ("A-AXIS", "B-AXIS", "C-AXIS", "ALPHA", "BETA", "GAMMA")


def read_tinker(path) -> list[Structure]:
    """Every frame of a Tinker XYZ file; malformed lines raise StructureFileError naming file and line."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    key_cell = _key_file_cell(Path(path).with_suffix(".key"))
    frames, pos = [], 0
    while pos < len(lines):
        if not lines[pos].strip():
            pos += 1
            continue
        cell, positions, names, pos = _frame(path, lines, pos)
        cell = key_cell if cell is None else cell
        frames.append(Structure(positions, names, cell=cell, name=f"{path}#frame={len(frames)}"))
    if not frames:
        raise StructureFileError(f"{path}:1: no 'natoms [title]' header: the file holds no frame")
    if len(frames) == 1:
        frames[0].name = str(path)
    return frames


def _frame(path, lines, pos):
    """(cell or None, positions, names, the line after the frame) of the frame whose header is ``lines[pos]``."""
    header = lines[pos].split()
    try:
        n_atoms = int(header[0])
    except ValueError:
        raise StructureFileError(f"{path}:{pos + 1}: expected 'natoms [title]'; got {lines[pos].strip()!r}") from None
    pos += 1
    cell = None
    if pos < len(lines) and _box(lines[pos]) is not None:
        cell, pos = cellpar_to_cell(_box(lines[pos])), pos + 1
    if pos + n_atoms > len(lines):
        raise StructureFileError(f"{path}:{len(lines)}: unexpected end of file; the frame declares {n_atoms} atoms")
    names, positions = [], []
    for number in range(pos + 1, pos + n_atoms + 1):
        fields = lines[number - 1].split()
        try:
            xyz = [float(f.replace("D", "E").replace("d", "e")) for f in fields[2:5]]
        except ValueError:
            xyz = []
        if len(xyz) != 3 or not all(math.isfinite(v) for v in xyz):
            raise StructureFileError(f"{path}:{number}: expected 'index name x y z [type bonded...]'; "
                                     f"got {lines[number - 1].strip()!r}")
        names.append(fields[1])
        positions.append(xyz)
    return cell, np.array(positions), names, pos + n_atoms


def _box(line):
    """The six numbers of a box line, else None (an atom row starts with an integer index and a name)."""
    fields = line.split()
    try:
        values = [float(f) for f in fields]
    except ValueError:
        return None
    return values if len(values) == 6 else None


def _key_file_cell(path):
    """The cell of a Tinker keyword file's A-AXIS ... GAMMA lines (missing axes as A-AXIS, angles 90), or None."""
    if not path.is_file():
        return None
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if fields and fields[0].upper() in KEY_CELL:
            try:
                values[fields[0].upper()] = float(fields[1])
            except (IndexError, ValueError):
                raise StructureFileError(f"{path}:{number}: {fields[0]} needs a number; got {line.strip()!r}") from None
    if "A-AXIS" not in values:
        return None
    a = values["A-AXIS"]
    return cellpar_to_cell([a, values.get("B-AXIS", a), values.get("C-AXIS", a), values.get("ALPHA", 90.0),
                            values.get("BETA", 90.0), values.get("GAMMA", 90.0)])
