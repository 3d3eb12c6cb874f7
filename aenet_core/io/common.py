"""Shared pieces of the structure readers and writers."""
from __future__ import annotations


class StructureFileError(ValueError):
    """Malformed structure file; the message starts with ``"{path}:{line}: "`` or ``"{path} (frame {i}): "``."""


def as_list(structures):
    """Accept one Structure or an iterable of them."""
    return [structures] if hasattr(structures, "positions") else list(structures)
