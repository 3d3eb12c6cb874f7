# Config validation and the helpers the rules share: which files a run reads, which database it
# uses (runs with the same sources, descriptor and reference energies share one), member seeds.
import glob
import hashlib
import json
import shlex

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

RUNS = sorted(config["runs"])
# Rules run the library's command line (python -m aenet_core.cli) from this repository: the same
# code in the Makefile's virtual environment and in a --sdm conda environment (dependencies only).
shell.prefix(f"set -euo pipefail; export PYTHONPATH={shlex.quote(workflow.basedir)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")
EXAMPLE_DATA = "results/example_data/example.extxyz"


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
    return {
        "sources": source_files(run),
        "descriptor": c["descriptor"],
        "reference_energies": c["reference_energies"],
        "max_energy": c["max_energy"],
        "database": c["database"],
    }


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


# -- input functions (wildcards -> paths or arguments) ---------------------------------------


def db_sources(wildcards):
    return source_files(DATABASE_RUNS[wildcards.db])


def reference_energy_args(wildcards):
    refs = run_config(DATABASE_RUNS[wildcards.db])["reference_energies"]
    if refs["method"] == "fixed":
        return "--fixed " + " ".join(f"{s}={e!r}" for s, e in refs["values"].items())
    args = f"--method {refs['method']}"
    if refs["method"] == "reference_compounds":
        args += " --compounds " + " ".join(refs["compounds"])
    if refs.get("fixed"):
        args += " --fixed " + " ".join(f"{s}={e!r}" for s, e in refs["fixed"].items())
    return args


def database_args(wildcards):
    c = run_config(DATABASE_RUNS[wildcards.db])
    d = c["descriptor"]
    args = (
        f"--species {' '.join(d['species'])} --rad-order {d['rad_order']} --rad-cutoff {d['rad_cutoff']} "
        f"--ang-order {d['ang_order']} --ang-cutoff {d['ang_cutoff']} --min-cutoff {d['min_cutoff']} "
        f"--storage-dtype {c['database']['storage_dtype']}"
    )
    if c["max_energy"] is not None:
        args += f" --max-energy {c['max_energy']!r}"
    return args


def database_threads(wildcards):
    return run_config(DATABASE_RUNS[wildcards.db])["threads"]


def run_database(wildcards):
    return f"results/databases/{database_key(wildcards.run)}/database.h5"


def arch_json(wildcards):
    c = run_config(wildcards.run)
    layers = c["architecture"]
    arch = {s: layers for s in c["descriptor"]["species"]} if isinstance(layers, list) else layers
    return json.dumps(arch, separators=(",", ":"))


def training_json(wildcards):
    return json.dumps(run_config(wildcards.run)["training"], sort_keys=True, separators=(",", ":"))


def member_seed_of(wildcards):
    return member_seed(wildcards.run, wildcards.member)


def run_device(wildcards):
    return run_config(wildcards.run)["device"]


def run_threads(wildcards):
    return run_config(wildcards.run)["threads"]


def gpus(wildcards):
    return 1 if run_device(wildcards).startswith("cuda") else 0


def split_testpercent(wildcards):
    return run_config(wildcards.run)["split"]["testpercent"]


def split_seed(wildcards):
    return run_config(wildcards.run)["split"]["split_seed"]


def export_prefix(wildcards):
    return run_config(wildcards.run)["export"]["prefix"]


def n_uncertain(wildcards):
    return run_config(wildcards.run)["evaluate"]["n_uncertain"]


def member_summaries(wildcards):
    return [f"results/{wildcards.run}/committee/member_{m}/summary.json" for m in members(wildcards.run)]


def member_dirs(wildcards):
    return [f"results/{wildcards.run}/committee/member_{m}" for m in members(wildcards.run)]


def run_outputs(run):
    """What `rule all` asks for, per run."""
    return [
        f"results/{run}/committee/committee_metadata.json",
        f"results/{run}/ascii/manifest.json",
        f"results/{run}/evaluation/summary.json",
    ]
