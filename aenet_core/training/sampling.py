"""Which structures each epoch trains on: the sampling order and the force-supervised subsets.

Both draw only from their own seeded generators, so training order and force
subsets depend on ``config.seed`` alone, and both save and restore their state
for an exact resume.
"""
import random
from dataclasses import dataclass, field

import torch


class Sampler:
    """Training order per epoch: uniform shuffling, or weighted draws with replacement.

    ``energy_weighted``: w_i = 1 / (1 + D_i / D_max), D_i = e_i - min e (all 1
    when D_max <= 0).  ``error_weighted``: scores start at 1 and become each
    sampled structure's mean |dE|/N of the last epoch; see ``adaptive_weights``.
    """

    def __init__(self, policy, dataset, indices, seed):
        self.policy, self.indices = policy, list(indices)
        self.shuffle = torch.Generator().manual_seed(seed + 200) if seed is not None else None
        self.draws = torch.Generator().manual_seed(seed + 100) if seed is not None else None
        self.scores = torch.ones(len(self.indices), dtype=torch.float64)
        self.weights = torch.ones(len(self.indices), dtype=torch.float64)
        if policy == "energy_weighted":
            e = torch.tensor([dataset.referenced_energy_per_atom(i) for i in self.indices], dtype=torch.float64)
            delta = e - e.min()
            if delta.max() > 0:
                self.weights = 1.0 / (1.0 + delta / delta.max())

    def order(self) -> list:
        if self.policy == "uniform":
            return [self.indices[i] for i in torch.randperm(len(self.indices), generator=self.shuffle).tolist()]
        draws = torch.multinomial(self.weights, len(self.indices), replacement=True, generator=self.draws)
        return [self.indices[i] for i in draws.tolist()]

    def update(self, errors: dict) -> None:
        """error_weighted: each sampled structure's score becomes its mean |dE|/N of the epoch."""
        if self.policy != "error_weighted":
            return
        position = {index: k for k, index in enumerate(self.indices)}
        for index, error in errors.items():
            self.scores[position[index]] = error
        self.weights = adaptive_weights(self.scores)

    def state_dict(self) -> dict:
        return {"shuffle": _generator_state(self.shuffle), "draws": _generator_state(self.draws),
                "scores": self.scores.clone(), "weights": self.weights.clone()}

    def load_state_dict(self, state) -> None:
        _restore_generator(self.shuffle, state["shuffle"])
        _restore_generator(self.draws, state["draws"])
        self.scores, self.weights = state["scores"].clone(), state["weights"].clone()


def adaptive_weights(scores):
    """Non-finite -> 0, clamp at 0; all zero -> uniform; else clamp at 1e-12 and scale to unit mean."""
    u = torch.where(torch.isfinite(scores), scores, torch.zeros_like(scores)).clamp(min=0)
    if not bool((u > 0).any()):
        return torch.ones_like(u)
    u = u.clamp(min=1e-12)
    return u / u.mean()


def force_selection(dataset, indices, config, seed):
    """The force-supervised subset of a split (None without force or stress training, or force labels)."""
    if (config.force_weight == 0 and config.stress_weight == 0) or dataset is None:
        return None
    labelled = [i for i in indices if dataset.has_forces(i)]
    if not labelled:
        return None
    selection = ForceSelection(labelled, config.force_fraction, config.force_min_structures_per_epoch or 0,
                               random.Random(seed))
    selection.draw()
    return selection


@dataclass
class ForceSelection:
    """Which force-labelled structures of a split are force-supervised in the current epoch."""

    labelled: list  # dataset indices with force labels
    fraction: float
    minimum: int
    rng: random.Random
    selected: set = field(default_factory=set)

    def draw(self) -> None:
        if self.fraction >= 1.0:
            self.selected = set(self.labelled)
            return
        n = int(len(self.labelled) * self.fraction)
        n = min(max(n, self.minimum), len(self.labelled))
        self.selected = set(self.rng.sample(self.labelled, n))

    def state_dict(self) -> tuple:
        return self.rng.getstate(), sorted(self.selected)

    def load_state_dict(self, state) -> None:
        self.rng.setstate(state[0])
        self.selected = set(state[1])


def _generator_state(generator):
    return None if generator is None else generator.get_state()


def _restore_generator(generator, state):
    if generator is not None and state is not None:
        generator.set_state(state)
