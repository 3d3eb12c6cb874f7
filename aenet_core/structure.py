"""The atomic structure record used throughout aenet_core (units: Å, eV, eV/Å)."""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

# 'X' is ASE's placeholder for "no element"; it names no element here.
VALID_SYMBOLS = frozenset(chemical_symbols[1:])
SINGULAR_VOLUME = 1e-12  # Å³: a periodic cell smaller than this has no volume
LABELS_ARRAY = "species_labels"  # the ASE per-atom array that carries species labels which are not elements


def element_of(label: str, purpose: str = "this") -> str:
    """The chemical element of a species label: the label itself when it is an element symbol, else the
    element symbol it starts with, followed by anything but a lowercase letter ('Fe1', 'Fe_up', 'FeB' -> Fe;
    'Cx' names none).  ``purpose`` (what needs the element) goes into the ValueError for a label without one."""
    if label in VALID_SYMBOLS:
        return label
    for n in (2, 1):
        head, rest = label[:n], label[n:]
        if head in VALID_SYMBOLS and rest and not rest[0].islower():
            return head
    raise ValueError(f"species label {label!r} names no chemical element, which {purpose} needs: a label maps to "
                     f"the element symbol it starts with (e.g. 'Fe1', 'Fe_up' -> Fe)")


def elements_of(species, purpose: str = "this") -> list:
    """``element_of`` for each label of ``species``."""
    return [element_of(label, purpose) for label in species]


def atoms_species(atoms) -> list:
    """The species of ASE ``atoms``: the labels that ``Structure.to_ase`` stored, else the chemical symbols."""
    if LABELS_ARRAY in atoms.arrays:
        return [str(label) for label in atoms.arrays[LABELS_ARRAY]]
    return atoms.get_chemical_symbols()


def _to_numpy(field, value, dtype):
    """Convert lists, tuples, numpy arrays and torch tensors to a fresh numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.array(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Structure.{field} must be numeric array-like; got {type(value).__name__} ({exc})") from exc


def _check_finite(field, array):
    if not np.all(np.isfinite(array)):
        raise ValueError(f"Structure.{field} must be finite; got NaN or inf")


@dataclass(eq=False)
class Structure:
    """One atomic configuration with optional reference energy, forces and stress.

    ``cell`` holds the lattice vectors as rows; ``pbc`` defaults to all True when a
    cell is given.  ``stress`` (eV/Å³, 3x3 or Voigt xx, yy, zz, yz, xz, xy) follows ASE's
    sign convention, ``atoms.get_stress(voigt=False)``; only a structure periodic in 3D
    has one.  ``weight`` (>= 0; 0: kept but never trained on) multiplies the structure's
    energy, force and stress terms in the loss, together with the training config's
    ``config_type_weights[config_type]``.  Inputs are converted to numpy (float64 / bool)
    and validated.
    """

    positions: np.ndarray
    species: list[str]
    energy: float | None = None
    forces: np.ndarray | None = None
    cell: np.ndarray | None = None
    pbc: np.ndarray | None = None
    name: str | None = None
    stress: np.ndarray | None = None
    weight: float = 1.0
    config_type: str | None = None

    def __post_init__(self):
        self._init_positions_species()
        self._init_energy_forces()
        self._init_cell_pbc()
        self._init_stress()
        self._init_weight()

    def _init_positions_species(self):
        self.positions = _to_numpy("positions", self.positions, np.float64)
        if self.positions.ndim != 2 or self.positions.shape[1] != 3:
            raise ValueError(f"Structure.positions must have shape (N, 3); got {self.positions.shape}")
        _check_finite("positions", self.positions)
        if isinstance(self.species, str):
            raise ValueError(f"Structure.species must be a list of species labels; got the string {self.species!r}")
        self.species = [str(s) for s in self.species]
        if len(self.species) != self.n_atoms:
            raise ValueError(
                f"Structure.species has {len(self.species)} entries but positions has {self.n_atoms} atoms")
        for i, label in enumerate(self.species):
            # any label (element symbols, 'Fe1', 'A'), but one that the text formats can write as one field
            if not label or label.split() != [label]:
                raise ValueError(f"Structure.species: label {label!r} at atom index {i} is empty or contains "
                                 f"whitespace")

    def _init_energy_forces(self):
        if self.energy is not None:
            try:
                self.energy = float(self.energy)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"Structure.energy must be a number; got {self.energy!r}") from exc
            if not np.isfinite(self.energy):
                raise ValueError(f"Structure.energy must be finite; got {self.energy}")
        if self.forces is not None:
            self.forces = _to_numpy("forces", self.forces, np.float64)
            if self.forces.shape != self.positions.shape:
                raise ValueError(
                    f"Structure.forces must have shape {self.positions.shape} like positions; got {self.forces.shape}")
            _check_finite("forces", self.forces)

    def _init_cell_pbc(self):
        if self.cell is None:
            # aenet-python scripts pass pbc=[False]*3 for molecules: that is no periodicity, kept as None
            if self.pbc is not None and _to_numpy("pbc", self.pbc, bool).any():
                raise ValueError(f"Structure.pbc {np.asarray(self.pbc).tolist()} was given without a cell; pass "
                                 f"cell=(3, 3) lattice vectors too")
            self.pbc = None
            return
        self.cell = _to_numpy("cell", self.cell, np.float64)
        if self.cell.shape != (3, 3):
            raise ValueError(f"Structure.cell must have shape (3, 3); got {self.cell.shape}")
        _check_finite("cell", self.cell)
        self.pbc = np.ones(3, dtype=bool) if self.pbc is None else _to_numpy("pbc", self.pbc, bool)
        if self.pbc.shape != (3,):
            raise ValueError(f"Structure.pbc must have 3 entries; got {self.pbc.size}")
        volume = float(np.linalg.det(self.cell))
        if self.pbc.any() and abs(volume) < SINGULAR_VOLUME:
            raise ValueError(f"Structure.cell has zero volume ({volume:.3g} Å³) but is periodic along "
                             f"{''.join('abc'[k] for k in np.nonzero(self.pbc)[0])}: {self.cell.tolist()}")

    def _init_stress(self):
        if self.stress is None:
            return
        stress = _to_numpy("stress", self.stress, np.float64)
        if stress.shape == (6,):
            stress = voigt_6_to_full_3x3_stress(stress)
        if stress.shape != (3, 3):
            raise ValueError(f"Structure.stress must be 3x3 or 6 Voigt components; got shape {stress.shape}")
        _check_finite("stress", stress)
        if self.volume is None:
            raise ValueError(f"Structure.stress is given, but a stress needs a structure periodic in 3D; this one "
                             f"has pbc {None if self.pbc is None else self.pbc.tolist()}")
        self.stress = stress

    def _init_weight(self):
        try:
            self.weight = float(self.weight)
        except (TypeError, ValueError):
            raise ValueError(f"Structure.weight must be a number >= 0; got {self.weight!r}") from None
        if not (np.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"Structure.weight must be a finite number >= 0; got {self.weight}")
        self.config_type = None if self.config_type is None else str(self.config_type)

    @property
    def n_atoms(self) -> int:
        return len(self.positions)

    def has_forces(self) -> bool:
        return self.forces is not None

    def has_stress(self) -> bool:
        return self.stress is not None

    def is_periodic(self) -> bool:
        return self.cell is not None and bool(self.pbc.any())

    @property
    def volume(self) -> float | None:
        """The cell volume (Å³) of a structure periodic in 3D, else None (it has no stress)."""
        return abs(float(np.linalg.det(self.cell))) if self.cell is not None and self.pbc.all() else None

    def copy(self) -> Structure:
        return copy.deepcopy(self)

    def without_labels(self, name: str | None = None) -> Structure:
        """The geometry alone (species, positions, cell, pbc), named ``name`` (default: this one's name)."""
        return Structure(self.positions, self.species, cell=self.cell, pbc=self.pbc,
                         name=self.name if name is None else name)

    def to_ase(self) -> Atoms:
        """ASE Atoms; energy/forces/stress ride on a SinglePointCalculator, the name in info['name'].

        Species labels that are not element symbols become their elements (``element_of``: 'Fe1' -> Fe);
        the labels themselves ride along in ``atoms.arrays['species_labels']``, which ``from_ase`` reads."""
        symbols = elements_of(self.species, "ASE Atoms")
        atoms = Atoms(symbols=symbols, positions=self.positions, cell=self.cell,
                      pbc=self.pbc if self.pbc is not None else False)
        if symbols != self.species:
            atoms.new_array(LABELS_ARRAY, np.array(self.species))
        if self.energy is not None or self.forces is not None or self.stress is not None:
            stress = None if self.stress is None else full_3x3_to_voigt_6_stress(self.stress)
            atoms.calc = SinglePointCalculator(atoms, energy=self.energy, forces=self.forces, stress=stress)
        if self.name is not None:
            atoms.info["name"] = self.name
        if self.weight != 1.0:
            atoms.info["weight"] = self.weight
        if self.config_type is not None:
            atoms.info["config_type"] = self.config_type
        return atoms

    @classmethod
    def from_ase(cls, atoms: Atoms, name: str | None = None) -> Structure:
        """Build from ASE Atoms without running any calculator.

        Energy, forces and stress come from the attached calculator's stored results
        (where ASE's readers put an extxyz ``stress``), else from ``atoms.info['energy']``
        / ``atoms.arrays['forces']`` / ``atoms.info['stress']``, or ``atoms.info['virial']``
        (eV; stress = -virial / volume, as ASE-based trainers write it).  The cell is kept
        only when some direction is periodic; ``info['weight']`` and ``info['config_type']``
        (as MACE names them) become ``weight`` and ``config_type``; species labels come from
        ``atoms.arrays['species_labels']`` where ``to_ase`` put them, else the chemical symbols.
        """
        energy = _stored_result(atoms, "energy")
        forces = _stored_result(atoms, "forces")
        stress = _stored_result(atoms, "stress")
        if energy is None:
            energy = atoms.info.get("energy")
        if forces is None:
            forces = atoms.arrays.get("forces")
        if stress is None:
            stress = atoms.info.get("stress")
        if stress is None and "virial" in atoms.info:  # without a 3D cell it is refused as a stress
            virial = np.reshape(atoms.info["virial"], (3, 3))
            stress = -virial / atoms.get_volume() if atoms.pbc.all() else virial
        periodic = bool(np.any(atoms.pbc))
        return cls(positions=atoms.get_positions(), species=atoms_species(atoms),
                   energy=energy, forces=forces,
                   cell=atoms.cell.array if periodic else None,
                   pbc=atoms.pbc if periodic else None,
                   name=name if name is not None else atoms.info.get("name"), stress=stress,
                   weight=atoms.info.get("weight", 1.0), config_type=atoms.info.get("config_type"))

    @classmethod
    def from_AtomicStructure(cls, s, frame: int = -1) -> Structure:
        """Frame ``frame`` of aenet-python's ``AtomicStructure``, read by its attributes (``coords``, ``types``,
        ``avec``, ``pbc``, per-frame ``energy`` and ``forces``; aenet is not imported).  A frame whose energy
        or forces are missing, None or empty has none; a periodic structure is periodic in 3D."""
        periodic = bool(getattr(s, "pbc", False))
        return cls(positions=s.coords[frame], species=list(s.types), energy=_frame_value(s, "energy", frame),
                   forces=_frame_value(s, "forces", frame), cell=s.avec[frame] if periodic else None,
                   pbc=[True, True, True] if periodic else None, name=getattr(s, "name", None))


def _frame_value(s, attribute, frame):
    """``s.<attribute>[frame]``, or None where there is none (missing, None, or an empty list)."""
    try:
        value = getattr(s, attribute)[frame]
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    return None if value is None or (np.ndim(value) > 0 and len(value) == 0) else value


def stress_labels(structures) -> tuple:
    """(stresses (n, 3, 3), zero where none; has a stress (n,); volumes (n,), NaN unless periodic in 3D)."""
    stresses = np.array([np.zeros((3, 3)) if s.stress is None else s.stress for s in structures]).reshape(-1, 3, 3)
    volumes = np.array([np.nan if s.volume is None else s.volume for s in structures])
    return stresses, np.array([s.has_stress() for s in structures], bool), volumes


def loss_weights(weights, config_types, config_type_weights=None) -> np.ndarray:
    """Each structure's ``weights`` entry times ``config_type_weights[config_type]`` (1 for a config type the
    mapping does not name, or None)."""
    by_type = config_type_weights or {}
    return np.array([w * by_type.get(t, 1.0) for w, t in zip(weights, config_types)], dtype=float)


def referenced_energy_per_atom(energy: float, species, atomic_energies) -> float:
    """(E - sum of the atoms' reference energies) / N, the energy scale training and filters use;
    species without a reference count as 0 eV."""
    return (energy - sum(atomic_energies.get(s, 0.0) for s in species)) / len(species)


def hash_structure(hasher, structure: Structure, labels: bool = True) -> None:
    """Feed what defines a structure to ``hasher``: species and geometry, and with ``labels`` its energy,
    forces and stress too (without them: what its features depend on).  A structure without a stress
    hashes as it did before stresses were labels, one of weight 1 and no config_type as before those."""
    s = structure
    hasher.update(" ".join(s.species).encode() + b"|")
    parts = (s.positions, s.cell, s.pbc) + ((None if s.energy is None else np.float64(s.energy), s.forces)
                                            if labels else ())
    parts += (s.stress,) if labels and s.stress is not None else ()
    parts += (np.float64(s.weight),) if labels and s.weight != 1.0 else ()
    parts += (np.frombuffer(s.config_type.encode(), np.uint8),) if labels and s.config_type is not None else ()
    for part in parts:
        hasher.update(b"-" if part is None else b"+" + np.ascontiguousarray(part).tobytes())


def structure_sha256(structure: Structure, labels: bool = True) -> str:
    """The hex digest of ``hash_structure`` for one structure."""
    hasher = hashlib.sha256()
    hash_structure(hasher, structure, labels)
    return hasher.hexdigest()


def _stored_result(atoms, prop):
    """A result the attached calculator already holds, or None (never triggers a calculation)."""
    if atoms.calc is None:
        return None
    try:
        return atoms.calc.get_property(prop, atoms, allow_calculation=False)
    except PropertyNotImplementedError:
        return None
