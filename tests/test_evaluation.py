"""Committee evaluation on the test split: every product, and error bars calibrated out of fold."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aenet_core.committee import TorchCommitteePotential, TorchCommitteeTrainResult, aggregate_committee
from aenet_core.data import HDF5StructureDataset
from aenet_core import evaluation
from aenet_core.baselines import weak_fit_warnings
from aenet_core.evaluation import evaluate_committee
from aenet_core.io import read_structures
from aenet_core.split import Split
from aenet_core.training import trainout
from aenet_core.uncertainty import Calibration
from training_setup import REFERENCES, descriptor


def evaluated(cuau, trained_committee, tmp_path, num_members, title=None):
    """The first ``num_members`` members of ``trained_committee``, as a committee of their own, evaluated on the
    test split of a database of ``cuau``."""
    db = HDF5StructureDataset(descriptor(), tmp_path / "db.h5", sources=cuau, mode="build", atomic_energies=REFERENCES)
    db.build_database(show_progress=False, persist_features=True, persist_force_derivatives=True)
    split = Split.create(db, 40, 2)
    split.save(tmp_path / "split.json")
    for index in range(num_members):
        name = f"member_{index:03d}"
        shutil.copytree(trained_committee[2] / name, tmp_path / "committee" / name,
                        ignore=shutil.ignore_patterns("checkpoints"))
    aggregate_committee(tmp_path / "committee")
    summary = evaluate_committee(tmp_path / "committee", tmp_path / "db.h5", tmp_path / "split.json",
                                 tmp_path / "evaluation", n_uncertain=3, title=title)
    return summary, split


@pytest.mark.parametrize("num_members", [1, 2])
def test_evaluation_writes_every_product_even_without_a_calibration(cuau, trained_committee, tmp_path, num_members):
    summary, split = evaluated(cuau, trained_committee, tmp_path, num_members)
    names = {p.name for p in (tmp_path / "evaluation").iterdir()}
    assert names == {"summary.json", "predictions.csv", "parity.png", "stress_parity.png", "uncertainty.png",
                     "most_uncertain.csv", "most_uncertain.extxyz"}
    assert summary["n_structures"] == len(split.test) and summary["num_members"] == num_members
    calibration = json.loads((tmp_path / "committee" / "calibration.json").read_text())  # the committee's own
    assert (calibration["factor"] is None) == (num_members == 1)
    loaded = TorchCommitteePotential.from_directory(tmp_path / "committee")
    assert loaded.calibration_factor == summary["calibration_factor"]
    assert len(read_structures(tmp_path / "evaluation" / "most_uncertain.extxyz")) == 3


def test_reported_error_bars_are_calibrated_on_other_structures_than_their_own(cuau, trained_committee, tmp_path):
    summary, split = evaluated(cuau, trained_committee, tmp_path, 3)
    table = pd.read_csv(tmp_path / "evaluation" / "predictions.csv")
    errors, stds = table["error_per_atom"].to_numpy(), table["energy_std_per_atom"].to_numpy()
    assert summary["warnings"] == weak_fit_warnings(summary["energy_rmse_per_atom"], summary["force_rmse"],
                                                    summary["trivial_errors"], "test")
    worst = table.loc[abs(table["error_per_atom"]).idxmax()]
    assert summary["largest_energy_error"] == {"identifier": worst["identifier"],
                                               "error_per_atom": pytest.approx(worst["error_per_atom"])}
    expected = Calibration.cross_validate(errors, stds)
    np.testing.assert_allclose(table["energy_std_calibrated_per_atom"], expected.calibrated_stds, rtol=1e-12)
    in_sample = Calibration.fit(errors, stds)
    assert not np.allclose(table["energy_std_calibrated_per_atom"], in_sample.factor * stds)  # not self-fitted
    assert summary["calibration_factor"] == pytest.approx(in_sample.factor)  # what later predictions use
    assert summary["calibration_check"] == f"{len(split.test)}-fold cross-validation"
    saved = json.loads((tmp_path / "committee" / "calibration.json").read_text())
    assert saved["curve_method"] == summary["calibration_check"]
    assert saved["curve"]["predicted_std"] == pytest.approx(list(expected.curve["predicted_std"]))


def test_stress_errors_are_the_committee_mean_against_the_labels(cuau, trained_committee, tmp_path):
    summary, split = evaluated(cuau, trained_committee, tmp_path, 2)
    committee = TorchCommitteePotential.from_directory(tmp_path / "committee")
    tested = [cuau[i] for i in split.test]
    predicted = committee.predict(tested, eval_stress=True)
    errors = [p.stress_mean - s.stress for p, s in zip(predicted, tested)]
    assert summary["n_stress_labels"] == len(tested)
    assert summary["stress_rmse"] == pytest.approx(float(np.sqrt(np.mean(np.square(errors)))), rel=1e-12)
    assert summary["stress_rmse_gpa"] == pytest.approx(summary["stress_rmse"] * 160.21766208)


def capture(monkeypatch, *modules) -> dict:
    """The figures ``modules`` save from now on, by file name (still written to disk)."""
    saved = {}
    for module in modules:
        original = module.save_figure
        monkeypatch.setattr(module, "save_figure",
                            lambda fig, path, original=original: saved.update({Path(path).name: fig}) or original(fig, path))
    return saved


@pytest.fixture(scope="module")
def titled(cuau, trained_committee, tmp_path_factory):
    """A 2-member committee evaluated, and its learning curves plotted, under the title of its run: the summary,
    the split, the test predictions and the figures by file name."""
    tmp_path = tmp_path_factory.mktemp("titled")
    with pytest.MonkeyPatch.context() as monkeypatch:
        figures = capture(monkeypatch, evaluation, trainout)
        summary, split = evaluated(cuau, trained_committee, tmp_path, 2, title="run tiny-cuau")
        result = TorchCommitteeTrainResult.from_metadata(tmp_path / "committee" / "committee_metadata.json")
        result.plot_learning_curves(tmp_path / "learning_curves.png", title="run tiny-cuau")
    return summary, split, pd.read_csv(tmp_path / "evaluation" / "predictions.csv"), figures


def texts(ax) -> str:
    return "\n".join(text.get_text() for text in ax.texts)


def test_every_figure_carries_the_title_of_its_run(titled):
    figures = titled[3]
    assert sorted(figures) == ["learning_curves.png", "parity.png", "stress_parity.png", "uncertainty.png"]
    assert {fig.get_suptitle() for fig in figures.values()} == {"run tiny-cuau"}


def test_the_energy_parity_is_of_referenced_energies_per_atom_with_their_errors(cuau, titled):
    summary, _, table, figures = titled
    energy = figures["parity.png"].axes[0]
    tested = [cuau[i] for i in table["source_index"]]
    atomic = np.array([sum(REFERENCES[e] for e in s.species) for s in tested])
    n_atoms = np.array([s.n_atoms for s in tested])
    plotted = energy.containers[0].lines[0].get_xydata()  # the error bar plot's points
    np.testing.assert_allclose(plotted[:, 0], ([s.energy for s in tested] - atomic) / n_atoms, rtol=1e-10)
    np.testing.assert_allclose(plotted[:, 1], (table["energy_mean"] - atomic) / n_atoms, rtol=1e-10)
    bars = np.array(energy.containers[0].lines[2][0].get_segments())  # (structure, end, x/y)
    np.testing.assert_allclose(bars[:, 1, 1] - bars[:, 0, 1], 2 * table["energy_std_calibrated_per_atom"], rtol=1e-10)
    assert "(eV/atom)" in energy.get_xlabel() and "calibrated out of fold" in energy.get_title()
    assert f"RMSE {summary['energy_rmse_per_atom']:.3g} eV/atom" in texts(energy)
    assert f"MAE {summary['energy_mae_per_atom']:.3g} eV/atom" in texts(energy)


def test_the_force_and_stress_parities_show_the_labels_and_their_errors(cuau, titled):
    summary, _, table, figures = titled
    forces = figures["parity.png"].axes[1]
    reference = np.concatenate([cuau[i].forces for i in table["source_index"]]).ravel()
    np.testing.assert_allclose(forces.collections[0].get_offsets()[:, 0], reference)
    assert f"RMSE {summary['force_rmse']:.3g} eV/Å" in texts(forces) and "(eV/Å)" in forces.get_xlabel()
    (stress,) = figures["stress_parity.png"].axes
    assert f"RMSE {summary['stress_rmse_gpa']:.3g} GPa" in texts(stress) and "MAE" in texts(stress)


def test_the_parity_figure_has_no_force_panel_without_force_labels(tmp_path, monkeypatch):
    figures = capture(monkeypatch, evaluation)
    values = np.array([-1.0, -0.5, 0.25])
    evaluation._plot_parity(values, values + 0.1, np.full(3, 0.05), "committee std", [], "test", None,
                            tmp_path / "parity.png")
    (energy,) = figures["parity.png"].axes
    assert figures["parity.png"].get_suptitle() == "" and "RMSE 0.1 eV/atom\nMAE 0.1 eV/atom" in texts(energy)
