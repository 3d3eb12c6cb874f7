"""The trust levels a round explores and selects with, in the unit the loop gives them.

The explored frames carry the committee's largest per-atom force spread, ``max_force_std`` (eV/Å).  The loop's
``trust_lo`` and ``trust_hi`` compare with it directly (scale ``absolute``), or through what the previous
round's evaluation measured on its test structures (``aenet_core.evaluation.force_calibration``):

- ``calibrated``: the levels are expected force errors (eV/Å); a frame's is the force calibration factor k
  times its ``max_force_std``, so the levels on ``max_force_std`` are ``trust / k``.
- ``test_quantiles``: the levels are quantiles (0..1) of the largest per-atom force error of each test
  structure; a frame's expected largest error, k times its ``max_force_std``, is compared with them.  The levels
  follow the committee round by round (AiiDA-TrainsPot refits its thresholds every loop in this spirit).
"""
from __future__ import annotations

import numpy as np

TRUST_SCALES = ("absolute", "calibrated", "test_quantiles")


def trust_levels(trust_lo: float, trust_hi: float, scale: str, evaluation: dict | None = None) -> dict:
    """``{"trust_lo", "trust_hi"}`` on ``max_force_std`` (eV/Å) for the loop's levels on ``scale``;
    ``evaluation`` is the previous round's evaluation summary (not read for ``absolute``)."""
    if scale not in TRUST_SCALES:
        raise ValueError(f"trust scale must be one of {TRUST_SCALES}; got {scale!r}")
    if scale == "absolute":
        return {"trust_lo": trust_lo, "trust_hi": trust_hi}
    factor = (evaluation or {}).get("force_calibration_factor")
    if not factor:
        raise ValueError(f"trust levels on the {scale} scale need the previous round's force calibration, which its "
                         f"evaluation has not got (it needs a committee of 2 or more members, test structures with "
                         f"forces, and an evaluation by this version: run it again)")
    if scale == "calibrated":
        return {"trust_lo": trust_lo / factor, "trust_hi": trust_hi / factor}
    if not 0 <= trust_lo < trust_hi <= 1:
        raise ValueError(f"test_quantiles trust levels are quantiles: 0 <= trust_lo < trust_hi <= 1; got {trust_lo} "
                         f"and {trust_hi}")
    errors = np.asarray(evaluation.get("max_force_errors") or [], float)
    if not len(errors):
        raise ValueError("trust levels on the test_quantiles scale need the previous round's force errors on its "
                         "test structures; its evaluation has none")
    lo, hi = np.quantile(errors, [trust_lo, trust_hi]) / factor
    return {"trust_lo": float(lo), "trust_hi": float(hi)}
