"""The checks a config passes before any job runs: the JSON schema (workflow/schemas/config.schema.yaml,
which also fills in its defaults), then what the schema cannot express and the library would refuse inside a
job.  Each problem is one line, '<key path>: <what is wrong>'; ``check_config`` raises them all at once."""
from __future__ import annotations

import difflib
import glob
import math
import os
import re
import subprocess
from pathlib import Path

from aenet_core.committee.config import TorchCommitteeConfig
from aenet_core.rules import DEFAULT_MIN_CUTOFF, SEED, WORKFLOW_TRAINING
from aenet_core.structure import VALID_SYMBOLS
from aenet_core.training.config import TorchTrainingConfig


class ConfigError(ValueError):
    """A config the workflow refuses; the message has one line per problem."""


def check_config(config: dict, schema: Path, python: str | None = None, pythonpath: str | None = None) -> None:
    """Validate ``config`` against ``schema`` (filling in the schema's defaults), then check each run; with
    ``python``, also that it imports each labelling calculator (with ``pythonpath`` prepended)."""
    check_size(config)
    validate_schema(config, schema)
    problems = [f"{path}: must be a finite number" for path in non_finite(config)]
    problems += [problem for run in sorted(config["runs"]) for problem in run_problems(run, config["runs"][run])]
    if python is not None:
        problems += calculator_problems(config, python, pythonpath)
    if problems:
        raise ConfigError("\n".join(problems))


SHOWN = 3  # problems listed per file
MAX_CONFIG_VALUES = 100_000  # a real config holds hundreds; YAML aliases can make a 1 kB file hold billions


def check_size(config) -> None:
    """Refuse a config that holds more than MAX_CONFIG_VALUES values once its YAML aliases are expanded (or one that
    holds itself), before anything walks it: the count visits each shared list or mapping once."""
    sizes, open_ids = {}, set()

    def size(value, path) -> int:
        if not isinstance(value, (dict, list)):
            return 1
        if id(value) in open_ids:
            raise ConfigError(f"{key_path(path) or 'config'}: holds itself (a YAML alias of its own anchor)")
        if id(value) not in sizes:
            open_ids.add(id(value))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            sizes[id(value)] = 1 + sum(size(item, (*path, key)) for key, item in items)
            open_ids.discard(id(value))
        if sizes[id(value)] > MAX_CONFIG_VALUES:
            raise ConfigError(f"{key_path(path) or 'config'}: holds more than {MAX_CONFIG_VALUES} values once its YAML "
                              "aliases (*name) are expanded; a config this large is a mistake or an attack")
        return sizes[id(value)]

    try:
        size(config, ())
    except RecursionError:
        raise ConfigError("config: nested too deeply (lists or mappings thousands of levels deep)") from None


def validate_schema(config: dict, schema: Path) -> None:
    """Snakemake's validation (which fills in defaults); its first error raised as a ConfigError,
    '<key path>: <what is wrong>'."""
    from jsonschema.exceptions import ValidationError
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, schema=str(schema))
    except WorkflowError as error:
        if not isinstance(error.__context__, ValidationError):
            raise
        raise ConfigError(schema_message(error.__context__)) from None


def key_path(path) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def schema_message(error) -> str:
    """'<key path>: <what is wrong>'; for a oneOf told apart by a name (training.method), the named branch's error."""
    from jsonschema.exceptions import best_match

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


def as_patterns(globs) -> list:
    """A config's glob or list of globs, as a list."""
    return [globs] if isinstance(globs, str) else list(globs)


def matching_files(globs) -> list:
    return sorted({path for pattern in as_patterns(globs) for path in glob.glob(pattern)})


def pattern_problems(key: str, globs) -> list:
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


def folder_glob(folder) -> str:
    """', e.g. <folder>/*.<its most common suffix>', or nothing for a folder of no files."""
    suffixes = [path.suffix for path in Path(folder).iterdir() if path.is_file() and path.suffix]
    if not suffixes:
        return ""
    suffix = max(set(suffixes), key=suffixes.count)
    return f", e.g. {os.path.join(folder, f'*{suffix}')!r} ({suffixes.count(suffix)} files)"


def run_problems(run: str, c: dict) -> list:
    """What the schema cannot express and the library would refuse inside a job, for run config ``c``."""
    key, species = f"runs.{run}", c["descriptor"]["species"]
    problems = [f"{key}.descriptor.species: {s!r} is not a chemical element" for s in species if s not in VALID_SYMBOLS]
    if c["sources"] != "example":
        problems += pattern_problems(f"{key}.sources", c["sources"])
    problems += cutoff_problems(key, c["descriptor"])
    arch = c["architecture"]
    if isinstance(arch, dict) and set(arch) != set(species):
        problems.append(
            f"{key}.architecture: layers for {', '.join(sorted(arch))}; expected descriptor.species ({', '.join(species)})"
        )
    problems += reference_problems(key, c["reference_energies"], species)
    try:  # the library's own checks of the training settings, across fields too (a member job makes the same)
        TorchTrainingConfig.from_dict({**WORKFLOW_TRAINING, **c["training"]})
    except (ValueError, TypeError, NotImplementedError) as error:
        problems.append(f"{key}.training: {error}")
    if c["training"].get("early_stopping_patience") is not None and c["split"].get("testpercent") == 0:
        problems.append(f"{key}.training.early_stopping_patience needs validation structures; split.testpercent is 0")
    problems += committee_problems(key, c["committee"])
    problems += gpu_problems(key, c["device"], c["gpus_per_member"])
    if "active_learning" in c:
        problems += loop_problems(f"{key}.active_learning", c["active_learning"], c)
    return problems


def cutoff_problems(key: str, d: dict) -> list:
    min_cutoff = d.get("min_cutoff", DEFAULT_MIN_CUTOFF)
    given = "" if "min_cutoff" in d else ", the descriptor's default"
    return [
        f"{key}.descriptor.{name} must be above min_cutoff ({min_cutoff} Å{given}); got {d[name]}"
        for name in ("rad_cutoff", "ang_cutoff")
        if not d[name] > min_cutoff
    ]


def reference_problems(key: str, refs: dict, species: list) -> list:
    """Elements named by the reference energies that are not descriptor species."""
    named = {f"{key}.reference_energies.{name}": list(refs.get(name, {})) for name in ("values", "fixed")}
    for index, formula in enumerate(refs.get("compounds", [])):
        named[f"{key}.reference_energies.compounds[{index}]"] = re.findall("[A-Z][a-z]?", formula)
    listed = ", ".join(species)
    return [
        f"{where}: {s} is not one of descriptor.species ({listed})"
        for where, symbols in named.items()
        for s in symbols
        if s not in species
    ]


def committee_problems(key: str, committee: dict) -> list:
    try:  # the library's check (member_seeds must give one seed per member)
        seeds = TorchCommitteeConfig(**committee).seeds(None)
    except ValueError as error:
        return [f"{key}.committee: {error}"]
    if "member_seeds" not in committee and not SEED.test(seeds[-1]):
        return [f"{key}.committee.base_seed: the last member's seed, {seeds[-1]}, must be at most {SEED.high}"]
    return []


def gpu_problems(key: str, device: str, gpus: int) -> list:
    """More than one GPU per member needs device cuda: one process per GPU, cuda:0 to cuda:N-1 of the job."""
    if gpus == 1 or device == "cuda":
        return []
    if device == "cpu":
        return [f"{key}.gpus_per_member: {gpus} GPUs per member needs device cuda; a CPU member trains in one "
                "process (its threads)"]
    return [f"{key}.gpus_per_member: {gpus} GPUs per member needs device cuda (a GPU per process), not {device}, "
            "which names one GPU"]


def loop_problems(key: str, loop: dict, c: dict) -> list:
    problems = []
    if ("rounds" in loop) == ("max_rounds" in loop):
        problems.append(f"{key}: give rounds (exactly that many rounds) or max_rounds (at most that many: the loop "
                        f"stops by itself when it has converged), not {'both' if 'rounds' in loop else 'neither'}")
    if not loop["trust_lo"] < loop["trust_hi"]:
        problems.append(f"{key}: trust_lo ({loop['trust_lo']}) must be below trust_hi ({loop['trust_hi']})")
    if loop["trust_scale"] == "test_quantiles" and loop["trust_hi"] > 1:
        problems.append(f"{key}.trust_hi: on trust_scale test_quantiles the levels are quantiles, at most 1; got "
                        f"{loop['trust_hi']}")
    if loop.get("ensemble") == "npt" and not c["training"].get("stress_weight"):
        problems.append(f"{key}.ensemble: npt needs a potential trained on stresses; training.stress_weight is 0")
    problems += pattern_problems(f"{key}.seed_files", loop.get("seed_files", []))
    if c["split"].get("testpercent") == 0:
        problems.append(f"{key}: the rounds are evaluated on round 0's test split; split.testpercent is 0")
    return problems


def calculator_problems(config: dict, python: str, pythonpath: str | None = None) -> list:
    """What ``python`` (the one that runs the jobs) finds wrong with each labelling calculator and the names of its
    kwargs and retries (aenet_core.active_learning.calculators): asked in a subprocess, which imports the class
    and reads its signatures but never constructs it (that could start what it starts, e.g. MPI)."""
    import json  # here, with the one check that needs it

    labels = {run: c["active_learning"]["label"] for run, c in config["runs"].items() if "active_learning" in c}
    if not labels:
        return []
    asked = {run: {"calculator": label["calculator"], "kwargs": list(label.get("kwargs", {})),
                   "retries": [list(overrides) for overrides in label.get("retries", [])]}
             for run, label in labels.items()}  # names only: the values are never needed, nor sent
    path = os.pathsep.join(filter(None, [pythonpath, os.environ.get("PYTHONPATH")]))
    probe = subprocess.run(
        [python, "-m", "aenet_core.active_learning.calculators"],
        input=json.dumps(asked, default=str),
        capture_output=True,
        text=True,
        # no working directory on its sys.path, even where it is the repository (pythonpath)
        env=os.environ | {"PYTHONPATH": path, "PYTHONSAFEPATH": "1", "AENET_CORE_ROOT": pythonpath or ""},
    )
    try:  # its answer is the last line (what an imported module prints goes to stderr, mostly)
        found = dict(json.loads(probe.stdout.strip().splitlines()[-1]))
    except (IndexError, TypeError, ValueError):  # it failed before answering
        why = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else f"exit status {probe.returncode}"
        found = {run: [f"calculator: {why}"] for run in labels}
    asked_of = f" (asked of {python})"  # whether a calculator imports depends on the python asked
    return [f"runs.{run}.active_learning.label.{problem}{asked_of if problem.startswith('calculator:') else ''}"
            for run in sorted(labels) for problem in found.get(run, [])]


def seed_problems(run: str, c: dict, files: list) -> list:
    """Starting structures of run config ``c``'s loop (its seed_files) that do not read, hold species its descriptor
    lacks, or whose geometry its database would refuse (atoms too close, a cell in nm rather than Å)."""
    from aenet_core.data.limits import PlausibilityLimits
    from aenet_core.data.plausibility import geometry_problem
    from aenet_core.io import StructureFileError, read_structures

    key, species = f"runs.{run}.active_learning.seed_files", set(c["descriptor"]["species"])
    limits = PlausibilityLimits(**{name: value for name, value in c["database"].items()
                                   if name in PlausibilityLimits.__dataclass_fields__})
    cutoff = max(c["descriptor"]["rad_cutoff"], c["descriptor"]["ang_cutoff"])
    problems = []
    for path in files:
        try:
            structures = list(read_structures(path))
        except StructureFileError as error:
            problems.append(f"{key}: {error}")
            continue
        found = []
        for index, structure in enumerate(structures):
            where = f"{path} (frame {index})"
            foreign = sorted(set(structure.species) - species)
            problem = geometry_problem(structure, where, cutoff, limits)
            if foreign:
                found.append(f"{key}: {where} holds {', '.join(foreign)}, not in descriptor.species")
            elif problem:
                found.append(f"{key}: {problem}")
        more = [f"{key}: ... and {len(found) - SHOWN} more frames of {path}"] if len(found) > SHOWN else []
        problems += found[:SHOWN] + more
    return problems


def species_problems(run: str, c: dict, files: list) -> list:
    """Structure ``files`` of run config ``c`` that do not read, or hold species its descriptor lacks (the
    built-in example holds only its own)."""
    if c["sources"] == "example":
        return []
    from aenet_core.io import StructureFileError, iter_structures  # importing ase.io takes 0.4 s: only here

    species, holders, problems = c["descriptor"]["species"], {}, []
    for path in files:
        try:
            found = {symbol for structure in iter_structures(path) for symbol in structure.species}
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
