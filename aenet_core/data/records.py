"""Source records and collections: build inputs that are not plain files (aenet-python's ``sources`` API).

A ``SourceRecord`` is one logical input, a stable ``source_id`` and a ``loader``
giving one or more Structures; a collection yields records in a fixed order
(``iter_records``) and says how it may be traversed (``capabilities``).
``iter_entries`` (``aenet_core.data.sources``) turns each record's structures
into entries identified as ``display_name#frame=N``.

``TarArchiveXSFSourceCollection`` reads XSF members of a tar archive straight
from the archive stream: nothing is extracted to disk, and a member whose name
is absolute or climbs out with ``..`` is refused when the archive is opened.
"""
from __future__ import annotations

import os
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Protocol, Sequence, runtime_checkable

from aenet_core.io import read_structures
from aenet_core.io.xsf import parse_xsf
from aenet_core.structure import Structure, structure_sha256


@dataclass(frozen=True)
class SourceCapabilities:
    """How a source collection may be traversed (``supports_parallel_build=False`` refuses ``build_workers > 1``)."""

    supports_multiple_passes: bool = True
    supports_random_access: bool = True
    supports_parallel_build: bool = True


def _as_structures(loaded, source_id: str) -> list:
    """A loader's result as a list of Structures (ase.Atoms converted); anything else is a TypeError."""
    items = list(loaded) if isinstance(loaded, (list, tuple)) else [loaded]
    structures = []
    for k, item in enumerate(items):
        if hasattr(item, "get_chemical_symbols"):
            item = Structure.from_ase(item)
        if not isinstance(item, Structure):
            raise TypeError(f"{source_id}: source loaders must give Structure (or ase.Atoms) objects; item {k} is "
                            f"{type(item)!r}")
        structures.append(item)
    return structures


@dataclass(frozen=True)
class SourceRecord:
    """One logical build input: ``source_id`` identifies it (not necessarily a path), ``loader()`` gives its
    Structure(s), ``source_kind`` labels its type (``"file"``, ``"tar_xsf_member"``, ...) and
    ``display_name`` names it in identifiers (``source_id`` when empty)."""

    source_id: str
    loader: Callable[[], object]
    source_kind: str = ""
    display_name: str = ""

    def load_structures(self) -> list:
        """The record's structures, as a list."""
        return _as_structures(self.loader(), self.source_id)


@runtime_checkable
class SourceCollection(Protocol):
    """Anything with ``capabilities`` and ``iter_records()`` (records in a deterministic order)."""

    @property
    def capabilities(self) -> SourceCapabilities: ...

    def iter_records(self) -> Iterator[SourceRecord]: ...


class FilePathSourceCollection:
    """One record per structure file (every frame of it), ``source_kind="file"``."""

    def __init__(self, sources: Sequence):
        self._paths = [os.fspath(path) for path in sources]
        self._capabilities = SourceCapabilities()

    @property
    def capabilities(self) -> SourceCapabilities:
        return self._capabilities

    def iter_records(self) -> Iterator[SourceRecord]:
        for path in self._paths:
            yield SourceRecord(path, lambda path=path: read_structures(path), source_kind="file")

    def __len__(self) -> int:
        return len(self._paths)

    def stamps(self) -> list:
        """Each file's ``file_stamp``: what says the inputs changed."""
        return [file_stamp(path) for path in self._paths]


class RecordSourceCollection:
    """Records given in memory, in their order."""

    def __init__(self, records: Sequence[SourceRecord], *, capabilities: SourceCapabilities | None = None):
        self._records = list(records)
        self._capabilities = capabilities or SourceCapabilities()

    @property
    def capabilities(self) -> SourceCapabilities:
        return self._capabilities

    def iter_records(self) -> Iterator[SourceRecord]:
        yield from self._records

    def __len__(self) -> int:
        return len(self._records)


@dataclass(frozen=True)
class _Member:
    index: int  # position among all members of the archive
    name: str
    display_name: str


class TarArchiveXSFSourceCollection:
    """One record per XSF member (``member_suffixes``, case-insensitive) of a tar archive (.tar, .tar.gz,
    .tar.bz2, .tar.xz), ``source_kind="tar_xsf_member"``, identified as ``archive::member=I:NAME`` and shown
    as ``ARCHIVE_NAME:NAME`` (``@member=I`` added where a name repeats)."""

    def __init__(self, archive_path, *, member_suffixes: Sequence[str] = (".xsf",)):
        self._archive = os.fspath(archive_path)
        self._suffixes = tuple(suffix.lower() for suffix in member_suffixes)
        self._members = self._scan()
        self._capabilities = SourceCapabilities(supports_random_access=False)
        self._cursor = None  # the archive still open after a read, and the index of its next member

    @property
    def capabilities(self) -> SourceCapabilities:
        return self._capabilities

    def __len__(self) -> int:
        return len(self._members)

    def stamps(self) -> list:
        stat = Path(self._archive).stat()
        return [[self._archive, stat.st_size, stat.st_mtime_ns]]

    def _scan(self) -> list:
        """The matching members, checked for safe names."""
        with tarfile.open(self._archive, mode="r:*") as archive:
            found = [(index, member.name) for index, member in enumerate(archive)
                     if member.isfile() and member.name.lower().endswith(self._suffixes)]
        for _, name in found:
            path = PurePosixPath(name)
            if path.is_absolute() or ".." in path.parts or "\\" in name:
                raise ValueError(f"{self._archive}: archive member {name!r} has an absolute or parent-relative "
                                 f"name; refusing the archive")
        counts = Counter(name for _, name in found)
        label = Path(self._archive).name
        return [_Member(index, name, f"{label}:{name}" + (f"@member={index}" if counts[name] > 1 else ""))
                for index, name in found]

    def _record(self, member: _Member, loader) -> SourceRecord:
        return SourceRecord(f"{self._archive}::member={member.index}:{member.name}", loader,
                            source_kind="tar_xsf_member", display_name=member.display_name)

    def iter_records(self) -> Iterator[SourceRecord]:
        for member in self._members:
            yield self._record(member, lambda member=member: self._parse(member, self._read([member])[0]))

    def iter_record_chunks(self, chunk_size: int) -> Iterator[list]:
        """Records in lists of ``chunk_size``, their members read in one pass over the archive."""
        chunk_size = int(chunk_size)
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
        for start in range(0, len(self._members), chunk_size):
            members = self._members[start:start + chunk_size]
            data = self._read(members)
            yield [self._record(m, lambda m=m, d=d: self._parse(m, d)) for m, d in zip(members, data)]

    def _read(self, members) -> list:
        """The bytes of ``members`` (in archive order), read from the archive stream: on from where the last read
        stopped when they lie ahead of it (records load in order, so the archive is read once)."""
        wanted = {m.index: m for m in members}
        data = {}
        for index, member, archive in self._walk(min(wanted)):
            if index in wanted:
                with archive.extractfile(member) as handle:
                    data[index] = handle.read()
                if len(data) == len(wanted):
                    break
        if max(wanted) == self._members[-1].index:
            self._close()
        missing = sorted(set(wanted) - set(data))
        if missing:
            raise FileNotFoundError(f"{self._archive}: archive member #{missing[0]} ({wanted[missing[0]].name}) is "
                                    f"no longer in the archive")
        return [data[m.index] for m in members]

    def _walk(self, start: int):
        """(index, member, open archive) of the members from ``start`` on, continuing the open archive when its
        next member is not past ``start``, else opening it anew."""
        if self._cursor is None or self._cursor[1] > start:
            self._close()
            self._cursor = [tarfile.open(self._archive, mode="r:*"), 0]
        archive = self._cursor[0]
        while (member := archive.next()) is not None:
            index = self._cursor[1]
            self._cursor[1] += 1
            yield index, member, archive
        self._close()

    def _close(self) -> None:
        if self._cursor is not None:
            self._cursor[0].close()
            self._cursor = None

    def _parse(self, member: _Member, data: bytes) -> list:
        return parse_xsf(data, f"{self._archive}::{member.name}")


def coerce_source_collection(sources) -> SourceCollection:
    """A SourceCollection as it is; a list of SourceRecords as a ``RecordSourceCollection``; paths (one, or a
    list) as a ``FilePathSourceCollection``.  A mixed list, or anything else, is a TypeError."""
    if isinstance(sources, SourceCollection):
        return sources
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if all(isinstance(item, SourceRecord) for item in items) and items:
        return RecordSourceCollection(items)
    if all(isinstance(item, (str, os.PathLike)) for item in items):
        return FilePathSourceCollection(items)
    kinds = sorted({type(item).__name__ for item in items})
    raise TypeError(f"Unsupported sources input: give only path-like values, only SourceRecords, or a source "
                    f"collection object (mixed source lists are not supported); got {', '.join(kinds)}")


def collection_stamps(collection) -> list:
    """What identifies a collection's content: its files' stamps where it has files (``stamps()``), else each
    record's (which loads it: a record's id need not change with its structures)."""
    if hasattr(collection, "stamps"):
        return collection.stamps()
    return [record_stamp(record) for record in collection.iter_records()]


def record_stamp(record: SourceRecord) -> dict:
    """A record's kind, id and the hashes of its structures (``SourceLoadError`` when it cannot be loaded)."""
    return {"kind": record.source_kind, "id": record.source_id,
            "structures": [structure_sha256(s) for s in read_source(record.source_id, record.load_structures)]}


def file_stamp(path) -> list:
    """A file's path, size and modification time; a missing file's path alone (its reading then fails, naming
    it)."""
    if not os.path.exists(path):
        return [str(path), None, None]
    stat = Path(path).stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


class SourceLoadError(RuntimeError):
    """A source (file, archive member or record) that could not be read while building a database; the
    reader's error is its cause.  A RuntimeError, as aenet-python's."""


def read_source(source_id, load, source_errors: bool = True) -> Iterator[Structure]:
    """The structures ``load()`` gives, lazily; with ``source_errors``, a failure to read them a
    ``SourceLoadError`` naming ``source_id`` and the reader's message."""
    try:
        yield from load()
    except Exception as error:
        if not source_errors:
            raise
        raise SourceLoadError(f"Failed to load build source {source_id!r}: {type(error).__name__}: {error}") \
            from error
