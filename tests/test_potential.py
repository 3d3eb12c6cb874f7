"""TorchANNPotential, the facade: the seed example, reproducibility, forces, predictions, files."""
import math

import numpy as np
import pytest
import torch

from aenet_core.data import StructureDataset
from aenet_core.io import write_extxyz
from aenet_core.split import split_indices
from aenet_core.torch_featurize import ChebyshevDescriptor
from aenet_core.torch_training import Adam, Structure, TorchANNPotential, TorchTrainingConfig
from training_setup import REFERENCES, config, descriptor, potential


def test_seed_energy_only_example_runs():
    structures = [
        Structure(positions=np.array([[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.0, 0.9, 0.0]]), species=["H"] * 3, energy=0.0),
        Structure(positions=np.array([[0.1, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), species=["H"] * 3, energy=0.5),
    ]
    desc = ChebyshevDescriptor(species=["H"], rad_order=1, rad_cutoff=2.0, ang_order=0, ang_cutoff=2.0,
                               min_cutoff=0.1, device="cpu", dtype=torch.float64)
    mlp = TorchANNPotential({"H": [(4, "tanh")]}, descriptor=desc)
    cfg = TorchTrainingConfig(iterations=1, method=Adam(mu=0.001, batchsize=1), testpercent=50, force_weight=0.0,
                              atomic_energies={"H": 0.0}, normalize_features=False, normalize_energy=False,
                              memory_mode="cpu", device="cpu", checkpoint_dir=None, checkpoint_interval=0,
                              max_checkpoints=None, save_best=False, use_scheduler=False, show_progress=False)
    results = mlp.train(structures=structures, config=cfg)
    tail = results.errors[["RMSE_train", "RMSE_test"]].tail(1)
    assert len(results.errors) == 1 and np.isfinite(tail.to_numpy()).all()


def test_same_seed_gives_bit_identical_weights_and_history(cuau):
    runs = []
    for _ in range(2):
        p = potential()
        out = p.train(structures=cuau, config=config(force_weight=0.2, force_fraction=0.5))
        runs.append((p.model.state_dict(), out.errors))
    (a, errors_a), (b, errors_b) = runs
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert errors_a.equals(errors_b)
    other = potential()
    other.train(structures=cuau, config=config(force_weight=0.2, force_fraction=0.5, seed=8))
    assert not torch.equal(other.model.state_dict()["networks.functions.0.0.weight"],
                           a["networks.functions.0.0.weight"])


def test_training_reduces_energy_and_force_errors(cuau):
    p = potential()
    out = p.train(structures=cuau, config=config(iterations=40, force_weight=0.3))
    errors = out.errors
    assert errors["RMSE_train"].iloc[-1] < 0.5 * errors["RMSE_train"].iloc[0]
    assert errors["RMSE_force_train"].iloc[-1] < errors["RMSE_force_train"].iloc[0]
    assert np.isfinite(errors["RMSE_force_test"]).all() and out.has_force_data


def test_predicted_forces_are_the_negative_energy_gradient(cuau):
    p = potential()
    p.train(structures=cuau[:6], config=config(iterations=2, force_weight=0.5))
    s = cuau[0]
    moved = Structure(s.positions + np.array([1, -2, 0]) @ s.cell + 0.3 * s.cell[0], s.species, cell=s.cell)
    out = p.predict([moved], eval_forces=True)
    h = 1e-5
    for atom in range(moved.n_atoms):
        for c in range(3):
            plus, minus = moved.positions.copy(), moved.positions.copy()
            plus[atom, c] += h
            minus[atom, c] -= h
            e = p.predict([Structure(plus, s.species, cell=s.cell), Structure(minus, s.species, cell=s.cell)])
            numeric = -(e.total_energy[0] - e.total_energy[1]) / (2 * h)
            assert math.isclose(out.forces[0][atom, c], numeric, abs_tol=1e-6)


def test_predict_reports_physical_energies(cuau):
    p = potential()
    p.train(structures=cuau, config=config(iterations=2))
    out = p.predict(cuau[:3])
    for total, cohesive, atom_energies, s in zip(out.total_energy, out.cohesive_energy, out.atom_energies, cuau):
        assert math.isclose(float(np.sum(atom_energies)), total, rel_tol=1e-12)
        references = sum(REFERENCES[x] for x in s.species)
        assert math.isclose(cohesive, total - references, rel_tol=1e-12)
    assert out.forces is None and out.num_structures == 3
    assert out.num_atoms(1) == cuau[1].n_atoms
    assert out.total_energy_per_atom[1] == pytest.approx(out.total_energy[1] / cuau[1].n_atoms)
    assert out.cohesive_energy_per_atom[2] == pytest.approx(out.cohesive_energy[2] / cuau[2].n_atoms)


def test_save_and_load_reproduce_predictions(cuau, tmp_path):
    p = potential()
    p.train(structures=cuau, config=config(iterations=3, force_weight=0.1))
    path = tmp_path / "model.pt"
    p.save(path)
    q = TorchANNPotential.from_file(path)
    assert q.arch == p.arch and q.descriptor.get_config() == p.descriptor.get_config()
    assert q.training_config == p.training_config
    np.testing.assert_equal(q.history, p.history)  # NaN where nothing was measured (stresses) counts as equal
    a, b = p.predict(cuau[:4], eval_forces=True), q.predict(cuau[:4], eval_forces=True)
    assert a.total_energy == b.total_energy
    assert all(np.array_equal(x, y) for x, y in zip(a.forces, b.forces))
    assert [f.name for f in tmp_path.iterdir()] == ["model.pt"]


def test_float32_precision_builds_a_float32_model(cuau, tmp_path):
    p = potential()
    p.train(structures=cuau, config=config(iterations=1, precision="float32"))
    assert p.model.feature_mean.dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in p.model.parameters())
    p.save(tmp_path / "model.pt")
    q = TorchANNPotential.from_file(tmp_path / "model.pt")
    assert all(t.dtype == torch.float32 for t in q.model.state_dict().values())
    assert q.predict(cuau[:2]).total_energy == p.predict(cuau[:2]).total_energy


def test_energy_and_force_files(cuau, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    p = potential()
    p.train(structures=cuau, config=config(iterations=2, force_weight=0.2, save_energies=True, save_forces=True,
                                           timing=True))
    assert "Timing (s):" in capsys.readouterr().out
    rows = [line.split() for line in (tmp_path / "energies.test.0").read_text().splitlines()[1:]]
    dataset = StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES)
    _, test = split_indices(len(dataset), 25, 3)
    assert [r[-1] for r in rows] == [dataset.get_structure_identifier(i) for i in test]
    predicted = p.predict([dataset.get_structure(i) for i in test]).total_energy
    for row, i, e in zip(rows, test, predicted):
        s = dataset.get_structure(i)
        assert float(row[0]) == pytest.approx(s.energy, rel=1e-6) and float(row[1]) == pytest.approx(e, rel=1e-6)
        assert int(row[2]) == s.n_atoms and [int(row[7]), int(row[8])] == [s.species.count("Cu"), s.species.count("Au")]
    forces = (tmp_path / "forces.train.0").read_text().splitlines()
    assert forces[1].startswith("# ") and len(forces[2].split()) == 10
    assert (tmp_path / "energies.train.0").exists() and (tmp_path / "forces.test.0").exists()


def test_predict_dataset_matches_predict(cuau):
    p = potential()
    p.train(structures=cuau, config=config(iterations=1))
    dataset = StructureDataset(cuau[:5], p.descriptor)
    a, b = p.predict_dataset(dataset, eval_forces=True), p.predict(cuau[:5], eval_forces=True)
    assert a.total_energy == b.total_energy and a.structure_paths == [s.name for s in cuau[:5]]
    assert all(np.array_equal(x, y) for x, y in zip(a.forces, b.forces))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_training_on_cuda_with_a_cpu_descriptor_matches_cpu(cuau):
    cpu, gpu = potential(), potential()
    cpu_out = cpu.train(structures=cuau, config=config(iterations=2, force_weight=0.2))
    gpu_out = gpu.train(structures=cuau, config=config(iterations=2, force_weight=0.2, device="cuda"))
    assert next(gpu.model.parameters()).is_cuda
    np.testing.assert_allclose(gpu_out.errors.to_numpy(), cpu_out.errors.to_numpy(), rtol=1e-6)
    a = cpu.predict(cuau[:3], eval_forces=True)
    b = gpu.predict(cuau[:3], eval_forces=True)
    np.testing.assert_allclose(a.total_energy, b.total_energy, rtol=1e-9)


def test_predict_names_every_frame_of_a_multi_frame_file(cuau, tmp_path):
    p = potential()
    p.train(structures=cuau, config=config(iterations=1))
    path = tmp_path / "six-frames.extxyz"
    write_extxyz(path, cuau[:6])
    out = p.predict([path, cuau[7]])
    assert out.structure_paths == [f"{path}#frame={k}" for k in range(6)] + ["cuau-007"]
    assert out.paths == [str(path)] * 6 + ["cuau-007"]  # aenet-python's: where each came from
    assert out.total_energy == p.predict(cuau[:6] + [cuau[7]]).total_energy


def test_prediction_files_go_to_the_output_dir_and_never_the_working_directory(cuau, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    potential().train(structures=cuau, config=config(iterations=1, save_energies=True, save_forces=True),
                      output_dir=tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "energies.test.0", "energies.train.0", "forces.test.0", "forces.train.0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
