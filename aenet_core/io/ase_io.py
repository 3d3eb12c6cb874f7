"""Formats read and written through ASE (extxyz, VASP OUTCAR/POSCAR/vasprun.xml, cif, ...)."""
from __future__ import annotations

import itertools
from typing import Iterator

import ase.io
import numpy as np
from ase import Atoms

from aenet_core.files import atomic_write
from aenet_core.io.common import StructureFileError, as_list
from aenet_core.structure import LABELS_ARRAY, Structure, elements_of


def iter_ase(path, index=":", format=None) -> Iterator[Structure]:
    """The frames of ``path``, one at a time (``ase.io.iread``: memory does not grow with the frames of a file);
    ASE and validation errors become StructureFileError.

    A frame is read one ahead: a file of one frame names its structure after the file, else ``path#frame=i``.
    """
    frames = _ase_frames(path, index, format)
    ahead = list(itertools.islice(frames, 2))
    single = len(ahead) == 1
    for i, atoms in enumerate(itertools.chain(ahead, frames)):
        name = str(atoms.info["name"]) if "name" in atoms.info else str(path) if single else f"{path}#frame={i}"
        try:
            structure = Structure.from_ase(atoms, name=name)
        except ValueError as exc:
            raise StructureFileError(f"{path} (frame {i}): {exc}") from exc
        yield structure


def _ase_frames(path, index, format) -> Iterator[Atoms]:
    """``ase.io.iread``, its errors (not those of opening the file) as StructureFileError naming file and frame."""
    images = ase.io.iread(path, index=index, format=format)
    for frame in itertools.count():
        try:
            atoms = next(images)
        except StopIteration:
            return
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise
        except Exception as exc:  # ASE raises many types for malformed files
            where = f"{path} (frame {frame})" if frame else str(path)
            raise StructureFileError(f"{where}: ASE could not read it as {format or 'an auto-detected format'}: "
                                     f"{type(exc).__name__}: {exc}") from exc
        yield atoms


def write_extxyz(path, structures) -> None:
    """Write extended XYZ atomically, every number at full (round-trip) precision.

    ASE reads the result back (energy, forces and stress as calculator results,
    the name in ``info['name']``).  Species labels that are not elements ('Fe1') write their element
    in the species column and the label in a ``species_labels`` column.
    """
    with atomic_write(path) as handle:
        for structure in as_list(structures):
            handle.write(_extxyz_frame(structure))


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _extxyz_frame(structure: Structure) -> str:
    elements = elements_of(structure.species, "extended XYZ (its species column holds elements)")
    labelled = elements != structure.species  # the labels go into a column of their own, which from_ase reads
    properties = "species:S:1:pos:R:3" + (":forces:R:3" if structure.forces is not None else "")
    properties += f":{LABELS_ARRAY}:S:1" if labelled else ""
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
    lines = [f"{element} " + " ".join(map(repr, row)) + (f" {label}" if labelled else "")
             for element, label, row in zip(elements, structure.species, rows)]
    return f"{structure.n_atoms}\n" + " ".join(info) + "\n" + "\n".join(lines) + "\n"
