"""Inputs to entries: identifiers, globs, and the one filter every dataset applies."""
import re

import numpy as np
import pytest

from aenet_core.data import HDF5StructureDataset, PlausibilityLimits, StructureDataset, iter_entries
from aenet_core.data.hdf5.schema import DatabaseError
from aenet_core.io import write_extxyz, write_xsf
from aenet_core.torch_training import Structure
from training_setup import REFERENCES, descriptor


def test_energy_and_force_filters(cuau):
    desc = descriptor()
    e = [StructureDataset([s], desc, atomic_energies=REFERENCES).referenced_energy_per_atom(0) for s in cuau]
    threshold = sorted(e)[len(e) // 2]
    kept = StructureDataset(cuau, desc, max_energy=threshold, atomic_energies=REFERENCES)
    assert kept.source_indices == [i for i, v in enumerate(e) if v <= threshold]
    biggest = [np.abs(s.forces).max() for s in cuau]
    kept = StructureDataset(cuau, desc, max_forces=float(np.median(biggest)))
    assert kept.source_indices == [i for i, f in enumerate(biggest) if f <= np.median(biggest)]
    with pytest.raises(ValueError, match="no energy"):
        StructureDataset([Structure(cuau[0].positions, cuau[0].species, cell=cuau[0].cell)], desc)


def build(path, sources, **filters):
    db = HDF5StructureDataset(descriptor(), path, sources=sources, mode="build", atomic_energies=REFERENCES,
                              **filters)
    db.build_database(show_progress=False, persist_features=True)
    return db


def test_memory_and_database_apply_the_same_filter_and_record_it(cuau, tmp_path):
    e = [StructureDataset([s], descriptor(), atomic_energies=REFERENCES).referenced_energy_per_atom(0) for s in cuau]
    filters = {"max_energy": float(np.quantile(e, 0.8)),
               "max_forces": float(np.median([np.abs(s.forces).max() for s in cuau]))}
    memory = StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES, **filters)
    db = build(tmp_path / "db.h5", cuau, **filters)
    assert 0 < len(db) == len(memory) < len(cuau)
    assert db.content_sha256 == memory.content_sha256  # the very same entries, in the same order
    assert db._attrs["n_filtered"] == len(cuau) - len(memory)
    reopened = HDF5StructureDataset(None, tmp_path / "db.h5", mode="load")
    assert (reopened.max_energy, reopened.max_forces) == (filters["max_energy"], filters["max_forces"])
    assert memory.filter_settings == {"max_energy": filters["max_energy"], "max_forces": filters["max_forces"]}
    with pytest.raises(DatabaseError, match="max_forces"):
        HDF5StructureDataset(None, tmp_path / "db.h5", mode="load", max_forces=1.0)
    other = build(tmp_path / "other.h5", cuau, max_energy=filters["max_energy"])  # no force filter
    assert len(other) > len(db) and other.recipe_sha256 != db.recipe_sha256


def test_a_structure_without_an_energy_is_refused_on_every_path(cuau, tmp_path):
    unlabelled = [cuau[0], Structure(cuau[1].positions, cuau[1].species, cell=cuau[1].cell)]
    path = tmp_path / "mixed.extxyz"
    write_extxyz(path, unlabelled)
    for make in (lambda: StructureDataset([path], descriptor()), lambda: build(tmp_path / "db.h5", [path])):
        with pytest.raises(ValueError, match=r"mixed\.extxyz \(frame 1\): no energy"):
            make()
    assert not (tmp_path / "db.h5").exists()


def test_identifiers_name_every_frame_and_every_in_memory_item(cuau, tmp_path):
    path = tmp_path / "frames.extxyz"
    write_extxyz(path, cuau[:3])
    unnamed = Structure(cuau[3].positions, cuau[3].species, energy=cuau[3].energy, cell=cuau[3].cell)
    entries = list(iter_entries([path, cuau[4], unnamed.to_ase(), unnamed]))
    assert [e.identifier for e in entries] == [f"{path}#frame={k}" for k in range(3)] + [
        "cuau-004", "structure_000002", "structure_000003"]
    memory = StructureDataset([path, cuau[4], unnamed], descriptor(), atomic_energies=REFERENCES)
    db = build(tmp_path / "db.h5", [path, cuau[4], unnamed])
    for dataset in (memory, db):
        assert [dataset.get_structure_identifier(i) for i in range(5)] == [
            f"{path}#frame={k}" for k in range(3)] + ["cuau-004", "structure_000002"]


def test_globs_expand_in_sorted_order_and_an_empty_one_is_an_error(cuau, tmp_path):
    for k in (2, 0, 1):
        write_xsf(tmp_path / f"s{k}.xsf", cuau[k])
    dataset = StructureDataset(str(tmp_path / "s*.xsf"), descriptor())
    assert [dataset.get_structure_identifier(i) for i in range(3)] == [f"{tmp_path}/s{k}.xsf#frame=0" for k in range(3)]
    assert [dataset.get_structure(i).energy for i in range(3)] == [cuau[k].energy for k in range(3)]
    with pytest.raises(FileNotFoundError, match="matches no file"):
        StructureDataset(str(tmp_path / "none*.xsf"), descriptor())


def test_bad_inputs_name_their_position(cuau):
    with pytest.raises(ValueError, match=r"structures\[1\] must be a Structure"):
        StructureDataset([cuau[0], 42], descriptor())


def implausible(cuau, case):
    """A structure broken in one way; its file, and what the refusal says."""
    s = cuau[1].copy()
    if case == "cell in nm":
        s.cell = s.cell * 0.1
        return s, r"neighbours per atom within the 4\.5 Å cutoff .*max_pairs_per_atom"
    if case == "atoms on top of each other":
        s.positions[2] = s.positions[5]
        return s, r"atoms 2 \(\w+\) and 5 \(\w+\) are 0 Å apart.*min_distance"
    if case == "force of 1e200":
        s.forces[4, 0] = 1e200
        return s, r"force on atom 4 \(\w+\) along x is 1e\+200 eV/Å.*force_limit"
    s.energy = -1e300
    return s, r"energy is -1e\+300 eV.*energy_limit"


@pytest.mark.parametrize("case", ["cell in nm", "atoms on top of each other", "force of 1e200", "energy of -1e300"])
def test_implausible_structures_are_refused_on_every_path_naming_file_and_frame(cuau, tmp_path, case):
    broken, message = implausible(cuau, case)
    path = tmp_path / "data.extxyz"
    write_extxyz(path, [cuau[0], broken])
    for make in (lambda: StructureDataset([path], descriptor()), lambda: build(tmp_path / "db.h5", [path])):
        with pytest.raises(ValueError, match=r"data\.extxyz \(frame 1\): .*" + message):
            make()
    assert not (tmp_path / "db.h5").exists()


def test_limits_given_apply_on_every_path(cuau, tmp_path):
    close = cuau[1].copy()
    close.positions[2] = close.positions[5] + [0.3, 0.0, 0.0]
    path = tmp_path / "close.xsf"
    write_xsf(path, close)
    with pytest.raises(ValueError, match=r"close\.xsf \(frame 0\): atoms 2 .* 0\.3 Å apart"):
        StructureDataset([path], descriptor())
    limits = PlausibilityLimits(min_distance=0.2)
    assert len(StructureDataset([path], descriptor(), limits=limits)) == 1
    assert len(build(tmp_path / "db.h5", [path], limits=limits)) == 1


def test_copies_and_far_referenced_energies_are_warned_about_on_every_path(cuau, tmp_path):
    far = cuau[2].copy()
    far.energy = -30.0 * far.n_atoms
    write_extxyz(tmp_path / "a.extxyz", [cuau[0], far])
    sources = [tmp_path / "a.extxyz", tmp_path / "a.extxyz"]
    for make in (lambda: StructureDataset(sources, descriptor(), atomic_energies=REFERENCES),
                 lambda: build(tmp_path / "db.h5", sources)):
        with pytest.warns(UserWarning) as caught:
            make()
        copies, energies = (str(w.message) for w in caught)
        assert copies.startswith("2 structure(s) repeat") and f"{tmp_path}/a.extxyz#frame=1 is given twice" in copies
        assert energies.startswith("2 structure(s) have referenced energies beyond ±20 eV/atom")
        assert f"{tmp_path}/a.extxyz (frame 1): -29.54" in energies


def test_a_file_is_read_frame_by_frame(cuau, tmp_path):
    """A multi-frame file streams: its first frames arrive before a malformed later frame is read (the whole
    file is never held), and the error names the frame."""
    path = tmp_path / "frames.extxyz"
    write_extxyz(path, cuau[:4])
    lines = path.read_text().splitlines()
    frame_3 = sum(cuau[k].n_atoms + 2 for k in range(3))
    lines[frame_3 + 2] = "Cu 0.0 not-a-number 0.0 0.0 0.0 0.0"
    path.write_text("\n".join(lines) + "\n")
    entries = iter_entries(path)
    assert [next(entries).identifier for _ in range(2)] == [f"{path}#frame=0", f"{path}#frame=1"]
    with pytest.raises(ValueError, match=re.escape(f"{path} (frame 3): ASE could not read it")):
        list(entries)
