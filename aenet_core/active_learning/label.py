"""Labelling: energies, forces and stresses of selected frames from any ASE calculator.

The calculator is named by import path (``ase.calculators.emt.EMT``, ``ase.calculators.vasp.Vasp``, ...) and
built with keyword arguments, a fresh one per frame, in the process of the labelling job (never in the
workflow's own process).  A frame whose calculation fails, or whose labels are not plausible training
data, is recorded with its error and left out; the others are kept.

Each finished calculation is kept in the batch's work directory (``frame_NNNN.json``, with the hash of
the frame's geometry and of the calculator settings), so that a batch killed midway and run again
repeats only the calculations it had not finished.  A file-based calculator (DFT codes) runs in
``frame_NNNN/`` there.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
from ase.calculators.calculator import PropertyNotImplementedError

from aenet_core.active_learning.calculators import calculator_class
from aenet_core.data.limits import PlausibilityLimits
from aenet_core.data.plausibility import check_labels
from aenet_core.files import read_json, write_json
from aenet_core.progress import ProgressLog
from aenet_core.structure import Structure, structure_sha256


def _settings_sha256(calculator: str, kwargs: dict) -> str:
    return hashlib.sha256(json.dumps([calculator, kwargs], sort_keys=True, default=str).encode()).hexdigest()


def _calculate(frame: Structure, factory, kwargs: dict, directory: Path) -> dict:
    """{energy, forces, stress or None} of ``frame`` from a fresh calculator."""
    atoms = frame.to_ase()
    calc = factory(**kwargs)
    if hasattr(calc, "directory"):
        calc.directory = str(directory)
    atoms.calc = calc
    energy = float(atoms.get_potential_energy())
    forces = np.asarray(atoms.get_forces(), float)
    stress = None
    if atoms.pbc.all():
        try:
            stress = np.asarray(atoms.get_stress(voigt=True), float)
        except PropertyNotImplementedError:  # e.g. a code without stresses: energies and forces still train
            stress = None
    return {"energy": energy, "forces": forces.tolist(), "stress": None if stress is None else stress.tolist()}


def _labelled(frame: Structure, result: dict) -> Structure:
    return Structure(frame.positions, frame.species, energy=result["energy"], forces=result["forces"],
                     cell=frame.cell, pbc=frame.pbc, name=frame.name, stress=result["stress"])


def _cached(path: Path, key: dict):
    """The stored result of an earlier run of this very calculation, or None."""
    if not path.exists():
        return None
    try:
        stored = read_json(path, "labelling result")
    except ValueError:  # damaged: calculate again
        return None
    return stored["result"] if isinstance(stored, dict) and stored.get("key") == key else None


def label_frames(frames, calculator: str, kwargs: dict | None, workdir, limits: PlausibilityLimits | None = None,
                 first_index: int = 0) -> tuple:
    """(labelled Structures, one record per frame): label each frame with ``calculator(**kwargs)``.

    Records are ``{index, name, status: labelled | failed, error, seconds, reused}``; ``index`` counts from
    ``first_index`` (the frame's position in the round's selection).
    """
    kwargs = dict(kwargs or {})
    limits = limits or PlausibilityLimits()
    factory = calculator_class(calculator)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    settings = _settings_sha256(calculator, kwargs)
    labelled, records = [], []
    progress = ProgressLog("labelling", len(frames), unit="frames", lines=len(frames))
    for offset, frame in enumerate(frames):
        index = first_index + offset
        record = {"index": index, "name": frame.name, "status": "failed", "error": None, "seconds": 0.0,
                  "reused": False}
        stored = workdir / f"frame_{index:04d}.json"
        key = {"geometry_sha256": structure_sha256(frame, labels=False), "calculator_sha256": settings}
        started = time.perf_counter()
        try:
            result = _cached(stored, key)
            record["reused"] = result is not None
            if result is None:
                result = _calculate(frame, factory, kwargs, workdir / f"frame_{index:04d}")
            structure = _labelled(frame, result)
            check_labels(structure, frame.name or f"frame {index}", limits)
        except Exception as err:  # any calculator error is the frame's, not the batch's
            record["error"] = f"{type(err).__name__}: {err}"
        else:
            if not record["reused"]:
                write_json(stored, {"key": key, "result": result})
            labelled.append(structure)
            record["status"] = "labelled"
        record["seconds"] = round(time.perf_counter() - started, 3)
        records.append(record)
        reused = " (reused)" if record["reused"] else ""
        progress.update(detail=f" | {frame.name or index}: {record['status']}{reused} in {record['seconds']:.0f} s")
    return labelled, records


def labelling_report(records, calculator: str, kwargs: dict | None) -> dict:
    """What a batch (or a round) reports: counts, the failures with their errors, the calculator."""
    failed = [r for r in records if r["status"] == "failed"]
    return {"calculator": calculator, "kwargs": dict(kwargs or {}), "n_frames": len(records),
            "n_labelled": len(records) - len(failed), "n_failed": len(failed),
            "seconds": math.fsum(r["seconds"] for r in records), "frames": list(records)}
