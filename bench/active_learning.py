"""Does the active-learning loop help?  Active against random selection at the same labelling budget.

    python bench/active_learning.py [--rounds 3] [--members 4] [--cores 2] [--random-draws 3] [--workdir DIR]

1. Runs the workflow's loop on the built-in Cu-Au EMT example (a config of its own, written to the
   work folder): round 0, then ``--rounds`` rounds of exploration, selection and EMT labelling.
2. Random arm: from the same exploration trajectories, each round draws as many frames as the loop
   selected in that round, uniformly (never a starting structure, which is labelled already), labels
   them with EMT and trains a committee with the same settings and seeds on round 0's data plus those
   frames, through the same commands the workflow's rules run; ``--random-draws`` such arms, each its
   own draw, give the spread of random selection.
3. Independent test set: EMT molecular dynamics (Langevin, fixed seed) at the exploration temperatures
   from Cu-Au cells not used for training (another seed of the example generator).

Prints, for round 0, the loop's last round and the random arm: energy and force RMSE on the test set,
and the Spearman correlation between the committee's calibrated uncertainty and its actual error
(energy per atom; largest force spread against largest force error per frame).
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
import yaml
from ase import units
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aenet_core.active_learning.explore import thermalize  # noqa: E402
from aenet_core.active_learning.label import label_frames  # noqa: E402
from aenet_core.committee import TorchCommitteePotential  # noqa: E402
from aenet_core.example_data import make_cuau_structures  # noqa: E402
from aenet_core.io import write_extxyz  # noqa: E402
from aenet_core.structure import Structure  # noqa: E402

TEMPERATURES = [300, 900]
RUN = "bench"


def loop_config(rounds: int, members: int) -> dict:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    run = config["runs"].pop("example")
    run["committee"] = {"num_members": members, "base_seed": 11}
    run["active_learning"] = {"rounds": rounds, "seeds": 4, "temperatures": TEMPERATURES, "steps": 200,
                              "interval": 10, "trust_lo": 0.05, "trust_hi": 1.0, "max_frames": 8,
                              "label": {"calculator": "ase.calculators.emt.EMT", "batch_size": 4}}
    config["runs"] = {RUN: run}
    return config


def sh(command, workdir):
    command = [str(token) for token in command]
    print("+", shlex.join(command), flush=True)
    subprocess.run(command, cwd=workdir, check=True, env=os.environ | {"PYTHONPATH": str(ROOT)})


def cli(workdir, *args):
    sh([sys.executable, "-m", "aenet_core.cli", *args], workdir)


def run_loop(workdir: Path, config: dict, cores: int) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    sh([Path(sys.executable).parent / "snakemake", "--snakefile", ROOT / "Snakefile", "--directory", workdir,
        "--configfile", workdir / "config.yaml", "--cores", cores, "--quiet"], workdir)


def random_arm(workdir: Path, config: dict, rounds: int, draw: int) -> Path:
    """The folder of random draw ``draw``: same budget per round, drawn from the loop's own trajectories."""
    results, rng, arm = workdir / "results" / RUN, np.random.default_rng(2024 + draw), f"random_{draw}"
    drawn = []
    for k in range(1, rounds + 1):
        folder = results / f"round_{k:02d}"
        pool = [Structure.from_ase(atoms, name=f"{path.name}#{i}") for path in sorted(folder.glob("explore/*.extxyz"))
                for i, atoms in enumerate(ase.io.read(path, ":")) if i > 0]
        budget = json.loads((folder / "selection.json").read_text())["n_selected"]
        drawn += [pool[i] for i in sorted(rng.choice(len(pool), size=min(budget, len(pool)), replace=False))]
    labelled, _ = label_frames(drawn, "ase.calculators.emt.EMT", {}, workdir / arm / "label")
    write_extxyz(workdir / arm / "labelled.extxyz", labelled)
    run = config["runs"][RUN]
    d = run["descriptor"]
    base = next((workdir / "results/databases").glob("*/database.h5"))
    cli(workdir, "build-database", f"{arm}/labelled.extxyz", "--output", f"{arm}/database.h5", "--reference-energies",
        base.parent / "reference_energies.json", "--species", *d["species"], "--rad-order", d["rad_order"],
        "--rad-cutoff", d["rad_cutoff"], "--ang-order", d["ang_order"], "--ang-cutoff", d["ang_cutoff"],
        "--min-cutoff", d["min_cutoff"])
    shards = [base, f"{arm}/database.h5"]
    cli(workdir, "split", *shards, "--output", f"{arm}/split.json", "--extend", results / "round_00/split.json")
    settings = results / "round_00/committee/settings.yaml"  # what the loop's members train with
    members = []
    for m in range(run["committee"]["num_members"]):
        members.append(workdir / f"{arm}/committee/member_{m:03d}")
        cli(workdir, "train-member", "--database", *shards, "--split", f"{arm}/split.json", "--settings", settings,
            "--member-index", m, "--seed", run["committee"]["base_seed"] + m, "--threads", 2,
            "--output-dir", members[-1])
    cli(workdir, "aggregate", f"{arm}/committee", "--members", *members)
    cli(workdir, "evaluate", f"{arm}/committee", "--database", *shards, "--split", f"{arm}/split.json",
        "--output-dir", f"{arm}/evaluation")
    return workdir / arm


def md_test_set(n_starts: int = 4, steps: int = 200, every: int = 20) -> list:
    """EMT Langevin frames at the exploration temperatures from cells of another generator seed."""
    frames, rng = [], np.random.default_rng(99)
    for start in make_cuau_structures(n_starts, seed=12345):
        for temperature in TEMPERATURES:
            atoms = start.to_ase()
            atoms.calc = EMT()
            thermalize(atoms, temperature, rng)
            dynamics = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.01 / units.fs,
                                fixcm=False, rng=rng)
            for _ in range(steps // every):
                dynamics.run(every)
                frames.append(Structure(atoms.positions, atoms.get_chemical_symbols(),
                                        energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                        cell=atoms.cell.array, pbc=atoms.pbc))
    return frames


def scores(committee_dir: Path, calibration: Path, test: list) -> dict:
    committee = TorchCommitteePotential.from_directory(committee_dir, calibration=calibration)
    predictions = committee.predict(test, eval_forces=True)
    n = np.array([s.n_atoms for s in test], float)
    error = np.abs(predictions.energy_mean - np.array([s.energy for s in test])) / n
    spread = predictions.energy_std * (committee.calibration_factor or 1.0) / n
    force_errors = [p.forces_mean - s.forces for p, s in zip(predictions, test)]
    force_spread = predictions.max_force_std
    largest_error = [np.linalg.norm(e, axis=1).max() for e in force_errors]
    spearman = lambda a, b: pd.Series(a).corr(pd.Series(b), method="spearman")  # noqa: E731
    return {"energy RMSE (meV/atom)": 1000 * float(np.sqrt(np.mean(error ** 2))),
            "force RMSE (eV/Å)": float(np.sqrt(np.mean(np.concatenate(force_errors) ** 2))),
            "Spearman energy": spearman(spread, error), "Spearman max force": spearman(force_spread, largest_error)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--random-draws", type=int, default=3, help="random arms, each its own draw")
    parser.add_argument("--workdir", help="default: a temporary folder")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="al-bench-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config = loop_config(args.rounds, args.members)
    run_loop(workdir, config, args.cores)
    test = md_test_set()
    results = workdir / "results" / RUN
    last = results / f"round_{args.rounds:02d}"
    labelled = sum(json.loads((results / f"round_{k:02d}/summary.json").read_text())["n_labelled"]
                   for k in range(1, args.rounds + 1))
    arms = {"round 0 (no new labels)": results / "round_00", f"active, round {args.rounds}": last}
    arms |= {f"random draw {d}, same budget": random_arm(workdir, config, args.rounds, d)
             for d in range(args.random_draws)}
    rows = {name: scores(folder / "committee", folder / "committee/calibration.json", test)
            for name, folder in arms.items()}
    table = pd.DataFrame(rows).T
    draws = table[table.index.str.startswith("random")]
    table.loc["random draws: mean"] = draws.mean()
    table.loc["random draws: std"] = draws.std()
    print(f"\n{len(test)} independent EMT MD test frames ({TEMPERATURES} K); {labelled} frames labelled by each arm "
          f"over {args.rounds} rounds; {args.members} members; results in {workdir}")
    print(table.to_string(float_format=lambda x: f"{x:.4g}"))
    print("\nthe loop's rounds:")
    print(pd.read_csv(results / "active_learning/rounds.csv")[
        ["round", "n_frames_explored", "n_candidates", "n_selected", "n_labelled", "n_failed",
         "fraction_hit_trust_hi", "test_energy_rmse_per_atom", "test_force_rmse"]].to_string(index=False))


if __name__ == "__main__":
    main()
