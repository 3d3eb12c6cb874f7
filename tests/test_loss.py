"""The energy/force loss: the formula, force scaling, and one formula for training and validation."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from aenet_core.data import StructureDataset
from aenet_core.data.batch import FeatureSource
from aenet_core.model import AtomisticModel
from aenet_core.potential import TorchANNPotential
from aenet_core.training.loss import EnergyForceLoss
from training_setup import REFERENCES, config, descriptor, potential


def test_force_scale_unbiased_divides_by_the_root_of_the_supervised_fraction(cuau):
    dataset = StructureDataset(cuau[:4], descriptor(), atomic_energies=REFERENCES)
    batch = FeatureSource(dataset).batch([0, 1, 2, 3], lambda i: i == 0)
    model = AtomisticModel({"Cu": [(3, "tanh")], "Au": [(3, "tanh")]}, ["Cu", "Au"], descriptor().n_features)
    labelled = sum(s.n_atoms for s in cuau[:4])
    plain, m_plain = EnergyForceLoss(0.5, False).of_batch(model, batch, labelled, train=False)
    scaled, m_scaled = EnergyForceLoss(0.5, True).of_batch(model, batch, labelled, train=False)
    fraction = cuau[0].n_atoms / labelled
    assert float(m_scaled.force_rmse) == pytest.approx(float(m_plain.force_rmse) / math.sqrt(fraction))
    assert float((scaled - plain).detach()) == pytest.approx(0.5 * float(m_scaled.force_rmse - m_plain.force_rmse))


def test_combine_is_the_loss_formula_and_leaves_out_a_missing_force_term():
    loss = EnergyForceLoss(0.25)
    assert loss.combine(2.0, 4.0) == 0.75 * 2.0 + 0.25 * 4.0
    assert loss.combine(2.0, None) == 0.75 * 2.0
    assert EnergyForceLoss(0.0).combine(2.0, 4.0) == 2.0


def test_validation_scores_each_epoch_with_the_training_formula(cuau):
    p = potential()
    p.train(structures=cuau, config=config(iterations=5, force_weight=0.3, checkpoint_dir=None, save_best=True))
    history = p.history
    per_epoch = [0.7 * e + 0.3 * f for e, f in zip(history["test_energy_rmse"], history["test_force_rmse"])]
    # The last entry is refreshed by a full pass with the final weights: the same weights the last
    # validation saw, so every entry is what validation scored.
    assert p.best_val_loss == pytest.approx(min(per_epoch), rel=1e-12)


def test_the_stress_term_is_the_rmse_over_the_labelled_force_structures_stresses(cuau):
    # Structures 1 and 2 are force-supervised; 1 has its (EMT) stress, 2 none, 0 is energy-only.
    structures = [cuau[0], cuau[1], replace(cuau[2], stress=None)]
    dataset = StructureDataset(structures, descriptor(), atomic_energies=REFERENCES)
    batch = FeatureSource(dataset).batch([0, 1, 2], lambda i: i > 0)
    torch.manual_seed(0)
    model = AtomisticModel({"Cu": [(3, "tanh")], "Au": [(3, "tanh")]}, ["Cu", "Au"], descriptor().n_features)
    labelled = sum(s.n_atoms for s in structures[1:])
    value, metrics = EnergyForceLoss(0.3, stress_weight=20.0).of_batch(model, batch, labelled, train=False)
    _, without = EnergyForceLoss(0.3).of_batch(model, batch, labelled, train=False)
    # By hand: the potential's own stress prediction of structure 1 against its label.
    p = TorchANNPotential({"Cu": [(3, "tanh")], "Au": [(3, "tanh")]}, descriptor())
    p.model = model
    predicted = p.predict([structures[1]], eval_stress=True).stress[0]
    stress_rmse = float(np.sqrt(np.mean((predicted - structures[1].stress) ** 2)))
    # Batch metrics are 0-d tensors (read once an epoch ends), NaN floats where a term has no labels.
    assert float(metrics.stress_rmse) == pytest.approx(stress_rmse, rel=1e-10) and math.isnan(without.stress_rmse)
    assert (float(metrics.energy_rmse), float(metrics.force_rmse)) == (float(without.energy_rmse),
                                                                       float(without.force_rmse))
    expected = 0.7 * float(metrics.energy_rmse) + 0.3 * float(metrics.force_rmse) + 20.0 * stress_rmse
    assert float(value.detach()) == pytest.approx(expected, rel=1e-10)
    assert EnergyForceLoss(0.3, stress_weight=2.0).combine(1.0, 2.0, None) == 0.7 + 0.6  # no stress label


def test_training_with_a_stress_weight_records_and_lowers_the_stress_error(cuau):
    runs = {}
    for weight in (0.0, 50.0):
        out = potential().train(structures=cuau, config=config(iterations=30, force_weight=0.1, stress_weight=weight))
        runs[weight] = out.errors
    assert runs[0.0]["RMSE_stress_train"].isna().all()
    curve = runs[50.0]["RMSE_stress_train"]
    assert curve.notna().all() and curve.iloc[-1] < 0.5 * curve.iloc[0]


def test_loss_weights_make_each_term_a_weighted_root_mean(cuau):
    structures = [replace(cuau[0], weight=2.0), replace(cuau[1], config_type="md"), replace(cuau[2], weight=0.5)]
    dataset = StructureDataset(structures, descriptor(), atomic_energies=REFERENCES)
    weights = dataset.loss_weights([0, 1, 2], {"md": 3.0, "other": 9.0})
    np.testing.assert_array_equal(weights, [2.0, 3.0, 0.5])
    batch = FeatureSource(dataset, config_type_weights={"md": 3.0}).batch([0, 1, 2], lambda i: i < 2)
    torch.manual_seed(1)
    model = AtomisticModel({"Cu": [(3, "tanh")], "Au": [(3, "tanh")]}, ["Cu", "Au"], descriptor().n_features)
    labelled = sum(s.n_atoms for s in structures)
    value, metrics = EnergyForceLoss(0.4, stress_weight=5.0).of_batch(model, batch, labelled, train=False)
    # By hand, from the potential's predictions of each structure.
    p = TorchANNPotential({"Cu": [(3, "tanh")], "Au": [(3, "tanh")]}, descriptor())
    p.model = model
    out = p.predict(structures, eval_forces=True, eval_stress=True)
    w = np.array([2.0, 3.0, 0.5])
    e = [(out.total_energy[i] - s.energy) / s.n_atoms for i, s in enumerate(structures)]
    energy = np.sqrt(np.sum(w * np.square(e)) / w.sum())
    f = [np.mean((out.forces[i] - structures[i].forces) ** 2, axis=1) for i in (0, 1)]
    force = np.sqrt((w[0] * f[0].sum() + w[1] * f[1].sum()) / (w[0] * len(f[0]) + w[1] * len(f[1])))
    s = [np.mean((out.stress[i] - structures[i].stress) ** 2) for i in (0, 1)]
    stress = np.sqrt((w[0] * s[0] + w[1] * s[1]) / (w[0] + w[1]))
    assert float(value.detach()) == pytest.approx(0.6 * energy + 0.4 * force + 5.0 * stress, rel=1e-10)
    unweighted = np.sqrt(np.mean(np.square(e)))  # the history records the plain errors
    assert metrics.energy_rmse == pytest.approx(unweighted, rel=1e-12)


def test_a_structure_of_weight_zero_contributes_nothing(cuau):
    torch.manual_seed(2)
    model = AtomisticModel({"Cu": [(3, "tanh")], "Au": [(3, "tanh")]}, ["Cu", "Au"], descriptor().n_features)
    gradients = []
    for label in (cuau[1].energy, cuau[1].energy + 100.0):  # a label far off makes no difference at weight 0
        structures = [cuau[0], replace(cuau[1], energy=label, weight=0.0), cuau[2]]
        batch = FeatureSource(StructureDataset(structures, descriptor())).batch([0, 1, 2], lambda i: True)
        value, _ = EnergyForceLoss(0.2, stress_weight=1.0).of_batch(model, batch, 1, train=True)
        model.zero_grad()
        value.backward()
        gradients.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, rtol=1e-12, atol=0) for a, b in zip(*gradients))
