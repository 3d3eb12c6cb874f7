"""AenetCalculator: ASE results for one potential and for a committee, caching, MD energy conservation,
the Verlet neighbour list."""
import sys
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_stress
from ase.io import read as read_xsf
from ase.filters import FrechetCellFilter
from ase.md.nptberendsen import NPTBerendsen
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet
from ase.optimize import FIRE
from ase.stress import full_3x3_to_voigt_6_stress

from aenet_core.calculator import AenetCalculator
from aenet_core.committee import TorchCommitteePotential
from aenet_core.example_data import make_cuau_structures
from aenet_core.torch_featurize import ChebyshevDescriptor
from aenet_core.torch_training import Adam, TorchANNPotential, TorchTrainingConfig

ARCH = {"Cu": [(5, "tanh")], "Au": [(5, "tanh")]}


def _descriptor():
    return ChebyshevDescriptor(["Cu", "Au"], 4, 4.5, 2, 3.5, min_cutoff=0.5)


def _config():
    return TorchTrainingConfig(iterations=2, method=Adam(mu=0.01, batchsize=4), testpercent=20, force_weight=0.1,
                               atomic_energies={"Cu": -0.5, "Au": -0.2}, checkpoint_dir=None, save_best=False,
                               show_progress=False, seed=0, split_seed=0)


@pytest.fixture(scope="module")
def potential():
    model = TorchANNPotential(ARCH, _descriptor())
    model.train(structures=make_cuau_structures(10, seed=1), config=_config())
    return model


@pytest.fixture(scope="module")
def committee_dir(trained_committee):
    return trained_committee[2]


@pytest.fixture(scope="module")
def committee(committee_dir):
    return TorchCommitteePotential.from_directory(committee_dir)


def _cell(seed=2):
    """Eight atoms, three of them Au, rattled off the lattice sites so forces are non-zero."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 1, 1))
    atoms.symbols[[1, 4, 6]] = "Au"
    atoms.rattle(0.05, seed=seed)
    return atoms


def count_evaluations(monkeypatch, calc) -> list:
    """(eval_forces, eval_stress) of every model evaluation by ``calc`` from now on."""
    calls = []
    evaluate = calc._evaluate
    monkeypatch.setattr(calc, "_evaluate", lambda *args: calls.append(args) or evaluate(*args))
    return calls


# ------------------------------------------------------------------------------- one potential


def test_matches_predict_exactly(potential):
    atoms = _cell()
    atoms.calc = AenetCalculator(potential)
    forces = atoms.get_forces()
    energy = atoms.get_potential_energy()
    reference = potential.predict([atoms.copy()], eval_forces=True)
    assert energy == reference.total_energy[0]
    assert atoms.get_potential_energy(force_consistent=True) == energy
    np.testing.assert_array_equal(forces, reference.forces[0])
    np.testing.assert_array_equal(atoms.calc.results["energies"], reference.atom_energies[0])
    assert atoms.get_potential_energies().sum() == pytest.approx(energy, abs=1e-10)
    assert np.abs(forces).max() > 1e-3


def test_forces_are_minus_the_energy_gradient(potential):
    atoms = _cell(seed=5)
    atoms.calc = AenetCalculator(potential)
    forces = atoms.get_forces()
    h = 1e-5
    numeric = np.zeros_like(forces)
    for i in range(len(atoms)):
        for k in range(3):
            energies = []
            for step in (h, -h):
                atoms.positions[i, k] += step
                energies.append(atoms.get_potential_energy())
                atoms.positions[i, k] -= step
            numeric[i, k] = -(energies[0] - energies[1]) / (2 * h)
    np.testing.assert_allclose(forces, numeric, atol=1e-6, rtol=0)


def test_velocity_verlet_conserves_energy(potential):
    # Measured: max |E_total(t) - E_total(0)| = 2.5e-5 eV while the potential energy swings by 0.049 eV;
    # forces scaled by 1.01 or 0.99 drift by 4.6e-4 to 5.1e-4 eV.  The 2e-4 eV bound leaves 8x room for
    # the O(dt^2) Verlet error yet fails when the forces are off by 1% from -dE/dx.
    atoms = _cell()
    atoms.calc = AenetCalculator(potential)
    # Maxwell-Boltzmann momenta at 1000 K, drawn here: ASE's helper for this changed name in 3.29.
    rng = np.random.default_rng(0)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(atoms.get_masses()[:, None] * units.kB * 1000))
    total, potential_energy = [], []

    def record():
        total.append(atoms.get_total_energy())
        potential_energy.append(atoms.get_potential_energy())

    dyn = VelocityVerlet(atoms, timestep=1 * units.fs)
    dyn.attach(record, interval=1)
    dyn.run(20)
    total = np.array(total)
    assert len(total) == 21
    assert np.ptp(potential_energy) > 0.02
    assert np.abs(total - total[0]).max() < 2e-4


def test_energy_only_request_skips_forces(potential, monkeypatch):
    atoms = _cell()
    atoms.calc = AenetCalculator(potential)
    calls = count_evaluations(monkeypatch, atoms.calc)
    atoms.get_potential_energy()
    assert calls == [(False, False)] and "forces" not in atoms.calc.results
    atoms.get_forces()
    atoms.get_potential_energy()
    assert calls == [(False, False), (True, False)]


def test_results_are_cached_until_atoms_change(potential, monkeypatch):
    atoms = _cell()
    atoms.calc = AenetCalculator(potential)
    calls = count_evaluations(monkeypatch, atoms.calc)
    first = atoms.get_potential_energy()
    assert atoms.get_potential_energy() == first
    assert len(calls) == 1
    atoms.positions[0, 0] += 0.05
    assert atoms.get_potential_energy() != first
    assert len(calls) == 2


def test_unknown_species_is_named(potential):
    atoms = _cell()
    atoms.symbols[0] = "Ni"
    atoms.calc = AenetCalculator(potential)
    with pytest.raises(ValueError, match=r"species \['Ni'\].*\['Cu', 'Au'\]"):
        atoms.get_potential_energy()


def test_loads_a_model_file(committee_dir):
    path = committee_dir / "member_000" / "model.pt"
    atoms = _cell()
    calc = AenetCalculator(str(path))
    assert not calc.is_committee
    assert calc.get_potential_energy(atoms) == TorchANNPotential.from_file(path).predict([atoms]).total_energy[0]
    with pytest.raises(TypeError, match="TorchANNPotential"):
        AenetCalculator(42)


# ------------------------------------------------------------------------------- committee


def test_committee_mean_and_spread(committee):
    atoms = _cell()
    atoms.calc = AenetCalculator(committee)
    forces = atoms.get_forces()
    results = atoms.calc.results
    members = [m.predict([atoms.copy()], eval_forces=True) for m in committee.members]
    member_energies = np.array([m.total_energy[0] for m in members])
    np.testing.assert_allclose(results["member_energies"], member_energies, rtol=0, atol=1e-12)
    assert atoms.get_potential_energy() == pytest.approx(member_energies.mean(), abs=1e-12)
    assert results["energy_std"] == pytest.approx(member_energies.std(ddof=0), abs=1e-12)
    assert results["energy_std"] > 0
    np.testing.assert_allclose(forces, np.mean([m.forces[0] for m in members], axis=0), rtol=0, atol=1e-12)
    member_forces = np.array([m.forces[0] for m in members])
    np.testing.assert_allclose(results["forces_std"], member_forces.std(0), rtol=1e-10, atol=1e-14)
    force_std = np.sqrt(member_forces.var(0).sum(1))  # per atom: the root of the summed component variances
    np.testing.assert_allclose(results["force_std"], force_std, rtol=1e-10)
    assert isinstance(results["max_force_std"], float) and results["max_force_std"] == pytest.approx(force_std.max())
    energies = atoms.get_potential_energies()
    np.testing.assert_allclose(energies, np.mean([m.atom_energies[0] for m in members], axis=0), atol=1e-12)
    assert energies.sum() == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    assert "energy_std_calibrated" not in results


def test_committee_get_property(committee):
    atoms = _cell()
    calc = AenetCalculator(committee)
    std = calc.get_property("energy_std", atoms)
    assert std == calc.results["energy_std"]
    assert std > 0
    assert "forces" not in calc.results
    force_std = calc.get_property("force_std", atoms)
    assert force_std.shape == (len(atoms),) and "forces_std" in calc.results and "forces" in calc.results
    with pytest.raises(PropertyNotImplementedError, match="energy_std_calibrated"):
        calc.get_property("energy_std_calibrated", atoms)


def test_committee_force_spread_is_the_predictions(committee):
    atoms = _cell()
    calc = AenetCalculator(committee)
    predicted = committee.predict([atoms.copy()], eval_forces=True)
    np.testing.assert_array_equal(calc.get_property("force_std", atoms), predicted[0].force_std)
    assert calc.get_property("max_force_std", atoms) == predicted.max_force_std[0]


def test_committee_deprecated_force_uncertainty_warns_and_keeps_its_meaning(committee):
    atoms = _cell()
    calc = AenetCalculator(committee)
    mean_over_xyz = calc.get_property("forces_std", atoms).mean(1)
    with pytest.warns(DeprecationWarning, match="'force_uncertainty' is deprecated; use 'force_std'") as caught:
        np.testing.assert_array_equal(calc.get_property("force_uncertainty", atoms), mean_over_xyz)
    with pytest.warns(DeprecationWarning, match="use 'force_std'") as direct:
        np.testing.assert_array_equal(calc.results["force_uncertainty"], mean_over_xyz)
    with pytest.warns(DeprecationWarning, match="use 'force_std'"):
        np.testing.assert_array_equal(calc.results.get("force_uncertainty"), mean_over_xyz)
    assert caught[0].filename == direct[0].filename == __file__  # each points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current names never warn
        assert calc.results["force_std"].size and calc.results.get("forces_std").size
        assert calc.get_property("max_force_std", atoms) > 0
    single = AenetCalculator(committee.members[0])
    with pytest.warns(DeprecationWarning), pytest.raises(PropertyNotImplementedError):
        single.get_property("force_uncertainty", atoms)


def test_committee_calibrated_std(committee, monkeypatch):
    monkeypatch.setattr(committee, "calibration_factor", 1.7)
    calc = AenetCalculator(committee)
    calibrated = calc.get_property("energy_std_calibrated", _cell())
    assert calibrated == 1.7 * calc.results["energy_std"]
    assert calibrated > 0


def test_committee_from_directory_path(committee, committee_dir):
    atoms = _cell()
    expected = AenetCalculator(committee).get_potential_energy(atoms)
    for path in (committee_dir, committee_dir / "committee_metadata.json"):
        calc = AenetCalculator(path)
        assert calc.is_committee and len(calc.model.members) == 3
        assert calc.get_potential_energy(atoms) == expected
        assert "member_energies" in calc.implemented_properties


def test_committee_caching(committee, monkeypatch):
    atoms = _cell()
    atoms.calc = AenetCalculator(committee)
    calls = count_evaluations(monkeypatch, atoms.calc)
    atoms.get_forces()
    atoms.get_potential_energy()
    atoms.calc.get_property("energy_std", atoms)
    assert calls == [(True, False)]
    atoms.positions[3, 1] -= 0.02
    atoms.get_potential_energy()
    assert calls == [(True, False), (False, False)]


# --------------------------------------------------------------------------- stress

FIVE = ["Li", "Mo", "Ni", "Ti", "O"]


def random_potential(species, seed=0):
    """An untrained potential with random weights: its energy depends on every feature."""
    torch.manual_seed(seed)
    descriptor = ChebyshevDescriptor(species, 5, 4.5, 3, 3.5, min_cutoff=0.5)
    return TorchANNPotential({s: [(6, "tanh")] for s in species}, descriptor)


def crystal(species, cell, n_atoms, seed=0, outside=False):
    """Random atoms in ``cell``, at least 1.3 Å apart; ``outside`` shifts them out of the home cell."""
    rng = np.random.default_rng(seed)
    cell = np.asarray(cell, float)
    atoms = Atoms(cell=cell, pbc=True)
    while len(atoms) < n_atoms:
        candidate = Atoms([species[len(atoms) % len(species)]], positions=[rng.uniform(0, 1, 3) @ cell])
        trial = atoms + candidate
        if len(trial) < 2 or trial.get_all_distances(mic=True)[-1, :-1].min() > 1.3:
            atoms = trial
    if outside:
        atoms.positions += rng.integers(-2, 3, (len(atoms), 3)) @ cell
    return atoms


TRICLINIC = [[4.1, 0.0, 0.0], [1.3, 3.9, 0.0], [0.7, -0.9, 4.4]]
STRESS_CASES = {
    "triclinic": (["Cu", "Au"], TRICLINIC, 6, False),
    "small cell, many images": (["Cu", "Au"], [[2.6, 0.0, 0.0], [0.4, 2.7, 0.0], [0.2, 0.5, 2.5]], 1, False),
    "atoms outside the home cell": (["Cu", "Au"], TRICLINIC, 6, True),
    "one species": (["Cu"], TRICLINIC, 5, False),
    "five species": (FIVE, [[5.0, 0.3, 0.1], [0.2, 5.2, 0.4], [0.6, 0.1, 4.9]], 10, False),
}


@pytest.mark.parametrize("species, cell, n_atoms, outside", STRESS_CASES.values(), ids=STRESS_CASES)
def test_stress_is_the_strain_derivative_of_the_energy(species, cell, n_atoms, outside):
    atoms = crystal(species, cell, n_atoms, outside=outside)
    atoms.calc = AenetCalculator(random_potential(species))
    stress = atoms.get_stress()
    numerical = calculate_numerical_stress(atoms, eps=1e-5)  # ASE's central differences of strained cells
    assert np.abs(stress).max() > 1e-4  # a stress worth checking
    np.testing.assert_allclose(stress, numerical, rtol=1e-6, atol=1e-6 * np.abs(numerical).max())


def test_stress_rotates_as_a_tensor_and_does_not_depend_on_the_supercell():
    atoms = crystal(["Cu", "Au"], TRICLINIC, 6)
    calc = AenetCalculator(random_potential(["Cu", "Au"]))
    atoms.calc = calc
    stress = atoms.get_stress(voigt=False)
    rotation, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(3, 3)))
    rotation *= np.sign(np.linalg.det(rotation))  # a proper rotation
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell @ rotation.T)
    rotated.positions = atoms.positions @ rotation.T
    rotated.calc = calc
    np.testing.assert_allclose(rotated.get_stress(voigt=False), rotation @ stress @ rotation.T, atol=1e-12)
    supercell = atoms.repeat((2, 1, 3))
    supercell.calc = calc
    np.testing.assert_allclose(supercell.get_stress(voigt=False), stress, atol=1e-12)


def test_stress_joins_the_force_evaluations_once_asked_and_a_molecule_has_no_stress(potential, monkeypatch):
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms[0].symbol = "Au"
    atoms.calc = AenetCalculator(potential)
    calls = count_evaluations(monkeypatch, atoms.calc)
    atoms.get_forces()
    atoms.get_stress()
    atoms.get_potential_energy()
    assert calls == [(True, False), (True, True)]
    atoms.positions[0, 0] += 0.01
    atoms.get_forces()
    atoms.get_stress()
    assert calls == [(True, False), (True, True), (True, True)]  # one evaluation gives both now
    molecule = Atoms("CuAu", positions=[[0, 0, 0], [0, 0, 2.4]])
    molecule.calc = AenetCalculator(potential)
    with pytest.raises(PropertyNotImplementedError, match="stress needs a structure periodic in 3D"):
        molecule.get_stress()


def test_committee_stress_is_the_members_mean_with_their_spread(committee):
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms[1].symbol = "Au"
    atoms.calc = AenetCalculator(committee)
    stress = atoms.get_stress()
    members = []
    for member in committee.members:
        single = atoms.copy()
        single.calc = AenetCalculator(member)
        members.append(single.get_stress())
    np.testing.assert_allclose(stress, np.mean(members, axis=0), atol=1e-12)
    np.testing.assert_allclose(atoms.calc.get_property("stress_std", atoms), np.std(members, axis=0), atol=1e-12)


def test_a_cell_relaxation_with_frechet_cell_filter_lowers_energy_and_stress():
    atoms = crystal(["Cu", "Au"], TRICLINIC, 6, seed=3)
    atoms.calc = AenetCalculator(random_potential(["Cu", "Au"], seed=4))
    start_energy, start_stress = atoms.get_potential_energy(), np.abs(atoms.get_stress()).max()
    FIRE(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-3, steps=60)
    assert atoms.get_potential_energy() < start_energy
    assert np.abs(atoms.get_stress()).max() < 0.5 * start_stress  # the cell moved down the stress


def test_npt_dynamics_changes_the_cell_toward_zero_pressure():
    atoms = crystal(["Cu", "Au"], TRICLINIC, 6, seed=3)
    atoms.calc = AenetCalculator(random_potential(["Cu", "Au"], seed=4))
    pressure = -np.trace(atoms.get_stress(voigt=False)) / 3
    volume = atoms.get_volume()
    thermalize_momenta(atoms, temperature_K=10, rng=np.random.default_rng(0))
    NPTBerendsen(atoms, timestep=1 * units.fs, temperature_K=10, pressure_au=0.0, taup=20 * units.fs,
                 compressibility_au=1 / (100 * units.GPa)).run(10)
    # A cell under pressure expands, one under tension shrinks.
    assert np.sign(atoms.get_volume() - volume) == np.sign(pressure)


# --------------------------------------------------------------------------- Verlet neighbour list


@pytest.fixture(scope="module")
def fortran_potential(shared_data):
    folder = shared_data / "reference" / "potentials" / "TiO2-fortran"
    return TorchANNPotential.from_aenet_ascii({species: folder / f"{species}.nn.ascii" for species in ("Ti", "O")})


def fresh_results(atoms, model, stress=True) -> dict:
    """Energy, forces (and stress) of ``atoms`` from a calculator that searches neighbours afresh."""
    copy = atoms.copy()
    copy.calc = AenetCalculator(model, skin=None)
    results = {"energy": copy.get_potential_energy(), "forces": copy.get_forces()}
    if stress:
        results["stress"] = copy.get_stress()
    return results


def assert_same_results(calc, expected, atol=1e-10):
    for name, value in expected.items():
        np.testing.assert_allclose(calc.results[name], value, rtol=0, atol=atol, err_msg=name)


def test_md_with_the_verlet_list_equals_fresh_evaluations(fortran_potential, shared_data):
    atoms = read_xsf(shared_data / "TiO2" / "structure-001.xsf")
    atoms.positions -= atoms.positions[0] - 0.05  # atom 0 close to three faces of the home cell
    rng = np.random.default_rng(3)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(atoms.get_masses()[:, None] * units.kB * 1500))
    atoms.calc = calc = AenetCalculator(fortran_potential, skin=0.5)
    steps = []

    def check():
        atoms.get_stress()  # the first asks for it; from then on every force evaluation includes it
        assert_same_results(calc, fresh_results(atoms, fortran_potential))
        steps.append((calc.neighbors.builds, np.floor(atoms.get_scaled_positions(wrap=False))))

    dyn = VelocityVerlet(atoms, timestep=2 * units.fs)
    dyn.attach(check, interval=1)
    dyn.run(50)
    assert len(steps) == 51
    builds = [b for b, _ in steps]
    assert 1 < builds[-1] < 20  # searched again now and then, not at every step
    # Atoms crossed a face of the home cell while the list was kept: the stored images stayed right.
    crossed = [b == b0 and not np.array_equal(h, h0) for (b0, h0), (b, h) in zip(steps, steps[1:])]
    assert sum(crossed) >= 1


def test_the_list_is_searched_again_only_when_an_atom_moved_more_than_half_the_skin():
    model = random_potential(["Cu", "Au"])
    atoms = crystal(["Cu", "Au"], TRICLINIC, 6, outside=True)
    atoms.calc = calc = AenetCalculator(model, skin=1.0)
    moves = [  # (what happens to the atoms, searches so far)
        (lambda: None, 1),
        (lambda: atoms.positions.__setitem__((2, 0), atoms.positions[2, 0] + 0.3), 1),
        (lambda: atoms.positions.__setitem__((2, 0), atoms.positions[2, 0] + 0.19), 1),  # 0.49 Å in all
        (lambda: atoms.positions.__setitem__((2, 0), atoms.positions[2, 0] + 0.02), 2),  # 0.51 Å > skin / 2
        (lambda: atoms.positions.__setitem__(4, atoms.positions[4] + [0.2, -0.2, 0.3]), 2),
        (lambda: atoms.wrap(), 3),  # atoms moved back into the home cell
        (lambda: atoms.set_cell(atoms.cell * 1.01, scale_atoms=True), 4),
        (lambda: atoms.numbers.__setitem__(0, 79 if atoms.numbers[0] == 29 else 29), 5),
        (lambda: atoms.pop(), 6),
    ]
    for move, searches in moves:
        move()
        atoms.get_forces()
        atoms.get_stress()
        assert calc.neighbors.builds == searches
        assert_same_results(calc, fresh_results(atoms, model))


GEOMETRIES = {
    "isolated molecule": Atoms("CuAuCu2Au", positions=np.random.default_rng(1).normal(size=(5, 3)) * 1.5),
    "slab": Atoms("Cu3Au2", cell=[[4.0, 0, 0], [1.0, 3.8, 0], [0, 0, 12.0]], pbc=[True, True, False],
                  positions=np.random.default_rng(2).uniform(-1, 4, (5, 3))),
    "cell smaller than the cutoff": crystal(["Cu", "Au"], [[2.6, 0.0, 0.0], [0.4, 2.7, 0.0], [0.2, 0.5, 2.5]], 1,
                                            outside=True),
}


@pytest.mark.parametrize("search", ["vesin", "pure torch"])
@pytest.mark.parametrize("atoms", GEOMETRIES.values(), ids=GEOMETRIES)
def test_the_verlet_list_equals_fresh_evaluations_without_a_3d_cell_and_with_many_images(atoms, search, monkeypatch):
    if search == "vesin":
        pytest.importorskip("vesin")
    else:
        monkeypatch.setitem(sys.modules, "vesin", None)  # import vesin fails
    model = random_potential(["Cu", "Au"])
    atoms = atoms.copy()
    atoms.calc = calc = AenetCalculator(model, skin=1.0)
    rng = np.random.default_rng(4)
    for _ in range(4):
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        atoms.get_forces()
        if atoms.pbc.all():
            atoms.get_stress()
        assert_same_results(calc, fresh_results(atoms, model, stress=atoms.pbc.all()))
    assert calc.neighbors.builds < 4


def test_skin_must_not_be_negative(potential):
    with pytest.raises(ValueError, match="skin"):
        AenetCalculator(potential, skin=-0.1)


def test_committee_members_share_one_descriptor_pass_and_give_the_predictions(committee, monkeypatch):
    atoms = _cell()
    atoms.calc = calc = AenetCalculator(committee)
    passes = []
    featurize = calc.featurizer.with_derivatives
    monkeypatch.setattr(calc.featurizer, "with_derivatives", lambda *a, **k: passes.append(1) or featurize(*a, **k))
    atoms.get_stress()  # from now on every force evaluation includes the stress
    for step in range(3):
        atoms.positions[step] += [0.05, -0.04, 0.03]
        atoms.get_forces()
        predicted = committee.predict([atoms.copy()], eval_forces=True, eval_stress=True)
        result = predicted[0]
        for name in ("forces", "forces_std", "force_std", "energy_std", "member_energies", "energy"):
            np.testing.assert_allclose(calc.results[name], getattr(result, name), rtol=0, atol=1e-12, err_msg=name)
        assert calc.results["max_force_std"] == pytest.approx(predicted.max_force_std[0], rel=0, abs=1e-12)
        np.testing.assert_allclose(atoms.get_stress(voigt=False), result.stress, rtol=0, atol=1e-12)
        np.testing.assert_allclose(calc.results["stress_std"], full_3x3_to_voigt_6_stress(result.stress_std),
                                   rtol=0, atol=1e-12)
    assert len(passes) == 4 and calc.neighbors.builds == 1
