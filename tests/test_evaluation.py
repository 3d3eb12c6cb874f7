"""Committee evaluation on the test split: every product, and error bars calibrated out of fold."""
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from aenet_core.committee import TorchCommitteePotential, aggregate_committee, train_member
from aenet_core.data import HDF5StructureDataset
from aenet_core.evaluation import evaluate_committee
from aenet_core.example_data import make_cuau_structures
from aenet_core.io import read_structures
from aenet_core.split import Split
from aenet_core.torch_training import TorchANNPotential
from aenet_core.uncertainty import Calibration
from training_setup import MEMBER_ARCH as ARCH
from training_setup import REFERENCES, SMALL_VALIDATION, descriptor
from training_setup import member_config as config

pytestmark = pytest.mark.filterwarnings(SMALL_VALIDATION)


@pytest.fixture(scope="module")
def cuau():
    return make_cuau_structures(12, seed=4)


def evaluated(cuau, tmp_path, num_members):
    db = HDF5StructureDataset(descriptor(), tmp_path / "db.h5", sources=cuau, mode="build", atomic_energies=REFERENCES)
    db.build_database(show_progress=False, persist_features=True, persist_force_derivatives=True)
    split = Split.create(db, 40, 2)
    split.save(tmp_path / "split.json")
    for index in range(num_members):
        train_member(TorchANNPotential(ARCH, descriptor()), tmp_path / "committee" / f"member_{index:03d}",
                     replace(config(iterations=2), atomic_energies=None), db, split, index, seed=index)
    aggregate_committee(tmp_path / "committee")
    summary = evaluate_committee(tmp_path / "committee", tmp_path / "db.h5", tmp_path / "split.json",
                                 tmp_path / "evaluation", n_uncertain=3)
    return summary, split


@pytest.mark.parametrize("num_members", [1, 2])
def test_evaluation_writes_every_product_even_without_a_calibration(cuau, tmp_path, num_members):
    summary, split = evaluated(cuau, tmp_path, num_members)
    names = {p.name for p in (tmp_path / "evaluation").iterdir()}
    assert names == {"summary.json", "predictions.csv", "calibration.json", "parity.png", "stress_parity.png",
                     "uncertainty.png", "most_uncertain.csv", "most_uncertain.extxyz"}
    assert summary["n_structures"] == len(split.test) and summary["num_members"] == num_members
    calibration = json.loads((tmp_path / "evaluation" / "calibration.json").read_text())
    assert (calibration["factor"] is None) == (num_members == 1)
    assert len(read_structures(tmp_path / "evaluation" / "most_uncertain.extxyz")) == 3


def test_reported_error_bars_are_calibrated_on_other_structures_than_their_own(cuau, tmp_path):
    summary, split = evaluated(cuau, tmp_path, 3)
    table = pd.read_csv(tmp_path / "evaluation" / "predictions.csv")
    errors, stds = table["error_per_atom"].to_numpy(), table["energy_std_per_atom"].to_numpy()
    expected = Calibration.cross_validate(errors, stds)
    np.testing.assert_allclose(table["energy_std_calibrated_per_atom"], expected.calibrated_stds, rtol=1e-12)
    in_sample = Calibration.fit(errors, stds)
    assert not np.allclose(table["energy_std_calibrated_per_atom"], in_sample.factor * stds)  # not self-fitted
    assert summary["calibration_factor"] == pytest.approx(in_sample.factor)  # what later predictions use
    assert summary["calibration_check"] == f"{len(split.test)}-fold cross-validation"
    saved = json.loads((tmp_path / "evaluation" / "calibration.json").read_text())
    assert saved["curve_method"] == summary["calibration_check"]
    assert saved["curve"]["predicted_std"] == pytest.approx(list(expected.curve["predicted_std"]))


def test_stress_errors_are_the_committee_mean_against_the_labels(cuau, tmp_path):
    summary, split = evaluated(cuau, tmp_path, 2)
    committee = TorchCommitteePotential.from_directory(tmp_path / "committee")
    tested = [cuau[i] for i in split.test]
    predicted = committee.predict(tested, eval_stress=True)
    errors = [p.stress_mean - s.stress for p, s in zip(predicted, tested)]
    assert summary["n_stress_labels"] == len(tested)
    assert summary["stress_rmse"] == pytest.approx(float(np.sqrt(np.mean(np.square(errors)))), rel=1e-12)
    assert summary["stress_rmse_gpa"] == pytest.approx(summary["stress_rmse"] * 160.21766208)
