"""``ExploreSettings``: one exploration trajectory's MD settings, and the names of the engines and selection
rules, free of torch so that the workflow checks and passes them without importing the library's MD
(``aenet_core.active_learning.explore``)."""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields

from aenet_core.rules import ANY, POSITIVE, SEED, NumberRule, check_numbers

ENSEMBLES = ("nvt", "npt", "nve")
ENGINES = ("auto", "lammps", "ase")  # who runs an exploration (aenet-core explore --engine)
# How a round picks its frames (aenet_core.active_learning.select.select_frames).
SELECTION_RULES = ("farthest_point", "trust_window")
DEFAULT_SELECTION = "farthest_point"


# Above about 10,000 K a solid is a plasma: no use to a potential of condensed matter (and a typo, like 1e6).
MAX_TEMPERATURE = 10_000.0
# The ranges the workflow's schema holds too (tests/test_workflow.py keeps them equal).
EXPLORE_RULES = {"temperature": NumberRule(False, 0, MAX_TEMPERATURE, low_open=True), "trust_hi": POSITIVE, "seed": SEED, "steps": NumberRule(True, 1),
                 "timestep": POSITIVE, "interval": NumberRule(True, 1), "friction": POSITIVE, "pressure": ANY,
                 "thermostat_time": POSITIVE, "barostat_time": POSITIVE, "compressibility": POSITIVE}


@dataclass(frozen=True)
class ExploreSettings:
    """One trajectory's settings (units: K, fs, eV/Å, GPa).

    ``interval``: a frame is recorded every this many steps (step 0 included).  ``trust_hi`` (eV/Å): the
    trajectory stops at the first step whose maximum per-atom force spread exceeds it,
    recording that step's frame.  ``friction`` (1/fs) is Langevin's (nvt); ``pressure``,
    ``thermostat_time``, ``barostat_time`` and ``compressibility`` (1/GPa) are Berendsen's (npt; LAMMPS's
    exploration uses all but the compressibility for Nosé-Hoover); nve is plain velocity Verlet (for comparing
    engines).  ``seed`` draws the initial velocities and Langevin's random forces.
    """

    temperature: float
    trust_hi: float
    seed: int
    steps: int = 200
    ensemble: str = "nvt"
    timestep: float = 2.0
    interval: int = 10
    friction: float = 0.01
    pressure: float = 0.0
    thermostat_time: float = 100.0
    barostat_time: float = 1000.0
    compressibility: float = 0.01

    def __post_init__(self):
        check_numbers(self, EXPLORE_RULES)
        if self.ensemble not in ENSEMBLES:
            raise ValueError(f"ExploreSettings.ensemble must be one of {ENSEMBLES}; got {self.ensemble!r}")


# The settings a loop gives every trajectory (the others, temperature, trust_hi and seed, vary per trajectory).
MD_OPTIONS = tuple(f.name for f in fields(ExploreSettings) if f.default is not MISSING)
