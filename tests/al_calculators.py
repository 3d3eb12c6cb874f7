"""Labelling calculators for the active-learning tests: EMT that records the process it runs in, fails
for the frames of one trajectory, and can kill its own process once (as a scheduler or a crash would)."""
import os
import signal
from pathlib import Path

from ase.calculators.emt import EMT


class RecordingEMT(EMT):
    def __init__(self, record_dir, fail_trajectory=None, kill_marker=None, **kwargs):
        super().__init__(**kwargs)
        self.record_dir, self.fail_trajectory, self.kill_marker = Path(record_dir), fail_trajectory, kill_marker

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        self.record_dir.mkdir(parents=True, exist_ok=True)
        (self.record_dir / f"{os.getpid()}.pid").touch()
        name = atoms.info.get("name", "")
        if self.fail_trajectory and self.fail_trajectory in name:
            raise RuntimeError(f"SCF did not converge for {name}")
        # In a batch of round 1, once one of its calculations is finished (and kept in its work folder).
        work = Path(self.directory).parent
        midway = "round_01/label/batch_" in str(work) and any(work.glob("frame_*.json"))
        if self.kill_marker and midway and not Path(self.kill_marker).exists():
            Path(self.kill_marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        super().calculate(atoms, properties, system_changes)
