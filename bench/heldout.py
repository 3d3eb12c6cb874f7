"""Held-out errors of every round of a finished active-learning run, on independent EMT molecular dynamics.

    python bench/heldout.py results/example [--frames 10] [--every 20] [--starts 16] [--seed 12345]
                            [--temperatures 300 900]

Test set: Langevin MD (2 fs, friction 0.01/fs) with ASE's EMT from ``--starts`` Cu-Au cells of
``aenet_core.example_data.make_cuau_structures`` with ``--seed`` (the example uses seed 0), one trajectory per
cell and temperature (default: the run's exploration temperatures, read from round_01/explore/*.json), a frame
every ``--every`` steps, ``--frames`` frames each.  Every round's committee (``round_NN/committee``, with its
own calibration.json) is scored: energy RMSE per atom, force RMSE over components, and the Spearman rank
correlation between the calibrated energy spread per atom and the absolute energy error per atom, and between
the largest per-atom force spread and the largest per-atom force error of each frame.  Deterministic.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from al_pool import md_frames

from aenet_core.committee import TorchCommitteePotential
from aenet_core.example_data import make_cuau_structures


def run_temperatures(run: Path) -> list:
    found = {json.loads(p.read_text())["temperature"] for p in (run / "round_01").glob("explore/*.json")}
    if not found:
        raise SystemExit(f"{run}/round_01/explore has no trajectories: pass --temperatures")
    return sorted(found)


def md_test_set(temperatures, starts: int, frames: int, every: int, seed: int) -> list:
    return [frame for i, start in enumerate(make_cuau_structures(starts, seed=seed))
            for j, temperature in enumerate(temperatures)
            for frame in md_frames(start.to_ase(), temperature, np.random.default_rng([seed, i, j]), frames, every,
                                   burn_in=0, friction=0.01)]


def score(committee_dir: Path, test: list) -> dict:
    committee = TorchCommitteePotential.from_directory(committee_dir)
    predictions = committee.predict(test, eval_forces=True)
    n = np.array([s.n_atoms for s in test], float)
    energy_error = np.abs(predictions.energy_mean - np.array([s.energy for s in test])) / n
    energy_spread = predictions.energy_std * (committee.calibration_factor or 1.0) / n
    force_error = [p.forces_mean - s.forces for p, s in zip(predictions, test)]
    largest_force_error = [np.linalg.norm(e, axis=1).max() for e in force_error]

    def spearman(a, b):
        return pd.Series(a).corr(pd.Series(b), method="spearman")

    return {"members": len(committee.members),
            "energy meV/atom": 1000 * float(np.sqrt(np.mean(energy_error ** 2))),
            "force eV/Å": float(np.sqrt(np.mean(np.concatenate(force_error) ** 2))),
            "Spearman E": spearman(energy_spread, energy_error),
            "Spearman maxF": spearman(predictions.max_force_std, largest_force_error),
            "calib. z RMS": float(np.sqrt(np.mean((energy_error / energy_spread) ** 2)))}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run's folder, e.g. results/example")
    parser.add_argument("--frames", type=int, default=10, help="frames per trajectory")
    parser.add_argument("--every", type=int, default=20, help="MD steps between frames")
    parser.add_argument("--starts", type=int, default=16, help="starting cells")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the cells and the MD (the example: 0)")
    parser.add_argument("--temperatures", type=float, nargs="+", help="K (default: the run's exploration ones)")
    args = parser.parse_args()
    temperatures = args.temperatures or run_temperatures(args.run)
    test = md_test_set(temperatures, args.starts, args.frames, args.every, args.seed)
    rounds = sorted(p.parent.parent for p in args.run.glob("round_*/committee/committee_metadata.json"))
    table = pd.DataFrame([score(r / "committee", test) for r in rounds], index=[r.name for r in rounds])
    print(f"{args.run}: {len(test)} held-out EMT MD frames ({args.starts} cells, seed {args.seed}; "
          f"{', '.join(f'{t:g}' for t in temperatures)} K; every {args.every} steps)")
    print(table.to_string(float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
