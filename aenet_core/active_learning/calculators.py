"""Labelling calculators named by import path; torch-free, so the workflow can check a name with it cheaply."""
from __future__ import annotations

import importlib
import sys


def calculator_class(path: str):
    """The class (or factory) ``path`` names, as ``package.module.Name``; ValueError saying what is missing."""
    module_name, _, name = str(path).rpartition(".")
    if not module_name or not name:
        raise ValueError(f"calculator {path!r}: expected an import path such as ase.calculators.emt.EMT")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"calculator {path!r}: cannot import {module_name} ({err})") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ValueError(f"calculator {path!r}: {module_name} has no class or function {name}")
    return factory


if __name__ == "__main__":  # python -m aenet_core.active_learning.calculators NAME...: exit 1 naming what fails
    try:
        for argument in sys.argv[1:]:
            calculator_class(argument)
    except ValueError as err:
        sys.exit(str(err))
