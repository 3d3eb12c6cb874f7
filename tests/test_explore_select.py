"""Active learning's exploration (committee MD) and selection (trust window, farthest-point sampling)."""
import copy
import json
import logging
import math
from dataclasses import replace

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from aenet_core.active_learning.explore import explore
from aenet_core.active_learning.settings import ExploreSettings
from aenet_core.active_learning.trajectory import read_trajectory, write_trajectory
from aenet_core.active_learning.select import (DEFAULT_MIN_DISTANCE, dataset_vectors, farthest_point_sampling,
                                               feature_scale, select_frames, structure_vectors)
from aenet_core.calculator import AenetCalculator
from aenet_core.cli import main
from aenet_core.committee import TorchCommitteePotential
from aenet_core.data.hdf5.dataset import HDF5StructureDataset
from aenet_core.data.memory import CachedStructureDataset, StructureDataset
from aenet_core.data.shards import ShardedDataset
from aenet_core.io import write_extxyz
from aenet_core.structure import Structure
from training_setup import REFERENCES, descriptor

INFO = ("step", "time_fs", "temperature_K", "committee_energy", "energy_std", "energy_std_calibrated",
        "max_force_std", "above_trust_hi")


@pytest.fixture(scope="module")
def committee(trained_committee):
    return TorchCommitteePotential.from_directory(trained_committee[2])


def _start():
    """32 atoms of Cu-Au, rattled off the lattice sites."""
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True).repeat((2, 2, 2))
    atoms.symbols[::3] = "Au"
    atoms.rattle(0.05, seed=1)
    return Structure.from_ase(atoms, name="start")


def _assert_same_info(info, other):
    assert set(info) == set(other)
    for key, value in info.items():
        assert value == other[key] or (math.isnan(value) and math.isnan(other[key])), key


def _settings(**changes):
    return replace(ExploreSettings(temperature=300.0, trust_hi=1e9, seed=4, steps=12, interval=4), **changes)


@pytest.fixture(scope="module")
def every_step(committee):
    """Twenty steps, every one recorded."""
    return explore(committee, _start(), _settings(steps=20, interval=1))


def test_frames_are_recorded_every_interval_without_labels(committee):
    frames, summary = explore(committee, _start(), _settings())
    assert [f.info["step"] for f in frames] == [0, 4, 8, 12]
    assert [f.info["time_fs"] for f in frames] == [0.0, 8.0, 16.0, 24.0]
    for frame in frames:
        assert set(INFO) <= set(frame.info) and frame.info["above_trust_hi"] is False
        assert all(np.isfinite(frame.info[key]) for key in INFO if key != "energy_std_calibrated")
        assert math.isnan(frame.info["energy_std_calibrated"])  # the committee has no calibration
        assert frame.arrays["force_std"].shape == (32,) and np.all(np.isfinite(frame.arrays["force_std"]))
        assert frame.calc is None and not {"energy", "forces", "stress"} & (set(frame.info) | set(frame.arrays))
    assert {k: v for k, v in summary.items() if not k.startswith("max_force_std")} == {
        "n_steps_run": 12, "n_frames": 4, "stopped_early": False, "stop_step": None, "temperature": 300.0,
        "seed": 4, "ensemble": "nvt", "steps": 12, "interval": 4, "timestep": 2.0}
    assert summary["max_force_std_max"] >= max(f.info["max_force_std"] for f in frames)
    assert 0 < summary["max_force_std_p50"] <= summary["max_force_std_p90"] <= summary["max_force_std_max"]


def test_recorded_spreads_are_the_committee_prediction_of_the_frame(committee, every_step):
    frames, _ = every_step
    for frame in frames[::5]:
        prediction = committee.predict([Structure.from_ase(frame)], eval_forces=True)[0]
        force_std = np.linalg.norm(prediction.forces_std, axis=1)
        np.testing.assert_allclose(frame.arrays["force_std"], force_std, rtol=1e-10, atol=1e-12)
        assert frame.info["max_force_std"] == pytest.approx(force_std.max(), rel=1e-10)
        calc = AenetCalculator(committee)  # the same number a user's calculator reports for this geometry
        assert frame.info["max_force_std"] == pytest.approx(calc.get_property("max_force_std", frame), rel=1e-12)
        np.testing.assert_allclose(frame.arrays["force_std"], calc.get_property("force_std", frame), rtol=1e-12)
        assert frame.info["committee_energy"] == pytest.approx(prediction.energy, rel=1e-12)
        assert frame.info["energy_std"] == pytest.approx(prediction.energy_std, rel=1e-10, abs=1e-14)
    temperatures = [f.info["temperature_K"] for f in frames]
    assert temperatures[0] == pytest.approx(frames[0].get_temperature()) and 50 < np.mean(temperatures) < 600


def test_calibrated_spread_uses_the_committee_factor(committee):
    calibrated = copy.copy(committee)
    calibrated.calibration_factor = 1.5
    frames, _ = explore(calibrated, _start(), _settings(steps=4))
    for frame in frames:
        assert frame.info["energy_std_calibrated"] == pytest.approx(1.5 * frame.info["energy_std"], rel=1e-12)


@pytest.mark.parametrize("ensemble, expected", [("nvt", [(True, False)] * 5),
                                                ("npt", [(True, False)] + [(True, True)] * 9)])
def test_the_committee_runs_once_per_step(committee, monkeypatch, ensemble, expected):
    """Recording reads the step's cached results; ASE's Berendsen NPT evaluates again after scaling the cell, and
    its first stress request once more; NVT never evaluates the stress."""
    calls = []
    evaluate = AenetCalculator._evaluate
    monkeypatch.setattr(AenetCalculator, "_evaluate", lambda calc, *args: calls.append(args) or evaluate(calc, *args))
    explore(committee, _start(), _settings(steps=4, interval=2, ensemble=ensemble))
    assert calls == expected


def test_a_spread_above_trust_hi_stops_at_that_step_and_records_it(committee, every_step):
    spreads = [f.info["max_force_std"] for f in every_step[0]]
    first = next(k for k in range(1, len(spreads)) if spreads[k] > max(spreads[:k]))
    trust_hi = (max(spreads[:first]) + spreads[first]) / 2
    frames, summary = explore(committee, _start(), _settings(steps=20, interval=5, trust_hi=trust_hi))
    assert [f.info["step"] for f in frames] == list(range(0, first, 5)) + [first]
    assert [f.info["above_trust_hi"] for f in frames] == [False] * (len(frames) - 1) + [True]
    assert frames[-1].info["max_force_std"] == spreads[first]
    assert (summary["stopped_early"], summary["stop_step"], summary["n_steps_run"]) == (True, first, first)

    frames, summary = explore(committee, _start(), _settings(trust_hi=1e-9))
    assert len(frames) == 1 and frames[0].info["above_trust_hi"] and summary["n_steps_run"] == 0


def test_the_log_shows_the_steps_done_every_tenth_of_the_run(committee, caplog):
    caplog.set_level(logging.INFO, logger="aenet_core")
    frames, _ = explore(committee, _start(), _settings(steps=20))
    progress = [record.getMessage() for record in caplog.records]
    assert progress[0].startswith("MD at 300 K: 1/20 steps (5 %) | max force spread ") and "eV/Å" in progress[0]
    steps = [int(line.split(" steps")[0].rsplit(" ", 1)[1].split("/")[0]) for line in progress]
    assert steps == [1, *range(2, 21, 2)]


def test_runs_with_the_same_settings_are_identical(committee, every_step):
    again, summary = explore(committee, _start(), _settings(steps=20, interval=1))
    for first, second in zip(every_step[0], again, strict=True):
        assert np.array_equal(first.positions, second.positions)
        assert np.array_equal(first.get_momenta(), second.get_momenta())
        assert np.array_equal(first.arrays["force_std"], second.arrays["force_std"])
        _assert_same_info(first.info, second.info)
    assert summary == every_step[1]
    other, _ = explore(committee, _start(), _settings(steps=1, interval=1, seed=5))
    assert not np.array_equal(other[-1].positions, again[1].positions)


def test_npt_changes_the_cell_and_needs_a_periodic_structure(committee):
    frames, _ = explore(committee, _start(), _settings(ensemble="npt", steps=8))
    volumes = [f.get_volume() for f in frames]
    assert volumes[0] == pytest.approx(_start().volume) and abs(volumes[-1] - volumes[0]) > 1e-6
    cluster = Structure(_start().positions[:6], _start().species[:6], name="cluster")
    with pytest.raises(ValueError, match="npt changes the cell.*periodic in 3D; cluster"):
        explore(committee, cluster, _settings(ensemble="npt"))
    frames, _ = explore(committee, cluster, _settings(steps=2, interval=1))  # nvt needs no cell
    assert len(frames) == 3 and not frames[-1].pbc.any()


@pytest.mark.parametrize("changes, message", [
    ({"temperature": 0}, "temperature must be a finite number in \\(0, 10000\\]"),
    ({"temperature": 1e6}, "temperature must be a finite number in \\(0, 10000\\]; got 1000000"),
    ({"steps": 0}, "steps must be an int >= 1"),
    ({"steps": 2.5}, "steps must be an int"),
    ({"interval": 0}, "interval must be an int >= 1"),
    ({"timestep": -1.0}, "timestep must be a finite number > 0"),
    ({"ensemble": "nph"}, "ensemble must be one of"),
    ({"friction": 0.0}, "friction must be"),
    ({"trust_hi": float("nan")}, "trust_hi must be a finite number > 0"),
    ({"trust_hi": math.inf}, "trust_hi must be a finite number > 0"),
    ({"seed": -1}, "seed must be an int in \\[0, 4294967295\\]"),
    ({"pressure": math.inf}, "pressure must be a finite number"),
    ({"compressibility": 0.0}, "compressibility must be"),
])
def test_settings_are_checked(changes, message):
    with pytest.raises(ValueError, match=message):
        _settings(**changes)


def test_a_trajectory_file_keeps_the_frames_and_no_labels(every_step, tmp_path):
    frames = every_step[0][:6]
    write_trajectory(tmp_path / "run.extxyz", frames)
    read = read_trajectory(tmp_path / "run.extxyz")
    assert len(read) == len(frames)
    for written, back in zip(frames, read):
        _assert_same_info(back.info, written.info)  # info numbers are written exactly
        # ASE writes per-atom columns with 8 decimals
        np.testing.assert_allclose(back.positions, written.positions, rtol=0, atol=5e-9)
        np.testing.assert_allclose(back.arrays["force_std"], written.arrays["force_std"], rtol=0, atol=5e-9)
        assert np.array_equal(back.cell.array, written.cell.array) and back.pbc.all()
        structure = Structure.from_ase(back)
        assert back.calc is None and structure.energy is None and structure.forces is None
        assert structure.stress is None
    write_trajectory(tmp_path / "none.extxyz", [])
    assert (tmp_path / "none.extxyz").read_text() == "" and read_trajectory(tmp_path / "none.extxyz") == []


def test_stored_and_computed_vectors_agree(cuau, tmp_path):
    pure_copper = Structure(cuau[0].positions, ["Cu"] * cuau[0].n_atoms, cell=cuau[0].cell, energy=-1.0)
    structures = [*cuau, pure_copper]
    d = descriptor()
    vectors = structure_vectors(d, structures, batch_size=4)
    assert vectors.shape == (len(structures), 2 * d.n_features)
    assert np.all(vectors[-1, d.n_features:] == 0) and np.any(vectors[-1, :d.n_features] != 0)
    first = d.forward_from_positions(structures[0].positions, structures[0].species, structures[0].cell,
                                     structures[0].pbc).numpy()
    gold = np.array(structures[0].species) == "Au"
    np.testing.assert_allclose(vectors[0], np.concatenate([first[~gold].mean(0), first[gold].mean(0)]), atol=1e-12)
    cached = CachedStructureDataset(structures, d, atomic_energies=REFERENCES, show_progress=False)
    plain = StructureDataset(structures, d, atomic_energies=REFERENCES)
    assert cached.stored_features([0]) is not None and plain.stored_features([0]) is None
    np.testing.assert_allclose(dataset_vectors(cached, batch_size=5), vectors, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dataset_vectors(plain, batch_size=5), vectors, rtol=0, atol=1e-10)
    databases = []
    for name, persist in (("stored.h5", True), ("computed.h5", False)):
        HDF5StructureDataset(d, tmp_path / name, sources=structures, mode="build", atomic_energies=REFERENCES
                             ).build_database(show_progress=False, persist_features=persist, persist_descriptor=True)
        databases.append(HDF5StructureDataset(None, tmp_path / name, mode="load"))
        np.testing.assert_allclose(dataset_vectors(databases[-1], batch_size=5), vectors, rtol=0, atol=1e-10)
    assert databases[0].stored_features([0]) is not None and databases[1].stored_features([0]) is None
    shards = ShardedDataset([databases[0], cached])
    assert shards.stored_features([0]) is not None
    np.testing.assert_allclose(dataset_vectors(shards, batch_size=9), np.concatenate([vectors] * 2), rtol=0,
                               atol=1e-10)
    np.testing.assert_allclose(structure_vectors(d, [s.to_ase() for s in structures]), vectors, rtol=0, atol=0)


def _brute_force_fps(candidates, labelled, n, min_distance):
    chosen = []
    while len(chosen) < n:
        best, best_distance = None, -1.0
        for i, point in enumerate(candidates):
            references = list(labelled) + [candidates[j] for j in chosen]
            distance = min((math.sqrt(sum((a - b) ** 2 for a, b in zip(point, r))) for r in references),
                           default=math.inf)
            if distance > best_distance:
                best, best_distance = i, distance
        if best is None or best_distance < min_distance or best_distance == 0:
            break
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("n_labelled, n, min_distance", [(5, 10, 0.0), (5, 40, 0.0), (5, 40, 0.8), (0, 12, 0.0),
                                                         (0, 40, 1.5), (1, 3, 0.0)])
def test_farthest_point_sampling_matches_brute_force(n_labelled, n, min_distance):
    rng = np.random.default_rng(n_labelled + n)
    candidates = rng.normal(size=(30, 4))
    candidates[7] = candidates[3]  # a duplicate, and a tie of equal distances
    labelled = rng.normal(size=(n_labelled, 4))
    if n_labelled:
        candidates[11] = labelled[0]  # already labelled: never picked
    picks = farthest_point_sampling(candidates, labelled, n, min_distance)
    assert picks == _brute_force_fps(candidates, labelled, n, min_distance)
    assert len(set(picks)) == len(picks) and not (3 in picks and 7 in picks)
    if n_labelled:
        assert 11 not in picks
    else:
        assert picks[0] == 0


def test_farthest_point_sampling_breaks_ties_by_index():
    grid = np.array([[0, 0], [2, 0], [0, 2], [2, 2], [1, 1]], float)
    assert farthest_point_sampling(grid, np.array([[1.0, 1.0]]), 5) == [0, 1, 2, 3]
    assert farthest_point_sampling(grid, np.zeros((0, 2)), 5) == _brute_force_fps(grid, [], 5, 0.0) == [0, 3, 1, 2, 4]
    assert farthest_point_sampling(grid, grid, 5) == [] and farthest_point_sampling(grid, [], 0) == []


def _distance(vector, other, scale):
    return float(np.linalg.norm((vector - other) / scale))


def test_the_default_min_distance_tells_a_copy_from_one_md_step(committee, cuau, tmp_path):
    """A training structure written to a trajectory file and read back (positions rounded to 1e-8 Å) lies
    ~1e-8 from itself in standardized units; one 2 fs MD step at 300 K moves it ~1e-2 (8 atoms here,
    3e-3 to 3e-2 for 8 to 256 atoms at 100 to 300 K)."""
    training = cuau
    d = descriptor()
    scale = feature_scale(structure_vectors(d, training))
    start = next(s for s in training if s.n_atoms == 8)
    frames, _ = explore(committee, start, _settings(steps=1, interval=1))
    write_trajectory(tmp_path / "one_step.extxyz", frames)
    read_back, moved = structure_vectors(d, read_trajectory(tmp_path / "one_step.extxyz"))
    rounded = start.copy()
    rounded.positions = np.round(rounded.positions, 8)
    original, rounded = structure_vectors(d, [start, rounded])
    copies = (_distance(original, read_back, scale), _distance(original, rounded, scale))
    one_step = _distance(original, moved, scale)
    assert max(copies) < DEFAULT_MIN_DISTANCE / 100 and one_step > 10 * DEFAULT_MIN_DISTANCE, (copies, one_step)


def _with_spread(atoms, value):
    atoms = atoms.copy()
    atoms.info["max_force_std"] = value
    return atoms


def test_selection_keeps_its_candidates_and_skips_what_is_labelled(committee, every_step, cuau, tmp_path):
    training = cuau
    d = descriptor()
    labelled = structure_vectors(d, training)
    explored = every_step[0][:10]
    # a copy of a training structure, through a trajectory file as the workflow passes it
    write_trajectory(tmp_path / "copy.extxyz", [Atoms(training[12].species, training[12].positions,
                                                      cell=training[12].cell, pbc=True)])
    spreads = [0.1, 0.3, 0.05, 0.31, 0.2, 0.2, 0.2, 0.2, 0.2, math.nan, 0.2]
    frames = [_with_spread(a, v) for a, v in zip(explored + read_trajectory(tmp_path / "copy.extxyz"), spreads)]
    vectors = structure_vectors(d, frames)
    everything = select_frames(frames, vectors, labelled, 0.1, 0.3, max_frames=100, rule="trust_window")
    assert everything["candidates"] == [0, 1, 4, 5, 6, 7, 8, 10]  # both bounds inclusive; NaN is outside
    assert sorted(everything["selected"]) == [0, 1, 4, 5, 6, 7, 8]  # not the copy of a labelled structure
    few = select_frames(frames, vectors, labelled, 0.1, 0.3, max_frames=3, rule="trust_window")
    assert few["selected"] == everything["selected"][:3] and len(few["distances"]) == 3
    scale = feature_scale(labelled)
    candidates = everything["candidates"]
    assert few["selected"] == [candidates[i] for i in farthest_point_sampling(
        vectors[candidates] / scale, labelled / scale, 3, DEFAULT_MIN_DISTANCE)]
    for index, distance in zip(few["selected"], few["distances"]):
        assert distance == pytest.approx(min(_distance(vectors[index], v, scale) for v in labelled))
    assert few["pick_distances"][0] == few["distances"][0]
    assert few["pick_distances"] == sorted(few["pick_distances"], reverse=True)
    assert select_frames(frames, vectors, labelled, 0.4, 0.5, 3, rule="trust_window") == {
        "candidates": [], "selected": [], "distances": [], "pick_distances": [], "n_near_failed": 0}
    # frames 0 and 4 failed to label in an earlier round (read back from a file): never selected again
    write_trajectory(tmp_path / "failed.extxyz", [frames[0], frames[4]])
    failed = structure_vectors(d, read_trajectory(tmp_path / "failed.extxyz"))
    without = select_frames(frames, vectors, labelled, 0.1, 0.3, max_frames=100, failed_vectors=failed,
                            rule="trust_window")
    assert sorted(without["selected"]) == [1, 5, 6, 7, 8] and without["n_near_failed"] == 2
    assert without["candidates"] == everything["candidates"]
    assert select_frames([], np.zeros((0, 0)), labelled, 0.1, 0.3, 3)["selected"] == []
    unlabelled = select_frames(frames, vectors, labelled[:0], 0.1, 0.3, 2, rule="trust_window")
    assert unlabelled["selected"][0] == 0 and unlabelled["distances"] == [None, None]
    # the default rule: farthest-point sampling among every frame up to trust_hi (0.05 too)
    default = select_frames(frames, vectors, labelled, 0.1, 0.3, max_frames=100)
    assert default["candidates"] == [0, 1, 2, 4, 5, 6, 7, 8, 10] and sorted(default["selected"]) == [0, 1, 2, 4, 5, 6, 7, 8]
    with pytest.raises(ValueError, match="rule must be one of"):
        select_frames(frames, vectors, labelled, 0.1, 0.3, 3, rule="top_sigma")
    with pytest.raises(ValueError, match="trust_lo must be <= trust_hi"):
        select_frames(frames, vectors, labelled, 0.3, 0.1, 3)
    with pytest.raises(ValueError, match="frame 0 has no info"):
        select_frames([Atoms("Cu")], vectors[:1], labelled, 0.1, 0.3, 3)


DESCRIPTOR = ["--species", "Cu", "Au", "--rad-order", "2", "--rad-cutoff", "4.0", "--ang-order", "1", "--ang-cutoff",
              "3.0"]


def test_select_never_takes_a_frame_the_database_would_refuse(tmp_path, capsys):
    main(["example-data", "--output", str(tmp_path / "base.extxyz"), "--n-structures", "3", "--seed", "1"])
    main(["build-database", str(tmp_path / "base.extxyz"), "--output", str(tmp_path / "base.h5"), *DESCRIPTOR])
    start = _start().to_ase()
    close, dense = start.copy(), start.copy()
    close.positions[1] = close.positions[0] + [0.45, 0, 0]  # hot MD
    dense.set_cell(dense.cell * 0.6, scale_atoms=True)  # 94 neighbours per atom within 4 Å, 20 at the start
    trajectory = tmp_path / "explored.extxyz"
    write_trajectory(trajectory, [_with_spread(atoms, 0.1) for atoms in (start, close, dense)])
    select = ["select", str(trajectory), "--database", str(tmp_path / "base.h5"), "--trust-lo", "0.05", "--trust-hi",
              "0.3", "--max-frames", "3", "--candidates", str(tmp_path / "candidates.extxyz"), "--selected",
              str(tmp_path / "selected.extxyz"), "--report", str(tmp_path / "selection.json"), "--max-pairs-per-atom",
              "50"]
    main(select)
    report = json.loads((tmp_path / "selection.json").read_text())
    assert (report["n_frames"], report["n_implausible"], report["n_candidates"]) == (3, 2, 1)
    assert [s["name"] for s in report["selected"]] == [f"{trajectory}#frame=0"]
    out = capsys.readouterr().out
    assert (f"not plausible, never selected: {trajectory}#frame=1: atoms 0 (Au) and 1 (Cu) are 0.45 Å apart; "
            f"closer than 0.5 Å is not plausible (min_distance)") in out
    assert "(max_pairs_per_atom)" in out and "3 frames, 2 not plausible, 1 candidates, 1 selected" in out
    main([*select, "--min-distance", "0.4"])
    report = json.loads((tmp_path / "selection.json").read_text())
    assert report["n_implausible"] == 1 and len(report["selected"]) == 2


def test_a_seed_file_in_nm_is_refused_naming_the_file_and_frame(tmp_path, capsys):
    start = _start()
    in_nm = start.copy()
    in_nm.positions, in_nm.cell = in_nm.positions / 10, in_nm.cell / 10
    seeds, output = tmp_path / "seeds.extxyz", tmp_path / "drawn.extxyz"
    write_extxyz(seeds, [start, in_nm])
    argv = ["exploration-seeds", "--files", str(seeds), "--count", "1", "--seed", "0", "--output", str(output)]
    with pytest.raises(SystemExit):
        main([*argv, "--cutoff", "5"])
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith(f"aenet-core exploration-seeds failed: a starting structure is not plausible training "
                            f"data: {seeds} (frame 1): 32 atoms at ") and error.endswith("is the cell in Å (not nm)?")
    assert not output.exists()
    main([*argv, "--cutoff", "5", "--max-pairs-per-atom", "1e6", "--min-distance", "0"])  # the run allows it
    assert output.exists()
