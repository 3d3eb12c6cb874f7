"""Finished outputs that were damaged or deleted afterwards.  Snakemake trusts an output that exists, and does
not remake a deleted intermediate file whose consumers are up to date; a member's model.pt and the exported
files are checked against the sha256 their writer recorded (the member's summary.json, the export's
manifest.json), as is a round's labelled.extxyz (its labelling.json)."""
from __future__ import annotations

import json
from pathlib import Path

from aenet_core.files import file_sha256


def recorded_sha256(path: Path, key: str):
    """The ``key`` entry of a JSON file; None when the file is absent, "damaged" if unreadable."""
    try:
        return json.loads(path.read_text()).get(key)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError, AttributeError):
        return "damaged"


def intact(path: Path, digest: str) -> bool:
    return path.exists() and file_sha256(path) == digest


def damaged_outputs(member_summaries, export_dir) -> list:
    """(output, why, rule) for each finished member model and export that is not what its rule wrote."""
    damaged = []
    for summary in map(Path, member_summaries):
        model, expected = summary.parent / "model.pt", recorded_sha256(summary, "model_sha256")
        if expected == "damaged":
            damaged.append((model, f"{summary.name} does not read as JSON", "train_member"))
        elif expected and not intact(model, expected):
            damaged.append((model, "deleted or not the sha256 summary.json records", "train_member"))
    export = Path(export_dir)
    recorded = recorded_sha256(export / "manifest.json", "sha256") or {}
    if recorded == "damaged":
        return damaged + [(export, "manifest.json does not read as JSON", "export")]
    changed = [name for name, digest in recorded.items() if not intact(export / name, digest)]
    if changed:
        damaged.append((export, f"{', '.join(changed)} deleted or not the sha256 manifest.json records", "export"))
    return damaged


def damaged_labels(labelled, report) -> list:
    """(output, why, rule) when a round's merged labels are not what merge_labels wrote: ``labelled``
    (labelled.extxyz) edited or deleted, or ``report`` (labelling.json, which records its sha256) unreadable.
    Nothing before the merge has run, nor for a report of a version that recorded no sha256."""
    labelled, report = Path(labelled), Path(report)
    expected = recorded_sha256(report, "labelled_sha256")
    if expected == "damaged":
        return [(report, f"{report.name} does not read as JSON", "merge_labels")]
    if expected and not intact(labelled, expected):
        return [(labelled, f"deleted or not the sha256 {report.name} records", "merge_labels")]
    return []
