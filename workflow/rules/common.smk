# Config validation and the helpers the rules share: which files a run reads, which database it
# uses (runs with the same sources, descriptor and reference energies share one), member seeds, and
# the command-line arguments built from config values (every value shell-quoted).
import glob
import hashlib
import json
import shlex
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

RUNS = sorted(config["runs"])
# Rules run the library's command line (python -m aenet_core.cli) from this repository: the same
# code in the Makefile's virtual environment and in a --sdm conda environment (dependencies only).
shell.prefix(f"set -euo pipefail; export PYTHONPATH={shlex.quote(workflow.basedir)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")
EXAMPLE_DATA = "results/example_data/example.extxyz"
# Periodic checkpoints a member keeps (besides best_model.pt) unless training.max_checkpoints says otherwise.
KEPT_CHECKPOINTS = 3


def run_config(run):
    return config["runs"][run]


def source_files(run):
    """Structure files of a run: the built-in example or the expanded globs."""
    sources = run_config(run)["sources"]
    if sources == "example":
        return [EXAMPLE_DATA]
    patterns = [sources] if isinstance(sources, str) else sources
    files = sorted({path for pattern in patterns for path in glob.glob(pattern)})
    if not files:
        raise ValueError(f"runs.{run}.sources matches no file: {patterns}")
    return files


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


def reference_energy_args(wildcards):
    refs = db_config(wildcards)["reference_energies"]
    method = refs.get("method")
    fixed = refs.get("values") if method == "fixed" else refs.get("fixed")
    return arguments(
        *option("--method", method),
        *(["--compounds", *refs["compounds"]] if method == "reference_compounds" else []),
        *(["--fixed", *energy_pairs(fixed)] if fixed else []),
    )


def database_args(wildcards):
    c = db_config(wildcards)
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
    )


def database_threads(wildcards):
    return db_config(wildcards)["threads"]


def run_database(wildcards):
    return f"results/databases/{database_key(wildcards.run)}/database.h5"


def arch_json(wildcards):
    c = run_config(wildcards.run)
    layers = c["architecture"]
    arch = {s: layers for s in c["descriptor"]["species"]} if isinstance(layers, list) else layers
    return json.dumps(arch, separators=(",", ":"))


def training_json(wildcards):
    training = {"max_checkpoints": KEPT_CHECKPOINTS, **run_config(wildcards.run)["training"]}
    return json.dumps(training, sort_keys=True, separators=(",", ":"))


def member_seed_of(wildcards):
    return member_seed(wildcards.run, wildcards.member)


def gpus(wildcards):
    return 1 if run_config(wildcards.run)["device"].startswith("cuda") else 0


def split_args(wildcards):
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


def run_outputs(run):
    """What `rule all` asks for, per run."""
    outputs = (rules.aggregate.output.metadata, rules.export.output[0], rules.evaluate.output.summary)
    return [expand(path, run=run)[0] for path in outputs]
