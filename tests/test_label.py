"""Labelling with an ASE calculator named by import path: the labels are the calculator's, failures are
recorded and left out, finished calculations are kept for a rerun."""
import logging

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from aenet_core.active_learning.calculators import calculator_class
from aenet_core.active_learning.label import label_frames, labelling_report
from aenet_core.data.limits import PlausibilityLimits
from aenet_core.structure import Structure

CALLS = []


class CountingEMT(EMT):
    """EMT that counts its calculations and fails for frames named 'bad'."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        CALLS.append(atoms.info.get("name"))
        if atoms.info.get("name") == "bad":
            raise RuntimeError("did not converge")
        super().calculate(atoms, properties, system_changes)


def frames():
    crystal = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    crystal.rattle(0.05, seed=1)
    alloy = crystal.copy()
    alloy.symbols[[0, 3]] = "Au"
    return [Structure.from_ase(crystal, name="cu"), Structure.from_ase(alloy, name="bad"),
            Structure.from_ase(alloy, name="cuau")]


def reference(structure):
    atoms = structure.to_ase()
    atoms.calc = EMT()
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)


def test_the_labels_are_the_calculators_and_a_failure_is_recorded_and_left_out(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="aenet_core")
    labelled, records = label_frames(frames(), f"{__name__}.CountingEMT", {}, tmp_path, first_index=10)
    progress = [record.getMessage() for record in caplog.records if record.getMessage().startswith("labelling: ")]
    assert [line.split(" | ")[0] for line in progress] == ["labelling: 1/3 frames (33 %)",
                                                            "labelling: 2/3 frames (67 %)",
                                                            "labelling: 3/3 frames (100 %)"]
    assert "cuau: labelled in" in progress[2] and ": failed in" in progress[1]
    assert [s.name for s in labelled] == ["cu", "cuau"]
    for structure, original in zip(labelled, [frames()[0], frames()[2]]):
        energy, forces, stress = reference(original)
        assert structure.energy == pytest.approx(energy, abs=1e-12)
        np.testing.assert_allclose(structure.forces, forces, atol=1e-12)
        np.testing.assert_allclose(structure.stress, stress, atol=1e-12)
        np.testing.assert_array_equal(structure.positions, original.positions)
    assert [r["index"] for r in records] == [10, 11, 12]
    assert [r["status"] for r in records] == ["labelled", "failed", "labelled"]
    assert records[1]["error"] == "RuntimeError: did not converge"
    report = labelling_report(records, "x.Y", {"a": 1})
    assert (report["n_labelled"], report["n_failed"], report["n_frames"]) == (2, 1, 3)


def test_a_rerun_reuses_finished_calculations_and_retries_failures(tmp_path):
    label_frames(frames(), f"{__name__}.CountingEMT", {}, tmp_path)
    CALLS.clear()
    again, records = label_frames(frames(), f"{__name__}.CountingEMT", {}, tmp_path)
    assert CALLS == ["bad"] and [r["reused"] for r in records] == [True, False, True]
    first, _ = label_frames(frames(), f"{__name__}.CountingEMT", {}, tmp_path / "fresh")
    assert [s.energy for s in again] == [s.energy for s in first]
    moved = frames()
    moved[0].positions[0, 0] += 0.01  # another geometry: calculated, not reused
    _, records = label_frames(moved, f"{__name__}.CountingEMT", {}, tmp_path)
    assert records[0]["reused"] is False
    _, records = label_frames(frames(), f"{__name__}.CountingEMT", {"asap_cutoff": False}, tmp_path)
    assert records[0]["reused"] is False  # other calculator settings: calculated again


def test_implausible_labels_are_a_failed_frame(tmp_path):
    _, records = label_frames(frames()[:1], "ase.calculators.emt.EMT", {}, tmp_path,
                              limits=PlausibilityLimits(force_limit=1e-6))
    assert records[0]["status"] == "failed" and "force_limit" in records[0]["error"]


def test_a_molecule_gets_no_stress(tmp_path):
    water = Structure.from_ase(molecule("CO"), name="co")
    labelled, _ = label_frames([water], "ase.calculators.emt.EMT", {}, tmp_path)
    assert labelled[0].stress is None and labelled[0].forces.shape == (2, 3)


@pytest.mark.parametrize("path, message", [
    ("EMT", "expected an import path"),
    ("no_such_module.EMT", "cannot import no_such_module"),
    ("ase.calculators.emt.NoSuch", "ase.calculators.emt has no class or function NoSuch"),
])
def test_a_calculator_that_cannot_be_imported_is_named(path, message):
    with pytest.raises(ValueError, match=message):
        calculator_class(path)
