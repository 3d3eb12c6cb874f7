"""HDF5StructureDataset's aenet-python API: compression, the persisted descriptor, features and derivatives,
structures-only and empty builds, entry metadata."""
import hashlib
import json

import h5py
import numpy as np
import pytest
import torch

from aenet_core.data import DatabaseError, IncompatibleDescriptorError
from aenet_core.descriptor import BatchedFeaturizer
from aenet_core.torch_training import HDF5StructureDataset
from training_setup import REFERENCES, dense_jacobian, descriptor, finite_difference_jacobian

CACHE_KEYS = ["schema_version", "cache_format", "descriptor_compat_json", "descriptor_compat_sha256", "storage_dtype",
              "contains_features", "contains_force_derivatives"]


def build(path, sources, desc="default", persist=True, **options):
    db = HDF5StructureDataset(descriptor() if desc == "default" else desc, path, sources=sources, mode="build",
                              atomic_energies=REFERENCES, **options)
    db.build_database(show_progress=False, persist_features=persist, persist_force_derivatives=persist)
    return db


@pytest.fixture(scope="module")
def small(cuau):
    return cuau[:6]


@pytest.fixture(scope="module")
def db(small, tmp_path_factory):
    return build(tmp_path_factory.mktemp("api") / "db.h5", small)


def raw_features(structures, desc=None):
    values, _ = BatchedFeaturizer(desc or descriptor())([s.positions for s in structures],
                                                        [s.species for s in structures],
                                                        [s.cell for s in structures], [s.pbc for s in structures])
    return values


@pytest.mark.parametrize("compression, level, h5py_filter", [("zlib", 5, ("gzip", 5)), ("gzip", 9, ("gzip", 9)),
                                                              ("lzf", 5, ("lzf", None)), (None, 5, (None, None))])
def test_every_compression_round_trips(db, small, tmp_path, compression, level, h5py_filter):
    other = build(tmp_path / "c.h5", small, compression=compression, compression_level=level)
    with h5py.File(other.database_file) as f:
        assert (f["features/values"].compression, f["features/values"].compression_opts) == h5py_filter
        assert (f["atoms/positions"].compression, f["atoms/positions"].compression_opts) == h5py_filter
    for i in range(len(small)):
        assert np.array_equal(other.get_structure(i).positions, small[i].positions)
        assert torch.equal(other.load_persisted_features(i), db.load_persisted_features(i))
        ours, theirs = other.load_persisted_force_derivatives(i), db.load_persisted_force_derivatives(i)
        for block in ("radial", "angular"):
            for name, value in ours[block].items():
                assert torch.equal(value, theirs[block][name]), (block, name)


def test_the_default_is_zlib_level_5_and_bad_settings_are_refused_with_the_reference_message(db, tmp_path):
    with h5py.File(db.database_file) as f:
        assert (f["entries/energy"].compression, f["entries/energy"].compression_opts) == ("gzip", 5)
    for level in (-1, 10, 2.5, True):
        with pytest.raises(ValueError, match="compression level must be between 0 and 9"):
            HDF5StructureDataset(descriptor(), tmp_path / "x.h5", compression_level=level)
    with pytest.raises(ValueError, match="compression library 'blosc' is not supported.*'zlib', 'gzip', 'lzf'"):
        HDF5StructureDataset(descriptor(), tmp_path / "x.h5", compression="blosc")


def test_persisted_features_equal_freshly_computed_ones(db, small):
    assert db.has_persisted_features() is True and db.has_persisted_force_derivatives() is True
    for i, structure in enumerate(small):
        stored = db.load_persisted_features(i)
        assert stored.dtype == descriptor().dtype and stored.shape == (structure.n_atoms, descriptor().n_features)
        torch.testing.assert_close(stored, raw_features([structure]), rtol=1e-12, atol=1e-12)
    assert db.load_persisted_features(-1).shape[0] == small[-1].n_atoms
    with pytest.raises(IndexError, match="out of range"):
        db.load_persisted_features(len(small))


def test_persisted_derivatives_match_finite_differences(db, small):
    desc, index = descriptor(), 4  # 8 atoms, forces, periodic
    structure, payload = small[index], db.load_persisted_force_derivatives(index)
    assert set(payload) == {"radial", "angular"}
    assert list(payload["radial"]) == ["center_idx", "neighbor_idx", "dG_drij", "neighbor_typespin"]
    assert payload["radial"]["dG_drij"].shape[1:] == (desc.rad_order + 1, 3)
    assert payload["angular"]["grads_i"].shape[1:] == (desc.ang_order + 1, 3)
    assert payload["angular"]["center_idx"].dtype == torch.int64
    def features(positions):
        moved = structure.copy()
        moved.positions[:] = positions.numpy()
        return raw_features([moved])

    fd = finite_difference_jacobian(features, torch.as_tensor(structure.positions), step=1e-5)
    torch.testing.assert_close(dense_jacobian(payload, structure.n_atoms, desc), fd, rtol=1e-6, atol=1e-7)


def test_an_entry_without_forces_has_no_persisted_derivatives(cuau, tmp_path):
    unforced = cuau[0].copy()
    unforced.forces = None
    db = build(tmp_path / "u.h5", [unforced, cuau[1]])
    assert db.load_persisted_force_derivatives(0) is None and db.load_persisted_force_derivatives(1) is not None


def test_descriptor_manifest_and_cache_info_round_trip(db, small):
    manifest = db.get_descriptor_manifest()
    assert list(manifest) == ["schema_version", "manifest_format", "descriptor_class", "config_json",
                              "config_sha256", "config"]
    assert manifest["config"] == json.loads(manifest["config_json"]) == descriptor().get_config()
    assert manifest["config_sha256"] == hashlib.sha256(manifest["config_json"].encode()).hexdigest()
    assert db.has_persisted_descriptor() and db.load_persisted_descriptor().get_config() == descriptor().get_config()
    reopened = HDF5StructureDataset(None, db.database_file, mode="load")
    assert reopened.descriptor.get_config() == manifest["config"]
    assert torch.equal(reopened.load_persisted_features(2), db.load_persisted_features(2))
    features = db.get_persisted_feature_cache_info()
    assert list(features) == CACHE_KEYS and features["storage_dtype"] == "float64"
    assert json.loads(features["descriptor_compat_json"]) == descriptor().identity()
    derivatives = db.get_force_derivative_cache_info()
    assert list(derivatives) == CACHE_KEYS + ["payload_format", "n_radial_features", "n_angular_features", "multi"]
    assert (derivatives["n_radial_features"], derivatives["n_angular_features"], derivatives["multi"]) == (5, 3, True)


def test_an_incompatible_descriptor_is_a_runtime_error_naming_the_parameter(db):
    with pytest.raises(RuntimeError, match=r"incompatible with the explicit descriptor.*rad_order=4.*rad_order=5") as err:
        HDF5StructureDataset(descriptor_with(rad_order=5), db.database_file, mode="load")
    assert isinstance(err.value, DatabaseError) and isinstance(err.value, IncompatibleDescriptorError)


def descriptor_with(**changes):
    from aenet_core.descriptor import ChebyshevDescriptor

    return ChebyshevDescriptor.from_config(descriptor().get_config() | changes)


def test_a_structures_only_database_needs_no_descriptor(small, tmp_path):
    db = build(tmp_path / "s.h5", small, desc=None, persist=False)
    reopened = HDF5StructureDataset(None, db.database_file, mode="load")
    assert len(reopened) == len(small) and reopened.descriptor is None
    for i, structure in enumerate(small):
        s = reopened.get_structure(i)
        assert s.species == structure.species and np.array_equal(s.forces, structure.forces)
    assert not reopened.has_persisted_descriptor() and not reopened.has_persisted_features()
    assert reopened.get_descriptor_manifest() is None and reopened.get_persisted_feature_cache_info() is None
    assert reopened.get_force_derivative_cache_info() is None
    for call, what in ((reopened.load_persisted_descriptor, "descriptor manifest"),
                       (lambda: reopened.load_persisted_features(0), "persisted features"),
                       (lambda: reopened.load_persisted_force_derivatives(0), "force-derivative cache"),
                       (lambda: reopened.species_of([0]), "requires a descriptor")):
        with pytest.raises(RuntimeError, match=what):
            call()
    with_descriptor = HDF5StructureDataset(descriptor(), db.database_file, mode="load")
    assert with_descriptor.species_of([0]).tolist() == [descriptor().species.index(x) for x in small[0].species]
    with pytest.raises(RuntimeError, match="requires a descriptor instance"):
        build(tmp_path / "p.h5", small, desc=None, persist=True)


def test_a_build_that_keeps_nothing_writes_an_empty_database_with_a_warning(small, tmp_path):
    with pytest.warns(UserWarning, match=f"no structure was left to store \\({len(small)} filtered out"):
        db = build(tmp_path / "e.h5", small, max_energy=-1e6)
    assert len(db) == 0 and len(HDF5StructureDataset(None, db.database_file, mode="load")) == 0
    with pytest.warns(UserWarning, match="no structure was left"):
        assert len(build(tmp_path / "n.h5", [])) == 0
    with pytest.raises(ValueError, match="sources must be provided to build_database"):
        build(tmp_path / "none.h5", None)


def test_entry_metadata_has_the_reference_keys_and_source_kind(db, small, tmp_path):
    assert list(db.get_entry_metadata(0)) == ["source_id", "frame_idx", "source_kind", "display_name", "name",
                                              "has_forces", "n_atoms", "energy"]
    assert db.get_entry_metadata(1)["source_kind"] == "structure"
    assert db.get_entry_metadata(1)["n_atoms"] == small[1].n_atoms


def test_persisted_state_is_false_or_none_before_a_build(tmp_path):
    db = HDF5StructureDataset(descriptor(), tmp_path / "later.h5")
    assert db.has_persisted_features() is False and db.has_persisted_force_derivatives() is False
    assert db.has_persisted_descriptor() is False and db.get_descriptor_manifest() is None


def test_the_command_line_refuses_an_empty_database_unless_allowed(tmp_path, recwarn, capsys):
    from aenet_core.cli import main

    main(["example-data", "--output", str(tmp_path / "data.extxyz"), "--n-structures", "3", "--seed", "1"])
    command = ["build-database", str(tmp_path / "data.extxyz"), "--output", str(tmp_path / "db.h5"), "--species",
               "Cu", "Au", "--rad-order", "2", "--rad-cutoff", "4.0", "--ang-order", "1", "--ang-cutoff", "3.0",
               "--max-energy=-1e6", "--compression", "zlib"]
    with pytest.raises(SystemExit):
        main(command)
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("aenet-core build-database failed: ") and "pass --allow-empty" in last
    assert not (tmp_path / "db.h5").exists()
    recwarn.clear()
    main(command + ["--allow-empty"])
    assert len(HDF5StructureDataset(None, tmp_path / "db.h5", mode="load")) == 0
    assert not [w for w in recwarn if "no structure was left" in str(w.message)]


def test_structures_only_databases_shard_together_but_not_with_featurized_ones(small, db, tmp_path):
    from aenet_core.data import ShardedDataset

    a = build(tmp_path / "a.h5", small[:2], desc=None, persist=False)
    b = build(tmp_path / "b.h5", small[2:], desc=None, persist=False)
    sharded = ShardedDataset.open([a.database_file, b.database_file])
    assert len(sharded) == len(small) and sharded.descriptor is None
    assert sharded.get_structure(3).species == small[3].species
    with pytest.raises(ValueError, match="descriptor: one stored \\(shard 0: none\\)"):
        ShardedDataset.open([a.database_file, db.database_file])
