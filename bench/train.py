"""Training speed and accuracy on the TiO2 set (the settings of the reference figures), and the cost of
stresses on the built-in EMT example.

    python bench/train.py --data ../shared/data/TiO2 [--case energy|forces|both]
    python bench/train.py --case stress [--n-structures 300]

Descriptor rad 10/6.0 Å, ang 3/3.5 Å, min_cutoff 0.5; 2x10 tanh per species;
Adam lr 1e-3, batch 32; testpercent 10, split_seed 7, seed 1; float64; 2 threads.
(a) energy only with cache_features, 200 epochs; (b) force_weight 0.1 with
force_fraction 1.0, 20 epochs.  Prints the whole train() wall time, seconds per
epoch (median without the first), final RMSEs and peak RSS.  (c) stress: the Cu-Au EMT example
(``make_cuau_structures``, with EMT stresses), descriptor rad 6/5.0 Å, ang 3/4.0 Å, 2x10 tanh, batch 32,
force_weight 0.1, 10 epochs, once force-only and once with stress_weight 10: ms/epoch of each and
their ratio.
"""
import argparse
import resource
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from aenet_core.allocator import keep_freed_memory
from aenet_core.data import HDF5StructureDataset
from aenet_core.example_data import make_cuau_structures
from aenet_core.io import read_structures
from aenet_core.torch_featurize import ChebyshevDescriptor
from aenet_core.torch_training import Adam, TorchANNPotential, TorchTrainingConfig

ATOMIC_ENERGIES = {"O": -432.503149303, "Ti": -1604.604515075}
REFERENCE = {  # aenet-python on this kind of machine (2 threads)
    "energy": "14.3 s in all (12.8 s featurization), 7.7 ms/epoch, RMSE 0.026 / 0.53 eV/atom train/test",
    "forces": "0.506 s/epoch, RMSE 0.455 / 1.44 eV/atom and 2.13 / 2.68 eV/Å, peak RSS 690 MB",
}


def run(structures, case, cache=False, database=None):
    descriptor = ChebyshevDescriptor(["Ti", "O"], 10, 6.0, 3, 3.5, min_cutoff=0.5)
    potential = TorchANNPotential({s: [(10, "tanh"), (10, "tanh")] for s in ["Ti", "O"]}, descriptor)
    common = dict(method=Adam(mu=1e-3, batchsize=32), testpercent=10, split_seed=7, seed=1, device="cpu",
                  atomic_energies=ATOMIC_ENERGIES, checkpoint_dir=None, save_best=False, show_progress=False)
    if case == "energy":
        config = TorchTrainingConfig(iterations=200, force_weight=0.0, cache_features=True, **common)
    else:
        config = TorchTrainingConfig(iterations=20, force_weight=0.1, force_fraction=1.0, cache_neighbors=cache,
                                     cache_force_triplets=cache, **common)
    started = time.perf_counter()
    if database is None:
        out = potential.train(structures=structures, config=config)
    else:  # the workflow's path: persisted features and derivatives, built beforehand
        out = potential.train(dataset=database, config=replace(config, atomic_energies=None))
    total = time.perf_counter() - started
    epoch_times = out.timing["epoch_time"].tolist()
    per_epoch = statistics.median(epoch_times[1:]) if len(epoch_times) > 1 else epoch_times[0]
    s = out.stats
    label = case + (", cached" if cache else "") + (", from the database" if database is not None else "")
    line = (f"({label}) train() {total:.2f} s, {per_epoch * 1e3:.1f} ms/epoch (median, first excluded); "
            f"final RMSE {s['final_RMSE_train']:.4f} / {s['final_RMSE_test']:.4f} eV/atom")
    if case == "forces":
        line += f", {s['final_RMSE_force_train']:.3f} / {s['final_RMSE_force_test']:.3f} eV/Å"
    print(line)
    print(f"     aenet-python: {REFERENCE[case]}")


def run_stress(n_structures):
    structures = make_cuau_structures(n_structures, seed=0)
    per_epoch = {}
    for weight in (0.0, 10.0):
        descriptor = ChebyshevDescriptor(["Cu", "Au"], 6, 5.0, 3, 4.0, min_cutoff=0.55)
        potential = TorchANNPotential({s: [(10, "tanh"), (10, "tanh")] for s in ["Cu", "Au"]}, descriptor)
        config = TorchTrainingConfig(iterations=10, method=Adam(mu=5e-3, batchsize=32), testpercent=10, split_seed=7,
                                     seed=1, force_weight=0.1, stress_weight=weight,
                                     atomic_energies={"Cu": 0.0, "Au": 0.0}, checkpoint_dir=None, save_best=False,
                                     show_progress=False)
        out = potential.train(structures=structures, config=config)
        per_epoch[weight] = statistics.median(out.timing["epoch_time"].tolist()[1:])
        s = out.stats
        print(f"(stress_weight {weight:g}, {n_structures} EMT structures) {per_epoch[weight] * 1e3:.1f} ms/epoch; "
              f"final RMSE {s['final_RMSE_test']:.4f} eV/atom, {s['final_RMSE_force_test']:.3f} eV/Å, "
              f"stress {s['final_RMSE_stress_test']:.3g} eV/Å³ (test)")
    print(f"     force+stress epoch / force-only epoch: {per_epoch[10.0] / per_epoch[0.0]:.3f}")


def build_database(structures):
    descriptor = ChebyshevDescriptor(["Ti", "O"], 10, 6.0, 3, 3.5, min_cutoff=0.5)
    path = Path(tempfile.mkdtemp()) / "tio2.h5"
    started = time.perf_counter()
    db = HDF5StructureDataset(descriptor, path, sources=structures, mode="build", atomic_energies=ATOMIC_ENERGIES)
    db.build_database(show_progress=False, persist_features=True, persist_force_derivatives=True)
    print(f"     database built in {time.perf_counter() - started:.2f} s")
    return db


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="the TiO2 folder (cases energy, forces, both)")
    parser.add_argument("--case", choices=["energy", "forces", "both", "stress"], default="both")
    parser.add_argument("--n-structures", type=int, default=300, help="EMT structures of the stress case")
    parser.add_argument("--cache", action="store_true",
                        help="(b) also with cache_neighbors and cache_force_triplets (not in the reference run)")
    parser.add_argument("--database", action="store_true",
                        help="also train from an HDF5 database with persisted derivatives (built first, timed apart)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the command line does
    if args.case == "stress":
        run_stress(args.n_structures)
        return
    if args.data is None:
        parser.error(f"--case {args.case} needs --data (the TiO2 folder)")
    structures = [s for f in sorted(Path(args.data).glob("*.xsf")) for s in read_structures(f)]
    for case in (["energy", "forces"] if args.case == "both" else [args.case]):
        run(structures, case)
        if case == "forces" and args.cache:
            run(structures, case, cache=True)
        if args.database:
            run(structures, case, database=build_database(structures))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
