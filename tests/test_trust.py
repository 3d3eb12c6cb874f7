"""Trust levels on another scale than the force spread's: through the previous round's force calibration."""
import numpy as np
import pytest

from aenet_core.active_learning.trust import trust_levels
from aenet_core.evaluation import force_calibration
from aenet_core.workflow.arguments import explore_args, select_args

EVALUATION = {"force_calibration_factor": 2.0, "max_force_errors": [0.1, 0.2, 0.3, 0.4, 0.5]}


def test_absolute_levels_are_the_loops_and_need_no_evaluation():
    assert trust_levels(0.05, 1.0, "absolute") == {"trust_lo": 0.05, "trust_hi": 1.0}


def test_calibrated_levels_are_expected_errors_divided_by_the_calibration_factor():
    assert trust_levels(0.1, 1.0, "calibrated", EVALUATION) == {"trust_lo": 0.05, "trust_hi": 0.5}


def test_quantile_levels_follow_the_test_errors_of_the_previous_round():
    levels = trust_levels(0.25, 1.0, "test_quantiles", EVALUATION)
    assert levels == pytest.approx({"trust_lo": 0.2 / 2, "trust_hi": 0.5 / 2})
    with pytest.raises(ValueError, match="quantiles"):
        trust_levels(0.25, 2.0, "test_quantiles", EVALUATION)


def test_a_scale_needs_a_force_calibration():
    for missing in ({}, {"force_calibration_factor": None}):
        with pytest.raises(ValueError, match="force calibration"):
            trust_levels(0.1, 1.0, "calibrated", missing)
    with pytest.raises(ValueError, match="one of"):
        trust_levels(0.1, 1.0, "sigma", EVALUATION)


def test_the_force_calibration_is_the_likelihood_factor_over_atoms():
    rng = np.random.default_rng(0)
    stds = [rng.uniform(0.05, 0.2, 400), rng.uniform(0.05, 0.2, 300)]
    # errors drawn with 3 times the spread, per component: std/sqrt(3) each, so |error|^2 ~ (3 std)^2
    errors = [3 * (s / np.sqrt(3))[:, None] * rng.standard_normal((len(s), 3)) for s in stds]
    result = force_calibration(errors, stds)
    assert result["force_calibration_factor"] == pytest.approx(3.0, rel=0.05)
    assert result["max_force_errors"] == [float(np.linalg.norm(e, axis=1).max()) for e in errors]
    assert force_calibration([], []) == {"force_calibration_factor": None, "max_force_errors": []}
    assert force_calibration([np.ones((2, 3))], [np.zeros(2)])["force_calibration_factor"] is None


def test_the_jobs_get_the_scale_and_the_evaluation_only_when_the_loop_asks():
    loop = {"trust_lo": 0.1, "trust_hi": 0.9, "trust_scale": "absolute", "random_seed": 0, "threads": 1,
            "max_frames": 4}
    assert "--trust-scale" not in explore_args(loop, "01", "000", "300") + select_args(loop)
    assert "--trust-lo" not in explore_args(loop, "01", "000", "300")  # the command line of earlier versions
    loop["trust_scale"] = "calibrated"
    explore = explore_args(loop, "01", "000", "300", "results/r/round_00/evaluation/summary.json")
    assert ("--trust-hi 0.9 --trust-lo 0.1 --trust-scale calibrated --evaluation "
            "results/r/round_00/evaluation/summary.json") in explore
    assert select_args(loop, "e.json").endswith("--trust-scale calibrated --evaluation e.json")
