"""``PlausibilityLimits``: what training data may look like (the checks are in ``aenet_core.data.plausibility``).

Free of torch, so that the command line's help and the workflow's config checks read the names, defaults
and help text from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from aenet_core.rules import NONNEG, POSITIVE, check_numbers


@dataclass(frozen=True)
class PlausibilityLimits:
    """What training data may look like.  The defaults leave wide margins around real DFT data
    (TiO2 and LMNTO of aenet's examples: at most 867 eV/atom, 52 eV/Å, 113 neighbours per atom within
    6 Å, atoms at least 1.38 Å apart, referenced energies within 8.6 eV/atom)."""

    # All-electron total energies of the heaviest elements are about 1.4e6 eV/atom.
    energy_limit: float = field(default=1e7, metadata={"help": "refuse a total energy beyond ± this",
                                                       "unit": "eV/atom"})
    force_limit: float = field(default=1e4, metadata={"help": "refuse a force component beyond ± this",
                                                      "unit": "eV/Å"})
    # 100 eV/Å³ is 16 TPa, beyond the pressure at the Earth's centre (0.36 TPa) by far.
    stress_limit: float = field(default=100.0, metadata={"help": "refuse a stress component beyond ± this",
                                                         "unit": "eV/Å³"})
    # Shorter than any bond (H2: 0.74 Å) and than the descriptor's default min_cutoff (0.55 Å).
    min_distance: float = field(default=0.5, metadata={"help": "refuse two atoms closer than this; 0: no check",
                                                       "unit": "Å"})
    # Diamond, the densest solid, has 159 neighbours within 6 Å.
    max_pairs_per_atom: float = field(default=1000, metadata={
        "help": "refuse more neighbours per atom within the descriptor cutoff, estimated from the atom density"})
    # Cohesive energies stay below 10 eV/atom.
    referenced_energy_warning: float = field(default=20.0, metadata={
        "help": "warn about energies beyond ± this after the atomic reference energies are subtracted",
        "unit": "eV/atom"})
    # Compressing the stiffest solid by a fifth of its volume takes about 1 eV/Å³ (diamond: 150 GPa), as much as
    # the example data's most compressed cells hold (1.3 eV/Å³: Au-rich at Cu's lattice constant); stresses in
    # GPa beyond 2 GPa, or in kbar beyond 0.2 GPa, read as eV/Å³ exceed this.
    stress_warning: float = field(default=2.0, metadata={
        "help": "warn about stress components beyond ± this (stresses in GPa or kbar read as eV/Å³)", "unit": "eV/Å³"})

    def __post_init__(self):
        check_numbers(self, LIMIT_RULES)


LIMIT_RULES = {f.name: POSITIVE for f in fields(PlausibilityLimits)} | {"min_distance": NONNEG}
LIMITS = tuple(LIMIT_RULES)  # every limit's name, in the fields' order
LABEL_LIMITS = ("energy_limit", "force_limit", "stress_limit")  # no geometry needed (reference-energy fits too)
GEOMETRY_LIMITS = ("min_distance", "max_pairs_per_atom")  # no labels needed (a frame before its labelling)
