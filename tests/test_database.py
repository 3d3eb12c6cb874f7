"""The HDF5 database: round trips, persisted payloads, filters, errors, atomic builds, training from it."""
import json
import pickle
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import aenet_core.data.hdf5.build as database
from aenet_core.data import DatabaseError, HDF5StructureDataset
from aenet_core.data.hdf5.payloads import PayloadReader
from aenet_core.descriptor import BatchedFeaturizer, ChebyshevDescriptor
from aenet_core.io import write_extxyz
from aenet_core.structure import Structure
from aenet_core.torch_training import Adam, CachedStructureDataset, TorchANNPotential, TorchTrainingConfig

REFERENCES = {"Cu": -0.5, "Au": -0.2}
PAYLOAD_FIELDS = ("center_idx", "neighbor_idx", "radial_dG_dd", "radial_unit", "neighbor_typespin",
                  "triplet_center_idx", "neighbor_j_idx", "neighbor_k_idx", "angular_dG_dcos", "angular_dG_ddij",
                  "angular_dG_ddik", "dcos_drj", "dcos_drk", "unit_ij", "unit_ik", "triplet_typespin")


def descriptor(**changes):
    params = dict(species=["Cu", "Au"], rad_order=4, rad_cutoff=4.5, ang_order=2, ang_cutoff=3.5, min_cutoff=0.5)
    return ChebyshevDescriptor(**(params | changes))


@pytest.fixture(scope="module")
def cuau_file(cuau, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "cuau.extxyz"
    write_extxyz(path, cuau)
    return path


def build(path, sources, **kwargs):
    options = {k: kwargs.pop(k) for k in ("build_workers", "storage_dtype") if k in kwargs}
    db = HDF5StructureDataset(kwargs.pop("desc", None) or descriptor(), path, sources=sources, mode="build", **kwargs)
    db.build_database(show_progress=False, persist_features=True, persist_force_derivatives=True, **options)
    return db


def featurize(structures, desc=None):
    return BatchedFeaturizer(desc or descriptor()).with_derivatives(
        [s.positions for s in structures], [s.species for s in structures],
        [s.cell for s in structures], [s.pbc for s in structures])


def assert_same_payload(a, b, exact=True):
    for name in PAYLOAD_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if exact:
            assert torch.equal(x, y), name
        else:
            torch.testing.assert_close(x, y.to(x.dtype), rtol=1e-5, atol=1e-6, msg=name)


def test_round_trip_structures_labels_and_identifiers(tmp_path, cuau, cuau_file):
    db = build(tmp_path / "db.h5", [cuau_file])
    assert len(db) == len(cuau)
    for i, original in enumerate(cuau):
        s = db.get_structure(i)
        np.testing.assert_array_equal(s.positions, original.positions)
        np.testing.assert_array_equal(s.forces, original.forces)
        np.testing.assert_array_equal(s.cell, original.cell)
        np.testing.assert_array_equal(s.pbc, original.pbc)
        assert s.species == original.species and s.energy == original.energy and s.name == original.name
        assert db.get_structure_identifier(i) == f"{cuau_file}#frame={i}"
    meta = db.get_entry_metadata(5)
    assert meta == {"source_id": str(cuau_file), "frame_idx": 5, "source_kind": "file", "display_name": str(cuau_file),
                    "name": "cuau-005", "has_forces": True, "n_atoms": cuau[5].n_atoms, "energy": cuau[5].energy}
    assert db.energies([3, 1]) == [cuau[3].energy, cuau[1].energy]
    assert db.atom_counts([0, 2]) == [cuau[0].n_atoms, cuau[2].n_atoms]
    with pytest.raises(IndexError, match="out of range"):
        db.get_structure(len(cuau))


def test_persisted_features_and_derivatives_equal_a_fresh_featurization(tmp_path, cuau, monkeypatch):
    monkeypatch.setattr(database, "CHUNK_ATOMS", 40)  # several build chunks
    db = build(tmp_path / "db.h5", cuau)
    order = [7, 2, 3, 4, 11, 0]  # a run of consecutive entries and jumps
    features, derivatives = db.stored_derivatives(order)
    expected_features, _, expected = featurize([cuau[i] for i in order])
    assert torch.equal(features, expected_features)
    assert_same_payload(derivatives, expected)
    assert torch.equal(db.stored_features(order), expected_features)


def test_float32_storage_is_smaller_and_close(tmp_path, cuau):
    db64 = build(tmp_path / "f64.h5", cuau)
    db32 = build(tmp_path / "f32.h5", cuau, storage_dtype="float32")
    assert (tmp_path / "f32.h5").stat().st_size < 0.7 * (tmp_path / "f64.h5").stat().st_size
    f64, d64 = db64.stored_derivatives(range(len(cuau)))
    f32, d32 = db32.stored_derivatives(range(len(cuau)))
    assert f32.dtype == torch.float64  # served in the descriptor's dtype
    torch.testing.assert_close(f32, f64, rtol=1e-6, atol=1e-6)
    assert_same_payload(d64, d32, exact=False)


def test_parallel_build_writes_the_same_content(tmp_path, cuau, monkeypatch):
    monkeypatch.setattr(database, "CHUNK_ATOMS", 60)
    serial = build(tmp_path / "serial.h5", cuau)
    parallel = build(tmp_path / "parallel.h5", cuau, build_workers=2)
    assert serial.content_sha256 == parallel.content_sha256
    with h5py.File(tmp_path / "serial.h5") as a, h5py.File(tmp_path / "parallel.h5") as b:
        names = []
        a.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        assert len(names) > 20
        for name in names:
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)


def test_mixed_labels_molecules_and_derivatives_only_for_force_entries(tmp_path, cuau):
    molecule = Structure([[0, 0, 0], [2.5, 0, 0], [0, 2.4, 0.3]], ["Cu", "Au", "Cu"], energy=-1.0)
    no_forces = Structure(cuau[1].positions, cuau[1].species, energy=cuau[1].energy, cell=cuau[1].cell)
    sources = [cuau[0], molecule, no_forces, cuau[2].to_ase()]
    db = build(tmp_path / "db.h5", sources)
    assert [db.has_forces(i) for i in range(4)] == [True, False, False, True]
    assert db.get_structure(1).cell is None and db.get_structure(1).forces is None
    # In-memory items are named as in memory (a frame number is a file's): the same on every path.
    assert db.get_structure_identifier(1) == "structure_000001"
    features, _, expected = featurize([cuau[0], cuau[2]])
    stored_features, stored = db.stored_derivatives([0, 3])
    assert_same_payload(stored, expected)
    assert torch.equal(stored_features, features)
    molecule_features, _ = BatchedFeaturizer(descriptor())([molecule.positions], [molecule.species])
    assert torch.equal(db.stored_features([1]), molecule_features)
    with pytest.raises(ValueError, match="force-labelled entries only"):
        db.stored_derivatives([1])


def test_max_energy_filter_is_recorded_and_restored(tmp_path, cuau_file, cuau):
    referenced = [(s.energy - sum(REFERENCES[x] for x in s.species)) / s.n_atoms for s in cuau]
    threshold = float(np.median(referenced))
    kept = [i for i, e in enumerate(referenced) if e <= threshold]
    db = build(tmp_path / "db.h5", [cuau_file], max_energy=threshold, atomic_energies=REFERENCES)
    assert len(db) == len(kept) and db._attrs["n_filtered"] == len(cuau) - len(kept)
    assert [db.get_entry_metadata(i)["frame_idx"] for i in range(len(db))] == kept  # frames before filtering
    reopened = HDF5StructureDataset(None, tmp_path / "db.h5", mode="load")
    assert reopened.max_energy == threshold and reopened.atomic_energies == REFERENCES
    assert reopened.referenced_energy_per_atom(0) == pytest.approx(referenced[kept[0]])
    with pytest.raises(DatabaseError, match="atomic_energies"):
        HDF5StructureDataset(None, tmp_path / "db.h5", mode="load", atomic_energies={"Cu": 0.0, "Au": 0.0})


def test_descriptor_is_recovered_or_checked(tmp_path, cuau):
    build(tmp_path / "db.h5", cuau)
    recovered = HDF5StructureDataset(None, tmp_path / "db.h5", mode="load")
    assert recovered.descriptor.get_config() == descriptor().get_config()
    with pytest.raises(DatabaseError, match=r"rad_cutoff=4\.5.*rad_cutoff=5\.0.*mode='build'"):
        HDF5StructureDataset(descriptor(rad_cutoff=5.0), tmp_path / "db.h5")
    with pytest.raises(DatabaseError, match="species"):
        HDF5StructureDataset(descriptor(species=["Au", "Cu"]), tmp_path / "db.h5")


def test_auto_mode_reuses_a_matching_file_and_refuses_a_different_recipe(tmp_path, cuau):
    path = tmp_path / "db.h5"
    build(path, cuau)
    stamp = path.stat().st_mtime_ns
    auto = HDF5StructureDataset(descriptor(), path, sources=cuau)
    auto.build_database(show_progress=False, persist_features=True, persist_force_derivatives=True)
    assert path.stat().st_mtime_ns == stamp and len(auto) == len(cuau)
    with pytest.raises(DatabaseError, match="mode='build'"):
        auto.build_database(show_progress=False, persist_features=True)
    with pytest.raises(ValueError, match="mode='load'"):
        HDF5StructureDataset(None, path, mode="load").build_database()
    with pytest.raises(FileNotFoundError, match="mode='build'"):
        HDF5StructureDataset(descriptor(), tmp_path / "missing.h5", mode="load")


def test_interrupted_build_leaves_the_previous_file_and_no_temp(tmp_path, cuau, monkeypatch):
    path = tmp_path / "db.h5"
    build(path, cuau[:4])
    before = path.read_bytes()
    calls = []

    def failing(structures, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed mid-build")
        return featurize_chunk(structures, *args, **kwargs)

    featurize_chunk = database.featurize_chunk
    monkeypatch.setattr(database, "featurize_chunk", failing)
    monkeypatch.setattr(database, "CHUNK_ATOMS", 30)
    with pytest.raises(RuntimeError, match="killed"):
        build(path, cuau)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.h5"]
    fresh = tmp_path / "fresh.h5"
    with pytest.raises(RuntimeError, match="killed"):
        calls.clear()
        build(fresh, cuau)
    assert not fresh.exists()


def test_bad_sources_name_the_file_and_frame(tmp_path, cuau_file):
    with pytest.raises(ValueError, match=r"cuau.extxyz \(frame 0\): species \['Au', 'Cu'\]"):
        build(tmp_path / "db.h5", [cuau_file], desc=descriptor(species=["Ni"]))
    with pytest.raises(ValueError, match="sources must be provided"):
        build(tmp_path / "db.h5", None)
    with pytest.raises(ValueError, match=r"sources\[0\]"):
        build(tmp_path / "db.h5", [42])
    assert not (tmp_path / "db.h5").exists()


def test_an_implausible_structure_is_refused_before_its_chunk_is_featurized(tmp_path, cuau, cuau_file, monkeypatch):
    in_nm = cuau[0].copy()
    in_nm.cell = in_nm.cell * 0.1
    write_extxyz(tmp_path / "nm.extxyz", [in_nm])
    featurized = []
    featurize_chunk = database.featurize_chunk
    monkeypatch.setattr(database, "featurize_chunk", lambda structures, *a, **k: featurized.append(len(structures))
                        or featurize_chunk(structures, *a, **k))
    monkeypatch.setattr(database, "CHUNK_ATOMS", 100)
    with pytest.raises(ValueError, match=r"nm\.extxyz \(frame 0\): .* neighbours per atom"):
        build(tmp_path / "db.h5", [cuau_file, tmp_path / "nm.extxyz"])
    assert sum(featurized) < len(cuau) and not (tmp_path / "db.h5").exists()  # the chunk holding it never was
    featurized.clear()
    with pytest.raises(ValueError, match=r"nm\.extxyz \(frame 0\)"):
        build(tmp_path / "db.h5", [tmp_path / "nm.extxyz", cuau_file])
    assert featurized == []


def test_foreign_corrupt_and_future_files_give_clear_errors(tmp_path, cuau):
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(DatabaseError, match="not a readable HDF5 file"):
        HDF5StructureDataset(descriptor(), text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("x", data=[1, 2])
    with pytest.raises(DatabaseError, match="not an aenet_core database"):
        HDF5StructureDataset(descriptor(), foreign)
    good = tmp_path / "good.h5"
    build(good, cuau[:3])
    future, broken = tmp_path / "future.h5", tmp_path / "broken.h5"
    for target in (future, broken):
        target.write_bytes(good.read_bytes())
    with h5py.File(future, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(DatabaseError, match="schema version 99 is newer"):
        HDF5StructureDataset(None, future)
    with h5py.File(broken, "a") as f:
        del f["entries/energy"]
    with pytest.raises(DatabaseError, match="missing.*rebuild"):
        HDF5StructureDataset(None, broken)


def flip_byte(path, dataset_name, chunk=0, at=5):
    """Flip one byte inside a stored chunk of a dataset, as disk or transfer damage would."""
    with h5py.File(path, "r") as f:
        offset = f[dataset_name].id.get_chunk_info(chunk).byte_offset + at
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x40]))


@pytest.mark.parametrize("dataset", ["atoms/forces", "atoms/positions", "entries/energy"])
def test_a_damaged_label_or_structure_chunk_is_refused_naming_the_dataset(tmp_path, cuau, dataset):
    path = tmp_path / "db.h5"
    build(path, cuau).close()
    flip_byte(path, dataset)
    with pytest.raises(DatabaseError, match=rf"db.h5: dataset /{dataset} is damaged .*rebuild"):
        HDF5StructureDataset(None, path, mode="load")


@pytest.mark.parametrize("dataset", ["features/values", "derivatives/edges/dG_dd", "derivatives/triplets/unit_ij"])
def test_a_damaged_payload_chunk_is_refused_naming_the_dataset(tmp_path, cuau, dataset):
    path = tmp_path / "db.h5"
    build(path, cuau).close()
    flip_byte(path, dataset)
    db = HDF5StructureDataset(None, path, mode="load")  # payloads are read (and checked) when used
    with pytest.raises(DatabaseError, match=rf"dataset /{dataset} is damaged"):
        db.stored_derivatives(range(len(db)))


def test_labels_changed_behind_the_checksums_are_refused_by_the_content_hash(tmp_path, cuau):
    path = tmp_path / "db.h5"
    build(path, cuau).close()
    with h5py.File(path, "r+") as f:  # HDF5 rewrites the chunk checksum: only the content hash can tell
        f["atoms/forces"][0, 0] = -35557.7
    with pytest.raises(DatabaseError, match="do not match the content_sha256 written with them"):
        HDF5StructureDataset(None, path, mode="load")


def test_stress_labels_weights_and_the_distances_a_virial_needs_are_stored(tmp_path, cuau):
    stressed = [replace(s, stress=np.full((3, 3), 1e-3 * k) if k % 2 else None, weight=k / 4,
                        config_type="md" if k % 3 else None) for k, s in enumerate(cuau)]
    db = build(tmp_path / "db.h5", stressed)
    reopened = HDF5StructureDataset(None, tmp_path / "db.h5", mode="load")
    for k, structure in enumerate(stressed):
        stored = reopened.get_structure(k).stress
        assert (stored is None) == (structure.stress is None) and (stored is None or np.array_equal(stored, structure.stress))
        assert (reopened.get_structure(k).weight, reopened.get_structure(k).config_type) == (
            structure.weight, structure.config_type)
    np.testing.assert_array_equal(reopened.loss_weights(range(len(cuau)), {"md": 2.0}),
                                  [k / 4 * (2.0 if k % 3 else 1.0) for k in range(len(cuau))])
    _, stored = reopened.stored_derivatives(range(len(cuau)))
    _, _, fresh = featurize(cuau)
    assert_same_payload(stored, fresh)
    for name in ("radial_distance", "distance_ij", "distance_ik"):
        assert torch.equal(getattr(stored, name), getattr(fresh, name)), name
    db.close()


def test_a_schema_2_file_opens_for_energy_and_forces_and_asks_for_a_rebuild_for_stress(tmp_path, cuau):
    path = tmp_path / "old.h5"
    build(path, [replace(s, stress=None) for s in cuau]).close()  # the previous version stored no stress
    with h5py.File(path, "r+") as f:  # as the previous version wrote it
        for name in ("entries/has_stress", "entries/stress", "entries/weight", "entries/config_type",
                     "derivatives/edges/distance", "derivatives/triplets/d_ij", "derivatives/triplets/d_ik"):
            del f[name]
        f.attrs["schema_version"] = 2
    db = HDF5StructureDataset(None, path, mode="load")
    assert db.get_structure(0).stress is None
    _, stored = db.stored_derivatives(range(len(cuau)))
    _, _, fresh = featurize(cuau)
    assert_same_payload(stored, fresh)
    gradient = torch.ones(stored.n_atoms, db.descriptor.n_features, dtype=stored.radial_unit.dtype)
    with pytest.raises(ValueError, match="hold no distances, which the virial .stress. needs.*rebuild it"):
        stored.contract_with_virial(gradient, torch.zeros(stored.n_atoms, dtype=torch.long), 1)


def test_gzip_compression_and_pickling_for_workers(tmp_path, cuau):
    db = build(tmp_path / "db.h5", cuau, compression="gzip", compression_level=4)
    features = db.stored_features([1, 2])
    db.get_structure(0)
    clone = pickle.loads(pickle.dumps(db))
    assert clone._handle is None and not clone._structures
    assert torch.equal(clone.stored_features([1, 2]), features)
    with db:
        pass
    assert db._handle is None
    with pytest.raises(ValueError, match="compression"):
        HDF5StructureDataset(descriptor(), tmp_path / "x.h5", compression="zstd")


def test_energy_training_from_the_database_reads_features_only(tmp_path, cuau, monkeypatch):
    db = HDF5StructureDataset(descriptor(), tmp_path / "features.h5", sources=cuau, mode="build",
                              atomic_energies=REFERENCES)
    db.build_database(show_progress=False, persist_features=True)
    assert db.has_persisted_features() and not db.has_persisted_force_derivatives()

    def forbidden(*args, **kwargs):
        raise AssertionError("featurized or read structures during energy training")

    monkeypatch.setattr(BatchedFeaturizer, "_run", forbidden)
    monkeypatch.setattr(db, "get_structure", forbidden)
    config = TorchTrainingConfig(iterations=3, method=Adam(mu=0.01, batchsize=4), testpercent=25, split_seed=1,
                                 seed=2, force_weight=0.0, checkpoint_dir=None, save_best=False, show_progress=False)
    out = potential().train(dataset=db, config=config)
    assert np.isfinite(out.errors["RMSE_train"]).all()


def test_force_training_from_the_database_matches_training_from_structures(tmp_path, cuau, monkeypatch):
    db = build(tmp_path / "db.h5", cuau, atomic_energies=REFERENCES)
    config = TorchTrainingConfig(iterations=3, method=Adam(mu=0.01, batchsize=4), testpercent=25, split_seed=1,
                                 seed=2, force_weight=0.3, checkpoint_dir=None, save_best=False, show_progress=False)
    reference = potential()
    expected = reference.train(structures=cuau, config=replace(config, atomic_energies=REFERENCES))
    calls = []
    run = BatchedFeaturizer._run
    monkeypatch.setattr(BatchedFeaturizer, "_run", lambda *a, **k: calls.append(1) or run(*a, **k))
    from_db = potential()
    out = from_db.train(dataset=db, config=config)
    assert calls == []  # nothing featurized: features and derivatives came from the file
    for a, b in zip(reference.model.state_dict().values(), from_db.model.state_dict().values()):
        assert torch.equal(a, b)
    assert out.errors.equals(expected.errors)


def test_training_refuses_a_database_with_another_descriptor(tmp_path, cuau):
    db = build(tmp_path / "db.h5", cuau)
    other = TorchANNPotential({"Cu": [(4, "tanh")], "Au": [(4, "tanh")]}, descriptor(rad_order=5))
    with pytest.raises(ValueError, match=r"descriptor differs .*rad_order"):
        other.train(dataset=db, config=TorchTrainingConfig(iterations=1, show_progress=False, checkpoint_dir=None))


def test_cached_structure_dataset_features_once(cuau, monkeypatch):
    dataset = CachedStructureDataset(cuau, descriptor(), atomic_energies=REFERENCES, show_progress=False)
    assert len(dataset) == len(cuau)
    expected, _ = BatchedFeaturizer(descriptor())([s.positions for s in cuau[3:5]], [s.species for s in cuau[3:5]],
                                                  [s.cell for s in cuau[3:5]], [s.pbc for s in cuau[3:5]])
    assert torch.equal(dataset.stored_features([3, 4]), expected)
    monkeypatch.setattr(BatchedFeaturizer, "_run", lambda *a, **k: pytest.fail("featurized again"))
    config = TorchTrainingConfig(iterations=2, method=Adam(mu=0.01, batchsize=4), testpercent=25, force_weight=0.0,
                                 checkpoint_dir=None, save_best=False, show_progress=False)
    assert len(potential().train(dataset=dataset, config=config).errors) == 2


def test_tio2_database_matches_the_featurizer(tmp_path, shared_data):
    files = sorted((shared_data / "TiO2").glob("*.xsf"))[:6]
    desc = ChebyshevDescriptor(["Ti", "O"], 10, 6.0, 3, 3.5, min_cutoff=0.5)
    db = build(tmp_path / "tio2.h5", files, desc=desc)
    structures = [db.get_structure(i) for i in range(len(db))]
    features, _, expected = featurize(structures, desc)
    stored_features, stored = db.stored_derivatives(range(len(db)))
    assert torch.equal(stored_features, features)
    assert_same_payload(stored, expected)
    assert db.get_structure_identifier(0) == f"{files[0]}#frame=0"


def potential():
    return TorchANNPotential({"Cu": [(5, "tanh")], "Au": [(5, "tanh")]}, descriptor())


def test_dataloader_workers_open_their_own_handle(tmp_path, cuau):
    db = build(tmp_path / "db.h5", cuau, atomic_energies=REFERENCES)
    db.stored_features([0])  # the parent holds an open handle; workers must not reuse it
    config = TorchTrainingConfig(iterations=2, method=Adam(mu=0.01, batchsize=4), testpercent=25, split_seed=1,
                                 seed=2, force_weight=0.3, checkpoint_dir=None, save_best=False, show_progress=False)
    serial = potential().train(dataset=db, config=config)
    workers = potential().train(dataset=db, config=replace(config, num_workers=1))
    assert workers.errors.equals(serial.errors)


def test_payload_cache_reads_each_entry_once_within_its_bound(tmp_path, cuau, monkeypatch):
    build(tmp_path / "db.h5", cuau)
    reads = []
    read = PayloadReader._read_block

    def counting(self, indices, with_derivatives, dtype=None):
        reads.append(list(indices))
        return read(self, indices, with_derivatives, dtype)

    monkeypatch.setattr(PayloadReader, "_read_block", counting)
    db = HDF5StructureDataset(None, tmp_path / "db.h5", mode="load")
    first = db.stored_derivatives([3, 1, 3])
    again = db.stored_derivatives([1, 3])
    assert reads == [[1, 3]]  # one read of the two distinct entries; the second call is served from memory
    assert torch.equal(again[0], torch.cat([first[0][: cuau[3].n_atoms + cuau[1].n_atoms][cuau[3].n_atoms:],
                                            first[0][: cuau[3].n_atoms]]))
    expected = featurize([cuau[3], cuau[1], cuau[3]])
    assert_same_payload(first[1], expected[2])
    small = HDF5StructureDataset(None, tmp_path / "db.h5", mode="load", payload_cache_mb=0)
    reads.clear()
    small.stored_features([0])
    small.stored_features([0])
    assert reads == [[0], [0]]
    with pytest.raises(ValueError, match="payload_cache_mb"):
        HDF5StructureDataset(None, tmp_path / "db.h5", payload_cache_mb=-1)


def test_auto_mode_notices_changed_sources(tmp_path, cuau, cuau_file):
    path = tmp_path / "db.h5"
    build(path, cuau[:4])
    with pytest.raises(DatabaseError, match="other sources or settings"):
        HDF5StructureDataset(descriptor(), path, sources=cuau[4:8]).build_database(
            show_progress=False, persist_features=True, persist_force_derivatives=True)
    copy = tmp_path / "copy.extxyz"
    copy.write_bytes(cuau_file.read_bytes())
    build(tmp_path / "file.h5", [copy])
    write_extxyz(copy, cuau[:3])  # the same file name, other content
    with pytest.raises(DatabaseError, match="other sources or settings"):
        HDF5StructureDataset(descriptor(), tmp_path / "file.h5", sources=[copy]).build_database(
            show_progress=False, persist_features=True, persist_force_derivatives=True)


def test_build_database_and_reference_energies_read_a_list_of_sources(tmp_path, cuau):
    """--sources-from: one path per line, after the files named on the command line."""
    from aenet_core.cli import run

    paths = [tmp_path / f"s{k}.extxyz" for k in range(3)]
    for path, structure in zip(paths, cuau):
        write_extxyz(path, structure)
    listing = tmp_path / "sources.txt"
    listing.write_text(f"{paths[1]}\n\n{paths[2]}\n")
    run(["reference-energies", str(paths[0]), "--sources-from", str(listing), "--output", str(tmp_path / "r.json")])
    assert json.loads((tmp_path / "r.json").read_text())["metadata"]["n_samples_used"] == 3
    run(["build-database", str(paths[0]), "--sources-from", str(listing), "--output", str(tmp_path / "db.h5"),
         "--species", "Cu", "Au", "--rad-order", "2", "--rad-cutoff", "4.0", "--ang-order", "1", "--ang-cutoff", "3.0"])
    db = HDF5StructureDataset(None, tmp_path / "db.h5", mode="load")
    assert [db.get_structure_identifier(i) for i in range(len(db))] == [f"{path}#frame=0" for path in paths]


@pytest.mark.slow
def test_the_database_rules_pass_the_sources_as_a_list_file(tmp_path, cuau):
    """A command line holds a few thousand file names at most: the rules' commands do not grow with the sources."""
    from workflow_setup import default_config, dry_run

    data = tmp_path / "data"
    data.mkdir()
    for k in range(200):
        write_extxyz(data / f"structure_{k:03d}.extxyz", cuau[k % len(cuau)])
    config = default_config()
    config["runs"]["example"]["sources"] = str(data / "*.extxyz")
    jobs = dry_run(tmp_path, config)["jobs"]
    commands = [job["shellcmd"] for job in jobs if job["rule"] in ("reference_energies", "build_database")]
    assert len(commands) == 2 and all("structure_" not in command and len(command) < 1000 for command in commands)
    (build,) = [job for job in jobs if job["rule"] == "build_database"]
    assert all(f"--sources-from results/databases/{build['wildcards']['db']}/sources.txt" in command
               for command in commands)


def large_cell(repeat):
    """A periodic Cu-Au supercell of 4 repeat³ atoms, with energy and forces."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.8, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=1)
    atoms.symbols[::3] = "Au"
    n = len(atoms)
    return Structure(atoms.positions, atoms.get_chemical_symbols(), energy=-3.5 * n, forces=np.zeros((n, 3)),
                     cell=atoms.cell.array, pbc=[True] * 3)


def test_a_structure_too_large_for_the_memory_is_refused_before_it_is_featurized(tmp_path, cuau_file, monkeypatch):
    import aenet_core.data.hdf5.footprint as footprint

    write_extxyz(tmp_path / "large.extxyz", large_cell(8))
    featurized = []
    monkeypatch.setattr(database, "featurize_chunk", lambda *a, **k: featurized.append(1))
    monkeypatch.setattr(footprint, "available_memory", lambda: 0.05e9)
    with pytest.raises(footprint.ResourceError, match=re.escape(f"{tmp_path}/large.extxyz (frame 0): featurizing "
                                                                "its 2048 atoms needs about ") +
                       r"0\.[1-9]\d* GB .* and 0\.05 GB are available: split the structure"):
        build(tmp_path / "db.h5", [tmp_path / "large.extxyz", cuau_file])
    assert featurized == [] and not (tmp_path / "db.h5").exists()


def test_the_memory_estimate_is_at_least_what_featurizing_takes():
    """The peak of featurizing a structure with derivatives, measured in a fresh process after a first small
    featurization, against the estimate (bench/database.py --footprint measures more sizes).  Memory of its own
    (anonymous) only: on a busy machine the kernel drops torch's library pages and reads them in again."""
    from aenet_core.data.hdf5.footprint import featurizing_bytes

    probe = ("from pathlib import Path; from test_database import featurize, large_cell; "
             "kb = lambda key: int(next(l for l in Path('/proc/self/status').read_text().splitlines() "
             "if l.startswith(key + ':')).split()[1]) * 1024; "
             "s = large_cell(8); featurize([large_cell(1)]); before = kb('RssAnon'); "
             "featurize([s]); print(kb('VmHWM') - kb('RssFile') - kb('RssShmem') - before)")
    peak = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout)
    estimate = featurizing_bytes(large_cell(8), descriptor(), derivatives=True)
    assert peak <= estimate <= 4 * peak, (peak, estimate)


def test_a_database_too_large_for_the_disk_is_refused_before_anything_is_featurized(tmp_path, monkeypatch):
    import aenet_core.data.hdf5.footprint as footprint

    # Uncompressed, so that the estimate is of the file's size (a compressed one's is an upper bound).
    frames = tmp_path / "frames.extxyz"
    write_extxyz(frames, [replace(large_cell(1), positions=large_cell(1).positions + 0.01 * k) for k in range(60)])
    size = build(tmp_path / "full.h5", [frames], compression=None).database_file.stat().st_size
    featurized, calls = [], []
    featurize_chunk = database.featurize_chunk
    monkeypatch.setattr(database, "featurize_chunk", lambda *a, **k: featurized.append(1) or featurize_chunk(*a, **k))
    monkeypatch.setattr(footprint, "free_space", lambda folder: calls.append(folder) or free)
    free = 0.5 * size  # every frame is in the first chunk: the estimate is no extrapolation
    with pytest.raises(footprint.ResourceError, match=r"db\.h5: the database needs about .* GB \(estimated from "
                                                      r"the structures of the sources\), and .* GB are free in "
                                                      r".*: free some space"):
        build(tmp_path / "db.h5", [frames], compression=None)
    monkeypatch.setattr(database, "CHUNK_ATOMS", 40)  # extrapolated from the first 10 frames and the file's size
    free = 0.3 * size
    with pytest.raises(footprint.ResourceError, match=r"needs about .* GB \(extrapolated from the first structures "
                                                      r"and the sizes of the sources\)"):
        build(tmp_path / "db.h5", [frames], compression=None)
    assert featurized == [] and not (tmp_path / "db.h5").exists()
    free = 0.7 * size  # half the extrapolation fits: a warning
    with pytest.warns(UserWarning, match=r"\(extrapolated .*\), and .* GB are free .*: the build may run out of space"):
        build(tmp_path / "db.h5", [frames], compression=None)
    free, calls[:], featurized[:] = 1e12, [], []
    monkeypatch.setattr(footprint, "free_space", lambda folder: calls.append(folder) or (free if len(calls) < 3 else 0))
    with pytest.raises(footprint.ResourceError, match=r"full\.h5: 0 GB are left in .*, too little for the next .* GB "
                                                      r"\(.* GB written so far\)"):
        build(tmp_path / "full.h5", [frames], compression=None)  # the disk filled while the second chunk was featurized
    assert len(featurized) == 2 and (tmp_path / "full.h5").stat().st_size == size  # the previous file is kept


def test_the_memory_available_is_bounded_by_a_cgroup_limit(tmp_path):
    """A job's memory limit (cgroup v2 or v1, on its group or a parent) less what it cannot reclaim."""
    from aenet_core.data.hdf5.footprint import cgroup_room

    for folder, files in {"job": {"memory.max": "2000000000", "memory.stat": "anon 500000000\nfile 900000000"},
                          "job/step": {"memory.max": "max", "memory.stat": "anon 400000000"},
                          "memory/slurm/job": {"memory.limit_in_bytes": "3000000000",
                                               "memory.stat": "cache 5\ntotal_rss 1000000000"}}.items():
        (tmp_path / folder).mkdir(parents=True)
        for name, text in files.items():
            (tmp_path / folder / name).write_text(text + "\n")
    own = tmp_path / "cgroup"
    own.write_text("0::/job/step\n")
    assert cgroup_room(own, tmp_path) == 1.5e9
    own.write_text("4:memory:/slurm/job\n1:cpu:/\n")
    assert cgroup_room(own, tmp_path) == 2e9
    own.write_text("0::/\n")
    assert cgroup_room(own, tmp_path) == float("inf")
