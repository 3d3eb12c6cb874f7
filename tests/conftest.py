"""Shared fixtures: the reference data sets live in ../shared/data beside the repository."""
import logging
import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def library_logger_restored():
    """The command line's main() gives logger aenet_core a handler on the sys.stderr of that moment (pytest's
    capture, closed after the test): each test leaves the logger as it found it."""
    logger = logging.getLogger("aenet_core")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; tests that need it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


# The Fortran-trained TiO2 potential of ../shared/data/reference and the structures its predict.out covers.
@pytest.fixture(scope="session")
def fortran_dir(shared_data):
    return shared_data / "reference" / "potentials" / "TiO2-fortran"


@pytest.fixture(scope="session")
def fortran_files(fortran_dir):
    return {"Ti": fortran_dir / "Ti.nn.ascii", "O": fortran_dir / "O.nn.ascii"}


@pytest.fixture(scope="session")
def fortran_potential(fortran_files):
    from aenet_core.potential import TorchANNPotential

    return TorchANNPotential.from_aenet_ascii(fortran_files)


@pytest.fixture(scope="session")
def tio2(shared_data):
    from aenet_core.io import read_structures

    return [read_structures(shared_data / "TiO2" / f"structure-00{i}.xsf")[0] for i in (1, 2, 3)]


@pytest.fixture(scope="session")
def cuau():
    """The Cu-Au example structures (``training_setup.cuau_structures()``), made once per session: a test that
    changes structures changes copies."""
    from training_setup import cuau_structures  # imports torch: only when a test asks for them

    return cuau_structures()


@pytest.fixture(scope="session")
def trained_committee(cuau, tmp_path_factory):
    """(committee, train result, its folder): three members of ``training_setup``'s MEMBER_ARCH and member_config()
    (seeds 11 to 13, a checkpoint each epoch) trained once per session on ``cuau``; a test that writes into the
    folder works on a copy."""
    from aenet_core.committee import TorchCommitteeConfig, TorchCommitteePotential
    from training_setup import MEMBER_ARCH, descriptor, member_config

    out = tmp_path_factory.mktemp("committee") / "run"
    committee = TorchCommitteePotential(MEMBER_ARCH, descriptor())
    result = committee.train(structures=cuau, config=member_config(checkpoint_interval=1),
                             committee_config=TorchCommitteeConfig(num_members=3, base_seed=11, output_dir=out))
    return committee, result, out


@pytest.fixture(scope="session")
def finished_workflow(tmp_path_factory) -> Path:
    """The tiny default workflow run (``workflow_setup.tiny_config()``), completed once per test run: the first
    pytest-xdist worker that asks makes it, the others wait for it (a lock beside it).  A test that changes it
    must work on a copy.  What Snakemake printed is in its ``terminal.txt``."""
    from filelock import FileLock
    from workflow_setup import snakemake, tiny_config  # imports torch: only when a test asks for the run

    base = tmp_path_factory.getbasetemp()
    workdir = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "finished_workflow"
    with FileLock(f"{workdir}.lock"):
        if not (workdir / "terminal.txt").exists():
            workdir.mkdir(exist_ok=True)
            result = snakemake(workdir, tiny_config(), "--cores", "2")
            assert result.returncode == 0, result.stdout + result.stderr
            (workdir / "terminal.txt").write_text(result.stdout + result.stderr)
    return workdir


def pytest_collection_modifyitems(items):
    """Test files marked slow as a whole (the workflow runs) first, in their order: with pytest-xdist
    (make test: --dist loadfile --no-loadscope-reorder) the two longest start at once on different workers."""
    def whole_file_slow(item) -> bool:
        marks = getattr(item.module, "pytestmark", [])
        return any(mark.name == "slow" for mark in (marks if isinstance(marks, list) else [marks]))

    items.sort(key=lambda item: not whole_file_slow(item))


@pytest.fixture(scope="session")
def lammps_ready():
    """Skips a test when the LAMMPS plugin or lmp is not there (make lammps builds them)."""
    from aenet_core.lammps import unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
