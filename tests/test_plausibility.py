"""Plausibility limits: the defaults against real DFT data, the density estimate, each check's message,
the warnings, and how the limits in effect are set."""
import warnings

import numpy as np
import pytest
from ase.build import bulk, fcc111, graphene, molecule
from ase.neighborlist import neighbor_list

import aenet_core.neighbors as neighbors
from aenet_core.data.limits import PlausibilityLimits
from aenet_core.data.plausibility import (Review, check_geometry, check_labels, geometry_problem, geometry_problems,
                                          neighbour_density)
from aenet_core.data.sources import Entry, iter_entries
from aenet_core.structure import Structure

CUTOFF = 6.0  # the radial cutoff of the TiO2 benchmark


def entry(structure, name="made.xsf"):
    return Entry(structure, name, name, 0, True)


def copper(scale=1.0):
    """A 32-atom fcc Cu cell whose cell vectors (not positions) are multiplied by ``scale``."""
    atoms = bulk("Cu", cubic=True).repeat(2)
    atoms.calc = None
    s = Structure.from_ase(atoms)
    return Structure(s.positions, s.species, energy=-100.0, forces=np.zeros((32, 3)), cell=s.cell * scale)


@pytest.fixture(scope="module", params=["TiO2", "LMNTO"])
def reference_entries(request, shared_data):
    return list(iter_entries(sorted((shared_data / request.param).glob("*.xsf"))))


def a_sample(entries):
    return entries[::max(1, len(entries) // 12)]


def test_real_data_sets_pass_the_defaults_with_wide_margins(reference_entries):
    d = PlausibilityLimits()
    strict = PlausibilityLimits(energy_limit=d.energy_limit / 1000, force_limit=d.force_limit / 100,
                                min_distance=2 * d.min_distance, max_pairs_per_atom=d.max_pairs_per_atom / 5)
    # At most 113 (TiO2) and 93 (LMNTO) neighbours per atom, atoms at least 1.38 and 1.64 Å apart.
    check_geometry(reference_entries, CUTOFF, strict)
    for e in reference_entries:
        check_labels(e.structure, e.where, strict)  # at most 867 and 11 eV/atom, 52 and 4.8 eV/Å
    closest = min(np.min(neighbor_list("d", e.structure.to_ase(), 2.0), initial=2.0)
                  for e in a_sample(reference_entries))
    assert closest > strict.min_distance  # ASE's own search agrees


def test_the_density_estimate_tracks_the_neighbour_count(reference_entries):
    ratios = [len(neighbor_list("i", e.structure.to_ase(), CUTOFF)) / e.structure.n_atoms
              / neighbour_density(e.structure, CUTOFF)[0] for e in a_sample(reference_entries)]
    assert 0.8 < min(ratios) and max(ratios) < 1.25 and abs(np.mean(ratios) - 1) < 0.1


@pytest.mark.parametrize("atoms", [graphene(vacuum=10).repeat((3, 3, 1)), fcc111("Cu", (3, 3, 6), vacuum=10),
                                   molecule("C6H6")], ids=["sheet", "slab", "molecule"])
def test_the_estimate_holds_without_periodicity(atoms):
    atoms.pbc = [True, True, False] if atoms.cell.rank == 3 else False
    s = Structure.from_ase(atoms)
    actual = len(neighbor_list("i", atoms, CUTOFF)) / len(atoms)
    assert 0.5 < actual / neighbour_density(s, CUTOFF)[0] < 2


def test_a_cell_in_nm_is_refused_before_any_neighbour_list(monkeypatch):
    check_geometry([entry(copper())], CUTOFF, PlausibilityLimits())
    monkeypatch.setattr(neighbors, "batched_neighbor_list", lambda *a, **k: pytest.fail("a neighbour list"))
    with pytest.raises(ValueError, match=r"made\.xsf \(frame 0\): 32 atoms at 8\d\.\d+ atoms/Å³ give about 7\.\d+e\+04 "
                                         r"neighbours per atom within the 6 Å cutoff.*more than 1000 .*"
                                         r"max_pairs_per_atom.*in Å \(not nm\)"):
        check_geometry([entry(copper(0.1))], CUTOFF, PlausibilityLimits())
    check_geometry([entry(copper(0.1))], CUTOFF, PlausibilityLimits(max_pairs_per_atom=1e5, min_distance=0))


@pytest.mark.parametrize("move, message", [
    (lambda p, cell: p[0] + [0.01, 0, 0], r"atoms 0 \(Cu\) and 3 \(Cu\) are 0\.01 Å apart"),
    (lambda p, cell: p[0], r"atoms 0 \(Cu\) and 3 \(Cu\) are 0 Å apart"),
    # The same place an image away: 0 Å, or round-off.
    (lambda p, cell: p[0] + cell[2], r"atoms 0 \(Cu\) and 3 \(Cu\) are (0|[\d.]+e-1\d) Å apart"),
    (lambda p, cell: p[0] + cell[0] - [0.1, 0, 0], r"atoms 0 \(Cu\) and 3 \(Cu\) are 0\.1 Å apart"),  # across a face
])
def test_atoms_too_close_are_named_with_their_distance(move, message):
    s = copper()
    s.positions[3] = move(s.positions, s.cell)
    good = [entry(copper(), f"good{k}.xsf") for k in range(3)]
    with pytest.raises(ValueError, match=r"made\.xsf \(frame 0\): " + message + r"; closer than 0\.5 Å .*\(min_distance\)"):
        check_geometry(good + [entry(s)], CUTOFF, PlausibilityLimits())
    check_geometry(good + [entry(s)], CUTOFF, PlausibilityLimits(min_distance=0))


def refusal(entries, limits) -> str | None:
    try:
        check_geometry(entries, CUTOFF, limits)
    except ValueError as err:
        return str(err)
    return None


@pytest.mark.parametrize("scale, moved, limits, refused", [
    (1.0, None, PlausibilityLimits(), None),
    (0.1, None, PlausibilityLimits(), "max_pairs_per_atom"),
    (0.1, None, PlausibilityLimits(max_pairs_per_atom=1e5, min_distance=0), None),
    (1.0, [0.01, 0, 0], PlausibilityLimits(), "0.01 Å apart"),
    (1.0, [0, 0, 0], PlausibilityLimits(), "0 Å apart"),
    (1.0, [2 * 3.61 - 0.1, 0, 0], PlausibilityLimits(), "0.1 Å apart"),  # across a face of the 7.22 Å cell
    (1.0, [0.3, 0, 0], PlausibilityLimits(min_distance=0), None)])
def test_one_structures_geometry_problem_is_the_refusal_of_the_database(scale, moved, limits, refused):
    s = copper(scale)
    if moved is not None:
        s.positions[3] = s.positions[0] + moved
    problem = geometry_problem(s, "made.xsf (frame 0)", CUTOFF, limits)
    assert problem == refusal([entry(s)], limits)
    assert geometry_problems([copper(), s, s], ["good", "made.xsf (frame 0)", "again"], CUTOFF, limits) == \
        [None, problem, problem and problem.replace("made.xsf (frame 0)", "again")]
    assert problem is None if refused is None else refused in problem


def test_a_molecules_close_atoms_are_a_geometry_problem_without_torch_or_a_cutoff():
    co = molecule("CO")
    co.positions[1] = co.positions[0] + [0, 0, 0.3]
    s = Structure.from_ase(co)
    assert geometry_problem(s, "co", None, PlausibilityLimits()) == refusal([entry(s, "co")], PlausibilityLimits()) \
        .replace("co (frame 0)", "co")
    assert geometry_problem(Structure.from_ase(molecule("CO")), "co", CUTOFF, PlausibilityLimits()) is None
    assert "max_pairs_per_atom" not in geometry_problem(copper(0.1), "made", None, PlausibilityLimits())


def test_absurd_and_non_finite_labels_name_the_field():
    limits = PlausibilityLimits()
    s = copper()
    s.energy = -1e300
    with pytest.raises(ValueError, match=r"^w: energy is -1e\+300 eV, -3\.125e\+298 eV/atom; .* beyond ±1e\+07 eV/atom"):
        check_labels(s, "w", limits)
    s = copper()
    s.forces[5, 1] = 1e200
    with pytest.raises(ValueError, match=r"^w: force on atom 5 \(Cu\) along y is 1e\+200 eV/Å; .* ±10000 eV/Å"):
        check_labels(s, "w", limits)
    s.forces[5, 1], s.forces[7, 2] = 0.0, np.nan  # set after construction, past Structure's own check
    with pytest.raises(ValueError, match=r"force on atom 7 \(Cu\) along z is nan"):
        check_labels(s, "w", limits)
    s = copper()
    s.energy = -32 * 2e7
    with pytest.raises(ValueError, match="energy_limit"):
        check_labels(s, "w", limits)
    check_labels(s, "w", PlausibilityLimits(energy_limit=1e8))
    s = copper()
    s.stress = np.diag([0.01, 0.01, 250.0])  # kbar or GPa read as eV/Å³
    with pytest.raises(ValueError, match=r"^w: a stress component is 250\.0 eV/Å³; beyond ±100 eV/Å³ .*stress_limit"):
        check_labels(s, "w", limits)
    check_labels(s, "w", PlausibilityLimits(stress_limit=300.0))


def test_limits_are_checked():
    with pytest.raises(ValueError, match=r"PlausibilityLimits\.force_limit must be a finite number > 0; got 0"):
        PlausibilityLimits(force_limit=0)
    with pytest.raises(ValueError, match=r"PlausibilityLimits\.min_distance must be a finite number >= 0"):
        PlausibilityLimits(min_distance=-1.0)


def test_the_review_warns_about_copies_and_far_referenced_energies():
    review = Review({"Cu": -3.0}, PlausibilityLimits())
    relabelled = copper()
    relabelled.energy = -7.0
    for item in (entry(copper(), "a.xsf"), entry(copper(), "a.xsf"), entry(relabelled, "b.xsf")):
        review.note(item)
    far = copper()
    far.energy = -3.0 * 32 - 21 * 32  # 21 eV/atom below the references
    review.note(entry(far, "far.xsf"))
    with pytest.warns(UserWarning) as caught:
        review.warn()
    copies, energies = (str(w.message) for w in caught)
    assert copies.startswith("3 structure(s) repeat an earlier one") and "a.xsf#frame=0 is given twice" in copies
    assert "b.xsf#frame=0 repeats a.xsf#frame=0 with another energy (-7.0 vs -100.0 eV)" in copies
    assert energies.startswith("1 structure(s) have referenced energies beyond ±20 eV/atom")
    assert "far.xsf (frame 0): -21 eV/atom" in energies and "Ry read as eV" in energies


def test_a_plain_data_set_is_not_warned_about():
    review = Review({"Cu": -3.0}, PlausibilityLimits())
    s = copper()
    s.energy = -3.0 * 32 - 5 * 32
    review.note(entry(s))
    review.note(entry(Structure(s.positions[:-1], s.species[:-1], energy=-96.0, cell=s.cell)))
    review.note(entry(Structure(s.positions, ["Au"] * 32, energy=1e5, cell=s.cell), "unreferenced.xsf"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        review.warn()


def strained_copper(factor=1.0, low=0.985, high=1.015, n=9, rattle=0.01, seed=0):
    """``n`` 32-atom fcc Cu cells scaled by ``low``..``high``, atoms displaced by about ``rattle`` Å, with EMT
    labels; the stresses multiplied by ``factor`` (in GPa: 1 / ase.units.GPa)."""
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    structures = []
    for scale in np.linspace(low, high, n):
        atoms = bulk("Cu", cubic=True).repeat(2)
        atoms.set_cell(atoms.cell * scale, scale_atoms=True)
        atoms.rattle(rattle, seed=int(rng.integers(2**31)))
        atoms.calc = EMT()
        structures.append(Structure(atoms.positions, atoms.get_chemical_symbols(), atoms.get_potential_energy(),
                                    cell=atoms.cell.array, stress=atoms.get_stress() * factor))
    return structures


def review_warnings(structures, limits=None) -> list:
    """The messages that a dataset's checks warn with about ``structures`` (in memory: named structure_NNNNNN)."""
    from aenet_core.data.sources import StructureFilter

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(StructureFilter(["Cu", "Au"], limits=limits).apply(iter_entries(structures)))
    return [str(w.message) for w in caught]


def test_stresses_in_gpa_or_kbar_are_warned_about_naming_the_unit():
    from ase.units import GPa, bar

    from aenet_core.example_data import make_cuau_structures

    assert review_warnings(make_cuau_structures(200) + strained_copper()) == []  # up to 1.0 and 0.045 eV/Å³
    for unit, factor in (("GPa", 1 / GPa), ("kbar", 1 / (1000 * bar))):
        structures = strained_copper(factor)
        components = [float(s.stress.flat[np.argmax(np.abs(s.stress))]) for s in structures]
        k = int(np.argmax(np.abs(components)))  # the most expanded cell: 7 GPa of tension
        largest, volumes = components[k], [s.volume for s in structures]
        magnitude, consistency = review_warnings(structures)
        assert magnitude.startswith(f"{sum(abs(c) > 2 for c in components)} structure(s) have stress components "
                                    f"beyond ±2 eV/Å³ (stress_warning)")
        assert f"largest first: structure_{k:06d}: {largest:.4g} eV/Å³ = {largest / GPa:.4g} GPa" in magnitude
        assert f"as GPa the largest would be {largest:.4g} GPa, as kbar {largest / 10:.4g} GPa" in magnitude
        assert consistency.startswith("the stresses of 1 composition(s) change with volume unlike their energies'")
        assert f"Cu32 (9 structures, {min(volumes):.4g} to {max(volumes):.4g} Å³): " in consistency
        assert f"times as fast, as if in {unit}; ASE's unit is eV/Å³" in consistency
    assert review_warnings(strained_copper(1 / GPa), PlausibilityLimits(stress_warning=10))[0].startswith(
        "the stresses of 1 composition(s)")
    with pytest.raises(ValueError, match="stress_warning must be a finite number > 0"):
        PlausibilityLimits(stress_warning=0)


def test_stresses_below_the_warning_are_compared_with_the_energies():
    from ase.units import GPa, Bohr, Ry

    for factor, limits, suggestion in ((1 / GPa, PlausibilityLimits(stress_warning=10), "as if in GPa"),
                                       (-1, None, "as if in eV/Å³ with compression positive"),
                                       (Bohr**3 / Ry, None, "as if in Ry/Bohr³")):
        message, = review_warnings(strained_copper(factor), limits)
        assert message.startswith("the stresses of 1 composition(s)") and suggestion in message, message


def states(structures) -> tuple:
    return tuple(np.array(values) for values in zip(*((s.volume, s.energy, -np.trace(s.stress) / 3)
                                                        for s in structures)))


def test_the_stress_factor_compares_slopes_only_where_the_volumes_tell():
    from ase.units import GPa

    from aenet_core.data.plausibility import stress_factor
    from aenet_core.training.trainout import GPA_PER_EV_PER_A3 as GPA

    assert GPA == pytest.approx(1 / GPa)
    volumes, energies, pressures = states(strained_copper())
    assert stress_factor(volumes, energies, pressures) == pytest.approx(1, abs=0.1)
    assert stress_factor(volumes, energies, pressures * GPA) == pytest.approx(GPA, rel=0.1)
    # A thermal pressure (MD: 4 GPa in Cu at 1000 K) or Pulay stress shifts the level, not the slope.
    assert stress_factor(volumes, energies, pressures + 5 / GPA) == pytest.approx(1, abs=0.15)
    assert stress_factor(*states(strained_copper(low=0.85, high=1.15, n=12))) == pytest.approx(1, abs=0.05)
    assert stress_factor(volumes[:4], energies[:4], pressures[:4]) is None  # four volumes
    assert stress_factor(*states(strained_copper(low=0.998, high=1.002))) is None  # 1.2 % apart
    assert stress_factor(*states(strained_copper(low=1, high=1, rattle=0.1))) is None  # one volume (MD)
    noise = np.random.default_rng(0).normal(size=(2, 9))
    assert stress_factor(volumes, *noise) is None
