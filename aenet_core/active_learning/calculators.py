"""Labelling calculators named by import path: ASE Calculator classes only, never imported from the working
directory, their keyword arguments checked without constructing them.  Torch-free, so that the workflow can
ask the jobs' python cheaply: ``python -m aenet_core.active_learning.calculators`` reads
{key: {"calculator", "kwargs", "retries"}} as JSON on stdin and prints {key: [problem, ...]} as JSON, last."""
from __future__ import annotations

import ast
import contextlib
import difflib
import importlib
import inspect
import json
import os
import sys

from ase.calculators.calculator import BaseCalculator, Calculator

ROOT_VARIABLE = "AENET_CORE_ROOT"  # the repository the workflow puts on PYTHONPATH for aenet_core itself
_DICT_METHODS = frozenset(dir(dict))
_OWN = ("a calculator of your own must be importable from an installed package or from a folder on "
        "PYTHONPATH, never from the working directory")


@contextlib.contextmanager
def _without_working_directory():
    """sys.path without '' and the working directory (which ``python -m`` and ``-c`` put first), unless a
    PYTHONPATH entry names that directory; restored afterwards.  The workflow's own entry (AENET_CORE_ROOT, the
    repository, which is the working directory of a run started there) names it for aenet_core only."""
    here = os.path.realpath(os.getcwd())
    own = os.environ.get(ROOT_VARIABLE)
    explicit = {os.path.realpath(entry) for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                if entry and entry != own}
    implicit = [(i, entry) for i, entry in enumerate(sys.path)
                if here not in explicit and (not entry or os.path.realpath(entry) == here)]
    for i, _ in reversed(implicit):
        del sys.path[i]
    try:
        yield
    finally:
        for i, entry in implicit:
            sys.path.insert(i, entry)


def calculator_class(path: str) -> type:
    """The ASE calculator class ``path`` names, as ``package.module.Name``; ValueError saying what is wrong."""
    module_name, _, name = str(path).rpartition(".")
    if not module_name or not name:
        raise ValueError(f"calculator {path!r}: expected an import path such as ase.calculators.emt.EMT")
    try:
        with _without_working_directory():
            module = importlib.import_module(module_name)
    except Exception as err:  # a module that fails on import (SyntaxError, RuntimeError ...) too
        raise ValueError(f"calculator {path!r}: cannot import {module_name} ({type(err).__name__}: {err}); "
                         f"{_OWN}") from None
    cls = getattr(module, name, None)
    if cls is None:
        raise ValueError(f"calculator {path!r}: {module_name} has no class {name}")
    if not (isinstance(cls, type) and issubclass(cls, BaseCalculator)):
        what = "a class but not an ASE calculator" if isinstance(cls, type) else f"a {type(cls).__name__}, not a class"
        raise ValueError(f"calculator {path!r}: {name} is {what} (expected an ASE calculator class: a subclass of "
                         "ase.calculators.calculator.BaseCalculator)")
    return cls


def _init_keywords(cls: type) -> tuple[set, str]:
    """The named parameters of the __init__s along ``cls``'s MRO while each takes **kwargs, and where those end:
    'own' (cls's own __init__ takes no **kwargs), 'set' (at Calculator's, which passes them to self.set) or
    'unknown' (an __init__ further on takes none: where the **kwargs went cannot be seen)."""
    names, first = set(), True
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        try:
            parameters = list(inspect.signature(init).parameters.values())[1:]  # without self
        except (TypeError, ValueError):  # no signature to read (a builtin, say)
            return names, "unknown"
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return names, "own" if first else "unknown"
        if klass is Calculator:
            return names, "set"
        first = False
    return names, "unknown"


def _vasp_keywords(cls: type) -> set:
    """The INCAR tags and settings that ASE's Vasp knows (its set() writes any other name to INCAR too)."""
    create_input = sys.modules.get("ase.calculators.vasp.create_input")  # imported with any Vasp class
    if create_input is None or not issubclass(cls, create_input.GenerateVaspInput):
        return set()
    lists = [value for name, value in vars(create_input).items() if name.endswith("_keys") and isinstance(value, list)]
    try:  # the input generator alone, not the calculator: it only fills in dicts
        settings = set(create_input.GenerateVaspInput().input_params)
    except Exception:  # another ASE: the tags are not known
        return set()
    return {key for keys in lists for key in keys} | settings


def _key(node: ast.Attribute, parents: dict):
    """The name read from ``node`` (an expression ``x.parameters``) by what encloses it: x.parameters['a'],
    x.parameters.get('a'), x.parameters.a or 'a' in x.parameters; None if it is used otherwise."""
    parent = parents.get(node)
    if isinstance(parent, ast.Subscript) and parent.value is node and isinstance(parent.slice, ast.Constant):
        return parent.slice.value
    if isinstance(parent, ast.Attribute) and parent.attr == "get":
        call = parents.get(parent)
        arguments = call.args if isinstance(call, ast.Call) and call.func is parent else []
        return arguments[0].value if arguments and isinstance(arguments[0], ast.Constant) else None
    if isinstance(parent, ast.Attribute):
        return None if parent.attr in _DICT_METHODS else parent.attr
    if (isinstance(parent, ast.Compare) and parent.comparators == [node] and isinstance(parent.left, ast.Constant)
            and isinstance(parent.ops[0], (ast.In, ast.NotIn))):
        return parent.left.value
    return None


def _parameters_read(cls: type) -> set | None:
    """The names that the modules of ``cls``'s classes (ASE's Calculator aside) read from a ``parameters``, or
    None where one uses it otherwise (iterates it, passes it on: it may take any name) or has no source."""
    names = set()
    modules = {sys.modules.get(klass.__module__) for klass in cls.__mro__} - {sys.modules[Calculator.__module__]}
    for module in modules - {sys.modules["builtins"]}:
        try:
            tree = ast.parse(inspect.getsource(module))
        except (OSError, TypeError, SyntaxError):
            return None
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "parameters" and isinstance(node.ctx, ast.Load):
                key = _key(node, parents)
                if key is None:
                    return None
                names.add(str(key))
    return names


def accepted_keywords(cls: type) -> set | None:
    """The keyword arguments ``cls`` takes, or None where that cannot be known without constructing it.

    Known are: the named parameters of a class whose __init__ takes no **kwargs; those of the __init__s along
    its MRO and ASE's VASP tags for Vasp (whose set() writes any other name to INCAR); those of the __init__s,
    the keys of ``default_parameters`` and the names its code reads from ``parameters`` where the **kwargs
    end in ASE's Calculator.set (which keeps any name as a parameter) and its code reads no other name."""
    names, end = _init_keywords(cls)
    if end == "own":
        return names
    vasp = _vasp_keywords(cls)
    if vasp:
        return names | vasp
    read = _parameters_read(cls) if end == "set" and cls.set is Calculator.set else None
    if read is None:
        return None
    return names | set(cls.default_parameters or ()) | read | {"parameters"}  # parameters: a file, read by set()


def _unknown(key: str, known: set, path: str) -> str:
    """Why ``key`` is refused, with the nearest name that the calculator takes."""
    near = difflib.get_close_matches(str(key).lower(), sorted(known), n=1)
    why = f"{key!r} is not a keyword argument of {path}"
    if near:
        return f"{why}; did you mean {near[0]}?"
    return f"{why}; expected one of {', '.join(sorted(known))}" if len(known) <= 20 else why


def settings_problems(calculator: str, kwargs=(), retries=()) -> list:
    """What is wrong with a labelling calculator and the names in ``kwargs`` and in each of ``retries`` (mappings
    or lists of names), each as '<calculator|kwargs|retries[i]>: why'; names are checked only where those the
    class takes can be known (accepted_keywords)."""
    try:
        cls = calculator_class(calculator)
    except ValueError as err:
        return [f"calculator: {err}"]
    known = accepted_keywords(cls)
    if known is None:
        return []
    hint = " (an INCAR tag that ASE does not know goes in custom: {TAG: value})" if "custom" in _vasp_keywords(cls) else ""
    fields = [("kwargs", kwargs or ()), *((f"retries[{i}]", overrides) for i, overrides in enumerate(retries or ()))]
    return [f"{field}: {_unknown(key, known, calculator)}{hint}" for field, settings in fields for key in settings
            if key not in known]


def main() -> None:
    """stdin: {key: {"calculator", "kwargs", "retries"}}; stdout, last line: {key: [problem, ...]}."""
    settings = json.load(sys.stdin)
    with contextlib.redirect_stdout(sys.stderr):  # what an imported module prints is not the answer
        problems = {key: settings_problems(**setting) for key, setting in settings.items()}
    print(json.dumps(problems))


if __name__ == "__main__":
    main()
