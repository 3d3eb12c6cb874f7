"""Every Python block of the README and docs/ runs: a page's blocks in order, in one namespace, in a fresh folder
with the small data they name (TiO2/: twelve TiO2 structures from ../shared/data; the example run's last
committee, results/example/round_02/: the session's finished tiny run, which has no rounds)."""
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
TIO2_FILES = 12
FINISHED_RUN = "results/example/round_02/"

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def python_blocks(page: Path) -> list:
    return PYTHON_BLOCK.findall(page.read_text())


def test_the_docs_have_python_blocks_and_every_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert python_blocks(ROOT / "README.md") and python_blocks(ROOT / "docs" / "python-api.md")
    assert [page.name for page in PAGES[1:] if f"(docs/{page.name})" not in readme] == []


@pytest.mark.parametrize("page", [page for page in PAGES if python_blocks(page)], ids=lambda page: page.name)
def test_a_pages_python_blocks_run_in_order(page, tmp_path, monkeypatch, request):
    blocks = python_blocks(page)
    if any("TiO2/" in block for block in blocks):
        shared = request.getfixturevalue("shared_data")  # skips without ../shared/data
        (tmp_path / "TiO2").mkdir()
        for path in sorted((shared / "TiO2").glob("*.xsf"))[:TIO2_FILES]:
            shutil.copy(path, tmp_path / "TiO2")
    if any(FINISHED_RUN in block for block in blocks):
        finished = request.getfixturevalue("finished_workflow")
        blocks = [block.replace(FINISHED_RUN, f"{finished}/results/example/") for block in blocks]
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs.{page.stem}"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{page.name}, python block {number}", "exec"), namespace)


def test_every_test_the_differences_page_cites_exists():
    """Each entry of docs/differences-from-aenet-python.md names the test that shows our behaviour:
    ``tests/test_x.py::test_name`` (a bare ``::test_name`` continues the last file named)."""
    page = (ROOT / "docs" / "differences-from-aenet-python.md").read_text()
    cited, current = [], None
    for file, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?", page):
        current = file or current
        if file and not name:
            cited.append((file, None))
        elif name:
            cited.append((current, name))
    assert len(cited) > 50
    missing = [f"{file}::{name}" for file, name in cited
               if not (ROOT / file).is_file() or name and not re.search(rf"^def {name}\(", (ROOT / file).read_text(), re.M)]
    assert missing == []
