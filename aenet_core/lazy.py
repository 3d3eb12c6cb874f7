"""Package attributes imported on first use, so that importing a light submodule (``aenet_core.data.limits``,
``aenet_core.committee.config``) does not import torch through its package's ``__init__``."""
from __future__ import annotations

import importlib


def lazy_attributes(package: str, homes: dict):
    """A module ``__getattr__`` for ``package`` that imports ``name`` from the submodule ``homes[name]``."""

    def __getattr__(name):
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{homes[name]}"), name)

    return __getattr__
