"""aenet's binary .nn files: Fortran's bytes, round trips with .nn.ascii, loading, export, damaged files."""
import dataclasses
import re
import shutil
import struct

import ase.io
import numpy as np
import pytest
import torch
from test_nn_ascii import FORTRAN_COHESIVE, FORTRAN_TOTALS, max_deviations, train_cuau

from aenet_core.cli import main
from aenet_core.export import (NNAsciiError, NNBinaryError, read_nn_ascii, read_nn_binary, read_potential_file,
                               write_nn_ascii, write_nn_binary)
from aenet_core.example_data import make_cuau_structures
from aenet_core.structure import Structure
from aenet_core.torch_featurize import ChebyshevDescriptor
from aenet_core.torch_training import TorchANNPotential

SPECIES = ("Ti", "O")


@pytest.fixture(scope="module")
def exported_cuau(tmp_path_factory):
    """A trained Cu-Au potential and its manifest, exported once."""
    potential, folder = train_cuau(), tmp_path_factory.mktemp("cuau")
    return potential, folder, potential.export_aenet(folder, prefix="cuau")


def differing_fields(first, second) -> list:
    return [f.name for f in dataclasses.fields(first)
            if not np.array_equal(getattr(first, f.name), getattr(second, f.name))]


def frame(bodies, marker="<i") -> bytes:
    return b"".join(struct.pack(marker, len(b)) + b + struct.pack(marker, len(b)) for b in bodies)


def bodies(data) -> list:
    """The records of a little-endian file, without their length markers."""
    found, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<i", data, offset)
        found.append(data[offset + 4:offset + 4 + length])
        offset += length + 8
    return found


def assert_round_trips(tmp_path, content):
    """ascii -> binary -> ascii gives the text write_nn_ascii gives; binary -> content -> binary the bytes."""
    write_nn_ascii(tmp_path / "direct.nn.ascii", content)
    write_nn_binary(tmp_path / "first.nn", content)
    write_nn_ascii(tmp_path / "again.nn.ascii", read_nn_binary(tmp_path / "first.nn"))
    assert (tmp_path / "again.nn.ascii").read_text() == (tmp_path / "direct.nn.ascii").read_text()
    write_nn_binary(tmp_path / "second.nn", read_nn_binary(tmp_path / "first.nn"))
    assert (tmp_path / "second.nn").read_bytes() == (tmp_path / "first.nn").read_bytes()


# ----------------------------------------------------------------------------- Fortran's files


@pytest.mark.parametrize("species", SPECIES)
def test_writer_reproduces_fortran_bytes(species, fortran_dir, tmp_path):
    binary, text = read_nn_binary(fortran_dir / f"{species}.nn"), read_nn_ascii(fortran_dir / f"{species}.nn.ascii")
    # The twins were written from different set-up files: only the description differs.
    assert differing_fields(binary, text) == ["description"]
    assert binary.description == "Descriptor" and text.description.startswith(f"Descriptor for {species}")
    write_nn_binary(tmp_path / "from_ascii.nn", dataclasses.replace(text, description=binary.description))
    assert (tmp_path / "from_ascii.nn").read_bytes() == (fortran_dir / f"{species}.nn").read_bytes()
    write_nn_binary(tmp_path / "from_binary.nn", binary)
    assert (tmp_path / "from_binary.nn").read_bytes() == (fortran_dir / f"{species}.nn").read_bytes()


@pytest.mark.parametrize("species", SPECIES)
def test_fortran_files_round_trip(species, fortran_dir, tmp_path):
    assert_round_trips(tmp_path, read_nn_ascii(fortran_dir / f"{species}.nn.ascii"))
    assert_round_trips(tmp_path, read_nn_binary(fortran_dir / f"{species}.nn"))


def test_binary_potential_predicts_like_ascii_and_fortran(fortran_dir, tio2):
    from_binary = TorchANNPotential.from_aenet({s: fortran_dir / f"{s}.nn" for s in SPECIES})
    from_ascii = TorchANNPotential.from_aenet_ascii({s: fortran_dir / f"{s}.nn.ascii" for s in SPECIES})
    energy, force = max_deviations(from_binary, from_ascii, tio2[:1])
    assert energy < 1e-12 and force < 1e-12
    out = from_binary.predict(tio2)
    assert np.abs(np.array(out.total_energy) - FORTRAN_TOTALS).max() < 1e-6
    assert np.abs(np.array(out.cohesive_energy) - FORTRAN_COHESIVE).max() < 1e-6


def test_reader_is_picked_by_name_and_content(fortran_dir, tmp_path):
    shutil.copy(fortran_dir / "Ti.nn", tmp_path / "Ti-potential")  # binary without the .nn name
    shutil.copy(fortran_dir / "Ti.nn.ascii", tmp_path / "Ti.nn")  # text with a binary name
    expected = read_nn_binary(fortran_dir / "Ti.nn")
    assert differing_fields(read_potential_file(tmp_path / "Ti-potential"), expected) == []
    assert differing_fields(read_potential_file(tmp_path / "Ti.nn"), expected) == ["description"]
    shutil.copy(fortran_dir / "Ti.nn", tmp_path / "binary.nn.ascii")
    with pytest.raises(NNAsciiError, match=f"{re.escape(str(tmp_path / 'binary.nn.ascii'))}: not a text file"):
        read_potential_file(tmp_path / "binary.nn.ascii")


def test_predict_reads_a_folder_of_binary_files(fortran_dir, shared_data, tmp_path):
    for species in SPECIES:
        shutil.copy(fortran_dir / f"{species}.nn", tmp_path / f"{species}.nn")
    out = tmp_path / "out.extxyz"
    main(["predict", str(tmp_path), str(shared_data / "TiO2" / "structure-001.xsf"), "--output", str(out),
          "--energy-only"])
    assert ase.io.read(out).info["predicted_energy"] == pytest.approx(FORTRAN_TOTALS[0], abs=1e-6)


# ----------------------------------------------------------------------------- exported potentials


def test_export_writes_binary_twins_that_load_alike(exported_cuau):
    potential, folder, manifest = exported_cuau
    assert manifest["binary_files"] == {"Cu": "cuau.Cu.nn", "Au": "cuau.Au.nn"}
    for species, name in manifest["binary_files"].items():
        text = read_nn_ascii(folder / manifest["files"][species])
        assert differing_fields(read_nn_binary(folder / name), text) == []
    from_binary = TorchANNPotential.from_aenet({s: folder / n for s, n in manifest["binary_files"].items()})
    from_ascii = TorchANNPotential.from_aenet({s: folder / n for s, n in manifest["files"].items()})
    structures = make_cuau_structures(4, seed=9)
    energy, force = max_deviations(from_binary, from_ascii, structures)
    assert energy < 1e-12 and force < 1e-12
    energy, force = max_deviations(from_binary, potential, structures)
    assert energy < 1e-8 and force < 1e-7  # what the files' avg/cov form keeps of the std (test_nn_ascii)


@pytest.mark.parametrize("species", [["H"], ["Ti", "O", "H"]])
def test_sfenv_of_other_species_counts_round_trips(species, tmp_path):
    """sfenv holds 2 entries per basis function in .nn and nenv in .nn.ascii."""
    torch.manual_seed(0)
    potential = TorchANNPotential({s: [(3, "tanh")] for s in species},
                                  ChebyshevDescriptor(species, 3, 3.0, 2, 2.5, min_cutoff=0.3))
    manifest = potential.export_aenet(tmp_path / "export")
    content = read_nn_ascii(tmp_path / "export" / manifest["files"][species[0]])
    assert len(content.sfenv) == len(species) * len(content.sf_types)
    assert_round_trips(tmp_path, content)
    positions = np.random.default_rng(1).uniform(0, 3, size=(len(species) * 3, 3))
    structure = Structure(positions, species * 3, cell=np.eye(3) * 3.2)
    from_binary = TorchANNPotential.from_aenet({s: tmp_path / "export" / n
                                                for s, n in manifest["binary_files"].items()})
    assert max_deviations(from_binary, potential, [structure])[0] < 1e-8


def test_writer_refuses_what_the_binary_cannot_hold(fortran_dir, tmp_path):
    content = read_nn_ascii(fortran_dir / "Ti.nn.ascii")
    with pytest.raises(ValueError, match="atom type 'Tix' is longer than its 2-character Fortran field"):
        write_nn_binary(tmp_path / "x.nn", dataclasses.replace(content, species="Tix"))
    with pytest.raises(ValueError, match="nStrucs .* 32-bit"):
        write_nn_binary(tmp_path / "x.nn", dataclasses.replace(content, n_structures=2**31))
    assert not (tmp_path / "x.nn").exists()


# ----------------------------------------------------------------------------- damaged files


def damaged(tmp_path, fortran_dir, edit):
    """A copy of Ti.nn with ``edit`` applied to its bytes."""
    path = tmp_path / "Ti.nn"
    path.write_bytes(edit((fortran_dir / "Ti.nn").read_bytes()))
    return path


def swap_record(index, body):
    return lambda data: frame([body if i == index else b for i, b in enumerate(bodies(data))])


# damage: (edit of Ti.nn's bytes, expected message after the file name)
DAMAGE = {
    "truncated inside W": (lambda data: data[:2000], "record 9, network section, W: the file ends inside this "
                                                     "2568-byte record"),
    "truncated between records": (lambda data: frame(bodies(data)[:20]), "record 21, setup section, sfenv: the "
                                                                         "file ends before this record"),
    "truncated marker": (lambda data: frame(bodies(data)[:20]) + b"\x04\x00", "record 21.*inside the length marker"),
    "end marker": (lambda data: data[:8] + b"\x05" + data[9:], "record 1, network section, nlayers: the length "
                                                               "marker after the record says 5 bytes"),
    "big-endian": (lambda data: frame(bodies(data), ">i"), "record 1, network section, nlayers: the record holds "
                                                           "67108864 bytes, expected 4 .*looks big-endian"),
    "64-bit integers": (swap_record(4, np.array([56, 5, 5, 1], "<i8").tobytes()),
                        "record 5, network section, nnodes: the record holds 32 bytes, expected 16 \\(4 int32\\)"),
    "inconsistent Wsize": (swap_record(2, struct.pack("<i", 320)), "record 5, network section, Wsize: found 320, "
                                                                    "expected 321"),  # checked once nnodes is read
    "ifort logical": (swap_record(27, struct.pack("<i", -1)), "record 28, training-set info section, normalized: "
                                                               "-1 is not a gfortran logical"),
    "blank species": (swap_record(12, b"Ti  "), "record 13, setup section, environment species: '' is not a "
                                                "species name"),
    "other basis": (swap_record(15, b"Behler2011".ljust(100)), "record 16, setup section, basis type: only the "
                                                               "Chebyshev basis"),
    "trailing bytes": (lambda data: data + b"\0" * 6, "6 bytes after the last record \\(record 36"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_files_name_the_file_and_the_record(damage, tmp_path, fortran_dir):
    edit, message = DAMAGE[damage]
    path = damaged(tmp_path, fortran_dir, edit)
    with pytest.raises(NNBinaryError, match=f"^{re.escape(str(path))}: {message}"):
        TorchANNPotential.from_aenet({"Ti": path, "O": fortran_dir / "O.nn"})
