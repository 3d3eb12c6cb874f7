"""aenet_core.torch_training.sources: source records, file and tar-archive collections, and databases built
from them."""
import io
import os
import tarfile

import numpy as np
import pytest

from aenet_core.data import DatabaseError
from aenet_core.io import read_xsf, write_xsf
from aenet_core.torch_training import HDF5StructureDataset, Structure
from aenet_core.torch_training import sources
from aenet_core.torch_training.sources import (FilePathSourceCollection, RecordSourceCollection, SourceCapabilities,
                                               SourceCollection, SourceRecord, TarArchiveXSFSourceCollection,
                                               coerce_source_collection)
from training_setup import REFERENCES, descriptor


def test_the_module_exports_the_reference_names():
    assert sources.__all__ == ["FilePathSourceCollection", "RecordSourceCollection", "SourceCapabilities",
                               "SourceCollection", "SourceRecord", "TarArchiveXSFSourceCollection",
                               "coerce_source_collection"]


@pytest.fixture(scope="module")
def xsf_files(cuau, tmp_path_factory):
    folder = tmp_path_factory.mktemp("xsf")
    paths = [folder / f"s{i}.xsf" for i in range(3)]
    for path, structure in zip(paths, cuau):
        write_xsf(path, [structure])
    return paths


def add_member(archive, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def archive(xsf_files, tmp_path_factory):
    """s0.xsf, README (not XSF), sub/s1.XSF, s0.xsf again (the third structure) in a gzipped tar."""
    path = tmp_path_factory.mktemp("tar") / "set.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add_member(tar, "s0.xsf", xsf_files[0].read_bytes())
        add_member(tar, "README", b"not a structure")
        add_member(tar, "sub/s1.XSF", xsf_files[1].read_bytes())
        add_member(tar, "s0.xsf", xsf_files[2].read_bytes())
    return path


def same(a, b):
    return a.species == b.species and np.allclose(a.positions, b.positions) and np.isclose(a.energy, b.energy)


def test_a_record_loads_a_list_of_structures(cuau):
    record = SourceRecord("mem:0", lambda: cuau[0], source_kind="memory")
    assert record.display_name == "" and record.source_kind == "memory"
    assert record.load_structures() == [cuau[0]]
    assert len(SourceRecord("mem:1", lambda: (cuau[0], cuau[1].to_ase())).load_structures()) == 2
    with pytest.raises(TypeError, match="mem:2: source loaders must give Structure"):
        SourceRecord("mem:2", lambda: [cuau[0], "x"]).load_structures()


def test_file_and_record_collections(xsf_files, cuau):
    files = FilePathSourceCollection(xsf_files)
    assert isinstance(files, SourceCollection) and len(files) == 3
    assert files.capabilities == SourceCapabilities(True, True, True)
    records = list(files.iter_records())
    assert [(r.source_id, r.source_kind, r.display_name) for r in records] == [(str(p), "file", "") for p in xsf_files]
    assert same(records[1].load_structures()[0], cuau[1])
    serial = SourceCapabilities(supports_parallel_build=False)
    collection = RecordSourceCollection(records[::-1], capabilities=serial)
    assert list(collection.iter_records()) == records[::-1] and collection.capabilities is serial


def test_coerce_source_collection(xsf_files):
    files = FilePathSourceCollection(xsf_files)
    assert coerce_source_collection(files) is files
    assert isinstance(coerce_source_collection([str(p) for p in xsf_files]), FilePathSourceCollection)
    assert len(coerce_source_collection(xsf_files[0])) == 1 and len(coerce_source_collection([])) == 0
    records = list(files.iter_records())
    assert list(coerce_source_collection(records).iter_records()) == records
    with pytest.raises(TypeError, match="[Mm]ixed source lists are not supported"):
        coerce_source_collection([records[0], xsf_files[0]])
    with pytest.raises(TypeError, match="Unsupported sources input"):
        coerce_source_collection([1, 2])


def test_tar_members_are_records_read_without_extracting(archive, xsf_files):
    before = sorted(os.listdir(archive.parent))
    tar = TarArchiveXSFSourceCollection(archive)
    assert len(tar) == 3 and tar.capabilities == SourceCapabilities(supports_random_access=False)
    records = list(tar.iter_records())
    assert [r.display_name for r in records] == ["set.tar.gz:s0.xsf@member=0", "set.tar.gz:sub/s1.XSF",
                                                 "set.tar.gz:s0.xsf@member=3"]
    assert records[1].source_id == f"{archive}::member=2:sub/s1.XSF" and records[1].source_kind == "tar_xsf_member"
    for record, path in zip(records, xsf_files):
        assert same(record.load_structures()[0], read_xsf(path)[0])
    chunks = list(tar.iter_record_chunks(2))
    assert [len(c) for c in chunks] == [2, 1]
    assert [same(r.load_structures()[0], s.load_structures()[0]) for r, s in zip(sum(chunks, []), records)] == [True] * 3
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        next(tar.iter_record_chunks(0))
    assert len(TarArchiveXSFSourceCollection(archive, member_suffixes=(".XSF",))) == 3
    assert sorted(os.listdir(archive.parent)) == before  # nothing extracted beside the archive


@pytest.mark.parametrize("hostile", ["../escape.xsf", "/etc/abs.xsf", "a/../../b.xsf"])
def test_a_member_name_that_leaves_the_archive_is_refused(xsf_files, tmp_path, hostile):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        add_member(tar, "fine.xsf", xsf_files[0].read_bytes())
        add_member(tar, hostile, xsf_files[1].read_bytes())
    with pytest.raises(ValueError, match=f"bad.tar: archive member '{hostile}' has an absolute or parent-relative"):
        TarArchiveXSFSourceCollection(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar"]


def test_a_database_from_a_tar_archive_and_from_records(archive, xsf_files, cuau, tmp_path):
    db = HDF5StructureDataset(descriptor(), tmp_path / "tar.h5", sources=TarArchiveXSFSourceCollection(archive),
                              mode="build", atomic_energies=REFERENCES)
    db.build_database(show_progress=False)
    assert len(db) == 3 and same(db.get_structure(2), cuau[2])
    meta = db.get_entry_metadata(1)
    assert (meta["source_kind"], meta["source_id"], meta["frame_idx"]) == \
        ("tar_xsf_member", f"{archive}::member=2:sub/s1.XSF", 0)
    assert db.get_structure_identifier(1) == "set.tar.gz:sub/s1.XSF#frame=0"
    pair = SourceRecord("pair", lambda: [cuau[3], cuau[4]], source_kind="generated")
    serial = RecordSourceCollection([pair], capabilities=SourceCapabilities(supports_parallel_build=False))
    db = HDF5StructureDataset(descriptor(), tmp_path / "records.h5", sources=serial, mode="build")
    db.build_database(show_progress=False)
    assert [db.get_structure_identifier(i) for i in range(2)] == ["pair#frame=0", "pair#frame=1"]
    assert db.get_entry_metadata(1)["source_kind"] == "generated" and same(db.get_structure(1), cuau[4])
    alone = HDF5StructureDataset(descriptor(), tmp_path / "one.h5", sources=pair, mode="build")
    alone.build_database(show_progress=False)
    assert alone.content_sha256 == db.content_sha256
    with pytest.raises(ValueError, match="do not support build_workers > 1"):
        db.build_database(show_progress=False, build_workers=2)
    changed = SourceRecord("pair", lambda: [cuau[3], cuau[5]], source_kind="generated")
    auto = HDF5StructureDataset(descriptor(), tmp_path / "records.h5", sources=[changed], mode="auto")
    with pytest.raises(DatabaseError, match="other sources or settings"):  # same id, other structures
        auto.build_database(show_progress=False)
    HDF5StructureDataset(descriptor(), tmp_path / "records.h5", sources=[pair], mode="auto").build_database()
    mixed = [xsf_files[0], pair, Structure(cuau[5].positions, cuau[5].species, energy=1.0, cell=cuau[5].cell)]
    db = HDF5StructureDataset(descriptor(), tmp_path / "mixed.h5", sources=mixed, mode="build")
    db.build_database(show_progress=False)
    assert [db.get_entry_metadata(i)["source_kind"] for i in range(4)] == ["file", "generated", "generated",
                                                                           "structure"]


def test_a_source_that_cannot_be_read_fails_the_build_and_keeps_the_old_database(xsf_files, cuau, tmp_path):
    path = tmp_path / "kept.h5"
    HDF5StructureDataset(descriptor(), path, sources=xsf_files, mode="build").build_database(show_progress=False)
    before = path.read_bytes()
    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w") as tar:
        add_member(tar, "ok.xsf", xsf_files[0].read_bytes())
        add_member(tar, "bad.xsf", b"this is not a valid xsf payload")
    for failing in (TarArchiveXSFSourceCollection(broken), [xsf_files[1], tmp_path / "missing.xsf"],
                    [SourceRecord("mem:0", lambda: cuau[0]), SourceRecord("mem:1", lambda: 1 / 0)]):
        db = HDF5StructureDataset(descriptor(), path, sources=failing, mode="build")
        # aenet-python's RuntimeError and message, naming the source and the reader's error
        with pytest.raises(RuntimeError, match=r"Failed to load build source '[^']*(bad\.xsf|missing\.xsf|mem:1)': "
                                               r"(StructureFileError|FileNotFoundError|ZeroDivisionError)") as err:
            db.build_database(show_progress=False, build_workers=2 if isinstance(failing, SourceCollection) else 0)
        assert err.value.__cause__ is not None
        assert path.read_bytes() == before  # the database it would have replaced is untouched
    assert len(HDF5StructureDataset(descriptor(), path, mode="load")) == 3


def test_a_long_display_name_is_stored_whole(cuau, tmp_path):
    name = "x" * 3000  # aenet-python refuses more than 2048 bytes: its column has a fixed width
    record = SourceRecord("mem_0", lambda: cuau[0], source_kind="memory", display_name=name)
    db = HDF5StructureDataset(descriptor(), tmp_path / "long.h5", sources=RecordSourceCollection([record]),
                              mode="build")
    db.build_database(show_progress=False)
    reopened = HDF5StructureDataset(descriptor(), tmp_path / "long.h5", mode="load")
    assert reopened.get_entry_metadata(0)["display_name"] == name
    assert reopened.get_structure_identifier(0) == f"{name}#frame=0"
