"""Shared pieces of the readers and writers: the error type and atomic file writes."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path


class StructureFileError(ValueError):
    """Malformed structure file; the message starts with ``"{path}:{line}: "`` or ``"{path} (frame {i}): "``."""


def as_list(structures):
    """Accept one Structure or an iterable of them."""
    return [structures] if hasattr(structures, "positions") else list(structures)


@contextmanager
def atomic_write(path, binary=False):
    """Yield a handle on a temp file beside ``path``; replace ``path`` only on success."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") if binary else open(tmp, "x", encoding="utf-8") as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
