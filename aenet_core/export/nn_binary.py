"""One species' aenet binary ``.nn`` file, as Fortran aenet 2.0.4 (``train.x``) writes it (spec §9).

The file is gfortran unformatted sequential output, little-endian: each record
is a 4-byte length n, n bytes, and n again.  Integers and logicals are int32
(.true. = 1), reals float64, text fixed-length and blank-padded.  The records
are those of ``save_Network``, ``save_Setup`` and ``save_TrnSet_info``, one
per line of the ``.nn.ascii`` twin and in the same order (``records``):

* network: nlayers; nnodes_max; Wsize; nvalues; nnodes(nlayers);
  f_a(nlayers-1); iw(nlayers); iv(nlayers); W(Wsize) as float64;
* set-up: description character(1024); atom type character(2); nenv;
  env species, nenv x character(2) in one record; Rc_min; Rc_max; basis type
  character(100); nsf; nsfparam; sf(nsf); sfparam(4, nsf); sfenv(2, nsf);
  neval; sfval_min, _max, _avg, _cov (nsf each);
* training-set info: file name character(1024); normalized (logical);
  scale; shift; nTypes; species, nTypes x character(2); E_atom(nTypes);
  nAtomsTot; nStrucs; E_min, E_max, E_av in one record.

Two fields differ from the text form.  The texts lose their padding blanks
(leading blanks are kept).  sfenv holds 2 entries per basis function here and
nenv in Fortran's ``.nn.ascii``; the Chebyshev basis leaves them all zero, so
they are converted by zero-padding or dropping zeros (see ``_sfenv_pairs``).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from aenet_core.export.nn_ascii_file import (FieldReader, NNAsciiError, NNAsciiFile, read_fields, read_nn_ascii,
                                             records)
from aenet_core.files import atomic_write

TYPE_LENGTH = 2  # aenet's TYPELEN: species names
TEXT_LENGTHS = {"description": 1024, "basis type": 100, "training set file name": 1024}  # other texts: species
NENV_MAX = 2  # sfenv entries per basis function in the binary record
INT32 = np.iinfo(np.int32)


class NNBinaryError(NNAsciiError):
    """A malformed or inconsistent binary ``.nn`` file; the message names the file and the record."""


def read_potential_file(path) -> NNAsciiFile:
    """One species file of either format: a ``.nn.ascii`` name is text; otherwise a file whose first four
    bytes hold a zero byte (a record length marker; text has none) is binary, anything else text."""
    path = Path(path)
    if not path.name.endswith(".nn.ascii"):
        with path.open("rb") as handle:
            if b"\0" in handle.read(4):
                return read_nn_binary(path)
    return read_nn_ascii(path)


# ----------------------------------------------------------------------------- writing


def write_nn_binary(path, content: NNAsciiFile) -> None:
    """Write ``content`` to ``path`` atomically, byte for byte as Fortran aenet would."""
    with atomic_write(path, binary=True) as handle:
        for field, kind, values in records(content):
            if field == "sfenv":
                values = _sfenv_pairs(path, values, len(content.sf_types))
            body = _encode(path, field, kind, values)
            marker = struct.pack("<i", len(body))
            handle.write(marker + body + marker)


def _encode(path, field, kind, values) -> bytes:
    if kind == "float":
        return np.asarray(values, dtype="<f8").tobytes()
    if kind == "text":
        return b"".join(_padded(path, field, text) for text in values)
    integers = np.asarray(values, dtype=np.int64)  # a logical is 0 or 1, like gfortran's
    if integers.size and not INT32.min <= integers.min() <= integers.max() <= INT32.max:
        raise ValueError(f"{path}: {field} {values} does not fit the file's 32-bit integers")
    return integers.astype("<i4").tobytes()


def _padded(path, field, text) -> bytes:
    length = TEXT_LENGTHS.get(field, TYPE_LENGTH)
    try:
        encoded = text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{path}: {field} {text!r} has characters a Fortran text field cannot hold") from None
    if len(encoded) > length:
        raise ValueError(f"{path}: {field} {text!r} is longer than its {length}-character Fortran field")
    return encoded.ljust(length, b" ")


def _sfenv_pairs(path, sfenv, nsf) -> np.ndarray:
    """The record's (nsf, 2) sfenv from the content's nenv (or 2) entries per basis function."""
    per_function = np.reshape(sfenv, (nsf, -1))
    if per_function[:, NENV_MAX:].any():
        raise ValueError(f"{path}: sfenv has non-zero entries beyond the {NENV_MAX} per basis function of a .nn file")
    kept = min(per_function.shape[1], NENV_MAX)
    pairs = np.zeros((nsf, NENV_MAX), dtype=np.int64)
    pairs[:, :kept] = per_function[:, :kept]
    return pairs


def _content_sfenv(pairs, nenv) -> list:
    """Fortran's ``.nn.ascii`` form of the record's (nsf, 2) sfenv: nenv entries per basis function, zero-padded;
    the record's own 2 where fewer would drop a non-zero."""
    if pairs[:, nenv:].any():
        return pairs.ravel().tolist()
    padded = np.zeros((len(pairs), max(nenv, NENV_MAX)), dtype=np.int64)
    padded[:, :NENV_MAX] = pairs
    return padded[:, :nenv].ravel().tolist()


# ----------------------------------------------------------------------------- reading


def read_nn_binary(path) -> NNAsciiFile:
    """Parse one binary species file; a truncated, damaged or foreign file raises ``NNBinaryError``."""
    return read_fields(_RecordReader(path))


class _RecordReader(FieldReader):
    """The records of one file, each read as one field whose size its counts fix."""

    def __init__(self, path):
        self.path = Path(path)
        self.data = self.path.read_bytes()
        self.offset = 0
        self.index = 0  # records read so far

    def error(self, field, message) -> NNBinaryError:
        return NNBinaryError(f"{self.path}: record {max(self.index, 1)}, {self.section} section, {field}: {message}")

    def record(self, field, size, layout) -> bytes:
        """The next record, which must be ``size`` bytes (``layout`` in words)."""
        self.index += 1
        start = self.offset + 4
        if start > len(self.data):
            raise self.error(field, "the file ends before this record (truncated)" if self.offset == len(self.data)
                             else "the file ends inside the length marker (truncated)")
        marker = self.data[self.offset:start]
        length = int.from_bytes(marker, "little", signed=True)
        if length != size:
            looks = ("the file looks big-endian" if int.from_bytes(marker, "big") == size
                     else "another compiler's or aenet version's layout, or a damaged file?")
            raise self.error(field, f"the record holds {length} bytes, expected {size} ({layout}); {looks}")
        end = start + size
        if end + 4 > len(self.data):
            raise self.error(field, f"the file ends inside this {size}-byte record (truncated)")
        trailing = int.from_bytes(self.data[end:end + 4], "little", signed=True)
        if trailing != size:
            raise self.error(field, f"the length marker after the record says {trailing} bytes, the one before "
                                    f"{size} (damaged file)")
        self.offset = end + 4
        return self.data[start:end]

    def ints(self, field, count) -> list:
        return np.frombuffer(self.record(field, 4 * count, f"{count} int32"), dtype="<i4").tolist()

    def floats(self, field, count) -> np.ndarray:
        return np.frombuffer(self.record(field, 8 * count, f"{count} float64"), dtype="<f8").astype(np.float64)

    def logical(self, field) -> bool:
        value = self.one_int(field)
        if value not in (0, 1):
            raise self.error(field, f"{value} is not a gfortran logical (0 or 1)")
        return bool(value)

    def text(self, field) -> str:
        length = TEXT_LENGTHS[field]
        return self.record(field, length, f"character({length})").decode("latin-1").rstrip(" ")

    def tokens(self, field, count) -> list:
        body = self.record(field, TYPE_LENGTH * count, f"{count} x character({TYPE_LENGTH})").decode("latin-1")
        names = [body[i:i + TYPE_LENGTH].rstrip(" ") for i in range(0, len(body), TYPE_LENGTH)]
        for name in names:
            if not name or name != name.strip():
                raise self.error(field, f"{name!r} is not a species name")
        return names

    def word(self, field) -> str:
        return self.tokens(field, 1)[0]

    def sfenv_and_neval(self, nenv: int, nsf: int) -> tuple:
        pairs = np.reshape(self.ints("sfenv", NENV_MAX * nsf), (nsf, NENV_MAX))
        return _content_sfenv(pairs, nenv), self.one_int("neval")

    def expect_end(self) -> None:
        if self.offset < len(self.data):
            raise NNBinaryError(f"{self.path}: {len(self.data) - self.offset} bytes after the last record "
                                f"(record {self.index}, E_min E_max E_av)")
