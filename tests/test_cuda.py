"""CUDA against the CPU: predictions, training steps, database batches and float32 training.

Every test here is marked ``cuda`` (``pytest -m cuda``) and skips without a CUDA device; ``bench/gpu.py``
runs them first.  ``AENET_CORE_TEST_DEVICE=cpu pytest tests/test_cuda.py`` runs the same code with the CPU as
the second device, which checks the tests themselves on a machine without a GPU (the comparisons are then
trivially equal).
"""
import os
from dataclasses import fields

import numpy as np
import pytest
import torch

from aenet_core.data import HDF5StructureDataset
from aenet_core.data.batch import FeatureSource
from aenet_core.torch_training import TorchANNPotential
from training_setup import REFERENCES, config, descriptor, potential

DEVICE = os.environ.get("AENET_CORE_TEST_DEVICE", "cuda")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="no CUDA device"),
]

TOLERANCE = 1e-10  # float64: the devices differ only in the order of sums


def on_device(tensor) -> bool:
    return tensor.device.type == torch.device(DEVICE).type


def trained_on_cpu(structures, tmp_path):
    """A potential trained 2 epochs on the CPU with forces, saved; (file, potential)."""
    p = potential()
    p.train(structures=structures, config=config(iterations=2, force_weight=0.2))
    path = tmp_path / "model.pt"
    p.save(path)
    return path, p


def test_energies_forces_and_stresses_match_the_cpu(cuau, tmp_path):
    path, cpu = trained_on_cpu(cuau, tmp_path)
    gpu = TorchANNPotential.from_file(path, device=DEVICE)
    assert on_device(next(gpu.model.parameters())) and on_device(gpu.model.feature_mean)
    a = cpu.predict(cuau, eval_forces=True, eval_stress=True)
    b = gpu.predict(cuau, eval_forces=True, eval_stress=True)
    assert sum(s is not None for s in a.stress) == len(cuau)  # the EMT cells are periodic: all have stresses
    np.testing.assert_allclose(b.total_energy, a.total_energy, rtol=0, atol=TOLERANCE)
    for x, y in zip(a.forces, b.forces):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=0, atol=TOLERANCE)
    for x, y in zip(a.stress, b.stress):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=0, atol=TOLERANCE)


def test_training_steps_with_a_device_descriptor_match_the_cpu(cuau):
    """Features, derivatives, loss and Adam steps all on the device: the same weights and errors."""
    cpu = potential()
    cpu_out = cpu.train(structures=cuau, config=config(iterations=3, force_weight=0.2, stress_weight=1.0))
    gpu = TorchANNPotential(cpu.arch, descriptor().to(device=DEVICE))
    gpu_out = gpu.train(structures=cuau, config=config(iterations=3, force_weight=0.2, stress_weight=1.0,
                                                       device=DEVICE))
    assert on_device(next(gpu.model.parameters()))
    for name, value in cpu.model.state_dict().items():
        torch.testing.assert_close(gpu.model.state_dict()[name].cpu(), value, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gpu_out.errors.to_numpy(), cpu_out.errors.to_numpy(), rtol=1e-8, atol=1e-12)


def database(structures, tmp_path):
    db = HDF5StructureDataset(descriptor(), tmp_path / "cuau.h5", sources=structures, mode="build",
                              atomic_energies=REFERENCES)
    db.build_database(show_progress=False, persist_features=True, persist_force_derivatives=True)
    return db


def test_a_database_batch_moves_to_the_device_whole(cuau, tmp_path):
    db = database(cuau, tmp_path)
    indices = list(range(6))
    batch = FeatureSource(db).batch(indices, lambda i: i < 4)  # 4 force-supervised structures, 2 energy-only
    moved = batch.to(DEVICE, torch.float64)
    tensors = {f.name: getattr(moved, f.name) for f in fields(moved) if torch.is_tensor(getattr(moved, f.name))}
    derivatives = moved.derivatives
    tensors |= {f.name: getattr(derivatives, f.name) for f in fields(derivatives)
                if torch.is_tensor(getattr(derivatives, f.name))}
    assert "radial_dG_dd" in tensors and "forces_ref" in tensors
    assert [name for name, t in tensors.items() if not on_device(t)] == []
    weights = torch.randn(batch.derivatives.n_atoms, len(batch.features[0]), dtype=torch.float64,
                          generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(derivatives.contract(weights.to(DEVICE)).cpu(), batch.derivatives.contract(weights),
                               rtol=0, atol=TOLERANCE)


def test_training_from_a_database_matches_the_cpu(cuau, tmp_path):
    db = database(cuau, tmp_path)
    runs = []
    for device in ("cpu", DEVICE):
        p = potential()
        out = p.train(dataset=db, config=config(iterations=2, force_weight=0.2, atomic_energies=None, device=device))
        runs.append((p, out))
    (cpu, cpu_out), (gpu, gpu_out) = runs
    np.testing.assert_allclose(gpu_out.errors.to_numpy(), cpu_out.errors.to_numpy(), rtol=1e-8, atol=1e-12)
    for name, value in cpu.model.state_dict().items():
        torch.testing.assert_close(gpu.model.state_dict()[name].cpu(), value, rtol=1e-9, atol=1e-9)


def test_float32_training_on_the_device_is_float32_and_close_to_float64(cuau):
    """precision='float32' trains a float32 model (with a float32 descriptor: float32 features too) whose
    errors follow the float64 run's."""
    double = potential()
    double_out = double.train(structures=cuau, config=config(iterations=3, force_weight=0.2, device=DEVICE))
    single = TorchANNPotential(double.arch, descriptor().to(device=DEVICE, dtype=torch.float32))
    single_out = single.train(structures=cuau, config=config(iterations=3, force_weight=0.2, device=DEVICE,
                                                             precision="float32"))
    parameters = list(single.model.parameters()) + list(single.model.buffers())
    assert {t.dtype for t in parameters if t.is_floating_point()} == {torch.float32}
    assert all(on_device(t) for t in parameters)
    errors = single_out.errors[["RMSE_train", "RMSE_test", "RMSE_force_train", "RMSE_force_test"]].to_numpy()
    reference = double_out.errors[["RMSE_train", "RMSE_test", "RMSE_force_train", "RMSE_force_test"]].to_numpy()
    assert np.isfinite(errors).all()
    np.testing.assert_allclose(errors, reference, rtol=1e-3)
    prediction = single.predict(cuau[:3], eval_forces=True)
    assert np.isfinite(prediction.total_energy).all()
