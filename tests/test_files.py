"""Atomic writes and the format/version checks every reader shares."""
import pytest

from aenet_core.files import FileFormatError, atomic_path, atomic_write, check_format, read_json, write_json


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
