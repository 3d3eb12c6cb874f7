"""A potential as aenet ``.nn.ascii`` files and their binary ``.nn`` twins (one per species), and back (spec §9).

Fortran aenet evaluates an atom as E_i = net(G_hat_i) / scale + shift + E_atom
with G_hat_f = (G_f - avg_f) / sqrt(cov_f - avg_f^2) per species file (0 where
that spread is at most 1e-10), which is ``AtomisticModel`` with
E_scaling = scale, E_shift = shift, feature_mean = avg and
feature_std = sqrt(cov - avg^2).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aenet_core.descriptor import ChebyshevDescriptor
from aenet_core.export.nn_ascii_file import (ACTIVATION_NAMES, DEFAULT_PREFIX, N_SFPARAM, NNAsciiError, NNAsciiFile,
                                             weight_offsets, write_nn_ascii)
from aenet_core.export.nn_binary import TYPE_LENGTH, read_potential_file, write_nn_binary
from aenet_core.files import write_json
from aenet_core.io.common import as_list
from aenet_core.model import ACTIVATIONS, AtomisticModel
from aenet_core.model.atomistic import DEGENERATE_STD
from aenet_core.structure import referenced_energy_per_atom

DESCRIPTION = "aenet_core Chebyshev descriptor export"
TRAINSET_NAME = "aenet_core"


# ----------------------------------------------------------------------------- export


def to_aenet_ascii(potential, output_dir, prefix=DEFAULT_PREFIX, structures=None, descriptor_stats=None) -> dict:
    """Write ``<prefix>.<Species>.nn.ascii``, its binary twin ``<prefix>.<Species>.nn`` (what Fortran
    ``train.x`` writes), per species, and ``<prefix>.manifest.json`` into ``output_dir``.  Species labels
    longer than Fortran's 2-character type names ('Fe1') get no binary twin (a warning says so).

    The feature statistics written are the model's own, per species
    (avg = mean, cov = std^2 + mean^2), so aenet normalises exactly as the
    model does; a model trained with ``normalize_features=False`` gives avg 0,
    cov 1.  ``descriptor_stats`` ({'min': ..., 'max': ...}, each (F,) or
    (S, F)) fills only sfval_min/max, which aenet does not use for scaling;
    without it they are mean -/+ std.  ``structures`` (Structures with
    energies, e.g. the training set) fills only counts: neval per species,
    nAtomsTot, nStrucs and E_min/E_max/E_av of the referenced energy per atom
    (atomic energies subtracted); it never changes the statistics.
    Floats are written as ``{:24.17e}``, which round-trips every float64.

    Returns the manifest, also written as JSON: ``{"format", "prefix",
    "files": {species: .nn.ascii name within output_dir}, "binary_files":
    {species: .nn name}, "species",
    "descriptor": descriptor.get_config(), "arch", "E_scaling", "E_shift",
    "atomic_energies"}``.
    """
    descriptor, model = potential.descriptor, potential.model
    binary = _fortran_type_names(descriptor.species)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    mean, std = _feature_statistics(model)
    bounds = _feature_bounds(mean, std, descriptor_stats)
    neval, trainset_counts = _training_set_counts(structures, model)
    files, binary_files = {}, {}
    for index, species in enumerate(descriptor.species):
        content = NNAsciiFile(**_network_fields(model, index), **_setup_fields(descriptor, index, mean, std, bounds),
                              neval=neval[species], **_trainset_fields(model), **trainset_counts)
        files[species] = f"{prefix}.{species}.nn.ascii"
        write_nn_ascii(output_dir / files[species], content)
        if binary:
            binary_files[species] = f"{prefix}.{species}.nn"
            write_nn_binary(output_dir / binary_files[species], content)
    manifest = _manifest(potential, prefix, files, binary_files)
    write_json(output_dir / f"{prefix}.manifest.json", manifest, indent=2)
    return manifest


def _fortran_type_names(species) -> bool:
    """Whether Fortran aenet can hold the species names (TYPELEN characters); warns when it cannot.  Labels
    such as 'Fe1' go into the .nn.ascii files whole; the binary .nn files, Fortran's own, are then left out."""
    long = [s for s in species if len(s) > TYPE_LENGTH]
    if long:
        warnings.warn(f"species {long} have names longer than {TYPE_LENGTH} characters: the .nn.ascii files "
                      f"carry them whole (aenet_core and aenet-python read them back), but Fortran aenet and its "
                      f"LAMMPS pair style hold only {TYPE_LENGTH} characters of a type name, so no binary .nn "
                      f"files are written; for Fortran, label species with at most {TYPE_LENGTH} characters",
                      stacklevel=3)
    return not long


def _manifest(potential, prefix, files, binary_files) -> dict:
    model = potential.model
    return {"format": "aenet nn.ascii", "prefix": prefix, "files": files, "binary_files": binary_files,
            "species": list(potential.descriptor.species),
            "descriptor": potential.descriptor.get_config(),
            "arch": {s: [[nodes, activation] for nodes, activation in layers] for s, layers in model.arch.items()},
            "E_scaling": float(model.E_scaling), "E_shift": float(model.E_shift),
            "atomic_energies": dict(zip(model.species, model.atomic_energies.tolist()))}


def _as_numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().to(torch.float64).numpy()


def _feature_statistics(model) -> tuple:
    """Per-species mean and std (S, F); warns where cov = std^2 + mean^2 cannot carry std."""
    mean, std = _as_numpy(model.feature_mean), _as_numpy(model.feature_std)
    recovered = np.sqrt(np.maximum(std**2 + mean**2 - mean**2, 0.0))
    lost = (std > DEGENERATE_STD) & ~np.isclose(recovered, std, rtol=1e-6, atol=0.0)
    if lost.any():
        warnings.warn(f"{int(lost.sum())} feature columns have a std too small next to their mean for the "
                      f"avg/cov form of .nn.ascii; aenet will normalise them differently", stacklevel=3)
    return mean, std


def _feature_bounds(mean, std, descriptor_stats) -> tuple:
    if descriptor_stats is None:
        return mean - std, mean + std
    if not {"min", "max"} <= set(descriptor_stats):
        raise ValueError(f"descriptor_stats needs 'min' and 'max'; got keys {sorted(descriptor_stats)}")
    try:
        return tuple(np.broadcast_to(np.asarray(descriptor_stats[key], dtype=np.float64), mean.shape)
                     for key in ("min", "max"))
    except ValueError:
        raise ValueError(f"descriptor_stats 'min' and 'max' must have shape (F,) or (S, F) = {mean.shape}") from None


def _training_set_counts(structures, model) -> tuple:
    """(atoms per species, the training-set info counts) of ``structures``; all zero without them."""
    if structures is None:
        return dict.fromkeys(model.species, 0), dict(n_atoms_total=0, n_structures=0, e_min=0.0, e_max=0.0, e_avg=0.0)
    structures = as_list(structures)
    references = dict(zip(model.species, model.atomic_energies.tolist()))
    per_atom = []
    for index, structure in enumerate(structures):
        unknown = sorted(set(structure.species) - set(references))
        if structure.energy is None or unknown:
            raise ValueError(f"structures[{index}]: the training-set info needs an energy and only the species "
                             f"{model.species}; got energy {structure.energy}, unknown species {unknown}")
        per_atom.append(referenced_energy_per_atom(structure.energy, structure.species, references))
    neval = {s: sum(st.species.count(s) for st in structures) for s in model.species}
    counts = dict(n_atoms_total=sum(neval.values()), n_structures=len(structures),
                  e_min=min(per_atom, default=0.0), e_max=max(per_atom, default=0.0),
                  e_avg=float(np.mean(per_atom)) if per_atom else 0.0)
    return neval, counts


def _network_fields(model, index) -> dict:
    layers = [m for m in model.networks.functions[index] if isinstance(m, nn.Linear)]
    hidden = model.arch[model.species[index]]
    # Each transition as (n_out, n_in + 1), bias column last, flattened column-major.
    blocks = [torch.cat([layer.weight, layer.bias[:, None]], 1).t().reshape(-1) for layer in layers]
    return {"nnodes": [layers[0].in_features] + [layer.out_features for layer in layers],
            "activations": [ACTIVATIONS[name][1] for _, name in hidden] + [ACTIVATIONS["linear"][1]],
            "weights": _as_numpy(torch.cat(blocks))}


def _setup_fields(descriptor, index, mean, std, bounds) -> dict:
    n_features, n_species = descriptor.n_features, descriptor.n_species
    sfparam = np.zeros((n_features, N_SFPARAM))
    sfparam[0] = (descriptor.rad_cutoff, descriptor.rad_order, descriptor.ang_cutoff, descriptor.ang_order)
    return dict(description=DESCRIPTION, species=descriptor.species[index], env_species=list(descriptor.species),
                rc_min=descriptor.min_cutoff, rc_max=descriptor.max_cutoff, basis="Chebyshev",
                sf_types=[0] * n_features, sfparam=sfparam, sfenv=[0] * (n_species * n_features),
                sf_min=bounds[0][index], sf_max=bounds[1][index], sf_avg=mean[index],
                sf_cov=std[index] ** 2 + mean[index] ** 2)


def _trainset_fields(model) -> dict:
    # 'T' with the model's scale and shift (1 and 0 without energy normalisation) is right whether or not
    # a reader applies scale and shift to files flagged 'F'.
    return dict(trainset_name=TRAINSET_NAME, normalized=True, scale=float(model.E_scaling),
                shift=float(model.E_shift), trainset_species=list(model.species),
                atomic_energies=model.atomic_energies.tolist())


# ----------------------------------------------------------------------------- import


def load_aenet(files, device=None) -> tuple:
    """(ChebyshevDescriptor, AtomisticModel) from ``{species: path}``, one file per environment species, each
    a ``.nn.ascii`` or a binary ``.nn`` file (``read_potential_file`` tells them apart).

    All files must agree on the descriptor (Chebyshev parameters, Rc_min,
    environment species order), the energy scale and shift and the atomic
    energies; each file must be for the species it is given for.
    """
    paths = {species: Path(path) for species, path in dict(files).items()}
    contents = {species: read_potential_file(path) for species, path in paths.items()}
    if not contents:
        raise ValueError("load_aenet needs at least one {species: path} entry")
    _check_consistent(contents, paths)
    first_species = next(iter(contents))
    descriptor = _descriptor(contents[first_species], paths[first_species], device)
    model = AtomisticModel({s: _hidden_layers(contents[s], paths[s]) for s in descriptor.species}, descriptor.species,
                           descriptor.n_features, atomic_energies=_atomic_energies(contents, paths))
    for index, species in enumerate(descriptor.species):
        _load_weights(model.networks.functions[index], contents[species])
    mean = np.stack([contents[s].sf_avg for s in descriptor.species])
    covariance = np.stack([contents[s].sf_cov for s in descriptor.species])
    model.set_feature_statistics(mean, np.sqrt(np.maximum(covariance - mean**2, 0.0)))
    first = contents[first_species]
    if not first.scale > 0:
        raise NNAsciiError(f"{paths[first_species]}: training-set info, scale must be positive; got {first.scale}")
    model.set_energy_normalization(first.shift, first.scale)
    return descriptor, model.to(descriptor.device)


# Fields that every species file of one potential must share.
_SHARED_FIELDS = ("env_species", "rc_min", "rc_max", "scale", "shift", "trainset_species", "atomic_energies")


def _check_consistent(contents, paths) -> None:
    first_species = next(iter(contents))
    first, first_path = contents[first_species], paths[first_species]
    for species, content in contents.items():
        if content.species != species:
            raise NNAsciiError(f"{paths[species]}: the file is for species {content.species!r}, "
                               f"but was given for {species!r}")
        for field in _SHARED_FIELDS:
            if getattr(content, field) != getattr(first, field):
                raise NNAsciiError(f"{paths[species]}: {field} {getattr(content, field)} differs from "
                                   f"{getattr(first, field)} in {first_path}")
        if not np.array_equal(content.sfparam[0], first.sfparam[0]):
            raise NNAsciiError(f"{paths[species]}: Chebyshev parameters (sfparam column 1) {content.sfparam[0]} "
                               f"differ from {first.sfparam[0]} in {first_path}")
    missing = [s for s in first.env_species if s not in contents]
    if missing:
        raise NNAsciiError(f"{first_path}: the environment species are {first.env_species}; "
                           f"no file given for {missing}")
    extra = [s for s in contents if s not in first.env_species]
    if extra:
        raise NNAsciiError(f"{paths[extra[0]]}: species {extra[0]!r} is not an environment species "
                           f"{first.env_species} of {first_path}")


def _descriptor(content, path, device) -> ChebyshevDescriptor:
    rad_cutoff, rad_order, ang_cutoff, ang_order = content.sfparam[0]
    if rad_order != round(rad_order) or ang_order != round(ang_order):
        raise NNAsciiError(f"{path}: setup section, sfparam: polynomial orders must be integers; "
                           f"got {rad_order}, {ang_order}")
    if not np.isclose(content.rc_max, max(rad_cutoff, ang_cutoff), rtol=1e-12, atol=0.0):
        raise NNAsciiError(f"{path}: setup section, Rc_max {content.rc_max} is not the larger Chebyshev cutoff "
                           f"{max(rad_cutoff, ang_cutoff)}")
    try:
        descriptor = ChebyshevDescriptor(content.env_species, int(rad_order), float(rad_cutoff), int(ang_order),
                                         float(ang_cutoff), min_cutoff=content.rc_min, device=device or "cpu")
    except ValueError as err:
        raise NNAsciiError(f"{path}: setup section, descriptor parameters: {err}") from None
    if descriptor.n_features != len(content.sf_types):
        raise NNAsciiError(f"{path}: setup section, nsf {len(content.sf_types)} differs from the "
                           f"{descriptor.n_features} features of the Chebyshev parameters")
    return descriptor


def _hidden_layers(content, path) -> list:
    if len(content.nnodes) < 3 or content.nnodes[-1] != 1 or content.activations[-1] != ACTIVATIONS["linear"][1]:
        raise NNAsciiError(f"{path}: network section, expected hidden layers and one linear output node; "
                           f"got nnodes {content.nnodes}, activation codes {content.activations}")
    return [(n, ACTIVATION_NAMES[code]) for n, code in zip(content.nnodes[1:-1], content.activations[:-1])]


def _atomic_energies(contents, paths) -> dict:
    first_species = next(iter(contents))
    first = contents[first_species]
    energies = dict(zip(first.trainset_species, first.atomic_energies))
    missing = [s for s in first.env_species if s not in energies]
    if missing:
        raise NNAsciiError(f"{paths[first_species]}: training-set info has no atomic energy for {missing}")
    return energies


def _load_weights(network, content) -> None:
    layers = [m for m in network if isinstance(m, nn.Linear)]
    offsets = weight_offsets(content.nnodes)
    with torch.no_grad():
        for layer, start, end in zip(layers, offsets, offsets[1:]):
            block = torch.as_tensor(content.weights[start:end]).reshape(layer.in_features + 1, layer.out_features).t()
            layer.weight.copy_(block[:, :-1])
            layer.bias.copy_(block[:, -1])
