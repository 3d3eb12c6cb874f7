"""The Snakemake report: every caption renders as Snakemake renders it (Jinja, then docutils RST) without a
docutils message, and the report of a finished run shows none."""
import io
import re
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
from docutils.core import publish_parts

ROOT = Path(__file__).resolve().parents[1]
RULES, REPORT = ROOT / "workflow" / "rules", ROOT / "workflow" / "report"
REPORTED = re.compile(r'report\(\s*"(?P<path>[^"]+)",\s*caption="(?P<caption>[^"]+)"')
# As Snakemake's report, but a name the template does not have is an error instead of an empty string.
JINJA = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
DOCUTILS_SIGNS = ("system-message", "System Message", "Undefined substitution", "(ERROR/", "(WARNING/", "(SEVERE/")


def captions() -> dict:
    """{caption file: the wildcards of the outputs it describes}, from the rules' report() outputs, and the
    workflow description (no wildcards)."""
    found = {REPORT / "workflow.rst": set()}
    for rules in sorted(RULES.glob("*.smk")):
        for match in REPORTED.finditer(rules.read_text()):
            caption = (RULES / match["caption"]).resolve()
            found.setdefault(caption, set()).update(re.findall(r"{(\w+)}", match["path"]))
    return found


def stand_in(wildcards) -> SimpleNamespace:
    """The ``snakemake`` object a caption template sees, with the job's wildcards (each valued by its name)."""
    return SimpleNamespace(wildcards=SimpleNamespace(**{name: f"<{name}>" for name in wildcards}), input=[],
                           output=[], params=SimpleNamespace(), threads=1, log=[], config={}, rule="rule")


def render(template: str, wildcards) -> str:
    return JINJA.from_string(template).render(snakemake=stand_in(wildcards), categories={}, files=[])


def docutils_messages(rst: str) -> str:
    """What docutils reports (warnings and worse) while turning ``rst`` into HTML, as the report does."""
    stream = io.StringIO()
    settings = {"warning_stream": stream, "report_level": 2, "halt_level": 5}
    body = publish_parts(rst, writer_name="html", settings_overrides=settings)["body"]
    return stream.getvalue() + (body if "system-message" in body else "")


def test_every_report_file_is_a_caption_or_the_workflow_description():
    assert set(REPORT.glob("*.rst")) == set(captions())
    assert 'report: "workflow/report/workflow.rst"' in (ROOT / "Snakefile").read_text()


@pytest.mark.parametrize("caption", sorted(captions()), ids=lambda path: path.name)
def test_each_caption_renders_without_a_docutils_message(caption):
    wildcards = captions()[caption]
    text = render(caption.read_text(), wildcards)
    assert docutils_messages(text) == ""
    assert set(re.findall(r"<(\w+)>", text)) == wildcards  # each caption names its run


def test_the_check_finds_what_the_report_would_show():
    assert "Undefined substitution referenced" in docutils_messages("the calibration |error| = s·σ")
    with pytest.raises(jinja2.UndefinedError):
        render("run {{ snakemake.wildcards.run }}", {"name"})


@pytest.mark.slow
def test_the_report_of_a_finished_run_has_every_figure_and_no_docutils_message(finished_workflow):
    from workflow_setup import SNAKEMAKE, snakemake, tiny_config

    if not Path(SNAKEMAKE).exists():
        pytest.skip("snakemake is not installed")
    result = snakemake(finished_workflow, tiny_config(), "--report", "captions.html", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    html = (finished_workflow / "captions.html").read_text(errors="replace")
    for name in ("parity.png", "uncertainty.png", "learning_curves.png", "members.csv"):
        assert name in html
    assert "the calibration" in html  # the captions are there
    assert not [sign for sign in DOCUTILS_SIGNS if sign in result.stdout + result.stderr + html]
