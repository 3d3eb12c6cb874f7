"""Numeric settings checked the same way everywhere: kind, bounds, the message, and the JSON schema.

One ``NumberRule`` per setting is the single source of its allowed range: the
Python check, the error text and the workflow's config schema all derive from it.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np


class NumberRule(NamedTuple):
    """How one numeric field is checked: its kind and bounds (None: unbounded; ``*_open``: exclusive)."""

    integer: bool  # int only (bool rejected) rather than any finite real
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    optional: bool = False  # None allowed

    def test(self, x) -> bool:
        above = self.low is None or (x > self.low if self.low_open else x >= self.low)
        below = self.high is None or (x < self.high if self.high_open else x <= self.high)
        return above and below

    @property
    def text(self) -> str:
        """The allowed range in words, e.g. ">= 0" or "in [0, 1)"."""
        low, high = (f"{value:d}" if self.integer else f"{value:g}" for value in (self.low or 0, self.high or 0))
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        return ""

    def json_schema(self) -> dict:
        kind = "integer" if self.integer else "number"
        schema = {"type": [kind, "null"] if self.optional else kind}
        for bound, value, is_open in (("minimum", self.low, self.low_open), ("maximum", self.high, self.high_open)):
            if value is not None:
                schema[("exclusive" + bound.capitalize()) if is_open else bound] = value
        return schema


ANY = NumberRule(False)
NONNEG = NumberRule(False, 0)
POSITIVE = NumberRule(False, 0, low_open=True)
UNIT = NumberRule(False, 0, 1)
BETA = NumberRule(False, 0, 1, high_open=True)
COUNT = NumberRule(True, 0)
# At least one training entry remains whatever the number of entries (splits and TorchTrainingConfig).
TESTPERCENT = NumberRule(False, 0, 100, high_open=True)
DEFAULT_TESTPERCENT = 10.0  # the share of structures a split sets aside for testing
# Training seeds numpy with its seed (potential.seed_everything), and np.random.seed takes only these.
SEED = NumberRule(True, 0, 2**32 - 1)
# The descriptor's settings live here, free of torch, so that the workflow checks a config before any job.
# Chebyshev expansion orders: no descriptor needs more than 100; 10^5 only exhausts memory.
ORDER = NumberRule(True, 0, 100)
DEFAULT_MIN_CUTOFF = 0.55  # Å, aenet-python's default
# The workflow's training defaults where they differ from the library's (aenet-python's, which TorchTrainingConfig
# keeps): aenet-python's 100 epochs of Adam at 1e-3 in batches of 32 leave real data underfitted. On TiO2
# (docs/own-data.md) these, and force_weight 0.3 when the data carry forces (not 0: energies only, nor 0.1 or
# 0.5), gave the lowest test errors.
WORKFLOW_TRAINING = {"iterations": 300, "method": {"name": "adam", "mu": 0.005, "batchsize": 16}}
DATA_FORCE_WEIGHT = 0.3


def checked_number(owner: str, name: str, value, rule: NumberRule):
    """The value as int/float (or None when allowed); ValueError when it breaks the rule."""
    if value is None and rule.optional:
        return None
    kind = numbers.Integral if rule.integer else numbers.Real
    if not (isinstance(value, kind) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(value) and rule.test(value)):
        allowed = " ".join(filter(None, ["an int" if rule.integer else "a finite number", rule.text]))
        allowed += " or None" if rule.optional else ""
        raise ValueError(f"{owner}.{name} must be {allowed}; got {value!r}")
    return int(value) if rule.integer else float(value)


def check_numbers(obj, rules: Mapping[str, NumberRule]) -> None:
    """Validate and normalise the numeric fields of a (possibly frozen) dataclass."""
    owner = type(obj).__name__
    for name, rule in rules.items():
        object.__setattr__(obj, name, checked_number(owner, name, getattr(obj, name), rule))
