"""The Snakemake workflow: config validation and the DAG (dry runs)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")


def snakemake(*args, cwd=ROOT):
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(autouse=True)
def needs_snakemake():
    if not Path(SNAKEMAKE).exists():
        pytest.skip("snakemake is not installed")


def test_default_config_dry_run_plans_example_and_featurize(tmp_path):
    result = snakemake("-n", "--directory", str(tmp_path), "--snakefile", str(ROOT / "Snakefile"),
                       "--configfile", str(ROOT / "config.yaml"))
    assert result.returncode == 0, result.stderr
    assert "example_data" in result.stdout and "featurize" in result.stdout


def test_a_typo_in_the_config_stops_before_any_job(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "config.yaml").read_text().replace("rad_order", "rad_ordr"))
    result = snakemake("-n", "--directory", str(tmp_path), "--snakefile", str(ROOT / "Snakefile"),
                       "--configfile", str(config))
    assert result.returncode != 0
    assert "rad_ordr" in result.stderr + result.stdout
