"""Committees: training layout and seeds, single-member jobs and aggregation, resume, failures,
ensemble statistics, dataset prediction, and calibrated uncertainty."""
import hashlib
import json
import logging
import os
import shutil
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from aenet_core.committee import (AenetEnsembleResult, TorchCommitteeConfig, TorchCommitteePotential,
                                  TorchCommitteeTrainResult, aggregate_committee, train_member)
from aenet_core.baselines import WEAK_FIT_RATIO, trivial_errors, weak_fit_warnings
from aenet_core.committee.member import DATA_FORCE_WEIGHT, with_data_defaults
from aenet_core.descriptor import BatchedFeaturizer
from aenet_core.example_data import make_cuau_structures
from aenet_core.files import FileFormatError
from aenet_core.model.checkpoint import ModelFileError
from aenet_core.split import Split
from aenet_core.structure import Structure
from aenet_core.torch_featurize import ChebyshevDescriptor
from aenet_core.torch_training import Adam, StructureDataset, TorchANNPotential, TorchTrainingConfig
from aenet_core.uncertainty import Calibration
from training_setup import MEMBER_ARCH as ARCH
from training_setup import REFERENCES, descriptor
from training_setup import member_config as config


# Not the shared ``cuau``: its one-atom cells have zero forces by symmetry, leaving no force spread to compare.
@pytest.fixture(scope="module")
def cuau12():
    return make_cuau_structures(12, seed=4)


def weights(potential):
    return [t.clone() for t in potential.model.state_dict().values()]


def test_seed_page_committee_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    structures = [Structure(positions=np.array([[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.0, 0.9, 0.0]]),
                            species=["H"] * 3, energy=0.0),
                  Structure(positions=np.array([[0.1, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
                            species=["H"] * 3, energy=0.5)]
    desc = ChebyshevDescriptor(species=["H"], rad_order=1, rad_cutoff=2.0, ang_order=0, ang_cutoff=2.0,
                               min_cutoff=0.1)
    committee = TorchCommitteePotential({"H": [(4, "tanh")]}, descriptor=desc)
    train_config = TorchTrainingConfig(iterations=1, method=Adam(mu=0.001, batchsize=1), testpercent=50, split_seed=7,
                                       atomic_energies={"H": 0.0}, normalize_features=False, normalize_energy=False,
                                       memory_mode="cpu", device="cpu", checkpoint_dir=None, checkpoint_interval=0,
                                       max_checkpoints=None, save_best=False, use_scheduler=False,
                                       show_progress=False)
    committee_config = TorchCommitteeConfig(num_members=2, base_seed=11, max_parallel=1, output_dir="committee_run")
    result = committee.train(structures=structures, config=train_config, committee_config=committee_config)
    assert result.metadata_path == (tmp_path / "committee_run" / "committee_metadata.json")
    assert [member.seed for member in result.members] == [11, 12]
    assert "Training statistics:" in str(result) and "±" in str(result)
    assert len(result.trainouts[0].errors) == 1 and len(result.to_dataframe()) == 2
    for member in ("member_000", "member_001"):
        assert {p.name for p in (tmp_path / "committee_run" / member).iterdir()} == {
            "model.pt", "history.json", "history.csv", "summary.json"}
    reloaded = TorchCommitteePotential.from_directory(result.output_dir)
    predictions = reloaded.predict(structures, eval_forces=False)
    assert len(predictions) == 2 and predictions[0].num_members == 2
    assert predictions.member_outputs[0].total_energy[0] == predictions[0].member_energies[0]
    assert reloaded.members[1].extra_metadata == {"committee_member_index": 1, "committee_seed": 12,
                                                  "committee_split_seed": 7}
    test_dataset = StructureDataset(structures, desc, atomic_energies={"H": 0.0})
    dataset_predictions = reloaded.predict_dataset(test_dataset)
    assert dataset_predictions.to_dataframe()["source_index"].tolist() == [0, 1]
    assert len(predictions.top_uncertain(n=10)) == 2
    members = reloaded.to_aenet_ascii(tmp_path / "ascii_committee", prefix="committee", structures=structures)
    assert members[0] == {"H": str(tmp_path / "ascii_committee" / "member_000" / "committee.H.nn.ascii")}
    for member, files in zip(reloaded.members, members):
        again = TorchANNPotential.from_aenet_ascii(files).predict(structures).total_energy
        np.testing.assert_allclose(again, member.predict(structures).total_energy, rtol=0, atol=1e-8)


def test_members_share_the_split_and_differ_by_seed(trained_committee):
    committee, result, out = trained_committee
    metadata = json.loads((out / "committee_metadata.json").read_text())
    assert [m["seed"] for m in metadata["members"]] == [11, 12, 13]
    assert {m["split_seed"] for m in metadata["members"]} == {2}
    assert metadata["descriptor_config"] == descriptor().get_config() and metadata["architecture"]["Cu"]
    csv = (out / "member_000" / "history.csv").read_text().splitlines()
    assert csv[0] == ("epoch,train_energy_rmse,test_energy_rmse,train_force_rmse,test_force_rmse,train_stress_rmse,"
                      "test_stress_rmse,learning_rate,epoch_time")
    assert "nan" not in csv[1].split(",")[-2:] and float(csv[1].split(",")[-1]) > 0  # real lr and epoch time
    a, b = weights(committee.members[0]), weights(committee.members[1])
    assert not all(torch.equal(x, y) for x, y in zip(a, b))
    stats = result.stats["final_RMSE_test"]
    values = result.to_dataframe()["final_RMSE_test"].to_numpy()
    assert stats["mean"] == pytest.approx(values.mean()) and stats["std"] == pytest.approx(values.std())
    assert stats["n"] == 3


def test_a_single_member_job_reproduces_the_committee_member(trained_committee, cuau, tmp_path):
    committee, _, _ = trained_committee
    dataset = StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES)
    split = Split.create(dataset, 25, 2)
    potential = TorchANNPotential(ARCH, descriptor())
    summary = train_member(potential, tmp_path / "member_001", config(), dataset, split, member_index=1, seed=12)
    assert summary["status"] == "completed"
    for x, y in zip(weights(potential), weights(committee.members[1])):
        assert torch.equal(x, y)
    path = aggregate_committee(tmp_path)
    loaded = TorchCommitteePotential.from_directory(path)
    assert len(loaded.members) == 1 and json.loads(path.read_text())["execution_mode"] == "aggregated"


@pytest.fixture
def straight_member(cuau12, tmp_path):
    """(dataset, split, 4-epoch config, a member trained straight through) for the resume tests."""
    dataset = StructureDataset(cuau12, descriptor(), atomic_energies=REFERENCES)
    split = Split.create(dataset, 25, 2)
    full = config(iterations=4, checkpoint_interval=1)
    straight = TorchANNPotential(ARCH, descriptor())
    train_member(straight, tmp_path / "straight", full, dataset, split, seed=3)
    return dataset, split, full, straight


def killed_after_two_epochs(member_dir, full, dataset, split):
    """A member "killed" after epoch 2: its checkpoints exist, model.pt, summary.json and history do not."""
    train_member(TorchANNPotential(ARCH, descriptor()), member_dir, replace(full, iterations=2), dataset, split,
                 seed=3)
    for name in ("model.pt", "summary.json", "history.json", "history.csv"):
        (member_dir / name).unlink()
    return member_dir


def test_an_interrupted_member_resumes_from_its_checkpoint(straight_member, tmp_path, capsys):
    dataset, split, full, straight = straight_member
    interrupted = killed_after_two_epochs(tmp_path / "interrupted", full, dataset, split)
    resumed = TorchANNPotential(ARCH, descriptor())
    capsys.readouterr()
    summary = train_member(resumed, interrupted, full, dataset, split, seed=3)
    assert summary["metrics"]["epochs_recorded"] == 4
    assert summary["resumed_from"] == "checkpoints/checkpoint_epoch_0001.pt"  # the log and summary say so
    err = capsys.readouterr().err
    assert "resuming from" in err and "checkpoint_epoch_0001.pt (2 of 4 epochs done)" in err
    for x, y in zip(weights(straight), weights(resumed)):
        assert torch.equal(x, y)
    # Checkpoints made for other settings are not trusted: the member trains from scratch.
    other = replace(full, method=Adam(mu=0.02, batchsize=4))
    for name in ("model.pt", "summary.json"):
        (interrupted / name).unlink()
    stale, fresh = TorchANNPotential(ARCH, descriptor()), TorchANNPotential(ARCH, descriptor())
    assert train_member(stale, interrupted, other, dataset, split, seed=3)["resumed_from"] is None
    train_member(fresh, tmp_path / "fresh", other, dataset, split, seed=3)
    for x, y in zip(weights(stale), weights(fresh)):
        assert torch.equal(x, y)


def test_a_truncated_checkpoint_falls_back_to_an_older_one_or_a_fresh_start(straight_member, tmp_path, capsys):
    dataset, split, full, straight = straight_member
    for damaged, resumed_from in (((1,), "checkpoints/checkpoint_epoch_0000.pt"), ((0, 1), None)):
        member = killed_after_two_epochs(tmp_path / f"member_{len(damaged)}", full, dataset, split)
        for epoch in damaged:  # as a kill -9 during torch.save would leave them
            path = member / f"checkpoints/checkpoint_epoch_{epoch:04d}.pt"
            path.write_bytes(path.read_bytes()[:1000])
        capsys.readouterr()
        resumed = TorchANNPotential(ARCH, descriptor())
        summary = train_member(resumed, member, full, dataset, split, seed=3)
        err = capsys.readouterr().err
        assert summary["status"] == "completed" and summary["resumed_from"] == resumed_from, summary["error"]
        assert "checkpoint_epoch_0001.pt does not load, removed" in err
        assert ("training from the start" in err) == (resumed_from is None)
        for x, y in zip(weights(straight), weights(resumed)):
            assert torch.equal(x, y)


def test_a_member_resumed_from_its_final_checkpoint_has_the_same_outputs(straight_member, tmp_path):
    dataset, split, full, straight = straight_member
    member = tmp_path / "straight"
    before = {name: (member / name).read_bytes() for name in ("summary.json", "history.json", "history.csv")}
    for name in ("model.pt", *before):
        (member / name).unlink()
    again = TorchANNPotential(ARCH, descriptor())
    summary = train_member(again, member, full, dataset, split, seed=3)
    assert summary["resumed_from"] == "checkpoints/checkpoint_epoch_0003.pt"  # zero epochs left to train
    original = json.loads(before["summary.json"])
    assert summary["metrics"] == original["metrics"] and summary["training_config"] == original["training_config"]
    for name in ("history.json", "history.csv"):
        assert (member / name).read_bytes() == before[name]
    for x, y in zip(weights(straight), weights(again)):
        assert torch.equal(x, y)
    assert TorchANNPotential.from_file(member / "model.pt").training_config.iterations == full.iterations


def test_a_member_whose_training_diverges_is_failed_not_completed(cuau12, tmp_path):
    structures = [replace(s, forces=s.forces.copy()) for s in cuau12]
    dataset = StructureDataset(structures, descriptor(), atomic_energies=REFERENCES)
    dataset.structures[0].forces[0, 0] = 1e200  # past any read-time check, as a damaged label would be
    summary = train_member(TorchANNPotential(ARCH, descriptor()), tmp_path / "member", config(), dataset,
                           Split.create(dataset, 25, 2), seed=3)
    assert summary["status"] == "failed" and "training diverged" in summary["error"], summary
    assert "final_RMSE_force_train=inf" in summary["error"] or "final_RMSE_train=nan" in summary["error"]
    assert not (tmp_path / "member" / "model.pt").exists()


def test_a_committee_refuses_a_member_model_it_did_not_write(trained_committee, tmp_path):
    _, _, out = trained_committee
    copy = tmp_path / "committee"
    shutil.copytree(out, copy)
    shutil.copy(copy / "member_000/model.pt", copy / "member_001/model.pt")  # loads, but is not member 1's
    with pytest.raises(ModelFileError, match=r"member_001/model.pt: not the model file member 1 wrote"):
        TorchCommitteePotential.from_directory(copy)


def test_the_exported_committee_manifest_records_each_file_sha256(trained_committee, tmp_path):
    committee, _, _ = trained_committee
    members = committee.to_aenet_ascii(tmp_path)
    recorded = json.loads((tmp_path / "manifest.json").read_text())["sha256"]
    assert len(recorded) == 2 * sum(len(m) for m in members) == 12  # .nn.ascii and binary .nn files
    for name, digest in recorded.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest


def test_a_failing_member_is_recorded_and_the_others_kept(cuau12, tmp_path):
    committee = TorchCommitteePotential(ARCH, descriptor())
    with pytest.warns(UserWarning, match="1 committee member"):
        result = committee.train(structures=cuau12, config=config(iterations=1), committee_config=TorchCommitteeConfig(
            num_members=2, member_seeds=[1, 2], devices=["cpu", "nonsense-device"], output_dir=tmp_path))
    assert [m.status for m in result.members] == ["completed", "failed"]
    assert "nonsense-device" in result.failed_members[0].error and "failed" in str(result)
    metadata = json.loads(result.metadata_path.read_text())
    assert len(metadata["failures"]) == 1 and metadata["failures"][0]["model_path"] is None
    assert len(TorchCommitteePotential.from_directory(tmp_path).members) == 1
    # A smaller committee in the same folder does not pick up the earlier run's member_001.
    again = committee.train(structures=cuau12, config=config(iterations=1),
                            committee_config=TorchCommitteeConfig(num_members=1, member_seeds=[1], output_dir=tmp_path))
    assert [m.member_index for m in again.members] == [0]


def test_ensemble_statistics():
    forces = np.random.default_rng(0).normal(size=(3, 4, 3))
    r = AenetEnsembleResult.from_member_predictions([1.0, 2.0, 4.0], forces)
    assert r.energy == r.energy_mean == pytest.approx(7 / 3) and r.energy_std == pytest.approx(np.std([1, 2, 4]))
    np.testing.assert_allclose(r.forces_std, forces.std(0))
    deviation = forces - forces.mean(0)  # DP-GEN's deviation per atom: sqrt(<|F_i - <F_i>|^2>) over members
    np.testing.assert_allclose(r.force_std, np.sqrt((deviation ** 2).sum(2).mean(0)), rtol=1e-12)
    assert r.force_std.shape == (4,)
    ref = AenetEnsembleResult.from_member_predictions([1.0, 2.0, 4.0], forces, aggregation="reference",
                                                      reference_member=2)
    assert ref.energy == 4.0 and np.array_equal(ref.forces, forces[2]) and ref.energy_mean == r.energy_mean
    with pytest.raises(ValueError, match="aggregation"):
        AenetEnsembleResult.from_member_predictions([1.0], aggregation="median")
    with pytest.raises(ValueError, match="reference_member"):
        AenetEnsembleResult.from_member_predictions([1.0, 2.0], aggregation="reference", reference_member=5)


def test_dataset_prediction_tables_and_selection(trained_committee, cuau12):
    committee, _, _ = trained_committee
    dataset = StructureDataset(cuau12, descriptor(), atomic_energies=REFERENCES)
    result = committee.predict_dataset(dataset, indices=[7, 2, 5], eval_forces=True)
    table = result.to_dataframe()
    assert table["index"].tolist() == [0, 1, 2] and table["source_index"].tolist() == [7, 2, 5]
    members = np.array([m.predict([cuau12[2]]).total_energy[0] for m in committee.members])
    assert table.loc[1, "energy_mean"] == pytest.approx(members.mean(), abs=1e-9)
    assert table.loc[1, "energy_std"] == pytest.approx(members.std(), abs=1e-9)
    top = result.top_uncertain(2)
    assert top["energy_std"].tolist() == sorted(table["energy_std"], reverse=True)[:2]
    assert result[0].forces.shape == (cuau12[7].n_atoms, 3) and np.all(result.max_force_std > 0)


def _member_forces(committee, structure):
    return np.array([m.predict([structure], eval_forces=True).forces[0] for m in committee.members])


def test_force_spread_per_structure_is_computed_from_the_members_forces(trained_committee, cuau12):
    committee, _, _ = trained_committee
    result = committee.predict([cuau12[7], cuau12[2]], eval_forces=True)
    spreads = [np.linalg.norm(_member_forces(committee, s).std(0), axis=1) for s in (cuau12[7], cuau12[2])]
    np.testing.assert_allclose(result.max_force_std, [s.max() for s in spreads], rtol=1e-10)
    np.testing.assert_allclose(result.mean_force_std, [s.mean() for s in spreads], rtol=1e-10)
    table = result.to_dataframe()
    np.testing.assert_array_equal(table["max_force_std"], result.max_force_std)
    np.testing.assert_array_equal(table["mean_force_std"], result.mean_force_std)
    assert result.top_uncertain(1, metric="max_force_std")["index"].tolist() == [int(np.argmax(result.max_force_std))]
    energy_only = committee.predict([cuau12[7]])
    assert energy_only[0].force_std is None and np.isnan(energy_only.max_force_std).all()


def test_deprecated_force_uncertainty_names_warn_and_keep_their_meaning(trained_committee, cuau12):
    committee, _, _ = trained_committee
    result = committee.predict([cuau12[7], cuau12[2]], eval_forces=True)
    old = [_member_forces(committee, s).std(0).mean(1) for s in (cuau12[7], cuau12[2])]  # mean over x, y, z
    with pytest.warns(DeprecationWarning, match="'force_uncertainty' is deprecated; use 'force_std'") as caught:
        np.testing.assert_allclose(result[0].force_uncertainty, old[0], rtol=1e-10)
    assert caught[0].filename == __file__  # points at the caller's line
    with pytest.warns(DeprecationWarning, match="use 'max_force_std'.*mean over x, y, z"):
        np.testing.assert_allclose(result.max_force_uncertainty, [o.max() for o in old], rtol=1e-10)
    with pytest.warns(DeprecationWarning, match="use 'mean_force_std'"):
        np.testing.assert_allclose(result.mean_force_uncertainty, [o.mean() for o in old], rtol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # building the table reads no deprecated name
        table = result.to_dataframe()
    np.testing.assert_allclose(table["max_force_uncertainty"], [o.max() for o in old], rtol=1e-10)
    np.testing.assert_allclose(table["mean_force_uncertainty"], [o.mean() for o in old], rtol=1e-10)
    assert np.all(table["max_force_std"] > table["max_force_uncertainty"])  # the norm exceeds the mean
    for rank in (lambda: result.sort_by("max_force_uncertainty"),
                 lambda: result.top_uncertain(1, metric="mean_force_uncertainty")):
        with pytest.warns(DeprecationWarning, match="force_uncertainty' is deprecated"):
            rank()


def test_calibration_recovers_a_known_scale_and_is_reloaded(trained_committee, cuau12, tmp_path):
    rng = np.random.default_rng(1)
    stds = rng.uniform(0.01, 0.1, size=4000)
    calibration = Calibration.fit(2.5 * stds * rng.normal(size=stds.size), stds)
    assert calibration.factor == pytest.approx(2.5, rel=0.05)
    curve = calibration.curve
    np.testing.assert_allclose(curve["observed_rmse"], curve["predicted_std"], rtol=0.15)
    with pytest.raises(ValueError, match="at least 2"):
        Calibration.fit([0.1, 0.2], [0.0, 0.1])

    committee, _, out = trained_committee
    dataset = StructureDataset(cuau12, descriptor(), atomic_energies=REFERENCES)
    fitted = committee.calibrate(dataset, indices=range(len(cuau12)), n_bins=3)
    predictions = committee.predict_dataset(dataset)
    errors = (predictions.energy_mean - np.array(dataset.energies(range(len(cuau12))))) / predictions.n_atoms
    assert fitted.factor == pytest.approx(np.sqrt(np.mean((errors * predictions.n_atoms / predictions.energy_std)
                                                          ** 2)))
    assert np.allclose(predictions.to_dataframe()["energy_std_calibrated"], fitted.factor * predictions.energy_std)
    copy = tmp_path / "committee"
    shutil.copytree(out, copy)
    fitted.save(copy / "calibration.json")
    assert TorchCommitteePotential.from_directory(copy).calibration_factor == fitted.factor


@pytest.mark.slow
def test_parallel_members_equal_sequential_ones(cuau12, tmp_path):
    results = {}
    for parallel in (1, 2):
        committee = TorchCommitteePotential(ARCH, descriptor())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            committee.train(structures=cuau12, config=config(iterations=2), committee_config=TorchCommitteeConfig(
                num_members=2, base_seed=7, max_parallel=parallel, output_dir=tmp_path / str(parallel)))
        results[parallel] = [weights(m) for m in committee.members]
    for a, b in zip(results[1], results[2]):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert json.loads((tmp_path / "2" / "committee_metadata.json").read_text())["execution_mode"] == "parallel"


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_members=0), "num_members"),
    (dict(num_members=2, member_seeds=[1]), "member_seeds"),
    (dict(num_members=2, max_parallel=0), "max_parallel"),
    (dict(num_members=2, devices=[]), "devices"),
    (dict(num_members=True), "num_members"),
])
def test_committee_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TorchCommitteeConfig(**kwargs)


def test_checkpoints_for_other_references_or_a_longer_run_are_not_resumed(cuau12, tmp_path):
    dataset = StructureDataset(cuau12, descriptor(), atomic_energies=REFERENCES)
    split = Split.create(dataset, 25, 2)
    settings = config(iterations=3, checkpoint_interval=1)
    member = tmp_path / "member"
    train_member(TorchANNPotential(ARCH, descriptor()), member, settings, dataset, split, seed=3)
    shorter, fresh_short = TorchANNPotential(ARCH, descriptor()), TorchANNPotential(ARCH, descriptor())
    summary = train_member(shorter, member, replace(settings, iterations=2), dataset, split, seed=3)
    train_member(fresh_short, tmp_path / "fresh_short", replace(settings, iterations=2), dataset, split, seed=3)
    assert summary["metrics"]["epochs_recorded"] == 2
    assert all(torch.equal(x, y) for x, y in zip(weights(shorter), weights(fresh_short)))
    other = StructureDataset(cuau12, descriptor(), atomic_energies={"Cu": -1.0, "Au": -2.0})
    moved = TorchANNPotential(ARCH, descriptor())
    summary = train_member(moved, member, replace(settings, atomic_energies=None), other, Split.create(other, 25, 2),
                           seed=3)
    assert summary["status"] == "completed", summary["error"]
    assert moved.model.atomic_energies.tolist() == [-1.0, -2.0]
    assert json.loads((member / "summary.json").read_text())["metrics"]["epochs_recorded"] == 3


def test_committee_prediction_featurizes_once_for_all_members(trained_committee, cuau12, monkeypatch):
    committee, _, _ = trained_committee
    expected = [m.predict(cuau12[:5], eval_forces=True) for m in committee.members]
    calls = []
    run = BatchedFeaturizer._run
    monkeypatch.setattr(BatchedFeaturizer, "_run", lambda *a, **k: calls.append(1) or run(*a, **k))
    result = committee.predict(cuau12[:5], eval_forces=True)
    assert len(calls) == 1 and len(committee.members) == 3
    for k, out in enumerate(expected):
        np.testing.assert_allclose(result.member_outputs[k].total_energy, out.total_energy, rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.concatenate(result.member_outputs[k].forces), np.concatenate(out.forces),
                                   rtol=0, atol=1e-12)


def test_committee_metadata_of_another_schema_or_damaged_is_refused_naming_the_file(trained_committee, tmp_path):
    _, _, out = trained_committee
    metadata = json.loads((out / "committee_metadata.json").read_text())
    assert (metadata["format"], metadata["schema_version"]) == ("aenet_core.committee", "1.0")
    copy = tmp_path / "committee_metadata.json"
    copy.write_text(json.dumps({**metadata, "schema_version": "9.0"}))
    with pytest.raises(FileFormatError, match=r"committee_metadata\.json: unsupported committee metadata schema "
                                              r"'9\.0' is newer"):
        TorchCommitteeTrainResult.from_metadata(copy)
    copy.write_text("{broken")
    with pytest.raises(FileFormatError, match=r"committee_metadata\.json: not valid JSON.*committee metadata"):
        TorchCommitteeTrainResult.from_metadata(copy)


def test_a_member_writes_its_files_into_its_folder_without_changing_directory(cuau12, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "chdir", lambda *_: pytest.fail("the working directory of the host process changed"))
    dataset = StructureDataset(cuau12, descriptor(), atomic_energies=REFERENCES)
    summary = train_member(TorchANNPotential(ARCH, descriptor()), tmp_path / "member", config(iterations=1,
                           save_energies=True), dataset, Split.create(dataset, 25, 2), seed=1)
    assert summary["status"] == "completed", summary["error"]
    assert (tmp_path / "member" / "energies.train.0").exists() and not (tmp_path / "energies.train.0").exists()


def test_a_warm_started_member_starts_from_the_given_model(straight_member, tmp_path):
    dataset, split, full, straight = straight_member
    initial = tmp_path / "straight/model.pt"
    untrained = TorchANNPotential(ARCH, descriptor())
    summary = train_member(untrained, tmp_path / "zero", replace(full, iterations=0), dataset, split, seed=5,
                           initial_model=initial)
    assert summary["status"] == "completed" and summary["initial_model"] == str(initial)
    for name, value in straight.model.state_dict().items():  # weights and normalisation: the given model's
        assert torch.equal(value, untrained.model.state_dict()[name]), name
    warm, scratch = TorchANNPotential(ARCH, descriptor()), TorchANNPotential(ARCH, descriptor())
    train_member(warm, tmp_path / "warm", replace(full, iterations=1), dataset, split, seed=5, initial_model=initial)
    train_member(scratch, tmp_path / "scratch", replace(full, iterations=1), dataset, split, seed=5)
    first_epoch = [json.loads((tmp_path / name / "history.json").read_text())["train_energy_rmse"][0]
                   for name in ("warm", "scratch")]
    assert first_epoch[0] < first_epoch[1]


def test_a_warm_start_from_another_architecture_is_refused(straight_member, tmp_path):
    dataset, split, full, _ = straight_member
    other = TorchANNPotential({"Cu": [(3, "tanh")], "Au": [(3, "tanh")]}, descriptor())
    summary = train_member(other, tmp_path / "other", full, dataset, split, seed=5,
                           initial_model=tmp_path / "straight/model.pt")
    assert summary["status"] == "failed" and "descriptor or architecture differs" in summary["error"]


def test_a_member_of_data_with_forces_trains_on_them_unless_told_otherwise(cuau12, capsys):
    dataset = StructureDataset(cuau12, descriptor(), atomic_energies=REFERENCES)
    indices = list(range(len(dataset)))
    assert with_data_defaults({"iterations": 3}, dataset, indices) == {"iterations": 3,
                                                                       "force_weight": DATA_FORCE_WEIGHT}
    assert f"training on them with force_weight {DATA_FORCE_WEIGHT}" in capsys.readouterr().err
    assert with_data_defaults({"force_weight": 0.0}, dataset, indices) == {"force_weight": 0.0}
    energies_only = StructureDataset([replace(s, forces=None, stress=None) for s in cuau12], descriptor(),
                                     atomic_energies=REFERENCES)
    assert with_data_defaults({}, energies_only, indices) == {}


def test_errors_close_to_predicting_nothing_are_warned_about(cuau12, tmp_path, capsys):
    dataset = StructureDataset(cuau12, descriptor(), atomic_energies=REFERENCES)
    split = Split.create(dataset, 25, 2)
    trivial = trivial_errors(dataset, split)
    forces = np.concatenate([s.forces for s in (cuau12[i] for i in split.test)])
    train_mean = np.mean([dataset.referenced_energy_per_atom(i) for i in split.train])
    test_energies = np.array([dataset.referenced_energy_per_atom(i) for i in split.test])
    assert trivial["force_rmse_predicting_zero"] == pytest.approx(np.sqrt(np.mean(forces ** 2)))
    assert trivial["energy_rmse_predicting_mean"] == pytest.approx(np.sqrt(np.mean((test_energies - train_mean) ** 2)))
    # One epoch at a tiny learning rate: no better than predicting zero forces; the warning says so.
    summary = train_member(TorchANNPotential(ARCH, descriptor()), tmp_path / "m", config(
        iterations=1, method=Adam(mu=1e-6, batchsize=4), force_weight=0.1), dataset, split, seed=3)
    assert summary["trivial_errors"] == pytest.approx(trivial)
    assert any(w.startswith("test force RMSE ") and "close to predicting zero forces" in w
               for w in summary["warnings"])
    assert "WARNING: member 0: test force RMSE" in capsys.readouterr().err
    below, at = (ratio * trivial["force_rmse_predicting_zero"] for ratio in (0.99 * WEAK_FIT_RATIO, WEAK_FIT_RATIO))
    assert weak_fit_warnings(None, below, trivial, "test") == []
    assert weak_fit_warnings(None, at, trivial, "test") == [
        f"test force RMSE {at:.3g} eV/Å is close to predicting zero forces "
        f"({trivial['force_rmse_predicting_zero']:.3g} eV/Å): the potential explains less than half of the force "
        "variance"]


def test_training_logs_a_line_per_epoch_with_its_errors_and_the_time_left(cuau12, caplog):
    caplog.set_level(logging.INFO, logger="aenet_core")
    TorchANNPotential(ARCH, descriptor()).train(structures=cuau12, config=config(iterations=3))
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("epoch: ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert "RMSE_E train" in lines[0] and "eV/atom | RMSE_F train" in lines[0] and "eV/Å | lr 0.01" in lines[0]
    assert "left" in lines[1] and "elapsed" in lines[2]
