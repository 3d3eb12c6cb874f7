"""Shared fixtures: the reference data sets live in ../shared/data beside the repository."""
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; tests that need it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def finished_workflow(tmp_path_factory) -> Path:
    """The tiny default workflow run (``workflow_setup.tiny_config()``), completed once per session; a test that
    changes it must work on a copy.  What Snakemake printed is in its ``terminal.txt``."""
    from workflow_setup import snakemake, tiny_config  # imports torch: only when a test asks for the run

    workdir = tmp_path_factory.mktemp("workflow")
    result = snakemake(workdir, tiny_config(), "--cores", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    (workdir / "terminal.txt").write_text(result.stdout + result.stderr)
    return workdir
