"""Compiled kernels for training: plain torch functions run through ``torch.compile`` where it pays.

The force contraction and the descriptor's per-edge and per-triplet terms
are written as plain torch.  Within ``enabled()`` (a training run long
enough, ``worthwhile``) ``run`` calls them compiled, which fuses their
elementwise work into one loop over memory; elsewhere, and where compiling
fails (no C++ compiler, say, after one warning), they run as they are.
``AENET_CORE_COMPILE=1`` always compiles, ``0`` never.
"""
import contextlib
import os
import threading
import warnings

import torch

_state = threading.local()
_kernels = {}
_failures = []


# Compiling costs about 2 s with torch's on-disk cache warm, 20 s cold; training saves 10-20 µs per atom
# and epoch on the CPU: below this many atom-epochs the compilation would not pay for itself.
WORTHWHILE_ATOM_EPOCHS = 200_000


def worthwhile(atom_epochs: int) -> bool:
    """Whether training this many force-supervised atom-epochs should compile the kernels: never for none,
    else ``AENET_CORE_COMPILE=1`` always, ``0`` never, unset from ``WORTHWHILE_ATOM_EPOCHS`` on."""
    choice = os.environ.get("AENET_CORE_COMPILE", "").strip()
    if atom_epochs == 0:  # energy only: no contraction, features made once or cached
        return False
    if choice in ("0", "1"):
        return choice == "1"
    return atom_epochs >= WORTHWHILE_ATOM_EPOCHS


@contextlib.contextmanager
def enabled(flag: bool = True):
    """Within this context (in this thread) ``run`` compiles when ``flag`` is true."""
    previous = getattr(_state, "compiled", False)
    _state.compiled = flag
    try:
        yield
    finally:
        _state.compiled = previous


def run(function, *args):
    """``function(*args)``, compiled when the context asks for it and compiling works."""
    if not getattr(_state, "compiled", False) or _failures:
        return function(*args)
    if function not in _kernels:
        import torch._inductor.config as inductor

        # In this process: a pool of compiler processes would compete with training for the cores.
        inductor.compile_threads = 1
        _kernels[function] = torch.compile(function, dynamic=True)
    try:
        return _kernels[function](*args)
    except Exception as error:  # noqa: BLE001 - whatever the compiler raised, the plain function works
        _failures.append(error)
        first_line = (str(error).splitlines() or [""])[0][:200]
        warnings.warn(f"torch.compile failed ({type(error).__name__}: {first_line}); training runs "
                      "uncompiled, which is slower (AENET_CORE_COMPILE=0 skips the attempt)", stacklevel=4)
        return function(*args)
