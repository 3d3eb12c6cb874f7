"""The active-learning loop through Snakemake on a tiny configuration: round 0 and two rounds of explore,
select, label (a calculator that fails for one trajectory's frames) and retrain."""
import json
import os
import shutil
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk
from workflow_setup import SNAKEMAKE, dry_run, planned_jobs, snakemake, tiny_config

from aenet_core.committee import TorchCommitteePotential
from aenet_core.data.shards import ShardedDataset
from aenet_core.io import write_extxyz
from aenet_core.structure import Structure, structure_sha256

pytestmark = pytest.mark.slow
ROUNDS = ("round_00", "round_01", "round_02")


@pytest.fixture(autouse=True)
def needs_snakemake():
    if not Path(SNAKEMAKE).exists():
        pytest.skip("snakemake is not installed")


def write_seeds(workdir) -> str:
    """Two starting structures of 8 atoms (a one-atom cell would not change its descriptor as it moves)."""
    cells = []
    for a, gold, seed in ((3.7, [0, 5], 1), (3.9, [1, 2, 6], 2)):
        atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat((2, 1, 1))
        atoms.symbols[gold] = "Au"
        atoms.rattle(0.05, seed=seed)
        cells.append(Structure.from_ase(atoms, name=f"start-{seed}"))
    path = Path(workdir) / "starts.extxyz"
    write_extxyz(path, cells)
    return str(path)


def loop_config(workdir, **label_kwargs) -> dict:
    """Two starting structures at one temperature, 20 steps recorded every 5: every frame is a candidate
    (trust levels wide apart) and all of them are selected but those labelled already, so that which
    frames are labelled, and which fail (those of the second start), does not hang on the selection."""
    config = tiny_config()
    config["runs"]["example"]["active_learning"] = {
        "rounds": 2, "seeds": 2, "seed_files": write_seeds(workdir), "temperatures": [600], "steps": 20,
        "interval": 5, "trust_lo": 0.0, "trust_hi": 1000.0, "max_frames": 12,
        "label": {"calculator": "tests.al_calculators.RecordingEMT", "batch_size": 4, "max_failed_fraction": 0.6,
                  "kwargs": {
            "record_dir": str(Path(workdir) / "calculator_pids"), "fail_trajectory": "seed_001", **label_kwargs}}}
    return config


def run_loop(workdir, config, *args):
    return snakemake(workdir, config, "--cores", "2", *args)


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("loop")
    result = run_loop(workdir, loop_config(workdir))
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir


def round_dir(workdir, name):
    return Path(workdir) / "results/example" / name


def test_every_round_writes_its_products(loop):
    for name in ROUNDS:
        committee = TorchCommitteePotential.from_directory(round_dir(loop, name) / "committee")
        assert len(committee.members) == 2
        assert json.loads((round_dir(loop, name) / "summary.json").read_text())["round"] == int(name[-2:])
    for name in ROUNDS[1:]:
        folder = round_dir(loop, name)
        trajectories = sorted((folder / "explore").glob("*.extxyz"))
        assert [t.name for t in trajectories] == ["seed_000_600K.extxyz", "seed_001_600K.extxyz"]
        for path in trajectories:
            frames = ase.io.read(path, index=":")
            assert [f.info["step"] for f in frames] == [0, 5, 10, 15, 20]
            for frame in frames:
                assert frame.info["max_force_std"] >= 0 and np.isfinite(frame.info["energy_std_calibrated"])
                assert Structure.from_ase(frame).energy is None  # predictions are never written as labels
        for product in ("candidates.extxyz", "selected.extxyz", "labelled.extxyz", "database.h5"):
            assert (folder / product).exists(), product
    table = (Path(loop) / "results/example/active_learning/rounds.csv").read_text().splitlines()
    assert len(table) == 1 + len(ROUNDS)
    assert (Path(loop) / "results/example/active_learning/rounds.png").stat().st_size > 0


def test_a_round_selects_every_new_frame_and_never_one_already_labelled(loop):
    """Round 1 labels all 10 frames (2 trajectories of 5) but those of the failing start; round 2 starts
    from the same structures: the first frame of the first start is labelled already, and that of the
    second failed to label in round 1, so it is not tried again."""
    selections = [json.loads((round_dir(loop, name) / "selection.json").read_text()) for name in ROUNDS[1:]]
    assert [(s["n_frames"], s["n_candidates"], s["n_selected"]) for s in selections] == [(10, 10, 10), (10, 10, 8)]
    assert [(s["n_failed_before"], s["n_near_failed"]) for s in selections] == [(0, 0), (5, 1)]
    names = [item["name"] for item in selections[1]["selected"]]
    assert "results/example/round_02/explore/seed_000_600K.extxyz#frame=0" not in names
    assert "results/example/round_02/explore/seed_001_600K.extxyz#frame=0" not in names
    base = sorted((Path(loop) / "results/databases").glob("*/database.h5"))
    labelled_before = ShardedDataset.open([*base, round_dir(loop, "round_01") / "database.h5"])
    seen = set(labelled_before.geometry_sha256s)
    second = [Structure.from_ase(a) for a in ase.io.read(round_dir(loop, "round_02") / "labelled.extxyz", ":")]
    assert len(second) == 4 and not {structure_sha256(s, labels=False) for s in second} & seen


def test_a_failed_calculation_is_recorded_and_the_round_goes_on(loop):
    for name, labelled, n_failed in zip(ROUNDS[1:], (5, 4), (5, 4)):
        labelling = json.loads((round_dir(loop, name) / "labelling.json").read_text())
        failed = [r for r in labelling["frames"] if r["status"] == "failed"]
        assert len(failed) == n_failed and all("seed_001" in r["name"] and "SCF did not converge" in r["error"]
                                               for r in failed)
        assert labelling["n_labelled"] == labelled
        summary = json.loads((round_dir(loop, name) / "summary.json").read_text())
        assert summary["n_failed"] == n_failed and summary["n_labelled"] == labelled
        assert len(ase.io.read(round_dir(loop, name) / "labelled.extxyz", ":")) == labelled


def test_a_round_with_more_failures_than_allowed_stops_with_the_errors_on_the_screen(loop, tmp_path):
    """Half of round 1's frames failed; at the default max_failed_fraction (0.25) its merge (run again here)
    stops the run, saying why on the screen, and writes nothing that the shard would be built from."""
    work = tmp_path / "copy"
    shutil.copytree(loop, work, symlinks=True)
    for name in ("labelled.extxyz", "labelling.json"):
        (round_dir(work, "round_01") / name).unlink()
    config = loop_config(loop)
    del config["runs"]["example"]["active_learning"]["label"]["max_failed_fraction"]
    result = run_loop(work, config, "results/example/round_01/labelling.json")
    assert result.returncode != 0
    assert ("aenet-core merge-labels failed: 5 of 10 frames failed to label (50.0%), more than --max-failed-fraction "
            "0.25") in result.stderr
    assert "Most common errors: RuntimeError: SCF did not converge" in result.stderr
    assert not (round_dir(work, "round_01") / "labelled.extxyz").exists()


def test_each_round_trains_on_everything_labelled_so_far_and_keeps_round_0s_test_set(loop):
    splits = [json.loads((round_dir(loop, name) / "split.json").read_text()) for name in ROUNDS]
    assert splits[1]["test"] == splits[0]["test"] == splits[2]["test"]
    assert [s["n_entries"] - splits[0]["n_entries"] for s in splits] == [0, 5, 9]
    assert set(splits[2]["train"]) == set(range(splits[2]["n_entries"])) - set(splits[0]["test"])


def test_the_calculator_never_runs_in_the_snakemake_process(tmp_path):
    """Each labelling job records its process id; the dry run (which checks the calculator) runs none."""
    result = snakemake(tmp_path, loop_config(tmp_path), "-n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "calculator_pids").exists()


def test_labelling_ran_in_one_job_per_batch(loop):
    pids = list((Path(loop) / "calculator_pids").glob("*.pid"))
    assert len(pids) == 3 + 2  # 10 and 8 frames selected in batches of 4, a process each
    # as many batches as the selection needs, not as max_frames (12) would
    batches = [len(list((round_dir(loop, name) / "label").glob("batch_*.json"))) for name in ("round_01", "round_02")]
    assert batches == [3, 2]


def test_rerunning_a_finished_loop_runs_nothing(loop):
    config = loop_config(loop)
    result = snakemake(loop, config, "-n")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr, result.stdout
    config["runs"]["example"]["active_learning"]["label"]["max_failed_fraction"] = 0.9  # gates merges to come only
    result = snakemake(loop, config, "-n")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr, result.stdout


def test_raising_the_rounds_runs_only_the_new_round(loop):
    config = loop_config(loop)
    config["runs"]["example"]["active_learning"]["rounds"] = 3
    jobs = planned_jobs(loop, config)
    # the new round's labelling jobs follow its selection, once it has run
    assert jobs == {"explore": 2, "select": 1, "merge_labels": 1, "build_shard": 1, "split": 1,
                    "member_settings": 1, "train_member": 2, "aggregate": 1, "export": 1, "evaluate": 1, "round_summary": 1,
                    "active_learning_report": 1, "all": 1}


def test_a_loop_with_max_rounds_stops_in_the_first_round_with_nothing_left_to_label(loop, tmp_path):
    """Each trajectory records its first frame only (interval > steps): the two starting structures.  Round 1
    labels the first and fails on the second; round 2 explores the same two, one labelled already and one
    that failed before, so nothing is left to label: the loop stops in round 2 of at most 5, and round 1's
    committee is the result.  A rerun, or a higher max_rounds, runs nothing.  The trust levels are expected
    force errors here, through the previous round's force calibration."""
    work = tmp_path / "copy"
    shutil.copytree(loop, work, symlinks=True)  # round 0 is the loop's; every later round runs again
    config = loop_config(loop)
    section = config["runs"]["example"]["active_learning"]
    del section["rounds"]
    section.update(max_rounds=5, interval=25, trust_scale="calibrated")
    result = run_loop(work, config)
    assert result.returncode == 0, result.stdout + result.stderr
    summaries = [json.loads((round_dir(work, name) / "summary.json").read_text()) for name in ROUNDS]
    assert [(s["decision"], s["n_candidates"], s["n_selected"], s["n_labelled"]) for s in summaries] == [
        ("trained", 0, 0, 0), ("trained", 2, 2, 1), ("stopped", 2, 0, 0)]
    assert summaries[2]["reason"].startswith("nothing left to label: the 2 candidates")
    assert summaries[2]["test_energy_rmse_per_atom"] is None and not (round_dir(work, "round_03")).exists()
    table = (work / "results/example/active_learning/rounds.csv").read_text().splitlines()
    assert len(table) == 4 and ",stopped,nothing left to label" in table[3]
    assert "stopped in round 2 of at most 5" in result.stderr and "the result is round 1's committee" in result.stderr
    factor = json.loads((round_dir(work, "round_01") / "evaluation/summary.json").read_text())[
        "force_calibration_factor"]
    selection = json.loads((round_dir(work, "round_02") / "selection.json").read_text())
    assert selection["trust_scale"] == "calibrated" and factor > 0
    assert (selection["trust_lo"], selection["trust_hi"]) == pytest.approx((0.0, 1000.0 / factor))
    for rounds in (5, 9):
        section["max_rounds"] = rounds
        again = snakemake(work, config, "-n")
        assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout


def test_a_warm_start_starts_each_member_from_its_previous_self(loop):
    config = loop_config(loop)
    config["runs"]["example"]["active_learning"]["warm_start"] = True
    plan = dry_run(loop, config, "--forcerun", "train_member")
    commands = [job["shellcmd"] for job in plan["jobs"] if job["rule"] == "train_member"]
    assert len(commands) == 6, plan
    for line in commands:
        member_dir = line.split("--output-dir ")[1].split()[0]
        k, member = int(member_dir.split("round_")[1][:2]), member_dir.rsplit("/", 1)[1]
        if k == 0:
            assert "--initial-model" not in line
        else:
            assert f"--initial-model results/example/round_{k - 1:02d}/committee/{member}/model.pt" in line


def weights(workdir, name):
    states = [torch.load(p, weights_only=True)["model_state_dict"]
              for p in sorted((round_dir(workdir, name) / "committee").glob("member_*/model.pt"))]
    return [state[key] for state in states for key in sorted(state)]


def test_a_killed_labelling_job_reruns_to_the_same_loop_as_a_clean_run(loop, tmp_path):
    """A calculation kills its job midway through a batch; the rerun repeats only the unfinished
    calculations and ends with the clean run's labels, later selections and weights. What comes before
    round 1's labelling (round 0, the exploration and the selection) is the clean run's, copied."""
    work = tmp_path / "copy"
    shutil.copytree(loop, work, symlinks=True)
    before_labelling = {"explore", "candidates.extxyz", "selected.extxyz", "selection.json", "logs", "benchmarks"}
    for path in [*round_dir(work, "round_01").iterdir(), round_dir(work, "round_02")]:
        if path.name not in before_labelling:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    copied = [round_dir(work, "round_00") / "committee/member_000/model.pt", round_dir(work, "round_01") / "selected.extxyz"]
    made = [path.stat().st_mtime_ns for path in copied]
    config = loop_config(work, kill_marker=str(work / "killed"))
    config["runs"]["example"]["active_learning"]["seed_files"] = str(Path(loop) / "starts.extxyz")  # as copied
    first = run_loop(work, config)
    assert first.returncode != 0 and (work / "killed").exists()
    second = run_loop(work, config)
    assert second.returncode == 0, second.stdout + second.stderr
    assert [path.stat().st_mtime_ns for path in copied] == made
    batches = sorted((round_dir(work, "round_01") / "label").glob("batch_*.json"))
    reused = [r["reused"] for batch in batches for r in json.loads(batch.read_text())["frames"]]
    assert any(reused) and not all(reused)
    for name in ROUNDS[1:]:
        for product in ("selected.extxyz", "labelled.extxyz"):
            assert (round_dir(work, name) / product).read_text() == (round_dir(loop, name) / product).read_text()
    for name in ROUNDS:
        assert all(torch.equal(a, b) for a, b in zip(weights(work, name), weights(loop, name), strict=True))


def test_an_edited_labelled_file_stops_a_dry_run_until_it_is_merged_again(loop):
    """labelled.extxyz is what the shard is built from: a hand edit, even with its mtime restored (Snakemake
    would not notice), stops the run while the DAG is built; --forcerun merges it again from the batches."""
    config = loop_config(loop)
    labelled = round_dir(loop, "round_01") / "labelled.extxyz"
    kept, stat = labelled.read_bytes(), labelled.stat()
    try:
        labelled.write_bytes(kept.replace(b"Au", b"Cu", 1))
        os.utime(labelled, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        dry = snakemake(loop, config, "-n")
        said = dry.stdout + dry.stderr
        assert dry.returncode != 0 and "labelled.extxyz: deleted or not the sha256 labelling.json records" in said
        assert "--forcerun results/example/round_01/labelled.extxyz" in said
        jobs = dry_run(loop, config, "--forcerun", "results/example/round_01/labelled.extxyz")["jobs"]
        rounds = {rule: sorted(job["wildcards"].get("round") for job in jobs if job["rule"] == rule)
                  for rule in ("label", "merge_labels")}
        assert rounds == {"label": [], "merge_labels": ["01", "02"]}  # merged again from the batches
    finally:
        labelled.write_bytes(kept)
        os.utime(labelled, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert "Nothing to be done" in snakemake(loop, config, "-n").stdout
