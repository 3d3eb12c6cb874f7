"""Database shards: several databases trained on as one, empty shards, extended splits, the command line."""
import json
import pickle

import h5py
import numpy as np
import pytest
import torch

from aenet_core.cli import main, run
from aenet_core.data import HDF5StructureDataset, ShardedDataset, StructureDataset, StructureSource, open_databases
from aenet_core.derivatives import LocalDerivatives
from aenet_core.descriptor import BatchedFeaturizer, ChebyshevDescriptor
from aenet_core.example_data import make_cuau_structures
from aenet_core.split import RECIPE, Split
from aenet_core.structure import Structure
from aenet_core.torch_training import Adam, TorchANNPotential, TorchTrainingConfig
from training_setup import OnlyTheContract

REFERENCES = {"Cu": -0.5, "Au": -0.2}
N_A = 7  # entries of shard A; shard B holds the rest


def descriptor(**changes):
    params = dict(species=["Cu", "Au"], rad_order=4, rad_cutoff=4.5, ang_order=2, ang_cutoff=3.5, min_cutoff=0.5)
    return ChebyshevDescriptor(**(params | changes))


def build(path, sources, desc=None, **options):
    db = HDF5StructureDataset(desc or descriptor(), path, sources=sources, mode="build",
                              atomic_energies=options.pop("atomic_energies", REFERENCES), **options)
    db.build_database(show_progress=False, persist_features=True, persist_force_derivatives=True)
    return HDF5StructureDataset(None, path, mode="load")


@pytest.fixture(scope="module")
def structures():
    """Periodic cells with forces and stresses, some weighted or typed, and a molecule without forces (in B)."""
    cells = make_cuau_structures(11, seed=4)
    for s in cells[::3]:
        s.weight, s.config_type = 2.0, "md"
    molecule = Structure([[0, 0, 0], [2.5, 0, 0], [0, 2.4, 0.3]], ["Cu", "Au", "Cu"], energy=-1.0, name="molecule")
    return cells[:9] + [molecule] + cells[9:]


@pytest.fixture(scope="module")
def dbs(structures, tmp_path_factory):
    """(one database of every structure, shard A of the first N_A, shard B of the rest)."""
    folder = tmp_path_factory.mktemp("shards")
    return (build(folder / "all.h5", structures), build(folder / "a.h5", structures[:N_A]),
            build(folder / "b.h5", structures[N_A:]))


@pytest.fixture(scope="module")
def empty(tmp_path_factory):
    with pytest.warns(UserWarning, match="no structure was left"):
        return build(tmp_path_factory.mktemp("empty") / "empty.h5", [])


def shuffled_with_repeats(n, seed=0):
    order = np.random.default_rng(seed).permutation(n).tolist()
    return order + order[:4] + [order[0]] + list(range(N_A - 2, N_A + 2))  # repeats and a run across shards


def forced(dataset, indices):
    return [i for i in indices if dataset.has_forces(i)]


def assert_same_answers(dataset, expected, indices):
    """Every accessor of the StructureSource contract answers as ``expected`` does, for ``indices``."""
    assert len(dataset) == len(expected)
    assert dataset.geometry_sha256s == expected.geometry_sha256s
    assert dataset.atom_counts(indices) == expected.atom_counts(indices)
    assert dataset.energies(indices) == expected.energies(indices)
    assert torch.equal(dataset.species_of(indices), expected.species_of(indices))
    assert dataset.forces_of(indices) is None and expected.forces_of(indices) is None  # the molecule has none
    with_forces = forced(expected, indices)
    np.testing.assert_array_equal(dataset.forces_of(with_forces), expected.forces_of(with_forces))
    for mine, theirs in zip(dataset.stress_labels(indices), expected.stress_labels(indices), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    weights = {"md": 3.0}
    np.testing.assert_array_equal(dataset.loss_weights(indices, weights), expected.loss_weights(indices, weights))
    for i in set(indices):
        assert dataset.has_forces(i) == expected.has_forces(i)
        assert dataset.referenced_energy_per_atom(i) == expected.referenced_energy_per_atom(i)
        assert dataset.get_structure_identifier(i) == expected.get_structure_identifier(i)
        np.testing.assert_array_equal(dataset.get_structure(i).positions, expected.get_structure(i).positions)
    assert torch.equal(dataset.stored_features(indices), expected.stored_features(indices))
    assert_same_derivatives(dataset.stored_derivatives(with_forces), expected.stored_derivatives(with_forces),
                            dataset.atom_counts(with_forces))


def assert_same_derivatives(mine, theirs, atom_counts):
    """Equal features and derivative arrays (atom indices shifted as in one batch), hence equal gradients and
    virials from contracting them."""
    (features, derivatives), (expected_features, expected) = mine, theirs
    assert torch.equal(features, expected_features)
    assert derivatives.n_atoms == expected.n_atoms == features.shape[0]
    for name in LocalDerivatives._EDGE_FIELDS + LocalDerivatives._TRIPLET_FIELDS:
        assert torch.equal(getattr(derivatives, name), getattr(expected, name)), name
    gradient = torch.randn(features.shape, generator=torch.Generator().manual_seed(1), dtype=features.dtype)
    owner = torch.repeat_interleave(torch.arange(len(atom_counts)), torch.tensor(atom_counts))
    forces, virials = derivatives.contract_with_virial(gradient, owner, len(atom_counts))
    expected_forces, expected_virials = expected.contract_with_virial(gradient, owner, len(atom_counts))
    assert torch.equal(forces, expected_forces) and torch.equal(virials, expected_virials)
    assert virials.abs().max() > 0
    assert torch.equal(derivatives.contract(gradient), expected_forces)


def config(**changes):
    settings = dict(iterations=2, method=Adam(mu=0.01, batchsize=4), testpercent=25, split_seed=1, seed=2,
                    force_weight=0.3, checkpoint_dir=None, save_best=False, show_progress=False)
    return TorchTrainingConfig(**(settings | changes))


def potential():
    return TorchANNPotential({"Cu": [(5, "tanh")], "Au": [(5, "tanh")]}, descriptor())


def trained_weights(dataset, **changes):
    model = potential()
    out = model.train(dataset=dataset, config=config(**changes))
    return model.model.state_dict(), out


# ------------------------------------------------------------------------------- the dataset


def test_two_shards_answer_as_one_database_of_the_same_entries(dbs):
    whole, a, b = dbs
    sharded = ShardedDataset([a, b])
    assert isinstance(sharded, StructureSource)
    assert sharded.descriptor is a.descriptor and sharded.atomic_energies == REFERENCES
    assert sharded.has_persisted_features() and sharded.has_persisted_force_derivatives()
    assert_same_answers(sharded, whole, shuffled_with_repeats(len(whole)))
    assert sharded.locate(N_A) == (1, 0) and sharded.locate(-1) == (1, len(b) - 1)
    assert sharded.get_structure_identifier(N_A) == b.get_structure_identifier(0)


def test_shards_need_nothing_beyond_the_contract(dbs):
    whole, a, b = dbs
    sharded = ShardedDataset([OnlyTheContract(a), OnlyTheContract(b)])
    assert sharded.has_persisted_features() and sharded.has_persisted_force_derivatives()  # found by asking for them
    assert_same_answers(sharded, whole, shuffled_with_repeats(len(whole), seed=2))
    assert sharded.shard_name(1) == "shard 1"
    sharded.close()


def test_hashes_combine_the_shards_in_order(dbs):
    whole, a, b = dbs
    sharded = ShardedDataset([a, b])
    assert len({sharded.content_sha256, ShardedDataset([b, a]).content_sha256, a.content_sha256}) == 3
    assert sharded.recipe_sha256 not in (a.recipe_sha256, b.recipe_sha256)
    in_memory = StructureDataset([whole.get_structure(i) for i in range(2)], descriptor(), atomic_energies=REFERENCES)
    with pytest.warns(UserWarning, match="no persisted features"):
        assert ShardedDataset([a, in_memory]).recipe_sha256 is None
    single = ShardedDataset([a])  # one shard is its database: a split of it applies
    assert (single.content_sha256, single.recipe_sha256) == (a.content_sha256, a.recipe_sha256)
    Split.create(a, 30, 1).check(single)


def test_mismatched_shards_are_refused_naming_the_shard(dbs, tmp_path, structures):
    _, a, _ = dbs
    other = build(tmp_path / "other.h5", structures[N_A:], desc=descriptor(rad_cutoff=4.0))
    with pytest.raises(ValueError, match=r"shard 1 \(.*other\.h5\) differs .* descriptor rad_cutoff=4\.0 "
                                         r"\(shard 0: 4\.5\)"):
        ShardedDataset([a, other])
    references = build(tmp_path / "refs.h5", structures[N_A:], atomic_energies={"Cu": -0.4, "Au": -0.2})
    with pytest.raises(ValueError, match=r"shard 2 \(.*refs\.h5\) differs .* atomic_energies"):
        ShardedDataset([a, a, references])
    single = StructureDataset(structures[:2], descriptor(dtype=torch.float32), atomic_energies=REFERENCES)
    with pytest.raises(ValueError, match=r"shard 1 differs .* dtype=torch\.float32"):
        ShardedDataset([a, single])
    with pytest.raises(ValueError, match="at least one shard"):
        ShardedDataset([])


def test_stored_payloads_only_when_every_shard_has_them(dbs, structures):
    _, a, _ = dbs
    computed = StructureDataset(structures[N_A:], descriptor(), atomic_energies=REFERENCES)
    with pytest.warns(UserWarning, match="no persisted features in shard 1,"):
        mixed = ShardedDataset([a, computed])
    assert mixed.stored_features([0, N_A]) is None and mixed.stored_derivatives([0]) is None


def test_indices_out_of_range_and_none(dbs):
    whole, a, b = dbs
    sharded = ShardedDataset([a, b])
    with pytest.raises(IndexError, match="out of range"):
        sharded.energies([0, len(whole)])
    with pytest.raises(IndexError, match="out of range"):
        sharded.get_structure(len(whole))
    assert sharded.atom_counts([]) == [] and sharded.energies([]) == []


def test_pickled_shards_read_in_another_process(dbs):
    whole, a, b = dbs
    sharded = ShardedDataset([a, b])
    features = sharded.stored_features([1, N_A + 1])
    clone = pickle.loads(pickle.dumps(sharded))
    assert all(shard._handle is None for shard in clone.shards)
    assert torch.equal(clone.stored_features([1, N_A + 1]), features)
    with sharded:
        pass
    assert all(shard._handle is None for shard in sharded.shards)


def test_open_databases_one_path_is_the_database_itself(dbs):
    whole, a, b = dbs
    assert type(open_databases(a.database_file)) is HDF5StructureDataset
    assert type(open_databases([str(a.database_file)])) is HDF5StructureDataset
    opened = open_databases([a.database_file, b.database_file])
    assert type(opened) is ShardedDataset and opened.content_sha256 == ShardedDataset([a, b]).content_sha256


# ------------------------------------------------------------------------------- empty databases


def test_an_empty_database_is_a_valid_file_with_every_array(empty, dbs, tmp_path, structures):
    assert len(empty) == 0 and empty.has_persisted_features() and empty.has_persisted_force_derivatives()
    assert empty.geometry_sha256s == [] and empty.descriptor.identity() == descriptor().identity()
    assert empty.atomic_energies == REFERENCES
    with h5py.File(empty.database_file) as e, h5py.File(dbs[1].database_file) as full:
        names = []
        full.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        for name in names:
            assert e[name].dtype == full[name].dtype and e[name].ndim == full[name].ndim, name
    with pytest.warns(UserWarning, match="3 filtered out"):
        filtered = build(tmp_path / "filtered.h5", structures[:3], max_energy=-100.0)
    assert len(filtered) == 0 and filtered._attrs["n_filtered"] == 3
    with pytest.raises(ValueError, match="sources must be provided"):
        build(tmp_path / "refused.h5", None)
    assert not (tmp_path / "refused.h5").exists()


def test_empty_shards_contribute_nothing(dbs, empty):
    whole, a, b = dbs
    sharded = ShardedDataset([empty, a, empty, b, empty])
    assert_same_answers(sharded, whole, shuffled_with_repeats(len(whole), seed=1))
    assert sharded.locate(0) == (1, 0) and sharded.locate(N_A) == (3, 0)
    alone = ShardedDataset([empty])
    assert len(alone) == 0 and alone.geometry_sha256s == []


# ------------------------------------------------------------------------------- training


def test_training_on_one_shard_is_training_on_its_database(dbs):
    _, a, _ = dbs
    expected, expected_out = trained_weights(a)
    weights, out = trained_weights(ShardedDataset([a]))
    for name in expected:
        assert torch.equal(weights[name], expected[name]), name
    assert out.errors.equals(expected_out.errors)


def test_training_on_two_shards_with_forces_matches_one_database(dbs, monkeypatch):
    whole, a, b = dbs
    expected, expected_out = trained_weights(whole)
    calls = []
    run = BatchedFeaturizer._run
    monkeypatch.setattr(BatchedFeaturizer, "_run", lambda *args, **kw: calls.append(1) or run(*args, **kw))
    weights, out = trained_weights(ShardedDataset([a, b]))
    assert calls == []  # features and derivatives came from the shards
    assert np.isfinite(out.errors["RMSE_train"]).all() and np.isfinite(out.errors["RMSE_force_train"]).all()
    for name in expected:
        assert torch.equal(weights[name], expected[name]), name
    assert out.errors.equals(expected_out.errors)


# ------------------------------------------------------------------------------- extended splits


def test_an_extended_split_keeps_the_test_set_and_trains_on_the_new_entries(dbs, tmp_path):
    whole, a, b = dbs
    sharded = ShardedDataset([a, b])
    base = Split.create(a, testpercent=30, split_seed=5)
    extended = Split.extend(base, a, sharded)
    assert extended.test == base.test and extended.test
    assert extended.train == sorted(base.train + list(range(N_A, len(whole))))
    assert (extended.split_seed, extended.testpercent, extended.n_entries) == (5, 30.0, len(whole))
    assert extended.recipe != RECIPE and "every later entry is a training entry" in extended.recipe
    extended.check(sharded)
    path = tmp_path / "extended.json"
    extended.save(path)
    assert Split.load(path) == extended
    # One database holding the same entries extends the same way (compared entry by entry).
    merged = Split.extend(base, a, whole)
    assert (merged.train, merged.test) == (extended.train, extended.test)
    merged.check(whole)


def test_extending_refuses_a_dataset_that_does_not_begin_with_the_base(dbs):
    whole, a, b = dbs
    base = Split.create(a, testpercent=30, split_seed=5)
    with pytest.raises(ValueError, match="does not begin with the 7 entries"):
        Split.extend(base, a, ShardedDataset([b, a]))
    with pytest.raises(ValueError, match="the base split was drawn from a different dataset"):
        Split.extend(base, b, ShardedDataset([b, a]))


def test_a_new_entry_repeating_a_test_structure_moves_it_to_training(dbs, tmp_path):
    _, a, _ = dbs
    base = Split.create(a, testpercent=30, split_seed=5)
    repeat = build(tmp_path / "repeat.h5", [a.get_structure(base.test[0])])
    with pytest.warns(UserWarning, match="repeat a training structure"):
        extended = Split.extend(base, a, ShardedDataset([a, repeat]))
    assert extended.test == base.test[1:] and base.test[0] in extended.train and N_A in extended.train


# ------------------------------------------------------------------------------- the command line


def test_cli_split_extend_and_train_member_on_two_databases(tmp_path, structures, dbs):
    _, a, b = dbs
    base_split, split = tmp_path / "base.json", tmp_path / "split.json"
    main(["split", str(a.database_file), "--output", str(base_split), "--testpercent", "30", "--split-seed", "5"])
    main(["split", str(a.database_file), str(b.database_file), "--output", str(split), "--extend", str(base_split)])
    extended = Split.load(split)
    assert extended == Split.extend(Split.load(base_split), a, ShardedDataset([a, b]))
    with pytest.raises(SystemExit, match="needs --split-seed"):
        run(["split", str(a.database_file), "--output", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="give no --split-seed"):
        run(["split", str(a.database_file), "--output", str(tmp_path / "x.json"), "--extend", str(base_split),
             "--split-seed", "1"])
    member = tmp_path / "member_000"
    training = {"iterations": 2, "method": {"name": "adam", "mu": 0.01, "batchsize": 4}, "force_weight": 0.3,
                "save_best": False}
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"architecture": [[4, "tanh"]], "training": training}))
    main(["train-member", "--database", str(a.database_file), str(b.database_file), "--split", str(split),
          "--settings", str(settings), "--member-index", "0", "--seed", "3", "--output-dir", str(member)])
    assert (member / "model.pt").exists()
    main(["aggregate", str(tmp_path)])
    main(["evaluate", str(tmp_path), "--database", str(a.database_file), str(b.database_file), "--split", str(split),
          "--output-dir", str(tmp_path / "evaluation")])
    summary = json.loads((tmp_path / "evaluation" / "summary.json").read_text())
    assert summary["n_structures"] == len(extended.test)


def test_cli_one_database_is_read_as_before(tmp_path, dbs):
    _, a, _ = dbs
    path = tmp_path / "split.json"
    main(["split", str(a.database_file), "--output", str(path), "--split-seed", "5"])
    assert Split.load(path) == Split.create(a, 10.0, 5)
