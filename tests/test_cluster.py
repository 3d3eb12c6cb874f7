"""The shipped SLURM profile on a real scheduler (`make test-cluster` starts a one-node cluster): the
example workflow submitted through workflow/profiles/slurm with only the documented user settings, every
computing rule a completed SLURM job with its threads as CPUs and no GPU, the bookkeeping rules run
locally, and the same weights and predictions as a local run; on a node with a GPU, CUDA members are
allocated one GPU each in the GPU partition."""
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from workflow_setup import ROOT, member_weights, snakemake, tiny_config

pytestmark = pytest.mark.cluster
# Set by tests/run-cluster-tests.sh: "gpu" when the cluster it started has a (fake) GPU, else "cpu". Unset,
# these tests skip (they would submit jobs to whatever cluster answers); set, a missing scheduler fails.
ROUND = os.environ.get("AENET_CORE_TEST_CLUSTER")
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
COMPUTING_RULES = {"reference_energies", "build_database", "train_member", "evaluate"}


def answers(*command) -> str | None:
    """The command's output, or None when it is missing or fails."""
    if shutil.which(command[0]) is None:
        return None
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return result.stdout if result.returncode == 0 else None


@pytest.fixture(scope="module")
def accounting() -> bool:
    if ROUND is None:
        pytest.skip("make test-cluster starts a local SLURM cluster and runs these tests against it")
    assert answers("sinfo", "-h") is not None, "the SLURM cluster does not answer sinfo"
    return "accounting_storage/none" not in (answers("scontrol", "show", "config") or "")


@pytest.fixture(scope="module")
def runs(accounting, tmp_path_factory):
    """The same config run locally and through the profile (as docs/clusters.md says for this cluster)."""
    config = tiny_config()
    config["runs"]["example"]["threads"] = 2  # the members' and the database build's CPUs
    local = tmp_path_factory.mktemp("local")
    result = snakemake(local, config, "--cores", "2")
    assert result.returncode == 0, result.stdout + result.stderr

    cluster = tmp_path_factory.mktemp("slurm")
    # Members small enough for two at once on the fake-GPU round's 4-CPU, 20 GB node. Unnamed, the
    # cluster's default account and partition are used; with accounting they are named, and must be
    # accepted too.
    config["cluster"] = {"resources": {"train_member": {"mem_mb": 4000}}}
    if accounting:
        config["cluster"] |= {"account": "testacct", "partition": "cpu"}
    options = [] if accounting else ["--slurm-status-command", "squeue"]
    start = time.monotonic()
    result = snakemake(cluster, config, "--workflow-profile", str(ROOT / "workflow/profiles/slurm"), *options)
    print(f"\nthrough SLURM ({'sacct' if accounting else 'squeue'}): {time.monotonic() - start:.0f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    return local, cluster, result.stdout + result.stderr


def slurm_jobs(log: str) -> dict[str, list[str]]:
    """{rule: [SLURM job ids]} from the submission lines of a Snakemake run."""
    jobs = {}
    for job_id, path in SUBMITTED.findall(log):
        rule = next(part for part in Path(path).parts if part.startswith("rule_"))[len("rule_"):]
        jobs.setdefault(rule, []).append(job_id)
    return jobs


def scheduler_record(job_id: str) -> str:
    """What slurmctld holds about a job: state, partition, CPUs, memory, GPUs (kept MinJobAge = 300 s)."""
    return answers("scontrol", "show", "job", job_id) or ""


def accounting_record(job_id: str) -> str:
    """State|Account|Partition as slurmdbd recorded them (it may take a moment to get a job's end)."""
    for _ in range(30):
        record = answers("sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State,Account,Partition") or ""
        if record and not record.startswith("RUNNING"):
            break
        time.sleep(1)
    return record


def test_every_computing_rule_is_a_completed_slurm_job_without_gpus(runs, accounting):
    _, _, log = runs
    jobs = slurm_jobs(log)
    assert set(jobs) == COMPUTING_RULES, log  # example_data, split, aggregate and export ran locally
    assert len(jobs["train_member"]) == 2  # one job per member
    threads = {"build_database": 2, "train_member": 2, "reference_energies": 1, "evaluate": 1}
    for rule, ids in jobs.items():
        for job_id in ids:
            record = scheduler_record(job_id)
            assert "JobState=COMPLETED" in record, (rule, record)
            assert "TresPerJob" not in record and "gres" not in record, (rule, record)  # no GPU asked for
            assert f"NumCPUs={threads[rule]} " in record, (rule, record)  # CPUs are the job's threads
            assert rule != "train_member" or "mem=4000M" in record, record  # memory as configured
            if accounting:
                assert accounting_record(job_id).strip() == "COMPLETED|testacct|cpu", rule


def test_slurm_and_local_runs_give_identical_results(runs):
    local, cluster, _ = runs
    for member in ("000", "001"):
        for a, b in zip(member_weights(local, member), member_weights(cluster, member), strict=True):
            assert torch.equal(a, b)
    predictions = "results/example/evaluation/predictions.csv"
    assert (local / predictions).read_text() == (cluster / predictions).read_text()


def test_a_cuda_member_is_allocated_one_gpu_and_its_threads(runs, tmp_path):
    if ROUND != "gpu":
        pytest.skip("this round's cluster has no GPU (make test-cluster's first round has one)")
    assert "gpu" in (answers("sinfo", "-h", "-p", "gpu", "-o", "%G") or ""), "no gpu partition with a GPU"
    _, cluster, _ = runs
    work = tmp_path / "cuda"
    shutil.copytree(cluster, work, symlinks=True)
    config = tiny_config()
    config["runs"]["example"].update(device="cuda", threads=2)
    config["cluster"] = {"gpu_partition": "gpu", "resources": {"train_member": {"mem_mb": 4000}}}
    # --no-hooks: this torch has no CUDA, so the start-up check would refuse (as it should) before any job;
    # the members are submitted, allocated, and then fail on the GPU-less torch.
    result = snakemake(work, config, "--workflow-profile", str(ROOT / "workflow/profiles/slurm"), "--no-hooks",
                       "--until", "train_member")
    members = slurm_jobs(result.stdout + result.stderr)
    assert set(members) == {"train_member"} and len(members["train_member"]) == 2, result.stdout + result.stderr
    for job_id in members["train_member"]:
        record = scheduler_record(job_id)
        assert "Partition=gpu" in record and "TresPerJob=gres:gpu:1" in record and "NumCPUs=2 " in record, record
