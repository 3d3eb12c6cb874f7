"""What the ``aenet-core`` commands share, free of torch (log summaries and the workflow import it).

A failed command ends its stderr with one line, ``FAILURE_MARKER`` filled in:
``aenet-core <command> failed: <message>`` (the message on one line); ``FAILURE_LINE`` matches it.
Structured settings come from YAML or JSON files read as plain data (``read_settings``).
"""
from __future__ import annotations

import re
from pathlib import Path

FAILURE_MARKER = "aenet-core {command} failed: {message}"
FAILURE_LINE = re.compile(r"^aenet-core (?P<command>[a-z][a-z-]*) failed: (?P<message>.*)$")


def failure_line(command: str, message) -> str:
    """The marker line of ``command`` failing with ``message`` (its lines joined by "; ")."""
    text = "; ".join(line.strip() for line in str(message).splitlines() if line.strip())
    return FAILURE_MARKER.format(command=command, message=text)


def read_settings(path, keys) -> dict:
    """The mapping in YAML/JSON file ``path`` (plain data only), refusing keys other than ``keys``."""
    import yaml

    try:
        settings = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise SystemExit(f"{path}: not a YAML or JSON file: {error}") from None
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise SystemExit(f"{path}: expected a mapping with keys {', '.join(keys)}; got a {type(settings).__name__}")
    unknown = sorted(set(settings) - set(keys), key=str)
    if unknown:
        raise SystemExit(f"{path}: unknown key(s) {', '.join(map(str, unknown))}; expected {', '.join(keys)}")
    return settings
