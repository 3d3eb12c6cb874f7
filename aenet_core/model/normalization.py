"""Training-set statistics for feature standardisation and energy scaling (aenet conventions).

Features: mean and std over all atoms of all species of the training split,
std = sqrt(max(E[x^2] - mean^2, 0) + 1e-12).  Energies: with e the referenced
energy per atom, (E - sum of atomic reference energies) / N, over the training
split, E_scaling = 2 / (e_max - e_min) and E_shift = (e_max + e_min) / 2, so the
network output lives in about [-1, 1] per atom; a constant e gives 1 and 0.
"""
import math

import torch


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
