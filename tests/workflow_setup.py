"""What the workflow tests share: running Snakemake on a config in a working directory, the shipped
and a tiny config, and reading back the results."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
TINY = {"iterations": 5, "method": {"name": "adam", "mu": 0.005, "batchsize": 4}, "force_weight": 0.1}


def shipped_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def default_config() -> dict:
    """The shipped config without the example run's active-learning loop (test_active_learning.py runs that)."""
    config = shipped_config()
    config["runs"]["example"].pop("active_learning")
    return config


def snakemake(workdir, config, *args, timeout=600, program=(SNAKEMAKE,)):
    """Snakemake (``program``) on ``config`` in ``workdir``."""
    path = Path(workdir) / "test-config.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [*program, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile",
               str(path), *args]
    # The rules run `python -m aenet_core.cli`: the interpreter of this test run must come first on PATH.
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=workdir, env=env)


def dry_run(workdir, config, *args) -> dict:
    """The jobs a dry run (-n) of ``config`` plans, as tests/dry_run.py records them: {"counts": {rule: jobs},
    "jobs": [{"rule", "wildcards", "input", "resources", "threads", "shellcmd"}]}."""
    with tempfile.TemporaryDirectory() as folder:
        plan = Path(folder) / "plan.json"
        result = snakemake(workdir, config, "-n", *args,
                           program=(sys.executable, str(ROOT / "tests" / "dry_run.py"), str(plan)))
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(plan.read_text())


def planned_jobs(workdir, config, *args) -> dict:
    """{rule: count} of the jobs a dry run plans."""
    return dry_run(workdir, config, *args)["counts"]


def tiny_config(num_members=2) -> dict:
    config = default_config()
    config["example_data"] = {"n_structures": 10, "seed": 3}
    run = config["runs"]["example"]
    run.update(training=TINY, committee={"num_members": num_members, "base_seed": 11}, threads=1,
               split={"testpercent": 30, "split_seed": 7})
    return config


def member_weights(workdir, member):
    state = torch.load(Path(workdir) / f"results/example/committee/member_{member}/model.pt",
                       weights_only=True)["model_state_dict"]
    return [state[k] for k in sorted(state)]
