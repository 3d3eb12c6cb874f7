"""``TorchCommitteeConfig``: how many members, their seeds, how many train at once, where the files go."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


def _check_int(name, value, minimum=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"TorchCommitteeConfig.{name} must be an integer{bound}; got {value!r}")


@dataclass
class TorchCommitteeConfig:
    """How many members, their seeds, how many train at once and where the files go."""

    num_members: int
    base_seed: int | None = None
    member_seeds: list | None = None
    max_parallel: int = 1
    devices: list | None = None
    output_dir: str | Path | None = None

    def __post_init__(self):
        _check_int("num_members", self.num_members, 1)
        if self.base_seed is not None:
            _check_int("base_seed", self.base_seed)
        if self.member_seeds is not None:
            self.member_seeds = list(self.member_seeds)
            if len(self.member_seeds) != self.num_members:
                raise ValueError(f"TorchCommitteeConfig.member_seeds must have length equal to num_members "
                                 f"({self.num_members}); got {len(self.member_seeds)} seeds")
            for seed in self.member_seeds:
                _check_int("member_seeds[...]", seed)
        _check_int("max_parallel", self.max_parallel, 1)
        if self.devices is not None:
            self.devices = [str(d) for d in self.devices]
            if not self.devices:
                raise ValueError("TorchCommitteeConfig.devices must be None or a non-empty list")

    def seeds(self, training_seed) -> list:
        if self.member_seeds is not None:
            return list(self.member_seeds)
        start = self.base_seed if self.base_seed is not None else training_seed
        return [None if start is None else start + i for i in range(self.num_members)]

    def device(self, index: int, default: str) -> str:
        return self.devices[index % len(self.devices)] if self.devices else default

    def directory(self) -> Path:
        return Path(self.output_dir if self.output_dir is not None else "committee_run")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["output_dir"] = None if self.output_dir is None else str(self.output_dir)
        return out


def member_label(index: int, num_members: int) -> str:
    """A member's zero-padded index, at least three digits ("007"): what its folder and the workflow call it."""
    width = max(3, len(str(num_members - 1)))
    return f"{index:0{width}d}"


def member_dir_name(index: int, num_members: int) -> str:
    return f"member_{member_label(index, num_members)}"


