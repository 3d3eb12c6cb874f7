"""The files aenet_core writes and reads: atomic replacement, and format/version checks.

Every output is written under a temporary name beside its destination and
renamed into place only when complete, so an interrupted write never leaves a
file that a later read would trust; the temporary name records the writing
process, so a later write of the same file removes what a killed one left behind
on this host.  Every reader checks the format name and
version a file declares through ``check_format``, so all of them refuse a
foreign or newer file the same way, naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path


class FileFormatError(ValueError):
    """A file that is not what the reader expects, or in a version it cannot read; the message names it."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]{32}\.(?P<pid>\d+)@(?P<host>.+)\.tmp$")
# directory -> target name -> its temporaries found there when this process first wrote to the directory.
# Listing a directory once, not at every write, keeps a cache of one file per structure linear.
_FOUND_TEMPORARIES: dict[str, dict[str, list[Path]]] = {}


def _temporaries_found(path: Path) -> list[Path]:
    directory = os.path.abspath(path.parent)
    if directory not in _FOUND_TEMPORARIES:
        found = {}
        for candidate in path.parent.glob(".*.tmp"):
            match = TEMPORARY.match(candidate.name)
            if match:
                found.setdefault(match["target"], []).append(candidate)
        _FOUND_TEMPORARIES[directory] = found
    return _FOUND_TEMPORARIES[directory].pop(path.name, [])


def remove_stale_temporaries(path) -> list[Path]:
    """Remove the temporary files of ``path`` that processes of this host left when they were killed
    (a process still running keeps its file; another host's files are left alone). Each directory is
    listed once per process, at its first write: leftovers of writers killed since wait for the next."""
    removed = []
    for candidate in _temporaries_found(Path(path)):
        found = TEMPORARY.match(candidate.name)
        if found["host"] == socket.gethostname() and not _alive(int(found["pid"])):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
            warnings.warn(f"removed {candidate}, left by process {found['pid']} when it was killed", stacklevel=3)
    return removed


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    Stale temporaries of ``path`` from killed processes are removed first (``remove_stale_temporaries``).
    """
    path = Path(path)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.{os.getpid()}@{socket.gethostname()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_write(path, binary=False):
    """Yield a handle on a temporary file beside ``path``; replace ``path`` only on success."""
    with atomic_path(path) as tmp:
        with open(tmp, "xb") if binary else open(tmp, "x", encoding="utf-8") as handle:
            yield handle


def write_json(path, data, **options) -> None:
    """Strict JSON (no NaN), written atomically."""
    with atomic_write(path) as handle:
        json.dump(data, handle, allow_nan=False, **options)
        handle.write("\n")


def file_sha256(path) -> str:
    """The sha256 of a file's bytes; what summaries and manifests record so a reader can tell damage."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_json(path, what: str):
    """The parsed content of a JSON file; unreadable JSON raises ``FileFormatError`` naming the file and
    ``what`` it should have been."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:  # truncated, or overwritten with binary bytes
        raise FileFormatError(f"{path}: not valid JSON, so a damaged or foreign {what} (invalid JSON: {err}); make it "
                    f"again") from None


def check_format(where, found_format, expected_format: str, found_version, readable_versions, what: str,
                 version_label: str = "version", error=FileFormatError) -> None:
    """Refuse a file that declares another format, or a version outside ``readable_versions``.

    Messages read "<where>: unsupported format ...: not an aenet_core <what>" and "<where>: unsupported
    <version_label> <version> is newer than ..." (or "... is not one ..."); ``where`` None leaves the
    prefix out.
    """
    prefix = "" if where is None else f"{where}: "
    if found_format != expected_format:
        raise error(f"{prefix}unsupported format {found_format!r}: not an aenet_core {what} (expected "
                    f"{expected_format!r})")
    if found_version in readable_versions and not isinstance(found_version, bool):
        return
    readable = ", ".join(map(repr, readable_versions))
    if _newer(found_version, readable_versions):
        raise error(f"{prefix}unsupported {version_label} {found_version!r} is newer than this aenet_core reads "
                    f"({readable}); upgrade aenet_core")
    raise error(f"{prefix}unsupported {version_label} {found_version!r} is not one this aenet_core reads "
                f"({readable}); make the {what} again with this version")


def _newer(version, readable) -> bool:
    try:
        return float(version) > max(float(v) for v in readable)
    except (TypeError, ValueError):
        return False
