"""What torch-scatter and torch-cluster buy: the same work on the pure-torch path (AENET_CORE_BACKEND=torch)
and with the extensions (auto), each in a fresh process.

    python bench/extensions.py --data ../shared/data/TiO2 [--workflow]

TiO2 training (bench/train.py's settings: forces with force_fraction 1.0, 20 epochs, 2 threads),
featurizing every epoch and from a database with persisted derivatives; with --workflow also the shipped
workflow (config.yaml, `snakemake --cores 2` in a fresh folder). Prints the wall times and their ratios.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("torch", "auto")


def timed(command, backend, cwd=None) -> tuple[float, str]:
    env = os.environ | {"AENET_CORE_BACKEND": backend, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{result.stdout}{result.stderr}")
    return time.perf_counter() - started, result.stdout


def training(data: str) -> None:
    command = [sys.executable, ROOT / "bench/train.py", "--data", data, "--case", "forces", "database"]
    epochs = {}
    for backend in BACKENDS:
        _, out = timed(command, backend)
        epochs[backend] = [float(ms) for ms in re.findall(r"([\d.]+) ms/epoch", out)]
        print(f"TiO2 force training, backend {backend}: " + ", ".join(
            f"{ms:.1f} ms/epoch ({path})" for ms, path in zip(epochs[backend], ("featurizing", "from the database"))))
    for index, path in enumerate(("featurizing every epoch", "from the database")):
        print(f"  {path}: pure torch / extensions = {epochs['torch'][index] / epochs['auto'][index]:.2f}")


def workflow() -> None:
    seconds = {}
    for backend in BACKENDS:
        with tempfile.TemporaryDirectory() as work:
            shutil.copy(ROOT / "config.yaml", work)
            seconds[backend], _ = timed([Path(sys.executable).parent / "snakemake", "--snakefile", ROOT / "Snakefile",
                                         "--cores", "2"], backend, cwd=work)
        print(f"shipped workflow (config.yaml), backend {backend}: {seconds[backend]:.0f} s")
    print(f"  pure torch / extensions = {seconds['torch'] / seconds['auto']:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the TiO2 folder")
    parser.add_argument("--workflow", action="store_true", help="also time the shipped workflow (minutes)")
    args = parser.parse_args()
    from aenet_core.backend import cluster_module, scatter_module
    if cluster_module("auto") is None or scatter_module("auto") is None:
        raise SystemExit("torch-scatter or torch-cluster is not installed: `make extensions` first")
    training(args.data)
    if args.workflow:
        workflow()


if __name__ == "__main__":
    main()
