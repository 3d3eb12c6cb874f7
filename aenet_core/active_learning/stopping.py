"""When a loop stops by itself: the verdict of a round's exploration.

A loop with ``max_rounds`` stops at the first round whose exploration (with the previous round's committee)
finds the committee accurate enough, or finds nothing left to label: at least ``converged_fraction`` of the
explored frames have a maximum force spread below ``trust_lo`` (dpgen2's ``conv_accuracy``, whose default
this shares), or no frame lies in the trust window, or every candidate is labelled already or failed to label
in an earlier round.  The round then labels and trains nothing, and the
previous round's committee is the loop's result.  The verdict reads the selection report only, so the
workflow decides with it without importing the library's MD.
"""
from __future__ import annotations

DEFAULT_CONVERGED_FRACTION = 0.9


def accurate_fraction(selection: dict) -> float | None:
    """The fraction of explored frames below trust_lo (None for a report of an older version, without it)."""
    if selection.get("n_accurate") is None:
        return None
    return selection["n_accurate"] / selection["n_frames"] if selection["n_frames"] else 1.0


def exploration_verdict(selection: dict, converged_fraction: float = DEFAULT_CONVERGED_FRACTION) -> dict:
    """``{"stop": bool, "reason": str}`` for a round whose selection report (``aenet-core select``) is
    ``selection``."""
    fraction = accurate_fraction(selection)
    n_frames, n_candidates = selection["n_frames"], selection["n_candidates"]
    accurate = "" if fraction is None else (
        f"{fraction:.0%} of {n_frames} explored frames below trust_lo "
        f"({'>=' if fraction >= converged_fraction else '<'} {converged_fraction:.0%})")
    if fraction is not None and fraction >= converged_fraction:
        return {"stop": True, "reason": f"converged: {accurate}"}
    if not n_candidates:
        return {"stop": True, "reason": f"no candidates: none of {n_frames} explored frames lies within the "
                                        f"trust levels{'; ' + accurate if accurate else ''}"}
    if not selection["n_selected"]:
        return {"stop": True, "reason": f"nothing left to label: the {n_candidates} candidates are labelled "
                                        f"already or failed to label before"}
    went_on = f"went on: {n_candidates} candidates, {selection['n_selected']} selected"
    return {"stop": False, "reason": f"{went_on}; {accurate}" if accurate else went_on}
