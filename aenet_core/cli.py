"""Command-line entry point ``aenet-core``: the subcommands the workflow rules call, and ``predict``.

Building the parser imports nothing heavy: each command imports torch, ASE, h5py, pandas or matplotlib
when it runs, so that ``--help`` answers at once.
"""
import argparse
import logging
import sys
import time
import traceback
import warnings
from pathlib import Path

import aenet_core
from aenet_core.active_learning.commands import add_commands as add_active_learning_commands
from aenet_core.allocator import keep_freed_memory
from aenet_core.command_line import add_limit_arguments, failure_line, given_limits, read_settings
from aenet_core.data.hdf5.schema import DEFAULT_STORAGE_DTYPE
from aenet_core.data.limits import LABEL_LIMITS, LIMITS
from aenet_core.export.nn_ascii_file import ACTIVATION_CODES, DEFAULT_PREFIX
from aenet_core.rules import DEFAULT_MIN_CUTOFF, DEFAULT_TESTPERCENT

# Library defaults the help shows, copied from modules that import ASE or torch so that --help needs neither
# (tests/test_cli.py keeps each equal to its source).
EXAMPLE_SIZE, EXAMPLE_SEED = 24, 0  # aenet_core.example_data
METHODS = ("regression", "reference_compounds", "fixed")  # aenet_core.reference_energies
DEFAULT_N_UNCERTAIN = 10  # aenet_core.evaluation
MEMBER_SETTINGS = ("architecture", "training")  # a run's keys in config.yaml, the same shape
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))  # ASE's order of the six stress components
VOIGT_NAMES = ("xx", "yy", "zz", "yz", "xz", "xy")


def _example_data(args):
    from aenet_core.example_data import make_cuau_structures
    from aenet_core.io import write_extxyz

    structures = make_cuau_structures(**_given(n_structures=args.n_structures, seed=args.seed))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_extxyz(args.output, structures)
    print(f"wrote {len(structures)} structures ({sum(s.n_atoms for s in structures)} atoms) to {args.output}")


def _featurize(args):
    import numpy as np
    import torch
    from tqdm import tqdm

    from aenet_core.data.sources import iter_entries
    from aenet_core.descriptor import BatchedFeaturizer, structure_batch
    from aenet_core.files import atomic_write

    structures = [entry.structure for entry in iter_entries(args.inputs)]
    if not structures:
        raise SystemExit(f"no structures found in {args.inputs}")
    descriptor = _descriptor(args, args.species or sorted({s for st in structures for s in st.species}))
    featurizer = BatchedFeaturizer(descriptor)
    features, started = [], time.perf_counter()
    chunks = range(0, len(structures), args.batch_size)
    for start in tqdm(chunks, desc="featurize", unit="batch", disable=not sys.stderr.isatty()):
        chunk = structures[start: start + args.batch_size]
        f, _ = featurizer(*structure_batch(chunk))
        features.append(f)
    seconds = time.perf_counter() - started
    features = torch.cat(features).numpy()
    n_atoms = np.array([s.n_atoms for s in structures])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.output, binary=True) as handle:
        np.savez(handle, features=features, n_atoms=n_atoms, names=np.array([s.name or "" for s in structures]),
                 species=np.array(descriptor.species))
    print(f"{len(structures)} structures, {len(features)} atoms, {descriptor.n_features} features per atom, "
          f"{len(features) / seconds:.0f} atoms/s -> {args.output}")


def _descriptor(args, species):
    from aenet_core.descriptor import ChebyshevDescriptor

    return ChebyshevDescriptor(species, args.rad_order, args.rad_cutoff, args.ang_order, args.ang_cutoff,
                               **_given(min_cutoff=args.min_cutoff))


def _given(**options) -> dict:
    """The options given on the command line; the others keep the library's defaults."""
    return {name: value for name, value in options.items() if value is not None}


def _energy_pairs(pairs) -> dict:
    """SYMBOL=ENERGY arguments as a dict."""
    out = {}
    for pair in pairs or []:
        symbol, _, value = pair.partition("=")
        try:
            out[symbol] = float(value)
        except ValueError:
            raise SystemExit(f"--fixed expects SYMBOL=ENERGY (eV); got {pair!r}") from None
    return out


def _source_files(args) -> list:
    """The structure files named on the command line, then those listed in --sources-from (one per line)."""
    paths = list(args.inputs)
    if args.sources_from:
        listing = Path(args.sources_from)
        if not listing.is_file():
            raise SystemExit(f"--sources-from {listing}: no such file (the workflow writes it when it starts, "
                             "which --no-hooks skips)")
        paths += [line for line in listing.read_text(encoding="utf-8").splitlines() if line]
    if not paths:
        raise SystemExit("no structure files: name them, or list them in a file given as --sources-from")
    return paths


def _reference_energies(args):
    from aenet_core.reference_energies import ReferenceEnergies, iter_composition_energy_samples_from_files

    samples = iter_composition_energy_samples_from_files(_source_files(args), limits=given_limits(args))
    fixed = _energy_pairs(args.fixed) or None
    if args.method == "fixed":
        if not fixed:
            raise SystemExit("--method fixed needs --fixed SYMBOL=ENERGY for every species of the data")
        result = ReferenceEnergies.from_fixed(samples, atomic_energies=fixed)
    elif args.method == "reference_compounds":
        if not args.compounds:
            raise SystemExit("--method reference_compounds needs --compounds (e.g. --compounds TiO2 Ti)")
        result = ReferenceEnergies.from_reference_compounds(samples, reference_compounds=args.compounds,
                                                            fixed_atomic_energies=fixed)
    else:
        if args.subset_fraction is not None:
            samples = list(samples)
        result = ReferenceEnergies.from_regression(samples, fixed_atomic_energies=fixed, subset_size=args.subset_size,
                                                   subset_fraction=args.subset_fraction, random_seed=args.seed)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    result.save(args.output)
    meta = result.metadata
    n_used = meta.get("n_samples_used", len(meta.get("selected_reference_samples", ())))
    print(f"{result.method}: {result.atomic_energies} from {n_used} samples, "
          f"rmse {meta['rmse']:.4g} eV -> {args.output}")


def _build_database(args):
    from aenet_core.data import HDF5StructureDataset
    from aenet_core.data.sources import iter_entries
    from aenet_core.reference_energies import ReferenceEnergies

    references = ReferenceEnergies.load(args.reference_energies).atomic_energies if args.reference_energies else {}
    # An empty file is ASE's error, but with --allow-empty it is a source of no structures.
    inputs = [path for path in _source_files(args) if not (args.allow_empty and Path(path).stat().st_size == 0)]
    species = args.species or sorted({x for entry in iter_entries(inputs) for x in entry.structure.species})
    started = time.perf_counter()
    db = HDF5StructureDataset(_descriptor(args, species), args.output, sources=inputs, mode="build",
                              max_energy=args.max_energy, max_forces=args.max_forces, atomic_energies=references,
                              compression=args.compression, limits=given_limits(args))
    with warnings.catch_warnings():
        if args.allow_empty:  # asked for: no warning
            warnings.filterwarnings("ignore", message=".*no structure was left")
        db.build_database(show_progress=False, build_workers=args.workers, persist_features=True,
                          persist_force_derivatives=not args.no_derivatives, **_given(storage_dtype=args.storage_dtype))
    if not len(db) and not args.allow_empty:
        db.close()
        Path(args.output).unlink()
        raise SystemExit(f"{args.output}: no structure was left to store (all sources empty or filtered out); "
                         f"pass --allow-empty to write a database of no structures")
    print(f"{len(db)} structures ({db._attrs['n_filtered']} filtered out) in {time.perf_counter() - started:.1f} s "
          f"-> {args.output} ({Path(args.output).stat().st_size / 1e6:.1f} MB)")


def _split(args):
    if args.extend is None and args.split_seed is None:
        raise SystemExit("split needs --split-seed (or --extend BASE_SPLIT, to extend the split of the first "
                         "database to the others)")
    if args.extend is not None and (args.split_seed is not None or args.testpercent is not None):
        raise SystemExit("--extend keeps the base split's split_seed and testpercent: give no --split-seed or "
                         "--testpercent with it")
    from aenet_core.data import ShardedDataset, open_databases
    from aenet_core.split import Split

    with open_databases(args.database) as db:
        if args.extend is None:
            testpercent = DEFAULT_TESTPERCENT if args.testpercent is None else args.testpercent
            split = Split.create(db, testpercent, args.split_seed)
        else:
            base_db = db.shards[0] if isinstance(db, ShardedDataset) else db
            split = Split.extend(Split.load(args.extend), base_db, db)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    split.save(args.output)
    extended = "" if args.extend is None else f", extending {args.extend}"
    print(f"{len(split.train)} train / {len(split.test)} test (split_seed {split.split_seed}{extended}) -> "
          f"{args.output}")


def _layer(text) -> tuple:
    """NODES:ACTIVATION (e.g. 10:tanh) as (nodes, activation)."""
    nodes, _, activation = text.partition(":")
    if not nodes.isdigit() or not activation:
        raise argparse.ArgumentTypeError(f"expected NODES:ACTIVATION, e.g. 10:tanh; got {text!r}")
    return int(nodes), activation


def _architecture(layers, species, where) -> dict:
    """{species: [(nodes, activation), ...]} from one list of hidden layers for every species, or a mapping."""
    per_species = layers if isinstance(layers, dict) else dict.fromkeys(species, layers)
    try:
        return {name: [(nodes, activation) for nodes, activation in hidden] for name, hidden in per_species.items()}
    except (TypeError, ValueError):
        raise SystemExit(f"{where}: expected hidden layers [[nodes, activation], ...], or a mapping of species to "
                         f"them; got {layers!r}") from None


def _member_settings(args) -> tuple:
    """(hidden layers, where they were given, training settings) of a member, from --settings and --layers."""
    settings = read_settings(args.settings, MEMBER_SETTINGS) if args.settings else {}
    layers = args.layers or settings.get("architecture")
    if layers is None:
        raise SystemExit("train-member needs the hidden layers: --layers (e.g. --layers 10:tanh 10:tanh) or "
                         "architecture in --settings")
    training = settings.get("training") or {}
    if not isinstance(training, dict):
        raise SystemExit(f"{args.settings}: training must be a mapping of training settings; got {training!r}")
    return layers, "--layers" if args.layers else f"{args.settings}: architecture", training


def _train_member(args):
    from aenet_core.training import distributed

    try:
        distributed.launch(_member_process, args.nproc, args.device, args,
                           bool(logging.getLogger("aenet_core").handlers))
    except (distributed.DistributedSetupError, distributed.ProcessFailed) as error:
        raise SystemExit(str(error)) from None


def _member_process(device, args, log_progress=False):
    """train-member in one process: the only one, or one of a data-parallel group (``device`` its own)."""
    import torch

    from aenet_core.committee import train_member
    from aenet_core.committee.member import with_data_defaults
    from aenet_core.data import open_databases
    from aenet_core.potential import TorchANNPotential
    from aenet_core.split import Split
    from aenet_core.training.config import TorchTrainingConfig
    from aenet_core.training.distributed import data_parallel, is_main

    parallel, main = data_parallel(), is_main()
    if log_progress and main and not logging.getLogger("aenet_core").handlers:  # a process launch started
        _log_to_stderr()
    elif not main:  # the group's progress lines and warnings (the same in every process) come from process 0
        logging.getLogger("aenet_core").setLevel(logging.WARNING)
        warnings.simplefilter("ignore")
    layers, where, training = _member_settings(args)
    db, split = open_databases(args.database), Split.load(args.split)
    training = with_data_defaults(training, db, split.train, announce=main)  # every process trains alike
    config = TorchTrainingConfig.from_dict({"show_progress": False, **training, "atomic_energies": None})
    if args.threads:
        torch.set_num_threads(args.threads)
    potential = TorchANNPotential(_architecture(layers, db.descriptor.species, where), db.descriptor)
    seed = config.seed if args.seed is None else args.seed
    if parallel is not None:  # every process draws the same batches; unseeded, process 0 draws the seed
        seed = parallel.shared_seed(seed)
    summary = train_member(potential, args.output_dir, config, db, split,
                           member_index=args.member_index, seed=seed, device=device,
                           initial_model=args.initial_model)
    if summary["status"] != "completed":
        raise SystemExit(f"member {args.member_index} failed: {summary['error']}")
    if main:
        print(f"member {args.member_index} (seed {seed}): {_final_errors(summary['metrics'])} -> {args.output_dir}")


def _final_errors(metrics) -> str:
    """'final RMSE train/test: energy a / b eV/atom, forces c / d eV/Å' (the errors a member has)."""
    def value(key):
        return "n/a" if metrics.get(key) is None else f"{metrics[key]:.4g}"

    parts = [f"{name} {value(f'final_RMSE{key}_train')} / {value(f'final_RMSE{key}_test')} {unit}"
             for name, key, unit in (("energy", "", "eV/atom"), ("forces", "_force", "eV/Å"),
                                     ("stress", "_stress", "eV/Å³"))
             if metrics.get(f"final_RMSE{key}_train") is not None]
    return "final RMSE train / test: " + ", ".join(parts)


def _aggregate(args):
    from aenet_core.committee import TorchCommitteeTrainResult, aggregate_committee

    path = aggregate_committee(args.committee_dir, member_dirs=args.members)
    result = TorchCommitteeTrainResult.from_metadata(path)
    if args.table:
        result.write_table(args.table)
    if args.plot:
        result.plot_learning_curves(args.plot, title=args.title)
    print(result)


def _export(args):
    from aenet_core.committee import TorchCommitteePotential

    committee = TorchCommitteePotential.from_directory(args.committee)
    members = committee.to_aenet_ascii(args.output_dir, **_given(prefix=args.prefix))
    print(f"{len(members)} members x {len(committee.descriptor.species)} species -> {args.output_dir}")


def _evaluate(args):
    from aenet_core.evaluation import evaluate_committee

    evaluate_committee(args.committee_dir, args.database, args.split, args.output_dir, title=args.title,
                       lammps_models=args.lammps_models, **_given(n_uncertain=args.n_uncertain))


def _convert_model(args):
    from aenet_core.model.checkpoint import HEADER_KEYS, read_model_file, write_model_file

    payload = read_model_file(args.input)  # plain data only; older schemas are upgraded on reading
    write_model_file(args.output, {k: v for k, v in payload.items() if k not in HEADER_KEYS})
    print(f"{args.input} -> {args.output} (model schema {payload['schema_version']})")


def _species_files(folder) -> dict:
    from aenet_core.export.nn_ascii_file import species_files

    files = species_files(folder)
    if not files:
        raise SystemExit(f"{folder}: neither a committee (no committee_metadata.json) nor .nn.ascii or .nn files")
    return files


def _load_predictor(path, device, calibration):
    """A committee (a directory with committee_metadata.json, or that file, or a workflow run's folder with its
    committee/), a potential from a folder of .nn.ascii (or binary .nn) files, or a potential from a model file."""
    from aenet_core.committee import METADATA_FILE, TorchCommitteePotential
    from aenet_core.potential import TorchANNPotential

    path = Path(path)
    if (path / "committee" / METADATA_FILE).is_file():  # results/<run> or results/<run>/round_NN
        path = path / "committee"
    if path.name == METADATA_FILE or (path / METADATA_FILE).is_file():
        return TorchCommitteePotential.from_directory(path, device=device, calibration=calibration)
    if calibration is not None:
        raise SystemExit(f"--calibration applies to a committee; {path} is a single potential")
    if path.is_dir():
        return TorchANNPotential.from_aenet(_species_files(path), device=device)
    return TorchANNPotential.from_file(path, device=device)


def _voigt(stress):
    """A 3x3 stress as (xx, yy, zz, yz, xz, xy), ASE's order; None stays None."""
    import numpy as np

    return None if stress is None else np.array([stress[i][j] for i, j in VOIGT], dtype=float)


def _potential_values(out, i) -> dict:
    return {"energy": out.total_energy[i], "forces": None if out.forces is None else out.forces[i],
            "stress": _voigt(out.stress[i]) if out.stress is not None else None}


def _committee_values(prediction, i) -> dict:
    """The committee's mean and spreads for structure ``i`` (force_std: per atom, the norm over x, y, z of
    the members' component std)."""
    result = prediction[i]
    values = {"energy": result.energy, "forces": result.forces, "stress": _voigt(result.stress),
              "energy_std": result.energy_std}
    if prediction.calibration_factor is not None:
        values["energy_std_calibrated"] = prediction.calibration_factor * result.energy_std
    if result.force_std is not None:
        values["force_std"], values["max_force_std"] = result.force_std, float(prediction.max_force_std[i])
    return values


def _csv_row(entry, values) -> dict:
    import numpy as np

    n_atoms = entry.structure.n_atoms
    row = {"identifier": entry.identifier, "n_atoms": n_atoms, "energy": values["energy"],
           "energy_per_atom": values["energy"] / n_atoms}
    if values["forces"] is not None:
        row["max_force"] = float(np.linalg.norm(values["forces"], axis=1).max())
    row |= {name: values[name] for name in ("energy_std", "energy_std_calibrated", "max_force_std") if name in values}
    if values["stress"] is not None:
        row |= {f"stress_{name}": value for name, value in zip(VOIGT_NAMES, values["stress"])}
    return row


def _write_csv(path, entries, values) -> None:
    import csv

    from aenet_core.files import atomic_write

    rows = [_csv_row(entry, v) for entry, v in zip(entries, values)]
    columns = list(dict.fromkeys(name for row in rows for name in row))  # the first row's order, then the rest
    with atomic_write(path) as handle:
        writer = csv.DictWriter(handle, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _frame(entry, values, prefix, as_labels):
    """The structure (without its own labels) with the predictions; as its labels only with ``as_labels``."""
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = entry.structure.without_labels(name=entry.identifier).to_ase()
    energy, forces, stress = values["energy"], values["forces"], values["stress"]
    if as_labels:
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
    else:
        atoms.info[f"{prefix}_energy"] = energy
        if forces is not None:
            atoms.arrays[f"{prefix}_forces"] = forces
        if stress is not None:
            atoms.info[f"{prefix}_stress"] = stress
    atoms.info |= {name: values[name] for name in ("energy_std", "energy_std_calibrated", "max_force_std")
                   if name in values}
    if "force_std" in values:
        atoms.arrays["force_std"] = values["force_std"]
    return atoms


def _write_extxyz(path, frames, as_labels) -> None:
    import ase.io

    from aenet_core.files import atomic_write

    with atomic_write(path) as handle:
        ase.io.write(handle, frames, format="extxyz", write_results=as_labels)


def _write_predictions(path, entries, values, committee, as_labels) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if path.endswith(".csv"):
        _write_csv(path, entries, values)
    else:
        prefix = "committee" if committee else "predicted"
        _write_extxyz(path, [_frame(e, v, prefix, as_labels) for e, v in zip(entries, values)], as_labels)


def _predict(args):
    if Path(args.output).suffix not in (".csv", ".extxyz"):
        raise SystemExit(f"--output must end in .csv or .extxyz; got {args.output}")
    if args.as_labels and Path(args.output).suffix != ".extxyz":
        raise SystemExit("--as-labels applies to an .extxyz output")
    from aenet_core.committee import TorchCommitteePotential
    from aenet_core.data.sources import iter_entries

    model = _load_predictor(args.model, args.device, args.calibration)
    entries = list(iter_entries(args.inputs))
    if not entries:
        raise SystemExit(f"no structures in {' '.join(args.inputs)}")
    derivatives = not args.energy_only
    prediction = model.predict([e.structure for e in entries], eval_forces=derivatives, eval_stress=derivatives,
                               batch_size=args.batch_size)
    committee = isinstance(model, TorchCommitteePotential)
    values = [(_committee_values if committee else _potential_values)(prediction, i) for i in range(len(entries))]
    _write_predictions(args.output, entries, values, committee, args.as_labels)
    kind = f"a committee of {len(model.members)}" if committee else "one potential"
    print(f"{len(entries)} structures ({sum(e.structure.n_atoms for e in entries)} atoms), {kind} -> {args.output}")


def _add_descriptor_arguments(parser):
    parser.add_argument("--species", nargs="+", help="descriptor species, in order (Fortran aenet's ENV order; "
                        "default: the symbols of the data, sorted)")
    parser.add_argument("--rad-order", type=int, required=True, help="radial Chebyshev order (Fortran radial_N)")
    parser.add_argument("--rad-cutoff", type=float, required=True, help="radial cutoff (Å)")
    parser.add_argument("--ang-order", type=int, required=True, help="angular Chebyshev order (Fortran angular_N)")
    parser.add_argument("--ang-cutoff", type=float, required=True, help="angular cutoff (Å)")
    parser.add_argument("--min-cutoff", type=float, help="neighbours closer than this are ignored (Å; default: "
                        f"the descriptor's, {DEFAULT_MIN_CUTOFF})")


DESCRIPTION = ("Train aenet-style machine-learning interatomic potentials (the steps the workflow runs) and "
               "predict with them. 'aenet-core COMMAND --help' describes a command.")
DATABASES_HELP = "database file(s); several are read as one dataset, shard by shard in the order given"
STRUCTURES_HELP = "structure files (XSF, extxyz, anything ASE reads; every frame)"
SOURCES_FROM_HELP = ("a text file listing structure files, one path per line (relative ones from the current "
                     "directory), read after FILES: for more files than a command line holds")
DEVICE_HELP = "cpu, cuda or cuda:N"
MEMBER_SETTINGS_HELP = ("YAML or JSON file with the keys of a run in config.yaml: architecture (hidden layers "
                        "[[nodes, activation], ...] for every species, or {species: layers}) and training "
                        "(TorchTrainingConfig fields; default: the library's). The workflow writes "
                        "results/<run>/committee/settings.yaml, the record of what its members trained with")
PREDICT_DESCRIPTION = (
    "Predictions of a potential or committee for every frame of FILES. OUT.csv: one row per structure: identifier (file#frame=N), n_atoms, energy (eV), energy_per_atom "
    "(eV/atom), max_force (the largest force on an atom, eV/Å), stress_xx, _yy, _zz, _yz, _xz, _xy (eV/Å³, "
    "structures periodic in 3D); for a committee also energy_std and energy_std_calibrated (eV; with a "
    "calibration) and max_force_std (eV/Å). OUT.extxyz: the structures, without their own labels, with "
    "predicted_energy, predicted_forces and predicted_stress (Voigt order xx yy zz yz xz xy), for a committee "
    "committee_energy, committee_forces and committee_stress with energy_std, energy_std_calibrated, force_std "
    "(per atom: the norm over x, y, z of the members' std) and max_force_std, never as the energy, forces "
    "and stress labels unless --as-labels.")


def _add_example_data(commands):
    example = commands.add_parser("example-data", help="write the built-in Cu-Au EMT data set (extxyz)")
    example.add_argument("--output", required=True, help="where to write the structures (extxyz)")
    example.add_argument("--n-structures", type=int, help=f"how many structures (default {EXAMPLE_SIZE})")
    example.add_argument("--seed", type=int, help=f"random seed of the cells and rattling (default {EXAMPLE_SEED})")
    example.set_defaults(func=_example_data)


def _add_featurize(commands):
    featurize = commands.add_parser("featurize", help="raw Chebyshev features of structure files (npz)")
    featurize.add_argument("inputs", nargs="+", help=STRUCTURES_HELP)
    featurize.add_argument("--output", required=True, help="features file (npz: features, n_atoms, names, species)")
    _add_descriptor_arguments(featurize)
    featurize.add_argument("--batch-size", type=int, default=32, help="structures featurized together (default 32)")
    featurize.set_defaults(func=_featurize)


def _add_reference_energies(commands):
    refs = commands.add_parser("reference-energies", help="fit atomic reference energies (JSON)")
    refs.add_argument("inputs", nargs="*", metavar="FILES", help="structure files with total energies (eV)")
    refs.add_argument("--sources-from", metavar="LIST", help=SOURCES_FROM_HELP)
    refs.add_argument("--output", required=True, help="reference energies file (JSON)")
    refs.add_argument("--method", choices=METHODS, default="regression", help="regression (least squares over the "
                      "compositions; default), reference_compounds (from --compounds) or fixed (the --fixed values)")
    refs.add_argument("--compounds", nargs="+", help="reference compounds as formulas, e.g. TiO2 Ti "
                      "(reference_compounds)")
    refs.add_argument("--fixed", nargs="+", metavar="SYMBOL=EV", help="atomic energies (eV) held fixed in the fit "
                      "(with --method fixed: the values of every species, nothing fitted)")
    subset = refs.add_mutually_exclusive_group()
    subset.add_argument("--subset-size", type=int, help="fit on a random subset of this many structures")
    subset.add_argument("--subset-fraction", type=float, help="fit on a random fraction of the structures, in (0, 1]")
    refs.add_argument("--seed", type=int, help="seed of the subset's reservoir sampling")
    add_limit_arguments(refs, LABEL_LIMITS)
    refs.set_defaults(func=_reference_energies)


def _add_build_database(commands):
    build = commands.add_parser("build-database", help="HDF5 database with persisted features and derivatives")
    build.add_argument("inputs", nargs="*", metavar="FILES", help=STRUCTURES_HELP)
    build.add_argument("--sources-from", metavar="LIST", help=SOURCES_FROM_HELP)
    build.add_argument("--output", required=True, help="database file (HDF5)")
    _add_descriptor_arguments(build)
    build.add_argument("--reference-energies", help="JSON from reference-energies (atomic energies for the filter "
                       "and for training)")
    build.add_argument("--max-energy", type=float, help="drop structures above this referenced energy (eV/atom)")
    build.add_argument("--max-forces", type=float, help="drop structures with a force component above this (eV/Å)")
    build.add_argument("--workers", type=int, default=0, help="featurizing processes (0: in this process)")
    build.add_argument("--storage-dtype", choices=["float64", "float32"], help="precision of the stored features "
                       f"and derivatives (default {DEFAULT_STORAGE_DTYPE})")
    build.add_argument("--compression", choices=["zlib", "gzip", "lzf"],
                       help="HDF5 compression (default: none; zlib and gzip are the same filter, level 5)")
    build.add_argument("--no-derivatives", action="store_true", help="persist features only (energy training)")
    build.add_argument("--allow-empty", action="store_true", help="empty input files and a database of no "
                       "structures are not an error (an active-learning round whose every labelling failed)")
    add_limit_arguments(build, LIMITS)
    build.set_defaults(func=_build_database)


def _add_split(commands):
    split = commands.add_parser("split", help="train/test split file of a database (or of several as shards)")
    split.add_argument("database", nargs="+", help=DATABASES_HELP)
    split.add_argument("--output", required=True, help="split file (JSON)")
    split.add_argument("--testpercent", type=float, help="percentage of the entries in the test set, in [0, 100) "
                       f"(default {DEFAULT_TESTPERCENT:g})")
    split.add_argument("--split-seed", type=int, help="seed of the shuffle (required without --extend)")
    split.add_argument("--extend", metavar="BASE_SPLIT", help="a split of the first database: its entries keep "
                       "their side, those of the other databases all train (the test set stays the base's)")
    split.set_defaults(func=_split)


def _add_train_member(commands):
    member = commands.add_parser("train-member", help="train one committee member from a database and a split")
    member.add_argument("--database", nargs="+", required=True, help=DATABASES_HELP)
    member.add_argument("--split", required=True, help="split file (JSON) of the database")
    member.add_argument("--settings", metavar="FILE", help=MEMBER_SETTINGS_HELP)
    member.add_argument("--layers", nargs="+", type=_layer, metavar="NODES:ACTIVATION", help="hidden layers for "
                        f"every species, e.g. 10:tanh 10:tanh (activations {', '.join(ACTIVATION_CODES)}); replaces the "
                        "architecture of --settings")
    member.add_argument("--member-index", type=int, required=True, help="the member's number in the committee")
    member.add_argument("--seed", type=int, help="random seed of the member's initial weights and batches "
                        "(default: the seed of --settings' training, else unseeded)")
    member.add_argument("--device", default="cpu", help=f"{DEVICE_HELP} (default cpu)")
    member.add_argument("--threads", type=int, help="torch CPU threads (of each process; default: torch's)")
    member.add_argument("--nproc", type=int, default=1, help="processes that share each batch (data parallel: the "
                        "same weights as one process); with --device cuda one GPU each (cuda:0 to cuda:N-1, NCCL), "
                        "on the CPU gloo processes; under torchrun leave it out (default 1)")
    member.add_argument("--initial-model", help="start from this model file's weights and normalisation (warm "
                        "start; default: fresh weights from --seed)")
    member.add_argument("--output-dir", required=True, help="the member folder (member_XXX)")
    member.set_defaults(func=_train_member)


TITLE_HELP = "heading of every figure, e.g. the run's name (default: none)"


def _add_committee_commands(commands):
    aggregate = commands.add_parser("aggregate", help="committee_metadata.json from member folders")
    aggregate.add_argument("committee_dir", help="the committee folder; committee_metadata.json is written there")
    aggregate.add_argument("--members", nargs="+", help="member folders to include (default: all member_*)")
    aggregate.add_argument("--table", help="per-member CSV table")
    aggregate.add_argument("--plot", help="learning curves of every member (PNG/PDF/SVG)")
    aggregate.add_argument("--title", help=TITLE_HELP)
    aggregate.set_defaults(func=_aggregate)

    export = commands.add_parser("export", help="each committee member as aenet .nn.ascii and binary .nn files")
    export.add_argument("committee", help="committee directory or its committee_metadata.json")
    export.add_argument("--output-dir", required=True, help="where member_XXX/ and manifest.json go")
    export.add_argument("--prefix", help=f"file names <prefix>.<Species>.nn.ascii and .nn (default {DEFAULT_PREFIX})")
    export.set_defaults(func=_export)

    evaluate = commands.add_parser("evaluate", help="committee predictions, uncertainty and calibration on the "
                                   "test split")
    evaluate.add_argument("committee_dir", help="committee directory (with committee_metadata.json)")
    evaluate.add_argument("--database", nargs="+", required=True, help=DATABASES_HELP)
    evaluate.add_argument("--split", required=True, help="split file (JSON); its test entries are evaluated")
    evaluate.add_argument("--output-dir", required=True, help="where predictions.csv, summary.json and the "
                          "plots go (calibration.json goes into the committee directory)")
    evaluate.add_argument("--title", help=TITLE_HELP)
    evaluate.add_argument("--lammps-models", metavar="DIR", help="the committee's export folder: run the evaluated "
                          "structures through LAMMPS too and record the largest differences (lammps_check in "
                          "summary.json; skipped, with the reason, when the plugin is not built)")
    evaluate.add_argument("--n-uncertain", type=int, help=f"how many most uncertain structures to list (default "
                          f"{DEFAULT_N_UNCERTAIN})")
    evaluate.set_defaults(func=_evaluate)


def _add_predict(commands):
    predict = commands.add_parser("predict", help="energies, forces, stresses (and a committee's spreads) of "
                                  "structure files, as CSV or extxyz", description=PREDICT_DESCRIPTION)
    predict.add_argument("model", metavar="POTENTIAL_OR_COMMITTEE", help="a model file (model.pt), a committee "
                         "directory or its committee_metadata.json, a workflow run's folder (its committee/), or a "
                         "folder of .nn.ascii (or binary .nn) files, one per species (as export writes "
                         "ascii/member_XXX/)")
    predict.add_argument("inputs", nargs="+", metavar="FILES", help=STRUCTURES_HELP)
    predict.add_argument("--output", required=True, metavar="OUT", help="where to write the predictions: a .csv or "
                         ".extxyz file (see above)")
    predict.add_argument("--as-labels", action="store_true", help="extxyz: write the predictions as the "
                         "structures' energy, forces and stress labels (to train on them)")
    predict.add_argument("--calibration", metavar="FILE", help="a committee's calibration.json (from evaluate); "
                         "energy_std_calibrated is its factor times energy_std (default: the committee "
                         "directory's own calibration.json, if any)")
    predict.add_argument("--energy-only", action="store_true", help="energies and their spread only: no forces or "
                         "stresses (faster)")
    predict.add_argument("--device", help=f"{DEVICE_HELP} (default: where the model was saved, else cpu)")
    predict.add_argument("--batch-size", type=int, default=32, help="structures evaluated together (default 32)")
    predict.set_defaults(func=_predict)


def _lammps_input(args):
    from aenet_core.lammps import input_lines

    print("\n".join(input_lines(args.potential, args.elements)))


def _add_lammps_input(commands):
    lammps = commands.add_parser("lammps-input", help="the LAMMPS lines (plugin load, pair_style, pair_coeff) that "
                                 "load a potential or committee", description="Print the LAMMPS input lines that "
                                 "load the potential or committee in POTENTIAL with aenet_core's pair style "
                                 "aenet/core (built by 'make lammps'), for pasting into an input script.")
    lammps.add_argument("potential", metavar="POTENTIAL", help="a folder of species files (<prefix>.<El>.nn.ascii "
                        "or <El>.nn), an export folder with member_XXX/ folders (a committee), or a workflow "
                        "run's folder (its ascii/)")
    lammps.add_argument("--elements", nargs="+", metavar="EL", help="the element of each LAMMPS atom type, in type "
                        "order; NULL skips a type (default: the potential's species in its own order)")
    lammps.set_defaults(func=_lammps_input)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aenet-core", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {aenet_core.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_example_data, _add_featurize, _add_reference_energies, _add_build_database, _add_split,
                _add_train_member, _add_committee_commands, _add_predict, _add_lammps_input):
        add(commands)
    convert = commands.add_parser("convert-model", help="rewrite a model file or checkpoint in the current schema")
    convert.add_argument("input", help="model file or checkpoint (.pt) of any schema version")
    convert.add_argument("output", help="where to write it in the current schema")
    convert.set_defaults(func=_convert_model)
    add_active_learning_commands(commands)
    return parser


# Errors whose message names the file and what is wrong (classes by qualified name, so that telling them
# apart imports nothing): no traceback above the failure line.
USER_ERRORS = ("aenet_core.files.FileFormatError", "aenet_core.io.common.StructureFileError",
               "aenet_core.export.nn_ascii_file.NNAsciiError", "aenet_core.lammps.LammpsError",
               "aenet_core.data.hdf5.footprint.ResourceError", "builtins.FileNotFoundError")


def _is_user_error(error) -> bool:
    return any(f"{cls.__module__}.{cls.__qualname__}" in USER_ERRORS for cls in type(error).__mro__)


def _log_to_stderr() -> None:
    """The library's progress lines (logger aenet_core, aenet_core.progress) on stderr: a job's log."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("aenet_core")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _execute(args) -> None:
    keep_freed_memory()  # this process is ours: see aenet_core.allocator
    args.func(args)


def run(argv=None) -> None:
    """Run a command; its errors propagate (for Python callers and tests)."""
    _execute(build_parser().parse_args(argv))


def _fail(command, message, with_traceback) -> None:
    sys.stdout.flush()  # what the command printed comes first in a log of both streams
    if with_traceback:
        traceback.print_exc()
    print(failure_line(command, message), file=sys.stderr, flush=True)
    raise SystemExit(1)


def main(argv=None) -> None:
    """The ``aenet-core`` program: a failed command ends stderr with its failure line (``FAILURE_MARKER`` of
    aenet_core.command_line) and exits with status 1."""
    args = build_parser().parse_args(argv)
    _log_to_stderr()
    try:
        _execute(args)
    except SystemExit as stop:
        if stop.code in (None, 0):
            raise
        _fail(args.command, f"exit status {stop.code}" if isinstance(stop.code, int) else stop.code, False)
    except Exception as error:
        user = _is_user_error(error)
        _fail(args.command, (str(error) or type(error).__name__) if user else f"{type(error).__name__}: {error}",
              not user)


if __name__ == "__main__":
    main()
