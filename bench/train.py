"""Training speed and accuracy on the TiO2 set, side by side with aenet-python, and the cost of stresses.

    python bench/train.py --data ../shared/data/TiO2 [--compare DIR] [--case forces|database|energy ...]
    python bench/train.py --case stress [--n-structures 300]

The three training paths, with the reference figures' settings: descriptor rad
10/6.0 Å, ang 3/3.5 Å, min_cutoff 0.5; 2x10 tanh per species; Adam lr 1e-3,
batch 32; testpercent 10, split_seed 7, seed 1; float64; 2 threads.

* forces:   force_weight 0.1, force_fraction 1.0, 20 epochs of ``train(structures=...)`` (featurized every
            epoch); the median epoch without the first.
* database: the same from an HDF5 database with persisted features and derivatives (the workflow's path;
            built first, timed apart); the median epoch without the first.
* energy:   energy only with cache_features, 200 epochs; the whole ``train()`` call.

Each case runs in a fresh process.  ``--compare DIR`` runs every case with
aenet-python too (its package ``aenet`` importable from DIR, e.g. installed
with ``pip install --target DIR``), through the same public API and in the
same run, and prints the ratios.  Before timing, both processes construct
one torch optimizer: torch imports its compiler stack at the first one (about
0.5 s), for either library alike.  aenet_core runs with AENET_CORE_COMPILE=1:
the compiled force kernels that training compiles by itself from 200,000
force-supervised atom-epochs on (these 20-epoch runs are shorter; the
compilation, 2 s with torch's cache warm, falls in the first epoch, which the
median leaves out); ``--uncompiled`` times the plain path.  (stress) the Cu-Au EMT example
(``make_cuau_structures``, with EMT stresses), descriptor rad 6/5.0 Å, ang
3/4.0 Å, 2x10 tanh, batch 32, force_weight 0.1, 10 epochs, once force-only
and once with stress_weight 10: ms/epoch of each and their ratio.
"""
import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ATOMIC_ENERGIES = {"O": -432.503149303, "Ti": -1604.604515075}
CASES = ("forces", "database", "energy")
GOAL = 10.0  # issue 25: at least ten times aenet-python on every training path


def api(package):
    """The names the bench uses, from ``aenet_core`` or from aenet-python's ``aenet``."""
    featurize = importlib.import_module(f"{package}.torch_featurize")
    training = importlib.import_module(f"{package}.torch_training")
    return featurize.ChebyshevDescriptor, training


def run_case(package, case, data, threads, derivative_precision="auto"):
    """One case in this process; returns its record."""
    import torch

    torch.set_num_threads(threads)
    if package == "aenet_core":
        from aenet_core.allocator import keep_freed_memory

        keep_freed_memory()  # as the command line does
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch's one-time import, outside the timing
    descriptor_class, training = api(package)
    files = sorted(Path(data).glob("*.xsf"))
    descriptor = descriptor_class(["Ti", "O"], 10, 6.0, 3, 3.5, min_cutoff=0.5)
    potential = training.TorchANNPotential({s: [(10, "tanh"), (10, "tanh")] for s in ["Ti", "O"]}, descriptor)
    common = dict(method=training.Adam(mu=1e-3, batchsize=32), testpercent=10, split_seed=7, seed=1, device="cpu",
                  checkpoint_dir=None, save_best=False, show_progress=False)
    record = {"package": package, "case": case}
    if package == "aenet_core" and derivative_precision != "auto":  # an aenet_core setting only
        common["derivative_precision"] = derivative_precision
    if case == "energy":
        config = training.TorchTrainingConfig(iterations=200, force_weight=0.0, cache_features=True,
                                              atomic_energies=ATOMIC_ENERGIES, **common)
    else:
        config = training.TorchTrainingConfig(iterations=20, force_weight=0.1, force_fraction=1.0,
                                              **({} if case == "database" else {"atomic_energies": ATOMIC_ENERGIES}),
                                              **common)
    if case == "database":
        path = Path(tempfile.mkdtemp()) / "tio2.h5"
        started = time.perf_counter()
        database = training.HDF5StructureDataset(descriptor, path, sources=files, mode="build",
                                                 atomic_energies=ATOMIC_ENERGIES)
        database.build_database(show_progress=False, persist_features=True, persist_force_derivatives=True)
        record["build_s"] = time.perf_counter() - started
        inputs = {"dataset": database}
    else:
        inputs = {"structures": [s for f in files for s in _read(package, f)]}
    started = time.perf_counter()
    out = potential.train(config=config, **inputs)
    record["train_s"] = time.perf_counter() - started
    epochs = list(out.timing["epoch_time"])
    record["epoch_s"] = statistics.median(epochs[1:])
    stats = out.stats
    record["rmse"] = [stats["final_RMSE_train"], stats["final_RMSE_test"]]
    if case != "energy":
        record["force_rmse"] = [stats["final_RMSE_force_train"], stats["final_RMSE_force_test"]]
    record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return record


def _read(package, path):
    """The structures of one XSF file as the package's own ``Structure`` objects."""
    from aenet_core.io import read_structures

    structures = read_structures(path)
    if package == "aenet_core":
        return structures
    training = importlib.import_module("aenet.torch_training")
    return [training.Structure(positions=s.positions, species=list(s.species), energy=s.energy, forces=s.forces,
                               cell=s.cell, pbc=s.pbc) for s in structures]


def in_fresh_process(package, case, args):
    """``run_case`` in a child process (aenet-python importable from ``args.compare``)."""
    env = dict(os.environ)
    if package == "aenet_core":  # the kernels of a run long enough to compile them (see the docstring)
        env["AENET_CORE_COMPILE"] = "0" if args.uncompiled else "1"
    if package == "aenet":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.compare, env.get("PYTHONPATH")]))
    command = [sys.executable, __file__, "--one", package, case, "--data", args.data, "--threads",
               str(args.threads), "--derivative-precision", args.derivative_precision]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{package} {case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe(record):
    case = record["case"]
    figure = (f"train() {record['train_s']:.2f} s" if case == "energy"
              else f"{record['epoch_s'] * 1e3:.1f} ms/epoch")
    errors = "RMSE {:.4f} / {:.4f} eV/atom".format(*record["rmse"])
    if "force_rmse" in record:
        errors += ", {:.3f} / {:.3f} eV/Å".format(*record["force_rmse"])
    build = f", database built in {record['build_s']:.2f} s" if "build_s" in record else ""
    return f"{figure} ({errors} train/test; peak RSS {record['peak_rss_mb']:.0f} MB{build})"


def check_aenet_python(folder):
    """Refuses ``--compare`` before any case runs when aenet-python's ``aenet.torch_training`` does not import."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", "import aenet.torch_training, aenet.torch_featurize"], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"--compare {folder}: aenet-python does not import from there ({reason}); install it there "
                         "with `pip install --no-deps --target DIR <aenet-python checkout>` (its needs: torch, "
                         "numpy, scipy, pandas, tables, tqdm)")


def compare(args):
    if args.compare:
        check_aenet_python(args.compare)
    print(f"TiO2 ({args.data}), {args.threads} threads, each case in a fresh process; "
          f"aenet-python from {args.compare or '(not compared)'}")
    rows = []
    for case in args.case:
        ours = in_fresh_process("aenet_core", case, args)
        print(f"({case}) aenet_core:   {describe(ours)}", flush=True)
        if not args.compare:
            continue
        theirs = in_fresh_process("aenet", case, args)
        print(f"({case}) aenet-python: {describe(theirs)}", flush=True)
        key = "train_s" if case == "energy" else "epoch_s"
        rows.append((case, theirs[key], ours[key]))
    if rows:
        print(f"\n{'path':10s} {'aenet-python':>14s} {'aenet_core':>12s} {'ratio':>7s}  goal >= {GOAL:g}x")
        for case, theirs, ours in rows:
            unit = "s (whole call)" if case == "energy" else "s/epoch"
            ratio = theirs / ours
            print(f"{case:10s} {theirs:12.4f} s {ours:10.4f} s {ratio:6.1f}x  {'met' if ratio >= GOAL else 'NOT met'}"
                  f"  ({unit})")


def run_stress(n_structures, threads):
    import torch

    from aenet_core.example_data import make_cuau_structures
    from aenet_core.torch_featurize import ChebyshevDescriptor
    from aenet_core.torch_training import Adam, TorchANNPotential, TorchTrainingConfig

    torch.set_num_threads(threads)
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="the TiO2 folder (the training cases)")
    parser.add_argument("--case", nargs="+", choices=[*CASES, "stress"], default=list(CASES))
    parser.add_argument("--compare", metavar="DIR",
                        help="also run aenet-python, its package `aenet` importable from DIR")
    parser.add_argument("--n-structures", type=int, default=300, help="EMT structures of the stress case")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--derivative-precision", choices=["auto", "float32", "float64"], default="auto",
                        help="aenet_core's derivative_precision (float32: the derivatives in float32 beside the "
                             "float64 model)")
    parser.add_argument("--uncompiled", action="store_true",
                        help="aenet_core's force contraction without torch.compile (AENET_CORE_COMPILE=0)")
    parser.add_argument("--one", nargs=2, metavar=("PACKAGE", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(*args.one, args.data, args.threads, args.derivative_precision)))
        return
    if "stress" in args.case:
        run_stress(args.n_structures, args.threads)
        args.case = [c for c in args.case if c != "stress"]
    if args.case:
        if args.data is None:
            parser.error(f"--case {' '.join(args.case)} needs --data (the TiO2 folder)")
        compare(args)


if __name__ == "__main__":
    main()
