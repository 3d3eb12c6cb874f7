"""Where does committee selection beat random?  Selection rules compared on one labelled pool.

    python bench/active_learning.py [--repeats 10] [--rounds 3] [--members 4] [--seed 0] [--out DIR] [--quick]

Offline: one pool of EMT Cu-Au frames (Langevin MD at 300-1200 K of 8-32 atom cells; strained cells, and a few
vacancies and (100) surfaces), labelled once.  Per repeat every arm starts from the same random initial set
and committee, then labels ``--per-round`` frames per round from the pool and retrains a committee (same
member seeds for every arm) on all it has labelled:

* random: uniformly among the unlabelled frames;
* top-sigma: the largest max force spread (the members' force std, per atom, its largest per frame);
* window: random among the frames whose max force spread lies between the round's 60th and 95th
  percentiles over the unlabelled pool (the top 5 % left out, as a trust window leaves out frames too far
  off);
* window+FPS: the same window, then ``select_frames`` (farthest-point sampling on ``structure_vectors``,
  scaled by the labelled set's spread; rule trust_window, the loop's rule before this bench);
* FPS: farthest-point sampling alone on the same vectors, no committee.

Online (``--online-repeats``): the loop itself (committee MD from labelled frames, ``select_frames`` with
its default rule, farthest-point sampling among the frames up to the workflow example's trust_hi, 1.0 eV/Å, EMT
labels) against random frames of plain EMT MD at
the same budget, temperatures and seeds, from the same positions of each arm's own training list; both start
from the offline repeat's initial set and committee.

Metrics of each arm's last committee, on an in-distribution test set (held-out trajectories of the pool's
mix) and an extrapolative one (1600 K, divacancies, (111) surfaces, 75-100 % Au): energy RMSE, force RMSE
(components), 95th percentile and maximum of the per-atom force error, Spearman of the energy spread
against the energy error (per atom) and of the max force spread against the largest per-atom force error
(per frame; a calibration factor scales the spread and leaves a rank correlation as it is, so none is
fitted), and MD stability: the fraction of 300 fs NVT runs at 1500 K on the committee's mean forces from
held-out bulk frames that keep every atom pair above 1.8 Å and every force within 2 eV/Å of EMT's (checked
every 10 steps).  Per metric: each arm's mean over repeats and its paired difference to random with a
bootstrap 95 % interval over repeats.
"""
import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import al_pool as data  # noqa: E402
from aenet_core.active_learning.explore import explore  # noqa: E402
from aenet_core.active_learning.select import (dataset_vectors, farthest_point_sampling, feature_scale,  # noqa: E402
                                               select_frames, structure_vectors)
from aenet_core.active_learning.settings import ExploreSettings  # noqa: E402

OFFLINE_ARMS = ("random", "top-sigma", "window", "window+FPS", "FPS")
ONLINE_ARMS = ("EMT MD, random", "committee loop")
WINDOW_QUANTILES = (0.60, 0.95)
LOOP_TRUST = (0.05, 1.0)  # eV/Å, config.yaml's example run
TEMPERATURES = (300, 600, 900, 1200)
MD_TEMPERATURE, MD_MIN_DISTANCE, MD_MAX_FORCE_ERROR = 1500.0, 1.8, 2.0
# metric -> whether larger is better (None: a description of the picks, not a quality)
METRICS = {f"{test} {name}": better for test in ("ID", "EX") for name, better in
           (("E RMSE (meV/atom)", False), ("F RMSE (eV/Å)", False), ("F p95 (eV/Å)", False),
            ("F max (eV/Å)", False), ("rho E", True), ("rho F", True))}
METRICS |= {"MD stable": True, "picked minority": None, "picked T (K)": None}


@dataclass
class Sizes:
    pool_trajectories: int
    frames_per_trajectory: int
    test_trajectories: int  # in-distribution; per extrapolative kind a quarter of it
    test_frames: int  # per test trajectory
    initial: int
    per_round: int
    epochs: int
    md_runs: int
    md_steps: int
    explore_starts: int
    explore_steps: int


FULL = Sizes(120, 20, 40, 8, 16, 8, 40, 6, 150, 4, 100)
QUICK = Sizes(24, 10, 6, 5, 8, 4, 8, 2, 30, 2, 30)


class Bench:
    """The pool, the test sets and the MD starts, featurized once; and how one committee is scored."""

    def __init__(self, sizes: Sizes, members: int, seed: int):
        self.sizes, self.members = sizes, members
        descriptor, references = data.descriptor(), data.isolated_atom_energies()
        frames, self.origins = data.make_pool(sizes.pool_trajectories, sizes.frames_per_trajectory, seed)
        self.pool = data.Featurized(frames, descriptor, references)
        self.vectors = dataset_vectors(self.pool)
        held_out, held_origins = data.make_pool(sizes.test_trajectories, sizes.test_frames, seed + 1, interval=20)
        extrapolative = data.extrapolative_sets(max(1, sizes.test_trajectories // 4), sizes.test_frames, seed + 2)
        self.tests = {"ID": data.Featurized(held_out, descriptor, references),
                      "EX": data.Featurized([f for fs in extrapolative.values() for f in fs], descriptor, references)}
        # the first frame of each bulk test trajectory
        self.md_starts = [held_out[i] for i in range(0, len(held_out), sizes.test_frames)
                          if held_origins[i][0] == "bulk"][:sizes.md_runs]

    def train(self, data_set, base_seed: int):
        return data.train_committee(data_set, self.members, base_seed, self.sizes.epochs)

    def spreads(self, committee, indices) -> np.ndarray:
        _, forces = data.predict(committee, self.pool, indices)
        return data.max_force_spread(forces, self.pool.atom_counts(indices))

    def scores(self, committee, labelled_origins, md_seed: int) -> dict:
        out = {}
        for name, test in self.tests.items():
            energies, forces = data.predict(committee, test)
            counts = np.array(test.atom_counts(range(len(test))))
            energy_error = (energies.mean(0) - np.array(test.energies(range(len(test))))) / counts
            reference = np.concatenate([s.forces for s in test.structures])
            force_error = forces.mean(0) - reference
            per_atom = np.linalg.norm(force_error, axis=1)
            largest = np.array([b.max() for b in np.split(per_atom, np.cumsum(counts)[:-1])])
            out |= {f"{name} E RMSE (meV/atom)": 1000 * np.sqrt(np.mean(energy_error ** 2)),
                    f"{name} F RMSE (eV/Å)": np.sqrt(np.mean(force_error ** 2)),
                    f"{name} F p95 (eV/Å)": np.quantile(per_atom, 0.95), f"{name} F max (eV/Å)": per_atom.max(),
                    f"{name} rho E": spearmanr(energies.std(0) / counts, np.abs(energy_error)).statistic,
                    f"{name} rho F": spearmanr(data.max_force_spread(forces, counts), largest).statistic}
        s = self.sizes
        out["MD stable"] = np.mean([data.md_stable(committee, start, MD_TEMPERATURE, s.md_steps, 10, md_seed + k,
                                                   MD_MIN_DISTANCE, MD_MAX_FORCE_ERROR)
                                    for k, start in enumerate(self.md_starts)])
        if labelled_origins:
            out["picked minority"] = np.mean([kind in ("vacancy", "surface100") for kind, _ in labelled_origins])
            out["picked T (K)"] = np.mean([t for _, t in labelled_origins])
        return out


def pick(arm: str, bench: Bench, labelled: list, spreads, n: int, rng) -> list:
    """``n`` pool indices, not yet labelled, by ``arm``'s rule; ``spreads()`` gives the committee's over
    the unlabelled frames."""
    unlabelled = np.setdiff1d(np.arange(len(bench.pool)), labelled)
    if arm == "random":
        return rng.choice(unlabelled, n, replace=False).tolist()
    if arm == "FPS":
        scale = feature_scale(bench.vectors[labelled])
        chosen = farthest_point_sampling(bench.vectors[unlabelled] / scale, bench.vectors[labelled] / scale, n)
        return unlabelled[chosen].tolist()
    sigma = spreads()
    if arm == "top-sigma":
        return unlabelled[np.argsort(-sigma, kind="stable")[:n]].tolist()
    lo, hi = np.quantile(sigma, WINDOW_QUANTILES)
    if arm == "window":
        inside = unlabelled[(sigma >= lo) & (sigma <= hi)]
        return rng.choice(inside, min(n, len(inside)), replace=False).tolist()
    frames = [SimpleNamespace(info={"max_force_std": float(x)}) for x in sigma]
    chosen = select_frames(frames, bench.vectors[unlabelled], bench.vectors[labelled], lo, hi, n,
                           rule="trust_window")["selected"]
    return unlabelled[chosen].tolist()


def offline_repeat(bench: Bench, repeat: int, rounds: int, seed: int, log) -> tuple[list, tuple]:
    """Rows (one per arm, and the initial committee) of one repeat, and (initial indices, committee, member
    seed) for the online comparison."""
    rng = np.random.default_rng([seed, repeat])
    initial = sorted(rng.choice(len(bench.pool), bench.sizes.initial, replace=False).tolist())
    base_seed, md_seed = (int(x) for x in rng.integers(2 ** 31, size=2))
    start = bench.train(bench.pool.subset(initial), base_seed)
    rows = [{"repeat": repeat, "arm": "initial", **bench.scores(start, [], md_seed)}]
    first_spreads = {}
    for a, arm in enumerate(OFFLINE_ARMS):
        arm_rng, labelled, committee = np.random.default_rng([seed, repeat, a]), list(initial), start
        for k in range(rounds):
            unlabelled = np.setdiff1d(np.arange(len(bench.pool)), labelled)

            def spreads(committee=committee, k=k, unlabelled=unlabelled):
                if k > 0:
                    return bench.spreads(committee, unlabelled)
                if "s" not in first_spreads:  # round 1's committee is every arm's initial one
                    first_spreads["s"] = bench.spreads(committee, unlabelled)
                return first_spreads["s"]
            labelled += pick(arm, bench, labelled, spreads, bench.sizes.per_round, arm_rng)
            committee = bench.train(bench.pool.subset(labelled), base_seed)
        picked = [bench.origins[i] for i in labelled[len(initial):]]
        rows.append({"repeat": repeat, "arm": arm, **bench.scores(committee, picked, md_seed)})
        log(f"repeat {repeat} {arm}: ID F RMSE {rows[-1]['ID F RMSE (eV/Å)']:.3f}, EX F RMSE "
            f"{rows[-1]['EX F RMSE (eV/Å)']:.3f}, MD stable {rows[-1]['MD stable']:.2f}")
    return rows, (initial, start, base_seed, md_seed)


def online_repeat(bench: Bench, repeat: int, rounds: int, seed: int, start_state, log) -> list:
    """The loop (committee MD, shipped selection) against random frames of EMT MD, at equal budget."""
    initial, start, base_seed, md_seed = start_state
    descriptor, s = bench.pool.descriptor, bench.sizes
    sets = {arm: bench.pool.subset(initial) for arm in ONLINE_ARMS}
    committees = {arm: start for arm in ONLINE_ARMS}
    picked = {arm: [] for arm in ONLINE_ARMS}
    rng = np.random.default_rng([seed, repeat, 99])
    for k in range(rounds):
        loop_set = sets["committee loop"]
        plan = [(int(i), float(rng.choice(TEMPERATURES)), int(rng.integers(2 ** 31)))
                for i in rng.choice(len(loop_set), s.explore_starts, replace=False)]
        frames, origins = [], []
        for i, temperature, md_seed_k in plan:
            settings = ExploreSettings(temperature=temperature, trust_hi=LOOP_TRUST[1], seed=md_seed_k,
                                       steps=s.explore_steps, interval=5)
            explored, _ = explore(committees["committee loop"], loop_set.get_structure(i), settings)
            frames += explored
            origins += [("bulk", temperature)] * len(explored)
        vectors = structure_vectors(descriptor, frames)
        chosen = select_frames(frames, vectors, dataset_vectors(loop_set), *LOOP_TRUST, s.per_round)["selected"]
        new = [data.label(frames[j]) for j in chosen]
        picked["committee loop"] += [origins[j] for j in chosen]
        # EMT MD from the same positions of its own training list, temperatures and seeds: as many frames as the
        # loop labelled, uniformly
        emt_frames, emt_origins = [], []
        for i, temperature, md_seed_k in plan:
            start_atoms = sets["EMT MD, random"].get_structure(i).to_ase()
            emt_frames += data.md_frames(start_atoms, temperature, np.random.default_rng(md_seed_k),
                                         s.explore_steps // 5, 5, burn_in=0)
            emt_origins += [("bulk", temperature)] * (s.explore_steps // 5)
        drawn = rng.choice(len(emt_frames), len(new), replace=False)
        picked["EMT MD, random"] += [emt_origins[j] for j in drawn]
        additions = {"committee loop": new, "EMT MD, random": [emt_frames[j] for j in drawn]}
        for arm, added in additions.items():
            if added:
                sets[arm] = sets[arm].plus(data.Featurized(added, descriptor, bench.pool.atomic_energies))
                committees[arm] = bench.train(sets[arm], base_seed)
        log(f"online repeat {repeat} round {k + 1}: {len(frames)} frames explored, {len(new)} labelled")
    rows = [{"repeat": repeat, "arm": arm, "labelled": len(sets[arm]) - len(initial),
             **bench.scores(committees[arm], picked[arm], md_seed)} for arm in ONLINE_ARMS]
    # the starts are the training frames themselves, so the picks' kinds are the starts' (not tracked)
    for row in rows:
        row.pop("picked minority", None)
    return rows


def summarize(rows: pd.DataFrame, arms, reference: str, seed: int, n_boot: int = 5000) -> pd.DataFrame:
    """Per arm and metric: mean over repeats, and the mean paired difference to ``reference`` with a
    bootstrap 95 % interval over repeats."""
    rng = np.random.default_rng(seed)
    base = rows[rows.arm == reference].set_index("repeat")
    n = len(base)
    resamples = rng.integers(n, size=(n_boot, n))
    out = []
    for arm in arms:
        table = rows[rows.arm == arm].set_index("repeat").loc[base.index]
        for metric in METRICS:
            if metric not in table or table[metric].isna().all():
                continue
            diff = (table[metric] - base[metric]).to_numpy(float)
            boot = np.nanmean(diff[resamples], axis=1)
            lo, hi = (np.nan, np.nan) if arm == reference else np.nanquantile(boot, [0.025, 0.975])
            out.append({"arm": arm, "metric": metric, "mean": table[metric].mean(), "diff": np.nanmean(diff),
                        "lo": lo, "hi": hi, "repeats": int(table[metric].notna().sum())})
    return pd.DataFrame(out)


def markdown(stats: pd.DataFrame, arms, reference: str) -> str:
    """Metrics as rows, arms as columns: the mean, and for the others Δ to ``reference`` [95 % CI]; * where
    the interval excludes 0 in the better direction, ! in the worse one."""
    def fmt(x):
        return f"{x:.3g}" if abs(x) >= 0.01 or x == 0 else f"{x:.2e}"
    lines = ["| metric | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for metric, better in METRICS.items():
        part = stats[stats.metric == metric].set_index("arm")
        if part.empty:
            continue
        cells = []
        for arm in arms:
            if arm not in part.index:
                cells.append("")
                continue
            r = part.loc[arm]
            if arm == reference:
                cells.append(fmt(r["mean"]))
                continue
            mark = ""
            if better is not None and r.repeats > 1 and (r.lo > 0 or r.hi < 0):
                mark = "*" if (r.lo > 0) == better else "!"
            cells.append(f"{fmt(r['mean'])} (Δ {r['diff']:+.3g} [{r.lo:+.3g}, {r.hi:+.3g}]){mark}")
        arrow = "" if better is None else (" ↑" if better else " ↓")
        lines.append(f"| {metric}{arrow} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--online-repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a minimal smoke run (about a minute)")
    parser.add_argument("--out", help="folder for rows.csv, stats.csv and table.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = QUICK if args.quick else FULL
    repeats, rounds = (2, 1) if args.quick else (args.repeats, args.rounds)
    online_repeats = min(1 if args.quick else args.online_repeats, repeats)
    began = time.time()

    def log(text):
        print(f"[{time.time() - began:7.1f} s] {text}", flush=True)

    bench = Bench(sizes, args.members, args.seed)
    log(f"pool {len(bench.pool)} frames ({np.mean(bench.pool.atom_counts(range(len(bench.pool)))):.1f} atoms on "
        f"average), tests ID {len(bench.tests['ID'])} / EX {len(bench.tests['EX'])} frames, "
        f"{len(bench.md_starts)} MD starts")
    offline, online = [], []
    for r in range(repeats):
        rows, state = offline_repeat(bench, r, rounds, args.seed, log)
        offline += rows
        if r < online_repeats:
            online += online_repeat(bench, r, rounds, args.seed, state, log)
    offline, online = pd.DataFrame(offline), pd.DataFrame(online)
    arms = ("initial",) + OFFLINE_ARMS
    stats = {"offline": summarize(offline, arms, "random", args.seed),
             "online": summarize(online, ONLINE_ARMS, ONLINE_ARMS[0], args.seed)}
    budget = f"{sizes.initial} initial frames + {rounds} rounds x {sizes.per_round}"
    text = (f"## Offline: selection from one pool ({len(bench.pool)} frames), {repeats} repeats, {budget}, "
            f"{args.members} members\n\n{markdown(stats['offline'], arms, 'random')}\n\n"
            f"## Online: the loop against EMT MD + random, {online_repeats} repeats, same budget "
            f"(labelled: {online.groupby('arm').labelled.mean().round(1).to_dict()})\n\n"
            f"{markdown(stats['online'], ONLINE_ARMS, ONLINE_ARMS[0])}\n\n"
            f"Cells: mean over repeats (Δ paired difference to the first column [bootstrap 95 % CI]); * better, "
            f"! worse with the CI excluding 0. ↓ lower is better, ↑ higher. Wall time {time.time() - began:.0f} s.\n")
    print("\n" + text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        pd.concat([offline.assign(experiment="offline"), online.assign(experiment="online")]).to_csv(
            out / "rows.csv", index=False)
        pd.concat([s.assign(experiment=name) for name, s in stats.items()]).to_csv(out / "stats.csv", index=False)
        (out / "table.md").write_text(text)


if __name__ == "__main__":
    main()
