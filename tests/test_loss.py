"""The energy/force loss: the formula, force scaling, and one formula for training and validation."""
import math

import pytest

from aenet_core.data import StructureDataset
from aenet_core.data.batch import FeatureSource
from aenet_core.model import AtomisticModel
from aenet_core.training.loss import EnergyForceLoss
from training_setup import REFERENCES, SMALL_VALIDATION, config, cuau_structures, descriptor, potential

pytestmark = pytest.mark.filterwarnings(SMALL_VALIDATION)


@pytest.fixture(scope="module")
def cuau():
    return cuau_structures()


def test_force_scale_unbiased_divides_by_the_root_of_the_supervised_fraction(cuau):
    dataset = StructureDataset(cuau[:4], descriptor(), atomic_energies=REFERENCES)
    batch = FeatureSource(dataset).batch([0, 1, 2, 3], lambda i: i == 0)
    model = AtomisticModel({"Cu": [(3, "tanh")], "Au": [(3, "tanh")]}, ["Cu", "Au"], descriptor().n_features)
    labelled = sum(s.n_atoms for s in cuau[:4])
    plain, m_plain = EnergyForceLoss(0.5, False).of_batch(model, batch, labelled, train=False)
    scaled, m_scaled = EnergyForceLoss(0.5, True).of_batch(model, batch, labelled, train=False)
    fraction = cuau[0].n_atoms / labelled
    assert m_scaled.force_rmse == pytest.approx(m_plain.force_rmse / math.sqrt(fraction))
    assert float((scaled - plain).detach()) == pytest.approx(0.5 * (m_scaled.force_rmse - m_plain.force_rmse))


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
