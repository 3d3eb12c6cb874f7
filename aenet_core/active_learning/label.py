"""Labelling: energies, forces and stresses of selected frames from any ASE calculator.

The calculator is named by import path (``ase.calculators.emt.EMT``, ``ase.calculators.vasp.Vasp``, ...) and
built with keyword arguments, a fresh one per attempt, in the process of the labelling job (never in the
workflow's own process).  Each calculation runs in a child process of its own (forked, in a session of its
own), so that a calculator that crashes, exits or hangs (``timeout``) fails only its attempt; on a timeout
or when the attempt ends, the child and whatever it started (``mpirun``, say) are killed.

An attempt fails when the calculation raises, its process dies, it runs out of time, the calculator moved the
atoms (a relaxation: its labels belong to another geometry), or its labels are not plausible training data (a
calculation that did not converge often returns garbage rather than raising).
A failed attempt is tried again with each of ``retries`` in turn (keyword-argument overrides, e.g.
``[{"mixing": 0.1}, {"algo": "All"}]``); a frame that no attempt labels is recorded with its errors and
left out, the others are kept.  A frame whose geometry is not plausible training data (atoms closer than
``min_distance``, too dense; ``aenet_core.data.plausibility.geometry_problem``) is not calculated: it fails.

Each labelled frame is kept in the batch's work directory (``frame_NNNN.json``: its result, its attempts
and the hashes of its geometry and of the settings of those attempts), so that a batch killed midway and
run again repeats only the frames it had not finished.  Failures are not kept: a rerun tries them again.
A file-based calculator (DFT codes) runs in ``frame_NNNN/`` there, a retry in ``frame_NNNN_retry_K/``.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import math
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np
from ase.calculators.calculator import PropertyNotImplementedError
from ase.geometry import complete_cell

from aenet_core.active_learning.calculators import calculator_class
from aenet_core.data.limits import PlausibilityLimits
from aenet_core.data.plausibility import check_labels, geometry_problem
from aenet_core.files import read_json, write_json
from aenet_core.progress import ProgressLog
from aenet_core.structure import Structure, structure_sha256

# fork: the child needs neither pickling nor imports (the labelling process is torch-free)
_FORK = multiprocessing.get_context("fork")
_PR_SET_PDEATHSIG = 1
MOVED = 1e-6  # Å: a calculator's atoms further than this from the frame's (or its cell) are another geometry
RELAXED = ("its labels belong to another geometry; a relaxation does that (VASP: ibrion > -1 with nsw > 0; set "
           "nsw 0 or ibrion -1)")


def _settings_sha256s(calculator: str, kwargs: dict, retries: list) -> list:
    """The key of attempt k's result: its settings and those of the attempts before it."""
    return [hashlib.sha256(json.dumps([calculator, kwargs, *retries[:k]], sort_keys=True, default=str).encode())
            .hexdigest() for k in range(len(retries) + 1)]


def _moved(reference, atoms) -> str | None:
    """How ``atoms`` differ from the ``reference`` geometry (positions up to periodic images, periodic cell
    vectors: a box a code sets around a molecule is none of its geometry), or None."""
    if len(atoms) != len(reference):
        return f"changed the number of atoms from {len(reference)} to {len(atoms)}"
    pbc = reference.pbc
    if not np.allclose(atoms.cell.array[pbc], reference.cell.array[pbc], rtol=0, atol=MOVED):
        return "changed the cell"
    cell = complete_cell(reference.cell.array)
    fractional = (atoms.positions - reference.positions) @ np.linalg.inv(cell)
    fractional -= np.where(pbc, np.round(fractional), 0)  # a wrapped atom has not moved
    largest = float(np.linalg.norm(fractional @ cell, axis=1).max(initial=0))
    return f"moved the atoms by up to {largest:.3g} Å" if largest > MOVED else None


def _calculate(frame: Structure, factory, kwargs: dict, directory: Path) -> dict:
    """{energy, forces, stress or None} of ``frame`` from a fresh calculator, refused if it moved the atoms."""
    atoms, reference = frame.to_ase(), frame.to_ase()
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
    for ended in (atoms, getattr(calc, "atoms", None)):
        change = None if ended is None else _moved(reference, ended)
        if change:
            raise RuntimeError(f"the calculator {change}: {RELAXED}")
    return {"energy": energy, "forces": forces.tolist(), "stress": None if stress is None else stress.tolist()}


def _die_with(parent: int) -> None:
    """Linux: the kernel kills this process when ``parent`` dies (a labelling job killed outright)."""
    libc = ctypes.CDLL(None)
    if hasattr(libc, "prctl"):
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request
        os._exit(1)


def _child(sender, parent: int, function, args) -> None:
    """Send (True, function(*args)) or (False, its error); a session of its own, to be killed as a group."""
    os.setsid()
    _die_with(parent)
    try:
        outcome = True, function(*args)
    except BaseException as err:  # SystemExit, KeyboardInterrupt too: the attempt's failure
        outcome = False, f"{type(err).__name__}: {err}"
    sys.stdout.flush()  # the parent kills this process once it has the outcome
    sys.stderr.flush()
    sender.send(outcome)


def _died(exitcode: int) -> str:
    if exitcode < 0:
        return f"the calculation process died with signal {-exitcode} ({signal.Signals(-exitcode).name})"
    return f"the calculation process exited with status {exitcode} without a result"


def _kill(child) -> None:
    """Kill the child's session (its subprocesses) and the child, should it not have started that session yet."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:  # nothing left of it
        pass
    child.kill()


def _received(receiver):
    """The outcome the child sent, or None if it died first."""
    try:
        return receiver.recv() if receiver.poll() else None
    except EOFError:  # died while sending it
        return None


def _in_child(function, args, timeout: float | None) -> tuple:
    """(True, function(*args)) or (False, why not), computed in a child process within ``timeout`` seconds."""
    receiver, sender = _FORK.Pipe(duplex=False)
    child = _FORK.Process(target=_child, args=(sender, os.getpid(), function, args))
    child.start()
    sender.close()
    try:
        timed_out = not wait([receiver, child.sentinel], timeout)
        outcome = None if timed_out else _received(receiver)
    finally:  # on a KeyboardInterrupt too; killed before it is reaped, so that its process group is still its own
        _kill(child)
        child.join()
        receiver.close()
    if timed_out:
        return False, f"timed out after {timeout:g} s"
    return outcome or (False, _died(child.exitcode))


def _labelled(frame: Structure, result: dict) -> Structure:
    return Structure(frame.positions, frame.species, energy=result["energy"], forces=result["forces"],
                     cell=frame.cell, pbc=frame.pbc, name=frame.name, stress=result["stress"])


def _checked(frame: Structure, result: dict, where: str, limits: PlausibilityLimits) -> tuple:
    """(labelled frame, None) or (None, why its labels are not training data)."""
    try:
        structure = _labelled(frame, result)
        check_labels(structure, where, limits)
    except Exception as err:  # a malformed result too
        return None, f"{type(err).__name__}: {err}"
    return structure, None


def _attempts(frame: Structure, factory, kwargs: dict, retries: list, directories: list, where: str,
              limits: PlausibilityLimits, timeout: float | None) -> tuple:
    """(labelled frame or None, its result, the attempts): ``kwargs``, then with each retry, until one labels it."""
    attempts = []
    for overrides, directory in zip([{}, *retries], directories):
        started = time.perf_counter()
        ok, result = _in_child(_calculate, (frame, factory, kwargs | overrides, directory), timeout)
        structure, error = _checked(frame, result, where, limits) if ok else (None, result)
        attempts.append({"overrides": overrides, "error": error, "seconds": round(time.perf_counter() - started, 3)})
        if structure is not None:
            return structure, result, attempts
    return None, None, attempts


def _cached(path: Path, geometry: str, settings: list):
    """What an earlier run stored for this frame, if its attempts are those this run would make, or None."""
    if not path.exists():
        return None
    try:
        stored = read_json(path, "labelling result")
    except ValueError:  # damaged: calculate again
        return None
    key = stored.get("key") if isinstance(stored, dict) else None
    found = isinstance(key, dict) and key.get("geometry_sha256") == geometry and "result" in stored
    return stored if found and key.get("calculator_sha256") in settings else None


def _refused(frame: Structure, index: int, problem: str) -> tuple:
    """(None, the record of a frame not calculated: its geometry is not plausible training data)."""
    return None, {"index": index, "name": frame.name, "status": "failed", "error": problem, "seconds": 0.0,
                  "reused": False, "attempts": []}


def _label_frame(frame: Structure, index: int, factory, kwargs: dict, retries: list, settings: list, workdir: Path,
                 limits: PlausibilityLimits, cutoff: float | None, timeout: float | None) -> tuple:
    """(labelled frame or None, its record): reused from ``workdir``, else calculated and kept there."""
    where, stored = frame.name or f"frame {index}", workdir / f"frame_{index:04d}.json"
    problem = geometry_problem(frame, where, cutoff, limits)
    if problem:
        return _refused(frame, index, problem)
    geometry = structure_sha256(frame, labels=False)
    started = time.perf_counter()
    cached = _cached(stored, geometry, settings)
    structure = None if cached is None else _checked(frame, cached["result"], where, limits)[0]
    reused = structure is not None  # stored labels that the current limits refuse are calculated again
    if reused:
        attempts = cached.get("attempts", [])
    else:
        directories = [workdir / (f"frame_{index:04d}" + (f"_retry_{k}" if k else "")) for k in range(len(settings))]
        structure, result, attempts = _attempts(frame, factory, kwargs, retries, directories, where, limits, timeout)
        if structure is not None:
            key = {"geometry_sha256": geometry, "calculator_sha256": settings[len(attempts) - 1]}
            write_json(stored, {"key": key, "result": result, "attempts": attempts})
    record = {"index": index, "name": frame.name, "status": "failed" if structure is None else "labelled",
              "error": None if structure is not None else attempts[-1]["error"],
              "seconds": round(time.perf_counter() - started, 3), "reused": reused, "attempts": attempts}
    return structure, record


def _outcome(record: dict) -> str:
    reused = " (reused)" if record["reused"] else ""
    tries = f" after {len(record['attempts'])} attempts" if len(record["attempts"]) > 1 else ""
    return f"{record['status']}{reused}{tries} in {record['seconds']:.0f} s"


def label_frames(frames, calculator: str, kwargs: dict | None, workdir, limits: PlausibilityLimits | None = None,
                 first_index: int = 0, retries=(), timeout: float | None = None, cutoff: float | None = None) -> tuple:
    """(labelled Structures, one record per frame): label each frame with ``calculator(**kwargs)``, a failed
    attempt tried again with ``calculator(**(kwargs | retries[k]))`` for each k in turn, each attempt given
    ``timeout`` seconds (None: no limit).  A frame whose geometry ``limits`` refuse (its density within the
    descriptor's ``cutoff``, None: not checked; atoms closer than ``min_distance``) fails without a calculation.

    Records are ``{index, name, status: labelled | failed, error, seconds, reused, attempts}``; ``index``
    counts from ``first_index`` (the frame's position in the round's selection), ``error`` is the last
    attempt's and ``attempts`` lists ``{overrides, error or None, seconds}`` (for a reused frame, those of
    the run that labelled it; none for a frame refused by its geometry).
    """
    kwargs, retries = dict(kwargs or {}), [dict(overrides) for overrides in retries]
    limits = limits or PlausibilityLimits()
    factory = calculator_class(calculator)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    settings = _settings_sha256s(calculator, kwargs, retries)
    labelled, records = [], []
    progress = ProgressLog("labelling", len(frames), unit="frames", lines=max(len(frames), 1))  # a line each
    for offset, frame in enumerate(frames):
        structure, record = _label_frame(frame, first_index + offset, factory, kwargs, retries, settings, workdir,
                                         limits, cutoff, timeout)
        if structure is not None:
            labelled.append(structure)
        records.append(record)
        progress.update(detail=f" | {frame.name or record['index']}: {_outcome(record)}")
    return labelled, records


def labelling_report(records, calculator: str, kwargs: dict | None, retries=()) -> dict:
    """What a batch (or a round) reports: counts, the failures with their errors, the calculator."""
    failed = [r for r in records if r["status"] == "failed"]
    return {"calculator": calculator, "kwargs": dict(kwargs or {}), "retries": [dict(r) for r in retries],
            "n_frames": len(records), "n_labelled": len(records) - len(failed), "n_failed": len(failed),
            "seconds": math.fsum(r["seconds"] for r in records), "frames": list(records)}
