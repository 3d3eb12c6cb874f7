"""The command-line steps of the active-learning loop (``aenet-core <command>``), one per workflow rule."""
from __future__ import annotations

import argparse
import json
import signal
import sys
from collections import Counter
from dataclasses import fields
from pathlib import Path

from aenet_core.active_learning.settings import (DEFAULT_SELECTION, ENGINES, ENSEMBLES, SELECTION_RULES,
                                                 ExploreSettings)
from aenet_core.active_learning.trust import TRUST_SCALES
from aenet_core.command_line import add_limit_arguments, given_limits, read_settings
from aenet_core.data.limits import GEOMETRY_LIMITS, LABEL_LIMITS

CALCULATOR_SETTINGS = ("calculator", "kwargs", "retries")  # the keys of the file aenet-core label reads
DEFAULT_MAX_FAILED_FRACTION = 0.25  # a round with more failed calculations is a calculator problem, not bad luck
SHOWN = 5  # implausible frames the selection's log lists


def _plausible_seeds(paths, cutoff, limits) -> list:
    """Every frame of the seed files; one whose geometry is not plausible stops the command, naming it."""
    from aenet_core.data.plausibility import geometry_problem
    from aenet_core.io import read_structures

    pool = []
    for path in paths:
        for index, structure in enumerate(read_structures(path)):
            problem = geometry_problem(structure, f"{path} (frame {index})", cutoff, limits)
            if problem:
                raise SystemExit(f"a starting structure is not plausible training data: {problem}")
            pool.append(structure)
    return pool


def _exploration_seeds(args):
    from aenet_core.active_learning import rounds
    from aenet_core.data.shards import open_databases
    from aenet_core.io import write_extxyz
    from aenet_core.split import Split

    if args.files:
        pool = _plausible_seeds(args.files, args.cutoff, given_limits(args))
    else:  # the database's structures passed its build's checks
        db = open_databases(args.database)
        split = Split.load(args.split)
        split.check(db, label=args.split)
        pool = [db.get_structure(i) for i in split.train]
    seeds = rounds.exploration_seeds(pool, args.count, args.seed)
    write_extxyz(args.output, seeds)
    print(f"{len(seeds)} starting structures of {len(pool)} -> {args.output}")


def _resolve_trust(args) -> None:
    """Put --trust-lo/--trust-hi on max_force_std (eV/Å) where --trust-scale gives them on another scale."""
    from aenet_core.active_learning.trust import trust_levels
    from aenet_core.files import read_json

    if args.trust_scale == "absolute":
        return
    if not args.evaluation:
        raise SystemExit(f"--trust-scale {args.trust_scale} needs --evaluation (the previous round's summary.json)")
    try:
        levels = trust_levels(args.trust_lo, args.trust_hi, args.trust_scale,
                              read_json(args.evaluation, "evaluation summary"))
    except ValueError as err:
        raise SystemExit(f"{args.evaluation}: {err}") from None
    print(f"trust levels {args.trust_lo:g}, {args.trust_hi:g} ({args.trust_scale}) are {levels['trust_lo']:.4g}, "
          f"{levels['trust_hi']:.4g} eV/Å of max_force_std")
    args.trust_lo, args.trust_hi = levels["trust_lo"], levels["trust_hi"]


def _lammps_ready(committee) -> str | None:
    """Why LAMMPS cannot run this exploration (None when it can): the plugin, lmp or the exported files."""
    from aenet_core.lammps import LammpsError, find_models, unavailable

    reason = unavailable()
    if reason:
        return reason
    try:
        find_models(committee)
    except LammpsError as err:
        return str(err)
    return None


def _engine(args) -> str:
    """The engine that runs the trajectory: --engine, or for auto LAMMPS where it can."""
    if args.engine == "ase":
        return "ase"
    reason = _lammps_ready(args.committee)
    if reason is None:
        return "lammps"
    if args.engine == "lammps":
        raise SystemExit(f"--engine lammps: {reason}")
    print(f"exploring with ASE: {reason}")
    return "ase"


def _explore(args):
    import numpy as np

    from aenet_core.active_learning.trajectory import write_trajectory
    from aenet_core.files import write_json
    from aenet_core.io import read_structures

    seeds = read_structures(args.seeds)
    if not 0 <= args.seed_index < len(seeds):
        raise SystemExit(f"{args.seeds}: no starting structure {args.seed_index} ({len(seeds)} there)")
    _resolve_trust(args)
    given = {f.name: getattr(args, f.name) for f in fields(ExploreSettings) if getattr(args, f.name, None) is not None}
    settings = ExploreSettings(seed=args.random_seed, **given)
    engine = _engine(args)
    if engine == "lammps":
        from aenet_core.active_learning.explore_lammps import explore_lammps
        from aenet_core.uncertainty import load_calibration_factor

        factor = load_calibration_factor(args.calibration) if args.calibration else None
        workdir = Path(args.summary).with_suffix(".lammps")
        frames, summary = explore_lammps(args.committee, seeds[args.seed_index], settings, factor, args.ranks,
                                         workdir)
    else:
        from aenet_core.active_learning.explore import explore
        from aenet_core.committee import TorchCommitteePotential

        committee = TorchCommitteePotential.from_directory(args.committee, calibration=args.calibration)
        frames, summary = explore(committee, seeds[args.seed_index], settings)
    write_trajectory(args.output, frames)
    n_atoms = len(frames[0])
    calibrated = [f.info["energy_std_calibrated"] / n_atoms for f in frames]
    summary |= {"engine": engine, "start": seeds[args.seed_index].name,
                "max_force_std": [f.info["max_force_std"] for f in frames],
                "energy_std_calibrated_per_atom": [None if np.isnan(value) else value for value in calibrated]}
    write_json(args.summary, summary, indent=1)
    stop = f"stopped at step {summary['stop_step']} (trust_hi)" if summary["stopped_early"] else "ran every step"
    print(f"{len(frames)} frames ({engine}), {stop} -> {args.output}")


def _named_frames(paths) -> list:
    """Every frame of the trajectories, named ``path#frame=N`` (where a selected frame came from)."""
    from aenet_core.active_learning.trajectory import read_trajectory

    frames = []
    for path in paths:
        for index, atoms in enumerate(read_trajectory(path)):
            atoms.info["name"] = f"{path}#frame={index}"
            frames.append(atoms)
    return frames


def failed_frames(databases) -> list:
    """The frames whose labelling failed in the rounds of these databases: beside a round's shard
    (``round_NN/database.h5``) its ``labelling.json`` names them by their place in ``selected.extxyz``."""
    from aenet_core.active_learning.trajectory import read_trajectory
    from aenet_core.files import read_json

    failed = []
    for database in databases:
        folder = Path(database).parent
        report, selected = folder / "labelling.json", folder / "selected.extxyz"
        if not (folder.name.startswith("round_") and report.is_file() and selected.is_file()):
            continue
        frames = read_trajectory(selected)
        failed += [frames[r["index"]] for r in read_json(report, "labelling report")["frames"]
                   if r["status"] == "failed"]
    return failed


def _plausible(frames, cutoff, limits, chunk: int = 1000) -> tuple:
    """(indices of the frames whose geometry is plausible, each other frame's problem), ``chunk`` frames at a time."""
    from aenet_core.data.plausibility import geometry_problems
    from aenet_core.structure import Structure

    problems = []
    for start in range(0, len(frames), chunk):
        part = frames[start: start + chunk]
        problems += geometry_problems([Structure.from_ase(atoms) for atoms in part],
                                      [atoms.info.get("name", f"frame {start + k}") for k, atoms in enumerate(part)],
                                      cutoff, limits)
    return [k for k, problem in enumerate(problems) if problem is None], [p for p in problems if p]


def _select(args):
    import numpy as np

    from aenet_core.active_learning.select import dataset_vectors, select_frames, structure_vectors
    from aenet_core.active_learning.trajectory import write_trajectory
    from aenet_core.data.shards import open_databases
    from aenet_core.files import write_json
    from aenet_core.structure import Structure

    _resolve_trust(args)
    frames = _named_frames(args.trajectories)
    db = open_databases(args.database)
    # never selected nor featurized: build_shard would refuse them, and a dense one is costly to featurize
    limits, cutoff = given_limits(args), db.descriptor.max_cutoff
    usable, implausible = _plausible(frames, cutoff, limits)
    plausible = [frames[i] for i in usable]
    structures = [Structure.from_ase(atoms) for atoms in plausible]
    vectors = structure_vectors(db.descriptor, structures) if structures else np.zeros((0, 0))
    failed = failed_frames(args.database)
    comparable = [Structure.from_ase(failed[i]) for i in _plausible(failed, cutoff, limits)[0]]
    failed_vectors = structure_vectors(db.descriptor, comparable) if comparable and structures else None
    chosen = select_frames(plausible, vectors, dataset_vectors(db), args.trust_lo, args.trust_hi, args.max_frames,
                           failed_vectors=failed_vectors, rule=args.rule)
    candidates, selected = ([usable[i] for i in chosen[key]] for key in ("candidates", "selected"))
    write_trajectory(args.candidates, [frames[i] for i in candidates])
    write_trajectory(args.selected, [frames[i] for i in selected])
    n_accurate = sum(float(f.info["max_force_std"]) < args.trust_lo for f in frames)
    report = {"n_frames": len(frames), "n_accurate": n_accurate, "n_implausible": len(implausible),
              "n_candidates": len(candidates), "n_selected": len(selected), "n_near_failed": chosen["n_near_failed"],
              "n_failed_before": len(failed), "rule": args.rule, "trust_scale": args.trust_scale,
              "trust_lo": args.trust_lo, "trust_hi": args.trust_hi, "max_frames": args.max_frames,
              "selected": [{"name": frames[i].info["name"], "max_force_std": frames[i].info["max_force_std"],
                            "distance": d} for i, d in zip(selected, chosen["distances"])]}
    write_json(args.report, report, indent=1)
    for problem in implausible[:SHOWN]:
        print(f"not plausible, never selected: {problem}")
    print(f"{len(frames)} frames, {len(implausible)} not plausible, {report['n_candidates']} candidates, "
          f"{report['n_selected']} selected -> {args.selected}")


def _calculator(args) -> tuple:
    """(import path, keyword arguments, retries) of the labelling calculator: --calculator, or
    --calculator-settings (whose retries are keyword-argument overrides, tried in turn after a failure)."""
    if args.calculator:
        return args.calculator, {}, []
    settings = read_settings(args.calculator_settings, CALCULATOR_SETTINGS)
    calculator, kwargs = settings.get("calculator"), settings.get("kwargs") or {}
    retries = settings.get("retries") or []
    if not isinstance(calculator, str) or not isinstance(kwargs, dict):
        raise SystemExit(f"{args.calculator_settings}: expected calculator (an import path) and kwargs (a mapping "
                         f"of its keyword arguments); got calculator {calculator!r}, kwargs {kwargs!r}")
    if not isinstance(retries, list) or not all(isinstance(overrides, dict) for overrides in retries):
        raise SystemExit(f"{args.calculator_settings}: expected retries to be a list of mappings (keyword arguments "
                         f"that override kwargs, one per retry); got {retries!r}")
    return calculator, kwargs, retries


def _stop_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds, so that a running calculation and its subprocesses are killed


def _label(args):
    from aenet_core.active_learning.label import label_frames, labelling_report
    from aenet_core.active_learning.trajectory import read_trajectory
    from aenet_core.files import file_sha256, write_json
    from aenet_core.io import write_extxyz
    from aenet_core.structure import Structure

    calculator, kwargs, retries = _calculator(args)
    # flushed: a forked calculation would write what is left in the buffer again
    print(f"calculator: {calculator}\nkwargs: {json.dumps(kwargs, default=str)}\n"
          f"retries: {json.dumps(retries, default=str)}", flush=True)
    limits = given_limits(args)
    frames = [Structure.from_ase(atoms) for atoms in read_trajectory(args.selected)]
    first = args.batch * args.batch_size
    batch = frames[first: first + args.batch_size]
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)  # a cancelled job (Snakemake, a scheduler)
    try:
        labelled, records = label_frames(batch, calculator, kwargs, args.workdir, limits, first_index=first,
                                         retries=retries, timeout=args.timeout, cutoff=args.cutoff)
    finally:
        signal.signal(signal.SIGTERM, previous)
    write_extxyz(args.output, labelled)
    # merge-labels compares the file with this, so that an edit after labelling is not merged
    report = labelling_report(records, calculator, kwargs, retries) | {"labelled_sha256": file_sha256(args.output)}
    write_json(args.report, report, indent=1)
    for record in records:
        if record["status"] == "failed":
            print(f"failed: {record['name']} after {len(record['attempts'])} attempt(s): {record['error']}")
    print(f"batch {args.batch}: {report['n_labelled']} of {len(batch)} frames labelled -> {args.output}")


def _check_failed_fraction(paths, reports, limit) -> None:
    """Stop when more than ``limit`` of the frames failed, each failed frame of each batch listed on stderr."""
    frames = [record for report in reports for record in report["frames"]]
    n_failed = sum(record["status"] == "failed" for record in frames)
    if limit is None or n_failed <= limit * len(frames):
        return
    batches, errors = [], Counter()
    for path, report in zip(paths, reports):
        failed = [record for record in report["frames"] if record["status"] == "failed"]
        if failed:
            batches.append(str(path))
        for record in failed:
            print(f"{path}: frame {record['index']} ({record['name']}): {record['error']}", file=sys.stderr)
            errors[record["error"]] += 1
    common = "; ".join(f"{error} ({count}x)" for error, count in errors.most_common(3))
    raise SystemExit(f"{n_failed} of {len(frames)} frames failed to label ({n_failed / len(frames):.1%}), more than "
                     f"--max-failed-fraction {limit:g} (the workflow's active_learning.label.max_failed_fraction): "
                     f"fix the calculator's settings (or add label.retries) and run again. Most common errors: "
                     f"{common}. Each failed frame is listed above, from {', '.join(batches)}")


def _check_batches(paths, report_paths, reports) -> None:
    """Stop at a batch file that is not the one its label job wrote (the sha256 its report records)."""
    from aenet_core.files import file_sha256

    if len(paths) != len(reports):
        raise SystemExit(f"expected one report per labelled file; got {len(paths)} files and {len(reports)} reports")
    for path, report_path, report in zip(paths, report_paths, reports):
        recorded = report.get("labelled_sha256")  # absent from the reports of earlier versions
        if recorded and file_sha256(path) != recorded:
            raise SystemExit(f"{path} is not the file its label job wrote (not the sha256 {report_path} records): "
                             f"edited after labelling? Label the batch again (snakemake --forcerun {path})")


def _merge_labels(args):
    from aenet_core.active_learning.label import labelling_report
    from aenet_core.files import atomic_write, file_sha256, read_json, write_json

    reports = [read_json(path, "labelling report") for path in args.reports]
    _check_batches(args.labelled, args.reports, reports)  # before writing anything
    _check_failed_fraction(args.reports, reports, args.max_failed_fraction)
    with atomic_write(args.output) as handle:
        for path in args.labelled:
            handle.write(Path(path).read_text())
    records = [record for report in reports for record in report["frames"]]
    first = reports[0] if reports else {"calculator": None, "kwargs": {}}
    report = labelling_report(records, first["calculator"], first["kwargs"], first.get("retries", ()))
    # the workflow checks labelled.extxyz against this (aenet_core.workflow.integrity.damaged_labels)
    write_json(args.report, report | {"labelled_sha256": file_sha256(args.output)}, indent=1)
    print(f"{sum(r['status'] == 'labelled' for r in records)} of {len(records)} frames labelled -> {args.output}")


def _round_summary(args):
    from aenet_core.active_learning import rounds
    from aenet_core.files import write_json

    summary = rounds.round_summary(args.round, args.evaluation, args.explorations or (), args.selection,
                                   args.labelling, args.converged_fraction)
    write_json(args.output, summary, indent=1)
    print(f"round {args.round}: {summary['decision']} ({summary['reason']}), {summary['n_labelled']} labelled, "
          f"test energy RMSE {summary['test_energy_rmse_per_atom']} eV/atom -> {args.output}")


def _report(args):
    from aenet_core.active_learning import rounds
    from aenet_core.files import atomic_write

    table = rounds.rounds_table(args.summaries)
    with atomic_write(args.table) as handle:
        table.to_csv(handle, index=False)
    rounds.plot_rounds(args.summaries, args.plot, args.trust_lo, args.trust_hi, title=args.title)
    print(table.to_string(index=False))


# The help of explore's MD options (settings.MD_OPTIONS but the ensemble): name -> (what it is, unit); the help
# adds the default.
MD_HELP = {"steps": ("MD steps", ""), "timestep": ("timestep", "fs"),
              "interval": ("a frame is recorded every this many steps", ""),
              "friction": ("nvt: Langevin friction", "1/fs"), "pressure": ("npt: Berendsen pressure", "GPa"),
              "thermostat_time": ("npt: Berendsen thermostat time constant", "fs"),
              "barostat_time": ("npt: Berendsen barostat time constant", "fs"),
              "compressibility": ("npt: Berendsen compressibility", "1/GPa")}


def _add_md_arguments(parser) -> None:
    defaults = {f.name: f.default for f in fields(ExploreSettings)}
    for name, (what, unit) in MD_HELP.items():
        kind = int if name in ("steps", "interval") else float
        notes = "; ".join(filter(None, [unit, f"default {defaults[name]:g}"]))
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"{what} ({notes})")
    parser.add_argument("--ensemble", choices=ENSEMBLES, help="nvt (Langevin; default), npt (ASE: Berendsen; "
                        "LAMMPS: Nosé-Hoover; for a potential trained on stresses) or nve")


def _add_trust_scale(parser) -> None:
    parser.add_argument("--trust-scale", choices=TRUST_SCALES, default="absolute", help="what the trust levels "
                        "are: absolute (eV/Å of max_force_std; default), calibrated (expected force errors, eV/Å, "
                        "through the previous round's force calibration) or test_quantiles (quantiles of the "
                        "previous round's largest force error per test structure)")
    parser.add_argument("--evaluation", help="the previous round's evaluation summary.json (for --trust-scale)")


def _add_limits(parser, names, cutoff: bool = False) -> None:
    """Options that change the plausibility limits ``names``, as build-database's; ``cutoff``: --cutoff too."""
    add_limit_arguments(parser, names)
    if cutoff:
        parser.add_argument("--cutoff", type=float, help="the descriptor's largest cutoff (Å), which "
                            "--max-pairs-per-atom counts neighbours within (default: no density check)")


def _add_exploration(commands) -> None:
    seeds = commands.add_parser("exploration-seeds", help="the structures the exploration starts from (extxyz)")
    source = seeds.add_mutually_exclusive_group(required=True)
    source.add_argument("--files", nargs="+", help="draw from every frame of these structure files")
    source.add_argument("--database", nargs="+", help="draw from the training structures of this database")
    seeds.add_argument("--split", help="the database's split (with --database)")
    seeds.add_argument("--count", type=int, required=True, help="how many starting structures to draw")
    seeds.add_argument("--seed", type=int, required=True, help="random seed of the draw")
    seeds.add_argument("--output", required=True, help="the starting structures (extxyz)")
    _add_limits(seeds, GEOMETRY_LIMITS, cutoff=True)  # --files: a structure beyond them stops the command
    seeds.set_defaults(func=_exploration_seeds)

    explore = commands.add_parser("explore", help="molecular dynamics with a committee, recording its uncertainty")
    explore.add_argument("committee", help="committee directory")
    explore.add_argument("--calibration", help="calibration.json of the committee's evaluation")
    explore.add_argument("--seeds", required=True, help="starting structures (extxyz)")
    explore.add_argument("--seed-index", type=int, required=True, help="which of --seeds to start from (from 0)")
    explore.add_argument("--temperature", type=float, required=True, help="temperature (K)")
    explore.add_argument("--trust-hi", type=float, required=True, help="stop above this maximum force spread "
                         "(max_force_std, eV/Å)")
    explore.add_argument("--random-seed", type=int, required=True, help="seed of the initial velocities and "
                         "Langevin's random forces")
    explore.add_argument("--trust-lo", type=float, default=0.0, help="the lower trust level (with --trust-scale "
                         "test_quantiles, whose levels are checked together)")
    _add_trust_scale(explore)
    _add_md_arguments(explore)
    explore.add_argument("--engine", choices=ENGINES, default="auto", help="who runs the MD: lammps (the committee's "
                         "exported files through the aenet/core plugin), ase, or auto (default): lammps where the "
                         "plugin is built and the files are exported, else ase")
    explore.add_argument("--ranks", type=int, default=1, help="MPI ranks of a LAMMPS exploration (default 1)")
    explore.add_argument("--output", required=True, help="trajectory (extxyz)")
    explore.add_argument("--summary", required=True, help="the trajectory's summary (JSON)")
    explore.set_defaults(func=_explore)

    select = commands.add_parser("select", help="candidates the committee can describe, then diverse frames of them")
    select.add_argument("trajectories", nargs="+", help="trajectories of explore (extxyz)")
    select.add_argument("--database", nargs="+", required=True, help="what is labelled already (every shard); a "
                        "frame whose labelling failed in a shard's round (its labelling.json and selected.extxyz "
                        "beside it) is never selected again")
    select.add_argument("--trust-lo", type=float, required=True, help="frames below this max_force_std (eV/Å) are "
                        "accurate; with --rule trust_window, candidates are at least this")
    select.add_argument("--trust-hi", type=float, required=True, help="candidates are at most this (eV/Å)")
    select.add_argument("--rule", choices=SELECTION_RULES, default=DEFAULT_SELECTION, help="farthest_point "
                        "(default): farthest-point sampling among the frames up to --trust-hi; trust_window: among "
                        "those from --trust-lo to --trust-hi")
    _add_trust_scale(select)
    select.add_argument("--max-frames", type=int, required=True, help="how many frames to select at most")
    select.add_argument("--candidates", required=True, help="the candidates (extxyz)")
    select.add_argument("--selected", required=True, help="the selected frames (extxyz)")
    select.add_argument("--report", required=True, help="the selection's report (JSON)")
    _add_limits(select, GEOMETRY_LIMITS)  # a frame beyond them is never selected
    select.set_defaults(func=_select)


def _positive_seconds(text: str) -> float:
    seconds = float(text)
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds; got {text!r}")
    return seconds


def _fraction(text: str) -> float:
    fraction = float(text)
    if not 0 <= fraction <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1; got {text!r}")
    return fraction


def _add_labelling(commands) -> None:
    label = commands.add_parser("label", help="label one batch of selected frames with an ASE calculator")
    label.add_argument("selected", help="the selected frames (extxyz)")
    label.add_argument("--batch", type=int, required=True, help="frames batch*batch_size onwards")
    label.add_argument("--batch-size", type=int, required=True, help="frames per batch")
    calculator = label.add_mutually_exclusive_group(required=True)
    calculator.add_argument("--calculator-settings", metavar="FILE", help="YAML or JSON file with calculator (an "
                            "import path), kwargs (its keyword arguments) and optionally retries (a list of "
                            "overrides of kwargs, tried in turn after a failed calculation), as in "
                            "active_learning.label of config.yaml; the workflow writes results/<run>/active_learning/calculator.yaml")
    calculator.add_argument("--calculator", help="import path of a calculator that needs no keyword arguments, "
                            "e.g. ase.calculators.emt.EMT")
    label.add_argument("--timeout", type=_positive_seconds, metavar="SECONDS", help="time limit of each "
                       "calculation (attempt); one that runs longer is killed, with whatever it started, and "
                       "fails (default: none)")
    label.add_argument("--workdir", required=True, help="finished calculations are kept here")
    label.add_argument("--output", required=True, help="the labelled frames (extxyz)")
    label.add_argument("--report", required=True, help="each frame's outcome (JSON)")
    _add_limits(label, (*LABEL_LIMITS, *GEOMETRY_LIMITS), cutoff=True)  # a frame beyond them fails
    label.set_defaults(func=_label)

    merge = commands.add_parser("merge-labels", help="one file and one report of a round's labelling batches")
    merge.add_argument("labelled", nargs="*", help="the batches' labelled frames (extxyz)")
    merge.add_argument("--reports", nargs="*", default=[], help="the batches' reports (JSON)")
    merge.add_argument("--output", required=True, help="all labelled frames (extxyz)")
    merge.add_argument("--report", required=True, help="the round's labelling report (JSON)")
    merge.add_argument("--max-failed-fraction", type=_fraction, metavar="F", default=DEFAULT_MAX_FAILED_FRACTION,
                       help="fail, writing nothing, when more than this fraction of the round's frames failed to "
                       f"label (default {DEFAULT_MAX_FAILED_FRACTION:g}; 1: never)")
    merge.set_defaults(func=_merge_labels)


def _add_reports(commands) -> None:
    summary = commands.add_parser("round-summary", help="one round's counts, uncertainties and test errors")
    summary.add_argument("--round", type=int, required=True, help="the round's number (0: before any labelling)")
    summary.add_argument("--evaluation", help="the evaluation summary.json of the committee the round trained "
                         "(none where the loop stopped)")
    summary.add_argument("--explorations", nargs="+", help="the round's trajectory summaries (JSON)")
    summary.add_argument("--selection", help="the round's selection report (JSON)")
    summary.add_argument("--labelling", help="the round's labelling report (JSON)")
    summary.add_argument("--converged-fraction", type=float, help="a loop that stops by itself: the fraction of "
                         "explored frames below trust_lo at which it stops (default: a fixed number of rounds)")
    summary.add_argument("--output", required=True, help="the round's summary (JSON)")
    summary.set_defaults(func=_round_summary)

    report = commands.add_parser("active-learning-report", help="the run's table and plots over its rounds")
    report.add_argument("summaries", nargs="+", help="the rounds' summaries (JSON), in order")
    report.add_argument("--trust-lo", type=float, required=True, help="the trust window's lower end (eV/Å)")
    report.add_argument("--trust-hi", type=float, required=True, help="the trust window's upper end (eV/Å)")
    report.add_argument("--title", help="heading of the figure, e.g. the run's name (default: none)")
    report.add_argument("--table", required=True, help="one row per round (CSV)")
    report.add_argument("--plot", required=True, help="the rounds' plots (PNG/PDF/SVG)")
    report.set_defaults(func=_report)


def add_commands(commands) -> None:
    """The loop's commands, added to the ``aenet-core`` subparsers ``commands``."""
    _add_exploration(commands)
    _add_labelling(commands)
    _add_reports(commands)
