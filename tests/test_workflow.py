"""The Snakemake workflow: config validation, the DAG over several configs (dry runs), lint, and a
tiny full run with the rerun-nothing, add-a-member, failed-member and reproducibility checks."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from aenet_core.data.limits import LIMIT_RULES
from aenet_core.workflow.config import ConfigError, check_config
from workflow_setup import (ROOT, SCHEMA, SNAKEMAKE, TINY, default_config, dry_run, shipped_config, member_weights,
                            planned_jobs, snakemake, tiny_config)

pytestmark = pytest.mark.slow
PROFILE = ROOT / "workflow/profiles/slurm"


@pytest.fixture(autouse=True)
def needs_snakemake():
    if not Path(SNAKEMAKE).exists():
        pytest.skip("snakemake is not installed")


def member_count(config, run="example") -> int:
    return config["runs"][run]["committee"]["num_members"]


def test_a_run_plans_the_whole_dag(tmp_path):
    jobs = planned_jobs(tmp_path, default_config())
    assert jobs == {"example_data": 1, "reference_energies": 1, "build_database": 1, "split": 1, "member_settings": 1,
                    "train_member": member_count(default_config()), "aggregate": 1, "export": 1, "evaluate": 1, "all": 1}


def test_the_shipped_config_plans_round_0_and_two_rounds_of_active_learning(tmp_path):
    jobs = planned_jobs(tmp_path, shipped_config())
    loop = shipped_config()["runs"]["example"]["active_learning"]
    rounds, explorations = loop["rounds"], loop["seeds"] * len(loop["temperatures"])
    assert rounds >= 2
    assert jobs == {"example_data": 1, "reference_energies": 1, "build_database": 1, "exploration_seeds": 1,
                    "split": rounds + 1, "member_settings": rounds + 1,
                    "train_member": member_count(shipped_config()) * (rounds + 1),
                    "aggregate": rounds + 1,
                    "export": rounds + 1, "evaluate": rounds + 1, "round_summary": rounds + 1,
                    # the labelling jobs (and their calculator settings) follow what a selection selects
                    "explore": explorations * rounds, "select": rounds, "merge_labels": rounds,
                    "build_shard": rounds, "active_learning_report": 1, "all": 1}


def test_a_sweep_shares_what_it_can(tmp_path):
    config = default_config()
    base = config["runs"]["example"]
    config["runs"] = {
        "small": base | {"architecture": [[5, "tanh"]]},
        "large": base | {"architecture": [[20, "tanh"], [20, "tanh"]], "committee": {"num_members": 3}},
        "wide_cutoff": base | {"descriptor": base["descriptor"] | {"rad_cutoff": 5.5}},
    }
    jobs = planned_jobs(tmp_path, config)
    assert jobs["build_database"] == 2 and jobs["reference_energies"] == 2  # small and large share one
    assert jobs["train_member"] == 2 * member_count(config, "small") + 3 and jobs["split"] == 3 and jobs["example_data"] == 1


def test_own_data_is_one_line(tmp_path, shared_data):
    config = default_config()
    config["runs"] = {"tio2": {"sources": str(shared_data / "TiO2" / "*.xsf"), "descriptor": {
        "species": ["Ti", "O"], "rad_order": 10, "rad_cutoff": 6.0, "ang_order": 3, "ang_cutoff": 3.5}}}
    plan = dry_run(tmp_path, config)
    jobs = plan["counts"]
    assert "example_data" not in jobs and jobs["train_member"] == 2
    (database,) = [job for job in plan["jobs"] if job["rule"] == "build_database"]
    # Every file is an input of the database build.
    assert {str(path) for path in (shared_data / "TiO2").glob("*.xsf")} <= set(database["input"])


def job_resources(plan, rule) -> list[dict]:
    """The resources and threads of each planned job of ``rule``, written as Snakemake shows a job (which leaves
    out its internal _cores and _nodes)."""
    return [{name: str(value) for name, value in job["resources"].items() if name not in ("_cores", "_nodes")}
            | {"threads": str(job["threads"])} for job in plan["jobs"] if job["rule"] == rule]


def through_the_profile(tmp_path, config, *args):
    """The plan of a dry run through the SLURM profile (--cores only because a dry run caps threads at it)."""
    return dry_run(tmp_path, config, "--workflow-profile", str(PROFILE), "--cores", "8", *args)


def test_the_profile_holds_no_account_partition_or_job_size():
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert not {"default-resources", "set-resources"} & set(profile)  # the config's cluster section has them


def test_a_cpu_run_through_the_profile_asks_for_nothing_gpu_related(tmp_path):
    result = through_the_profile(tmp_path, default_config())
    members = job_resources(result, "train_member")
    assert len(members) == member_count(default_config())
    for job in members:
        assert job["gpu"] == "0" and job["gpu_model"] == "" and "cpus_per_gpu" not in job
        assert job["slurm_partition"] == "" and job["slurm_account"] == ""  # the cluster's defaults apply
        assert (job["threads"], job["runtime"], job["mem_mb"]) == ("2", "720", "16000")
    (database,) = job_resources(result, "build_database")
    assert "gpu" not in database and database["runtime"] == "120"
    for rule in ("example_data", "split", "aggregate", "export"):  # (local rules: test_cluster.py checks that)
        (job,) = job_resources(result, rule)
        assert set(job) == {"tmpdir", "threads"}, rule  # nothing to ask a scheduler for


def test_a_cuda_run_through_the_profile_asks_gpus_per_member(tmp_path):
    config = default_config()
    config["runs"]["example"].update(device="cuda", gpus_per_member=2)
    config["cluster"] = {"account": "chem42", "partition": "short", "gpu_partition": "gpu", "gpu_model": "a100"}
    result = through_the_profile(tmp_path, config)
    members = job_resources(result, "train_member")
    assert len(members) == member_count(default_config())
    for job in members:
        assert (job["gpu"], job["gpu_model"], job["slurm_partition"], job["threads"]) == ("2", "a100", "gpu", "2")
        assert job["slurm_account"] == "chem42" and "cpus_per_gpu" not in job  # CPUs: the member's threads
    for job in result["jobs"]:  # a process per GPU, the job's threads shared among them
        if job["rule"] == "train_member":
            assert "--device cuda --nproc 2 --threads 1 " in job["shellcmd"]
    for rule in ("reference_energies", "build_database", "evaluate"):
        (job,) = job_resources(result, rule)
        assert "gpu" not in job and "gpu_model" not in job, rule
        assert (job["slurm_partition"], job["slurm_account"]) == ("short", "chem42"), rule


def test_a_labelling_batch_is_a_job_with_the_configured_resources(tmp_path):
    """The batches a round labels follow its selection (test_active_learning.py counts them); one asked for by
    name is planned before it."""
    config = shipped_config()
    config["runs"]["example"]["active_learning"]["label"]["threads"] = 4
    config["cluster"] = {"partition": "short", "resources": {"label": {"runtime": 1440}}}
    result = through_the_profile(tmp_path, config, "results/example/round_01/label/batch_000.json")
    (job,) = job_resources(result, "label")
    assert (job["threads"], job["runtime"], job["mem_mb"], job["slurm_partition"]) == ("4", "1440", "16000", "short")
    for job in job_resources(result, "explore"):
        assert (job["threads"], job["runtime"], job["mem_mb"]) == ("1", "120", "4000")
    for rule in ("exploration_seeds", "merge_labels", "round_summary", "active_learning_report"):
        assert all(set(job) == {"tmpdir", "threads"} for job in job_resources(result, rule)), rule


def test_sizes_given_by_the_user_keep_the_others(tmp_path):
    config = default_config()
    config["cluster"] = {"resources": {"train_member": {"runtime": 1440}}}
    result = through_the_profile(tmp_path, config, "--set-resources", "evaluate:runtime=90")
    for job in job_resources(result, "train_member"):
        assert (job["runtime"], job["mem_mb"]) == ("1440", "16000")
    (evaluate,) = job_resources(result, "evaluate")
    assert (evaluate["runtime"], evaluate["mem_mb"]) == ("90", "8000")
    (database,) = job_resources(result, "build_database")
    assert (database["runtime"], database["mem_mb"]) == ("120", "8000")


@pytest.mark.skipif(torch.version.cuda is not None, reason="this torch has CUDA: a CUDA run is not refused")
def test_a_cuda_run_without_a_cuda_torch_is_refused_before_any_job(tmp_path):
    config = default_config()
    config["runs"]["example"]["device"] = "cuda"
    result = snakemake(tmp_path, config, "--cores", "1")
    assert result.returncode != 0 and "runs.example.device is cuda, but the torch of" in result.stderr \
        and "is built without CUDA" in result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["runs"]["example"]["descriptor"].update(rad_ordr=4), "rad_ordr"),
    (lambda c: c["runs"]["example"]["descriptor"].update(rad_order=-1), "-1"),
    (lambda c: c["runs"]["example"].update(architecture=[[10, "relu"]]), "relu"),
    (lambda c: c["runs"]["example"]["training"].update(split_seed=3), "split_seed"),
    (lambda c: c["runs"]["example"]["training"].update(iteratons=5), "iteratons"),
    (lambda c: c["runs"]["example"].update(device="gpu0"), "gpu0"),
    (lambda c: c.update(cluster={"account": "x; touch /tmp/owned"}), "touch"),
    (lambda c: c.update(cluster={"gpu_model": "a100:2"}), "a100:2"),
    (lambda c: c.update(cluster={"resources": {"train_member": {"mem_mb": 0}}}), "mem_mb"),
    (lambda c: c.update(cluster={"resources": {"train_membr": {"runtime": 60}}}), "train_membr"),
    (lambda c: c["runs"]["example"].update(reference_energies={"method": "regression", "values": {"Cu": 1.0}}),
     "values"),
    (lambda c: c["runs"]["example"].update(reference_energies={"method": "fixed", "values": {"Cu": 1.0, "Au": 2.0},
                                                               "fixed": {"Cu": 1.0}}), "fixed"),
])
def test_a_bad_config_is_refused_naming_the_key(edit, key):
    """The checks the Snakefile makes before any job (tests/test_config_checks.py shows it makes them)."""
    config = default_config()
    edit(config)
    with pytest.raises(ConfigError, match=re.escape(key)):
        check_config(config, SCHEMA)


INJECTION = "$(touch OWNED)"
INJECTIONS = {  # every config string that names something a rule passes to the shell
    "species": lambda run: run["descriptor"].update(species=["Cu", "Au" + INJECTION]),
    "compounds": lambda run: run.update(reference_energies={"method": "reference_compounds",
                                                            "compounds": ["CuAu" + INJECTION]}),
    "fixed keys": lambda run: run.update(reference_energies={"fixed": {"Cu" + INJECTION: 1.0}}),
    "values keys": lambda run: run.update(reference_energies={"method": "fixed",
                                                              "values": {"Cu": 1.0, "Au" + INJECTION: 2.0}}),
    "export prefix": lambda run: run.update(export={"prefix": "p" + INJECTION}),
    "storage dtype": lambda run: run.update(database={"storage_dtype": "float64" + INJECTION}),
    "device": lambda run: run.update(device="cuda" + INJECTION),
}


def injected(vector) -> dict:
    config = default_config()
    if vector == "run name":
        config["runs"] = {"ex" + INJECTION: config["runs"]["example"]}
    elif vector.startswith("cluster"):
        config["cluster"] = {vector.split()[1]: "x" + INJECTION}
    else:
        INJECTIONS[vector](config["runs"]["example"])
    return config


@pytest.mark.parametrize("vector", [*INJECTIONS, "run name", "cluster account", "cluster partition"])
def test_no_config_string_reaches_the_shell(vector):
    with pytest.raises(ConfigError, match=re.escape(INJECTION)):  # refused, named
        check_config(injected(vector), SCHEMA)


def test_a_run_name_with_shell_syntax_stops_the_workflow_before_any_job(tmp_path):
    result = snakemake(tmp_path, injected("run name"), "--cores", "1")
    assert result.returncode != 0 and INJECTION in result.stderr + result.stdout  # refused, named
    assert "Job stats" not in result.stdout + result.stderr and not (tmp_path / "OWNED").exists()


def test_file_names_with_shell_syntax_are_quoted(tmp_path):
    """Paths come from globs, not the schema: a file name full of shell syntax is passed as one argument."""
    data = tmp_path / "data"
    data.mkdir()
    path = data / f"cu au {INJECTION}; 'q'.extxyz"
    made = subprocess.run([sys.executable, "-m", "aenet_core.cli", "example-data", "--output", str(path),
                           "--n-structures", "6"], capture_output=True, text=True, cwd=ROOT)
    assert made.returncode == 0, made.stderr
    config = tiny_config()
    config["runs"]["example"]["sources"] = str(data / "*.extxyz")
    result = snakemake(tmp_path, config, "--cores", "1", "--until", "build_database")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "OWNED").exists() and not (ROOT / "OWNED").exists()
    assert list(tmp_path.glob("results/databases/*/database.h5"))


def run_schema() -> dict:
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    return schema["properties"]["runs"]["additionalProperties"]["properties"]


def test_the_training_block_is_the_library_checks_field_by_field():
    from dataclasses import fields

    from aenet_core.training.config import TorchTrainingConfig, config_json_schema

    owned = {"testpercent", "split_seed", "seed", "device", "atomic_energies", "max_energy", "max_forces"}
    expected = {name: rule for name, rule in config_json_schema().items() if name not in owned}
    assert run_schema()["training"]["properties"] == expected  # types, ranges, choices; no defaults
    assert set(expected) | owned == {f.name for f in fields(TorchTrainingConfig)}


def test_library_defaults_live_in_the_library_only():
    from aenet_core.rules import TESTPERCENT

    properties = run_schema()
    for block, key in (("descriptor", "min_cutoff"), ("split", "testpercent"), ("database", "storage_dtype"),
                       ("export", "prefix"), ("evaluate", "n_uncertain"), ("reference_energies", "method"),
                       *(("database", key) for key in LIMIT_RULES)):
        assert "default" not in properties[block]["properties"][key], (block, key)
    example = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())["properties"]["example_data"]
    assert not any("default" in rule for rule in example["properties"].values())
    testpercent = dict(properties["split"]["properties"]["testpercent"])
    testpercent.pop("description")
    assert testpercent == TESTPERCENT.json_schema()


def test_the_database_limits_are_the_library_rules_and_reach_both_commands(tmp_path):
    database = run_schema()["database"]["properties"]
    given = {key: {k: v for k, v in database[key].items() if k != "description"} for key in LIMIT_RULES}
    assert given == {key: rule.json_schema() for key, rule in LIMIT_RULES.items()}
    config = default_config()
    config["runs"]["example"]["database"] = {"force_limit": 99.0, "min_distance": 0.3}
    commands = {name: job["shellcmd"] for job in dry_run(tmp_path, config)["jobs"] if job["shellcmd"]
                for name in ("reference-energies", "build-database") if f"aenet_core.cli {name}" in job["shellcmd"]}
    assert "--force-limit 99.0" in commands["reference-energies"] and "--min-distance" not in commands[
        "reference-energies"]
    assert "--force-limit 99.0 --min-distance 0.3" in commands["build-database"]
    assert "--energy-limit" not in commands["build-database"]  # not given: the library's default


def test_the_md_settings_are_the_library_rules_and_defaults():
    from aenet_core.active_learning.settings import EXPLORE_RULES

    loop = run_schema()["active_learning"]["properties"]
    for key, rule in EXPLORE_RULES.items():
        if key in loop:
            given = {k: v for k, v in loop[key].items() if k != "description"}
            assert given == rule.json_schema(), key
    assert {"temperatures", "random_seed"} <= set(loop) and {"seed", "temperature"}.isdisjoint(loop)
    assert loop["temperatures"]["items"] == EXPLORE_RULES["temperature"].json_schema()
    assert not any("default" in loop[key] for key in EXPLORE_RULES if key in loop)


def test_lint_reports_nothing(tmp_path):
    result = snakemake(tmp_path, shipped_config(), "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


@pytest.fixture
def finished(finished_workflow):
    """The tiny default run (tests/conftest.py), completed once per session for the checks below."""
    return finished_workflow


def test_the_full_run_writes_every_product(finished):
    results = finished / "results" / "example"
    for path in ("split.json", "committee/committee_metadata.json", "committee/members.csv",
                 "committee/learning_curves.png", "ascii/manifest.json", "ascii/member_001/potential.Cu.nn.ascii",
                 "evaluation/parity.png", "evaluation/stress_parity.png", "evaluation/uncertainty.png", "evaluation/most_uncertain.csv",
                 "evaluation/most_uncertain.extxyz", "committee/calibration.json", "logs/train_member_000.log",
                 "benchmarks/train_member_000.tsv"):
        assert (results / path).is_file(), path
    assert not list(finished.rglob("*.tmp"))
    checkpoints = results / "committee/member_000/checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.pt")) == [  # 5 epochs: the last 3 and the best are kept
        "best_model.pt", "checkpoint_epoch_0002.pt", "checkpoint_epoch_0003.pt", "checkpoint_epoch_0004.pt"]


def test_the_evaluation_checks_the_exported_committee_in_lammps(finished):
    """Every run puts its test structures through LAMMPS (when the plugin is built) and records the agreement."""
    from aenet_core.lammps import LammpsError, input_lines, plugin_path

    check = json.loads((finished / "results/example/evaluation/summary.json").read_text())["lammps_check"]
    try:
        plugin_path()
    except LammpsError as error:
        assert check == {"checked": False, "reason": str(error)}
        return
    assert check["checked"] and check["agrees"] and check["n_structures"] >= 1
    assert check["max_energy_difference_per_atom"] < 1e-10 and check["max_force_difference"] < 1e-9
    manifest = json.loads((finished / "results/example/ascii/manifest.json").read_text())
    assert manifest["lammps_input"][2] == "pair_style aenet/core"
    assert manifest["lammps_input"] == input_lines(finished / "results/example/ascii")  # what lammps-input prints
    assert (finished / "results/example/ascii/pair.lammps").read_text().splitlines() == manifest["lammps_input"]
    screen = (finished / "terminal.txt").read_text()
    assert "pair style aenet/core matches to" in screen


def test_rerunning_a_finished_workflow_runs_nothing(finished):
    result = snakemake(finished, tiny_config(), "-n")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr


def test_the_members_settings_file_records_what_they_trained_with(finished):
    settings = yaml.safe_load((finished / "results/example/committee/settings.yaml").read_text())
    run = tiny_config()["runs"]["example"]
    assert settings == {"architecture": run["architecture"], "training": {"max_checkpoints": 3, **TINY}}
    trained = json.loads((finished / "results/example/committee/member_000/summary.json").read_text())
    assert trained["training_config"]["iterations"] == TINY["iterations"]


def test_changing_a_training_setting_retrains_every_member_and_reordering_none(finished, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(finished, work, symlinks=True)
    config = tiny_config()
    config["runs"]["example"]["training"] = dict(reversed(TINY.items()))  # the same settings
    assert "Nothing to be done" in snakemake(work, config, "-n").stdout
    config["runs"]["example"]["training"] = TINY | {"iterations": 6}
    assert planned_jobs(work, config) == {
        "member_settings": 1, "train_member": 2, "aggregate": 1, "export": 1, "evaluate": 1, "all": 1}


def test_adding_a_member_trains_only_that_member(finished, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(finished, work, symlinks=True)
    plan = dry_run(work, tiny_config(3))
    assert plan["counts"] == {"train_member": 1, "aggregate": 1, "export": 1, "evaluate": 1, "all": 1}
    (member,) = [job for job in plan["jobs"] if job["rule"] == "train_member"]
    assert "--member-index 002" in member["shellcmd"]


def test_two_clean_runs_give_identical_weights(finished, tmp_path):
    result = snakemake(tmp_path, tiny_config(), "--cores", "2", "--until", "train_member")  # the weights' last step
    assert result.returncode == 0, result.stderr
    for member in ("000", "001"):
        for a, b in zip(member_weights(finished, member), member_weights(tmp_path, member)):
            assert torch.equal(a, b)


def test_a_failed_member_keeps_the_others_and_a_rerun_trains_only_it(finished, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(finished, work, symlinks=True)
    # As if member 1 had never finished: its folder and everything downstream of the committee are gone.
    results = work / "results/example"
    for path in ("committee/member_001", "committee/committee_metadata.json", "ascii", "evaluation"):
        shutil.rmtree(results / path) if (results / path).is_dir() else (results / path).unlink()
    member = results / "committee/member_001"
    member.mkdir()
    (member / "checkpoints").write_text("a file where the member needs a folder: the job fails")
    kept = (results / "committee/member_000/model.pt").stat().st_mtime_ns
    failed = snakemake(work, tiny_config(), "--cores", "2", "--keep-going")
    assert failed.returncode != 0 and "member 1 failed" in (results / "logs/train_member_001.log").read_text()
    assert (results / "committee/member_000/model.pt").stat().st_mtime_ns == kept
    assert not (member / "summary.json").exists() and not (member / "model.pt").exists()
    (member / "checkpoints").unlink()
    jobs = planned_jobs(work, tiny_config())
    assert jobs == {"train_member": 1, "aggregate": 1, "export": 1, "evaluate": 1, "all": 1}
    assert snakemake(work, tiny_config(), "--cores", "2", "--until", "train_member").returncode == 0


def test_a_damaged_or_deleted_model_or_export_stops_a_dry_run_until_it_is_made_again(finished, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(finished, work, symlinks=True)
    results = work / "results/example"
    model, exported = results / "committee/member_000/model.pt", results / "ascii/member_001/potential.Cu.nn.ascii"
    summary, weights = json.loads((model.parent / "summary.json").read_text()), member_weights(work, "000")

    def refused(why, path):
        dry = snakemake(work, tiny_config(), "-n")
        said = dry.stdout + dry.stderr
        return dry.returncode != 0 and why in said and f"--forcerun {path.relative_to(work)}" in said

    model.write_bytes(model.read_bytes()[:1000])
    assert refused("model.pt: deleted or not the sha256 summary.json records", model)
    force = ("--forcerun", str(model.relative_to(work)))
    retrain = {"train_member": 1, "aggregate": 1, "export": 1, "evaluate": 1, "all": 1}
    assert planned_jobs(work, tiny_config(), *force) == retrain
    assert snakemake(work, tiny_config(), "--cores", "2", *force).returncode == 0
    # The member resumed from its final checkpoint and wrote the same weights and metrics.
    assert "resuming from" in (results / "logs/train_member_000.log").read_text()
    assert json.loads((model.parent / "summary.json").read_text())["metrics"] == summary["metrics"]
    assert all(torch.equal(a, b) for a, b in zip(member_weights(work, "000"), weights))
    assert "Nothing to be done" in snakemake(work, tiny_config(), "-n").stdout
    kept = exported.read_bytes()
    exported.write_bytes(kept[:1000])
    assert refused("potential.Cu.nn.ascii deleted or not the sha256", exported.parent.parent)
    # The evaluation checks the exported files in LAMMPS: it follows them.
    assert planned_jobs(work, tiny_config(), "--forcerun", "results/example/ascii") == {
        "export": 1, "evaluate": 1, "all": 1}
    exported.write_bytes(kept)
    model.unlink()  # Snakemake itself would not remake it: its consumers are up to date
    assert refused("model.pt: deleted or not the sha256 summary.json records", model)


def test_a_smaller_committee_leaves_no_stale_members_behind(finished, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(finished, work, symlinks=True)
    assert snakemake(work, tiny_config(1), "--cores", "2", "--until", "export").returncode == 0
    results = work / "results/example"
    exported = sorted(p.name for p in (results / "ascii").iterdir() if not p.name.startswith("."))
    assert exported == ["manifest.json", "member_000", "pair.lammps"]
    assert len((results / "committee/members.csv").read_text().splitlines()) == 2  # header and one member


def test_fixed_reference_energies_are_recorded_as_fixed(tmp_path):
    config = tiny_config()
    config["runs"]["example"]["reference_energies"] = {"method": "fixed", "values": {"Cu": -0.5, "Au": -0.25}}
    assert snakemake(tmp_path, config, "--cores", "1", "--until", "reference_energies").returncode == 0
    (path,) = tmp_path.glob("results/databases/*/reference_energies.json")
    saved = json.loads(path.read_text())
    assert saved["method"] == "fixed" and saved["atomic_energies"] == {"Cu": -0.5, "Au": -0.25}
    config["runs"]["example"]["reference_energies"]["values"] = {"Cu": -0.5}
    (tmp_path / "missing").mkdir()
    failed = snakemake(tmp_path / "missing", config, "--cores", "1", "--until", "reference_energies")
    assert failed.returncode != 0
    (log,) = (tmp_path / "missing").glob("results/databases/*/logs/reference_energies.log")
    assert "no value for Au" in log.read_text()
