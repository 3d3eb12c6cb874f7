"""One species' aenet ``.nn.ascii`` file: its content, a list-directed reader and a writer (spec §9).

A file holds three sections, one after the other: the network (layer sizes,
activation codes, offsets, weights), the descriptor set-up (Chebyshev
parameters, feature statistics) and the training-set info (energy scaling,
atomic reference energies, counts).  The reader consumes the file the way
Fortran list-directed input does, so files with whole arrays on one line
(aenet-python, Fortran ``.nn.ascii`` exports) and files with a few values per
record parse alike: free-text lines are read whole, every other field takes
whitespace-separated tokens from as many lines as its count needs.  Every
count and offset is checked against the layer sizes.

The field order (``records``) and the section readers (``read_fields``) are
shared with aenet's binary ``.nn`` files (``nn_binary``): one line here is one
Fortran record there.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aenet_core.files import atomic_write

DEFAULT_PREFIX = "potential"  # file names <prefix>.<Species>.nn.ascii and <prefix>.<Species>.nn
ACTIVATION_CODES = {"linear": 0, "tanh": 1, "sigmoid": 2, "mtanh": 3, "twist": 4}  # aenet's, by name
ACTIVATION_NAMES = {code: name for name, code in ACTIVATION_CODES.items()}
N_SFPARAM = 4  # Chebyshev: radial cutoff, radial order, angular cutoff, angular order
# Fortran writes a three-digit exponent without its letter: 1.5-100 means 1.5E-100.
_BARE_EXPONENT = re.compile(r"(?<=[0-9.])([+-]\d+)$")


class NNAsciiError(ValueError):
    """A malformed or inconsistent ``.nn.ascii`` file; the message starts with the file name."""


@dataclass
class NNAsciiFile:
    """The content of one species file.

    ``weights`` holds, per layer transition, the (n_out, n_in + 1) matrix
    flattened column-major with the bias column last; ``sfparam`` is
    (nsf, 4), row j being basis function j's parameters (only row 0 is used);
    ``sf_cov`` is E[G^2], not the variance.
    """

    # network
    nnodes: list  # nodes per layer, input (nsf) to output (1)
    activations: list  # codes of layers 2..nlayers: 0 linear, 1 tanh, 2 sigmoid, 3 mtanh, 4 twist
    weights: np.ndarray
    # set-up
    description: str
    species: str
    env_species: list  # the typespin order of the descriptor
    rc_min: float
    rc_max: float
    basis: str  # the basis type as written, e.g. 'Chebyshev' (only Chebyshev is read)
    sf_types: list
    sfparam: np.ndarray
    sfenv: list
    neval: int
    sf_min: np.ndarray
    sf_max: np.ndarray
    sf_avg: np.ndarray
    sf_cov: np.ndarray
    # training-set info
    trainset_name: str
    normalized: bool
    scale: float
    shift: float
    trainset_species: list
    atomic_energies: list  # in trainset_species order
    n_atoms_total: int
    n_structures: int
    e_min: float
    e_max: float
    e_avg: float


def species_files(folder) -> dict:
    """{species: path} of one potential's files in ``folder``: its ``<prefix>.<Species>.nn.ascii`` files (as
    export writes them), else its binary ``[<prefix>.]<Species>.nn`` files (as export and Fortran ``train.x``
    write them); {} when there are neither."""
    for suffix in (".nn.ascii", ".nn"):
        files = {}
        for path in sorted(Path(folder).glob(f"*{suffix}")):
            species = path.name.removesuffix(suffix).rsplit(".", 1)[-1]
            if species in files:
                raise NNAsciiError(f"{folder}: two {suffix} files for {species}: {files[species].name}, {path.name}")
            files[species] = path
        if files:
            return files
    return {}


def weight_offsets(nnodes) -> list:
    """``iw``: where each layer's incoming weights start in W; the last entry is Wsize."""
    offsets = [0]
    for n_in, n_out in zip(nnodes, nnodes[1:]):
        offsets.append(offsets[-1] + (n_in + 1) * n_out)
    return offsets


def value_offsets(nnodes) -> list:
    """``iv``: where each layer's node values start; every layer but the last ends with a bias node."""
    offsets = [0]
    for n in nnodes[:-1]:
        offsets.append(offsets[-1] + n + 1)
    return offsets


# ----------------------------------------------------------------------------- writing


def records(c: NNAsciiFile) -> list:
    """``(field, kind, values)`` of each line of the file, in order; kind is 'int', 'float', 'text' or
    'logical'.  The field names are the readers' (and the binary format's text widths are keyed by them)."""
    iw, iv = weight_offsets(c.nnodes), value_offsets(c.nnodes)
    network = [("nlayers", "int", [len(c.nnodes)]), ("nnodes_max", "int", [max(c.nnodes)]),
               ("Wsize", "int", [iw[-1]]), ("nvalues", "int", [iv[-1] + c.nnodes[-1]]), ("nnodes", "int", c.nnodes),
               ("f_a (activation codes)", "int", c.activations), ("iw", "int", iw), ("iv", "int", iv),
               ("W", "float", c.weights)]
    setup = [("description", "text", [c.description]), ("atom type", "text", [c.species]),
             ("nenv", "int", [len(c.env_species)]), ("environment species", "text", c.env_species),
             ("Rc_min", "float", [c.rc_min]), ("Rc_max", "float", [c.rc_max]), ("basis type", "text", [c.basis]),
             ("nsf", "int", [len(c.sf_types)]), ("nsfparam", "int", [c.sfparam.shape[1]]), ("sf", "int", c.sf_types),
             ("sfparam", "float", c.sfparam.ravel()), ("sfenv", "int", c.sfenv), ("neval", "int", [c.neval]),
             ("sfval_min", "float", c.sf_min), ("sfval_max", "float", c.sf_max), ("sfval_avg", "float", c.sf_avg),
             ("sfval_cov", "float", c.sf_cov)]
    trainset = [("training set file name", "text", [c.trainset_name]), ("normalized", "logical", [c.normalized]),
                ("scale", "float", [c.scale]), ("shift", "float", [c.shift]),
                ("nTypes", "int", [len(c.trainset_species)]), ("species", "text", c.trainset_species),
                ("E_atom", "float", c.atomic_energies), ("nAtomsTot", "int", [c.n_atoms_total]),
                ("nStrucs", "int", [c.n_structures]), ("E_min E_max E_av", "float", [c.e_min, c.e_max, c.e_avg])]
    return network + setup + trainset


def write_nn_ascii(path, content: NNAsciiFile) -> None:
    """Write ``content`` to ``path`` atomically: one field per line, floats in round-trip exponent form."""
    with atomic_write(path) as handle:
        handle.write("".join(_LINE[kind](values) + "\n" for _, kind, values in records(content)))


def _ints(values) -> str:
    return " ".join(f"{int(v):17d}" for v in values)


def _floats(values) -> str:
    return " ".join(f"{float(v):24.17e}" for v in values)


_LINE = {"int": _ints, "float": _floats, "text": " ".join, "logical": lambda values: "T" if values[0] else "F"}


# ----------------------------------------------------------------------------- reading


def read_nn_ascii(path) -> NNAsciiFile:
    """Parse one species file; a truncated or inconsistent file raises ``NNAsciiError``."""
    return read_fields(_Reader(path))


def read_fields(reader) -> NNAsciiFile:
    """The three sections from ``reader`` (a ``FieldReader``), each count and offset checked."""
    network = _read_network(reader)
    setup = _read_setup(reader, n_inputs=network["nnodes"][0])
    trainset = _read_trainset(reader)
    reader.expect_end()
    return NNAsciiFile(**network, **setup, **trainset)


def _fortran_float(token: str) -> float:
    if not re.search("[eEdD]", token):
        token = _BARE_EXPONENT.sub(r"E\1", token)
    value = float(token.replace("D", "E").replace("d", "e"))
    if not math.isfinite(value):
        raise ValueError(token)
    return value


def _fortran_logical(token: str) -> bool:
    letter = token.lstrip(".")[:1].upper()
    if letter not in ("T", "F"):
        raise ValueError(token)
    return letter == "T"


def _is_int(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True


class FieldReader:
    """What the section readers ask of a file format, one field at a time.  A subclass provides error, text
    (a free-text field), word, tokens (type names), ints, floats, logical, sfenv_and_neval and expect_end."""

    section = "network"

    def check(self, field, found, expected, meaning) -> None:
        if found != expected:
            raise self.error(field, f"found {found}, expected {expected} ({meaning})")

    def one_int(self, field) -> int:
        return self.ints(field, 1)[0]

    def one_float(self, field) -> float:
        return float(self.floats(field, 1)[0])

    def count(self, field) -> int:
        value = self.one_int(field)
        if value < 1:
            raise self.error(field, f"must be at least 1; got {value}")
        return value


class _Reader(FieldReader):
    """The lines of one file, consumed field by field like Fortran list-directed records."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            self.lines = self.path.read_text().splitlines()
        except UnicodeDecodeError as err:
            raise NNAsciiError(f"{self.path}: not a text file (byte {err.start}); a binary .nn file?") from None
        self.row = 0  # lines consumed so far

    def error(self, field, message) -> NNAsciiError:
        return NNAsciiError(f"{self.path}:{max(self.row, 1)}: {self.section} section, {field}: {message}")

    def text(self, field) -> str:
        """A free-text line, read whole."""
        if self.row >= len(self.lines):
            raise self.error(field, "missing: the file ends here")
        self.row += 1
        return self.lines[self.row - 1].strip()

    def word(self, field) -> str:
        line = self.text(field)
        if len(line.split()) != 1:
            raise self.error(field, f"expected one word, got {line!r}")
        return line

    def tokens(self, field, count) -> list:
        """``count`` tokens from the following lines; the last line used must hold no more."""
        found, first_line = [], self.row + 1
        while len(found) < count:
            if self.row >= len(self.lines):
                raise self.error(field, f"expected {count} values, the file ends after {len(found)}")
            found += self.lines[self.row].split()
            self.row += 1
        if len(found) > count:
            raise self.error(field, f"expected {count} values, lines {first_line}-{self.row} hold {len(found)}")
        return found

    def _convert(self, field, tokens, convert, kind) -> list:
        values = []
        for token in tokens:
            try:
                values.append(convert(token))
            except ValueError:
                raise self.error(field, f"{token!r} is not {kind}") from None
        return values

    def ints(self, field, count) -> list:
        return self._convert(field, self.tokens(field, count), int, "an integer")

    def floats(self, field, count) -> np.ndarray:
        return np.array(self._convert(field, self.tokens(field, count), _fortran_float, "a finite number"))

    def logical(self, field) -> bool:
        return self._convert(field, self.tokens(field, 1), _fortran_logical, "a logical (T/F/True/False)")[0]

    def sfenv_and_neval(self, nenv: int, nsf: int) -> tuple:
        """The integers before the first float line: sfenv, then neval.  Fortran writes nenv * nsf sfenv
        values, aenet-python 2 * nsf."""
        values = []
        while self.row < len(self.lines):
            tokens = self.lines[self.row].split()
            if not all(_is_int(t) for t in tokens):
                break
            values += [int(t) for t in tokens]
            self.row += 1
        allowed = sorted({nenv * nsf, 2 * nsf})
        if len(values) - 1 not in allowed:
            expected = " or ".join(str(n + 1) for n in allowed)
            raise self.error("sfenv and neval", f"expected {expected} integers (sfenv, then neval) before the "
                                                f"first float line; found {len(values)}")
        return values[:-1], values[-1]

    def expect_end(self) -> None:
        rest = [i for i in range(self.row, len(self.lines)) if self.lines[i].strip()]
        if rest:
            raise NNAsciiError(f"{self.path}:{rest[0] + 1}: unexpected content after the training-set info: "
                               f"{self.lines[rest[0]][:60]!r}")


def _read_network(r: FieldReader) -> dict:
    r.section = "network"
    nlayers = r.count("nlayers")
    nnodes_max, wsize, nvalues = r.one_int("nnodes_max"), r.one_int("Wsize"), r.one_int("nvalues")
    nnodes = r.ints("nnodes", nlayers)
    if min(nnodes) < 1:
        raise r.error("nnodes", f"every layer needs at least one node; got {nnodes}")
    iw, iv = weight_offsets(nnodes), value_offsets(nnodes)
    r.check("nnodes_max", nnodes_max, max(nnodes), f"the largest of nnodes {nnodes}")
    r.check("Wsize", wsize, iw[-1], f"sum of (n_l + 1) n_(l+1) for nnodes {nnodes}")
    r.check("nvalues", nvalues, iv[-1] + nnodes[-1], f"sum of n_l + 1 plus the output nodes for nnodes {nnodes}")
    activations = r.ints("f_a (activation codes)", nlayers - 1)
    unknown = sorted(set(activations) - set(ACTIVATION_NAMES))
    if unknown:
        raise r.error("f_a (activation codes)", f"unknown codes {unknown}; known: {ACTIVATION_NAMES}")
    r.check("iw", r.ints("iw", nlayers), iw, f"weight offsets for nnodes {nnodes}")
    r.check("iv", r.ints("iv", nlayers), iv, f"value offsets for nnodes {nnodes}")
    return {"nnodes": nnodes, "activations": activations, "weights": r.floats("W", wsize)}


def _read_setup(r: FieldReader, n_inputs: int) -> dict:
    r.section = "setup"
    description, species = r.text("description"), r.word("atom type")
    env_species = r.tokens("environment species", r.count("nenv"))
    rc_min, rc_max = r.one_float("Rc_min"), r.one_float("Rc_max")
    basis = r.text("basis type")
    if basis.lower() != "chebyshev":
        raise r.error("basis type", f"only the Chebyshev basis is supported; got {basis!r}")
    nsf = r.count("nsf")
    r.check("nsf", nsf, n_inputs, "the input layer size nnodes[1]")
    r.check("nsfparam", r.count("nsfparam"), N_SFPARAM, "the Chebyshev basis has 4 parameters")
    sf_types = r.ints("sf", nsf)
    sfparam = r.floats("sfparam", nsf * N_SFPARAM).reshape(nsf, N_SFPARAM)
    sfenv, neval = r.sfenv_and_neval(len(env_species), nsf)
    statistics = {key: r.floats(field, nsf) for key, field in
                  (("sf_min", "sfval_min"), ("sf_max", "sfval_max"), ("sf_avg", "sfval_avg"), ("sf_cov", "sfval_cov"))}
    return dict(description=description, species=species, env_species=env_species, rc_min=rc_min, rc_max=rc_max,
                basis=basis, sf_types=sf_types, sfparam=sfparam, sfenv=sfenv, neval=neval, **statistics)


def _read_trainset(r: FieldReader) -> dict:
    r.section = "training-set info"
    name, normalized = r.text("training set file name"), r.logical("normalized")
    scale, shift = r.one_float("scale"), r.one_float("shift")
    n_types = r.count("nTypes")
    species = r.tokens("species", n_types)
    atomic_energies = r.floats("E_atom", n_types).tolist()
    n_atoms_total, n_structures = r.one_int("nAtomsTot"), r.one_int("nStrucs")
    e_min, e_max, e_avg = r.floats("E_min E_max E_av", 3).tolist()
    return dict(trainset_name=name, normalized=normalized, scale=scale, shift=shift, trainset_species=species,
                atomic_energies=atomic_energies, n_atoms_total=n_atoms_total, n_structures=n_structures,
                e_min=e_min, e_max=e_max, e_avg=e_avg)
