"""aenet_core offers aenet-python's whole public PyTorch API under the same names.

tests/data/aenet_python_api.json lists every public name of aenet-python (commit eb2bca7) in
`aenet.torch_featurize`, `aenet.torch_training`, `aenet.torch_training.sources` and
`aenet.reference_energies` (the modules' `__all__` and the non-underscore members of their classes),
each with its kind and parameter list (name, kind, default's repr), read by `inspect` from the
installed package. Code written against those signatures must run with `aenet` replaced by
`aenet_core`: the reference's parameters come first, in order, with the same kinds and defaults; ours
may add parameters after them, each with a default.
"""
import importlib
import inspect
import json
from pathlib import Path

import pytest
import torch

SURFACE = json.loads((Path(__file__).parent / "data" / "aenet_python_api.json").read_text())
# Members torch's own base classes provide (nn.Module.forward, Dataset.__add__, ...) are not ours to match.
BASES = (torch.nn.Module, torch.utils.data.Dataset)


def resolve(name: str):
    """The aenet_core object named like aenet-python's `name` (module.Class.member), unwrapped."""
    parts = name.split(".")
    n_module = 2 if parts[:2] == ["torch_training", "sources"] else 1
    owner = importlib.import_module("aenet_core." + ".".join(parts[:n_module]))
    path = parts[n_module:]
    for part in path[:-1]:
        owner = getattr(owner, part)
    if not inspect.isclass(owner):
        return getattr(owner, path[-1])
    static = inspect.getattr_static(owner, path[-1])
    return getattr(owner, path[-1]) if isinstance(static, (staticmethod, classmethod)) else static


def kind(obj) -> str:
    if isinstance(obj, property):
        return "property"
    if inspect.isclass(obj):
        return "class"
    return "callable" if callable(obj) else "attribute"


def parameters(obj) -> list[list]:
    found = inspect.signature(obj).parameters.values()
    return [[p.name, p.kind.name, None if p.default is inspect.Parameter.empty else repr(p.default)]
            for p in found if p.name != "self"]


def compatible(reference: list[list], ours: list[list]) -> bool:
    """Every call the reference's signature allows binds the same way to ours (a parameter it requires may
    have a default here: Structure's ``energy``, left out for structures to predict)."""
    if len(ours) < len(reference):
        return False
    for (name, p_kind, default), (our_name, our_kind, our_default) in zip(reference, ours):
        if (name, p_kind) != (our_name, our_kind) or default not in (None, our_default):
            return False
    return all(default is not None or p_kind.startswith("VAR_") for _, p_kind, default in ours[len(reference):])


@pytest.mark.parametrize("name", sorted(SURFACE))
def test_public_name_exists_with_a_compatible_signature(name):
    want = SURFACE[name]
    obj = resolve(name)
    values = {"attribute", "property"}  # a value read as an attribute either way
    assert kind(obj) == want["kind"] or {kind(obj), want["kind"]} <= values, f"{name}: {kind(obj)}"
    if want.get("params") is not None and kind(obj) in ("class", "callable"):
        reference = [p for p in want["params"] if p[0] != "self"]
        assert compatible(reference, parameters(obj)), f"{name}{parameters(obj)} against {reference}"


def test_the_surface_lists_each_module_and_is_not_empty():
    modules = {name.split(".")[0] for name in SURFACE} | {".".join(name.split(".")[:2]) for name in SURFACE
                                                          if name.startswith("torch_training.sources.")}
    assert modules == {"torch_featurize", "torch_training", "torch_training.sources", "reference_energies"}
    for module in ("torch_featurize", "torch_training", "torch_training.sources", "reference_energies"):
        exported = set(importlib.import_module(f"aenet_core.{module}").__all__)
        theirs = {name.split(".")[-1] for name in SURFACE if name.rsplit(".", 1)[0] == module}
        assert theirs <= exported, f"aenet_core.{module}.__all__ lacks {sorted(theirs - exported)}"


def test_compatibility_rule_refuses_what_would_bind_differently():
    reference = [["a", "POSITIONAL_OR_KEYWORD", None], ["b", "POSITIONAL_OR_KEYWORD", "1"]]
    assert compatible(reference, reference + [["c", "KEYWORD_ONLY", "2"]])
    assert compatible(reference, [["a", "POSITIONAL_OR_KEYWORD", "0"], reference[1]])  # a default added
    assert not compatible(reference, [reference[0], ["c", "POSITIONAL_OR_KEYWORD", "1"]])  # renamed
    assert not compatible(reference, [reference[0], ["b", "POSITIONAL_OR_KEYWORD", "2"]])  # another default
    assert not compatible(reference, [reference[0], ["b", "KEYWORD_ONLY", "1"]])  # no longer positional
    assert not compatible(reference, reference + [["c", "POSITIONAL_OR_KEYWORD", None]])  # a new required one
    assert not compatible(reference, reference[:1])
