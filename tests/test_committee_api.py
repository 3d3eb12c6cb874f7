"""The committee API as aenet-python has it: train_dataset/test_dataset (Subsets too), member results with
their files, to_aenet_ascii's return, refused datasets, predictions as lists of AenetEnsembleResult, the
metadata's dataset names and the source indices of predictions."""
import json

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from aenet_core.committee import METADATA_FILE
from aenet_core.torch_training import (AenetEnsembleResult, StructureDataset, TorchCommitteeConfig,
                                       TorchCommitteeMemberResult, TorchCommitteePotential,
                                       TorchCommitteeTrainResult, TrainOut)
from training_setup import MEMBER_ARCH, REFERENCES, descriptor, member_config

# What aenet-python's TorchCommitteeMemberResult.to_metadata() holds, and its committee_metadata.json.
MEMBER_KEYS = {"member_index", "seed", "split_seed", "device", "member_dir", "model_path", "history_json_path",
               "history_csv_path", "summary_path", "checkpoint_dir", "status", "metrics", "error"}
METADATA_KEYS = {"schema_version", "timestamp", "execution_mode", "output_dir", "committee_config",
                 "training_config", "architecture", "descriptor_config", "resolved_train_dataset",
                 "resolved_test_dataset", "members", "failures"}


def train(tmp_path, name, max_parallel=1, **data):
    committee = TorchCommitteePotential(MEMBER_ARCH, descriptor())
    result = committee.train(config=member_config(iterations=2), committee_config=TorchCommitteeConfig(
        num_members=2, base_seed=3, max_parallel=max_parallel, output_dir=tmp_path / name), **data)
    return committee, result


def energy_rmse_per_atom(member, structures) -> float:
    predicted = np.array(member.predict(structures).total_energy)
    reference = np.array([s.energy for s in structures])
    n_atoms = np.array([s.n_atoms for s in structures])
    return float(np.sqrt(np.mean(((predicted - reference) / n_atoms) ** 2)))


def energy_midpoint(dataset, entries) -> float:
    """What E_shift is after training on ``entries``: the middle of their energy-per-atom range."""
    energies = [dataset.referenced_energy_per_atom(i) for i in entries]
    return (max(energies) + min(energies)) / 2


@pytest.fixture(scope="module")
def dataset(cuau):
    return StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES)


@pytest.fixture(scope="module")
def committee_run(cuau, tmp_path_factory):
    return train(tmp_path_factory.mktemp("api"), "run", structures=cuau)


def test_subsets_given_as_train_and_test_datasets_are_what_every_member_trains_and_tests_on(cuau, dataset,
                                                                                             tmp_path):
    # The test entries hold the lowest (3) and highest (8) energy per atom: E_shift shows the training entries.
    train_entries, test_entries = [0, 2, 4, 5, 6, 7, 9, 11, 12, 13], [8, 1, 3, 10]
    # A Subset of a Subset: the test entries are resolved through both.
    test = Subset(Subset(dataset, list(range(14))[::-1]), [13 - i for i in test_entries])
    committee, result = train(tmp_path, "subsets", train_dataset=Subset(dataset, train_entries), test_dataset=test)
    for member in result.members:
        potential = committee.members[member.member_index]
        assert np.isclose(member.metrics["final_RMSE_test"],
                          energy_rmse_per_atom(potential, [cuau[i] for i in test_entries]), rtol=1e-6)
        assert np.isclose(float(potential.model.E_shift), energy_midpoint(dataset, train_entries), rtol=1e-9)
    assert not np.isclose(energy_midpoint(dataset, train_entries), energy_midpoint(dataset, range(14)))
    metadata = json.loads(result.metadata_path.read_text())
    assert (metadata["resolved_train_dataset"], metadata["resolved_test_dataset"]) == (
        "Subset[StructureDataset]", "Subset[Subset[StructureDataset]]")


def test_two_separate_datasets_train_and_test_the_members_in_parallel_too(cuau, tmp_path):
    train_set = StructureDataset(cuau[:10], descriptor(), atomic_energies=REFERENCES)
    test_set = StructureDataset(cuau[10:], descriptor(), atomic_energies=REFERENCES)
    committee, result = train(tmp_path, "separate", max_parallel=2, train_dataset=train_set, test_dataset=test_set)
    assert result.execution_mode == "parallel" and not result.failed_members
    for member in result.members:
        potential = committee.members[member.member_index]
        assert np.isclose(member.metrics["final_RMSE_test"], energy_rmse_per_atom(potential, cuau[10:]), rtol=1e-6)
        assert np.isclose(float(potential.model.E_shift), energy_midpoint(train_set, range(10)), rtol=1e-9)
    metadata = json.loads(result.metadata_path.read_text())
    assert (metadata["resolved_train_dataset"], metadata["resolved_test_dataset"]) == (
        "StructureDataset", "StructureDataset")


def test_member_results_name_files_that_exist_and_read_back(committee_run):
    _, result = committee_run
    for index, member in enumerate(result.members):
        assert isinstance(member, TorchCommitteeMemberResult) and member.member_index == index
        assert member.status == "completed" and member.error is None and member.seed == 3 + index
        assert member.member_dir == result.output_dir / f"member_{index:03d}" and member.checkpoint_dir is None
        assert member.model_path == member.member_dir / "model.pt" and member.model_path.is_file()
        history = json.loads(member.history_json_path.read_text())
        assert len(history["train_energy_rmse"]) == 2
        assert member.history_csv_path.read_text().splitlines()[0].startswith("epoch")
        assert json.loads(member.summary_path.read_text())["member_index"] == index
        assert isinstance(member.trainout, TrainOut) and member.trainout.num_epochs == 2
        assert member.stats["final_RMSE_train"] == member.metrics["final_RMSE_train"]
        assert all(np.isfinite(value) for value in member.stats.values())
        assert "train_energy_rmse" not in member.stats  # the legacy alias stays among the metrics only
        plain = member.to_metadata()
        assert MEMBER_KEYS <= set(plain) and plain["model_path"] == str(member.model_path)
        assert json.loads(json.dumps(plain)) == plain
    assert len(result.trainouts) == 2


def test_metadata_has_aenet_python_fields_and_names_the_split_data(committee_run):
    _, result = committee_run
    metadata = json.loads((result.output_dir / METADATA_FILE).read_text())
    assert METADATA_KEYS <= set(metadata) and metadata["execution_mode"] == "sequential"
    assert (metadata["resolved_train_dataset"], metadata["resolved_test_dataset"]) == (
        "StructureDataset", "StructureDataset")
    assert all(MEMBER_KEYS <= set(member) for member in metadata["members"]) and metadata["failures"] == []


def test_dataset_with_test_dataset_trains_on_the_whole_dataset(cuau, dataset, tmp_path):
    committee, result = train(tmp_path, "whole", dataset=Subset(dataset, range(10)),
                              test_dataset=Subset(dataset, range(10, 14)))
    assert result.members[0].metrics["final_RMSE_test"] is not None
    assert np.isclose(float(committee.members[0].model.E_shift), energy_midpoint(dataset, range(14)), rtol=1e-9)


def test_to_aenet_ascii_returns_the_files_it_wrote(committee_run, tmp_path):
    committee, _ = committee_run
    returned = committee.to_aenet_ascii(tmp_path / "ascii")
    written = sorted(str(p) for p in (tmp_path / "ascii").glob("member_*/*.nn.ascii"))
    assert sorted(path for member in returned for path in member.values()) == written
    assert returned[1] == {species: str(tmp_path / "ascii" / "member_001" / f"potential.{species}.nn.ascii")
                           for species in ("Cu", "Au")}
    manifest = json.loads((tmp_path / "ascii" / "manifest.json").read_text())
    assert [{k: str(tmp_path / "ascii" / v) for k, v in m.items()} for m in manifest["members"]] == returned


class PlainDataset(torch.utils.data.Dataset):
    def __init__(self, structures):
        self.structures = structures

    def __len__(self):
        return len(self.structures)

    def __getitem__(self, index):
        return self.structures[index]


def member_result(tmp_path, index, status, metrics, error=None):
    folder = tmp_path / f"member_{index:03d}"
    return TorchCommitteeMemberResult(index, index + 1, None, "cpu", folder, folder / "model.pt", None, None, None,
                                      None, status, metrics, error)


def test_print_result_states_the_finite_metrics_of_completed_members_and_the_counts(tmp_path):
    members = [member_result(tmp_path, 0, "completed", {"final_MAE_train": 1.0, "final_RMSE_test": float("nan")}),
               member_result(tmp_path, 1, "completed", {"final_MAE_train": 3.0, "final_RMSE_test": None}),
               member_result(tmp_path, 2, "failed", {"final_MAE_train": 100.0}, error="out of memory")]
    result = TorchCommitteeTrainResult(tmp_path, tmp_path / METADATA_FILE, members, "sequential")
    assert result.stats == {"final_MAE_train": {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0, "n": 2}}
    lines = str(result).splitlines()
    # aenet-python's summary lines (TrainOut's style), then the failures
    assert lines[:6] == ["Training statistics:", "  final_MAE_train: 2 ± 1", "  completed_members: 2",
                         "  failed_members: 1", "  execution_mode: sequential", f"  output_dir: {tmp_path}"]
    assert lines[6:] == ["  member 2 failed: out of memory"]


def test_member_seeds_of_another_length_name_both_counts():
    with pytest.raises(ValueError, match=r"member_seeds must have length equal to num_members \(3\); got 2"):
        TorchCommitteeConfig(num_members=3, member_seeds=[1, 2])


@pytest.mark.parametrize("max_parallel", [1, 2])
def test_a_plain_torch_dataset_is_refused_with_value_error(cuau, tmp_path, max_parallel):
    with pytest.raises(ValueError, match="StructureDataset, CachedStructureDataset, HDF5StructureDataset.*Subset "
                                         "of one; got PlainDataset"):
        train(tmp_path, "plain", max_parallel=max_parallel, train_dataset=Subset(PlainDataset(cuau), [0, 1]))
    assert not (tmp_path / "plain").exists()


def test_inputs_that_do_not_go_together_are_refused(cuau, dataset, tmp_path):
    for data, message in (({"structures": cuau, "test_dataset": dataset}, "not with structures="),
                          ({"structures": cuau, "dataset": dataset}, "exactly one of"),
                          ({"train_dataset": dataset, "split": "split.json"}, "split= applies to")):
        with pytest.raises(ValueError, match=message):
            train(tmp_path, "refused", **data)
    assert not (tmp_path / "refused").exists()


def test_predict_returns_a_list_of_ensemble_results_averaging_the_members(committee_run, cuau):
    committee, _ = committee_run
    predictions = committee.predict(cuau[:4], True)
    assert isinstance(predictions, list) and all(isinstance(p, AenetEnsembleResult) for p in predictions)
    members = [member.predict(cuau[:4], eval_forces=True) for member in committee.load_members()]
    np.testing.assert_allclose([p.energy_mean for p in predictions],
                               np.mean([m.total_energy for m in members], axis=0), rtol=1e-12)
    np.testing.assert_allclose(predictions[2].forces_mean, np.mean([m.forces[2] for m in members], axis=0),
                               rtol=1e-10, atol=1e-12)
    assert predictions.source_indices == [None] * 4 and predictions.indices == [0, 1, 2, 3]


def test_predict_dataset_tracks_source_indices_through_subsets(committee_run, dataset):
    committee, _ = committee_run
    nested = Subset(Subset(dataset, [9, 8, 7, 6, 5]), [4, 0, 2])
    predictions = committee.predict_dataset(nested, False, None, "reference", 1)
    assert predictions.source_indices == [5, 9, 7] and predictions.indices == [0, 1, 2]
    assert predictions.identifiers == [dataset.get_structure_identifier(i) for i in (5, 9, 7)]
    direct = committee.predict_dataset(dataset, indices=[5, 9, 7])
    np.testing.assert_allclose([p.energy for p in predictions], [p.member_energies[1] for p in direct])
    assert committee.predict_dataset(nested, indices=[1]).source_indices == [9]
