"""Labelling calculators for the active-learning tests: EMT that records the labelling job it runs for, fails
for the frames of one trajectory, and can kill that job once (as a scheduler or a crash would); EMT that
needs a retry; EMT that crashes, exits or hangs as its frame's name says; EMT that relaxes before it reports."""
import faulthandler
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

from ase.calculators.emt import EMT


def log_call(calc, atoms) -> None:
    """Append the frame's name to calls.txt of the batch's work directory (a calculation runs in a child)."""
    with open(Path(calc.directory).parent / "calls.txt", "a") as calls:
        calls.write(f"{atoms.info.get('name')}\n")


class RecordingEMT(EMT):
    def __init__(self, record_dir, fail_trajectory=None, kill_marker=None, **kwargs):
        super().__init__(**kwargs)
        self.record_dir, self.fail_trajectory, self.kill_marker = Path(record_dir), fail_trajectory, kill_marker

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        job = os.getppid()  # each calculation runs in a child process of the labelling job
        self.record_dir.mkdir(parents=True, exist_ok=True)
        (self.record_dir / f"{job}.pid").touch()
        name = atoms.info.get("name", "")
        if self.fail_trajectory and self.fail_trajectory in name:
            raise RuntimeError(f"SCF did not converge for {name}")
        # In a batch of round 1, once one of its calculations is finished (and kept in its work folder).
        work = Path(self.directory).parent
        midway = "round_01/label/batch_" in str(work) and any(work.glob("frame_*.json"))
        if self.kill_marker and midway and not Path(self.kill_marker).exists():
            Path(self.kill_marker).touch()
            os.kill(job, signal.SIGKILL)
        super().calculate(atoms, properties, system_changes)


class RetriedEMT(EMT):
    """A self-consistent calculation as mixing sets it: from 0.5 it raises, from 0.2 it gives garbage labels."""

    def __init__(self, mixing=0.5, **kwargs):
        super().__init__(**kwargs)
        self.mixing = mixing

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        log_call(self, atoms)
        if self.mixing >= 0.5:
            raise RuntimeError(f"SCF did not converge with mixing {self.mixing}")
        super().calculate(atoms, properties, system_changes)
        if self.mixing >= 0.2:
            self.results["energy"] = 1e9


class MisbehavingEMT(EMT):
    """EMT, except for a frame named abort, exit, stop or hang (which waits on a subprocess it starts, writing
    its process id to sleep.pid in the batch's work directory)."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        log_call(self, atoms)
        name = atoms.info.get("name")
        if name == "abort":
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
            faulthandler.disable()  # pytest's: no traceback on the test's stderr
            os.abort()
        if name == "exit":
            sys.exit(3)
        if name == "stop":  # as a Fortran STOP or a C exit() would
            os._exit(7)
        if name == "hang":
            sleep = subprocess.Popen(["sleep", "60"])  # as mpirun would
            (Path(self.directory).parent / "sleep.pid").write_text(str(sleep.pid))
            sleep.wait()
        super().calculate(atoms, properties, system_changes)


class RelaxingEMT(EMT):
    """EMT that first takes ``steps`` steepest-descent steps (a relaxation, as VASP's with ibrion > -1 and nsw > 0),
    on the atoms it is given or (``in_place`` False) on a copy of its own, then reports the labels where it ended,
    its atoms wrapped into the cell (as a CONTCAR)."""

    def __init__(self, steps=5, in_place=True, **kwargs):
        super().__init__(**kwargs)
        self.steps, self.in_place = steps, in_place

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        relaxed = atoms if self.in_place else atoms.copy()
        for _ in range(self.steps):
            super().calculate(relaxed, ["energy", "forces"], system_changes)
            relaxed.positions += 0.02 * self.results["forces"]
        relaxed.wrap()
        super().calculate(relaxed, properties, system_changes)
