"""What the workflow prints when it ends: per run, the committee's test errors, its calibration, warnings
and where the files are; when a job failed, why (the end of its log).  Torch-free: Snakemake's own process
runs this (onsuccess, onerror)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from aenet_core.baselines import ADVICE
from aenet_core.command_line import FAILURE_LINE

LOG_TAIL_LINES = 8


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _number(value, scale=1.0) -> str:
    """Three significant digits, without an exponent up to 10^6 ('n/a' for None)."""
    if value is None:
        return "n/a"
    value *= scale
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _errors_line(evaluation: dict) -> str:
    parts = [f"energy RMSE {_number(evaluation.get('energy_rmse_per_atom'), scale=1000)} meV/atom "
             f"(MAE {_number(evaluation.get('energy_mae_per_atom'), scale=1000)})"]
    if evaluation.get("force_rmse") is not None:
        parts.append(f"force RMSE {_number(evaluation['force_rmse'])} eV/Å")
    if evaluation.get("stress_rmse_gpa") is not None:
        parts.append(f"stress RMSE {_number(evaluation['stress_rmse_gpa'])} GPa")
    return ", ".join(parts)


def _calibration_line(evaluation: dict) -> str:
    factor = evaluation.get("calibration_factor")
    if factor is None:
        return "none (it needs at least 2 members and 3 test structures)"
    check = evaluation.get("cross_validated_normalized_error_rms")
    return (f"committee spread x {factor:.3g}" +
            ("" if check is None else f" (out of fold, the normalized error RMS is {check:.2f}; 1 is ideal)"))


def _lammps_line(check) -> str:
    if not check:
        return "not checked"
    if not check.get("checked"):
        return f"not checked: {check.get('reason')}"
    return (f"pair style aenet/core matches to {check['max_energy_difference_per_atom']:.1g} eV/atom, "
            f"{check['max_force_difference']:.1g} eV/Å ({check['n_structures']} test structures)")


def failed_members(committee: Path) -> list:
    """'member_XXX failed: error' for each member whose summary.json records a failure."""
    summaries = {path.parent.name: _read_json(path) or {} for path in sorted(committee.glob("member_*/summary.json"))}
    return [f"{name} failed: {summary.get('error')}" for name, summary in summaries.items()
            if summary.get("status") == "failed"]


def target_block(target: Path) -> list:
    """The lines describing one trained committee (a run, or a round of a loop); [] if it has not finished."""
    evaluation = _read_json(target / "evaluation" / "summary.json")
    if evaluation is None:
        return []
    split = evaluation.get("split", "test")
    lines = [f"  {split} split      {evaluation.get('n_structures')} structures, "
             f"{evaluation.get('num_members')} members",
             f"  errors          {_errors_line(evaluation)}",
             f"  uncertainty     {_calibration_line(evaluation)}"]
    worst = evaluation.get("largest_energy_error")
    if worst:
        lines.append(f"  largest error   {_number(worst['error_per_atom'], scale=1000)} meV/atom, {worst['identifier']} "
                     "(all: evaluation/predictions.csv)")
    exported = sorted((target / "ascii").glob("member_*"))
    if exported:
        lines.append(f"  potential files {target / 'ascii'}/member_*/ ({len(exported)} members, .nn.ascii and .nn)")
        lines.append(f"  LAMMPS          {_lammps_line(evaluation.get('lammps_check'))}")
        lines.append(f"                  its input lines: aenet-core lammps-input {target}")
    lines.append(f"  committee       {target / 'committee'} (aenet-core predict {target / 'committee'} FILES...)")
    warnings = evaluation.get("warnings", [])
    lines += [f"  WARNING         {line}" for line in [*warnings, *failed_members(target / "committee")]]
    if warnings:
        lines.append(f"                  ({ADVICE})")
    return lines


def round_records(run_dir: Path, rounds: int) -> list:
    """The summary.json of the finished rounds 0..``rounds`` of a loop, in order, up to the one where it stopped
    (rounds after it are left from an earlier configuration)."""
    records = []
    for k in range(rounds + 1):
        record = _read_json(run_dir / f"round_{k:02d}" / "summary.json")
        if record is not None:
            records.append(record)
            if record.get("decision") == "stopped":
                break
    return records


def rounds_table(records: list) -> list:
    """One line per finished round of an active-learning loop, with why it trained or stopped."""
    header = ("  round  labelled  failed  energy RMSE (meV/atom)  force RMSE (eV/Å)  stopped at trust_hi  "
              "decision")
    lines = [header]
    for record in records:
        hits = f"{record['n_hit_trust_hi']}/{record['n_trajectories']}" if record.get("n_trajectories") else "-"
        decision = f"{record['decision']}: {record['reason']}" if "decision" in record else ""
        lines.append(f"  {record['round']:5d}  {record.get('n_labelled', 0):8d}  {record.get('n_failed', 0):6d}  "
                     f"{_number(record.get('test_energy_rmse_per_atom'), scale=1000):>22}  "
                     f"{_number(record.get('test_force_rmse')):>17}  {hits:>19}  {decision}")
    return lines if len(lines) > 1 else []


def loop_heading(run: str, last: int, records: list, loop: dict) -> str:
    """How far the loop got: round ``last`` of a fixed count, or of at most max_rounds and whether it stopped."""
    if "max_rounds" not in loop:
        return f"Run {run}, active learning (round {last} of {loop['rounds']})"
    if records and records[-1].get("decision") == "stopped":
        return (f"Run {run}, active learning: stopped in round {records[-1]['round']} of at most "
                f"{loop['max_rounds']} ({records[-1]['reason']}); the result is round {last}'s committee")
    end = "; max_rounds reached" if last == loop["max_rounds"] else ""
    return f"Run {run}, active learning (round {last} of at most {loop['max_rounds']}{end})"


def run_summary(results: Path, run: str, loop: dict | None = None) -> list:
    """The lines for ``run``: its committee (the last round's, for a loop) and, for a loop (its
    active_learning section), its rounds."""
    run_dir = results / run
    if loop is None:
        block = target_block(run_dir)
        return [f"Run {run}", *block] if block else []
    records = round_records(run_dir, loop.get("rounds") or loop["max_rounds"])
    trained = [r["round"] for r in records if r.get("decision", "trained") == "trained"
               and (run_dir / f"round_{r['round']:02d}" / "evaluation").is_dir()]
    if not trained:
        return []
    last = trained[-1]
    return [loop_heading(run, last, records, loop), *rounds_table(records),
            f"  round {last}:", *target_block(run_dir / f"round_{last:02d}")]


def workflow_summary(results: Path, runs: dict, configfiles=()) -> str:
    """``runs``: run name -> its active_learning section (None for a plain run); ``configfiles``: the
    --configfile paths of the run, for the report's command."""
    blocks = [run_summary(results, run, loop) for run, loop in runs.items()]
    lines = [line for block in blocks if block for line in [*block, ""]]
    if not lines:
        return ""
    report = ["snakemake", "--report", "report.html", *(["--configfile", *configfiles] if configfiles else [])]
    lines.append(f"Report with every figure: {shlex.join(report)} (then open report.html)")
    return "\n".join(lines)


def log_tail(path: Path, count: int = LOG_TAIL_LINES) -> list:
    """Why a job failed: the failure line ``aenet-core`` ends its log with, or else the log's last lines."""
    try:
        lines = [line.rstrip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError as err:
        return [f"(log unreadable: {err})"]
    reasons = [line for line in lines[-count:] if FAILURE_LINE.match(line)]
    return reasons or lines[-count:] or ["(the log is empty)"]


def failure_report(failed) -> str:
    """``failed``: (rule name, wildcards text, log paths) of each failed job."""
    if not failed:
        return ""
    lines = [f"{len(failed)} job{'s' if len(failed) > 1 else ''} failed:"]
    for rule, wildcards, logs in failed:
        lines.append(f"  {rule}{f' ({wildcards})' if wildcards else ''}")
        for log in logs:
            lines.append(f"    log {log}:")
            lines += [f"      {line}" for line in log_tail(Path(log))]
    lines.append("Fix the cause and run the same command again: finished jobs are kept.")
    return "\n".join(lines)
