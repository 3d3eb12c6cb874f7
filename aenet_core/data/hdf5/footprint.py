"""What a database build needs of the machine, estimated from the atom density before anything is allocated:
the memory that featurizing a chunk of structures takes and the disk that the database takes, and the
refusals that follow.

A structure of N atoms with n(c) neighbours per atom within a cutoff c (``neighbour_density``: the density
times the sphere) has about N n(c) pairs within c and N n(c)(n(c) - 1)/2 angular triplets.  Its entry stores
its labels, its features and, with forces, arrays per radial edge and per triplet (``schema``).  Featurizing
holds per pair and per triplet the terms of every order, and the derivative arrays with their copies on the
way to the file; the bytes below are rounded up from measured peaks (bench/database.py --footprint), and
``MARGIN`` covers a crystal's shells, which hold up to about 20 % more neighbours than its density (50 % more
triplets).
"""
from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import numpy as np

from aenet_core.data.plausibility import neighbour_density

GB = 1e9
ENTRY_BYTES = 400  # per entry: energy, cell, stress, weight and the identifier strings
ATOM_BYTES = 50  # per atom: atomic number, position and force
MARGIN = 1.5
XYZ_SUFFIXES = (".xyz", ".extxyz")


class ResourceError(RuntimeError):
    """A build refused because the machine lacks the memory or the disk it needs; the message gives the
    estimate, what is available and what to do."""


def neighbour_counts(structure, descriptor) -> tuple:
    """(pairs within the largest cutoff, radial edges, angular triplets) of ``structure``, from its density."""
    s, cutoffs = structure, (descriptor.max_cutoff, descriptor.rad_cutoff, descriptor.ang_cutoff)
    if s.is_periodic() and s.pbc.all():  # the atoms over the cell's volume (the common case, made fast)
        density = s.n_atoms / abs(np.linalg.det(s.cell))
        pairs, radial, angular = (density * 4 / 3 * math.pi * c**3 for c in cutoffs)
    else:
        pairs, radial, angular = (neighbour_density(s, c)[0] for c in cutoffs)
    return s.n_atoms * pairs, s.n_atoms * radial, s.n_atoms * angular * max(angular - 1, 0) / 2


def _derivative_bytes(edges, triplets, descriptor, itemsize) -> float:
    # Per edge: 2 int32 indices, dG/dd (R + 1), a unit vector, the distance; per triplet: 3 int32 indices,
    # dG/dcos, dG/dd_ij and dG/dd_ik (A + 1 each), 4 vectors and 2 distances.
    return (edges * (8 + (descriptor.rad_order + 5) * itemsize)
            + triplets * (12 + (3 * descriptor.ang_order + 17) * itemsize))


def stored_bytes(structure, descriptor, itemsize: int, derivatives: bool) -> float:
    """The bytes that ``structure`` adds to a database with features (and derivatives) of ``itemsize`` bytes
    (0: labels only, when ``descriptor`` may be None)."""
    n = structure.n_atoms
    size = ENTRY_BYTES + n * (ATOM_BYTES + (descriptor.n_features * itemsize if itemsize else 0))
    if derivatives and structure.has_forces():
        _, edges, triplets = neighbour_counts(structure, descriptor)
        size += _derivative_bytes(edges, triplets, descriptor, itemsize)
    return size


def featurizing_bytes(structure, descriptor, derivatives: bool) -> float:
    """The peak memory of featurizing ``structure`` (with derivatives if it has forces)."""
    pairs, edges, triplets = neighbour_counts(structure, descriptor)
    # Per pair the neighbour list and two terms of each radial order; per triplet its indices, unit vectors and
    # four terms of each angular order; the derivative arrays half again, copied on their way to the file.
    work = pairs * (150 + 16 * (descriptor.rad_order + 1)) + triplets * (150 + 32 * (descriptor.ang_order + 1))
    if derivatives and structure.has_forces():
        work += 1.5 * _derivative_bytes(edges, triplets, descriptor, 8)
    return MARGIN * (work + 16 * structure.n_atoms * descriptor.n_features)


def available_memory() -> float:
    """Bytes this process may still allocate: the system's available memory, or less under a cgroup memory
    limit (a container, a SLURM job)."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:  # not Linux: nothing to compare with
        return math.inf
    meminfo = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in lines if line.endswith("kB")}
    return min(meminfo.get("MemAvailable", math.inf), cgroup_room())


# Per cgroup version: the controller's folder under the mount, the limit's file, the memory.stat key of what
# cannot be reclaimed (page cache can).
CGROUP_FILES = {2: ("", "memory.max", "anon"), 1: ("memory", "memory.limit_in_bytes", "total_rss")}


def cgroup_room(own=Path("/proc/self/cgroup"), mount=Path("/sys/fs/cgroup")) -> float:
    """The room left under the tightest memory limit of this process's cgroup and its parents (v1 or v2)."""
    try:
        lines = own.read_text().splitlines()
    except OSError:
        return math.inf
    room = math.inf
    for line in lines:
        _, controllers, relative = line.split(":", 2)
        version = 2 if not controllers else 1 if "memory" in controllers.split(",") else None
        if version is None:
            continue
        folder, limit_file, used_key = CGROUP_FILES[version]
        root = mount / folder
        group = root / relative.lstrip("/")
        for level in [group, *group.parents][: len(group.relative_to(root).parts) + 1]:
            try:
                limit = int((level / limit_file).read_text())  # "max" (v2, no limit) fails here
                stat = dict(row.split() for row in (level / "memory.stat").read_text().splitlines())
                room = min(room, limit - int(stat[used_key]))
            except (OSError, ValueError, KeyError):
                pass
    return room


def check_memory(entries, descriptor, derivatives: bool, workers: int) -> None:
    """Refuse a chunk of ``entries`` whose featurizing (``workers`` chunks at once) needs more memory than is
    available, naming its largest structure."""
    need = sum(featurizing_bytes(e.structure, descriptor, derivatives) for e in entries) * max(1, workers)
    have = available_memory()
    if need <= have:
        return
    big = max(entries, key=lambda e: e.structure.n_atoms)
    others = f" and the {len(entries) - 1} other structures of its chunk" if len(entries) > 1 else ""
    parallel = f" ({workers} worker processes, a chunk each)" if workers > 1 else ""
    raise ResourceError(
        f"{big.where}: featurizing its {big.structure.n_atoms} atoms{others}{parallel} needs about "
        f"{need / GB:.3g} GB (estimated from the atom density within the {descriptor.max_cutoff:g} Å cutoff), "
        f"and {have / GB:.3g} GB are available: split the structure into smaller ones, or build on a machine "
        f"(or in a job) with more memory{', or with fewer --workers' if parallel else ''}")


def database_bytes(sample, ended: bool, stamps, descriptor, itemsize: int, derivatives: bool) -> tuple:
    """(estimated bytes of the whole database, whether every structure is in the estimate rather than
    extrapolated) from ``sample``, the first entries to be stored (all of them if ``ended``), and the sources'
    ``input_stamps``.

    The sample's bytes are scaled by the sources' bytes over the bytes it was read from: the files it read
    to the end, and the frames it read of an (ext)xyz file (found from their headers).  None where the
    sample ends within its first file of another format, or holds no file.
    """
    sizes = [stored_bytes(e.structure, descriptor, itemsize, derivatives) for e in sample]
    if ended:
        return sum(sizes), True
    files = list(dict.fromkeys(e.source_id for e in sample if e.from_file))
    lengths = {str(stamp[0]): stamp[1] or 0 for stamp in stamps if isinstance(stamp, list)}  # 0: missing
    read = sum(lengths.get(f, 0) for f in files[:-1])
    counted = [size for e, size in zip(sample, sizes) if e.from_file and e.source_id in files[:-1]]
    last = [(e, size) for e, size in zip(sample, sizes) if files and e.source_id == files[-1]]
    if last and Path(files[-1]).suffix.lower() in XYZ_SUFFIXES:
        offset = _xyz_offset(files[-1], last[-1][0].frame + 1)
        if offset:
            read += offset
            counted += [size for _, size in last]
    if not read:
        return None, False
    return sum(counted) * sum(lengths.values()) / read, False


def _xyz_offset(path, frames: int):
    """Where the first ``frames`` frames of an (ext)xyz file end (bytes), from their atom counts alone; None
    where a count line is not a number."""
    with open(path, "rb") as handle:
        for _ in range(frames):
            try:
                count = int(handle.readline())
            except ValueError:
                return None
            for _ in range(count + 1):
                handle.readline()
        return handle.tell()


def free_space(folder) -> int:
    return shutil.disk_usage(folder).free


def check_disk(path: Path, need, certain: bool) -> None:
    """Refuse to build a database of about ``need`` bytes at ``path`` when its folder has less free space; where
    ``need`` is an extrapolation (not ``certain``), warn instead, unless even half of it does not fit."""
    free = free_space(path.parent)
    if need is None or need <= free:
        return
    how = "estimated from the structures" if certain else "extrapolated from the first structures and the sizes"
    message = (f"{path}: the database needs about {need / GB:.3g} GB ({how} of the sources), and {free / GB:.3g} GB "
               f"are free in {path.parent}")
    if not certain and need / 2 <= free:
        warnings.warn(f"{message}: the build may run out of space", stacklevel=2)
        return
    raise ResourceError(f"{message}: free some space, build it elsewhere, or store less (--storage-dtype float32, "
                        f"--no-derivatives)")


def check_room(path: Path, need: float, written: float) -> None:
    """Refuse to append ``need`` bytes to the database being written at ``path`` (``written`` bytes so far)
    when its folder has less free space: a named refusal instead of HDF5's error on a full disk."""
    free = free_space(path.parent)
    if need > free:
        raise ResourceError(f"{path}: {free / GB:.3g} GB are left in {path.parent}, too little for the next "
                            f"{need / GB:.3g} GB ({written / GB:.3g} GB written so far): free some space, build it "
                            f"elsewhere, or store less (--storage-dtype float32, --no-derivatives)")
