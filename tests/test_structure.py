"""Structure: input conversion, validation messages and the ASE round trip."""
import re

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator

from aenet_core.structure import Structure

POSITIONS = [[0.0, 0.0, 0.0], [1.0, 0.5, 0.25], [0.3, 1.7, 2.2], [2.0, 2.0, 2.0]]
SPECIES = ["Ti", "O", "O", "Ti"]
CELL = [[4.0, 0.0, 0.0], [0.5, 4.2, 0.0], [0.1, 0.2, 5.0]]


def make(**overrides):
    args = dict(positions=POSITIONS, species=SPECIES)
    args.update(overrides)
    return Structure(**args)


def periodic_structure(pbc=None):
    rng = np.random.default_rng(0)
    return Structure(positions=rng.uniform(0, 4, (4, 3)), species=SPECIES, energy=-12.345678901234567,
                     forces=rng.normal(size=(4, 3)), cell=CELL, pbc=pbc, name="periodic")


def test_lists_become_float64_arrays_and_pbc_defaults_true():
    s = make(cell=CELL, energy=-3)
    assert s.positions.dtype == np.float64 and s.positions.shape == (4, 3)
    assert s.cell.dtype == np.float64
    assert s.energy == -3.0 and isinstance(s.energy, float)
    assert s.pbc.dtype == bool and s.pbc.tolist() == [True, True, True]
    assert s.n_atoms == 4 and s.is_periodic() and not s.has_forces()


def test_isolated_structure_has_no_cell_or_pbc():
    s = make()
    assert s.cell is None and s.pbc is None and not s.is_periodic()


def test_all_false_pbc_is_not_periodic():
    assert not make(cell=CELL, pbc=[False, False, False]).is_periodic()


def test_torch_tensors_are_converted():
    s = make(positions=torch.tensor(POSITIONS, dtype=torch.float64, requires_grad=True), forces=torch.ones(4, 3, dtype=torch.float32),
             energy=torch.tensor(-1.5), cell=torch.tensor(CELL), pbc=torch.tensor([True, False, True]))
    assert isinstance(s.positions, np.ndarray) and s.positions.dtype == np.float64
    np.testing.assert_array_equal(s.positions, POSITIONS)
    assert s.forces.dtype == np.float64 and np.all(s.forces == 1.0)
    assert s.energy == -1.5 and isinstance(s.energy, float)
    assert s.pbc.tolist() == [True, False, True]


def test_inputs_are_copied():
    positions = np.array(POSITIONS)
    s = make(positions=positions)
    positions[0, 0] = 99.0
    assert s.positions[0, 0] == 0.0


@pytest.mark.parametrize("overrides, pattern", [
    (dict(positions=np.zeros((4, 2))), r"Structure\.positions must have shape \(N, 3\); got \(4, 2\)"),
    (dict(positions=np.zeros(12)), r"Structure\.positions must have shape \(N, 3\); got \(12,\)"),
    (dict(species=["Ti", "O", "O"]), r"Structure\.species has 3 entries but positions has 4 atoms"),
    (dict(species="TiOOTi"), r"Structure\.species must be a list"),
    (dict(forces=np.zeros((4, 2))), r"Structure\.forces must have shape \(4, 3\) like positions; got \(4, 2\)"),
    (dict(cell=np.ones(3)), r"Structure\.cell must have shape \(3, 3\); got \(3,\)"),
    (dict(cell=CELL, pbc=[True, False]), r"Structure\.pbc must have 3 entries; got 2"),
    (dict(pbc=[True, True, True]), r"Structure\.pbc \[True, True, True\] was given without a cell"),
    (dict(energy="abc"), r"Structure\.energy must be a number"),
    (dict(positions=[[0, 0, 0], [1, 1], [2, 2, 2], [3, 3, 3]]), r"Structure\.positions must be numeric"),
])
def test_shape_errors_name_the_field(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        make(**overrides)


def test_a_periodic_cell_needs_a_volume():
    flat = [CELL[0], CELL[1], [4.5, 4.4, 0.0]]  # a + b: the third vector lies in the plane of the others
    with pytest.raises(ValueError, match=r"Structure\.cell has zero volume \(.* Å³\) but is periodic along ac"):
        make(cell=flat, pbc=[True, False, True])
    assert not make(cell=flat, pbc=[False, False, False]).is_periodic()  # an unused cell may be anything


@pytest.mark.parametrize("field", ["positions", "forces", "cell"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_arrays_are_rejected(field, bad):
    values = {"positions": np.array(POSITIONS), "forces": np.zeros((4, 3)), "cell": np.array(CELL)}
    values[field][1, 2] = bad
    with pytest.raises(ValueError, match=rf"Structure\.{field} must be finite"):
        make(**values)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_energy_is_rejected(bad):
    with pytest.raises(ValueError, match=r"Structure\.energy must be finite"):
        make(energy=bad)


@pytest.mark.parametrize("label", ["", "Fe 1", "\t"])
def test_a_label_that_no_text_format_can_write_names_label_and_index(label):
    # any other label is a species (aenet-python accepts labels: tests/test_species_labels.py)
    with pytest.raises(ValueError, match=re.escape(f"Structure.species: label {label!r} at atom index 2 is empty or contains")):
        make(species=["Ti", "O", label, "Ti"])


def test_copy_is_deep():
    s = periodic_structure()
    c = s.copy()
    c.positions[0, 0] = 123.0
    c.forces[0, 0] = 123.0
    c.cell[0, 0] = 123.0
    assert s.positions[0, 0] != 123.0 and s.forces[0, 0] != 123.0 and s.cell[0, 0] != 123.0


def assert_same(a, b):
    np.testing.assert_array_equal(a.positions, b.positions)
    assert a.species == b.species
    assert a.energy == b.energy
    for field in ("forces", "cell", "pbc"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            np.testing.assert_array_equal(x, y)
    assert a.name == b.name


@pytest.mark.parametrize("structure", [
    periodic_structure(),
    periodic_structure(pbc=[True, True, False]),
    make(energy=-1.0, name="molecule"),
    make(forces=np.ones((4, 3))),
], ids=["periodic", "mixed-pbc", "isolated-energy-only", "isolated-forces-only"])
def test_ase_round_trip(structure):
    atoms = structure.to_ase()
    assert atoms.get_chemical_symbols() == structure.species
    np.testing.assert_array_equal(atoms.positions, structure.positions)
    if structure.cell is not None:
        np.testing.assert_array_equal(atoms.cell.array, structure.cell)
        assert atoms.pbc.tolist() == structure.pbc.tolist()
    else:
        assert not atoms.pbc.any()
    if structure.energy is not None:
        assert atoms.get_potential_energy() == structure.energy
    if structure.forces is not None:
        np.testing.assert_array_equal(atoms.get_forces(), structure.forces)
    assert atoms.info.get("name") == structure.name
    assert_same(Structure.from_ase(atoms), structure)


def test_from_ase_reads_info_and_arrays_without_calculator():
    atoms = Atoms("H2O", positions=[[0, 0, 0], [0, 0, 1], [0, 1, 0]], cell=np.eye(3) * 5, pbc=True)
    atoms.info["energy"] = -7.25
    atoms.arrays["forces"] = np.full((3, 3), 0.5)
    s = Structure.from_ase(atoms, name="given")
    assert s.energy == -7.25 and np.all(s.forces == 0.5)
    assert s.name == "given" and s.species == ["H", "H", "O"]
    np.testing.assert_array_equal(s.cell, np.eye(3) * 5)


def test_from_ase_drops_cell_when_not_periodic():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]], cell=np.eye(3) * 10, pbc=False)
    s = Structure.from_ase(atoms)
    assert s.cell is None and s.pbc is None and s.energy is None and s.forces is None


class _CountingCalculator(Calculator):
    implemented_properties = ["energy", "forces"]
    calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        type(self).calls += 1
        self.results = {"energy": 1.0, "forces": np.zeros((len(atoms), 3))}


def test_from_ase_never_triggers_a_calculation():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]])
    atoms.calc = _CountingCalculator()
    s = Structure.from_ase(atoms)
    assert _CountingCalculator.calls == 0
    assert s.energy is None and s.forces is None


def test_from_ase_ignores_stale_calculator_results():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]])
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0)
    atoms.positions[1, 2] = 0.8  # results no longer belong to these positions
    assert Structure.from_ase(atoms).energy is None


def test_stress_is_3x3_or_voigt_and_needs_a_3d_periodic_cell():
    voigt = [1e-3, 2e-3, 3e-3, 4e-4, 5e-4, 6e-4]
    s = make(cell=CELL, stress=voigt)
    np.testing.assert_array_equal(s.stress, [[1e-3, 6e-4, 5e-4], [6e-4, 2e-3, 4e-4], [5e-4, 4e-4, 3e-3]])
    np.testing.assert_array_equal(Structure.from_ase(s.to_ase()).stress, s.stress)
    with pytest.raises(ValueError, match=r"Structure\.stress must be 3x3 or 6 Voigt components; got shape \(4,\)"):
        make(cell=CELL, stress=[0.0] * 4)
    with pytest.raises(ValueError, match="a stress needs a structure periodic in 3D; this one has pbc None"):
        make(stress=voigt)
    with pytest.raises(ValueError, match=r"periodic in 3D; this one has pbc \[True, True, False\]"):
        make(cell=CELL, pbc=[True, True, False], stress=voigt)
    with pytest.raises(ValueError, match="Structure.stress must be finite"):
        make(cell=CELL, stress=[np.nan] * 6)


def test_a_loss_weight_is_a_finite_number_at_least_zero_and_rides_in_ase_info():
    s = make(weight=0, config_type="md")
    assert (s.weight, s.config_type) == (0.0, "md")
    atoms = s.to_ase()
    assert (atoms.info["weight"], atoms.info["config_type"]) == (0.0, "md")
    assert (Structure.from_ase(atoms).weight, Structure.from_ase(atoms).config_type) == (0.0, "md")
    for bad in (-1.0, np.inf, "heavy"):
        with pytest.raises(ValueError, match="Structure.weight must be a"):
            make(weight=bad)
