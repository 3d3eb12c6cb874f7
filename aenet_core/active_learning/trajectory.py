"""Exploration trajectories as extended XYZ files: the frames ``explore`` records, the candidates and the
selection; free of torch, so that the jobs that only read or write frames (label) start fast."""
from __future__ import annotations

from pathlib import Path

import ase.io

from aenet_core.files import atomic_write


def write_trajectory(path, frames) -> None:
    """``frames`` as extended XYZ, written atomically (an empty list gives an empty file).

    Positions and per-atom arrays are written with 8 decimals (ASE's fixed format), the cell and
    ``info`` numbers exactly; calculator results are never written.
    """
    frames = list(frames)
    with atomic_write(path) as handle:
        if frames:
            ase.io.write(handle, frames, format="extxyz", write_results=False)


def read_trajectory(path) -> list:
    """The frames of a ``write_trajectory`` file (an empty list for an empty file)."""
    if Path(path).stat().st_size == 0:  # nothing recorded; not every ASE version reads such a file
        return []
    return ase.io.read(path, index=":", format="extxyz")
