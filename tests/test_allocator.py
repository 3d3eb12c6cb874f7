"""The allocator tuning: opt-in, never applied by importing the library."""
import subprocess
import sys

from aenet_core.allocator import keep_freed_memory

PROBE = """
import ctypes
opened = []
real = ctypes.CDLL
ctypes.CDLL = lambda name, *a, **k: opened.append(name) or real(name, *a, **k)
import aenet_core, aenet_core.torch_training, aenet_core.calculator, aenet_core.cli
print("libc" in " ".join(map(str, opened)))
"""


def test_importing_the_library_leaves_the_host_allocator_alone():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_allocator_tuning_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("AENET_CORE_MALLOC_TUNING", "0")
    assert keep_freed_memory() is False
    monkeypatch.delenv("AENET_CORE_MALLOC_TUNING")
    assert isinstance(keep_freed_memory(), bool)
