"""Training targets.  A target is a run ("example") or one round of its active-learning loop
("example/round_02"); the database, split, committee, export and evaluation rules serve both."""
from __future__ import annotations

import re
from decimal import Decimal

RUN_NAME = r"[A-Za-z0-9_.-]+"
ROUND_NUMBER = r"[0-9]{2}"
TARGET_NAME = rf"{RUN_NAME}(/round_{ROUND_NUMBER})?"
TEMPERATURE = r"[0-9]+(?:\.[0-9]+)?"  # as temperature_label spells it
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


def temperature_label(kelvin: float) -> str:
    """A temperature as file names and the explore rule's wildcard spell it: every digit, never an exponent
    (``1e+06`` would not match the wildcard), no trailing ``.0`` (300 and 300.0 are one file)."""
    text = format(Decimal(repr(float(kelvin))), "f")  # repr: the shortest digits that read back as the number
    return text.rstrip("0").rstrip(".") if "." in text else text
