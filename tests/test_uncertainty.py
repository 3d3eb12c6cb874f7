"""Calibration of committee spreads: the maximum-likelihood factor and its out-of-fold check."""
import numpy as np
import pytest

from aenet_core.uncertainty import Calibration, likelihood_factor, load_calibration_factor


def noisy(seed, n=4000, scale=2.5):
    rng = np.random.default_rng(seed)
    stds = rng.uniform(0.01, 0.1, size=n)
    return scale * stds * rng.normal(size=n), stds


def test_cross_validation_recovers_a_known_scale_with_an_honest_curve():
    errors, stds = noisy(3)
    calibration = Calibration.cross_validate(errors, stds, n_folds=5)
    assert calibration.factor == pytest.approx(2.5, rel=0.05) and calibration.curve_method == "5-fold cross-validation"
    np.testing.assert_allclose(calibration.curve["observed_rmse"], calibration.curve["predicted_std"], rtol=0.15)
    assert calibration.normalized_error_rms == pytest.approx(1.0, rel=0.05)


def test_every_structure_is_scaled_by_the_factor_of_the_other_folds():
    errors = np.array([0.01, -0.02, 0.015, 0.5, -0.01, 0.02])  # one structure far outside its spread
    stds = np.array([0.01, 0.02, 0.01, 0.01, 0.02, 0.01])
    calibration = Calibration.cross_validate(errors, stds, n_folds=3, seed=0)
    folds = np.random.default_rng(0).permutation(len(errors))
    for k in range(3):
        held_out = folds[k::3]
        rest = np.setdiff1d(np.arange(len(errors)), held_out)
        np.testing.assert_allclose(calibration.calibrated_stds[held_out],
                                   likelihood_factor(errors[rest], stds[rest]) * stds[held_out])
    # In sample the outlier would inflate its own bar tenfold; out of fold it does not.
    assert calibration.calibrated_stds[3] < 0.1 * calibration.factor * stds[3]
    assert calibration.factor == pytest.approx(likelihood_factor(errors, stds))


def test_structures_without_a_spread_are_left_out_and_too_few_are_refused():
    calibration = Calibration.cross_validate([0.1, 0.2, 0.1, 0.3], [0.0, 0.1, 0.1, 0.2])
    assert calibration.n_structures == 3 and calibration.calibrated_stds[0] == 0
    with pytest.raises(ValueError, match="at least 3"):
        Calibration.cross_validate([0.1, 0.2, 0.1], [0.0, 0.1, 0.1])


def test_calibration_files_round_trip_and_are_checked(tmp_path):
    errors, stds = noisy(5, n=50)
    calibration = Calibration.cross_validate(errors, stds)
    calibration.save(tmp_path / "calibration.json")
    assert load_calibration_factor(tmp_path / "calibration.json") == calibration.factor
    (tmp_path / "other.json").write_text('{"format": "something else", "factor": 2.0}')
    with pytest.raises(ValueError, match="unsupported format 'something else'"):
        load_calibration_factor(tmp_path / "other.json")
