"""Command-line entry point ``aenet-core``: the subcommands the workflow rules call."""
import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aenet_core.active_learning.commands import add_commands as add_active_learning_commands
from aenet_core.allocator import keep_freed_memory
from aenet_core.committee import TorchCommitteePotential, TorchCommitteeTrainResult, aggregate_committee, train_member
from aenet_core.data import HDF5StructureDataset, ShardedDataset, open_databases
from aenet_core.descriptor import DEFAULT_MIN_CUTOFF, BatchedFeaturizer, ChebyshevDescriptor, structure_batch
from aenet_core.evaluation import DEFAULT_N_UNCERTAIN, evaluate_committee
from aenet_core.example_data import EXAMPLE_SEED, EXAMPLE_SIZE, make_cuau_structures
from aenet_core.files import atomic_write
from aenet_core.data.hdf5.dataset import DEFAULT_STORAGE_DTYPE
from aenet_core.data.plausibility import LABEL_LIMITS, PlausibilityLimits
from aenet_core.data.sources import iter_entries
from aenet_core.export import DEFAULT_PREFIX
from aenet_core.io import write_extxyz
from aenet_core.model.checkpoint import HEADER_KEYS, read_model_file, write_model_file
from aenet_core.potential import TorchANNPotential
from aenet_core.reference_energies import METHODS, ReferenceEnergies, iter_composition_energy_samples_from_files
from aenet_core.split import DEFAULT_TESTPERCENT, Split
from aenet_core.training.config import TorchTrainingConfig


def _example_data(args):
    structures = make_cuau_structures(**_given(n_structures=args.n_structures, seed=args.seed))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_extxyz(args.output, structures)
    print(f"wrote {len(structures)} structures ({sum(s.n_atoms for s in structures)} atoms) to {args.output}")


def _featurize(args):
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


def _descriptor(args, species) -> ChebyshevDescriptor:
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


def _limits(args) -> PlausibilityLimits:
    """The plausibility limits, as the command line changes them."""
    return PlausibilityLimits(**_given(**{f.name: getattr(args, f.name, None) for f in fields(PlausibilityLimits)}))


def _reference_energies(args):
    samples = iter_composition_energy_samples_from_files(args.inputs, limits=_limits(args))
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
    print(f"{result.method}: {result.atomic_energies} from {meta['n_samples_used']} samples, "
          f"rmse {meta['rmse']:.4g} eV -> {args.output}")


def _build_database(args):
    references = ReferenceEnergies.load(args.reference_energies).atomic_energies if args.reference_energies else {}
    # An empty file is ASE's error, but with --allow-empty it is a source of no structures.
    inputs = [path for path in args.inputs if not (args.allow_empty and Path(path).stat().st_size == 0)]
    species = args.species or sorted({x for entry in iter_entries(inputs) for x in entry.structure.species})
    started = time.perf_counter()
    db = HDF5StructureDataset(_descriptor(args, species), args.output, sources=inputs, mode="build",
                              max_energy=args.max_energy, max_forces=args.max_forces, atomic_energies=references,
                              compression=args.compression, limits=_limits(args))
    db.build_database(show_progress=sys.stderr.isatty(), build_workers=args.workers, persist_features=True,
                      persist_force_derivatives=not args.no_derivatives, allow_empty=args.allow_empty,
                      **_given(storage_dtype=args.storage_dtype))
    print(f"{len(db)} structures ({db._attrs['n_filtered']} filtered out) in {time.perf_counter() - started:.1f} s "
          f"-> {args.output} ({Path(args.output).stat().st_size / 1e6:.1f} MB)")


def _split(args):
    if args.extend is None and args.split_seed is None:
        raise SystemExit("split needs --split-seed (or --extend BASE_SPLIT, to extend the split of the first "
                         "database to the others)")
    if args.extend is not None and (args.split_seed is not None or args.testpercent is not None):
        raise SystemExit("--extend keeps the base split's split_seed and testpercent: give no --split-seed or "
                         "--testpercent with it")
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


def _json_argument(text, option):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SystemExit(f"{option} is not valid JSON ({err}): {text!r}") from None


def _train_member(args):
    db = open_databases(args.database)
    settings = _json_argument(args.training, "--training")
    config = TorchTrainingConfig.from_dict({"show_progress": False, **settings, "atomic_energies": None})
    arch = {species: [tuple(layer) for layer in layers]
            for species, layers in _json_argument(args.arch, "--arch").items()}
    if args.threads:
        torch.set_num_threads(args.threads)
    potential = TorchANNPotential(arch, db.descriptor)
    summary = train_member(potential, args.output_dir, config, db, Split.load(args.split),
                           member_index=args.member_index, seed=args.seed, device=args.device,
                           initial_model=args.initial_model)
    if summary["status"] != "completed":
        raise SystemExit(f"member {args.member_index} failed: {summary['error']}")
    metrics = summary["metrics"]
    print(f"member {args.member_index} (seed {args.seed}): final RMSE train/test {metrics['final_RMSE_train']} / "
          f"{metrics['final_RMSE_test']} eV/atom -> {args.output_dir}")


def _aggregate(args):
    path = aggregate_committee(args.committee_dir, member_dirs=args.members)
    result = TorchCommitteeTrainResult.from_metadata(path)
    if args.table:
        with atomic_write(args.table) as handle:
            result.to_dataframe().to_csv(handle, index=False)
    if args.plot:
        result.plot_learning_curves(args.plot)
    print(result)


def _export(args):
    committee = TorchCommitteePotential.from_directory(args.committee)
    members = committee.to_aenet_ascii(args.output_dir, **_given(prefix=args.prefix))
    print(f"{len(members)} members x {len(committee.descriptor.species)} species -> {args.output_dir}")


def _evaluate(args):
    evaluate_committee(args.committee_dir, args.database, args.split, args.output_dir,
                       **_given(n_uncertain=args.n_uncertain))


def _convert_model(args):
    payload = read_model_file(args.input)  # plain data only; older schemas are upgraded on reading
    write_model_file(args.output, {k: v for k, v in payload.items() if k not in HEADER_KEYS})
    print(f"{args.input} -> {args.output} (model schema {payload['schema_version']})")


def _add_descriptor_arguments(parser):
    parser.add_argument("--species", nargs="+", help="descriptor species order (default: sorted symbols)")
    parser.add_argument("--rad-order", type=int, required=True)
    parser.add_argument("--rad-cutoff", type=float, required=True)
    parser.add_argument("--ang-order", type=int, required=True)
    parser.add_argument("--ang-cutoff", type=float, required=True)
    parser.add_argument("--min-cutoff", type=float, help="neighbours closer than this are ignored (Å; default: "
                        f"the descriptor's, {DEFAULT_MIN_CUTOFF})")


def _add_limit_arguments(parser, names):
    defaults = PlausibilityLimits()
    for f in fields(PlausibilityLimits):
        if f.name in names:
            notes = "; ".join(filter(None, [f.metadata.get("unit"), f"default {getattr(defaults, f.name):g}"]))
            parser.add_argument("--" + f.name.replace("_", "-"), type=float, help=f"{f.metadata['help']} ({notes})")


DATABASES_HELP = "database file(s); several are read as one dataset, shard by shard in the order given"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aenet-core", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    example = commands.add_parser("example-data", help="write the built-in Cu-Au EMT data set (extxyz)")
    example.add_argument("--output", required=True)
    example.add_argument("--n-structures", type=int, help=f"default {EXAMPLE_SIZE}")
    example.add_argument("--seed", type=int, help=f"default {EXAMPLE_SEED}")
    example.set_defaults(func=_example_data)

    featurize = commands.add_parser("featurize", help="raw Chebyshev features of structure files (npz)")
    featurize.add_argument("inputs", nargs="+", help="structure files (XSF, extxyz, anything ASE reads)")
    featurize.add_argument("--output", required=True)
    _add_descriptor_arguments(featurize)
    featurize.add_argument("--batch-size", type=int, default=32)
    featurize.set_defaults(func=_featurize)

    refs = commands.add_parser("reference-energies", help="fit atomic reference energies (JSON)")
    refs.add_argument("inputs", nargs="+", help="structure files with total energies")
    refs.add_argument("--output", required=True)
    refs.add_argument("--method", choices=METHODS, default="regression")
    refs.add_argument("--compounds", nargs="+", help="reference compounds as formulas (reference_compounds)")
    refs.add_argument("--fixed", nargs="+", metavar="SYMBOL=EV", help="atomic energies held fixed in the fit "
                      "(with --method fixed: the values of every species, nothing fitted)")
    subset = refs.add_mutually_exclusive_group()
    subset.add_argument("--subset-size", type=int)
    subset.add_argument("--subset-fraction", type=float)
    refs.add_argument("--seed", type=int, help="seed of the subset's reservoir sampling")
    _add_limit_arguments(refs, LABEL_LIMITS)
    refs.set_defaults(func=_reference_energies)

    build = commands.add_parser("build-database", help="HDF5 database with persisted features and derivatives")
    build.add_argument("inputs", nargs="+", help="structure files (XSF, extxyz, anything ASE reads)")
    build.add_argument("--output", required=True)
    _add_descriptor_arguments(build)
    build.add_argument("--reference-energies", help="JSON from reference-energies (atomic energies for the filter "
                       "and for training)")
    build.add_argument("--max-energy", type=float, help="drop structures above this referenced energy (eV/atom)")
    build.add_argument("--max-forces", type=float, help="drop structures with a force component above this (eV/Å)")
    build.add_argument("--workers", type=int, default=0, help="featurizing processes (0: in this process)")
    build.add_argument("--storage-dtype", choices=["float64", "float32"], help=f"default {DEFAULT_STORAGE_DTYPE}")
    build.add_argument("--compression", choices=["gzip", "lzf"])
    build.add_argument("--no-derivatives", action="store_true", help="persist features only (energy training)")
    build.add_argument("--allow-empty", action="store_true", help="empty input files and a database of no "
                       "structures are not an error (an active-learning round whose every labelling failed)")
    _add_limit_arguments(build, [f.name for f in fields(PlausibilityLimits)])
    build.set_defaults(func=_build_database)

    split = commands.add_parser("split", help="train/test split file of a database (or of several as shards)")
    split.add_argument("database", nargs="+", help=DATABASES_HELP)
    split.add_argument("--output", required=True)
    split.add_argument("--testpercent", type=float, help=f"default {DEFAULT_TESTPERCENT}")
    split.add_argument("--split-seed", type=int, help="required without --extend")
    split.add_argument("--extend", metavar="BASE_SPLIT", help="a split of the first database: its entries keep "
                       "their side, those of the other databases all train (the test set stays the base's)")
    split.set_defaults(func=_split)

    member = commands.add_parser("train-member", help="train one committee member from a database and a split")
    member.add_argument("--database", nargs="+", required=True, help=DATABASES_HELP)
    member.add_argument("--split", required=True)
    member.add_argument("--arch", required=True, help='JSON {"Cu": [[10, "tanh"], [10, "tanh"]], ...}')
    member.add_argument("--training", required=True, help="JSON of TorchTrainingConfig fields")
    member.add_argument("--member-index", type=int, required=True)
    member.add_argument("--seed", type=int)
    member.add_argument("--device", default="cpu")
    member.add_argument("--threads", type=int, help="torch CPU threads")
    member.add_argument("--initial-model", help="start from this model file's weights and normalisation (warm "
                        "start; default: fresh weights from --seed)")
    member.add_argument("--output-dir", required=True, help="the member folder (member_XXX)")
    member.set_defaults(func=_train_member)

    aggregate = commands.add_parser("aggregate", help="committee_metadata.json from member folders")
    aggregate.add_argument("committee_dir")
    aggregate.add_argument("--members", nargs="+", help="member folders to include (default: all member_*)")
    aggregate.add_argument("--table", help="per-member CSV table")
    aggregate.add_argument("--plot", help="learning curves of every member (PNG/PDF/SVG)")
    aggregate.set_defaults(func=_aggregate)

    export = commands.add_parser("export", help="each committee member as aenet .nn.ascii files")
    export.add_argument("committee", help="committee directory or its committee_metadata.json")
    export.add_argument("--output-dir", required=True)
    export.add_argument("--prefix", help=f"file names <prefix>.<Species>.nn.ascii (default {DEFAULT_PREFIX})")
    export.set_defaults(func=_export)

    evaluate = commands.add_parser("evaluate", help="committee predictions, uncertainty and calibration on the "
                                   "test split")
    evaluate.add_argument("committee_dir")
    evaluate.add_argument("--database", nargs="+", required=True, help=DATABASES_HELP)
    evaluate.add_argument("--split", required=True)
    evaluate.add_argument("--output-dir", required=True)
    evaluate.add_argument("--n-uncertain", type=int, help=f"how many most uncertain structures to list (default "
                          f"{DEFAULT_N_UNCERTAIN})")
    evaluate.set_defaults(func=_evaluate)

    convert = commands.add_parser("convert-model", help="rewrite a model file or checkpoint in the current schema")
    convert.add_argument("input")
    convert.add_argument("output")
    convert.set_defaults(func=_convert_model)
    add_active_learning_commands(commands)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # this process is ours: see aenet_core.allocator
    args.func(args)


if __name__ == "__main__":
    main()
