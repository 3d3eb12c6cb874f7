# Snakemake glue: the config checked and planned (aenet_core.workflow, torch-free, so that Snakemake starts
# fast), how rules run the library's command line, the checks made on start, the messages on success and
# on failure, and the check of finished outputs. The rules' input functions are in inputs.smk.
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from aenet_core.active_learning import stopping
from aenet_core.files import atomic_write, read_json
from aenet_core.workflow import arguments as args
from aenet_core.workflow.config import ConfigError, check_config, matching_files, seed_problems, species_problems
from aenet_core.workflow.integrity import damaged_labels, damaged_outputs
from aenet_core.workflow.plan import Plan
from aenet_core.workflow.summary import failure_report, workflow_summary
from aenet_core.workflow.targets import round_label, round_of, round_target, run_of


def uses_conda():
    return DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method


# The labelling calculators are asked of the python that runs the jobs; with --sdm conda this process cannot
# ask the jobs' environment.
try:
    check_config(
        config,
        Path(workflow.basedir) / "workflow/schemas/config.schema.yaml",
        python=None if uses_conda() else shutil.which("python") or sys.executable,
        pythonpath=workflow.basedir,
    )
except ConfigError as error:
    raise WorkflowError(str(error)) from None

EXAMPLE_DATA = "results/example_data/example.extxyz"
plan = Plan(config, EXAMPLE_DATA)
RUNS = plan.runs
# Rules run the library's command line (python -m aenet_core.cli) from this repository: the same
# code in the Makefile's virtual environment and in a --sdm conda environment (dependencies only).
# PYTHONSAFEPATH: `python -m` imports nothing from the directory Snakemake runs in (a numpy.py there, say);
# AENET_CORE_ROOT: the repository is on PYTHONPATH for aenet_core, not for a labelling calculator.
ROOT = shlex.quote(workflow.basedir)
shell.prefix(
    f"set -euo pipefail; export PYTHONSAFEPATH=1 AENET_CORE_ROOT={ROOT} PYTHONPATH={ROOT}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)


def write_settings(path, text):
    with atomic_write(path) as handle:
        handle.write(text)


# -- checks on start (not in dry runs) ---------------------------------------------------------------


def check_cuda_torch():
    """Refuse, before any job, to train CUDA members whose python has a torch built without CUDA. It asks
    torch's build, not a device: the submitting host of a cluster run has no GPU. With --sdm conda the jobs'
    environment is envs/aenet_core.yaml, which this process cannot ask."""
    if workflow.touch or uses_conda():
        return
    planned = planned_wildcards(["train_member"], "target")
    cuda_targets = sorted(target for target in planned if plan.uses_cuda(target))
    if not cuda_targets:
        return
    devices = ", ".join(f"runs.{run_of(t)}.device is {plan.run_config(t)['device']}" for t in cuda_targets)
    python = shutil.which("python")
    if python is None:
        raise WorkflowError(f"{devices}, but there is no python on PATH to run the jobs")
    probe = subprocess.run(
        [python, "-c", "import torch; print(torch.version.cuda or '')"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        raise WorkflowError(f"{devices}, but {python} (the python the jobs run) cannot import torch: {probe.stderr}")
    if not probe.stdout.strip():
        raise WorkflowError(
            f"{devices}, but the torch of {python} (the python the jobs run) is built without CUDA: install "
            "a CUDA build of torch there (make clean setup TORCH_INDEX=<a CUDA wheel index of pytorch.org>, "
            "see docs/clusters.md) or train on the cpu"
        )


def planned_wildcards(rule_names, wildcard):
    """The values of ``wildcard`` among the jobs of ``rule_names`` that this invocation runs."""
    return {getattr(job.wildcards, wildcard) for job in workflow.dag.needrun_jobs() if job.rule.name in rule_names}


def databases_to_build():
    return planned_wildcards(DATABASE_RULES, "db")


def check_source_species():
    """Refuse, before any job, structure files that do not read or hold species their run's descriptor lacks;
    reads only the sources of the databases this invocation builds."""
    if workflow.touch:
        return
    building = databases_to_build()
    problems = [
        problem
        for db in sorted(building)
        for problem in species_problems(plan.database_runs[db], plan.database_config(db), plan.database_sources(db))
    ]
    if problems:
        raise WorkflowError("\n".join(problems))


DATABASE_RULES = ("reference_energies", "build_database")


def write_source_lists():
    """The list of structure files each database this invocation builds reads (its rules' --sources-from): a
    file, not the command line, which holds a few thousand names at most. Written here, not by a rule of its
    own, so that a database built before the lists existed is not rebuilt."""
    for db in sorted(databases_to_build()):
        listing = Path(f"results/databases/{db}/sources.txt")
        listing.parent.mkdir(parents=True, exist_ok=True)
        write_settings(listing, "".join(f"{path}\n" for path in plan.database_sources(db)))


def check_seed_files():
    """Refuse, before any job, a loop's seed files that do not read, hold foreign species or have a geometry the
    database would refuse (a file in nm: atoms 10 times too close); only of runs that draw their seeds now."""
    if workflow.touch:
        return
    drawing = planned_wildcards(["exploration_seeds"], "run")
    problems = [
        problem
        for run in sorted(drawing)
        if plan.loop(run).get("seed_files") is not None
        for problem in seed_problems(run, plan.run_config(run), matching_files(plan.loop(run)["seed_files"]))
    ]
    if problems:
        raise WorkflowError("\n".join(problems))


# -- messages at the end ---------------------------------------------------------------------------


def print_summary():
    """On success: per run, the test errors, the calibration, warnings and where the files are."""
    loops = {run: plan.loop(run) for run in RUNS}
    configfiles = [os.path.relpath(path) for path in workflow.config_settings.configfiles]
    text = workflow_summary(Path("results"), loops, configfiles)
    if text:
        print(f"\n{text}", file=sys.stderr, flush=True)


def print_failures():
    """On error: each failed job and why, from the end of its log (Snakemake's own job blocks are quieted by
    profiles/default)."""
    failed = getattr(getattr(workflow, "scheduler", None), "failed", None) or []
    jobs = [(job.rule.name, ", ".join(f"{k}={v}" for k, v in job.wildcards.items()), list(job.log)) for job in failed]
    text = failure_report(jobs) or "A job failed; its log is under results/ (logs/ of its run or database)."
    print(f"\n{text}", file=sys.stderr, flush=True)


# Snakemake reports a failed job's exception with its whole command line (for a database build, every
# structure file); print_failures says why the job failed instead. With -p the command line stays.
FAILED_COMMAND = re.compile(r"Command '.*' returned non-zero exit status (-?\d+)\.", re.S)


class FailedCommandFilter(logging.Filter):
    def filter(self, record):
        if isinstance(record.msg, str) and not workflow.output_settings.printshellcmds:
            record.msg = FAILED_COMMAND.sub(r"The job's command (-p prints it) exited with status \1.", record.msg)
        return True


logging.getLogger("snakemake.logging").addFilter(FailedCommandFilter())


# -- finished outputs damaged or deleted afterwards (aenet_core.workflow.integrity) --------------------


def forced(path, rule):
    settings = workflow.dag_settings
    return settings.forceall or rule in settings.forcerun or str(path) in map(os.path.normpath, settings.forcerun)


def refuse_damaged(damaged, remedy):
    """Stop the run on finished outputs that differ from what their rules wrote (``damaged``: (path, why, rule)),
    unless --forcerun makes them again; checked while the DAG is built, in the submitting process only (a job's
    inputs are fresh)."""
    found = [item for item in damaged if not forced(item[0], item[2])]
    if found:
        listed = "\n".join(f"  {path}: {why}" for path, why, _ in found)
        paths = shlex.join(str(path) for path, _, _ in found)
        raise WorkflowError(
            f"finished outputs were damaged, edited or deleted after they were written:\n{listed}\n"
            f"make them again with: snakemake --forcerun {paths} ({remedy})"
        )


def finished_models(wildcards):
    """Input function of the rules that read the members' models: the models, once the target's finished
    models and exported files are checked."""
    if workflow.is_main_process:
        summaries = member_files("summary")(wildcards)
        export = expand(rules.export.output[0], target=wildcards.target)[0]
        refuse_damaged(damaged_outputs(summaries, export), "a member resumes from its checkpoints")
    return member_files("model")(wildcards)


def check_labels(run, rounds):
    """Refuse a round's labelled.extxyz that is not what merge_labels wrote (the sha256 in labelling.json): the
    shard is built from it. Called by rule all's input function, where an error stops the run (Snakemake
    drops an input function's error while it looks for another way to make an existing file)."""
    if workflow.is_main_process:
        damaged = [
            item for k in rounds for item in damaged_labels(*expand(rules.merge_labels.output, run=run, round=k))
        ]
        refuse_damaged(damaged, "from the batches' labels, no calculation repeated")
