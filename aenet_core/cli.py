"""Command-line entry point ``aenet-core``: the subcommands the workflow rules call."""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aenet_core.descriptor import BatchedFeaturizer, ChebyshevDescriptor
from aenet_core.example_data import make_cuau_structures
from aenet_core.io import read_structures, write_extxyz
from aenet_core.io.common import atomic_write


def _example_data(args):
    structures = make_cuau_structures(args.n_structures, args.seed)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_extxyz(args.output, structures)
    print(f"wrote {len(structures)} structures ({sum(s.n_atoms for s in structures)} atoms) to {args.output}")


def _featurize(args):
    structures = [s for path in args.inputs for s in read_structures(path)]
    if not structures:
        raise SystemExit(f"no structures found in {args.inputs}")
    species = args.species or sorted({s for st in structures for s in st.species})
    descriptor = ChebyshevDescriptor(species, args.rad_order, args.rad_cutoff, args.ang_order,
                                     args.ang_cutoff, args.min_cutoff)
    featurizer = BatchedFeaturizer(descriptor)
    features, started = [], time.perf_counter()
    chunks = range(0, len(structures), args.batch_size)
    for start in tqdm(chunks, desc="featurize", unit="batch", disable=not sys.stderr.isatty()):
        chunk = structures[start: start + args.batch_size]
        f, _ = featurizer([s.positions for s in chunk], [s.species for s in chunk],
                          [s.cell for s in chunk], [s.pbc for s in chunk])
        features.append(f)
    seconds = time.perf_counter() - started
    features = torch.cat(features).numpy()
    n_atoms = np.array([s.n_atoms for s in structures])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.output, binary=True) as handle:
        np.savez(handle, features=features, n_atoms=n_atoms, names=np.array([s.name or "" for s in structures]),
                 species=np.array(species))
    print(f"{len(structures)} structures, {len(features)} atoms, {descriptor.n_features} features per atom, "
          f"{len(features) / seconds:.0f} atoms/s -> {args.output}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aenet-core", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    example = commands.add_parser("example-data", help="write the built-in Cu-Au EMT data set (extxyz)")
    example.add_argument("--output", required=True)
    example.add_argument("--n-structures", type=int, default=24)
    example.add_argument("--seed", type=int, default=0)
    example.set_defaults(func=_example_data)

    featurize = commands.add_parser("featurize", help="raw Chebyshev features of structure files (npz)")
    featurize.add_argument("inputs", nargs="+", help="structure files (XSF, extxyz, anything ASE reads)")
    featurize.add_argument("--output", required=True)
    featurize.add_argument("--species", nargs="+", help="descriptor species order (default: sorted symbols)")
    featurize.add_argument("--rad-order", type=int, required=True)
    featurize.add_argument("--rad-cutoff", type=float, required=True)
    featurize.add_argument("--ang-order", type=int, required=True)
    featurize.add_argument("--ang-cutoff", type=float, required=True)
    featurize.add_argument("--min-cutoff", type=float, default=0.55)
    featurize.add_argument("--batch-size", type=int, default=32)
    featurize.set_defaults(func=_featurize)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
