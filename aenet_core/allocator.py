"""Keep freed heap memory for reuse instead of returning it to the OS (glibc only).

Featurization allocates and frees many tensors of a few MB.  glibc serves such
blocks with mmap and unmaps them on free, so every new tensor pays page faults
again; its adaptive threshold makes the cost depend on the allocation history
(batched featurization ran up to 40 % slower after a run of small structures).
Raising the mmap and trim thresholds keeps those pages in the heap.

Importing aenet_core never applies it (it would change any host process: a
notebook, ASE, LAMMPS); the ``aenet-core`` command line, parallel committee
members and the benchmarks call ``keep_freed_memory()`` for their own process,
and anyone else may.  ``AENET_CORE_MALLOC_TUNING=0`` switches it off there too.
"""
import ctypes
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 256 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Apply the tuning; False where it is switched off or the C library is not glibc."""
    if os.environ.get("AENET_CORE_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
    except (OSError, AttributeError):
        return False


def return_freed_memory() -> bool:
    """Hand the free pages of every heap arena back to the OS (glibc's ``malloc_trim``); False elsewhere.

    Memory that a long-lived cache frees as its entries are replaced sits in the middle of the heap (of
    whichever thread allocated it), where neither the trim threshold nor ``keep_freed_memory`` lets it go: the
    payload cache of a database calls this after every few dozen MB it evicts, so that the process stays within
    its cache bound.  A call costs about a millisecond per GB of heap.
    """
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False
