"""Formats read and written through ASE (extxyz, VASP OUTCAR/POSCAR/vasprun.xml, cif, ...)."""
from __future__ import annotations

import ase.io
import numpy as np
from ase import Atoms

from aenet_core.files import atomic_write
from aenet_core.io.common import StructureFileError, as_list
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
    """Write extended XYZ atomically, every number at full (round-trip) precision.

    ASE reads the result back (energy, forces and stress as calculator results,
    the name in ``info['name']``).
    """
    with atomic_write(path) as handle:
        for structure in as_list(structures):
            handle.write(_extxyz_frame(structure))


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _extxyz_frame(structure: Structure) -> str:
    properties = "species:S:1:pos:R:3" + (":forces:R:3" if structure.forces is not None else "")
    info = []
    if structure.cell is not None:
        info.append('Lattice="' + " ".join(map(repr, structure.cell.ravel().tolist())) + '"')
    info.append(f"Properties={properties}")
    if structure.energy is not None:
        info.append(f"energy={structure.energy!r}")
    if structure.stress is not None:
        info.append('stress="' + " ".join(map(repr, structure.stress.ravel().tolist())) + '"')
    pbc = structure.pbc if structure.pbc is not None else [False] * 3
    info.append('pbc="' + " ".join("T" if p else "F" for p in pbc) + '"')
    if structure.name is not None:
        info.append(f"name={_quoted(structure.name)}")
    if structure.weight != 1.0:
        info.append(f"weight={structure.weight!r}")
    if structure.config_type is not None:
        info.append(f"config_type={_quoted(structure.config_type)}")
    columns = [structure.positions] + ([structure.forces] if structure.forces is not None else [])
    rows = np.concatenate(columns, axis=1).tolist()
    lines = [f"{symbol} " + " ".join(map(repr, row)) for symbol, row in zip(structure.species, rows)]
    return f"{structure.n_atoms}\n" + " ".join(info) + "\n" + "\n".join(lines) + "\n"
