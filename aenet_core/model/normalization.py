"""Training-set statistics for feature standardisation and energy scaling (aenet conventions).

Features: mean and std over all atoms of all species of the training split,
std = sqrt(max(E[x^2] - mean^2, 0) + 1e-12).  Energies: with e the referenced
energy per atom, (E - sum of atomic reference energies) / N, over the training
split, E_scaling = 2 / (e_max - e_min) and E_shift = (e_max + e_min) / 2, so the
network output lives in about [-1, 1] per atom; a constant e gives 1 and 0.

``NormalizationManager`` holds such statistics for a training loop the caller
writes (aenet-python's building block); ``AtomisticModel`` keeps them in its buffers.
"""
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from aenet_core.model.atomistic import inverse_std


def feature_statistics(feature_batches) -> dict:
    """Mean, std, min and max per feature column, streamed over (N_b, F) tensors (float64 sums)."""
    count, total, squares, low, high = 0, None, None, None, None
    for features in feature_batches:
        x = torch.as_tensor(features).detach().to(torch.float64)
        if total is None:
            total, squares = x.sum(0), (x * x).sum(0)
            low, high = x.min(0).values, x.max(0).values
        else:
            total, squares = total + x.sum(0), squares + (x * x).sum(0)
            low, high = torch.minimum(low, x.min(0).values), torch.maximum(high, x.max(0).values)
        count += len(x)
    if not count:
        raise ValueError("feature statistics need at least one atom")
    mean = total / count
    variance = torch.clamp(squares / count - mean * mean, min=0.0)
    return {"mean": mean, "std": torch.sqrt(variance + 1e-12), "min": low, "max": high}


def energy_normalization(energies_per_atom) -> tuple:
    """(E_shift, E_scaling) from referenced per-atom energies of the training split."""
    e = [float(v) for v in energies_per_atom]
    if not e or not all(math.isfinite(v) for v in e):
        raise ValueError("energy normalisation needs at least one finite energy per atom")
    e_min, e_max = min(e), max(e)
    if e_max <= e_min:
        return 0.0, 1.0
    return (e_max + e_min) / 2, 2.0 / (e_max - e_min)


class NormalizationManager:
    """Feature standardisation and energy scaling of a model: computed from training batches (dicts with
    ``features``, ``energy_ref``, ``n_atoms``, ``species_indices``), set, applied and saved.

    One feature mean and std for all species (aenet-python's); a column whose std is at most 1e-10
    normalises to 0, as in ``AtomisticModel``.  With ``normalize_features`` or ``normalize_energy`` False
    that part is the identity.
    """

    def __init__(self, normalize_features: bool = True, normalize_energy: bool = True, dtype=torch.float64,
                 device=torch.device("cpu")):
        self._normalize_features, self._normalize_energy = bool(normalize_features), bool(normalize_energy)
        self.dtype, self.device = dtype, device
        self.feature_mean = self.feature_std = self.feature_min = self.feature_max = None
        self.E_shift, self.E_scaling = 0.0, 1.0

    @property
    def normalize_features(self) -> bool:
        return self._normalize_features

    @property
    def normalize_energy(self) -> bool:
        return self._normalize_energy

    def has_feature_stats(self) -> bool:
        return self.feature_mean is not None and self.feature_std is not None

    def _tensor(self, values):
        if isinstance(values, torch.Tensor):
            return values.detach().to(dtype=self.dtype, device=self.device).reshape(-1).clone()  # not a view
        return torch.as_tensor(np.asarray(values, dtype=float), dtype=self.dtype, device=self.device).reshape(-1)

    def set_feature_stats(self, mean, std) -> None:
        """Feature mean and std, (F,) each, finite, std >= 0."""
        mean, std = self._tensor(mean), self._tensor(std)
        if mean.shape != std.shape or not bool(torch.isfinite(mean).all() & torch.isfinite(std).all()) \
                or bool((std < 0).any()):
            raise ValueError(f"feature mean and std must be finite (F,) arrays of one length with std >= 0; got "
                             f"shapes {tuple(mean.shape)} and {tuple(std.shape)}")
        self.feature_mean, self.feature_std = mean, std

    def set_energy_stats(self, shift: float, scaling: float) -> None:
        """E_shift (eV/atom, the midpoint) and E_scaling (> 0)."""
        if not (math.isfinite(float(shift)) and math.isfinite(float(scaling)) and float(scaling) > 0):
            raise ValueError(f"E_shift must be finite and E_scaling finite and positive; got shift={shift}, "
                             f"scaling={scaling}")
        self.E_shift, self.E_scaling = float(shift), float(scaling)

    def compute_feature_stats(self, dataloader, n_features: int, provided_stats=None, show_progress: bool = True):
        """Mean, std, min and max over every atom of ``dataloader``'s batches; ``provided_stats`` ({'mean',
        'std'}, or aenet's {'mean', 'cov'} with cov = E[x^2]) are used instead when given."""
        if not self.normalize_features:
            return
        provided = _provided_std(provided_stats)
        if provided is not None:
            self.set_feature_stats(*provided)
            return
        batches = tqdm(dataloader, desc="Computing feature stats", leave=False, disable=not show_progress)
        stats = feature_statistics(_features(batch, n_features) for batch in batches)
        self.set_feature_stats(stats["mean"], stats["std"])
        self.feature_min, self.feature_max = self._tensor(stats["min"]), self._tensor(stats["max"])

    def compute_energy_stats(self, dataloader, atomic_energies_by_index=None, provided_shift=None,
                             provided_scaling=None, show_progress: bool = True):
        """E_shift and E_scaling from the referenced energies per atom, (E - sum of E_atom[species]) / N, of
        ``dataloader``'s structures; ``provided_shift``/``provided_scaling`` override either."""
        if not self.normalize_energy:
            return
        shift, scaling = provided_shift, provided_scaling
        if shift is None or scaling is None:
            batches = tqdm(dataloader, desc="Computing energy stats", leave=False, disable=not show_progress)
            per_atom = [e for batch in batches for e in _referenced_per_atom(batch, atomic_energies_by_index)]
            fitted_shift, fitted_scaling = energy_normalization(per_atom)
            shift = fitted_shift if shift is None else shift
            scaling = fitted_scaling if scaling is None else scaling
        self.set_energy_stats(shift, scaling)

    def apply_feature_normalization(self, features):
        """(features - mean) / std, or ``features`` unchanged without statistics or feature normalisation."""
        if not self.normalize_features or not self.has_feature_stats():
            return features
        mean = self.feature_mean.to(features.device, features.dtype)
        return (features - mean) * inverse_std(self.feature_std.to(features.device, features.dtype))

    def apply_energy_normalization(self, energy):
        """``energy`` unchanged: the networks' outputs already live in normalised energy units."""
        return energy

    def denormalize_energy(self, energy_norm, n_atoms: int) -> float:
        """The energy (eV) of a structure of ``n_atoms`` whose summed network outputs are ``energy_norm``:
        energy_norm / E_scaling + n_atoms E_shift (without the atomic reference energies)."""
        value = float(torch.as_tensor(energy_norm).detach().cpu())
        return value / self.E_scaling + self.E_shift * n_atoms if self.normalize_energy else value

    def model_statistics(self) -> tuple:
        """(feature mean, feature std, E_shift, E_scaling) as a model applies them: the identity for a part
        that is not normalised or has no statistics yet (mean and std None then)."""
        use_features = self.normalize_features and self.has_feature_stats()
        mean, std = (self.feature_mean, self.feature_std) if use_features else (None, None)
        return (mean, std, *((self.E_shift, self.E_scaling) if self.normalize_energy else (0.0, 1.0)))

    def get_state(self) -> dict:
        """The settings and statistics as plain data (NumPy arrays for the feature statistics)."""
        state = {"normalize_features": self.normalize_features, "normalize_energy": self.normalize_energy,
                 "E_shift": self.E_shift, "E_scaling": self.E_scaling}
        for key in ("feature_mean", "feature_std", "feature_min", "feature_max"):
            if getattr(self, key) is not None:
                state[key] = getattr(self, key).detach().cpu().numpy()
        return state

    def set_state(self, state: dict) -> None:
        """Restore what ``get_state`` returned (missing keys: normalisation on, shift 0, scaling 1)."""
        self._normalize_features = bool(state.get("normalize_features", True))
        self._normalize_energy = bool(state.get("normalize_energy", True))
        self.set_energy_stats(state.get("E_shift", 0.0), state.get("E_scaling", 1.0))
        for key in ("feature_mean", "feature_std", "feature_min", "feature_max"):
            if key in state:
                setattr(self, key, self._tensor(state[key]))


def _provided_std(stats):
    """(mean, std) of given statistics, or None without a mean or a spread; aenet's 'cov' is E[x^2]."""
    if stats is None or stats.get("mean") is None:
        return None
    mean = np.asarray(stats["mean"], dtype=float)
    if stats.get("std") is not None:
        return mean, stats["std"]
    if stats.get("cov") is not None:
        return mean, np.sqrt(np.maximum(np.asarray(stats["cov"], dtype=float) - mean**2, 0.0))
    return None


def _features(batch, n_features: int):
    features = batch["features"]
    if features.ndim != 2 or features.shape[1] != n_features:
        raise ValueError(f"batch features must be (atoms, n_features={n_features}); got {tuple(features.shape)}")
    return features


def _referenced_per_atom(batch, atomic_energies_by_index) -> list:
    """(E - sum of the atoms' reference energies) / N of each structure of a batch."""
    energies = torch.as_tensor(batch["energy_ref"], dtype=torch.float64).reshape(-1)
    n_atoms = torch.as_tensor(batch["n_atoms"]).reshape(-1)
    if atomic_energies_by_index is not None:
        species = torch.as_tensor(batch["species_indices"])
        structure = torch.repeat_interleave(torch.arange(len(n_atoms)), n_atoms.long())
        references = torch.as_tensor(atomic_energies_by_index, dtype=torch.float64).cpu()[species.cpu()]
        energies = energies - torch.zeros(len(n_atoms), dtype=torch.float64).index_add(0, structure, references)
    return (energies / n_atoms.to(torch.float64)).tolist()
