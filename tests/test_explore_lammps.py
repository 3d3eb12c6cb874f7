"""Exploration MD in LAMMPS (``explore_lammps``) against the ASE engine (``explore``) on the same committee.

From the same start and seed, NVE in LAMMPS follows ASE's velocity Verlet: the engines differ only in the
constant that turns eV/Å/amu into Å/ps² (LAMMPS's metal units against ASE's CODATA 2014 values: 5.5e-8
relative) and in the order of floating-point sums, so 30 steps of 1 fs drift apart by ~1e-9 Å, ~1e-10 eV/Å in
the spreads, ~1e-9 eV in the energy, ~4e-9 relative in momenta and temperature (measured); the tolerances are
25-100x that, far below what a wrong rotation, unit or step would give (1e-4 and more).  Skips, with the reason, where LAMMPS or the plugin is not built.
"""
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest

from aenet_core.active_learning.explore import explore
from aenet_core.active_learning.explore_lammps import explore_lammps
from aenet_core.active_learning.settings import ExploreSettings
from aenet_core.lammps import LammpsError
from test_lammps import KINDS, TRICLINIC, random_structure, synthetic_committee

pytestmark = pytest.mark.usefixtures("lammps_ready")
POSITION_TOL, SPREAD_TOL, ENERGY_TOL, RELATIVE_TOL = 1e-7, 1e-8, 1e-7, 1e-7  # Å, eV/Å, eV, of T and momenta
INFO = {"step", "time_fs", "temperature_K", "committee_energy", "energy_std", "energy_std_calibrated",
        "max_force_std", "above_trust_hi"}


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    """(Python committee, its export folder): three synthetic Ti-O members, as in test_lammps."""
    root = tmp_path_factory.mktemp("committee")
    return synthetic_committee(root), root


def _start():
    """16 Ti-O atoms in a triclinic cell turned off LAMMPS's orientation."""
    return random_structure(["Ti", "O"], 16, TRICLINIC * 1.15, [True] * 3, 11, min_distance=1.8)


def _settings(**changes):
    return replace(ExploreSettings(temperature=600.0, trust_hi=1e9, seed=3, steps=30, interval=5, timestep=1.0,
                                   ensemble="nve"), **changes)


def assert_same_trajectory(frames, reference):
    assert [f.info["step"] for f in frames] == [f.info["step"] for f in reference]
    for frame, other in zip(frames, reference):
        step = frame.info["step"]
        assert frame.calc is None and set(frame.info) == INFO, step
        assert frame.get_chemical_symbols() == other.get_chemical_symbols()
        assert np.array_equal(frame.pbc, other.pbc) and np.allclose(frame.cell, other.cell, atol=POSITION_TOL)
        assert np.abs(frame.positions - other.positions).max() < POSITION_TOL, step
        assert np.allclose(frame.get_momenta(), other.get_momenta(), rtol=RELATIVE_TOL, atol=RELATIVE_TOL), step
        assert np.abs(frame.arrays["force_std"] - other.arrays["force_std"]).max() < SPREAD_TOL, step
        for key, tolerance in (("max_force_std", SPREAD_TOL), ("committee_energy", ENERGY_TOL),
                               ("energy_std", ENERGY_TOL)):
            assert abs(frame.info[key] - other.info[key]) < tolerance, (step, key)
        assert math.isclose(frame.info["temperature_K"], other.info["temperature_K"], rel_tol=RELATIVE_TOL)
        for key in ("time_fs", "above_trust_hi"):
            assert frame.info[key] == other.info[key], (step, key)


def assert_same_summary(summary, reference):
    assert summary.keys() == reference.keys()
    for key, value in reference.items():
        if key.startswith("max_force_std"):
            assert abs(summary[key] - value) < SPREAD_TOL, key
        else:
            assert summary[key] == value, key


@pytest.mark.parametrize("kind", ["triclinic", "slab", "molecule"])
def test_nve_follows_the_ase_trajectory_from_the_same_start(committee, kind, tmp_path):
    potential, folder = committee
    start = _start() if kind == "triclinic" else KINDS[kind](["Ti", "O"])
    frames, summary = explore_lammps(folder, start, _settings(), workdir=tmp_path)
    reference, reference_summary = explore(potential, start, _settings())
    assert_same_trajectory(frames, reference)
    assert_same_summary(summary, reference_summary)
    assert [f.info["step"] for f in frames] == [0, 5, 10, 15, 20, 25, 30]
    assert np.abs(frames[-1].positions - frames[0].positions).max() > 0.05  # the atoms moved
    assert math.isnan(frames[0].info["energy_std_calibrated"])
    assert (tmp_path / "log.lammps").is_file()  # a given workdir is kept


@pytest.mark.parametrize("ensemble", ["nvt", "npt"])
def test_nvt_and_npt_record_every_interval_and_repeat_with_the_seed(committee, ensemble):
    _, folder = committee
    settings = _settings(ensemble=ensemble, steps=20, barostat_time=200.0)
    frames, summary = explore_lammps(folder, _start(), settings, calibration_factor=2.0)
    assert [f.info["step"] for f in frames] == [0, 5, 10, 15, 20]
    assert summary["n_steps_run"] == 20 and summary["n_frames"] == 5 and not summary["stopped_early"]
    for frame in frames:
        assert frame.calc is None and set(frame.info) == INFO
        assert frame.info["energy_std_calibrated"] == 2.0 * frame.info["energy_std"]
        assert frame.info["time_fs"] == frame.info["step"] * 1.0
        assert math.isclose(frame.arrays["force_std"].max(), frame.info["max_force_std"], rel_tol=1e-14)
    again, summary_again = explore_lammps(folder, _start(), settings, calibration_factor=2.0)
    assert summary_again == summary
    for frame, other in zip(frames, again):
        assert frame.info == other.info
        assert np.array_equal(frame.positions, other.positions) and np.array_equal(frame.cell, other.cell)
        assert np.array_equal(frame.get_momenta(), other.get_momenta())
    other_seed, _ = explore_lammps(folder, _start(), replace(settings, seed=4))
    assert not np.allclose(other_seed[-1].positions, frames[-1].positions)
    scale = frames[-1].cell.array / _start().cell
    if ensemble == "npt":  # isotropic: the cell keeps its shape and orientation, its size changes
        assert np.allclose(scale, scale[0, 0]) and abs(scale[0, 0] - 1) > 1e-4
    else:
        assert np.allclose(scale, 1)


def test_a_spread_above_trust_hi_stops_the_trajectory_as_in_ase(committee):
    potential, folder = committee
    spreads = [f.info["max_force_std"] for f in explore(potential, _start(), _settings(interval=1))[0]]
    # a step off the interval that passes every step before it, by a margin far above the engines' difference
    stop = next(k for k in range(1, 31) if k % 5 and spreads[k] > max(spreads[:k]) + 1e-6)
    for trust_hi, stop_step in ((0.5 * (spreads[stop] + max(spreads[:stop])), stop), (0.5 * spreads[0], 0)):
        settings = _settings(trust_hi=trust_hi)
        frames, summary = explore_lammps(folder, _start(), settings)
        reference, reference_summary = explore(potential, _start(), settings)
        assert_same_trajectory(frames, reference)
        assert_same_summary(summary, reference_summary)
        assert summary["stopped_early"] and summary["stop_step"] == summary["n_steps_run"] == stop_step
        assert [f.info["step"] for f in frames] == [*range(0, stop_step, 5), stop_step]
        assert frames[-1].info["above_trust_hi"] and not any(f.info["above_trust_hi"] for f in frames[:-1])


def test_two_mpi_ranks_follow_one(committee):
    _, folder = committee
    start = random_structure(["Ti", "O"], 32, np.diag([8.4, 8.0, 8.2]), [True] * 3, 12, min_distance=1.8)
    one, _ = explore_lammps(folder, start, _settings(steps=20))
    two, _ = explore_lammps(folder, start, _settings(steps=20), ranks=2)
    assert_same_trajectory(two, one)


def test_lammps_errors_and_a_lone_potential_are_named(committee, tmp_path):
    _, folder = committee
    shutil.copytree(folder, tmp_path / "broken", ignore=shutil.ignore_patterns("*.nn"))
    ti = tmp_path / "broken" / "member_001" / "potential.Ti.nn.ascii"
    ti.write_text("\n".join(ti.read_text().splitlines()[:12]) + "\n")
    with pytest.raises(LammpsError, match=r"LAMMPS failed .*member_001/potential\.Ti\.nn\.ascii"):
        explore_lammps(tmp_path / "broken", _start(), _settings(steps=2))
    with pytest.raises(LammpsError, match="needs a committee"):
        explore_lammps(folder / "member_000", _start(), _settings(steps=2))
