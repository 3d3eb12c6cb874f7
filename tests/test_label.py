"""Labelling with an ASE calculator named by import path: the labels are the calculator's, a failed attempt
is retried with overrides, a failed, crashed or hung calculation fails only its frame and is recorded and left
out, finished calculations are kept for a rerun; merge-labels stops above a fraction of failed frames."""
import json
import logging
import re
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from aenet_core.active_learning.calculators import calculator_class
from aenet_core.active_learning.label import _moved, label_frames, labelling_report
from aenet_core.active_learning.trajectory import write_trajectory
from aenet_core.cli import main
from aenet_core.data.limits import PlausibilityLimits
from aenet_core.data.plausibility import geometry_problem
from aenet_core.files import file_sha256
from aenet_core.structure import Structure
from aenet_core.workflow.integrity import damaged_labels
from al_calculators import log_call


class CountingEMT(EMT):
    """EMT that logs its calculations (tests.al_calculators.log_call) and fails for frames named 'bad'."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        log_call(self, atoms)
        if atoms.info.get("name") == "bad":
            raise RuntimeError("did not converge")
        super().calculate(atoms, properties, system_changes)


def calls(workdir) -> list:
    path = Path(workdir) / "calls.txt"
    return path.read_text().split() if path.exists() else []


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
    (tmp_path / "calls.txt").unlink()
    again, records = label_frames(frames(), f"{__name__}.CountingEMT", {}, tmp_path)
    assert calls(tmp_path) == ["bad"] and [r["reused"] for r in records] == [True, False, True]
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


def test_an_empty_batch_labels_nothing(tmp_path):
    assert label_frames([], "ase.calculators.emt.EMT", {}, tmp_path) == ([], [])


def test_a_molecule_gets_no_stress(tmp_path):
    water = Structure.from_ase(molecule("CO"), name="co")
    labelled, _ = label_frames([water], "ase.calculators.emt.EMT", {}, tmp_path)
    assert labelled[0].stress is None and labelled[0].forces.shape == (2, 3)


@pytest.mark.parametrize("path, message", [
    ("EMT", "expected an import path"),
    ("no_such_module.EMT", "cannot import no_such_module"),
    ("ase.calculators.emt.NoSuch", "ase.calculators.emt has no class NoSuch"),
    ("subprocess.run", r"run is a function, not a class \(expected an ASE calculator class: a subclass of "
                       r"ase.calculators.calculator.BaseCalculator\)"),
    ("ase.atoms.Atoms", "Atoms is a class but not an ASE calculator"),
])
def test_a_calculator_that_cannot_be_imported_is_named(path, message):
    with pytest.raises(ValueError, match=message):
        calculator_class(path)


def test_a_failed_attempt_is_retried_with_each_override_in_turn(tmp_path):
    """mixing 0.5 raises, 0.3 gives implausible labels (a failed attempt too), 0.1 labels the frame."""
    retries = [{"mixing": 0.3}, {"mixing": 0.1}]
    labelled, records = label_frames(frames()[:1], "al_calculators.RetriedEMT", {"mixing": 0.5}, tmp_path,
                                     retries=retries)
    assert labelled[0].energy == pytest.approx(reference(frames()[0])[0], abs=1e-12)
    attempts = records[0]["attempts"]
    assert [a["overrides"] for a in attempts] == [{}, *retries]
    assert attempts[0]["error"] == "RuntimeError: SCF did not converge with mixing 0.5"
    assert attempts[1]["error"].startswith("ValueError: cu: energy is") and "(energy_limit)" in attempts[1]["error"]
    assert attempts[2]["error"] is None and all(a["seconds"] >= 0 for a in attempts)
    assert (records[0]["status"], records[0]["error"]) == ("labelled", None)
    assert labelling_report(records, "x.Y", {"mixing": 0.5}, retries)["retries"] == retries
    (tmp_path / "calls.txt").unlink()
    _, again = label_frames(frames()[:1], "al_calculators.RetriedEMT", {"mixing": 0.5}, tmp_path,
                            retries=retries)
    assert calls(tmp_path) == [] and again[0]["reused"] and again[0]["attempts"] == attempts
    # without the retry that labelled it, a rerun would not have labelled it: calculated again
    _, fewer = label_frames(frames()[:1], "al_calculators.RetriedEMT", {"mixing": 0.5}, tmp_path,
                            retries=retries[:1])
    assert (fewer[0]["status"], len(fewer[0]["attempts"]), calls(tmp_path)) == ("failed", 2, ["cu", "cu"])


def renamed(names) -> list:
    structure = frames()[0]
    return [Structure.from_ase(structure.to_ase(), name=name) for name in names]


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in "ZX"


def test_a_crashing_exiting_or_hanging_calculation_fails_only_its_frame(tmp_path):
    names = ["cu", "abort", "exit", "stop", "hang", "cu2"]
    started = time.perf_counter()
    labelled, records = label_frames(renamed(names), "al_calculators.MisbehavingEMT", {}, tmp_path, timeout=1)
    assert time.perf_counter() - started < 10
    assert [s.name for s in labelled] == ["cu", "cu2"]
    assert [r["error"] for r in records] == [
        None, "the calculation process died with signal 6 (SIGABRT)", "SystemExit: 3",
        "the calculation process exited with status 7 without a result", "timed out after 1 s", None]
    assert calls(tmp_path) == names
    sleep = int((tmp_path / "sleep.pid").read_text())  # what the hung calculation started was killed with it
    deadline = time.monotonic() + 5
    while running(sleep) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(sleep)
    assert not any((tmp_path / f"frame_{i:04d}.json").exists() for i in (1, 2, 3, 4))  # failures are not kept


def write_selected(path, names) -> Path:
    write_trajectory(path, [structure.to_ase() for structure in renamed(names)])
    return path


def test_label_and_merge_labels_stop_above_the_failed_fraction_naming_each_failure(tmp_path, capsys):
    selected = write_selected(tmp_path / "selected.extxyz", ["cu", "cu2", "abort", "hang"])
    settings = tmp_path / "calculator.yaml"
    settings.write_text("calculator: al_calculators.RetriedEMT\nkwargs: {mixing: 0.5}\n"
                        "retries: [{mixing: 0.1}]\n")
    batches = [tmp_path / f"batch_{batch}" for batch in (0, 1)]
    calculators = [["--calculator-settings", str(settings)], ["--calculator", "al_calculators.MisbehavingEMT"]]
    for batch, calculator in zip(batches, calculators):
        main(["label", str(selected), "--batch", batch.name[-1], "--batch-size", "2", *calculator, "--timeout", "1",
              "--workdir", str(batch.with_suffix(".work")), "--output", str(batch.with_suffix(".extxyz")),
              "--report", str(batch.with_suffix(".json"))])
    first = json.loads(batches[0].with_suffix(".json").read_text())
    assert first["retries"] == [{"mixing": 0.1}] and [len(r["attempts"]) for r in first["frames"]] == [2, 2]
    assert "failed: hang after 1 attempt(s): timed out after 1 s" in capsys.readouterr().out
    merged = [tmp_path / "labelled.extxyz", tmp_path / "labelling.json"]
    merge = ["merge-labels", *[str(b.with_suffix(".extxyz")) for b in batches], "--reports",
             *[str(b.with_suffix(".json")) for b in batches], "--output", str(merged[0]), "--report", str(merged[1])]
    with pytest.raises(SystemExit) as stop:
        main(merge)  # the default limit, 0.25
    errors = capsys.readouterr().err.splitlines()
    report = batches[1].with_suffix(".json")
    assert stop.value.code == 1 and not any(path.exists() for path in merged)
    assert f"{report}: frame 2 (abort): the calculation process died with signal 6 (SIGABRT)" in errors
    assert f"{report}: frame 3 (hang): timed out after 1 s" in errors
    assert errors[-1].startswith("aenet-core merge-labels failed: 2 of 4 frames failed to label (50.0%), more than "
                                 "--max-failed-fraction 0.25 (the workflow's active_learning.label.max_failed_fraction)")
    assert (f"Most common errors: the calculation process died with signal 6 (SIGABRT) (1x); timed out after 1 s (1x). "
            f"Each failed frame is listed above, from {report}") in errors[-1]
    main([*merge, "--max-failed-fraction", "0.5"])  # at the limit
    assert [atoms.info["name"] for atoms in ase.io.read(merged[0], ":")] == ["cu", "cu2"]
    assert json.loads(merged[1].read_text())["n_failed"] == 2


LABEL = ["label", "s.extxyz", "--batch", "0", "--batch-size", "1", "--calculator", "a.B", "--workdir", "w", "--output",
         "o", "--report", "r"]


@pytest.mark.parametrize("argv, message", [
    ([*LABEL, "--timeout", "0"], "expected a positive number of seconds; got '0'"),
    (["merge-labels", "--output", "o", "--report", "r", "--max-failed-fraction", "1.5"],
     "expected a fraction from 0 to 1; got '1.5'"),
])
def test_a_timeout_or_fraction_out_of_range_is_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


def test_retries_that_are_not_a_list_of_mappings_are_refused(tmp_path, capsys):
    settings = tmp_path / "calculator.yaml"
    settings.write_text("calculator: ase.calculators.emt.EMT\nretries: {mixing: 0.1}\n")
    selected = write_selected(tmp_path / "selected.extxyz", ["cu"])
    with pytest.raises(SystemExit):
        main(["label", str(selected), "--batch", "0", "--batch-size", "1", "--calculator-settings", str(settings),
              "--workdir", "w", "--output", "o", "--report", "r"])
    assert "expected retries to be a list of mappings" in capsys.readouterr().err.splitlines()[-1]


def test_a_frame_whose_geometry_the_database_would_refuse_fails_without_a_calculation(tmp_path):
    close, dense = frames()[0], frames()[0]
    close.name, dense.name = "close", "dense"
    close.positions[1] = close.positions[0] + [0.3, 0, 0]
    dense.positions, dense.cell = dense.positions / 10, dense.cell / 10  # written in nm, read as Å
    batch = [close, frames()[0], dense]
    labelled, records = label_frames(batch, f"{__name__}.CountingEMT", {}, tmp_path, cutoff=6.0)
    assert [s.name for s in labelled] == ["cu"] and calls(tmp_path) == ["cu"]
    assert [(r["status"], r["attempts"]) for r in records[::2]] == [("failed", [])] * 2
    assert records[0]["error"] == geometry_problem(close, "close", 6.0, PlausibilityLimits())
    assert records[0]["error"].startswith("close: atoms 0 (Cu) and 1 (Cu) are 0.3 Å apart; closer than 0.5 Å")
    assert records[2]["error"].startswith("dense: 8 atoms at") and "(max_pairs_per_atom)" in records[2]["error"]
    _, records = label_frames(batch, f"{__name__}.CountingEMT", {}, tmp_path / "lenient", cutoff=6.0,
                              limits=PlausibilityLimits(min_distance=0.2, max_pairs_per_atom=1e6))
    assert [r["status"] for r in records[:2]] == ["labelled"] * 2 and records[2]["attempts"]  # calculated


@pytest.mark.parametrize("in_place", [True, False], ids=["its-atoms", "a-copy"])
def test_a_calculator_that_moves_the_atoms_labels_nothing(tmp_path, in_place):
    """A relaxation before the labels are reported (VASP with ibrion > -1 and nsw > 0) labels another geometry:
    refused, whether it moved the Atoms it was given or only its own (calc.atoms)."""
    labelled, records = label_frames(frames()[:1], "al_calculators.RelaxingEMT", {"in_place": in_place}, tmp_path)
    assert labelled == [] and records[0]["status"] == "failed"
    assert re.fullmatch(r"RuntimeError: the calculator moved the atoms by up to 0\.0\d+ Å: its labels belong to "
                        r"another geometry; a relaxation does that \(VASP: ibrion > -1 with nsw > 0; set nsw 0 or "
                        r"ibrion -1\)", records[0]["error"])
    outside = frames()[0]
    outside.positions[1] += outside.cell[0]  # wrapped back into the cell by the calculator: the same geometry
    labelled, records = label_frames([outside], "al_calculators.RelaxingEMT", {"steps": 0}, tmp_path / "wrapped")
    assert records[0]["status"] == "labelled" and labelled[0].energy == pytest.approx(reference(frames()[0])[0])
    np.testing.assert_array_equal(labelled[0].positions, outside.positions)
    strained, boxed = outside.to_ase(), molecule("CO")
    strained.set_cell(strained.cell * 1.01)
    assert _moved(outside.to_ase(), strained) == "changed the cell"  # VASP with isif 3
    boxed.cell = [10, 10, 10]  # a box around a molecule is none of its geometry
    assert _moved(molecule("CO"), boxed) is None


def test_label_logs_its_calculator_and_merge_labels_merges_only_what_label_wrote(tmp_path, capsys):
    selected = write_selected(tmp_path / "selected.extxyz", ["cu", "cu2", "cu3"])
    settings = tmp_path / "calculator.yaml"
    settings.write_text("calculator: al_calculators.RetriedEMT\nkwargs: {mixing: 0.1}\nretries: [{mixing: 0.05}]\n")
    batches = [tmp_path / f"batch_{batch}" for batch in (0, 1)]
    for batch in batches:
        main(["label", str(selected), "--batch", batch.name[-1], "--batch-size", "2", "--calculator-settings",
              str(settings), "--workdir", str(batch.with_suffix(".work")), "--output", str(batch.with_suffix(".extxyz")),
              "--report", str(batch.with_suffix(".json"))])
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["calculator: al_calculators.RetriedEMT", 'kwargs: {"mixing": 0.1}', 'retries: [{"mixing": 0.05}]']
    labelled = [b.with_suffix(".extxyz") for b in batches]
    assert json.loads(batches[0].with_suffix(".json").read_text())["labelled_sha256"] == file_sha256(labelled[0])
    merged, report = tmp_path / "labelled.extxyz", tmp_path / "labelling.json"
    merge = ["merge-labels", *map(str, labelled), "--reports", *[str(b.with_suffix(".json")) for b in batches],
             "--output", str(merged), "--report", str(report)]
    original = labelled[1].read_text()
    labelled[1].write_text(original.replace("cu3", "cu4"))  # edited by hand
    with pytest.raises(SystemExit):
        main(merge)
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        f"aenet-core merge-labels failed: {labelled[1]} is not the file its label job wrote (not the sha256 "
        f"{batches[1].with_suffix('.json')} records): edited after labelling?")
    assert not merged.exists()
    labelled[1].write_text(original)
    main(merge)
    assert json.loads(report.read_text())["labelled_sha256"] == file_sha256(merged)
    assert damaged_labels(merged, report) == []
    merged.write_text(merged.read_text().replace("cu3", "cu4"))
    assert damaged_labels(merged, report) == [(merged, "deleted or not the sha256 labelling.json records",
                                               "merge_labels")]
    merged.unlink()
    assert damaged_labels(merged, report)[0][1] == "deleted or not the sha256 labelling.json records"
    report.write_text("{")
    assert damaged_labels(merged, report) == [(report, "labelling.json does not read as JSON", "merge_labels")]
    assert damaged_labels(merged, tmp_path / "none.json") == []  # not merged yet


def test_label_takes_the_runs_limits_and_the_descriptors_cutoff(tmp_path):
    selected = write_selected(tmp_path / "selected.extxyz", ["cu"])
    common = ["label", str(selected), "--batch", "0", "--batch-size", "1", "--calculator", "ase.calculators.emt.EMT",
              "--output", str(tmp_path / "o.extxyz"), "--report", str(tmp_path / "r.json")]
    main([*common, "--workdir", str(tmp_path / "w1"), "--cutoff", "6", "--max-pairs-per-atom", "10"])
    (record,) = json.loads((tmp_path / "r.json").read_text())["frames"]
    assert record["status"] == "failed" and "(max_pairs_per_atom)" in record["error"]
    main([*common, "--workdir", str(tmp_path / "w2"), "--force-limit", "1e-9", "--min-distance", "3"])
    (record,) = json.loads((tmp_path / "r.json").read_text())["frames"]
    assert record["error"].startswith("cu: atoms") and "closer than 3 Å" in record["error"]
