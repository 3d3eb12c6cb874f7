"""Atomic reference energies: solver, subsetting, reference compounds, file samples, JSON files, TiO2 data."""
import dataclasses
import json
import math
import random
from collections import Counter

import numpy as np
import pytest
from ase.data import chemical_symbols

import aenet_core.reference_energies as ref_module
from aenet_core.data import PlausibilityLimits
from aenet_core.io import write_extxyz, write_xsf
from aenet_core.reference_energies import ReferenceEnergies, iter_composition_energy_samples_from_files
from aenet_core.structure import Structure

REGRESSION_KEYS = ["species_order", "fixed_atomic_energies", "free_species", "n_samples_total", "n_samples_used",
                   "subset_size", "subset_fraction", "random_seed", "rank", "residual_sum_squares", "rmse",
                   "singular_values"]
# aenet-python's keys and order: no subsetting keys, n_samples_used left out
COMPOUND_KEYS = ["species_order", "fixed_atomic_energies", "free_species", "n_samples_total", "n_reference_compounds",
                 "reference_compounds", "reference_candidate_counts", "selected_reference_samples", "rank",
                 "residual_sum_squares", "rmse", "singular_values"]
# The spec's oracle with A -> Ti, B -> O: A2:2, B2:4, AB:3, A2B:4 gives A = 1, B = 2 exactly.
ORACLE = [({"Ti": 2}, 2.0), ({"O": 2}, 4.0), ({"Ti": 1, "O": 1}, 3.0), ({"Ti": 2, "O": 1}, 4.0)]


class OnePass:
    """An iterable that refuses a second pass, to prove samples are streamed once."""

    def __init__(self, items):
        self.items, self.passes = list(items), 0

    def __iter__(self):
        self.passes += 1
        assert self.passes == 1, "samples were iterated more than once"
        return iter(self.items)


def lstsq_fit(samples, species):
    """Independent least squares: (energies, rmse)."""
    a = np.array([[c.get(s, 0) for s in species] for c, _ in samples], dtype=float)
    y = np.array([e for _, e in samples])
    x = np.linalg.lstsq(a, y, rcond=None)[0]
    return dict(zip(species, x)), math.sqrt(np.mean((a @ x - y) ** 2))


def reservoir_indices(n, k, seed):
    """The documented recipe, written out: keep the first k; item n (1-based) replaces slot randint(0, n-1) if < k."""
    rng = random.Random(seed)
    slots = list(range(k))
    for count in range(k + 1, n + 1):
        j = rng.randint(0, count - 1)
        if j < k:
            slots[j] = count - 1
    return slots


def one_species_samples(n):
    """Sample i holds only element i, so the fitted species reveal exactly which samples were used."""
    return [({chemical_symbols[i + 1]: 1}, float(i)) for i in range(n)]


# --------------------------------------------------------------------------- regression

def test_spec_oracle():
    result = ReferenceEnergies.from_regression(ORACLE)
    assert result.method == "regression"
    assert result.atomic_energies == pytest.approx({"Ti": 1.0, "O": 2.0}, abs=1e-12)
    metadata = result.metadata
    assert list(metadata) == REGRESSION_KEYS
    assert metadata["species_order"] == ["O", "Ti"]
    assert metadata["rank"] == 2
    assert metadata["rmse"] == pytest.approx(0.0, abs=1e-12)
    assert metadata["n_samples_total"] == metadata["n_samples_used"] == 4
    assert metadata["subset_size"] is None and metadata["fixed_atomic_energies"] == {}


def test_noisy_data_recovers_energies_and_rmse():
    rng = np.random.default_rng(7)
    true = {"Li": -1.9, "O": -4.7, "Ti": -7.8}
    samples = []
    while len(samples) < 300:
        counts = dict(zip(true, (int(n) for n in rng.integers(0, 12, 3))))
        if sum(counts.values()):
            samples.append((counts, sum(n * true[s] for s, n in counts.items()) + rng.normal(scale=0.05)))
    result = ReferenceEnergies.from_regression(iter(samples))
    assert result.atomic_energies == pytest.approx(true, abs=0.02)
    expected, expected_rmse = lstsq_fit(samples, ["Li", "O", "Ti"])
    assert result.atomic_energies == pytest.approx(expected, rel=1e-10)
    assert result.metadata["rmse"] == pytest.approx(expected_rmse, rel=1e-10)
    assert result.metadata["rmse"] == pytest.approx(0.05, rel=0.15)  # about the noise level
    assert result.metadata["residual_sum_squares"] == pytest.approx(300 * expected_rmse**2, rel=1e-10)
    a = np.array([[c.get(s, 0) for s in ["Li", "O", "Ti"]] for c, _ in samples], dtype=float)
    assert result.metadata["singular_values"] == pytest.approx(list(np.linalg.svd(a, compute_uv=False)))


def test_fixed_energies_move_to_right_hand_side():
    samples = [({"Ti": 1, "O": 2}, 10.0), ({"Ti": 2, "O": 3}, 15.5), ({"Ti": 1, "O": 1}, 6.0)]
    result = ReferenceEnergies.from_regression(samples, fixed_atomic_energies={"O": np.float64(2.0)})
    # y' = y - n_O * 2 = [6, 9.5, 4]; Ti = (1*6 + 2*9.5 + 1*4) / (1 + 4 + 1)
    ti = 29 / 6
    assert result.atomic_energies == pytest.approx({"O": 2.0, "Ti": ti}, abs=1e-12)
    assert list(result.atomic_energies) == ["O", "Ti"]
    metadata = result.metadata
    assert metadata["fixed_atomic_energies"] == {"O": 2.0} and metadata["free_species"] == ["Ti"]
    assert metadata["rank"] == 1 and metadata["singular_values"] == pytest.approx([math.sqrt(6)])
    rss = (ti - 6) ** 2 + (2 * ti - 9.5) ** 2 + (ti - 4) ** 2
    assert metadata["residual_sum_squares"] == pytest.approx(rss)
    assert metadata["rmse"] == pytest.approx(math.sqrt(rss / 3))


def test_all_species_fixed_skips_the_solve():
    result = ReferenceEnergies.from_regression(ORACLE, fixed_atomic_energies={"Ti": 1.0, "O": 2.5})
    assert result.atomic_energies == {"O": 2.5, "Ti": 1.0}
    metadata = result.metadata
    assert metadata["rank"] == 0 and metadata["singular_values"] == [] and metadata["free_species"] == []
    residuals = [2 - 2, 5 - 4, 3.5 - 3, 4.5 - 4]  # predictions with Ti = 1, O = 2.5 minus the energies
    assert metadata["residual_sum_squares"] == pytest.approx(sum(r * r for r in residuals))


@pytest.mark.parametrize("fixed, match", [({"Li": 1.0}, "'Li'"), ({"O": math.nan}, "'O'"),
                                          ({"O": "2"}, "finite number"), ([("O", 2.0)], "must be a mapping")])
def test_bad_fixed_energies(fixed, match):
    with pytest.raises((TypeError, ValueError), match=match):
        ReferenceEnergies.from_regression(ORACLE, fixed_atomic_energies=fixed)


def test_rank_deficient_asks_for_fixed_energies():
    samples = [({"Ti": 1, "O": 2}, -10.0), ({"Ti": 2, "O": 4}, -20.5)]
    with pytest.raises(ValueError) as info:
        ReferenceEnergies.from_regression(samples)
    message = str(info.value)
    for phrase in ("underdetermined", "rank-deficient", "fixed_atomic_energies", "O, Ti", "fixed ratio",
                   "reference_compounds"):
        assert phrase in message
    fixed = ReferenceEnergies.from_regression(samples, fixed_atomic_energies={"O": -4.0})
    assert fixed.atomic_energies["Ti"] == pytest.approx((1 * -2.0 + 2 * -4.5) / 5)


def test_rank_deficient_names_only_the_tangled_species():
    samples = [({"Li": 1}, -2.0), ({"Ti": 1, "O": 2}, -10.0), ({"Li": 1, "Ti": 2, "O": 4}, -22.0)]
    with pytest.raises(ValueError, match=r"energies of O, Ti cannot be separated"):
        ReferenceEnergies.from_regression(samples)


def test_no_samples():
    with pytest.raises(ValueError, match="no samples"):
        ReferenceEnergies.from_regression([])


# --------------------------------------------------------------------------- validation

def test_integer_valued_counts_are_accepted():
    samples = [({"Ti": 2.0}, 2.0), ({"O": np.int64(2), "Li": 0}, 4.0), ({"Ti": 1, "O": 1.0}, np.float32(3.0))]
    result = ReferenceEnergies.from_regression(samples)
    assert result.atomic_energies == pytest.approx({"O": 2.0, "Ti": 1.0})
    assert result.metadata["species_order"] == ["O", "Ti"]  # the zero Li count is dropped


@pytest.mark.parametrize("bad, match", [
    (({"Ti": -1}, 1.0), r"sample 1: count of 'Ti' must be a non-negative integer; got -1"),
    (({"Ti": 2.5}, 1.0), r"sample 1: count of 'Ti' .* got 2.5"),
    (({"Ti": True}, 1.0), r"sample 1: count of 'Ti'"),
    (({"Ti": 1}, math.nan), r"sample 1: energy must be a finite number; got nan"),
    (({"Ti": 1}, math.inf), r"sample 1: energy .* got inf"),
    (({"Ti": 1}, "1.0"), r"sample 1: energy"),
    (({}, 1.0), r"sample 1: composition \{\} has no atoms"),
    (({"Ti": 0}, 1.0), r"sample 1: .* has no atoms"),
])
def test_invalid_samples_name_position_and_field(bad, match):
    with pytest.raises(ValueError, match=match):
        ReferenceEnergies.from_regression([({"Ti": 1}, 1.0), bad, ({"O": 1}, 1.0)])


@pytest.mark.parametrize("bad, match", [
    ((["Ti"], 1.0), r"sample 1: each sample composition must be a mapping"),
    (({"Ti": 1},), r"sample 1: each regression sample must be a \(composition, energy\) pair"),
])
def test_samples_of_the_wrong_type_raise_type_error_as_aenet_python(bad, match):
    with pytest.raises(TypeError, match=match):
        ReferenceEnergies.from_regression([({"Ti": 1}, 1.0), bad, ({"O": 1}, 1.0)])


# --------------------------------------------------------------------------- subsetting

@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_reservoir_subset_matches_documented_recipe(seed):
    samples = one_species_samples(30)
    stream = OnePass(samples)
    result = ReferenceEnergies.from_regression(stream, subset_size=7, random_seed=seed)
    chosen = [samples[i] for i in reservoir_indices(30, 7, seed)]
    assert result.atomic_energies == pytest.approx({next(iter(c)): e for c, e in chosen})
    metadata = result.metadata
    assert metadata["n_samples_total"] == 30 and metadata["n_samples_used"] == 7
    assert metadata["subset_size"] == 7 and metadata["subset_fraction"] is None and metadata["random_seed"] == seed
    assert stream.passes == 1


def test_reservoir_subset_is_deterministic_and_seed_dependent():
    samples = [({"Ti": 1 + i % 3, "O": 1 + i % 5}, float(i)) for i in range(40)]
    runs = [ReferenceEnergies.from_regression(iter(samples), subset_size=10, random_seed=seed) for seed in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0].atomic_energies != runs[2].atomic_energies
    expected, rmse = lstsq_fit([samples[i] for i in reservoir_indices(40, 10, 3)], ["O", "Ti"])
    assert runs[0].atomic_energies == pytest.approx(expected)
    assert runs[0].metadata["rmse"] == pytest.approx(rmse)


@pytest.mark.parametrize("fraction, k", [(0.25, 3), (0.3, 3), (0.31, 4), (0.01, 1), (1, 10)])
def test_subset_fraction_rounds_up(fraction, k):
    samples = one_species_samples(10)
    metadata = ReferenceEnergies.from_regression(samples, subset_fraction=fraction, random_seed=5).metadata
    assert metadata["subset_size"] == metadata["n_samples_used"] == k
    assert metadata["species_order"] == sorted(chemical_symbols[i + 1] for i in reservoir_indices(10, k, 5))
    assert metadata["subset_fraction"] == fraction


@pytest.mark.parametrize("options, match", [
    ({"subset_size": 2, "subset_fraction": 0.5}, "mutually exclusive"),
    ({"subset_size": 11}, r"subset size 11 exceeds the number of samples \(10\)"),
    ({"subset_size": 0}, "positive integer"),
    ({"subset_size": 2.0}, "positive integer"),
    ({"subset_fraction": 0}, r"\(0, 1\]"),
    ({"subset_fraction": 1.5}, r"\(0, 1\]"),
])
def test_invalid_subset_options(options, match):
    with pytest.raises(ValueError, match=match):
        ReferenceEnergies.from_regression(one_species_samples(10), **options)


def test_subset_fraction_needs_a_sized_collection():
    with pytest.raises(ValueError, match="sized collection.*subset_size"):
        ReferenceEnergies.from_regression(iter(one_species_samples(10)), subset_fraction=0.5)


def test_samples_are_streamed_once_without_subsetting():
    stream = OnePass(ORACLE)
    assert ReferenceEnergies.from_regression(stream).atomic_energies == pytest.approx({"O": 2.0, "Ti": 1.0})
    generator = iter(ORACLE)
    ReferenceEnergies.from_regression(generator)
    assert next(generator, None) is None


# --------------------------------------------------------------------------- samples from files

def structure(species, energy):
    return Structure(np.arange(3 * len(species), dtype=float).reshape(-1, 3), species, energy=energy)


def test_file_samples_from_xsf_and_multi_frame_extxyz(tmp_path):
    write_xsf(tmp_path / "a.xsf", structure(["Ti", "O", "O"], -10.0))
    write_extxyz(tmp_path / "b.extxyz", [structure(["Ti", "O"], -6.0), structure(["O", "O"], -8.0)])
    samples = list(iter_composition_energy_samples_from_files([tmp_path / "a.xsf", str(tmp_path / "b.extxyz")]))
    assert samples == [({"Ti": 1, "O": 2}, -10.0), ({"Ti": 1, "O": 1}, -6.0), ({"O": 2}, -8.0)]
    single = list(iter_composition_energy_samples_from_files(tmp_path / "b.extxyz", index="1"))
    assert single == [({"O": 2}, -8.0)]


def test_file_samples_are_read_lazily(tmp_path, monkeypatch):
    write_xsf(tmp_path / "a.xsf", structure(["Ti", "O"], -6.0))
    read = []
    original = ref_module.iter_structures
    monkeypatch.setattr(ref_module, "iter_structures", lambda path, **kw: read.append(path) or original(path, **kw))
    samples = iter_composition_energy_samples_from_files([tmp_path / "a.xsf", tmp_path / "missing.xsf"])
    assert read == []
    assert next(samples) == ({"Ti": 1, "O": 1}, -6.0)
    assert read == [tmp_path / "a.xsf"]
    with pytest.raises(FileNotFoundError, match="missing.xsf"):
        next(samples)


def test_frame_without_energy_names_file_and_frame(tmp_path):
    path = tmp_path / "frames.extxyz"
    write_extxyz(path, [structure(["Ti"], -1.0), structure(["Ti"], None)])
    with pytest.raises(ValueError, match=r"frames.extxyz: frame 1 has no energy"):
        ReferenceEnergies.from_regression(iter_composition_energy_samples_from_files(path))


def test_an_absurd_energy_names_file_and_frame_and_the_limits_given_apply(tmp_path):
    absurd, large = tmp_path / "absurd.extxyz", tmp_path / "large.extxyz"
    write_extxyz(absurd, [structure(["Ti", "O"], -6.0), structure(["O", "O"], -1e300)])
    write_extxyz(large, [structure(["Ti", "O"], -6.0), structure(["Ti"], -2e7)])
    with pytest.raises(ValueError, match=r"absurd.extxyz \(frame 1\): energy is -1e\+300 eV.*energy_limit"):
        ReferenceEnergies.from_regression(iter_composition_energy_samples_from_files([absurd, large]))
    with pytest.raises(ValueError, match=r"large.extxyz \(frame 1\): energy is -20000000.0 eV, -2e\+07 eV/atom"):
        list(iter_composition_energy_samples_from_files(large))
    samples = iter_composition_energy_samples_from_files(large, limits=PlausibilityLimits(energy_limit=1e8))
    assert list(samples) == [({"Ti": 1, "O": 1}, -6.0), ({"Ti": 1}, -2e7)]


# --------------------------------------------------------------------------- reference compounds

COMPOUND_SAMPLES = [({"Ti": 1, "O": 2}, -9.0), ({"Ti": 2, "O": 4}, -20.4), ({"Ti": 1, "O": 2}, -10.0),
                    ({"Ti": 1, "O": 1}, -6.0), ({"Ti": 1, "O": 2}, -9.5), ({"Li": 1}, -1.0)]


def test_reference_compounds_pick_lowest_energy_and_solve():
    stream = OnePass(COMPOUND_SAMPLES)
    result = ReferenceEnergies.from_reference_compounds(stream, reference_compounds=["TiO2", {"O": 1, "Ti": 1}])
    assert result.method == "reference_compounds" and stream.passes == 1
    # Ti + 2 O = -10 (lowest of three TiO2 cells; the Ti2O4 cell is no candidate), Ti + O = -6
    assert result.atomic_energies == pytest.approx({"O": -4.0, "Ti": -2.0})
    metadata = result.metadata
    assert list(metadata) == COMPOUND_KEYS
    assert metadata["n_reference_compounds"] == 2
    assert metadata["reference_compounds"] == [{"Ti": 1, "O": 2}, {"O": 1, "Ti": 1}]
    assert metadata["reference_candidate_counts"] == [3, 1]
    assert metadata["selected_reference_samples"] == [{"composition": {"O": 2, "Ti": 1}, "energy": -10.0},
                                                      {"composition": {"O": 1, "Ti": 1}, "energy": -6.0}]
    assert metadata["n_samples_total"] == 6
    assert metadata["rank"] == 2 and metadata["rmse"] == pytest.approx(0.0, abs=1e-12)


def test_formula_counts_are_absolute_and_repeats_summed():
    result = ReferenceEnergies.from_reference_compounds(COMPOUND_SAMPLES, reference_compounds=["Ti2O4", "OTiO"],
                                                        fixed_atomic_energies={"O": -4.0})
    assert result.metadata["reference_candidate_counts"] == [1, 3]
    # right-hand sides after fixing O: Ti2O4 -> 2 Ti = -20.4 + 16, TiO2 (lowest) -> Ti = -10 + 8
    assert result.atomic_energies["Ti"] == pytest.approx((2 * -4.4 + 1 * -2.0) / 5)
    assert result.metadata["free_species"] == ["Ti"]


@pytest.mark.parametrize("compounds, match", [
    (["TiO", "OTi"], r"'OTi' has the same composition as 'TiO'"),
    (["TiO2", {"O": 2, "Ti": 1, "Li": 0}], r"'O2Ti' has the same composition as 'TiO2'"),
    (["TiO2", "OTiO"], r"'OTiO' has the same composition as 'TiO2'"),
    (["TiO2", "Ti3O"], r"reference compound\(s\) Ti3O"),
    (["Ti(O2)"], r"'Ti\(O2\)' is not a valid formula"),
    (["tiO2"], r"'tiO2' is not a valid formula"),
    (["TiO2 "], r"'TiO2 ' is not a valid formula"),
    ([""], r"'' is not a valid formula"),
    (["Ti0"], r"'Ti0'.* has no atoms"),
    ([{"Ti": -1}], r"count of 'Ti' must be a non-negative integer"),
    ([], "empty"),
])
def test_invalid_reference_compounds(compounds, match):
    with pytest.raises(ValueError, match=match):
        ReferenceEnergies.from_reference_compounds(COMPOUND_SAMPLES, reference_compounds=compounds)


def test_reduced_formula_does_not_match_larger_cell():
    with pytest.raises(ValueError, match="reference compound\\(s\\) TiO2 "):
        ReferenceEnergies.from_reference_compounds([({"Ti": 2, "O": 4}, -20.0)], reference_compounds="TiO2")


# --------------------------------------------------------------------------- result object and JSON

def test_result_is_frozen_and_returns_copies():
    result = ReferenceEnergies.from_reference_compounds(COMPOUND_SAMPLES, reference_compounds=["TiO2", "TiO"])
    result.atomic_energies["O"] = 0.0
    result.metadata["selected_reference_samples"][0]["energy"] = 0.0
    assert result.atomic_energies["O"] == pytest.approx(-4.0)
    assert result.metadata["selected_reference_samples"][0]["energy"] == -10.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.method = "regression"
    with pytest.raises(ValueError, match="method"):
        ReferenceEnergies({"O": 1.0}, "average", {})


@pytest.mark.parametrize("make", [
    lambda: ReferenceEnergies.from_regression(ORACLE, subset_size=3, random_seed=2),
    lambda: ReferenceEnergies.from_reference_compounds(COMPOUND_SAMPLES, reference_compounds=["TiO2", "TiO"]),
])
def test_json_round_trip(tmp_path, make):
    result = make()
    path = tmp_path / "reference.json"
    result.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == "aenet_core.reference_energies" and data["version"] == 1
    assert data["method"] == result.method
    loaded = ReferenceEnergies.load(path)
    assert loaded == result
    assert loaded.metadata == result.metadata and loaded.atomic_energies == result.atomic_energies
    assert ReferenceEnergies.from_dict(result.to_dict()) == result


def test_numpy_values_become_plain_python():
    result = ReferenceEnergies({"O": np.float64(-4.0)}, "regression",
                               {"singular_values": np.array([2.0, 1.0]), "rank": np.int64(2), "pair": (1, 2)})
    data = result.to_dict()
    json.dumps(data, allow_nan=False)
    assert type(data["atomic_energies"]["O"]) is float and type(data["metadata"]["rank"]) is int
    assert data["metadata"]["singular_values"] == [2.0, 1.0] and data["metadata"]["pair"] == [1, 2]


def test_failed_save_keeps_previous_file(tmp_path):
    path = tmp_path / "reference.json"
    ReferenceEnergies.from_regression(ORACLE).save(path)
    before = path.read_text()
    with pytest.raises(ValueError):
        ReferenceEnergies({"O": 1.0}, "regression", {"rmse": math.nan}).save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["reference.json"]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        ReferenceEnergies.load(tmp_path / "missing.json")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": "aenet_core.reference_energies", ')
    with pytest.raises(ValueError, match=r"corrupt.json: not valid JSON"):
        ReferenceEnergies.load(corrupt)
    good = ReferenceEnergies.from_regression(ORACLE).to_dict()
    cases = {"metadata": ({k: v for k, v in good.items() if k != "metadata"}, r"missing key 'metadata'"),
             "format": ({**good, "format": "aenet.model"}, r"unsupported format 'aenet.model'"),
             "version": ({**good, "version": 2}, r"unsupported version 2"),
             "energies": ({**good, "atomic_energies": {"O": "x"}}, r"atomic_energies"),
             "empty": ({}, r"missing key 'format'"),
             "list": ([good], r"expected a JSON object; got list")}
    for name, (data, match) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        with pytest.raises(ValueError, match=rf"{name}.json: {match}"):
            ReferenceEnergies.load(path)


# --------------------------------------------------------------------------- TiO2 reference data

@pytest.fixture(scope="module")
def tio2_paths(shared_data):
    paths = sorted((shared_data / "TiO2").glob("*.xsf"))
    if not paths:
        pytest.skip("no TiO2 XSF files in the shared data")
    return paths


def test_tio2_regression(tio2_paths):
    result = ReferenceEnergies.from_regression(iter_composition_energy_samples_from_files(tio2_paths))
    samples = list(iter_composition_energy_samples_from_files(tio2_paths))
    metadata = result.metadata
    assert metadata["rank"] == 2 and metadata["species_order"] == ["O", "Ti"]
    assert metadata["n_samples_total"] == metadata["n_samples_used"] == len(samples) >= len(tio2_paths)
    expected, rmse = lstsq_fit(samples, ["O", "Ti"])
    assert result.atomic_energies == pytest.approx(expected, rel=1e-9)
    assert metadata["rmse"] == pytest.approx(rmse, rel=1e-9)
    # The cells are distorted/defective snapshots: energies at one composition scatter by ~15 eV, a floor no
    # composition-only model can beat.  The linear fit must come close to that floor.
    by_composition = {}
    for counts, energy in samples:
        by_composition.setdefault(frozenset(counts.items()), []).append(energy)
    floor = math.sqrt(sum(np.sum((np.array(e) - np.mean(e)) ** 2) for e in by_composition.values()) / len(samples))
    assert floor <= metadata["rmse"] <= 1.2 * floor
    n_atoms = np.array([sum(c.values()) for c, _ in samples])
    assert metadata["rmse"] / n_atoms.mean() < 1.0  # eV/atom
    # Bound relative to isolated atoms (aenet values for this data set), by ~10-30 eV per TiO2 unit.
    isolated = {"O": -432.503149303, "Ti": -1604.604515075}
    energies = result.atomic_energies
    assert energies["O"] < isolated["O"] and energies["Ti"] < isolated["Ti"]
    binding = energies["Ti"] + 2 * energies["O"] - isolated["Ti"] - 2 * isolated["O"]
    assert -30.0 < binding < -10.0


def test_tio2_reference_compounds(tio2_paths):
    samples = list(iter_composition_energy_samples_from_files(tio2_paths))
    result = ReferenceEnergies.from_reference_compounds(iter_composition_energy_samples_from_files(tio2_paths),
                                                        reference_compounds=["Ti8O16", "Ti8O15"])
    counts = Counter(frozenset(c.items()) for c, _ in samples)
    lowest = {key: min(e for c, e in samples if frozenset(c.items()) == key) for key in counts}
    ti8o16, ti8o15 = frozenset({"Ti": 8, "O": 16}.items()), frozenset({"Ti": 8, "O": 15}.items())
    metadata = result.metadata
    assert metadata["reference_candidate_counts"] == [counts[ti8o16], counts[ti8o15]]
    assert [s["energy"] for s in metadata["selected_reference_samples"]] == [lowest[ti8o16], lowest[ti8o15]]
    energies = result.atomic_energies
    assert energies["O"] == pytest.approx(lowest[ti8o16] - lowest[ti8o15])
    assert 8 * energies["Ti"] + 16 * energies["O"] == pytest.approx(lowest[ti8o16])
    assert metadata["rmse"] == pytest.approx(0.0, abs=1e-8)


def test_fixed_values_are_recorded_as_fixed_and_must_cover_every_species():
    samples = [({"Ti": 1, "O": 2}, -2000.0), ({"Ti": 2, "O": 4}, -4000.5)]
    values = {"Ti": -1604.6, "O": -432.5}
    result = ReferenceEnergies.from_fixed(samples, atomic_energies=values)
    assert result.method == "fixed" and result.atomic_energies == values
    assert result.metadata["free_species"] == [] and result.metadata["n_samples_used"] == 2
    residuals = [e - sum(n * values[s] for s, n in counts.items()) for counts, e in samples]
    assert result.metadata["rmse"] == pytest.approx(math.sqrt(np.mean(np.square(residuals))))
    assert ReferenceEnergies.from_dict(result.to_dict()).method == "fixed"
    with pytest.raises(ValueError, match="no value for O, which the samples contain"):
        ReferenceEnergies.from_fixed(samples, atomic_energies={"Ti": -1604.6})
