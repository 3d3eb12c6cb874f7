"""Formats read and written through ASE (extxyz, VASP OUTCAR/POSCAR/vasprun.xml, cif, ...)."""
from __future__ import annotations

import ase.io
from ase import Atoms

from aenet_core.io.common import StructureFileError, as_list, atomic_write
from aenet_core.structure import Structure


def read_ase(path, index=":", format=None) -> list[Structure]:
    """Read frames with ``ase.io.read``; ASE and validation errors become StructureFileError."""
    try:
        images = ase.io.read(path, index=index, format=format)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # ASE raises many types for malformed files
        raise StructureFileError(f"{path}: ASE could not read it as {format or 'an auto-detected format'}: "
                                 f"{type(exc).__name__}: {exc}") from exc
    images = [images] if isinstance(images, Atoms) else list(images)
    structures = []
    for i, atoms in enumerate(images):
        default = str(path) if len(images) == 1 else f"{path}#frame={i}"
        name = str(atoms.info["name"]) if "name" in atoms.info else default
        try:
            structures.append(Structure.from_ase(atoms, name=name))
        except ValueError as exc:
            raise StructureFileError(f"{path} (frame {i}): {exc}") from exc
    return structures


def write_extxyz(path, structures) -> None:
    """Write extended XYZ atomically via ``ase.io.write``.

    ASE prints per-atom columns (positions, forces) with 8 decimals; energy, cell
    and pbc are written at full precision.
    """
    images = [structure.to_ase() for structure in as_list(structures)]
    with atomic_write(path) as handle:
        ase.io.write(handle, images, format="extxyz")
