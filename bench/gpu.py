"""The GPU bench: the CUDA tests, then training throughput in float64 and float32, in one command.

    python bench/gpu.py --data DIR [--device auto|cuda|cpu] [--quick] [--skip-tests] [--time-limit 270] [--json FILE]

DIR holds the reference sets as aenet XSF files, ``TiO2/*.xsf`` and ``LMNTO/*.xsf`` (../shared/data here; on a
machine that gets only the checkout, a copy inside it: docs/performance.md, "The GPU").  Needs torch, numpy,
h5py, pandas, pyyaml, tqdm, matplotlib and ASE (structures and the database use ASE's element tables); not
Snakemake.

1. The CUDA tests (``tests/test_cuda.py`` and the two CUDA checks of test_descriptor.py and test_potential.py)
   in a pytest subprocess: CPU against the device for energies, forces, stresses, training steps, a database
   batch and float32 training.  Without CUDA they skip, and the bench says so.
2. Training, each case at batch 32 and 256 in float64 and float32 (``TorchTrainingConfig.precision``; the TiO2
   descriptor is float32 too, so its features are computed in float32):
   * TiO2 forces: 100 structures in memory, featurized on the device every batch (no caches), force_weight
     0.1, force_fraction 1.0; descriptor rad 10/6.0 Å, ang 3/3.5 Å, min_cutoff 0.5, 2x10 tanh per species.
   * LMNTO energy and LMNTO forces: 824 structures (46,144 atoms) from an HDF5 database with persisted
     features and derivatives (float64, built first on the CPU and timed apart); descriptor rad 10/4.0 Å,
     ang 3/1.5 Å, min_cutoff 0.55; energy only, or force_weight 0.1 with force_fraction 1.0.
   Adam lr 1e-3, testpercent 10, split_seed 7, seed 1.  s/epoch is the median epoch wall time without the
   first (validation included); atoms/s the atoms of the training split over it; peak memory is
   ``torch.cuda.max_memory_allocated`` over the whole train() call (on the CPU: none); errors are the final
   test RMSEs.  ``--quick`` trains on subsets for fewer epochs (a check that the bench runs, e.g. with
   ``--device cpu``).  Cases that would start after ``--time-limit`` seconds are skipped and listed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CUDA_TESTS = ["tests/test_cuda.py", "tests/test_descriptor.py::test_cuda_matches_cpu",
              "tests/test_potential.py::test_training_on_cuda_with_a_cpu_descriptor_matches_cpu"]
TIO2 = {"species": ["Ti", "O"], "descriptor": (10, 6.0, 3, 3.5, 0.5),
        "references": {"Ti": -1604.604515075, "O": -432.503149303}}
LMNTO = {"species": ["Li", "Mo", "Ni", "Ti", "O"], "descriptor": (10, 4.0, 3, 1.5, 0.55),
         "references": {"Li": -2.5197301758568920, "Mo": -0.6299325439642232, "Ni": -2.2047639038747695,
                        "O": -10.0789207034275830, "Ti": -2.2047639038747695}}
# (case, structures, epochs) in full and --quick runs
CASES = {"TiO2 forces": ("TiO2", 20), "LMNTO energy": ("LMNTO", 50), "LMNTO forces": ("LMNTO", 10)}
QUICK = {"TiO2 forces": (40, 3), "LMNTO energy": (80, 3), "LMNTO forces": (80, 3)}
BATCHES = (32, 256)
DTYPES = (torch.float64, torch.float32)


def descriptor(data_set, device="cpu", dtype=torch.float64):
    from aenet_core.torch_featurize import ChebyshevDescriptor

    rad_order, rad_cutoff, ang_order, ang_cutoff, min_cutoff = data_set["descriptor"]
    return ChebyshevDescriptor(data_set["species"], rad_order, rad_cutoff, ang_order, ang_cutoff,
                               min_cutoff=min_cutoff, device=device, dtype=dtype)


def read_set(folder: Path, limit=None) -> list:
    from aenet_core.io import read_structures

    files = sorted(folder.glob("*.xsf"))[:limit]
    if not files:
        raise SystemExit(f"no .xsf files in {folder}: --data must hold TiO2/ and LMNTO/")
    return [s for f in files for s in read_structures(f)]


def run_cuda_tests() -> dict:
    """pytest on the CUDA tests in a subprocess; its output goes through, the summary line is kept."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *CUDA_TESTS]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    sys.stdout.write(result.stdout + result.stderr)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else "no output"
    return {"returncode": result.returncode, "summary": summary, "seconds": time.perf_counter() - started}


def build_database(structures, folder: Path, workers: int):
    from aenet_core.data import HDF5StructureDataset

    started = time.perf_counter()
    db = HDF5StructureDataset(descriptor(LMNTO), folder / "lmnto.h5", sources=structures, mode="build",
                              atomic_energies=LMNTO["references"])
    db.build_database(show_progress=False, build_workers=workers, persist_features=True,
                      persist_force_derivatives=True)
    return db, time.perf_counter() - started


def train_atoms(dataset, testpercent=10, split_seed=7) -> int:
    """The atoms of the training split that train() draws (a test structure repeating a training one moves)."""
    from aenet_core.split import Split

    return sum(dataset.atom_counts(Split.create(dataset, testpercent, split_seed).train))


def train(case, data, device, dtype, batch, epochs) -> dict:
    from aenet_core.torch_training import Adam, TorchANNPotential, TorchTrainingConfig

    data_set = TIO2 if case.startswith("TiO2") else LMNTO
    forces = case.endswith("forces")
    # In memory the descriptor featurizes on the device; a database's features are read on the CPU.
    desc = descriptor(data_set, device, dtype) if case.startswith("TiO2") else descriptor(data_set)
    potential = TorchANNPotential({s: [(10, "tanh"), (10, "tanh")] for s in data_set["species"]}, desc)
    config = TorchTrainingConfig(
        iterations=epochs, method=Adam(mu=1e-3, batchsize=batch), testpercent=10, split_seed=7, seed=1,
        force_weight=0.1 if forces else 0.0, force_fraction=1.0, device=device,
        precision=str(dtype).removeprefix("torch."), checkpoint_dir=None, checkpoint_interval=0, save_best=False,
        show_progress=False, atomic_energies=data_set["references"] if case.startswith("TiO2") else None)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    if case.startswith("TiO2"):
        out = potential.train(structures=data["structures"], config=config)
    else:
        out = potential.train(dataset=data["database"], config=config)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    assert next(potential.model.parameters()).dtype == dtype, "the model did not train in the asked precision"
    epoch_times = [float(t) for t in out.timing["epoch_time"]]
    per_epoch = statistics.median(epoch_times[1:]) if len(epoch_times) > 1 else epoch_times[0]
    stats = out.stats
    return {"case": case, "dtype": str(dtype).removeprefix("torch."), "batch": batch, "epochs": epochs,
            "wall_s": wall, "s_per_epoch": per_epoch, "atoms_per_s": data["train_atoms"] / per_epoch,
            "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "energy_rmse_mev": 1e3 * stats["final_RMSE_test"],
            "force_rmse": stats["final_RMSE_force_test"] if forces else None}


def table(records) -> str:
    def number(value, form):
        return "-" if value is None else format(value, form)

    head = (f"{'case':14s} {'dtype':8s} {'batch':>5s} {'epochs':>6s} {'s/epoch':>9s} {'atoms/s':>10s} "
            f"{'peak MiB':>9s} {'E meV/atom':>10s} {'F eV/Å':>7s} {'train() s':>9s}")
    rows = [head, "-" * len(head)]
    for r in records:
        if "skipped" in r:
            rows.append(f"{r['case']:14s} {r['dtype']:8s} {r['batch']:>5} skipped: {r['skipped']}")
            continue
        rows.append(f"{r['case']:14s} {r['dtype']:8s} {r['batch']:>5} {r['epochs']:>6} {r['s_per_epoch']:9.4f} "
                    f"{r['atoms_per_s']:10.0f} {number(r['peak_mib'], '9.1f'):>9s} "
                    f"{r['energy_rmse_mev']:10.2f} {number(r['force_rmse'], '7.3f'):>7s} {r['wall_s']:9.2f}")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="folder holding TiO2/ and LMNTO/ (XSF files)")
    parser.add_argument("--device", default="auto",
                        help="auto (default: cuda when this torch sees a CUDA device, else cpu), cuda, cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="subsets and 3 epochs: checks that the bench runs")
    parser.add_argument("--skip-tests", action="store_true", help="leave out the CUDA tests")
    parser.add_argument("--time-limit", type=float, default=270.0,
                        help="seconds after which no further training case starts (default 270)")
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1), help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write every record here")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: this torch ({torch.__version__}) sees no CUDA device; "
                         "--device cpu runs the bench on the CPU")
    torch.set_num_threads(args.threads)
    from aenet_core.allocator import keep_freed_memory

    keep_freed_memory()  # as the command line does
    cuda = torch.device(args.device).type == "cuda"
    name = torch.cuda.get_device_name(torch.device(args.device)) if cuda else "CPU"
    print(f"device {name}, torch {torch.__version__}, {args.threads} CPU threads", flush=True)
    tests = None if args.skip_tests else run_cuda_tests()
    if tests is not None:
        print(f"CUDA tests: {tests['summary']}", flush=True)
    sizes = {case: QUICK[case] if args.quick else (None, epochs) for case, (_, epochs) in CASES.items()}
    tio2 = read_set(args.data / "TiO2", sizes["TiO2 forces"][0])
    lmnto = read_set(args.data / "LMNTO", sizes["LMNTO energy"][0])
    scratch = tempfile.TemporaryDirectory(prefix="aenet-gpu-bench-")
    workers = 0 if (os.cpu_count() or 1) <= 2 else min(8, os.cpu_count())
    db, build_s = build_database(lmnto, Path(scratch.name), workers)
    print(f"LMNTO database: {len(lmnto)} structures, {sum(len(s.species) for s in lmnto)} atoms, built in "
          f"{build_s:.1f} s ({workers} workers), {(Path(scratch.name) / 'lmnto.h5').stat().st_size / 2**20:.0f} MiB",
          flush=True)
    from aenet_core.data import InMemoryStructures

    data = {"TiO2": {"structures": tio2, "train_atoms": train_atoms(InMemoryStructures(tio2, descriptor(TIO2)))},
            "LMNTO": {"database": db, "train_atoms": train_atoms(db)}}
    records = []
    for case, (set_name, _) in CASES.items():
        for dtype in DTYPES:
            for batch in BATCHES:
                if time.perf_counter() - started > args.time_limit:
                    records.append({"case": case, "dtype": str(dtype).removeprefix("torch."), "batch": batch,
                                    "skipped": f"past --time-limit {args.time_limit:g} s"})
                    continue
                record = train(case, data[set_name], args.device, dtype, batch, sizes[case][1])
                records.append(record)
                print(json.dumps(record), flush=True)
    db.close()
    scratch.cleanup()
    print()
    print(f"device {name}, torch {torch.__version__}" + ("" if tests is None else f"; CUDA tests: {tests['summary']}"))
    print(f"LMNTO database built in {build_s:.1f} s; whole bench {time.perf_counter() - started:.0f} s")
    print(table(records))
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "tests": tests,
                                         "database_build_s": build_s, "records": records}, indent=1))
    return 1 if tests is not None and tests["returncode"] not in (0, 5) else 0


if __name__ == "__main__":
    sys.exit(main())
