"""What a round starts from and reports: starting structures, the round summary, the run's table."""
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from aenet_core.active_learning import rounds
from aenet_core.active_learning.rounds import exploration_seeds, plot_rounds, round_summary, rounds_table
from aenet_core.active_learning.stopping import exploration_verdict
from aenet_core.example_data import make_cuau_structures


def test_starting_structures_are_a_reproducible_sample_without_labels():
    structures = make_cuau_structures(6, seed=1)
    first, again = exploration_seeds(structures, 3, seed=4), exploration_seeds(structures, 3, seed=4)
    assert [s.name for s in first] == [s.name for s in again] and len({s.name for s in first}) == 3
    assert all(s.energy is None and s.forces is None and s.stress is None for s in first)
    by_name = {s.name: s for s in structures}
    for seed in first:
        np.testing.assert_array_equal(seed.positions, by_name[seed.name].positions)
    assert [s.name for s in exploration_seeds(structures, 3, seed=5)] != [s.name for s in first]
    with pytest.raises(ValueError, match="7 exploration seeds asked for, but only 6 structures"):
        exploration_seeds(structures, 7, seed=0)


def write(path, data):
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def round_files(tmp_path):
    evaluation = write(tmp_path / "evaluation.json", {"energy_rmse_per_atom": 0.02, "force_rmse": 0.3,
                                                      "stress_rmse": 0.01})
    explorations = [
        write(tmp_path / "a.json", {"n_frames": 3, "n_steps_run": 20, "stopped_early": False,
                                    "max_force_std": [0.1, 0.2, 0.3], "energy_std_calibrated_per_atom": [1, 2, 3]}),
        write(tmp_path / "b.json", {"n_frames": 2, "n_steps_run": 7, "stopped_early": True,
                                    "max_force_std": [0.4, 2.0], "energy_std_calibrated_per_atom": [4, 5]}),
    ]
    selection = write(tmp_path / "selection.json", {"n_implausible": 2, "n_candidates": 4, "n_selected": 3})
    labelling = write(tmp_path / "labelling.json", {"n_labelled": 2, "n_failed": 1, "frames": [
        {"name": "x", "status": "labelled", "error": None}, {"name": "y", "status": "failed", "error": "boom"}]})
    return evaluation, explorations, selection, labelling


def test_a_round_summary_counts_what_each_step_reported(round_files):
    evaluation, explorations, selection, labelling = round_files
    summary = round_summary(1, evaluation, explorations, selection, labelling)
    assert (summary["n_trajectories"], summary["n_frames_explored"], summary["n_hit_trust_hi"]) == (2, 5, 1)
    assert summary["fraction_hit_trust_hi"] == 0.5 and summary["n_steps_run"] == 27
    assert (summary["n_implausible"], summary["n_candidates"], summary["n_selected"], summary["n_labelled"],
            summary["n_failed"]) == (2, 4, 3, 2, 1)
    assert summary["failures"] == [{"name": "y", "error": "boom"}]
    assert summary["max_force_std_max"] == 2.0 and summary["max_force_std_p50"] == pytest.approx(0.3)
    assert summary["test_force_rmse"] == 0.3
    zero = round_summary(0, evaluation)
    assert zero["n_frames_explored"] == 0 and zero["fraction_hit_trust_hi"] is None and zero["max_force_std_max"] is None


def test_the_exploration_verdict_stops_when_converged_or_when_nothing_is_left_to_label():
    went_on = exploration_verdict({"n_frames": 40, "n_accurate": 20, "n_candidates": 15, "n_selected": 6})
    assert not went_on["stop"]
    assert went_on["reason"] == "went on: 15 candidates, 6 selected; 50% of 40 explored frames below trust_lo (< 90%)"
    converged = exploration_verdict({"n_frames": 40, "n_accurate": 36, "n_candidates": 4, "n_selected": 4})
    assert converged == {"stop": True, "reason": "converged: 90% of 40 explored frames below trust_lo (>= 90%)"}
    assert not exploration_verdict({"n_frames": 40, "n_accurate": 36, "n_candidates": 4, "n_selected": 4}, 0.95)["stop"]
    empty = exploration_verdict({"n_frames": 40, "n_accurate": 10, "n_candidates": 0, "n_selected": 0})
    assert empty["stop"] and empty["reason"].startswith("no candidates: none of 40 explored frames")
    spent = exploration_verdict({"n_frames": 40, "n_accurate": 10, "n_candidates": 3, "n_selected": 0})
    assert spent["stop"] and spent["reason"].startswith("nothing left to label: the 3 candidates")


def test_a_round_where_the_loop_stopped_reports_its_exploration_and_why(round_files, tmp_path):
    evaluation, explorations, _, labelling = round_files
    converged = write(tmp_path / "converged.json", {"n_frames": 5, "n_accurate": 5, "n_candidates": 0,
                                                     "n_selected": 0})
    stopped = round_summary(2, None, explorations, converged, converged_fraction=0.9)
    assert stopped["decision"] == "stopped" and stopped["reason"].startswith("converged: 100% of 5")
    assert stopped["test_force_rmse"] is None and stopped["n_frames_explored"] == 5 and stopped["accurate_fraction"] == 1
    with pytest.raises(ValueError, match="disagrees"):  # a trained round whose exploration said stop
        round_summary(2, evaluation, explorations, converged, labelling, converged_fraction=0.9)
    fixed = round_summary(2, evaluation, explorations, converged, labelling)
    assert (fixed["decision"], fixed["reason"]) == ("trained", "rounds is a fixed count")
    paths = [write(tmp_path / "r0.json", round_summary(0, evaluation)), write(tmp_path / "r2.json", stopped)]
    table = rounds_table(paths)
    assert list(table["decision"]) == ["trained", "stopped"]
    plot_rounds(paths, tmp_path / "rounds.png", 0.05, 1.0, title="cuau")
    assert (tmp_path / "rounds.png").stat().st_size > 0


def test_the_run_table_has_a_row_per_round_and_the_plot_is_written(round_files, tmp_path):
    evaluation, explorations, selection, labelling = round_files
    paths = [write(tmp_path / "r1.json", round_summary(1, evaluation, explorations, selection, labelling)),
             write(tmp_path / "r0.json", round_summary(0, evaluation))]
    table = rounds_table(paths)
    assert table["round"].tolist() == [0, 1] and "max_force_std" not in table and table["n_labelled"].tolist() == [0, 2]
    plot_rounds(paths, tmp_path / "rounds.png", 0.05, 1.0)
    assert (tmp_path / "rounds.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def figures(monkeypatch) -> dict:
    """The figures the rounds plot saves, by file name (still written to disk)."""
    saved, save = {}, rounds.save_figure
    monkeypatch.setattr(rounds, "save_figure", lambda fig, path: saved.update({Path(path).name: fig}) or save(fig, path))
    return saved


def panel(fig, title):
    (ax,) = [ax for ax in fig.axes if ax.get_title() == title]
    return ax


def test_the_rounds_plot_is_titled_and_readable_and_shows_every_series(round_files, tmp_path, figures):
    evaluation, explorations, selection, labelling = round_files
    paths = [write(tmp_path / "r0.json", round_summary(0, evaluation)),
             write(tmp_path / "r1.json", round_summary(1, evaluation, explorations, selection, labelling))]
    plot_rounds(paths, tmp_path / "rounds.png", 0.05, 1.0, title="run al-test")
    fig = figures["rounds.png"]
    assert fig.get_suptitle() == "run al-test"
    for ax in fig.axes:
        low, high = ax.get_xlim()
        assert [t for t in ax.get_xticks() if low <= t <= high] == [0, 1] and ax.get_xlabel() == "round"
        assert ax.get_yscale() == "linear"
    words = [text.get_text() for text in fig.findobj(Text)]
    assert not [c for c in rounds_table(paths).columns if "_" in c and any(c in w for w in words)]  # no raw names
    counts = panel(fig, "frames per round")
    assert [list(bars.datavalues) for bars in counts.containers] == [[5], [4], [3], [2], [1]]
    assert [t.get_text() for t in counts.get_legend().get_texts()][-1] == "labelling failed"
    energy, stress = panel(fig, "energy"), panel(fig, "stress")
    assert list(energy.lines[0].get_ydata()) == [20, 20] and "(meV/atom)" in energy.get_ylabel()
    assert stress.lines[0].get_ydata()[0] == pytest.approx(0.01 * 160.21766208) and "(GPa)" in stress.get_ylabel()
    assert [t.get_text() for t in panel(fig, "trajectories stopped at trust_hi").texts] == ["1/2"]


def test_no_panel_of_the_rounds_plot_overlaps_another_or_leaves_the_figure(round_files, tmp_path, figures):
    evaluation, explorations, selection, labelling = round_files
    paths = [write(tmp_path / "r1.json", round_summary(1, evaluation, explorations, selection, labelling)),
             write(tmp_path / "r0.json", round_summary(0, evaluation))]
    plot_rounds(paths, tmp_path / "rounds.png", 0.05, 1.0, title="run")
    canvas = FigureCanvasAgg(figures["rounds.png"])
    canvas.draw()
    boxes = [ax.get_tightbbox(canvas.get_renderer()) for ax in canvas.figure.axes]
    assert all(canvas.figure.bbox.contains(b.x0, b.y0) and canvas.figure.bbox.contains(b.x1, b.y1) for b in boxes)
    assert not [(a, b) for a, b in combinations(boxes, 2) if a.overlaps(b)]
    plot_rounds(paths[1:], tmp_path / "round0.png", 0.05, 1.0)  # round 0 alone: nothing explored yet
    assert figures["round0.png"].get_suptitle() == ""
