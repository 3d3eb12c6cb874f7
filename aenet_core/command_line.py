"""What the ``aenet-core`` commands share, free of torch (log summaries and the workflow import it).

A failed command ends its stderr with one line, ``FAILURE_MARKER`` filled in:
``aenet-core <command> failed: <message>`` (the message on one line); ``FAILURE_LINE`` matches it.
Structured settings come from YAML or JSON files read as plain data (``read_settings``).
"""
from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from aenet_core.data.limits import PlausibilityLimits

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


def add_limit_arguments(parser, names) -> None:
    """Options --<name> for the plausibility limits ``names``, with their help, unit and default."""
    described = {f.name: f for f in fields(PlausibilityLimits)}
    for name in names:
        field = described[name]
        notes = "; ".join(filter(None, [field.metadata.get("unit"), f"default {field.default:g}"]))
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, help=f"{field.metadata['help']} ({notes})")


def given_limits(args) -> PlausibilityLimits:
    """The plausibility limits as the command line's limit options change them; those not given keep the defaults."""
    given = {f.name: getattr(args, f.name, None) for f in fields(PlausibilityLimits)}
    return PlausibilityLimits(**{name: value for name, value in given.items() if value is not None})
