"""The workflow's closing summary and failure report (aenet_core.workflow.summary), from files as the rules write them."""
import json
import subprocess
import sys

from aenet_core.workflow.summary import failure_report, log_tail, workflow_summary

EVALUATION = {"split": "test", "n_structures": 9, "num_members": 2, "energy_rmse_per_atom": 0.0123,
              "energy_mae_per_atom": 0.0101, "force_rmse": 0.456, "stress_rmse_gpa": 1.5,
              "calibration_factor": 2.5, "cross_validated_normalized_error_rms": 0.97,
              "largest_energy_error": {"identifier": "data/TiO2/structure-082.xsf#frame=0", "error_per_atom": -1.53}}


def write_target(target, evaluation=EVALUATION, warnings=(), status="completed"):
    (target / "evaluation").mkdir(parents=True)
    (target / "evaluation" / "summary.json").write_text(json.dumps({**evaluation, "warnings": list(warnings)}))
    for member in ("member_000", "member_001"):
        (target / "committee" / member).mkdir(parents=True)
        summary = {"status": status, "error": "ValueError: diverged"}
        (target / "committee" / member / "summary.json").write_text(json.dumps(summary))
        (target / "ascii" / member).mkdir(parents=True)


def test_a_run_shows_its_errors_with_units_its_calibration_and_its_files(tmp_path):
    write_target(tmp_path / "tio2", warnings=["test force RMSE 2.85 eV/Å is close to predicting zero forces"])
    text = workflow_summary(tmp_path, {"tio2": None})
    assert "Run tio2" in text
    assert "energy RMSE 12.3 meV/atom (MAE 10.1)" in text and "force RMSE 0.456 eV/Å" in text
    assert "stress RMSE 1.5 GPa" in text and "committee spread x 2.5" in text and "0.97" in text
    assert "largest error   -1530 meV/atom, data/TiO2/structure-082.xsf#frame=0" in text
    assert f"{tmp_path / 'tio2' / 'ascii'}/member_*/ (2 members" in text
    assert "LAMMPS          not checked\n" in text
    assert f"its input lines: aenet-core lammps-input {tmp_path / 'tio2'}\n" in text
    assert text.count("WARNING") == 1 and "close to predicting zero forces" in text and "train longer" in text
    assert "Report with every figure: snakemake --report report.html (then" in text
    own = workflow_summary(tmp_path, {"tio2": None}, ["my runs/tio2.yaml"])
    assert "snakemake --report report.html --configfile 'my runs/tio2.yaml' (then" in own


def test_failed_members_are_named_and_unfinished_runs_left_out(tmp_path):
    write_target(tmp_path / "done", status="failed")
    text = workflow_summary(tmp_path, {"done": None, "not_run": None})
    assert "member_000 failed: ValueError: diverged" in text and "not_run" not in text
    assert workflow_summary(tmp_path, {"not_run": None}) == ""


def test_a_loop_shows_one_line_per_round_and_its_last_committee(tmp_path):
    for k, rmse in enumerate((0.05, 0.03)):
        write_target(tmp_path / "cuau" / f"round_{k:02d}", {**EVALUATION, "energy_rmse_per_atom": rmse})
        record = {"round": k, "n_labelled": 6 * k, "n_failed": 0, "n_trajectories": 4 * k, "n_hit_trust_hi": k,
                  "test_energy_rmse_per_atom": rmse, "test_force_rmse": 0.2}
        (tmp_path / "cuau" / f"round_{k:02d}" / "summary.json").write_text(json.dumps(record))
    text = workflow_summary(tmp_path, {"cuau": {"rounds": 2}})
    assert "Run cuau, active learning (round 1 of 2)" in text
    rows = [line.split() for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert rows == [["0", "0", "0", "50", "0.2", "-"], ["1", "6", "0", "30", "0.2", "1/4"]]
    assert "round_01" in text and "round_00/ascii" not in text


def test_a_loop_that_stopped_by_itself_says_why_and_which_committee_is_its_result(tmp_path):
    write_target(tmp_path / "cuau" / "round_00", EVALUATION)
    records = [{"round": 0, "decision": "trained", "reason": "round 0 trains on the run's sources",
                "test_energy_rmse_per_atom": 0.05},
               {"round": 1, "decision": "stopped", "reason": "converged: 95% of 40 explored frames below trust_lo",
                "n_trajectories": 4, "n_hit_trust_hi": 0}]
    for record in records:
        folder = tmp_path / "cuau" / f"round_{record['round']:02d}"
        folder.mkdir(exist_ok=True)
        (folder / "summary.json").write_text(json.dumps(record))
    text = workflow_summary(tmp_path, {"cuau": {"max_rounds": 5}})
    assert ("Run cuau, active learning: stopped in round 1 of at most 5 (converged: 95% of 40 explored frames "
            "below trust_lo); the result is round 0's committee") in text
    assert "stopped: converged" in text.splitlines()[3]
    records[1] |= {"decision": "trained", "reason": "went on"}
    (tmp_path / "cuau/round_01/summary.json").write_text(json.dumps(records[1]))
    write_target(tmp_path / "cuau" / "round_01", EVALUATION)
    assert "round 1 of at most 1; max_rounds reached" in workflow_summary(tmp_path, {"cuau": {"max_rounds": 1}})


def test_a_failed_job_shows_the_line_its_command_ended_with(tmp_path):
    log = tmp_path / "build_database.log"
    log.write_text("building database.h5: 40 structures\nTraceback (most recent call last):\n  File x\n"
                   "ValueError: species ['O'] are not in the descriptor species ['Ti']\n"
                   "aenet-core build-database failed: species ['O'] are not in the descriptor species ['Ti']\n")
    assert log_tail(log) == ["aenet-core build-database failed: species ['O'] are not in the descriptor species "
                             "['Ti']"]
    text = failure_report([("build_database", "db=abc", [str(log)])])
    assert text.startswith("1 job failed:") and "build_database (db=abc)" in text and "Traceback" not in text


def test_without_that_line_the_end_of_the_log_is_shown(tmp_path):
    log = tmp_path / "label.log"
    log.write_text("\n".join(f"line {i}" for i in range(20)) + "\nKilled\n")
    assert log_tail(log) == [f"line {i}" for i in range(13, 20)] + ["Killed"]
    assert log_tail(tmp_path / "missing.log")[0].startswith("(log unreadable")
    assert failure_report([]) == ""


def test_the_summary_imports_no_torch():
    code = "import sys, aenet_core.workflow.summary; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_the_lammps_check_is_reported_with_its_differences_or_why_it_did_not_run(tmp_path):
    checked = {"checked": True, "agrees": True, "n_structures": 9, "max_energy_difference_per_atom": 2.2e-13,
               "max_force_difference": 3.1e-13, "max_force_std_difference": 1e-14, "tolerance": 1e-8}
    write_target(tmp_path / "tio2", evaluation={**EVALUATION, "lammps_check": checked})
    assert "pair style aenet/core matches to 2e-13 eV/atom, 3e-13 eV/Å (9 test structures)" in \
        workflow_summary(tmp_path, {"tio2": None})
    skipped = {"checked": False, "reason": "the aenet/core LAMMPS plugin is not built"}
    write_target(tmp_path / "other", evaluation={**EVALUATION, "lammps_check": skipped})
    assert "LAMMPS          not checked: the aenet/core LAMMPS plugin is not built" in \
        workflow_summary(tmp_path, {"other": None})
