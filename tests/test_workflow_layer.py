"""The workflow layer (aenet_core.workflow): what the Snakefile imports leaves torch out, and what a checked
config plans, called directly."""
import re
import subprocess
import sys

import pytest

from workflow_setup import ROOT, SCHEMA, default_config, shipped_config

from aenet_core.workflow.config import ConfigError, check_config
from aenet_core.workflow.plan import Plan
from aenet_core.workflow.targets import TEMPERATURE, round_of, round_target, run_of, temperature_label

HEAVY = ("torch", "pandas", "matplotlib", "h5py")


def workflow_imports() -> list:
    """The import statements of the Snakefile and its rule files (top level, one line each)."""
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]
    return [line for path in files for line in path.read_text().splitlines()
            if re.match(r"(from \S+ )?import ", line)]


def test_what_the_snakefile_imports_leaves_torch_out():
    imports = workflow_imports()
    assert any("aenet_core.workflow" in line for line in imports)
    code = "\n".join([*imports, "import sys", f"print([m for m in {HEAVY!r} if m in sys.modules])"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def checked(config) -> Plan:
    check_config(config, SCHEMA)
    return Plan(config, "results/example_data/example.extxyz")


def test_targets_name_a_run_or_one_of_its_rounds():
    assert round_target("example", 2) == "example/round_02"
    assert (run_of("example/round_02"), round_of("example/round_02")) == ("example", 2)
    assert (run_of("example"), round_of("example")) == ("example", None)


def test_members_are_labelled_and_seeded_as_the_library_names_them():
    config = default_config()
    config["runs"]["example"]["committee"] = {"num_members": 3, "base_seed": 40}
    plan = checked(config)
    assert plan.members("example") == ["000", "001", "002"]
    assert [plan.member_seed("example", m) for m in plan.members("example")] == [40, 41, 42]
    config["runs"]["example"]["committee"] = {"num_members": 2, "member_seeds": [7, 3]}
    assert checked(config).member_seed("example/round_01", "001") == 3


def test_a_cuda_member_trains_in_one_process_per_gpu_and_shares_its_threads():
    from aenet_core.workflow.arguments import member_process_args

    config = default_config()
    assert config["runs"]["example"].get("gpus_per_member") is None
    plan = checked(config)
    assert (plan.member_gpus("example"), plan.member_processes("example")) == (0, 1)  # the schema's default, 1
    config["runs"]["example"].update(device="cuda", gpus_per_member=4)
    plan = checked(config)
    assert (plan.member_gpus("example/round_01"), plan.member_processes("example")) == (4, 4)
    assert member_process_args(4, 8) == "--nproc 4 --threads 2"
    assert member_process_args(4, 2) == "--nproc 4 --threads 1"
    assert member_process_args(1, 2) == "--threads 2"  # a one-process member's command line as before


def test_runs_with_the_same_database_recipe_share_it():
    config = default_config()
    runs = config["runs"]
    runs["wider"] = {**runs["example"], "training": {"iterations": 7}}
    runs["other"] = {**runs["example"], "descriptor": {**runs["example"]["descriptor"], "rad_cutoff": 3.9}}
    plan = checked(config)
    assert plan.database_key("example") == plan.database_key("wider") != plan.database_key("other")
    assert plan.database_runs == {plan.database_key("example"): "example", plan.database_key("other"): "other"}


def test_a_loop_plans_its_rounds_explorations_and_label_batches():
    config = shipped_config()
    loop = config["runs"]["example"]["active_learning"]
    loop.update(rounds=2, seeds=2, temperatures=[300, 600.5, 1e4], max_frames=5, label={**loop["label"], "batch_size": 2})
    plan = checked(config)
    assert plan.targets("example") == ["example/round_00", "example/round_01", "example/round_02"]
    assert plan.shard_rounds("example/round_02") == ["01", "02"] and plan.shard_rounds("example/round_00") == []
    # every temperature as the explore rule's wildcard ([0-9.]+) matches it: 1e4 is not spelled 1e+04
    assert plan.explorations("example") == [(s, t) for s in ("000", "001") for t in ("300", "600.5", "10000")]
    # batches follow what a round selected, not max_frames: none for a round that selected nothing
    assert [plan.label_batches("example", n) for n in (5, 1, 0)] == [["000", "001", "002"], ["000"], []]


@pytest.mark.parametrize("kelvin, label", [(300, "300"), (300.0, "300"), (600.5, "600.5"), (1e6, "1000000"),
                                           (1e-5, "0.00001"), (300.1234567, "300.1234567")])
def test_a_temperature_has_one_spelling_of_digits_only(kelvin, label):
    assert temperature_label(kelvin) == label
    assert re.fullmatch(TEMPERATURE, label)


def test_a_loop_with_max_rounds_trains_until_the_first_round_whose_exploration_says_stop():
    config = shipped_config()
    loop = config["runs"]["example"]["active_learning"]
    loop.pop("rounds")
    loop["max_rounds"] = 5
    plan = checked(config)
    asked = []

    def verdict(k):  # round 2's exploration finds the committee accurate
        asked.append(k)
        return {"stop": k == 2}

    assert plan.loop_end("example", verdict) == (1, 2) and asked == [1, 2]
    assert plan.targets("example", 1) == ["example/round_00", "example/round_01"]
    assert plan.loop_end("example", lambda k: {"stop": False}) == (5, None)
    loop["rounds"] = 3  # a fixed count never asks
    del loop["max_rounds"]
    assert checked(config).loop_end("example", None) == (3, None)


def test_a_loop_gives_rounds_or_max_rounds():
    config = shipped_config()
    loop = config["runs"]["example"]["active_learning"]
    loop["max_rounds"] = 4
    with pytest.raises(ConfigError, match="give rounds .* or max_rounds .*, not both"):
        check_config(config, SCHEMA)
    del loop["max_rounds"], loop["rounds"]
    with pytest.raises(ConfigError, match="not neither"):
        check_config(config, SCHEMA)


def test_the_loops_steps_refuse_what_the_runs_database_would():
    from aenet_core.workflow.arguments import label_limit_args, seed_limit_args, select_limit_args

    config = shipped_config()
    config["runs"]["example"]["database"] = {"min_distance": 0.7, "force_limit": 50}
    plan = checked(config)
    c = plan.run_config("example")
    cutoff = max(c["descriptor"]["rad_cutoff"], c["descriptor"]["ang_cutoff"])
    assert select_limit_args(c) == "--min-distance 0.7"  # the database's cutoff
    assert label_limit_args(c) == f"--force-limit 50 --min-distance 0.7 --cutoff {cutoff}"
    assert seed_limit_args(c) == f"--min-distance 0.7 --cutoff {cutoff}"
