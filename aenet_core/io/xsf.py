"""aenet XSF files: a small hand-written line parser (so errors name lines) and a writer.

A file holds one frame (``CRYSTAL``/``SLAB``/``POLYMER``/``MOLECULE`` + ``PRIMVEC`` +
``PRIMCOORD``, or ``ATOMS`` for an isolated structure) or several after
``ANIMSTEPS n``.  Energies come from ``# total energy = <E> eV`` comments: a comment
belongs to the first frame whose coordinate block starts after it (the last frame
when none does).  Coordinate lines are ``label-or-Z x y z [fx fy fz]``: a species label (an element
symbol, or a label such as ``Fe1`` as aenet's type names allow) or an atomic number.
"""
from __future__ import annotations

import bisect
import math
import re

import numpy as np
from ase.data import chemical_symbols

from aenet_core.files import atomic_write
from aenet_core.io.common import StructureFileError, as_list
from aenet_core.structure import Structure

DIMENSIONS = {
    "CRYSTAL": (True, True, True),
    "SLAB": (True, True, False),
    "POLYMER": (True, False, False),
    "MOLECULE": (False, False, False),
}
KEYWORDS = {"ANIMSTEPS", "PRIMVEC", "CONVVEC", "PRIMCOORD", "ATOMS", *DIMENSIONS}
ENERGY_COMMENT = re.compile(r"total\s+energy\s*=\s*(\S+)", re.IGNORECASE)
ATOM_COLUMNS = ("symbol", "x", "y", "z", "fx", "fy", "fz")


def read_xsf(path) -> list[Structure]:
    """Read an aenet XSF file; one Structure per frame, named after the file (and frame)."""
    with open(path, "rb") as handle:
        return parse_xsf(handle.read(), path)


def parse_xsf(data: bytes, path) -> list[Structure]:
    """The frames of XSF ``data`` read from ``path`` (which names them and the errors)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise StructureFileError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
                                 "XSF is a text format: is this a binary file, or text in another encoding "
                                 "(convert Latin-1 with iconv -f latin1 -t utf-8)?") from None
    return _XsfParser(str(path), text).structures()


class _XsfParser:
    """Cursor over the significant (non-blank, non-comment) lines of one file."""

    def __init__(self, path, text):
        self.path = path
        self.lines = []  # (line number, fields)
        self.energies = []  # (line number, energy)
        self.pos = 0
        raw_lines = text.splitlines()
        self.last_line = max(len(raw_lines), 1)
        for number, raw in enumerate(raw_lines, start=1):
            stripped = raw.strip()
            if stripped.startswith("#"):
                self.energy_comment(number, stripped)
            elif stripped:
                self.lines.append((number, stripped.split()))

    def error(self, number, message):
        return StructureFileError(f"{self.path}:{number}: {message}")

    # -- line access ------------------------------------------------------

    def at_data_line(self):
        """True when the next significant line exists and is not a keyword."""
        return self.pos < len(self.lines) and self.lines[self.pos][1][0].upper() not in KEYWORDS

    def next_line(self, expected):
        if self.pos >= len(self.lines):
            raise self.error(self.last_line, f"unexpected end of file; expected {expected}")
        self.pos += 1
        return self.lines[self.pos - 1]

    def next_data_line(self, expected):
        number, fields = self.next_line(expected)
        if fields[0].upper() in KEYWORDS:
            raise self.error(number, f"expected {expected}; got keyword {fields[0]}")
        return number, fields

    # -- fields -----------------------------------------------------------

    def energy_comment(self, number, comment):
        match = ENERGY_COMMENT.search(comment)
        if match is None:
            return
        token = match.group(1)
        token = token[:-2] if token.lower().endswith("ev") and len(token) > 2 else token
        try:
            energy = float(token)
        except ValueError:
            raise self.error(number, f"total energy must be a number; got {token!r}") from None
        if not math.isfinite(energy):
            raise self.error(number, f"total energy must be finite; got {token!r}")
        self.energies.append((number, energy))

    def number(self, number, fields, column, label):
        """Float in 0-based ``column``; errors quote the 1-based column and its label."""
        try:
            value = float(fields[column])
        except ValueError:
            raise self.error(number, f"column {column + 1} ({label}) must be a number; got {fields[column]!r}") from None
        if not math.isfinite(value):
            raise self.error(number, f"column {column + 1} ({label}) must be finite; got {fields[column]!r}")
        return value

    def count(self, number, token, label):
        try:
            value = int(token)
        except ValueError:
            raise self.error(number, f"{label} must be a positive integer; got {token!r}") from None
        if value < 1:
            raise self.error(number, f"{label} must be a positive integer; got {value}")
        return value

    def symbol(self, number, token):
        """The element of an atomic number, else the species label as written (aenet's type names: 'Fe1')."""
        if not token.isdigit():
            return token
        if 1 <= int(token) < len(chemical_symbols):
            return chemical_symbols[int(token)]
        raise self.error(number, f"column 1 (symbol): atomic number {token} is out of range "
                                 f"1-{len(chemical_symbols) - 1}")

    # -- blocks -----------------------------------------------------------

    def lattice(self, keyword_line):
        rows = []
        for k in range(3):
            expected = f"lattice vector {k + 1} of 3 for the block on line {keyword_line}"
            number, fields = self.next_data_line(expected)
            if len(fields) != 3:
                raise self.error(number, f"{expected} must have 3 numbers; got {len(fields)} fields")
            rows.append([self.number(number, fields, c, f"{'abc'[k]}_{'xyz'[c]}") for c in range(3)])
        return np.array(rows)

    def atom_lines(self):
        """Parse coordinate lines up to the next keyword or the end of the file."""
        atoms = []
        while self.at_data_line():
            number, fields = self.next_line("a coordinate line")
            if len(fields) not in (4, 7):
                raise self.error(number, "expected 'symbol x y z' or 'symbol x y z fx fy fz' "
                                         f"(4 or 7 fields); got {len(fields)} fields")
            values = [self.number(number, fields, c, ATOM_COLUMNS[c]) for c in range(1, len(fields))]
            atoms.append((number, self.symbol(number, fields[0]), values[:3], values[3:]))
        with_forces = [bool(forces) for _, _, _, forces in atoms]
        if any(with_forces) and not all(with_forces):
            bad = atoms[with_forces.index(not with_forces[0])][0]
            raise self.error(bad, f"forces (columns 5-7) must be given for all atoms of a frame or none; "
                                  f"this line differs from the first atom line {atoms[0][0]}")
        return atoms

    def primcoord(self, keyword_line):
        number, fields = self.next_data_line(f"the atom count line 'N 1' after PRIMCOORD on line {keyword_line}")
        n_atoms = self.count(number, fields[0], "PRIMCOORD atom count (first field of 'N 1')")
        atoms = self.atom_lines()
        if len(atoms) < n_atoms and self.pos == len(self.lines):
            raise self.error(self.last_line, f"unexpected end of file; the atom count on line {number} is "
                                             f"{n_atoms} but only {len(atoms)} coordinate lines follow")
        if len(atoms) != n_atoms:
            raise self.error(number, f"the atom count is {n_atoms} but {len(atoms)} coordinate lines follow")
        return atoms

    # -- whole file -------------------------------------------------------

    def frames(self):
        """List of (coordinate block line, atoms, cell, pbc), one per frame."""
        frames, animsteps, pbc, cell = [], None, None, None
        while self.pos < len(self.lines):
            number, fields = self.next_line("a keyword")
            keyword = fields[0].upper()
            if keyword == "ANIMSTEPS" and self.pos == 1:
                if len(fields) != 2:
                    raise self.error(number, "expected 'ANIMSTEPS n'")
                animsteps = (number, self.count(number, fields[1], "ANIMSTEPS frame count"))
            elif keyword in DIMENSIONS and pbc is None and not frames:
                pbc = DIMENSIONS[keyword]
            elif keyword == "PRIMVEC":
                cell = self.lattice(number)
            elif keyword == "CONVVEC":
                self.lattice(number)  # conventional cell: checked, not used
            elif keyword == "PRIMCOORD":
                if pbc is None or cell is None:
                    raise self.error(number, "PRIMCOORD needs CRYSTAL, SLAB, POLYMER or MOLECULE "
                                             "and a PRIMVEC block before it")
                frames.append((number, self.primcoord(number), cell, pbc))
            elif keyword == "ATOMS":
                atoms = self.atom_lines()
                if not atoms:
                    raise self.error(number, "ATOMS block has no coordinate lines")
                frames.append((number, atoms, None, None))
            else:
                raise self.error(number, f"unexpected {fields[0]!r} here; expected one of "
                                         "ANIMSTEPS (first), CRYSTAL/SLAB/POLYMER/MOLECULE, PRIMVEC, PRIMCOORD, ATOMS")
            if len(frames) > 1 and animsteps is None:
                raise self.error(number, "a second coordinate block needs 'ANIMSTEPS n' at the top of the file")
        if not frames:
            raise self.error(self.last_line, "no PRIMCOORD or ATOMS block found")
        if animsteps is not None and animsteps[1] != len(frames):
            raise self.error(animsteps[0], f"ANIMSTEPS declares {animsteps[1]} frames but the file has {len(frames)}")
        return frames

    def frame_energies(self, starts):
        energies = [None] * len(starts)
        for number, energy in self.energies:
            i = min(bisect.bisect_left(starts, number), len(starts) - 1)
            if energies[i] is not None:
                raise self.error(number, f"a second total energy comment for frame {i}")
            energies[i] = energy
        return energies

    def structures(self):
        frames = self.frames()
        energies = self.frame_energies([line for line, _, _, _ in frames])
        result = []
        for i, ((_, atoms, cell, pbc), energy) in enumerate(zip(frames, energies)):
            name = self.path if len(frames) == 1 else f"{self.path}#frame={i}"
            _, species, positions, forces = zip(*atoms)
            try:
                result.append(Structure(positions=positions, species=species, energy=energy,
                                        forces=forces if forces[0] else None, cell=cell, pbc=pbc, name=name))
            except ValueError as exc:
                raise StructureFileError(f"{self.path} (frame {i}): {exc}") from exc
        return result


# -- writer ---------------------------------------------------------------


def write_xsf(path, structures) -> None:
    """Write one structure, or several as an ANIMSTEPS file, atomically."""
    structures = as_list(structures)
    if not structures:
        raise ValueError("write_xsf needs at least one structure")
    dimension = _dimension(structures[0], 0)
    header = [dimension] if dimension else []
    with atomic_write(path) as handle:
        if len(structures) == 1:
            handle.write("\n".join(_energy_lines(structures[0]) + [""] + header + _frame_lines(structures[0], "")))
            handle.write("\n")
            return
        handle.write("\n".join([f"ANIMSTEPS {len(structures)}"] + header) + "\n")
        for i, structure in enumerate(structures):
            frame_dimension = _dimension(structure, i)
            if frame_dimension != dimension:
                raise ValueError(f"write_xsf: frame {i} has a different periodicity from frame 0 "
                                 f"({frame_dimension or 'isolated'} vs {dimension or 'isolated'})")
            handle.write("\n".join([""] + _energy_lines(structure) + _frame_lines(structure, f" {i + 1}")) + "\n")


def _dimension(structure, i):
    """XSF periodicity keyword for a structure (None for no cell)."""
    if structure.cell is None:
        return None
    pbc = tuple(bool(p) for p in structure.pbc)
    for keyword, flags in DIMENSIONS.items():
        if flags == pbc:
            return keyword
    raise ValueError(f"write_xsf: frame {i} has pbc={pbc}, which XSF cannot represent "
                     "(periodic directions must come first)")


def _num(value):
    return repr(float(value))  # shortest text that reads back bitwise


def _energy_lines(structure):
    return [] if structure.energy is None else [f"# total energy = {_num(structure.energy)} eV"]


def _frame_lines(structure, suffix):
    """Cell and coordinate block; ``suffix`` is the ANIMSTEPS frame number (" 3") or ""."""
    if structure.cell is None:
        lines = ["ATOMS" + suffix]
    else:
        lines = ["PRIMVEC" + suffix]
        lines += ["  " + " ".join(f"{_num(v):>20}" for v in row) for row in structure.cell]
        lines += ["PRIMCOORD" + suffix, f"{structure.n_atoms} 1"]
    for i, symbol in enumerate(structure.species):
        values = list(structure.positions[i]) + (list(structure.forces[i]) if structure.has_forces() else [])
        lines.append(f"{symbol:<2} " + " ".join(f"{_num(v):>20}" for v in values))
    return lines
