"""The command-line arguments and settings files the workflow's jobs get, built from config values.  Every
value is shell-quoted; an option the config leaves out is not passed, so the library's default applies."""
from __future__ import annotations

import hashlib
import shlex

import yaml

from aenet_core.active_learning.settings import MD_OPTIONS
from aenet_core.data.limits import GEOMETRY_LIMITS, LABEL_LIMITS, LIMITS
from aenet_core.rules import DATA_FORCE_WEIGHT, WORKFLOW_TRAINING

# Periodic checkpoints a member keeps (besides best_model.pt) unless training.max_checkpoints says otherwise.
KEPT_CHECKPOINTS = 3
DESCRIPTOR_REQUIRED = ("rad_order", "rad_cutoff", "ang_order", "ang_cutoff")


def arguments(*tokens) -> str:
    """Command-line arguments, each shell-quoted; None tokens (options left to the library) are dropped."""
    return shlex.join(str(token) for token in tokens if token is not None)


def option(flag: str, value) -> tuple:
    """(flag, value) when the config gives the value, else nothing (the command line's default applies)."""
    return () if value is None else (flag, value)


def flag(key: str) -> str:
    return f"--{key.replace('_', '-')}"


def given_options(section: dict, keys) -> list:
    """The options of ``keys`` that ``section`` gives, as flat tokens."""
    return [token for key in keys for token in option(flag(key), section.get(key))]


def member_process_args(processes: int, threads: int) -> str:
    """A member's --threads (and --nproc with more than one process): the job's threads shared among its
    processes, at least one each."""
    nproc = ("--nproc", processes) if processes > 1 else ()
    return arguments(*nproc, "--threads", max(1, threads // processes))


def example_args(example: dict) -> str:
    return arguments(*option("--n-structures", example.get("n_structures")), *option("--seed", example.get("seed")))


def energy_pairs(values: dict) -> list:
    return [f"{species}={energy!r}" for species, energy in values.items()]


def reference_energy_args(c: dict) -> str:
    """reference-energies' options for run config ``c``: the method, its compounds or fixed values, and the
    label limits (the fit reads labels only)."""
    refs = c["reference_energies"]
    method = refs.get("method")
    fixed = refs.get("values") if method == "fixed" else refs.get("fixed")
    return arguments(
        *option("--method", method),
        *(["--compounds", *refs["compounds"]] if method == "reference_compounds" else []),
        *(["--fixed", *energy_pairs(fixed)] if fixed else []),
        *given_options(c["database"], LABEL_LIMITS),
    )


def database_args(c: dict) -> str:
    """build-database's options for run config ``c``: the descriptor, storage, filter and limits."""
    d = c["descriptor"]
    return arguments(
        "--species",
        *d["species"],
        *[token for key in DESCRIPTOR_REQUIRED for token in (flag(key), d[key])],
        *option("--min-cutoff", d.get("min_cutoff")),
        *option("--storage-dtype", c["database"].get("storage_dtype")),
        *option("--max-energy", c["max_energy"]),
        *option("--max-forces", c["max_forces"]),
        *given_options(c["database"], LIMITS),
    )


def split_args(c: dict) -> str:
    split = c["split"]
    return arguments(*option("--testpercent", split.get("testpercent")), "--split-seed", split["split_seed"])


def export_args(c: dict) -> str:
    return arguments(*option("--prefix", c["export"].get("prefix")))


def evaluate_args(c: dict) -> str:
    return arguments(*option("--n-uncertain", c["evaluate"].get("n_uncertain")))


def geometry_args(c: dict, limits=GEOMETRY_LIMITS, cutoff: bool = True) -> list:
    """The limits of run config ``c`` (its database section) that the build of a round's shard applies, so that a
    loop's step refuses what the build would; ``cutoff``: the descriptor's largest cutoff too (for a step without
    the database)."""
    largest = max(c["descriptor"]["rad_cutoff"], c["descriptor"]["ang_cutoff"])
    return [*given_options(c["database"], limits), *(("--cutoff", largest) if cutoff else ())]


def exploration_seed_args(loop: dict) -> str:
    return arguments("--count", loop["seeds"], "--seed", loop["random_seed"])


def seed_limit_args(c: dict) -> str:
    """The limits a seed file's structures must pass (run config ``c``'s database)."""
    return arguments(*geometry_args(c))


def trust_scale_args(loop: dict, evaluation) -> tuple:
    """Trust levels on another scale than max_force_std's: the scale and the previous round's evaluation."""
    if loop["trust_scale"] == "absolute":
        return ()
    return "--trust-scale", loop["trust_scale"], "--evaluation", evaluation


def explore_args(loop: dict, round_label: str, seed: str, temperature: str, evaluation=None) -> str:
    """MD settings; a trajectory's random seed follows the loop's random_seed, the round, the starting
    structure and the temperature, so each trajectory has its own and a rerun repeats it.  ``evaluation``: the
    previous round's evaluation summary (read for trust levels on another scale)."""
    key = f"{loop['random_seed']}/{round_label}/{seed}/{temperature}"
    random_seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    ranks = option("--ranks", loop["threads"]) if loop["threads"] > 1 else ()
    scale = trust_scale_args(loop, evaluation)
    return arguments("--trust-hi", loop["trust_hi"], *(("--trust-lo", loop["trust_lo"], *scale) if scale else ()),
                     "--random-seed", random_seed, *given_options(loop, MD_OPTIONS), *given_options(loop, ("engine",)),
                     *ranks)


def select_args(loop: dict, evaluation=None) -> str:
    return arguments("--trust-lo", loop["trust_lo"], "--trust-hi", loop["trust_hi"], "--max-frames", loop["max_frames"],
                     *trust_scale_args(loop, evaluation), *option("--rule", loop.get("selection")))


def select_limit_args(c: dict) -> str:
    """The geometry limits a selected frame must pass (run config ``c``'s database; the cutoff is the database's)."""
    return arguments(*geometry_args(c, cutoff=False))


def label_args(loop: dict) -> str:
    label = loop["label"]
    return arguments("--batch-size", label["batch_size"], *option("--timeout", label.get("timeout")))


def label_limit_args(c: dict) -> str:
    """The limits a labelled frame must pass (run config ``c``'s database): its geometry before the calculation,
    its labels after."""
    return arguments(*geometry_args(c, (*LABEL_LIMITS, *GEOMETRY_LIMITS)))


def merge_labels_args(loop: dict) -> str:
    return arguments(*option("--max-failed-fraction", loop["label"].get("max_failed_fraction")))


def report_args(loop: dict) -> str:
    return arguments("--trust-lo", loop["trust_lo"], "--trust-hi", loop["trust_hi"])


def settings_text(header: str, settings: dict) -> str:
    """A settings file's text: a comment, then the settings as YAML (keys sorted, so that it, the param that
    reruns the rule writing it, changes only when a setting does)."""
    return f"# {header}\n{yaml.safe_dump(settings, sort_keys=True, default_flow_style=None)}"


def member_settings_text(target: str, c: dict) -> str:
    """results/<target>/committee/settings.yaml: the run's architecture and training (the keys and shape of
    config.yaml), which every member trains with; a change retrains them all, num_members does not."""
    training = {"max_checkpoints": KEPT_CHECKPOINTS, **WORKFLOW_TRAINING, **c["training"]}
    header = (
        f"what results/{target}/committee/member_* trained with (aenet-core train-member --settings); other "
        f"training settings are the library's, and force_weight {DATA_FORCE_WEIGHT} where the data carry forces"
    )
    return settings_text(header, {"architecture": c["architecture"], "training": training})


def calculator_settings_text(run: str, loop: dict) -> str:
    """results/<run>/active_learning/calculator.yaml: the labelling calculator and its keyword arguments."""
    label = loop["label"]
    header = f"how results/{run} labels its frames (aenet-core label --calculator-settings)"
    retries = {"retries": label["retries"]} if label.get("retries") else {}  # absent: the file of earlier versions
    return settings_text(header, {"calculator": label["calculator"], "kwargs": label["kwargs"], **retries})
