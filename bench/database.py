"""Database build speed, size, memory and read-back time on the TiO2 and LMNTO sets; the peak memory of
building from one file of many frames; the memory and disk estimates of aenet_core.data.hdf5.footprint
against measured peaks.

    python bench/database.py --data ../shared/data [--workers 0 2] [--dtype float64]
    python bench/database.py --frames 10000 100000   # one extxyz file of N four-atom frames
    python bench/database.py --footprint             # one periodic Cu-Au structure of 500 to 16,000 atoms

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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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


def frames_file(path: Path, count: int) -> None:
    """``count`` rattled four-atom Cu-Au fcc cells with energies and forces, as one extxyz file."""
    rng = np.random.default_rng(0)
    a, base = 3.8, np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]) * 3.8
    with open(path, "w") as handle:
        for _ in range(count):
            rows = np.hstack([base + rng.normal(scale=0.05, size=(4, 3)), rng.normal(scale=0.1, size=(4, 3))])
            handle.write(f'4\nLattice="{a} 0 0 0 {a} 0 0 0 {a}" Properties=species:S:1:pos:R:3:forces:R:3 '
                         f'energy={-14 + rng.normal(scale=0.1):.6f} pbc="T T T"\n')
            handle.writelines(f"{symbol} " + " ".join(f"{x:.8f}" for x in row) + "\n"
                              for symbol, row in zip(rng.choice(["Cu", "Au"], 4), rows))


def peak_of_frames(count: int) -> str:
    """Peak RSS of reference-energies and of build-database (features only) of one file of ``count`` frames."""
    folder = Path(tempfile.mkdtemp())
    frames_file(folder / "frames.extxyz", count)
    commands = {"reference-energies": ["--output", str(folder / "references.json")],
                "build-database": ["--output", str(folder / "db.h5"), "--species", "Cu", "Au", "--rad-order", "6",
                                   "--rad-cutoff", "5.0", "--ang-order", "3", "--ang-cutoff", "4.0",
                                   "--no-derivatives"]}
    results = []
    for name, options in commands.items():
        command = [sys.executable, __file__, "--cli-child", name, str(folder / "frames.extxyz"), *options]
        started = time.perf_counter()
        rss = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        results.append(f"{name} {time.perf_counter() - started:.1f} s, peak RSS {rss / 1024:.0f} MB")
    shutil.rmtree(folder)
    return f"{count} four-atom frames in one extxyz file: " + "; ".join(results)


def cli_child(argv) -> None:
    """Runs in the child process: the command line, then its peak RSS (kB) as the last line."""
    from aenet_core.cli import main

    main(argv)
    print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


FOOTPRINT_CASES = [  # (atoms, rad order, rad cutoff, ang order, ang cutoff)
    *((n, 6, 5.0, 3, 4.0) for n in (500, 2000, 8000, 16000)), (8000, 10, 6.0, 3, 3.5), (4000, 4, 4.0, 8, 5.0)]


def footprint(n: int, rad_order: int, rad_cutoff: float, ang_order: int, ang_cutoff: float, derivatives: bool) -> dict:
    """Runs in the child process: the peak memory of building a database of one structure, the file's size,
    and what aenet_core.data.hdf5.footprint estimates of both."""
    from ase.build import bulk

    from aenet_core.allocator import keep_freed_memory
    from aenet_core.data import HDF5StructureDataset
    from aenet_core.data.hdf5.footprint import featurizing_bytes, stored_bytes
    from aenet_core.descriptor import ChebyshevDescriptor
    from aenet_core.structure import Structure

    keep_freed_memory()  # as the command line does
    atoms = bulk("Cu", "fcc", a=3.8, cubic=True).repeat(max(1, round((n / 4) ** (1 / 3))))
    atoms.rattle(0.05, seed=1)
    rng = np.random.default_rng(0)
    structure = Structure(atoms.positions, list(np.where(rng.random(len(atoms)) < 0.3, "Au", "Cu")),
                          energy=-3.5 * len(atoms), forces=rng.normal(scale=0.1, size=(len(atoms), 3)),
                          cell=atoms.cell.array, pbc=[True] * 3)
    descriptor = ChebyshevDescriptor(["Cu", "Au"], rad_order, rad_cutoff, ang_order, ang_cutoff, min_cutoff=0.55)
    path = Path(tempfile.mkdtemp()) / "db.h5"
    before = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()
    db = HDF5StructureDataset(descriptor, path, sources=[structure], mode="build")
    db.build_database(show_progress=False, persist_features=True, persist_force_derivatives=derivatives)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    size = path.stat().st_size
    path.unlink()
    return {"atoms": len(atoms), "peak": peak, "estimate": featurizing_bytes(structure, descriptor, derivatives),
            "size": size, "size_estimate": stored_bytes(structure, descriptor, 8, derivatives)}


def footprints() -> None:
    for case in FOOTPRINT_CASES:
        for derivatives in (False, True):
            command = [sys.executable, __file__, "--footprint-child", *map(str, case), str(int(derivatives))]
            r = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            print(f"{r['atoms']:6d} atoms, descriptor {case[1:]}, {'derivatives' if derivatives else 'features   '}: "
                  f"peak {r['peak'] / 1e6:6.0f} MB, estimate {r['estimate'] / 1e6:6.0f} MB "
                  f"({r['estimate'] / r['peak']:.2f}x); file {r['size'] / 1e6:7.1f} MB, estimate "
                  f"{r['size_estimate'] / 1e6:7.1f} MB ({r['size_estimate'] / r['size']:.2f}x)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="folder holding TiO2/ and LMNTO/")
    parser.add_argument("--frames", type=int, nargs="+", help="peak RSS of building from one file of N frames")
    parser.add_argument("--footprint", action="store_true", help="the memory and disk estimates against peaks")
    parser.add_argument("--footprint-child", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--cli-child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("SET", "LIMIT", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cli_child:
        cli_child(args.cli_child)
        return
    if args.footprint_child:
        n, rad_order, rad_cutoff, ang_order, ang_cutoff, derivatives = args.footprint_child
        print(json.dumps(footprint(int(n), int(rad_order), float(rad_cutoff), int(ang_order), float(ang_cutoff),
                                   derivatives == "1")))
        return
    if args.footprint or args.frames:
        for count in args.frames or []:
            print(peak_of_frames(count))
        if args.footprint:
            footprints()
        return
    if not args.data:
        parser.error("--data is needed (or --frames, --footprint)")
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
