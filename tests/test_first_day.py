"""A scientist's first day, replayed: a config of their own replaces the shipped example, mistakes in it are
named before any job runs, a failing job says why on the screen, training shows its progress and the run ends
with a summary of what it made."""
import shutil
from pathlib import Path

import pytest
import yaml
from aenet_core.example_data import make_cuau_structures
from aenet_core.io import write_extxyz
from workflow_setup import ROOT, SNAKEMAKE, TINY, planned_jobs, snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def needs_snakemake():
    if not Path(SNAKEMAKE).exists():
        pytest.skip("snakemake is not installed")


@pytest.fixture
def checkout(tmp_path):
    """A working directory as a user has it: the shipped config.yaml, and their data in data/."""
    shutil.copy(ROOT / "config.yaml", tmp_path)
    (tmp_path / "data").mkdir()
    write_extxyz(tmp_path / "data" / "cuau.extxyz", make_cuau_structures(8, seed=2))
    return tmp_path


def widest(screen: str) -> int:
    """The longest line but Snakemake's echo of the command the user typed."""
    return max(len(line) for line in screen.splitlines() if not line.startswith("  Command: "))


def own_config(**changes) -> dict:
    run = {"sources": "data/*.extxyz", "training": TINY, "threads": 1,
           "descriptor": {"species": ["Cu", "Au"], "rad_order": 4, "rad_cutoff": 4.5, "ang_order": 2,
                          "ang_cutoff": 3.5}}
    return {"runs": {"mine": run | changes}}


def test_a_config_of_ones_own_replaces_the_shipped_example(checkout):
    jobs = planned_jobs(checkout, own_config())
    assert jobs["train_member"] == 2 and "example_data" not in jobs and "explore" not in jobs


@pytest.mark.parametrize("sources, message", [
    ("TiO2/*.xsf", "runs.mine.sources: 'TiO2/*.xsf' matches no file (relative to {checkout}, the directory "
                   "snakemake runs in)"),
    ("data", "runs.mine.sources: 'data' is a folder; name its structure files, e.g. 'data/*.extxyz' (1 files)"),
])
def test_sources_that_name_no_structure_file_are_refused_naming_the_base(checkout, sources, message):
    result = snakemake(checkout, own_config(sources=sources), "-n")
    screen = result.stdout + result.stderr
    assert result.returncode != 0 and message.format(checkout=checkout) in screen, screen


def test_species_the_descriptor_lacks_stop_the_run_before_any_job(checkout):
    config = own_config(descriptor={**own_config()["runs"]["mine"]["descriptor"], "species": ["Cu"]})
    result = snakemake(checkout, config, "--cores", "1")
    assert result.returncode != 0
    assert "runs.mine.descriptor.species is ['Cu'], but data/cuau.extxyz hold Au: add Au" in result.stdout + result.stderr
    assert not (checkout / "results").exists()  # no job ran


def test_a_failing_job_shows_why_and_not_its_command_line(checkout):
    result = snakemake(checkout, own_config(database={"min_distance": 3.0}), "--cores", "1")
    screen = result.stdout + result.stderr
    assert result.returncode != 0 and "1 job failed:" in screen
    assert "build_database (db=" in screen and "closer than 3 Å is not plausible (min_distance)" in screen
    assert "aenet-core build-database failed: " in screen and "Traceback" not in screen
    assert "aenet_core.cli" not in screen and widest(screen) < 200


def test_a_finished_run_ends_with_its_summary_and_its_logs_show_progress(finished_workflow):
    screen = (finished_workflow / "terminal.txt").read_text()
    summary = screen[screen.index("Run example"):]
    for expected in ("energy RMSE", "meV/atom", "force RMSE", "eV/Å", "committee spread x",
                     "results/example/ascii/member_*/ (2 members, .nn.ascii and .nn)", "LAMMPS          ",
                     "snakemake --report report.html"):
        assert expected in summary, expected
    assert "aenet_core.cli" not in screen and widest(screen) < 200
    member_log = (finished_workflow / "results/example/logs/train_member_000.log").read_text()
    assert "epoch: 1/5 (20 %) | RMSE_E train" in member_log and "epoch: 5/5 (100 %)" in member_log
    assert "final RMSE train / test: energy" in member_log
    build_log = next((finished_workflow / "results/databases").glob("*/logs/build_database.log")).read_text()
    assert "building database.h5: 10 structures" in build_log


def test_the_example_config_for_real_data_plans_one_run(shared_data, tmp_path):
    config = yaml.safe_load((ROOT / "examples/tio2.yaml").read_text())
    config["runs"]["tio2"]["sources"] = str(shared_data / "TiO2" / "*.xsf")
    jobs = planned_jobs(tmp_path, config)
    assert jobs["train_member"] == config["runs"]["tio2"]["committee"]["num_members"] and "explore" not in jobs
