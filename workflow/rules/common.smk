# Config validation and the helpers the rules share: which files a run reads, which database it
# uses (runs with the same sources, descriptor and reference energies share one), member seeds, the
# command-line arguments built from config values (every value shell-quoted) and what each job asks a
# scheduler for.
import difflib
import glob
import hashlib
import json
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml
from jsonschema.exceptions import ValidationError, best_match
from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

# The library's rules, element table, training-config checks and file hashing come from torch-free
# modules of this checkout (Snakemake puts the Snakefile's directory first on sys.path), so the checks
# below agree with what the jobs would refuse. Importing torch would cost every invocation seconds; numpy and ase are needed here (the
# Makefile's environment has them; with --sdm conda, Snakemake's own environment needs them too).
from aenet_core.files import atomic_write, file_sha256
from aenet_core.rules import DATA_FORCE_WEIGHT, DEFAULT_MIN_CUTOFF, SEED, WORKFLOW_TRAINING
from aenet_core.run_summary import failure_report, workflow_summary
from aenet_core.structure import VALID_SYMBOLS
from aenet_core.training.config import TorchTrainingConfig


def key_path(path):
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def schema_message(error):
    """'<key path>: <what is wrong>'; for a oneOf told apart by a name (training.method), the named branch's error."""
    branches = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    named = [subs for subs in branches.values() if not any(sub.validator == "const" for sub in subs)]
    if error.validator == "oneOf" and len(named) == 1:
        return schema_message(best_match(named[0]))
    message = f"{key_path(error.absolute_path) or 'config'}: {error.message}"
    if error.validator == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        unexpected = [key for key in error.instance if key not in known]
        close = [match for key in unexpected for match in difflib.get_close_matches(str(key), known, n=1)]
        message += f"; did you mean {', '.join(close)}?" if close else f"; expected one of {', '.join(known)}"
    return message


def non_finite(value, path=()):
    """Key paths of NaN or infinite numbers (YAML .nan passes every schema bound)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from non_finite(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from non_finite(item, (*path, index))
    elif isinstance(value, float) and not math.isfinite(value):
        yield key_path(path)


def as_patterns(globs):
    """A config's glob or list of globs, as a list."""
    return [globs] if isinstance(globs, str) else list(globs)


def matching_files(globs):
    return sorted({path for pattern in as_patterns(globs) for path in glob.glob(pattern)})


def pattern_problems(key, globs):
    """Globs that match no file or match folders; relative ones are taken from the working directory."""
    problems = []
    for pattern in as_patterns(globs):
        where = "" if os.path.isabs(pattern) else f" (relative to {os.getcwd()}, the directory snakemake runs in)"
        matches = glob.glob(pattern)
        folders = [path for path in matches if os.path.isdir(path)]
        if not matches:
            problems.append(f"{key}: {pattern!r} matches no file{where}")
        elif folders == [pattern]:
            problems.append(f"{key}: {pattern!r} is a folder; name its structure files{folder_glob(pattern)}")
        elif folders:
            problems.append(f"{key}: {pattern!r} matches folders ({', '.join(folders[:3])}); name structure files")
    return problems


def folder_glob(folder):
    """', e.g. <folder>/*.<its most common suffix>', or nothing for a folder of no files."""
    suffixes = [path.suffix for path in Path(folder).iterdir() if path.is_file() and path.suffix]
    if not suffixes:
        return ""
    suffix = max(set(suffixes), key=suffixes.count)
    return f", e.g. {os.path.join(folder, f'*{suffix}')!r} ({suffixes.count(suffix)} files)"


def run_problems(run, c):
    """What the schema cannot express and the library would refuse inside a job."""
    key, d = f"runs.{run}", c["descriptor"]
    species = d["species"]
    listed = ", ".join(species)
    problems = [f"{key}.descriptor.species: {s!r} is not a chemical element" for s in species if s not in VALID_SYMBOLS]
    if c["sources"] != "example":
        problems += pattern_problems(f"{key}.sources", c["sources"])
    min_cutoff = d.get("min_cutoff", DEFAULT_MIN_CUTOFF)
    given = "" if "min_cutoff" in d else ", the descriptor's default"
    problems += [
        f"{key}.descriptor.{name} must be above min_cutoff ({min_cutoff} Å{given}); got {d[name]}"
        for name in ("rad_cutoff", "ang_cutoff")
        if not d[name] > min_cutoff
    ]
    arch = c["architecture"]
    if isinstance(arch, dict) and set(arch) != set(species):
        problems.append(f"{key}.architecture: layers for {', '.join(arch)}; expected descriptor.species ({listed})")
    refs = c["reference_energies"]
    named = {f"{key}.reference_energies.{name}": list(refs.get(name, {})) for name in ("values", "fixed")}
    for index, formula in enumerate(refs.get("compounds", [])):
        named[f"{key}.reference_energies.compounds[{index}]"] = re.findall("[A-Z][a-z]?", formula)
    for where, symbols in named.items():
        problems += [f"{where}: {s} is not one of descriptor.species ({listed})" for s in symbols if s not in species]
    try:  # the library's own checks of the training settings, across fields too (a member job makes the same)
        TorchTrainingConfig.from_dict({**WORKFLOW_TRAINING, **c["training"]})
    except (ValueError, TypeError, NotImplementedError) as error:
        problems.append(f"{key}.training: {error}")
    if c["training"].get("early_stopping_patience") is not None and c["split"].get("testpercent") == 0:
        problems.append(f"{key}.training.early_stopping_patience needs validation structures; split.testpercent is 0")
    committee = c["committee"]
    last_seed = committee["base_seed"] + committee["num_members"] - 1
    if "member_seeds" not in committee and not SEED.test(last_seed):
        problems.append(f"{key}.committee.base_seed: the last member's seed, {last_seed}, must be at most {SEED.high}")
    if "active_learning" in c:
        problems += loop_problems(f"{key}.active_learning", c["active_learning"], c)
    return problems


def loop_problems(key, loop, c):
    problems = []
    if not loop["trust_lo"] < loop["trust_hi"]:
        problems.append(f"{key}: trust_lo ({loop['trust_lo']}) must be below trust_hi ({loop['trust_hi']})")
    if loop.get("ensemble") == "npt" and not c["training"].get("stress_weight"):
        problems.append(f"{key}.ensemble: npt needs a potential trained on stresses; training.stress_weight is 0")
    names = [f"{t:g}" for t in loop["temperatures"]]
    if len(set(names)) != len(names):
        problems.append(f"{key}.temperatures: {loop['temperatures']} repeat a temperature (as file names: {names})")
    problems += pattern_problems(f"{key}.seed_files", loop.get("seed_files", []))
    if c["split"].get("testpercent") == 0:
        problems.append(f"{key}: the rounds are evaluated on round 0's test split; split.testpercent is 0")
    return problems


def unimportable_calculators():
    """Problems with the labelling calculators, asked of the python that runs the jobs (importing one here
    could start what it starts, e.g. MPI); skipped with --sdm conda, whose environment this process cannot ask."""
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
        return []
    named = {
        run: c["active_learning"]["label"]["calculator"] for run, c in config["runs"].items() if "active_learning" in c
    }
    if not named:
        return []
    python = shutil.which("python") or sys.executable
    probe = subprocess.run(
        [python, "-m", "aenet_core.active_learning.calculators", *sorted(set(named.values()))],
        capture_output=True,
        text=True,
        env=os.environ
        | {"PYTHONPATH": os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))},
    )
    if probe.returncode == 0:
        return []
    why = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else f"exit status {probe.returncode}"
    return [f"runs.{run}.active_learning.label.calculator: {why} (asked of {python})" for run in sorted(named)]


try:
    validate(config, schema="../schemas/config.schema.yaml")
except WorkflowError as error:
    if not isinstance(error.__context__, ValidationError):
        raise
    raise WorkflowError(schema_message(error.__context__)) from None
_problems = [f"{path}: must be a finite number" for path in non_finite(config)]
_problems += [problem for run in sorted(config["runs"]) for problem in run_problems(run, config["runs"][run])]
_problems += unimportable_calculators()
if _problems:
    raise WorkflowError("\n".join(_problems))

RUNS = sorted(config["runs"])
# Rules run the library's command line (python -m aenet_core.cli) from this repository: the same
# code in the Makefile's virtual environment and in a --sdm conda environment (dependencies only).
shell.prefix(f"set -euo pipefail; export PYTHONPATH={shlex.quote(workflow.basedir)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")
EXAMPLE_DATA = "results/example_data/example.extxyz"
# Periodic checkpoints a member keeps (besides best_model.pt) unless training.max_checkpoints says otherwise.
KEPT_CHECKPOINTS = 3


# A training target is a run ("example") or one round of a run's active-learning loop ("example/round_02"):
# the rules of the database, split, members, export and evaluation serve both, as wildcard `run`.
ROUND = re.compile(r"^(?P<run>[^/]+)/round_(?P<round>[0-9]{2})$")


def run_name(target):
    match = ROUND.match(target)
    return match["run"] if match else target


def round_of(target):
    """The round of an active-learning target, None for a plain run."""
    match = ROUND.match(target)
    return int(match["round"]) if match else None


def round_target(run, index):
    return f"{run}/round_{index:02d}"


def run_config(run):
    return config["runs"][run_name(run)]


def run_setting(key):
    """Input function: the run's (or its round's run's) ``key`` setting."""
    return lambda wildcards: run_config(wildcards.run)[key]


def source_files(run):
    """Structure files of a run: the built-in example or the expanded globs."""
    sources = run_config(run)["sources"]
    return [EXAMPLE_DATA] if sources == "example" else matching_files(sources)


def database_recipe(run):
    c = run_config(run)
    keys = ("descriptor", "reference_energies", "max_energy", "max_forces", "database")
    return {"sources": source_files(run), **{key: c[key] for key in keys}}


def database_key(run):
    """Runs whose database recipe is identical share results/databases/<key>/."""
    recipe = json.dumps(database_recipe(run), sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


DATABASE_RUNS = {}
for _run in RUNS:
    DATABASE_RUNS.setdefault(database_key(_run), _run)


def members(run):
    committee = run_config(run)["committee"]
    seeds = committee.get("member_seeds")
    if seeds is not None and len(seeds) != committee["num_members"]:
        raise ValueError(
            f"runs.{run}.committee.member_seeds has {len(seeds)} seeds for {committee['num_members']} members"
        )
    width = max(3, len(str(committee["num_members"] - 1)))
    return [f"{i:0{width}d}" for i in range(committee["num_members"])]


def member_seed(run, member):
    committee = run_config(run)["committee"]
    seeds = committee.get("member_seeds")
    return seeds[int(member)] if seeds is not None else committee["base_seed"] + int(member)


def arguments(*tokens):
    """Command-line arguments, each shell-quoted; None tokens (options left to the library) are dropped."""
    return shlex.join(str(token) for token in tokens if token is not None)


def option(flag, value):
    """(flag, value) when the config gives the value, else nothing (the command line's default applies)."""
    return () if value is None else (flag, value)


def energy_pairs(values):
    return [f"{species}={energy!r}" for species, energy in values.items()]


# -- input functions (wildcards -> paths or arguments) ---------------------------------------


def example_args(wildcards):
    example = config["example_data"]
    return arguments(*option("--n-structures", example.get("n_structures")), *option("--seed", example.get("seed")))


def db_config(wildcards):
    return run_config(DATABASE_RUNS[wildcards.db])


def db_sources(wildcards):
    return source_files(DATABASE_RUNS[wildcards.db])


# The plausibility limits of runs.<run>.database (aenet_core.data.plausibility.PlausibilityLimits); the
# reference-energy fit reads labels only.
LABEL_LIMITS = ("energy_limit", "force_limit", "stress_limit")
LIMITS = (*LABEL_LIMITS, "min_distance", "max_pairs_per_atom", "referenced_energy_warning")


def limit_options(database, keys):
    """The options of the limits the config gives; the others stay the library's."""
    return [token for key in keys for token in option(f"--{key.replace('_', '-')}", database.get(key))]


def reference_energy_args(wildcards):
    c = db_config(wildcards)
    refs = c["reference_energies"]
    method = refs.get("method")
    fixed = refs.get("values") if method == "fixed" else refs.get("fixed")
    return arguments(
        *option("--method", method),
        *(["--compounds", *refs["compounds"]] if method == "reference_compounds" else []),
        *(["--fixed", *energy_pairs(fixed)] if fixed else []),
        *limit_options(c["database"], LABEL_LIMITS),
    )


def database_args(wildcards):
    return database_options(db_config(wildcards))


def database_options(c):
    """build-database's options for run config ``c`` (the descriptor, storage, filter and limits)."""
    d = c["descriptor"]
    required = ("rad_order", "rad_cutoff", "ang_order", "ang_cutoff")
    return arguments(
        "--species",
        *d["species"],
        *[token for key in required for token in (f"--{key.replace('_', '-')}", d[key])],
        *option("--min-cutoff", d.get("min_cutoff")),
        *option("--storage-dtype", c["database"].get("storage_dtype")),
        *option("--max-energy", c["max_energy"]),
        *option("--max-forces", c["max_forces"]),
        *limit_options(c["database"], LIMITS),
    )


def database_threads(wildcards):
    return db_config(wildcards)["threads"]


def base_database(run):
    return f"results/databases/{database_key(run_name(run))}/database.h5"


def run_database(wildcards):
    """The database of a run, or of round k of its loop: the run's, then the shards labelled in rounds 1..k."""
    shards = [
        f"results/{round_target(run_name(wildcards.run), k)}/database.h5"
        for k in range(1, (round_of(wildcards.run) or 0) + 1)
    ]
    return [base_database(wildcards.run), *shards]


def settings_text(header, settings):
    """A settings file's text: a comment, then the settings as YAML (keys sorted, so that it, the param that
    reruns the rule writing it, changes only when a setting does)."""
    return f"# {header}\n{yaml.safe_dump(settings, sort_keys=True, default_flow_style=None)}"


def write_settings(path, text):
    with atomic_write(path) as handle:
        handle.write(text)


def member_settings_text(wildcards):
    """results/<run>/committee/settings.yaml: the run's architecture and training (the keys and shape of
    config.yaml), which every member trains with; a change retrains them all, num_members does not."""
    c = run_config(wildcards.run)
    training = {"max_checkpoints": KEPT_CHECKPOINTS, **WORKFLOW_TRAINING, **c["training"]}
    header = (
        f"what results/{wildcards.run}/committee/member_* trained with (aenet-core train-member --settings); other "
        f"training settings are the library's, and force_weight {DATA_FORCE_WEIGHT} where the data carry forces"
    )
    return settings_text(header, {"architecture": c["architecture"], "training": training})


def warm_start_model(wildcards):
    """With active_learning.warm_start, a member of round k >= 1 starts from the same member of round k-1."""
    k = round_of(wildcards.run)
    if not k or not run_config(wildcards.run)["active_learning"]["warm_start"]:
        return []
    previous = round_target(run_name(wildcards.run), k - 1)
    return expand(rules.train_member.output.model, run=previous, member=wildcards.member)


def member_seed_of(wildcards):
    return member_seed(wildcards.run, wildcards.member)


def base_split(wildcards):
    """Rounds after round 0 keep round 0's split and train on every labelled frame."""
    if not round_of(wildcards.run):
        return []
    return expand(rules.split.output[0], run=round_target(run_name(wildcards.run), 0))


def split_args(wildcards):
    if round_of(wildcards.run):
        return arguments("--extend", *base_split(wildcards))
    split = run_config(wildcards.run)["split"]
    return arguments(*option("--testpercent", split.get("testpercent")), "--split-seed", split["split_seed"])


def export_args(wildcards):
    return arguments(*option("--prefix", run_config(wildcards.run)["export"].get("prefix")))


def evaluate_args(wildcards):
    return arguments(*option("--n-uncertain", run_config(wildcards.run)["evaluate"].get("n_uncertain")))


def member_files(name):
    """Input function: the ``name`` output of every member of the run."""

    def files(wildcards):
        pattern = getattr(rules.train_member.output, name)
        return expand(pattern, run=wildcards.run, member=members(wildcards.run))

    return files


def member_dirs(wildcards):
    return [str(Path(path).parent) for path in member_files("summary")(wildcards)]


# -- what jobs ask a scheduler for (config `cluster`; a local run ignores it) --------------------
# An unset account or partition is "": the SLURM executor then takes the cluster's default partition
# (sinfo) and guesses the account from the user's recent jobs (sacct), else submits without -A.
# CPUs are each job's threads.
CLUSTER = config["cluster"]


def uses_cuda(run):
    return run_config(run)["device"].startswith("cuda")


def scheduler_resources(rule_name):
    size = CLUSTER["resources"][rule_name]
    return {
        "runtime": size["runtime"],
        "mem_mb": size["mem_mb"],
        "slurm_account": CLUSTER.get("account") or "",
        "slurm_partition": CLUSTER.get("partition") or "",
    }


def member_resources():
    """A member's job: only a CUDA member asks for one GPU, the GPU model and the GPU partition."""

    def partition(wildcards):
        chosen = CLUSTER.get("gpu_partition") if uses_cuda(wildcards.run) else None
        return chosen or CLUSTER.get("partition") or ""

    def gpu(wildcards):
        return 1 if uses_cuda(wildcards.run) else 0

    def gpu_model(wildcards):
        return (CLUSTER.get("gpu_model") or "") if uses_cuda(wildcards.run) else ""

    return scheduler_resources("train_member") | {"slurm_partition": partition, "gpu": gpu, "gpu_model": gpu_model}


def check_cuda_torch():
    """Refuse, before any job, to train CUDA members whose python has a torch built without CUDA.

    Called on start (not in dry runs). It asks torch's build, not a device: the submitting host of a
    cluster run has no GPU. With --sdm conda the jobs' environment is envs/aenet_core.yaml, which this
    process cannot ask.
    """
    if workflow.touch or DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
        return
    planned = {job.wildcards.run for job in workflow.dag.needrun_jobs() if job.rule.name == "train_member"}
    cuda_runs = sorted(run for run in planned if uses_cuda(run))
    if not cuda_runs:
        return
    devices = ", ".join(f"runs.{run}.device is {run_config(run)['device']}" for run in cuda_runs)
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


def check_source_species():
    """Refuse, before any job, structure files that do not read or hold species their run's descriptor lacks.
    Called on start (not in dry runs); reads only the sources of the databases this invocation builds."""
    if workflow.touch:
        return
    building = {job.wildcards.db for job in workflow.dag.needrun_jobs() if job.rule.name in DATABASE_RULES}
    problems = [problem for db in sorted(building) for problem in species_problems(DATABASE_RUNS[db])]
    if problems:
        raise WorkflowError("\n".join(problems))


DATABASE_RULES = ("reference_energies", "build_database")


def species_problems(run):
    if run_config(run)["sources"] == "example":
        return []
    from aenet_core.io import StructureFileError, read_structures  # importing ase.io takes 0.4 s: only here

    species, holders, problems = run_config(run)["descriptor"]["species"], {}, []
    for path in source_files(run):
        try:
            found = {symbol for structure in read_structures(path) for symbol in structure.species}
        except StructureFileError as error:
            problems.append(f"runs.{run}.sources: {error}")
            continue
        for symbol in sorted(found - set(species)):
            holders.setdefault(symbol, []).append(path)
    for symbol, paths in holders.items():
        more = f" and {len(paths) - 1} more files" if len(paths) > 1 else ""
        problems.append(
            f"runs.{run}.descriptor.species is {species}, but {paths[0]}{more} hold {symbol}: add {symbol} to "
            "descriptor.species, or leave those files out of sources"
        )
    return problems


def print_summary():
    """On success: per run, the test errors, the calibration, warnings and where the files are."""
    loops = {run: run_config(run).get("active_learning", {}).get("rounds") for run in RUNS}
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


def run_outputs(run):
    """What the default target asks for, per run: its committee, export and evaluation, or those of every round of
    its active-learning loop with the round summaries and the run's table."""
    outputs = (rules.aggregate.output.metadata, rules.export.output[0], rules.evaluate.output.summary)
    loop = run_config(run).get("active_learning")
    if loop is None:
        return [expand(path, run=run)[0] for path in outputs]
    targets = [round_target(run, k) for k in range(loop["rounds"] + 1)]
    summaries = expand(rules.round_summary.output[0], name=run, round=[f"{k:02d}" for k in range(loop["rounds"] + 1)])
    return [*expand(outputs, run=targets), *summaries, *expand(rules.active_learning_report.output, name=run)]


# -- finished outputs that were damaged or deleted afterwards ---------------------------------
# Snakemake trusts an output that exists, and does not remake a deleted intermediate file whose
# consumers are up to date. A member's model.pt and the exported .nn.ascii files are checked against
# the sha256 their writer recorded (the member's summary.json, the export's manifest.json) while the
# DAG is built (dry runs included); one that differs stops the run unless --forcerun makes it again.


def recorded_sha256(path, key):
    """The ``key`` entry of a JSON file; None when the file is absent, "damaged" if unreadable."""
    try:
        return json.loads(path.read_text()).get(key)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError, AttributeError):
        return "damaged"


def intact(path, digest):
    return path.exists() and file_sha256(path) == digest


def damaged_outputs(run):
    """(output, why, rule) for each finished output of ``run`` that is not what its rule wrote."""
    damaged = []
    for summary in map(Path, expand(rules.train_member.output.summary, run=run, member=members(run))):
        model, expected = summary.parent / "model.pt", recorded_sha256(summary, "model_sha256")
        if expected == "damaged":
            damaged.append((model, f"{summary.name} does not read as JSON", "train_member"))
        elif expected and not intact(model, expected):
            damaged.append((model, "deleted or not the sha256 summary.json records", "train_member"))
    export = Path(expand(rules.export.output[0], run=run)[0])
    recorded = recorded_sha256(export / "manifest.json", "sha256") or {}
    if recorded == "damaged":
        return damaged + [(export, "manifest.json does not read as JSON", "export")]
    changed = [name for name, digest in recorded.items() if not intact(export / name, digest)]
    if changed:
        damaged.append((export, f"{', '.join(changed)} deleted or not the sha256 manifest.json records", "export"))
    return damaged


def forced(path, rule):
    settings = workflow.dag_settings
    return settings.forceall or rule in settings.forcerun or str(path) in map(os.path.normpath, settings.forcerun)


def finished_models(wildcards):
    """Input function of the rules that read the members' models: the models, once the run's finished
    outputs are checked (in the submitting process only: a job's inputs are fresh)."""
    if workflow.is_main_process:
        found = [item for item in damaged_outputs(wildcards.run) if not forced(item[0], item[2])]
        if found:
            listed = "\n".join(f"  {path}: {why}" for path, why, _ in found)
            paths = shlex.join(str(path) for path, _, _ in found)
            raise WorkflowError(
                f"finished outputs were damaged, edited or deleted after they were written:\n{listed}\n"
                f"make them again with: snakemake --forcerun {paths} (a member resumes from its checkpoints)"
            )
    return member_files("model")(wildcards)


# -- the active-learning loop (active_learning.smk) -------------------------------------------
def loop_config(wildcards):
    return run_config(wildcards.name)["active_learning"]


def round_number(wildcards):
    return int(wildcards.round)


def previous_target(wildcards):
    return round_target(wildcards.name, round_number(wildcards) - 1)


def explorations(wildcards):
    """(starting structure, temperature) pairs of a round, as the explore rule's wildcards."""
    loop = loop_config(wildcards)
    return [
        (f"{seed:03d}", f"{temperature:g}") for seed in range(loop["seeds"]) for temperature in loop["temperatures"]
    ]


def exploration_files(kind):
    def files(wildcards):
        pattern = getattr(rules.explore.output, kind)
        return [
            expand(pattern, name=wildcards.name, round=wildcards.round, seed=s, temperature=t)[0]
            for s, t in explorations(wildcards)
        ]

    return files


def seed_inputs(wildcards):
    files = loop_config(wildcards).get("seed_files")
    if files is not None:
        return {"files": matching_files(files)}
    first = round_target(wildcards.name, 0)
    return {"database": run_database(SimpleNamespace(run=first)), "split": expand(rules.split.output[0], run=first)}


def seed_args(wildcards):
    loop = loop_config(wildcards)
    return arguments("--count", loop["seeds"], "--seed", loop["random_seed"])


def previous_committee(wildcards):
    """The committee a round explores with: round k-1's members (checked as the evaluation checks them)
    and its calibration."""
    target = SimpleNamespace(run=previous_target(wildcards))
    return {
        "committee": expand(rules.aggregate.output.metadata, run=target.run)[0],
        "models": finished_models(target),
        "calibration": expand(rules.evaluate.output.calibration, run=target.run)[0],
    }


MD_OPTIONS = (
    "steps",
    "ensemble",
    "timestep",
    "interval",
    "friction",
    "pressure",
    "thermostat_time",
    "barostat_time",
    "compressibility",
)


def explore_args(wildcards):
    """MD settings; a starting structure's random seed follows the run's random_seed, the round, the
    structure and the temperature, so each trajectory has its own and a rerun repeats it."""
    loop = loop_config(wildcards)
    key = f"{loop['random_seed']}/{wildcards.round}/{wildcards.seed}/{wildcards.temperature}"
    random_seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    tokens = [token for name in MD_OPTIONS for token in option(f"--{name.replace('_', '-')}", loop.get(name))]
    return arguments(
        "--trust-hi",
        loop["trust_hi"],
        "--random-seed",
        random_seed,
        *tokens,
    )


def labelled_database(wildcards):
    """What is labelled before a round's selection: the previous round's training data, every shard."""
    return run_database(SimpleNamespace(run=previous_target(wildcards)))


def select_args(wildcards):
    loop = loop_config(wildcards)
    return arguments("--trust-lo", loop["trust_lo"], "--trust-hi", loop["trust_hi"], "--max-frames", loop["max_frames"])


def label_batches(wildcards):
    loop = loop_config(wildcards)
    count = math.ceil(loop["max_frames"] / loop["label"]["batch_size"])
    return [f"{b:03d}" for b in range(count)]


def label_files(kind):
    def files(wildcards):
        pattern = getattr(rules.label.output, kind)
        return expand(pattern, name=wildcards.name, round=wildcards.round, batch=label_batches(wildcards))

    return files


def label_args(wildcards):
    return arguments("--batch-size", loop_config(wildcards)["label"]["batch_size"])


def calculator_settings_text(wildcards):
    """results/<run>/active_learning/calculator.yaml: the labelling calculator and its keyword arguments."""
    label = loop_config(wildcards)["label"]
    header = f"how results/{wildcards.name} labels its frames (aenet-core label --calculator-settings)"
    return settings_text(header, {"calculator": label["calculator"], "kwargs": label["kwargs"]})


def label_threads(wildcards):
    return loop_config(wildcards)["label"]["threads"]


def shard_args(wildcards):
    return database_options(run_config(wildcards.name))


def shard_references(wildcards):
    """The run's reference energies: every shard is measured against the same ones."""
    return expand(rules.reference_energies.output[0], db=database_key(wildcards.name))


def round_inputs(wildcards):
    target = round_target(wildcards.name, round_number(wildcards))
    inputs = {"evaluation": expand(rules.evaluate.output.summary, run=target)}
    if round_number(wildcards):
        inputs |= {
            "explorations": exploration_files("summary")(wildcards),
            "selection": expand(rules.select.output.report, **wildcards),
            "labelling": expand(rules.merge_labels.output.report, **wildcards),
        }
    return inputs


def round_summary_args(wildcards, input):
    if not round_number(wildcards):
        return ""
    return arguments(
        "--explorations", *input.explorations, "--selection", input.selection, "--labelling", input.labelling
    )


def all_round_summaries(wildcards):
    rounds = [f"{k:02d}" for k in range(loop_config(wildcards)["rounds"] + 1)]
    return expand(rules.round_summary.output[0], name=wildcards.name, round=rounds)


def report_args(wildcards):
    loop = loop_config(wildcards)
    return arguments("--trust-lo", loop["trust_lo"], "--trust-hi", loop["trust_hi"])
