"""Training targets.  A target is a run ("example") or one round of its active-learning loop
("example/round_02"); the database, split, committee, export and evaluation rules serve both."""
from __future__ import annotations

import re

RUN_NAME = r"[A-Za-z0-9_.-]+"
ROUND_NUMBER = r"[0-9]{2}"
TARGET_NAME = rf"{RUN_NAME}(/round_{ROUND_NUMBER})?"
_ROUND = re.compile(rf"^(?P<run>[^/]+)/round_(?P<round>{ROUND_NUMBER})$")


def run_of(target: str) -> str:
    """The run a target belongs to."""
    match = _ROUND.match(target)
    return match["run"] if match else target


def round_of(target: str) -> int | None:
    """The round of an active-learning target, None for a plain run."""
    match = _ROUND.match(target)
    return int(match["round"]) if match else None


def round_label(index: int) -> str:
    return f"{index:02d}"


def round_target(run: str, index: int) -> str:
    return f"{run}/round_{round_label(index)}"
