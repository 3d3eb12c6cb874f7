"""Data larger than memory: a database of a million atoms trained with a payload cache far smaller than the
file, and with one that holds everything.

    python bench/scale.py --data ../shared/data [--atoms 1000000] [--cache-mb 256] [--epochs 3]
                          [--dtype float64|float32] [--folder DIR] [--keep] [--no-baseline]
                          [--loader-workers N]

Design.  The database holds ``--atoms`` atoms (default one million): the 824 LMNTO structures (56 atoms each)
replicated, each copy's atoms displaced by a normal random 0.02 Å, keeping the original's energy and forces
(the labels need not be physical for a cost bench), with persisted features and the force derivatives of
every structure (float64).  The descriptor is LMNTO's reference one (Chebyshev, radial order 10 to 4.0 Å,
angular order 3 to 1.5 Å, min_cutoff 0.55 Å; 30 features): about 3.5 kB per atom, so a million atoms make a
3.5 GB file whose payloads, held as tensors, also fit in this machine's memory (24 GiB) for the in-memory
case.  (TiO2's descriptor stores about 32 kB per atom: a million atoms with forces would be ~30 GB.)

Each run is a fresh process (its peak RSS is its own, ``VmHWM``): the build (``build_workers``), then
energy + force training (5 species x 2x10 tanh, Adam, batch 32, force_weight 0.1, force_fraction 1.0, no
validation split, ``--threads`` torch threads) for ``--epochs`` epochs with

* out of memory: ``payload_cache_mb=--cache-mb`` (a few per cent of the file): every epoch reads its
  batches from the file, ``prefetch_factor`` (2) batches read ahead by a background thread;
* the same without read-ahead (``--no-baseline`` skips it): what the read-ahead buys;
* in memory: a cache larger than the payloads: the first epoch reads and fills it, later ones read nothing.

Epoch time is the median over the epochs after the first (the in-memory case's first fills its cache), as
wall time and as the CPU time of all the process's threads (steadier where other work shares the cores).
Peak RSS is compared with the cache bound: the rest (the interpreter and torch, the labels kept in memory,
about 100 bytes per atom, the batches in flight and HDF5's chunk cache) must not grow with the file.  The
operating system's page cache is not RSS: the out-of-memory case reads a file that the page cache may hold
(drop it, as root, for cold reads).  The timings share a 2-core machine with whatever else runs.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SPECIES = ["Li", "Mo", "Ni", "O", "Ti"]
DESCRIPTOR = (10, 4.0, 3, 1.5, 0.55)  # LMNTO's reference: rad order, cutoff, ang order, cutoff, min_cutoff


def memory_kb(field: str) -> int:
    """A ``/proc/self/status`` field (VmRSS, VmHWM) in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def replicated(data: str, n_atoms: int, sigma: float, seed: int = 0):
    """LMNTO's structures repeated until ``n_atoms`` atoms, each copy's atoms displaced by N(0, sigma) Å."""
    from aenet_core.io import read_structures
    from aenet_core.structure import Structure

    originals = [read_structures(path)[0] for path in sorted(Path(data, "LMNTO").glob("*.xsf"))]
    if not originals:
        raise SystemExit(f"no LMNTO/*.xsf under {data}")
    rng = np.random.default_rng(seed)
    out, total = [], 0
    while total < n_atoms:
        s = originals[len(out) % len(originals)]
        out.append(Structure(s.positions + rng.normal(scale=sigma, size=s.positions.shape), s.species,
                             energy=s.energy, forces=s.forces, cell=s.cell, pbc=s.pbc,
                             name=f"{s.name or 'lmnto'}-copy{len(out)}"))
        total += s.n_atoms
    return out


def build(data: str, path: Path, n_atoms: int, sigma: float, workers: int, dtype: str) -> dict:
    """Runs in the child process: the database of ``n_atoms`` atoms."""
    import torch

    from aenet_core.allocator import keep_freed_memory
    from aenet_core.data import HDF5StructureDataset
    from aenet_core.torch_featurize import ChebyshevDescriptor

    torch.set_num_threads(1)
    keep_freed_memory()  # as the command line does
    started = time.perf_counter()
    structures = replicated(data, n_atoms, sigma)
    made_s = time.perf_counter() - started
    rad_order, rad_cut, ang_order, ang_cut, min_cut = DESCRIPTOR
    descriptor = ChebyshevDescriptor(SPECIES, rad_order, rad_cut, ang_order, ang_cut, min_cutoff=min_cut)
    started = time.perf_counter()
    db = HDF5StructureDataset(descriptor, path, sources=structures, mode="build")
    db.build_database(show_progress=False, build_workers=workers, persist_features=True,
                      persist_force_derivatives=True, storage_dtype=dtype)
    build_s = time.perf_counter() - started
    return {"structures": len(structures), "atoms": int(db._attrs["n_atoms"]), "made_s": made_s,
            "build_s": build_s, "bytes": path.stat().st_size, "peak_rss_kb": memory_kb("VmHWM")}


def train(path: Path, cache_mb: float, epochs: int, threads: int, read_ahead: bool, workers: int) -> dict:
    """Runs in the child process: ``epochs`` energy + force epochs from the database (``workers``: DataLoader
    worker processes, each with its own payload cache)."""
    import gc
    import resource
    import warnings

    import torch

    import aenet_core.training.loop as loop
    from aenet_core.allocator import keep_freed_memory
    from aenet_core.data import HDF5StructureDataset
    from aenet_core.torch_training import Adam, TorchANNPotential, TorchTrainingConfig

    torch.set_num_threads(threads)
    keep_freed_memory()
    if not read_ahead:  # the baseline: batches read in the training thread, between steps
        plain = loop.BatchLoader
        loop.BatchLoader = lambda *args, **kwargs: plain(*args, read_ahead=0, **kwargs)
    cpu_s, run_epoch = [], loop.run_epoch

    def timed(*args, **kwargs):  # the CPU time of every thread of the process, per training epoch
        started = time.process_time()
        out = run_epoch(*args, **kwargs)
        if kwargs.get("step") is not None:
            cpu_s.append(time.process_time() - started)
        return out

    loop.run_epoch = timed
    started = time.perf_counter()
    db = HDF5StructureDataset(None, path, mode="load", payload_cache_mb=cache_mb)
    open_s, opened_kb = time.perf_counter() - started, memory_kb("VmRSS")
    descriptor = db.descriptor
    potential = TorchANNPotential({s: [(10, "tanh"), (10, "tanh")] for s in descriptor.species}, descriptor)
    config = TorchTrainingConfig(iterations=epochs, method=Adam(mu=1e-3, batchsize=32), testpercent=0, seed=1,
                                 device="cpu", force_weight=0.1, force_fraction=1.0, checkpoint_dir=None,
                                 save_best=False, show_progress=False, num_workers=workers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no atomic reference energies: total energies, fine for a cost bench
        out = potential.train(dataset=db, config=config)
    gc.collect()  # the workers end with their loader: their peak is then the children's
    cache = db._payloads.cache if db._payloads is not None else None
    return {"open_s": open_s, "opened_kb": opened_kb, "peak_rss_kb": memory_kb("VmHWM"),
            "worker_peak_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if workers else 0,
            "epoch_s": out.timing["epoch_time"].tolist(), "data_s": out.timing["data_time"].tolist(), "cpu_s": cpu_s,
            "cache_bytes": cache.n_bytes if cache else 0, "cache_entries": len(cache) if cache else 0,
            "entries": len(db)}


def child(args_list) -> dict:
    command = [sys.executable, __file__, *args_list]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data", help="folder holding LMNTO/")
    parser.add_argument("--atoms", type=int, default=1_000_000)
    parser.add_argument("--sigma", type=float, default=0.02, help="displacement of the copies' atoms (Å)")
    parser.add_argument("--cache-mb", type=float, default=256, help="the out-of-memory case's payload cache")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of training")
    parser.add_argument("--build-workers", type=int, default=2)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                        help="storage dtype of the persisted payloads (training reads them as float64)")
    parser.add_argument("--folder", help="where the database goes (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the database (and reuse one already there)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the out-of-memory run without read-ahead")
    parser.add_argument("--loader-workers", type=int, default=0,
                        help="also train out of memory with this many DataLoader worker processes reading")
    parser.add_argument("--build-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--train-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_child:
        print(json.dumps(build(args.data, Path(args.build_child[0]), args.atoms, args.sigma, int(args.build_child[1]),
                               args.dtype)))
        return
    if args.train_child:
        path, cache_mb, read_ahead, workers = args.train_child
        print(json.dumps(train(Path(path), float(cache_mb), args.epochs, args.threads, read_ahead == "1",
                               int(workers))))
        return
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first is not timed)")
    folder = Path(args.folder or tempfile.mkdtemp(prefix="aenet-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"lmnto-{args.atoms}-{args.dtype}.h5"
    common = ["--data", args.data, "--atoms", str(args.atoms), "--sigma", str(args.sigma), "--dtype", args.dtype,
              "--epochs",
              str(args.epochs), "--threads", str(args.threads)]
    try:
        if args.keep and path.exists():
            print(f"reusing {path} ({path.stat().st_size / 1e9:.2f} GB)")
        else:
            b = child([*common, "--build-child", str(path), str(args.build_workers)])
            print(f"build: {b['structures']} structures, {b['atoms']} atoms, build_workers={args.build_workers}: "
                  f"{b['build_s']:.0f} s ({b['made_s']:.0f} s more making the structures), file "
                  f"{b['bytes'] / 1e9:.2f} GB ({b['bytes'] / b['atoms'] / 1e3:.2f} kB/atom), peak RSS "
                  f"{b['peak_rss_kb'] / 2**20:.2f} GiB")
        size_mb = path.stat().st_size / 2**20
        cases = [("out of memory", args.cache_mb, True, 0)]
        if not args.no_baseline:
            cases.append(("out of memory, no read-ahead", args.cache_mb, False, 0))
        if args.loader_workers:
            cases.append((f"out of memory, {args.loader_workers} workers", args.cache_mb, False, args.loader_workers))
        # The cache holds float64 tensors (a float32 file's payloads double when read): 1.5 times that holds all.
        cases.append(("in memory", round(1.5 * size_mb * (2 if args.dtype == "float32" else 1)), True, 0))
        rows = {}
        for label, cache_mb, read_ahead, workers in cases:
            r = child([*common, "--train-child", str(path), str(cache_mb), "1" if read_ahead else "0", str(workers)])
            epoch = statistics.median(r["epoch_s"][1:])
            data = statistics.median(r["data_s"][1:])
            cpu = statistics.median(r["cpu_s"][1:])
            rows[label] = epoch, cpu
            rest_mb = r["peak_rss_kb"] / 1024 - r["cache_bytes"] / 2**20
            if workers:  # the cache is the workers'
                print(f"{label:30s} cache {cache_mb:7.0f} MB per worker: epoch {epoch:6.1f} s (waiting for data "
                      f"{data:5.1f} s; all epochs {', '.join(f'{x:.1f}' for x in r['epoch_s'])}), peak RSS "
                      f"{r['peak_rss_kb'] / 1024:6.0f} MB, a worker's {r['worker_peak_rss_kb'] / 1024:6.0f} MB")
                continue
            print(f"{label:30s} cache {cache_mb:7.0f} MB ({cache_mb / size_mb:6.1%} of the file; holds "
                  f"{r['cache_bytes'] / 2**20:6.0f} MB, {r['cache_entries']}/{r['entries']} entries): epoch "
                  f"{epoch:6.1f} s (CPU {cpu:5.1f} s, waiting for data {data:5.1f} s; all epochs "
                  f"{', '.join(f'{x:.1f}' for x in r['epoch_s'])}), RSS after opening "
                  f"{r['opened_kb'] / 1024:5.0f} MB, peak RSS {r['peak_rss_kb'] / 1024:6.0f} MB "
                  f"(cache + {rest_mb:4.0f} MB)")

        def ratio(label):
            return "/".join(f"{a / b:.2f}" for a, b in zip(rows[label], rows["in memory"]))

        print(f"out-of-memory epoch / in-memory epoch, wall/CPU: {ratio('out of memory')}"
              + ("" if args.no_baseline else f" (without read-ahead {ratio('out of memory, no read-ahead')})"))
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            if not args.folder:
                shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
