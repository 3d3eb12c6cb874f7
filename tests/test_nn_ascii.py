"""aenet .nn.ascii export and import: Fortran ground truth, round trips, the exact file layout, damaged files."""
import re
import shutil

import numpy as np
import pytest
import torch

from aenet_core.example_data import make_cuau_structures
from aenet_core.export import NNAsciiError, read_nn_ascii
from aenet_core.structure import Structure
from aenet_core.torch_featurize import ChebyshevDescriptor
from aenet_core.torch_training import Adam, TorchANNPotential, TorchTrainingConfig

# Fortran predict.x on structure-001..003 (also parsed from predict.out below).
FORTRAN_TOTALS = [-19517.16578343, -39038.49118938, -19517.81272714]
FORTRAN_COHESIVE = [-192.78242329, -389.72446909, -193.42936699]
CUAU_REFERENCES = {"Cu": -0.5, "Au": -0.2}
FLOAT_TOKEN = re.compile(r"-?\d\.\d{17}e[+-]\d{2,3}")  # the writer's {:24.17e}


def train_cuau(normalize_features=True):
    arch = {"Cu": [(6, "tanh"), (6, "twist")], "Au": [(5, "mtanh"), (4, "sigmoid")]}
    potential = TorchANNPotential(arch, ChebyshevDescriptor(["Cu", "Au"], 4, 4.5, 2, 3.5, min_cutoff=0.5))
    config = TorchTrainingConfig(iterations=3, method=Adam(mu=0.01, batchsize=4), testpercent=20, seed=2,
                                 atomic_energies=CUAU_REFERENCES, normalize_features=normalize_features,
                                 checkpoint_dir=None, save_best=False, show_progress=False)
    potential.train(structures=make_cuau_structures(10, seed=1), config=config)
    return potential


@pytest.fixture(scope="module")
def cuau_potential():
    return train_cuau()


@pytest.fixture(scope="module")
def raw_feature_potential():
    return train_cuau(normalize_features=False)


def export_and_reload(potential, directory, **options):
    manifest = potential.export_aenet(directory, **options)
    files = {species: directory / name for species, name in manifest["files"].items()}
    return TorchANNPotential.from_aenet_ascii(files), files


def max_deviations(first, second, structures):
    a, b = first.predict(structures, eval_forces=True), second.predict(structures, eval_forces=True)
    energy = max(abs(x - y) for x, y in zip(a.total_energy, b.total_energy))
    force = max(float(np.abs(x - y).max()) for x, y in zip(a.forces, b.forces))
    return energy, force


# ----------------------------------------------------------------------------- Fortran ground truth


def test_fortran_potential_reproduces_fortran_predict_out(fortran_dir, fortran_potential, tio2):
    text = (fortran_dir / "predict.out").read_text()
    totals = [float(x) for x in re.findall(r"Total energy\s*:\s*(\S+) eV", text)]
    cohesive = [float(x) for x in re.findall(r"Cohesive energy\s*:\s*(\S+) eV", text)]
    assert totals == FORTRAN_TOTALS and cohesive == FORTRAN_COHESIVE
    out = fortran_potential.predict(tio2)
    assert np.abs(np.array(out.total_energy) - totals).max() < 1e-6
    assert np.abs(np.array(out.cohesive_energy) - cohesive).max() < 1e-6
    model = fortran_potential.model
    assert float(model.E_scaling) == 1.27384834786371 and float(model.E_shift) == -7.786247938833317
    assert not torch.equal(model.feature_mean[0], model.feature_mean[1])  # per-species statistics


def test_fortran_potential_forces_are_the_negative_energy_gradient(fortran_potential, tio2):
    structure, h = tio2[0], 1e-5
    descriptor, model = fortran_potential.descriptor, fortran_potential.model
    species_idx = descriptor.species_indices(structure.species)

    def network_energy(positions):
        """The energy without its constant part (N E_shift + sum of E_atom), so that rounding stays small."""
        with torch.no_grad():
            features = descriptor.forward_from_positions(positions, structure.species, structure.cell)
            return float(model.network_outputs(features, species_idx).sum() / model.E_scaling)

    numeric = np.zeros_like(structure.positions)
    for atom, axis in np.ndindex(*numeric.shape):
        plus, minus = structure.positions.copy(), structure.positions.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        numeric[atom, axis] = -(network_energy(plus) - network_energy(minus)) / (2 * h)
    analytic = fortran_potential.predict([structure], eval_forces=True).forces[0]
    assert np.abs(analytic - numeric).max() < 1e-6 and np.abs(analytic).max() > 0.1


def test_reader_accepts_fortran_records_d_exponents_and_logicals(tmp_path, fortran_files, fortran_potential, tio2):
    """The same Ti file with four values per record, D exponents, env species one per line and 'T'."""
    lines = fortran_files["Ti"].read_text().splitlines()
    rewritten = []
    for number, line in enumerate(lines):
        tokens = line.split()
        if number == 12:  # environment species
            rewritten += tokens
        elif number == 27:
            rewritten.append("T")
        elif len(tokens) > 4:
            tokens = [f"{float(t):.17E}".replace("E", "D") if "." in t else t for t in tokens]
            rewritten += [" ".join(tokens[i: i + 4]) for i in range(0, len(tokens), 4)]
        else:
            rewritten.append(line)
    (tmp_path / "Ti.nn.ascii").write_text("\n".join(rewritten) + "\n")
    again = TorchANNPotential.from_aenet_ascii({"Ti": tmp_path / "Ti.nn.ascii", "O": fortran_files["O"]})
    assert again.predict(tio2).total_energy == fortran_potential.predict(tio2).total_energy


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("source", ["fortran", "trained", "raw features"])
def test_export_import_reproduces_energies_and_forces(source, request, tmp_path, tio2):
    original, structures = {
        "fortran": (request.getfixturevalue("fortran_potential"), [tio2[0], tio2[2]]),
        "trained": (request.getfixturevalue("cuau_potential"), make_cuau_structures(4, seed=9)),
        "raw features": (request.getfixturevalue("raw_feature_potential"), make_cuau_structures(4, seed=9)),
    }[source]
    reloaded, _ = export_and_reload(original, tmp_path)
    energy, force = max_deviations(original, reloaded, structures)
    assert energy < 1e-8 and force < 1e-7
    for layer, copy in zip(original.model.parameters(), reloaded.model.parameters()):
        assert torch.equal(layer, copy)
    assert reloaded.arch == original.arch


@pytest.mark.parametrize("species", [["H"], ["Ti", "O", "H"]])
def test_other_species_counts_round_trip(species, tmp_path):
    torch.manual_seed(0)
    arch = {s: [(3, "sigmoid"), (2, "mtanh")] for s in species}
    original = TorchANNPotential(arch, ChebyshevDescriptor(species, 3, 3.0, 2, 2.5, min_cutoff=0.3))
    mean = torch.rand(len(species), original.descriptor.n_features)
    original.model.set_feature_statistics(mean, mean + 0.5)
    positions = np.random.default_rng(1).uniform(0, 3, size=(len(species) * 3, 3))
    structure = Structure(positions, species * 3, cell=np.eye(3) * 3.2)
    reloaded, files = export_and_reload(original, tmp_path)
    for path in files.values():
        assert strict_parse(path)["env"] == species
    energy, force = max_deviations(original, reloaded, [structure])
    assert energy < 1e-8 and force < 1e-7


def test_tiny_weights_survive_the_file(tmp_path, cuau_potential):
    original = TorchANNPotential(cuau_potential.arch, cuau_potential.descriptor)
    original.model.load_state_dict(cuau_potential.model.state_dict())
    with torch.no_grad():
        original.model.networks.functions[0][0].weight[0, 0] = 3e-21
    reloaded, _ = export_and_reload(original, tmp_path)
    assert reloaded.model.networks.functions[0][0].weight[0, 0].item() == 3e-21


def test_imported_potential_saves_and_loads(tmp_path, fortran_potential, tio2):
    fortran_potential.save(tmp_path / "model.pt")
    loaded = TorchANNPotential.from_file(tmp_path / "model.pt")
    assert loaded.predict(tio2).total_energy == fortran_potential.predict(tio2).total_energy
    assert torch.equal(loaded.model.feature_std, fortran_potential.model.feature_std)


# ----------------------------------------------------------------------------- the written layout


def strict_parse(path):
    """The writer's exact layout: one field per line, counts in the fixed positions of spec §9.1."""
    lines = path.read_text().splitlines()
    assert len(lines) == 36

    def ints(row):
        return [int(t) for t in lines[row].split()]

    def floats(row):
        tokens = lines[row].split()
        assert all(FLOAT_TOKEN.fullmatch(t) for t in tokens), lines[row][:80]
        return np.array([float(t) for t in tokens])

    (nlayers,), (nnodes_max,), (wsize,), (nvalues,) = ints(0), ints(1), ints(2), ints(3)
    nnodes = ints(4)
    transitions = list(zip(nnodes, nnodes[1:]))
    assert len(nnodes) == nlayers and nnodes_max == max(nnodes) and nnodes[-1] == 1
    assert wsize == sum((a + 1) * b for a, b in transitions)
    assert nvalues == sum(n + 1 for n in nnodes[:-1]) + 1
    assert len(ints(5)) == nlayers - 1 and ints(5)[-1] == 0
    assert ints(6) == [sum((a + 1) * b for a, b in transitions[:i]) for i in range(nlayers)]
    assert ints(7) == [sum(n + 1 for n in nnodes[:i]) for i in range(nlayers)]
    weights = floats(8)
    assert len(weights) == wsize
    (nenv,), env = ints(11), lines[12].split()
    assert len(env) == nenv and lines[15] == "Chebyshev"
    (nsf,), (nsfparam,) = ints(16), ints(17)
    assert nsf == nnodes[0] and nsfparam == 4 and ints(18) == [0] * nsf
    sfparam = floats(19)
    assert len(sfparam) == 4 * nsf and not sfparam[4:].any()
    assert ints(20) == [0] * (nenv * nsf) and len(ints(21)) == 1
    statistics = {name: floats(row) for row, name in enumerate(("min", "max", "avg", "cov"), start=22)}
    assert all(len(v) == nsf for v in statistics.values())
    assert lines[27] == "T"
    (ntypes,) = ints(30)
    assert lines[31].split() == env and len(lines[31].split()) == ntypes and len(floats(32)) == ntypes
    (n_atoms,), (n_structures,), energy_range = ints(33), ints(34), floats(35)
    assert len(energy_range) == 3
    return dict(species=lines[10], env=env, rc=(float(lines[13]), float(lines[14])), weights=weights,
                sfparam=sfparam[:4], neval=ints(21)[0], **statistics, scale=float(lines[28]),
                shift=float(lines[29]), atomic_energies=floats(32), n_atoms=n_atoms, n_structures=n_structures,
                energy_range=energy_range)


def test_rewritten_fortran_files_keep_every_value(tmp_path, fortran_files, fortran_potential):
    _, files = export_and_reload(fortran_potential, tmp_path)
    for species, path in files.items():
        written, original = strict_parse(path), fortran_files[species].read_text().splitlines()
        assert written["species"] == species and written["env"] == ["Ti", "O"] and written["rc"] == (0.35, 6.5)
        assert np.array_equal(written["weights"], [float(t) for t in original[8].split()])
        assert written["sfparam"].tolist() == [6.5, 20.0, 5.0, 6.0]
        assert np.array_equal(written["avg"], [float(t) for t in original[24].split()])
        np.testing.assert_allclose(written["cov"], [float(t) for t in original[25].split()], rtol=1e-14)
        assert written["scale"] == 1.27384834786371 and written["shift"] == -7.786247938833317
        assert written["atomic_energies"].tolist() == [-1604.604515075, -432.503149303]


def test_trained_export_writes_the_training_statistics_and_structure_counts(tmp_path, cuau_potential):
    structures = make_cuau_structures(5, seed=3)
    plain = cuau_potential.export_aenet(tmp_path / "plain")
    manifest = cuau_potential.export_aenet(tmp_path / "counted", prefix="cuau", structures=structures,
                                           compute_stats=False)
    assert manifest["files"] == {"Cu": "cuau.Cu.nn.ascii", "Au": "cuau.Au.nn.ascii"}
    assert (tmp_path / "counted" / "cuau.manifest.json").is_file() and manifest["arch"]["Cu"][1] == [6, "twist"]
    per_atom = [(s.energy - sum(CUAU_REFERENCES[x] for x in s.species)) / len(s.species) for s in structures]
    model = cuau_potential.model
    for index, species in enumerate(["Cu", "Au"]):
        counted = strict_parse(tmp_path / "counted" / manifest["files"][species])
        uncounted = strict_parse(tmp_path / "plain" / plain["files"][species])
        for key in ("min", "max", "avg", "cov"):  # without compute_stats structures change no statistics
            assert np.array_equal(counted[key], uncounted[key])
        mean, std = model.feature_mean[index].numpy(), model.feature_std[index].numpy()
        assert np.array_equal(counted["avg"], mean)
        np.testing.assert_allclose(np.sqrt(counted["cov"] - counted["avg"] ** 2), std, rtol=1e-8)
        np.testing.assert_array_equal(counted["min"], mean - std)
        assert counted["neval"] == sum(s.species.count(species) for s in structures) and uncounted["neval"] == 0
        assert counted["n_atoms"] == sum(len(s.species) for s in structures) and counted["n_structures"] == 5
        np.testing.assert_allclose(counted["energy_range"], [min(per_atom), max(per_atom), np.mean(per_atom)])
        assert uncounted["n_atoms"] == 0 and not uncounted["energy_range"].any()
        assert counted["scale"] == float(model.E_scaling) and counted["shift"] == float(model.E_shift)


def test_unnormalised_features_are_written_as_avg_0_cov_1(tmp_path, raw_feature_potential):
    manifest = raw_feature_potential.export_aenet(tmp_path, descriptor_stats={"min": -2.0, "max": [3.0] * 16})
    for name in manifest["files"].values():
        written = strict_parse(tmp_path / name)
        assert not written["avg"].any() and (written["cov"] == 1).all()
        assert (written["min"] == -2).all() and (written["max"] == 3).all()


def test_export_warns_when_cov_cannot_carry_the_std(tmp_path):
    potential = TorchANNPotential({"H": [(2, "tanh")]}, ChebyshevDescriptor(["H"], 2, 3.0, 1, 2.5, min_cutoff=0.3))
    n_features = potential.descriptor.n_features
    potential.model.set_feature_statistics([300.0] * n_features, [0.0] + [1.0] * (n_features - 1))
    potential.to_aenet_ascii(tmp_path / "fine")  # a zero std is degenerate in both forms
    potential.model.set_feature_statistics([300.0] * n_features, [1e-7] + [1.0] * (n_features - 1))
    with pytest.warns(UserWarning, match="1 feature columns .* avg/cov"):
        potential.to_aenet_ascii(tmp_path / "lossy")


# ----------------------------------------------------------------------------- damaged files


def damaged_copy(tmp_path, fortran_files, species, edit):
    """Copies of both Fortran files, ``edit`` applied to the lines of ``species``'s."""
    files = {s: shutil.copy(p, tmp_path / p.name) for s, p in fortran_files.items()}
    lines = (tmp_path / f"{species}.nn.ascii").read_text().splitlines()
    (tmp_path / f"{species}.nn.ascii").write_text("\n".join(edit(lines)) + "\n")
    return {s: tmp_path / f"{s}.nn.ascii" for s in files}


def replace_line(row, text):
    return lambda lines: lines[:row] + [text] + lines[row + 1:]


def drop_last_value(row):
    return lambda lines: replace_line(row, " ".join(lines[row].split()[:-1]))(lines)


# damage: (species file, edit of its lines, expected message after the file name)
DAMAGE = {
    "truncated weights": ("Ti", drop_last_value(8), "W: expected 321 values, lines 9-10 hold 323"),
    "file ends early": ("O", lambda lines: lines[:20], "sfenv and neval: expected 113 integers"),
    "nnodes vs Wsize": ("Ti", replace_line(4, "56 6 5 1"), "Wsize: found 321, expected 383"),
    "unknown activation": ("Ti", replace_line(5, "1 7 0"), "activation codes.*unknown codes \\[7\\]"),
    "wrong iw": ("O", replace_line(6, "0 285 316 321"), "iw: found"),
    "sfenv count": ("Ti", drop_last_value(20), "sfenv and neval: expected 113 integers.*found 112"),
    "not a number": ("O", replace_line(29, "-7.78x"), "shift: '-7.78x' is not a finite number"),
    "trailing content": ("Ti", lambda lines: lines + ["42"], "after the training-set info"),
    "env species order": ("O", replace_line(12, "O Ti"), "env_species \\['O', 'Ti'\\] differs"),
    "different scale": ("O", replace_line(28, "1.3"), "scale 1.3 differs"),
    "other basis": ("Ti", replace_line(15, "Behler2011"), "only the Chebyshev basis"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_files_name_the_file_and_the_field(damage, tmp_path, fortran_files):
    species, edit, message = DAMAGE[damage]
    files = damaged_copy(tmp_path, fortran_files, species, edit)
    with pytest.raises(ValueError, match=f"{re.escape(str(files[species]))}.*{message}"):
        TorchANNPotential.from_aenet_ascii(files)


def test_species_files_must_match_the_environment(fortran_files):
    with pytest.raises(NNAsciiError, match=f"{re.escape(str(fortran_files['Ti']))}.*no file given for \\['O'\\]"):
        TorchANNPotential.from_aenet_ascii({"Ti": fortran_files["Ti"]})
    with pytest.raises(NNAsciiError, match=f"{re.escape(str(fortran_files['O']))}.*for species 'O'.*given for 'Ti'"):
        TorchANNPotential.from_aenet_ascii({"Ti": fortran_files["O"], "O": fortran_files["Ti"]})


# ----------------------------------------------------------------------------- degenerate features


def test_degenerate_feature_column_normalises_to_zero(tmp_path, fortran_files, fortran_potential, tio2):
    column = 3

    def degenerate(lines):
        avg, cov = lines[24].split(), lines[25].split()
        avg[column], cov[column] = "0.5", "0.25"  # cov = avg^2 exactly: spread 0
        return lines[:24] + [" ".join(avg), " ".join(cov)] + lines[26:]

    files = damaged_copy(tmp_path, fortran_files, "Ti", degenerate)
    assert read_nn_ascii(files["Ti"]).sf_cov[column] == 0.25
    potential = TorchANNPotential.from_aenet_ascii(files)
    assert float(potential.model.feature_std[0, column]) == 0.0
    descriptor = potential.descriptor
    structure = tio2[0]
    features = descriptor.forward_from_positions(structure.positions, structure.species, structure.cell)
    species_idx = descriptor.species_indices(structure.species)
    normalized = potential.model.normalized_features(features, species_idx)
    titanium = species_idx == 0
    assert (normalized[titanium, column] == 0).all() and (normalized[~titanium, column] != 0).all()
    assert torch.isfinite(normalized).all()
    out = potential.predict(tio2, eval_forces=True)
    assert np.isfinite(out.total_energy).all() and all(np.isfinite(f).all() for f in out.forces)
    assert out.total_energy != fortran_potential.predict(tio2).total_energy
