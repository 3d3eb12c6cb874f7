"""Molecular dynamics with a committee, recording where its members disagree.

``explore`` runs Langevin NVT, Berendsen NPT or velocity-Verlet NVE dynamics on the committee's mean
forces and records a frame every ``interval`` steps with the committee's energy and spread.  The prediction
is stored as ``committee_energy`` (never as ``energy``, ``forces`` or ``stress``, and no calculator is
attached), so a trajectory read back never passes for labelled data.  ``aenet_core.active_learning.trajectory``
keeps the frames as extended XYZ; ``aenet_core.active_learning.explore_lammps`` runs the same exploration in
LAMMPS.
"""
from __future__ import annotations

import math

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.nptberendsen import NPTBerendsen
from ase.md.verlet import VelocityVerlet
from ase.md import velocitydistribution

from aenet_core.active_learning.settings import ExploreSettings
from aenet_core.calculator import AenetCalculator
from aenet_core.progress import ProgressLog
from aenet_core.structure import Structure


def start_atoms(start, ensemble: str) -> Atoms:
    """A fresh, label-free Atoms of ``start`` (a Structure or ase.Atoms)."""
    structure = Structure.from_ase(start) if isinstance(start, Atoms) else start
    periodic = structure.cell is not None and bool(structure.pbc.all())
    if ensemble == "npt" and not periodic:
        raise ValueError(f"npt changes the cell, so it needs a structure periodic in 3D; "
                         f"{structure.name or 'the start'} has pbc "
                         f"{None if structure.pbc is None else structure.pbc.tolist()}")
    return structure.without_labels().to_ase()


def thermalize(atoms: Atoms, temperature: float, rng) -> None:
    """Maxwell-Boltzmann momenta from ``rng``, without centre-of-mass motion."""
    if hasattr(velocitydistribution, "thermalize_momenta"):  # ASE >= 3.29 deprecates the older name
        velocitydistribution.thermalize_momenta(atoms, temperature, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    if len(atoms) > 1:  # a lone atom's momentum is its centre of mass's: removing it would leave 0 K
        velocitydistribution.Stationary(atoms)


def _dynamics(atoms: Atoms, settings: ExploreSettings, rng):
    dt = settings.timestep * units.fs
    if settings.ensemble == "nve":
        return VelocityVerlet(atoms, dt)
    if settings.ensemble == "nvt":
        # fixcm=False: ASE deprecates its fixed-centre-of-mass Langevin; the centre of mass drifts harmlessly.
        return Langevin(atoms, dt, temperature_K=settings.temperature, friction=settings.friction / units.fs,
                        fixcm=False, rng=rng)
    return NPTBerendsen(atoms, dt, temperature_K=settings.temperature, pressure_au=settings.pressure * units.GPa,
                        taut=settings.thermostat_time * units.fs, taup=settings.barostat_time * units.fs,
                        compressibility_au=settings.compressibility / units.GPa)


class _Recorder:
    """The observer called after every step: reads the step's committee results (already evaluated by
    the dynamics) and records a frame every ``interval`` steps, or when above ``trust_hi``."""

    def __init__(self, atoms, dynamics, settings, calibration_factor):
        self.atoms, self.dynamics, self.settings = atoms, dynamics, settings
        self.calibration_factor = calibration_factor
        self.frames, self.max_force_stds = [], []
        self.stop_step = None

    def __call__(self):
        step, calc = self.dynamics.nsteps, self.atoms.calc
        # get_property returns the cached results of this geometry; it evaluates only if none are cached.
        force_std = calc.get_property("force_std", self.atoms)
        max_force_std = calc.get_property("max_force_std", self.atoms)
        self.max_force_stds.append(max_force_std)
        above = max_force_std > self.settings.trust_hi
        if above:
            self.stop_step = step
        if above or step % self.settings.interval == 0:
            self.frames.append(self._frame(step, force_std, max_force_std))

    def _frame(self, step, force_std, max_force_std) -> Atoms:
        frame = self.atoms.copy()  # positions, cell, momenta; no calculator
        frame.constraints = []
        calc = self.atoms.calc
        return record_frame(frame, step, self.settings, self.calibration_factor,
                            energy=calc.get_property("energy", self.atoms),
                            energy_std=calc.get_property("energy_std", self.atoms),
                            max_force_std=max_force_std, force_std=force_std)  # get_property's copy


def record_frame(frame: Atoms, step: int, settings: ExploreSettings, calibration_factor, *, energy, energy_std,
                 max_force_std, force_std) -> Atoms:
    """``frame`` (positions, cell, momenta) with the committee's results of ``step`` as a recorded frame's
    ``info`` and ``arrays['force_std']``."""
    energy_std = float(energy_std)
    calibrated = math.nan if calibration_factor is None else float(calibration_factor) * energy_std
    frame.info = {"step": int(step), "time_fs": step * settings.timestep,
                  "temperature_K": float(frame.get_temperature()), "committee_energy": float(energy),
                  "energy_std": energy_std, "energy_std_calibrated": calibrated,
                  "max_force_std": float(max_force_std), "above_trust_hi": bool(max_force_std > settings.trust_hi)}
    frame.arrays["force_std"] = force_std
    return frame


def explore(committee, start, settings: ExploreSettings) -> tuple[list, dict]:
    """Run ``settings.steps`` MD steps of ``start`` (Structure or ase.Atoms) on ``committee``'s mean forces.

    Returns the recorded frames (calculator-free ase.Atoms with momenta; ``info``: ``step``, ``time_fs``,
    ``temperature_K`` (instantaneous), ``committee_energy``, ``energy_std`` (eV, the members' population
    std), ``energy_std_calibrated`` (calibration factor x energy_std; NaN without a calibration),
    ``max_force_std`` (eV/Å, the largest ``force_std``), ``above_trust_hi``; ``arrays['force_std']``: per
    atom, the norm over x, y, z of the members' force std, as ``AenetCalculator`` and the committee's
    predictions give it) and a summary.  Recording reads the results the dynamics already evaluated: the
    model runs once per Langevin or Verlet step (twice per Berendsen step, which ASE evaluates again after
    scaling the cell).
    """
    if not isinstance(settings, ExploreSettings):
        raise TypeError(f"settings must be ExploreSettings; got {type(settings).__name__}")
    atoms = start_atoms(start, settings.ensemble)
    atoms.calc = AenetCalculator(committee)
    rng = np.random.default_rng(settings.seed)
    thermalize(atoms, settings.temperature, rng)
    dynamics = _dynamics(atoms, settings, rng)
    recorder = _Recorder(atoms, dynamics, settings, getattr(committee, "calibration_factor", None))
    dynamics.attach(recorder, interval=1)
    progress = ProgressLog(f"MD at {settings.temperature:g} K", settings.steps, unit="steps", lines=10)
    for _ in dynamics.irun(settings.steps):
        if recorder.stop_step is not None:
            break
        if dynamics.nsteps:
            progress.update(detail=f" | max force spread {recorder.max_force_stds[-1]:.3g} eV/Å")
    return recorder.frames, summary(recorder.max_force_stds, len(recorder.frames), recorder.stop_step,
                                    dynamics.nsteps, settings)


def summary(max_force_stds, n_frames: int, stop_step, steps_run: int, settings: ExploreSettings) -> dict:
    """A trajectory's summary: ``max_force_stds`` of every step run (step 0 included), ``stop_step`` the
    step above ``trust_hi`` (None when none was)."""
    spreads = np.asarray(max_force_stds)
    return {"n_steps_run": int(steps_run), "n_frames": n_frames,
            "stopped_early": stop_step is not None, "stop_step": stop_step,
            "max_force_std_max": float(spreads.max()), "max_force_std_p50": float(np.quantile(spreads, 0.5)),
            "max_force_std_p90": float(np.quantile(spreads, 0.9)), "temperature": settings.temperature,
            "seed": settings.seed, "ensemble": settings.ensemble, "steps": settings.steps,
            "interval": settings.interval, "timestep": settings.timestep}
