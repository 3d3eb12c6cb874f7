"""aenet-python's ``TrainingLoop``: one epoch of a training loop the caller writes, with our loss.

The model (an ``EnergyModelAdapter``), the ``NormalizationManager`` and the
atomic reference energies are evaluated as one ``AtomisticModel`` sharing the
networks (``atomistic_view``), and each batch's loss is ``EnergyForceLoss``'s,
as in ``train()``: (1 - alpha) RMSE_E (eV/atom) + alpha RMSE_F (eV/Å).
"""
from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from aenet_core.data.batch import Batch
from aenet_core.model.predictor import atomistic_view
from aenet_core.training.loop import EpochSums
from aenet_core.training.loss import EnergyForceLoss

FORCE_BATCHES = ("Force-training batches must include either precomputed local derivatives or graph data: give "
                 "force-supervised batches as aenet_core Batch objects (FeatureSource.batch), which carry the "
                 "descriptor derivatives; dict batches train energies only")


class TrainingLoop:
    """Runs epochs of ``model`` (an ``EnergyModelAdapter``, or an ``AtomisticModel`` with its own
    normalisation) over batches on ``device`` in ``dtype``; ``normalizer`` holds the feature and energy
    normalisation.  The last epoch's times are in ``last_forward_time``, ``last_backward_time``,
    ``last_data_loading_time``, ``last_loss_computation_time`` and ``last_optimizer_time``."""

    def __init__(self, model, descriptor, normalizer, device, dtype):
        self.model, self.descriptor, self.normalizer = model, descriptor, normalizer
        self.device, self.dtype = device, dtype
        self.last_forward_time = self.last_backward_time = self.last_data_loading_time = 0.0
        self.last_loss_computation_time = self.last_optimizer_time = 0.0

    def run_epoch(self, loader, optimizer, alpha, atomic_energies_by_index=None, train=True,
                  show_batch_progress=False, force_scale_unbiased=False, collect_structure_scores=False) -> tuple:
        """One pass over ``loader``: (energy RMSE, energy MAE, force RMSE (NaN without force batches), timing
        {'data_loading', 'loss_computation', 'optimizer', 'total'} (s), per-structure mean |dE|/N by sample
        index or None).  Errors are means over batches; with ``train`` and an ``optimizer`` each batch steps it.

        A batch is a dict with ``features`` (raw, (N, F)), ``species_indices``, ``n_atoms`` and ``energy_ref``
        (total energies; ``sample_indices`` optional), or an aenet_core ``Batch``, which also carries forces.
        ``atomic_energies_by_index`` (eV per species index) are subtracted from the targets (none: zeros).
        """
        view = atomistic_view(self.model, self.normalizer, self._references(atomic_energies_by_index))
        view.train(train)
        loss = EnergyForceLoss(float(alpha), force_scale_unbiased)
        totals, timing = EpochSums(), dict.fromkeys(("data_loading", "loss_computation", "optimizer"), 0.0)
        self.last_backward_time = 0.0
        started = ready = time.perf_counter()
        for raw in tqdm(loader, desc="train" if train else "val", leave=False, disable=not show_batch_progress):
            batch = self._batch(raw, alpha)
            timing["data_loading"] += time.perf_counter() - ready
            # a dict without sample_indices numbers its structures from 0 in every batch: no scores then
            indices = batch.indices if isinstance(raw, Batch) or raw.get("sample_indices") is not None else ()
            totals.add(indices, self._step(view, loss, batch, optimizer if train else None, train, timing))
            ready = time.perf_counter()
        timing["total"] = time.perf_counter() - started
        self.last_data_loading_time = timing["data_loading"]
        self.last_loss_computation_time = self.last_forward_time = timing["loss_computation"]
        self.last_optimizer_time = timing["optimizer"]
        means = totals.means()
        return (means["energy_rmse"], means["energy_mae"], means["force_rmse"], timing,
                totals.structure_errors() if collect_structure_scores else None)

    def _step(self, view, loss, batch, optimizer, train, timing):
        """The batch's metrics; ``optimizer`` (None: validation) steps on its loss."""
        started = time.perf_counter()
        with torch.set_grad_enabled(train or batch.derivatives is not None):
            value, metrics = loss.of_batch(view, batch, batch.n_force_atoms, train)
        computed = time.perf_counter()
        timing["loss_computation"] += computed - started
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            backward = time.perf_counter()
            optimizer.step()
            self.last_backward_time += backward - computed
            timing["optimizer"] += time.perf_counter() - backward
        return metrics

    def _references(self, atomic_energies_by_index):
        if atomic_energies_by_index is None:
            return torch.zeros(len(self.descriptor.species), dtype=torch.float64)
        return torch.as_tensor(atomic_energies_by_index, dtype=torch.float64).detach().cpu()

    def _batch(self, raw, alpha) -> Batch:
        """An aenet_core ``Batch`` on the loop's device and dtype (force terms only from a ``Batch``)."""
        if isinstance(raw, Batch):
            return raw.to(self.device, self.dtype)
        if alpha > 0 and raw.get("positions_f") is not None:
            raise RuntimeError(FORCE_BATCHES)
        n_atoms = torch.as_tensor(raw["n_atoms"]).long().reshape(-1)
        indices = raw.get("sample_indices")
        return Batch(indices=list(range(len(n_atoms))) if indices is None else torch.as_tensor(indices).tolist(),
                     features=torch.as_tensor(raw["features"]),
                     species_idx=torch.as_tensor(raw["species_indices"]).long(),
                     batch=torch.repeat_interleave(torch.arange(len(n_atoms)), n_atoms), n_atoms=n_atoms,
                     energy_ref=torch.as_tensor(raw["energy_ref"], dtype=torch.float64).reshape(-1),
                     n_force_structures=0, derivatives=None, forces_ref=None).to(self.device, self.dtype)
