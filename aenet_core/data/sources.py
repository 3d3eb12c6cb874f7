"""From what a user passes (Structures, ase.Atoms, file paths, globs, multi-frame files) to entries with
stable identifiers, and the one filter every dataset applies.

``iter_entries`` reads lazily, one frame at a time (``aenet_core.io.iter_structures``).
An entry read from a file is identified as ``path#frame=N`` (N counts the file's
frames from 0, whatever the filter later drops); an in-memory Structure or
ase.Atoms by its name, or ``structure_NNNNNN`` after its position in the input.  A source
collection or record (``aenet_core.data.records``) gives entries like a file's,
identified by its display name (else its id) and source kind.
"""
from __future__ import annotations

import glob
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from aenet_core.data.limits import PlausibilityLimits
from aenet_core.data.plausibility import Review, check_geometry, check_labels
from aenet_core.data.records import (SourceCollection, SourceRecord, collection_stamps, file_stamp, read_source,
                                     record_stamp)
from aenet_core.io import iter_structures
from aenet_core.structure import Structure, referenced_energy_per_atom, structure_sha256

CHECK_ATOMS = 4096  # atoms per batched closest-distance search of the geometry checks

GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class Entry:
    """One structure from the input, with where it came from."""

    structure: Structure
    source_id: str  # the file path, or "sources[i]" for an in-memory item
    display_name: str  # the file path, or the structure's name (structure_NNNNNN without one)
    frame: int  # frame index within its file (0 for an in-memory item)
    from_file: bool  # read from a file or source record (identified with its frame)
    source_kind: str = "file"  # "file", "structure" (in memory) or a SourceRecord's

    @property
    def identifier(self) -> str:
        return f"{self.display_name}#frame={self.frame}" if self.from_file else self.display_name

    @property
    def where(self) -> str:
        """How error messages name the entry."""
        return f"{self.source_id} (frame {self.frame})" if self.from_file else self.identifier


def _is_path(item) -> bool:
    return isinstance(item, (str, Path))


def _in_memory(item) -> list | None:
    """The Structures an in-memory input item stands for (ase.Atoms converted, every frame of aenet-python's
    AtomicStructure, recognised by its ``coords``/``types``/``avec``), or None."""
    if isinstance(item, Structure):
        return [item]
    if hasattr(item, "get_chemical_symbols"):
        return [Structure.from_ase(item)]
    if all(hasattr(item, a) for a in ("coords", "types", "avec")):
        return [Structure.from_AtomicStructure(item, frame) for frame in range(len(item.coords))]
    return None


def as_input_list(inputs) -> list:
    """One input item, or a list of them."""
    if inputs is None:
        return []
    if _is_path(inputs) or isinstance(inputs, (Structure, SourceCollection, SourceRecord)) or \
            hasattr(inputs, "get_chemical_symbols"):
        return [inputs]
    return list(inputs)


def iter_entries(inputs, name: str = "structures", source_errors: bool = False) -> Iterator[Entry]:
    """Every frame of every input, lazily; ``name`` is what error messages call the input list.  With
    ``source_errors`` (a database build), a file or record that cannot be read raises ``SourceLoadError``."""
    for index, item in enumerate(as_input_list(inputs)):
        if _is_path(item):
            for path in map(str, expand_path(item)):  # one string per file, shared by its entries
                frames = read_source(path, lambda file=path: iter_structures(file), source_errors)
                for frame, structure in enumerate(frames):
                    yield Entry(structure, path, path, frame, True)
            continue
        if isinstance(item, (SourceCollection, SourceRecord)):
            for record in item.iter_records() if isinstance(item, SourceCollection) else [item]:
                yield from _record_entries(record, source_errors)
            continue
        frames = _in_memory(item)
        if frames is None:
            raise ValueError(f"{name}[{index}] must be a Structure, ase.Atoms, an AtomicStructure, a file path, a "
                             f"SourceRecord or a source collection; got {type(item).__name__}")
        for frame, structure in enumerate(frames):
            display = structure.name or f"structure_{index:06d}"
            if len(frames) > 1:
                display = f"{display}#frame={frame}"
            yield Entry(structure, f"{name}[{index}]", display, frame, False, "structure")


def convert_to_structures(inputs) -> list:
    """aenet-python's ``convert_to_structures``: the Structures of every input item (Structures, ase.Atoms,
    AtomicStructures, files, globs), every frame of a file named by its path where it has no name."""
    return [entry.structure if entry.structure.name or not entry.from_file
            else replace(entry.structure, name=entry.source_id) for entry in iter_entries(inputs)]


def _record_entries(record: SourceRecord, source_errors: bool) -> Iterator[Entry]:
    for frame, structure in enumerate(read_source(record.source_id, record.load_structures, source_errors)):
        yield Entry(structure, record.source_id, record.display_name or record.source_id, frame, True,
                    record.source_kind)



def input_stamps(inputs) -> list:
    """What identifies the inputs' content without reading any file: each file's path, size and
    modification time (globs expanded), or a hash of an in-memory structure."""
    stamps = []
    for item in as_input_list(inputs):
        if _is_path(item):
            stamps += [file_stamp(file) for file in expand_path(item)]
        elif isinstance(item, SourceCollection):
            stamps += collection_stamps(item)
        elif isinstance(item, SourceRecord):
            stamps.append(record_stamp(item))
        else:
            frames = _in_memory(item)  # other items are refused when the entries are read
            hashes = [structure_sha256(f) for f in frames or []]
            stamps.append(type(item).__name__ if frames is None else hashes[0] if len(hashes) == 1 else hashes)
    return stamps


def expand_path(item) -> list:
    """``item`` itself, or the sorted files a glob pattern matches (a pattern matching nothing is an error)."""
    text = str(item)
    if Path(text).exists() or not GLOB_CHARACTERS.intersection(text):
        return [item]
    matches = sorted(glob.glob(text))
    if not matches:
        raise FileNotFoundError(f"{text}: the pattern matches no file")
    return matches


def atom_chunks(entries, max_atoms: int):
    """Lists of consecutive entries of about ``max_atoms`` atoms (one more entry ends a list past it)."""
    chunk, atoms = [], 0
    for entry in entries:
        chunk.append(entry)
        atoms += entry.structure.n_atoms
        if atoms >= max_atoms:
            yield chunk
            chunk, atoms = [], 0
    if chunk:
        yield chunk


class StructureFilter:
    """The checks and filters every dataset applies to its entries, in memory and in a database alike.

    Refused (``ValueError`` naming the entry): a species the descriptor does not
    know, a structure without an energy, labels beyond ``limits`` (a
    ``PlausibilityLimits``; default: its defaults), and, in
    ``check_geometry`` before featurizing, an implausible density or atoms too
    close.  Dropped (counted in ``n_filtered``): a referenced energy per atom above
    ``max_energy`` (eV/atom; atomic reference energies subtracted), or a force
    component larger in magnitude than ``max_forces`` (eV/Å).  ``apply`` warns
    once about duplicates, implausible referenced energies and implausible stresses among the kept entries.
    """

    def __init__(self, species, atomic_energies=None, max_energy=None, max_forces=None, limits=None):
        """``species`` None accepts any (a database built without a descriptor)."""
        for field, value in (("max_energy", max_energy), ("max_forces", max_forces)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{field} must be a finite number or None; got {value!r}")
        if max_forces is not None and not max_forces > 0:
            raise ValueError(f"max_forces must be positive or None; got {max_forces!r}")
        self.species = None if species is None else list(species)
        self.atomic_energies = dict(atomic_energies or {})
        self.max_energy = None if max_energy is None else float(max_energy)
        self.max_forces = None if max_forces is None else float(max_forces)
        self.limits = limits or PlausibilityLimits()
        self.n_filtered = 0

    def settings(self) -> dict:
        """What the filter drops, as recorded with the data it made."""
        return {"max_energy": self.max_energy, "max_forces": self.max_forces}

    def accepts(self, entry: Entry) -> bool:
        s = entry.structure
        unknown = sorted(set(s.species) - set(self.species)) if self.species is not None else []
        if unknown:
            raise ValueError(f"{entry.where}: species {unknown} are not in the descriptor species {self.species}")
        if s.energy is None:
            raise ValueError(f"{entry.where}: no energy; training needs a total energy for every structure")
        check_labels(s, entry.where, self.limits)
        if self.max_energy is not None and referenced_energy_per_atom(s.energy, s.species,
                                                                      self.atomic_energies) > self.max_energy:
            return False
        return self.max_forces is None or not s.has_forces() or np.abs(s.forces).max() <= self.max_forces

    def check_geometry(self, entries, cutoff: float) -> None:
        """Refuse entries too dense for ``cutoff`` or with atoms too close, before featurizing."""
        for chunk in atom_chunks(entries, CHECK_ATOMS):
            check_geometry(chunk, cutoff, self.limits)

    def warn_about(self, entries) -> None:
        """Warn once about duplicates, implausible referenced energies and implausible stresses among (kept) ``entries``."""
        review = Review(self.atomic_energies, self.limits)
        for entry in entries:
            review.note(entry)
        review.warn()

    def apply(self, entries) -> Iterator[Entry]:
        """The entries that pass, lazily; the others are counted.  At the end it warns as ``warn_about``."""
        review = Review(self.atomic_energies, self.limits)
        for entry in entries:
            if self.accepts(entry):
                review.note(entry)
                yield entry
            else:
                self.n_filtered += 1
        review.warn()
