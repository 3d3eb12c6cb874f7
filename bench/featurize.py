"""Featurization speed on a folder of XSF files.

    python bench/featurize.py --data ../shared/data/TiO2 [--threads 2] [--batch-size 32]

Prints structures/s and atoms/s for features only and for features plus
sparse analytic derivatives, one structure at a time (``forward_from_positions``
/ ``forward_with_derivatives``) and in batches (``BatchedFeaturizer``), for
each available backend. Descriptor: rad 10/6.0 Å, ang 3/3.5 Å, min_cutoff 0.5
(the settings of the reference figures printed alongside).
"""
import argparse
import time
from pathlib import Path

import torch

from aenet_core import backend
from aenet_core.allocator import keep_freed_memory
from aenet_core.io import read_structures
from aenet_core.torch_featurize import BatchedFeaturizer, ChebyshevDescriptor

# atoms/s measured on this kind of machine (2 threads), same descriptor settings
REFERENCE = {
    "TiO2": {"aenet-python features": 195, "aenet-python derivatives": 1995, "Fortran generate.x": 14700},
    "LMNTO": {"aenet-python features": 124, "Fortran generate.x": 14200},
}


def one_at_a_time(method, structures):
    for s in structures:
        method(s.positions, s.species, s.cell, s.pbc)


def batched(method, structures, batch_size):
    for start in range(0, len(structures), batch_size):
        chunk = structures[start: start + batch_size]
        method([s.positions for s in chunk], [s.species for s in chunk],
               [s.cell for s in chunk], [s.pbc for s in chunk])


def best_time(run, repeat):
    run()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder of .xsf files")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the command line does

    files = sorted(Path(args.data).glob("*.xsf"))
    if not files:
        raise SystemExit(f"no .xsf files in {args.data}")
    structures = [s for f in files for s in read_structures(f)]
    n_atoms = sum(s.n_atoms for s in structures)
    species = sorted({x for s in structures for x in s.species})
    n_features = ChebyshevDescriptor(species, 10, 6.0, 3, 3.5, min_cutoff=0.5).n_features
    print(f"{args.data}: {len(structures)} structures, {n_atoms} atoms, species {species}, "
          f"{n_features} features; torch {torch.__version__}, {args.threads} threads")
    extensions = backend.cluster_module("auto") is not None or backend.scatter_module("auto") is not None
    print(f"{'backend':<8} {'case':<45} {'structures/s':>13} {'atoms/s':>10}")
    for name in ["torch", "auto"] if extensions else ["torch"]:
        descriptor = ChebyshevDescriptor(species, 10, 6.0, 3, 3.5, min_cutoff=0.5, backend=name)
        featurizer = BatchedFeaturizer(descriptor)
        cases = {
            "features, one structure at a time": lambda: one_at_a_time(descriptor.forward_from_positions, structures),
            "features + derivatives, one at a time":
                lambda: one_at_a_time(descriptor.forward_with_derivatives, structures),
            f"features, batches of {args.batch_size}": lambda: batched(featurizer, structures, args.batch_size),
            f"features + derivatives, batches of {args.batch_size}":
                lambda: batched(featurizer.with_derivatives, structures, args.batch_size),
        }
        for label, run in cases.items():
            seconds = best_time(run, args.repeat)
            print(f"{name:<8} {label:<45} {len(structures) / seconds:13.0f} {n_atoms / seconds:10.0f}")
    for key, figures in REFERENCE.items():
        if key.lower() in str(args.data).lower():
            print("reference: " + ", ".join(f"{k} {v} atoms/s" for k, v in figures.items()))


if __name__ == "__main__":
    main()
