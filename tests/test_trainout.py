"""TrainOut: error tables, statistics, JSON/CSV export and plots from a synthetic history."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from aenet_core.files import FileFormatError
from aenet_core.training import trainout
from aenet_core.training.trainout import TrainOut

NAN = float("nan")


def make_history(forces=True, test=True):
    """Five epochs; test RMSE has its minimum at epoch 4 (1-based)."""
    return {
        "train_energy_rmse": [0.5, 0.4, 0.3, 0.2, 0.1],
        "test_energy_rmse": [0.6, 0.5, 0.35, 0.25, 0.3] if test else [NAN] * 5,
        "train_energy_mae": [0.4, 0.3, 0.2, 0.15, 0.08],
        "test_energy_mae": [0.5, 0.4, 0.3, 0.2, 0.22] if test else [NAN] * 5,
        "train_force_rmse": [1.0, 0.8, 0.6, 0.5, 0.4] if forces else [NAN] * 5,
        "test_force_rmse": [1.1, 0.7, 0.9, 0.65, 0.66] if forces else [NAN] * 5,
        "learning_rate": [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4],
        "epoch_time": [1.5, 1.0, 1.1, 1.2, 1.2],
        "forward_time": [0.5, 0.4, 0.4, 0.4, 0.4],
        "backward_time": [0.7, 0.5, 0.5, 0.6, 0.6],
        "epoch_val_time": [0.1, 0.1, 0.1, 0.1, 0.1],
    }


STAT_KEYS = [
    "final_MAE_train", "final_RMSE_train", "final_MAE_test", "final_RMSE_test",
    "min_RMSE_test", "epoch_min_RMSE_test", "final_RMSE_force_train",
    "final_RMSE_force_test", "min_RMSE_force_test", "epoch_min_RMSE_force_test", "final_RMSE_stress_train",
    "final_RMSE_stress_test",
]


def test_errors_columns_and_values():
    out = TrainOut(make_history())
    err = out.errors
    assert list(err.columns) == ["MAE_train", "RMSE_train", "MAE_test", "RMSE_test",
                                 "RMSE_force_train", "RMSE_force_test", "RMSE_stress_train", "RMSE_stress_test"]
    assert err["RMSE_stress_test"].isna().all()  # a history without stresses
    assert err.index.name == "epoch" and list(err.index) == [0, 1, 2, 3, 4]
    assert err.loc[3, "RMSE_test"] == 0.25
    assert err.loc[0, "MAE_train"] == 0.4
    assert err.loc[4, "RMSE_force_test"] == 0.66
    assert out.num_epochs == 5


def test_errors_without_test_set():
    out = TrainOut(make_history(test=False))
    assert out.errors["RMSE_test"].isna().all()
    assert out.errors.loc[2, "RMSE_train"] == 0.3
    stats = out.stats
    assert math.isnan(stats["min_RMSE_test"]) and stats["epoch_min_RMSE_test"] is None
    assert math.isnan(stats["final_RMSE_test"])
    assert stats["epoch_min_RMSE_force_test"] == 4


def test_stats_values_and_one_based_argmin():
    stats = TrainOut(make_history()).stats
    assert list(stats) == STAT_KEYS
    assert stats["final_MAE_train"] == 0.08 and stats["final_RMSE_train"] == 0.1
    assert stats["final_MAE_test"] == 0.22 and stats["final_RMSE_test"] == 0.3
    assert stats["min_RMSE_test"] == 0.25
    assert stats["epoch_min_RMSE_test"] == 4 and isinstance(stats["epoch_min_RMSE_test"], int)
    assert stats["final_RMSE_force_train"] == 0.4 and stats["final_RMSE_force_test"] == 0.66
    assert stats["min_RMSE_force_test"] == 0.65 and stats["epoch_min_RMSE_force_test"] == 4


def test_energy_only_history_has_no_force_data():
    out = TrainOut(make_history(forces=False))
    stats = out.stats
    assert out.has_force_data is False
    assert math.isnan(stats["final_RMSE_force_train"])
    assert math.isnan(stats["min_RMSE_force_test"])
    assert stats["epoch_min_RMSE_force_test"] is None
    assert TrainOut(make_history()).has_force_data is True


def test_missing_force_keys_give_nan_columns():
    history = make_history()
    del history["train_force_rmse"], history["test_force_rmse"]
    out = TrainOut(history)
    assert out.errors["RMSE_force_train"].isna().all()
    assert not out.has_force_data


def test_timing_and_learning_rate():
    out = TrainOut(make_history())
    timing = out.timing
    assert timing.index.name == "epoch"
    assert list(timing.columns) == ["epoch_time", "forward_time", "backward_time",
                                    "epoch_val_time"]
    assert timing.loc[1, "backward_time"] == 0.5
    assert out.learning_rate == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]


def test_str_and_print(capsys):
    out = TrainOut(make_history(forces=False))
    text = str(out)
    assert text.startswith("Training statistics:\n")
    for key in STAT_KEYS:
        assert f"\n  {key}: " in text
    assert "  min_RMSE_test: 0.25\n" in text
    assert "  epoch_min_RMSE_force_test: None" in text
    out.print()
    printed = capsys.readouterr().out
    assert "Training statistics:" in printed and "mean epoch 1.2 s" in printed


def _strict_json(text):
    def reject(name):
        raise ValueError(f"non-strict JSON constant {name}")
    return json.loads(text, parse_constant=reject)


def test_json_round_trip_with_nan(tmp_path):
    out = TrainOut(make_history(test=False), config={"iterations": 5})
    path = tmp_path / "history.json"
    out.to_json(path)
    data = _strict_json(path.read_text())
    assert data["test_energy_rmse"] == [None] * 5
    assert data["train_energy_rmse"] == [0.5, 0.4, 0.3, 0.2, 0.1]
    back = TrainOut.from_json(path)
    pd.testing.assert_frame_equal(back.errors, out.errors)
    pd.testing.assert_frame_equal(back.timing, out.timing)
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_from_json_accepts_nan_literals(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps(make_history(forces=False)))  # writes bare NaN
    assert "NaN" in path.read_text()
    out = TrainOut.from_json(path)
    assert not out.has_force_data
    assert out.stats["final_RMSE_test"] == 0.3


def test_a_damaged_history_names_the_file(tmp_path):
    path = tmp_path / "history.json"
    path.write_bytes(json.dumps(make_history()).encode()[:40])
    with pytest.raises(FileFormatError, match=r"history\.json: not valid JSON, so a damaged or foreign training history"):
        TrainOut.from_json(path)


def test_csv_has_real_values(tmp_path):
    path = tmp_path / "history.csv"
    TrainOut(make_history(forces=False)).to_csv(path)
    table = pd.read_csv(path)
    assert list(table.columns) == ["epoch", "train_energy_rmse", "test_energy_rmse",
                                   "train_force_rmse", "test_force_rmse", "train_stress_rmse", "test_stress_rmse",
                                   "learning_rate", "epoch_time"]
    assert list(table["epoch"]) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(table["learning_rate"], [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])
    np.testing.assert_allclose(table["epoch_time"], [1.5, 1.0, 1.1, 1.2, 1.2])
    assert table["train_force_rmse"].isna().all()
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]


def test_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    def broken_dump(data, fh, **kwargs):
        fh.write("{partial")
        raise OSError("disk full")

    monkeypatch.setattr(trainout.json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        TrainOut(make_history()).to_json(tmp_path / "history.json")
    assert list(tmp_path.iterdir()) == []


def _assert_png(path):
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000


@pytest.mark.parametrize("forces,n_axes", [(True, 2), (False, 1)])
def test_plot_training_summary(tmp_path, forces, n_axes):
    path = tmp_path / "summary.png"
    fig = TrainOut(make_history(forces=forces)).plot_training_summary(outfile=path)
    assert isinstance(fig, Figure) and len(fig.axes) == n_axes
    assert fig.axes[0].get_ylabel() == "Energy RMSE (eV/atom)"
    _assert_png(path)


def test_plot_training_errors(tmp_path):
    path = tmp_path / "energy.png"
    fig = TrainOut(make_history()).plot_training_errors(outfile=path)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and len(ax.lines) == 2
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3, 4, 5]
    _assert_png(path)


def test_plot_skips_nan_only_series(tmp_path):
    fig = TrainOut(make_history(test=False)).plot_training_errors()
    assert len(fig.axes[0].lines) == 1
    nothing = {key: [NAN] * 3 for key in make_history()}
    fig = TrainOut(nothing).plot_training_errors(outfile=tmp_path / "empty.png")
    assert len(fig.axes[0].lines) == 0 and fig.axes[0].texts
    _assert_png(tmp_path / "empty.png")


def test_plot_on_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert TrainOut(make_history()).plot_training_errors(ax=ax) is fig
    assert len(ax.lines) == 2


def test_plot_force_errors(tmp_path):
    path = tmp_path / "forces.png"
    fig = TrainOut(make_history()).plot_force_errors(outfile=path)
    assert len(fig.axes) == 1 and fig.axes[0].get_ylabel() == "Force RMSE (eV/Å)"
    _assert_png(path)
    with pytest.raises(ValueError, match="force"):
        TrainOut(make_history(forces=False)).plot_force_errors()


def test_unequal_lengths_rejected():
    history = make_history()
    history["learning_rate"] = history["learning_rate"][:3]
    with pytest.raises(ValueError, match="learning_rate"):
        TrainOut(history)


def test_missing_energy_key_rejected():
    history = make_history()
    del history["test_energy_mae"]
    with pytest.raises(ValueError, match="test_energy_mae"):
        TrainOut(history)
