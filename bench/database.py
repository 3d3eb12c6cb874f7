"""Database build speed, size, memory and read-back time on the TiO2 and LMNTO sets.

    python bench/database.py --data ../shared/data [--workers 0 2] [--dtype float64]

Each build runs in a fresh process (so its peak RSS is its own) with persisted
features and force derivatives.  Prints build seconds, file bytes per atom,
peak RSS, and the time to read every entry back (features and derivatives), once
plainly and once filling the in-memory payload cache that training uses.
LMNTO is also built from its first 100 structures to show that peak RSS does
not grow with the number of structures.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETS = {  # descriptor (rad order, cutoff, ang order, cutoff, min_cutoff) and aenet-python's figures
    "TiO2": ((10, 6.0, 3, 3.5, 0.5), "2.38 s, 50.2 kB/atom"),
    "LMNTO": ((10, 4.0, 3, 1.5, 0.55), "13.4 s, 7.67 kB/atom, peak RSS 350 MB"),
}


def build(data: str, name: str, limit: int, workers: int, dtype: str, threads: int) -> dict:
    """Runs in the child process: build, then read everything back."""
    import torch

    from aenet_core.allocator import keep_freed_memory
    from aenet_core.data import HDF5StructureDataset
    from aenet_core.io import read_structures
    from aenet_core.torch_featurize import ChebyshevDescriptor

    torch.set_num_threads(threads)
    keep_freed_memory()  # as the command line does
    files = sorted(Path(data, name).glob("*.xsf"))[:limit]
    species = sorted({s for f in files for s in read_structures(f)[0].species}) if name == "LMNTO" else ["Ti", "O"]
    rad_order, rad_cut, ang_order, ang_cut, min_cut = SETS[name][0]
    descriptor = ChebyshevDescriptor(species, rad_order, rad_cut, ang_order, ang_cut, min_cutoff=min_cut)
    path = Path(tempfile.mkdtemp()) / f"{name}.h5"
    started = time.perf_counter()
    db = HDF5StructureDataset(descriptor, path, sources=files, mode="build")
    db.build_database(show_progress=False, build_workers=workers, persist_features=True,
                      persist_force_derivatives=True, storage_dtype=dtype)
    build_s = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    HDF5StructureDataset(None, path, mode="load").close()  # reads the labels and checks the content hash
    open_s = time.perf_counter() - started
    read_s = {}
    for cache_mb in (0, 1024):  # one plain pass; one that also keeps every entry in memory (training)
        reopened = HDF5StructureDataset(None, path, mode="load", payload_cache_mb=cache_mb)
        started = time.perf_counter()
        everything = list(range(len(reopened)))
        for start in range(0, len(everything), 256):
            reopened.stored_derivatives(everything[start: start + 256])
        read_s[cache_mb] = time.perf_counter() - started
        reopened.close()
    n_atoms = int(reopened._attrs["n_atoms"])
    size = path.stat().st_size
    path.unlink()
    return {"entries": len(everything), "atoms": n_atoms, "build_s": build_s, "bytes_per_atom": size / n_atoms,
            "peak_rss_mb": rss, "open_s": open_s, "read_s": read_s[0], "read_cached_s": read_s[1024]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder holding TiO2/ and LMNTO/")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("SET", "LIMIT", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, limit, workers = args.child
        print(json.dumps(build(args.data, name, int(limit), int(workers), args.dtype, args.threads)))
        return
    cases = [("TiO2", 10**9), ("LMNTO", 100), ("LMNTO", 10**9)]
    for workers in args.workers:
        for name, limit in cases:
            command = [sys.executable, __file__, "--data", args.data, "--dtype", args.dtype, "--threads",
                       str(args.threads), "--child", name, str(limit), str(workers)]
            r = json.loads(subprocess.run(command, check=True, capture_output=True, text=True,
                                          env=dict(os.environ)).stdout)
            print(f"{name:5s} {r['entries']:4d} structures, {r['atoms']:6d} atoms, build_workers={workers}: "
                  f"build {r['build_s']:.2f} s, {r['bytes_per_atom'] / 1e3:.2f} kB/atom ({args.dtype}), "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB, open (content hash checked) {r['open_s']:.3f} s, "
                  f"read all back {r['read_s']:.3f} s "
                  f"({100 * r['read_s'] / r['build_s']:.1f} % of build; {r['read_cached_s']:.3f} s filling the "
                  f"payload cache)")
    for name, (_, reference) in SETS.items():
        print(f"aenet-python {name}: {reference}")


if __name__ == "__main__":
    main()
