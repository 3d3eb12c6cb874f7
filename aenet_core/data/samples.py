"""``dataset[i]``: aenet-python's per-entry sample dict, built the same way for every dataset.

Keys: ``features`` (N, F) raw, in the descriptor's dtype; ``positions`` (N, 3) (None in
``CachedStructureDataset`` items, as in aenet-python's);
``species`` (symbols); ``species_indices`` (N,) int64; ``cell`` (3, 3) and
``pbc`` (3,) bool, or None without a cell; ``energy`` (eV, NaN without one);
``forces`` (N, 3) on the force view, else None; ``has_forces`` (the entry has
force labels); ``use_forces`` (this is the force view); ``n_atoms``; ``name``
(the structure's name, else the dataset's identifier of the entry);
``local_derivatives`` (force view: the sparse feature derivatives in
aenet-python's layout, see ``derivative_dict``; else None); and
``neighbor_info``, ``graph`` and ``triplets``, always None here.

These dicts are the public view of one entry; training batches entries without
them (``aenet_core.data.batch``).
"""
from __future__ import annotations

import math

import torch


def materialize_sample(dataset, idx: int, *, use_forces: bool, cache_state=None, cache_features: bool = False,
                       load_local_derivatives: bool = False) -> dict:
    """The sample dict of entry ``idx`` of a ``StructureSource``.

    The force view (``use_forces`` and the entry has forces) carries forces and
    feature derivatives: read from the dataset when it stores them and
    ``load_local_derivatives``, else computed.  The energy view's features come
    from ``cache_state.feature_cache`` (a dict, read and filled when
    ``cache_features``), else the dataset's stored features, else the descriptor.
    """
    structure = dataset.get_structure(idx)
    descriptor = dataset.descriptor
    use_forces = bool(use_forces) and structure.has_forces()
    positions = torch.as_tensor(structure.positions, dtype=descriptor.dtype, device=descriptor.device)
    cell = None if structure.cell is None else torch.as_tensor(structure.cell, dtype=descriptor.dtype,
                                                               device=descriptor.device)
    pbc = None if structure.pbc is None else torch.as_tensor(structure.pbc, dtype=torch.bool, device=descriptor.device)
    derivatives = None
    if use_forces:
        stored = dataset.stored_derivatives([idx]) if load_local_derivatives else None
        features, derivatives = stored or descriptor.forward_with_derivatives(positions, structure.species, cell, pbc)
    else:
        cache = getattr(cache_state, "feature_cache", None) if cache_features else None
        features = cache.get(idx) if cache is not None else None
        if features is None:
            features = dataset.stored_features([idx])
            if features is None:
                features = descriptor.forward_from_positions(positions, structure.species, cell, pbc)
            if cache is not None:
                cache[idx] = features
    return {
        "features": features.to(descriptor.dtype),
        "neighbor_info": None,
        "graph": None,
        "triplets": None,
        "local_derivatives": None if derivatives is None else derivative_dict(derivatives.to(dtype=descriptor.dtype)),
        "positions": positions,
        "species": list(structure.species),
        "species_indices": descriptor.species_indices(structure.species),
        "cell": cell,
        "pbc": pbc,
        "energy": math.nan if structure.energy is None else float(structure.energy),
        "forces": torch.as_tensor(structure.forces, dtype=descriptor.dtype, device=descriptor.device)
        if use_forces else None,
        "has_forces": structure.has_forces(),
        "use_forces": use_forces,
        "n_atoms": structure.n_atoms,
        "name": structure.name or dataset.get_structure_identifier(idx),
    }


def derivative_dict(derivatives) -> dict:
    """``LocalDerivatives`` of one structure in aenet-python's sample layout: ``radial`` per edge (centre,
    neighbour, dG/dr_ij (E, R+1, 3), the neighbour's typespin or None) and ``angular`` per triplet (centre, j, k,
    dG/dr_i, dG/dr_j, dG/dr_k (T, A+1, 3), s_j s_k or None); all of the unweighted basis."""
    d = derivatives
    return {
        "radial": {"center_idx": d.center_idx, "neighbor_idx": d.neighbor_idx, "dG_drij": d.dG_drij,
                   "neighbor_typespin": d.neighbor_typespin},
        "angular": {"center_idx": d.triplet_center_idx, "neighbor_j_idx": d.neighbor_j_idx,
                    "neighbor_k_idx": d.neighbor_k_idx, "grads_i": d.grads_i, "grads_j": d.grads_j,
                    "grads_k": d.grads_k, "triplet_typespin": d.triplet_typespin},
    }
