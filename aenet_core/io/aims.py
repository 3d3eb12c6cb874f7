"""FHI-aims standard output of single points and relaxations, older versions (2012-) included, which ASE's
``aims-output`` reader cannot read.

The lines read (the rest of the file is skipped):

* ``Input geometry:``, then ``| Unit cell:`` with three ``| ax ay az`` rows (or ``| No unit cell requested.``),
  ``| Atomic structure:``, a header row and one ``|    i: Species <label> x y z`` row per atom (Å);
* ``Self-consistency cycle converged.``, after which ``| Total energy corrected : <E> eV`` (the T -> 0
  extrapolated energy) and ``Total atomic forces ... [eV/Ang]:`` with one ``|  i  fx fy fz`` row per atom
  belong to the converged geometry;
* ``Updated atomic structure:``, the next geometry of a relaxation: ``lattice_vector`` rows, then one
  ``atom x y z <label>`` (or ``atom_frac``) row per atom.

One frame per converged self-consistency cycle: the geometry it was computed for, its energy and forces.
"""
from __future__ import annotations

import math
import re

import numpy as np

from aenet_core.io.common import StructureFileError
from aenet_core.structure import Structure

MAGIC = "Invoking FHI-aims"
_SNIFF_LINES = 64
_MD = re.compile(r"Molecular dynamics time step|Atomic structure \(and velocities\)")


def is_aims_output(path) -> bool:
    """Whether ``path`` starts like FHI-aims standard output (its first lines say so)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return any(MAGIC in line for _, line in zip(range(_SNIFF_LINES), handle))
    except (IsADirectoryError, FileNotFoundError, PermissionError):
        return False


def is_molecular_dynamics(path) -> bool:
    """Whether an FHI-aims output is of a molecular-dynamics run (this parser reads relaxations only)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return any(_MD.search(line) for line in handle)


def read_aims_output(path) -> list[Structure]:
    """Every converged geometry of an FHI-aims output file, with energy (eV) and forces (eV/Å) where printed;
    malformed lines raise StructureFileError naming file and line."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    return _AimsParser(str(path), lines).frames()


class _AimsParser:
    def __init__(self, path, lines):
        self.path, self.lines, self.pos = path, lines, 0
        self.cell = self.species = self.positions = None
        self.energy = self.forces = None
        self.converged = False
        self.structures = []

    def error(self, message, number=None):
        return StructureFileError(f"{self.path}:{self.pos if number is None else number}: {message}")

    def next_line(self, expected):
        if self.pos >= len(self.lines):
            raise self.error(f"unexpected end of file; expected {expected}", len(self.lines))
        self.pos += 1
        return self.lines[self.pos - 1]

    def numbers(self, fields, expected):
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise self.error(f"expected {expected}; got {' '.join(fields)!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise self.error(f"{expected} must be finite; got {' '.join(fields)!r}")
        return values

    def frames(self) -> list[Structure]:
        while self.pos < len(self.lines):
            line = self.next_line("more output")
            if "Input geometry:" in line:
                self.input_geometry()
            elif "Self-consistency cycle converged." in line:
                if self.species is None:
                    raise self.error("a converged cycle before any 'Input geometry:' block: is this FHI-aims output?")
                self.converged = True
            elif self.converged and re.match(r"\s*\| Total energy corrected\s*:", line):
                self.energy = self.numbers(line.split(":", 1)[1].split()[:1], "an energy in eV")[0]
            elif self.converged and line.lstrip().startswith("Total atomic forces"):
                self.forces = [self.numbers(self.next_line("a force row").split()[-3:], "fx fy fz")
                               for _ in self.species]
            elif line.lstrip().startswith("Updated atomic structure:"):
                self.close_frame()
                self.updated_geometry()
        self.close_frame()
        if self.species is None:
            raise self.error("no 'Input geometry:' block: is this FHI-aims output?", 1)
        if len(self.structures) == 1:  # named as ASE-read files are: a single frame after its file
            self.structures[0].name = self.path
        return self.structures

    def close_frame(self):
        """Record the current geometry's converged result, if any."""
        if not self.converged:
            return
        if self.energy is None:
            raise self.error("a converged self-consistency cycle printed no '| Total energy corrected' line")
        index = len(self.structures)
        self.structures.append(Structure(
            self.positions, self.species, energy=self.energy, forces=self.forces, cell=self.cell,
            name=f"{self.path}#frame={index}"))
        self.energy = self.forces = None
        self.converged = False

    def input_geometry(self):
        line = self.next_line("'| Unit cell:' or '| No unit cell requested.'")
        if "Unit cell:" in line:
            self.cell = [self.numbers(self.next_line("a lattice vector").split()[-3:], "a lattice vector (Å)")
                         for _ in range(3)]
        elif "No unit cell" not in line:
            raise self.error(f"expected '| Unit cell:' or '| No unit cell requested.'; got {line.strip()!r}")
        line = self.next_line("'| Atomic structure:'")
        if "Atomic structure:" not in line:
            raise self.error(f"expected '| Atomic structure:'; got {line.strip()!r}")
        self.next_line("the atom table header")
        species, positions = [], []
        while self.pos < len(self.lines) and re.match(r"\s*\|\s*\d+:\s*Species\s", self.lines[self.pos]):
            fields = self.next_line("an atom row").split()
            species.append(fields[3])
            positions.append(self.numbers(fields[-3:], "x y z (Å)"))
        if not species:
            raise self.error("'| Atomic structure:' lists no '|    i: Species <label> x y z' row", self.pos + 1)
        self.species, self.positions = species, positions

    def updated_geometry(self):
        """The next relaxation geometry: its first ``len(species)`` atom rows (a fractional-coordinates
        repetition follows them in newer versions)."""
        if self.species is None:
            raise self.error("'Updated atomic structure:' before any 'Input geometry:'")
        positions, vectors = [], []
        while len(positions) < len(self.species):
            fields = self.next_line(f"{len(self.species)} 'atom' rows of the updated structure").split()
            if fields[:1] == ["lattice_vector"]:
                vectors.append(self.numbers(fields[1:4], "a lattice vector (Å)"))
            elif fields[:1] == ["atom"]:
                positions.append(self.numbers(fields[1:4], "x y z (Å)"))
            elif fields[:1] == ["atom_frac"]:
                if not (vectors or self.cell):
                    raise self.error("'atom_frac' row of a structure without lattice vectors")
                positions.append(np.asarray(self.numbers(fields[1:4], "fractional x y z")) @ (vectors or self.cell))
        self.cell, self.positions = vectors or self.cell, positions
