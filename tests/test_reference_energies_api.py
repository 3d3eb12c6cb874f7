"""aenet-python's reference-energy interface: constructor order, the file-sample signature, metadata shapes and
exception types (values observed with aenet-python on the same samples)."""
import dataclasses
import inspect

import numpy as np
import pytest

from aenet_core.data import PlausibilityLimits
from aenet_core.io import write_extxyz
from aenet_core.reference_energies import ReferenceEnergies, iter_composition_energy_samples_from_files
from aenet_core.structure import Structure

SAMPLES = [({"A": 2}, 2.0), ({"B": 2}, 4.0), ({"A": 1, "B": 1}, 3.0), ({"A": 2, "B": 1}, 4.0), ({"A": 2}, 1.5)]


def test_dataclass_fields_in_aenet_python_order():
    assert [f.name for f in dataclasses.fields(ReferenceEnergies)] == ["_atomic_energies", "method", "_metadata"]
    result = ReferenceEnergies({"O": -4.0}, "regression")
    assert result.atomic_energies == {"O": -4.0} and result.method == "regression" and result.metadata == {}
    assert "_metadata" not in repr(result)


def test_file_sample_signature():
    params = inspect.signature(iter_composition_energy_samples_from_files).parameters
    assert [(p.name, p.kind.name, p.default) for p in params.values()] == [
        ("paths", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty), ("frmt", "KEYWORD_ONLY", None),
        ("read_kwargs", "VAR_KEYWORD", inspect.Parameter.empty)]


def test_reference_compound_metadata_has_aenet_python_shapes():
    result = ReferenceEnergies.from_reference_compounds(SAMPLES, reference_compounds=["A2", {"B": 2}])
    assert result.atomic_energies == pytest.approx({"A": 0.75, "B": 2.0})
    assert result.metadata == {
        "species_order": ["A", "B"], "fixed_atomic_energies": {}, "free_species": ["A", "B"], "n_samples_total": 5,
        "n_reference_compounds": 2, "reference_compounds": [{"A": 2}, {"B": 2}], "reference_candidate_counts": [2, 1],
        "selected_reference_samples": [{"composition": {"A": 2}, "energy": 1.5},
                                       {"composition": {"B": 2}, "energy": 4.0}],
        "rank": 2, "residual_sum_squares": 0.0, "rmse": 0.0, "singular_values": [2.0, 2.0]}


@pytest.mark.parametrize("kwargs, subset", [({"subset_size": 3}, (3, None)), ({"subset_fraction": 0.5}, (3, 0.5))])
def test_regression_metadata_has_aenet_python_shapes(kwargs, subset):
    metadata = ReferenceEnergies.from_regression(SAMPLES, random_seed=1, **kwargs).metadata
    assert list(metadata) == ["species_order", "fixed_atomic_energies", "free_species", "n_samples_total",
                              "n_samples_used", "subset_size", "subset_fraction", "random_seed", "rank",
                              "residual_sum_squares", "rmse", "singular_values"]
    assert (metadata["subset_size"], metadata["subset_fraction"]) == subset
    assert metadata["n_samples_total"] == 5 and metadata["n_samples_used"] == 3 and metadata["random_seed"] == 1
    # aenet-python draws the same reservoir for this seed: these singular values
    assert metadata["singular_values"] == pytest.approx([3.1795868015587256, 0.9435188240589352])


def test_fixed_regression_metadata_matches_aenet_python():
    metadata = ReferenceEnergies.from_regression(SAMPLES, fixed_atomic_energies={"A": 1}).metadata
    assert metadata["fixed_atomic_energies"] == {"A": 1.0} and metadata["free_species"] == ["B"]
    assert metadata["rank"] == 1 and metadata["subset_size"] is None and metadata["random_seed"] is None
    assert metadata["residual_sum_squares"] == pytest.approx(0.25)
    assert metadata["singular_values"] == pytest.approx([np.sqrt(6)])


@pytest.mark.parametrize("call, error", [
    (lambda: ReferenceEnergies.from_regression([(["A"], 1.0)]), TypeError),
    (lambda: ReferenceEnergies.from_regression([({"A": 1}, 1.0, 2.0)]), TypeError),
    (lambda: ReferenceEnergies.from_reference_compounds(SAMPLES, reference_compounds=[7]), TypeError),
    (lambda: ReferenceEnergies.from_reference_compounds(SAMPLES, reference_compounds=["A2", "A2"]), ValueError),
    (lambda: ReferenceEnergies.from_reference_compounds(SAMPLES, reference_compounds=["A3"]), ValueError),
    (lambda: ReferenceEnergies.from_reference_compounds([], reference_compounds=["A2"]), ValueError),
    (lambda: ReferenceEnergies.from_regression([({"A": 1.5}, 1.0)]), ValueError),
    (lambda: ReferenceEnergies({"A": float("nan")}, "regression"), ValueError),
])
def test_exception_types_match_aenet_python(call, error):
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error


def test_missing_compound_names_label_and_composition():
    with pytest.raises(ValueError, match=r"Missing requested reference compounds .*\[\{'A': 3\}\].* reference compound\(s\) A3"):
        ReferenceEnergies.from_reference_compounds(SAMPLES, reference_compounds=["A3"])


def test_frmt_and_read_kwargs_reach_the_reader_and_limits_stay_ours(tmp_path):
    path = tmp_path / "frames.data"  # an extension nothing guesses: frmt decides
    write_extxyz(path, [Structure(np.zeros((1, 3)), ["Ti"], energy=-2e7),
                        Structure([[0, 0, 0], [1, 1, 1]], ["O", "O"], energy=-8.0)])
    samples = iter_composition_energy_samples_from_files(path, frmt="extxyz", index="1")
    assert list(samples) == [({"O": 2}, -8.0)]
    with pytest.raises(ValueError, match="energy_limit"):
        list(iter_composition_energy_samples_from_files(path, frmt="extxyz"))
    lenient = PlausibilityLimits(energy_limit=1e8)
    samples = iter_composition_energy_samples_from_files([path], frmt="extxyz", limits=lenient)
    assert list(samples) == [({"Ti": 1}, -2e7), ({"O": 2}, -8.0)]
