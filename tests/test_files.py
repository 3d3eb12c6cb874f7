"""Atomic writes and the format/version checks every reader shares."""
import os
import socket
import subprocess
import sys

import pytest

from aenet_core.files import (FileFormatError, atomic_path, atomic_write, check_format, read_json,
                              remove_stale_temporaries, write_json)


def test_a_write_replaces_the_file_only_when_complete(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_write(path) as handle:
            handle.write('{"a": 2')
            raise RuntimeError("killed mid-write")
    assert read_json(path, "test file") == {"a": 1}
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "new.h5") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed mid-build")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    with pytest.raises(ValueError, match="not JSON compliant"):
        write_json(path, {"a": float("nan")})  # strict JSON only
    assert read_json(path, "test file") == {"a": 1}


def test_format_and_version_checks_name_the_file_and_what_to_do(tmp_path):
    check_format("f.json", "x", "x", 2, (1, 2), "thing")
    with pytest.raises(FileFormatError, match=r"^f\.json: unsupported format 'y': not an aenet_core thing"):
        check_format("f.json", "y", "x", 1, (1,), "thing")
    with pytest.raises(FileFormatError, match=r"^f\.json: unsupported version 3 is newer .*upgrade aenet_core"):
        check_format("f.json", "x", "x", 3, (1, 2), "thing")
    with pytest.raises(FileFormatError, match=r"^f\.json: unsupported version 'old' is not one .*make the thing again"):
        check_format("f.json", "x", "x", "old", (1, 2), "thing")
    with pytest.raises(FileFormatError, match="unsupported version True"):
        check_format("f.json", "x", "x", True, (1,), "thing")
    for damage in (b"{", b"\x89HDF\r\n\x1a\n\xff\xfe"):  # truncated; binary bytes that are not UTF-8
        (tmp_path / "broken.json").write_bytes(damage)
        with pytest.raises(FileFormatError, match=r"broken\.json: not valid JSON, so a damaged or foreign thing"):
            read_json(tmp_path / "broken.json", "thing")


KILLED_WRITER = """
import os, signal, sys
from aenet_core.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"partial")
    print(os.getpid(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_later_write_removes_what_a_killed_writer_left_on_this_host(tmp_path):
    path = tmp_path / "database.h5"
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], capture_output=True, text=True)
    assert killed.returncode == -9
    dead, host = int(killed.stdout), socket.gethostname()
    (stale,) = tmp_path.glob(".database.h5.*.tmp")  # kill -9 leaves it: no finally runs
    running = tmp_path / f".database.h5.{'b' * 32}.{os.getpid()}@{host}.tmp"  # a write still in progress
    elsewhere = tmp_path / f".database.h5.{'c' * 32}.{dead}@another-host.tmp"  # its process cannot be asked
    other_file = tmp_path / f".split.json.{'d' * 32}.{dead}@{host}.tmp"
    for leftover in (running, elsewhere, other_file):
        leftover.write_bytes(b"partial")
    with pytest.warns(UserWarning, match=f"removed .*left by process {dead} when it was killed"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"complete")
    assert path.read_bytes() == b"complete"
    assert not stale.exists() and running.exists() and elsewhere.exists() and other_file.exists()
    assert remove_stale_temporaries(path) == []
