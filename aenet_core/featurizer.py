"""TorchAUCFeaturizer: aenet-python's structure-level featurizer over our ChebyshevDescriptor.

Structures are aenet_core ``Structure`` objects or objects shaped like aenet-python's
``AtomicStructure`` (per-frame ``coords``, ``energy``, ``forces``, ``avec``; ``types``; ``pbc``
True when periodic; the last frame is used).  Results are ``FeaturizedAtomicStructure`` objects;
``run_aenet_generate`` featurizes XSF files into aenet-python's training-set HDF5 file, in
Python (as aenet-python's torch featurizer does; no Fortran executable runs).
"""
import glob
import logging
import os
import warnings

import numpy as np
import torch

from aenet_core.descriptor import ChebyshevDescriptor
from aenet_core.feature_files import FeaturizedAtomicStructure, write_features_to_hdf5
from aenet_core.io.xsf import read_xsf
from aenet_core.rules import DEFAULT_MIN_CUTOFF
from aenet_core.structure import Structure

logger = logging.getLogger(__name__)


class TorchAUCFeaturizer:
    """Chebyshev (AUC) features of whole structures, with aenet-python's ``AenetAUCFeaturizer`` interface.

    ``descriptor`` is the ChebyshevDescriptor that computes them (species = ``typenames``).
    """

    def __init__(self, typenames, rad_order=0, rad_cutoff=0.0, ang_order=0, ang_cutoff=0.0,
                 min_cutoff=DEFAULT_MIN_CUTOFF, device="cpu", dtype=torch.float64, **kwargs):
        _warn_unknown("TorchAUCFeaturizer", kwargs)
        self.typenames = [str(t) for t in typenames]
        self.rad_order, self.rad_cutoff = rad_order, rad_cutoff
        self.ang_order, self.ang_cutoff = ang_order, ang_cutoff
        self.min_cutoff, self.device, self.dtype = min_cutoff, device, dtype
        self.descriptor = ChebyshevDescriptor(species=self.typenames, rad_order=rad_order, rad_cutoff=rad_cutoff,
                                              ang_order=ang_order, ang_cutoff=ang_cutoff, min_cutoff=min_cutoff,
                                              device=device, dtype=dtype)

    @classmethod
    def from_structure(cls, struc, **kwargs):
        """A featurizer for the species of ``struc``; ``kwargs`` are the constructor's other arguments."""
        if getattr(struc, "names_known", True) is False:
            raise ValueError("Structure without type name information.")
        typenames = list(struc.typenames) if hasattr(struc, "typenames") else list(dict.fromkeys(_frame(struc)[1]))
        return cls(typenames=typenames, **kwargs)

    @property
    def ntypes(self) -> int:
        return len(self.typenames)

    def featurize_structure(self, struc, **kwargs) -> FeaturizedAtomicStructure:
        """Features of one structure, with its path, energy (0 when unknown), coordinates, forces and cell."""
        _warn_unknown("featurize_structure", kwargs)
        return self._featurize(struc, with_neighbors=False)

    def featurize_structures(self, structures, **kwargs) -> list:
        _warn_unknown("featurize_structures", kwargs)
        return [self._featurize(s, with_neighbors=False) for s in structures]

    def run_aenet_generate(self, xsf_files, workdir=None, hdf5_filename="features.h5", output_file="generate.out",
                           atomic_energies=None, include_neighbor_info=False, force_fraction=1.0, debug=False,
                           **kwargs):
        """Featurize XSF files (a list, or a glob pattern) into the training-set HDF5 file ``hdf5_filename``.

        With ``include_neighbor_info``, a random ``force_fraction`` of the structures (numpy's global
        random state) also get their neighbour lists and vectors.  A short log goes to ``output_file``
        (inside ``workdir`` when given; the HDF5 file is not).  ``debug`` is accepted and unused.
        """
        _warn_unknown("run_aenet_generate", kwargs)
        if not 0.0 <= force_fraction <= 1.0:
            raise ValueError(f"force_fraction must be in [0, 1]; got {force_fraction}")
        paths = _xsf_paths(xsf_files)
        with_neighbors = _chosen(len(paths), force_fraction) if include_neighbor_info else set()
        featurized = []
        for i, path in enumerate(paths):
            struc = read_xsf(path)[-1]
            struc.name = os.path.abspath(path)
            featurized.append(self._featurize(struc, with_neighbors=i in with_neighbors))
            logger.info("featurized %d/%d: %s", i + 1, len(paths), path)
        write_features_to_hdf5(featurized, hdf5_filename, self.typenames, atomic_energies,
                               neighbor_info=[f.neighbor_info for f in featurized] if include_neighbor_info else None,
                               cell_info=[None if f.cell is None else {"cell": f.cell, "pbc": f.pbc}
                                          for f in featurized],
                               name="PyTorch-generated training set")
        if output_file:
            if workdir:
                os.makedirs(workdir, exist_ok=True)
                output_file = os.path.join(workdir, output_file)
            with open(output_file, "w", encoding="utf-8") as log:
                log.write(f"PyTorch-based featurization completed successfully\nProcessed {len(paths)} structures\n"
                          f"Output file: {hdf5_filename}\n")

    def _featurize(self, struc, with_neighbors: bool) -> FeaturizedAtomicStructure:
        positions, species, energy, forces, cell, pbc, path = _frame(struc)
        cell_tensor, pbc_tensor = (None if a is None else torch.as_tensor(a) for a in (cell, pbc))
        positions_tensor, neighbors = torch.as_tensor(positions, dtype=self.dtype), None
        with torch.no_grad():  # one neighbour search gives the features and, when asked for, the neighbour info
            if with_neighbors:
                features, neighbors = self.descriptor.featurize_with_neighbor_info(positions_tensor, species,
                                                                                   cell_tensor, pbc_tensor)
            else:
                features = self.descriptor.forward_from_positions(positions_tensor, species, cell_tensor, pbc_tensor)
        features = features.cpu().numpy()
        forces = np.zeros_like(positions) if forces is None else forces
        atoms = [{"type": t, "fingerprint": f, "coords": x, "forces": g}
                 for t, f, x, g in zip(species, features, positions, forces)]
        return FeaturizedAtomicStructure(path, energy, self.typenames, atoms, neighbor_info=neighbors, cell=cell,
                                         pbc=None if pbc is None else bool(np.all(pbc)))



def featurize_and_write_hdf5(xsf_files, typenames, rad_order, rad_cutoff, ang_order, ang_cutoff,
                             hdf5_filename="features.h5", atomic_energies=None, min_cutoff=DEFAULT_MIN_CUTOFF,
                             device="cpu", **kwargs):
    """Featurize XSF files (a list or a glob pattern) into a training-set HDF5 file in one call;
    ``kwargs`` go to TorchAUCFeaturizer."""
    featurizer = TorchAUCFeaturizer(typenames=typenames, rad_order=rad_order, rad_cutoff=rad_cutoff,
                                    ang_order=ang_order, ang_cutoff=ang_cutoff, min_cutoff=min_cutoff, device=device,
                                    **kwargs)
    featurizer.run_aenet_generate(xsf_files=xsf_files, hdf5_filename=hdf5_filename, atomic_energies=atomic_energies)


def _frame(struc) -> tuple:
    """(positions, species, energy, forces, cell, pbc, path) of a Structure or an AtomicStructure-like object
    (its last frame, as ``Structure.from_AtomicStructure`` reads it); a missing energy counts 0."""
    if isinstance(struc, Structure):
        path = struc.name or "unknown"
    else:
        path = getattr(struc, "path", "unknown")
        try:
            struc = Structure.from_AtomicStructure(struc)
        except (AttributeError, IndexError, TypeError) as err:
            raise TypeError(f"expected an aenet_core Structure or an object with aenet-python AtomicStructure's "
                            f"coords, types, energy, forces, avec and pbc; got {type(struc).__name__} ({err})") from None
    energy = 0.0 if struc.energy is None else float(struc.energy)
    return struc.positions, struc.species, energy, struc.forces, struc.cell, struc.pbc, path


def _xsf_paths(xsf_files) -> list:
    if isinstance(xsf_files, (str, os.PathLike)):
        paths = sorted(glob.glob(os.fspath(xsf_files)))
        if not paths:
            raise FileNotFoundError(f"no file matches the pattern {os.fspath(xsf_files)!r}")
        return paths
    for path in xsf_files:
        if not os.path.exists(path):
            raise FileNotFoundError(f"File not found: {path}")
    return list(xsf_files)


def _chosen(n_structures: int, fraction: float) -> set:
    """Indices of the structures that get neighbour information (all when fraction is 1)."""
    if fraction >= 1.0:
        return set(range(n_structures))
    return set(np.random.choice(n_structures, int(n_structures * fraction), replace=False).tolist())


def _warn_unknown(where: str, kwargs: dict) -> None:
    for name in kwargs:
        warnings.warn(f"{where}: unknown keyword `{name}` is ignored", stacklevel=3)
