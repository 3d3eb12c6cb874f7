"""ATAT structure files (``str.out``), which ASE does not read.

Layout (blank lines skipped): the coordinate system, either one line ``a b c alpha beta gamma`` (Å, degrees)
or three lines of its vectors (rows, Å); three lines of lattice vectors in that system; then one line
``x y z label`` per atom, coordinates in that system.  Cartesian = coordinates @ system.  The file holds
geometry only (ATAT keeps energies in a separate file), periodic in 3D.
"""
from __future__ import annotations

import math

import numpy as np
from ase.geometry import cellpar_to_cell

from aenet_core.io.common import StructureFileError
from aenet_core.structure import Structure


def read_atat(path) -> list[Structure]:
    """The one structure of an ATAT ``str.out`` file; malformed lines raise StructureFileError naming them."""
    with open(path, encoding="utf-8") as handle:
        rows = [(n, line.split()) for n, line in enumerate(handle, start=1) if line.strip()]
    if len(rows) < 5:
        raise StructureFileError(f"{path}:{rows[-1][0] if rows else 1}: an ATAT structure needs a coordinate "
                                 f"system, 3 lattice vectors and at least one atom; the file ends early")
    first = _numbers(path, *rows[0], 0, "a coordinate system: 'a b c alpha beta gamma' or 3 vectors")
    if len(first) == 6:
        system, rows = cellpar_to_cell(first), rows[1:]
    elif len(first) == 3:
        system = np.array([_numbers(path, n, fields, 3, "a coordinate-system vector") for n, fields in rows[:3]])
        rows = rows[3:]
    else:
        raise StructureFileError(f"{path}:{rows[0][0]}: expected 'a b c alpha beta gamma' or a vector of 3 "
                                 f"numbers; got {len(first)} numbers")
    lattice = np.array([_numbers(path, n, fields, 3, "a lattice vector") for n, fields in rows[:3]])
    atoms = rows[3:]
    if not atoms:
        raise StructureFileError(f"{path}:{rows[-1][0]}: no 'x y z label' atom line follows the lattice vectors")
    coordinates = np.array([_numbers(path, n, fields[:3], 3, "x y z of 'x y z label'") for n, fields in atoms])
    for n, fields in atoms:
        if len(fields) != 4:
            raise StructureFileError(f"{path}:{n}: expected 'x y z label'; got {' '.join(fields)!r}")
    return [Structure(coordinates @ system, [fields[3] for _, fields in atoms], cell=lattice @ system,
                      name=str(path))]


def _numbers(path, number, fields, count, expected):
    """The floats of ``fields`` (``count`` of them, or any number when 0)."""
    try:
        values = [float(f) for f in fields]
    except ValueError:
        raise StructureFileError(f"{path}:{number}: expected {expected}; got {' '.join(fields)!r}") from None
    if (count and len(values) != count) or not all(math.isfinite(v) for v in values):
        raise StructureFileError(f"{path}:{number}: expected {expected} (finite numbers); got {' '.join(fields)!r}")
    return values
