"""The small Cu-Au training set-up several test modules share: references, descriptor, potential, config; and the
dense derivatives tests compare sparse ones with."""
import numpy as np
import torch

from aenet_core.data import StructureSource
from aenet_core.example_data import make_cuau_structures
from aenet_core.torch_featurize import ChebyshevDescriptor
from aenet_core.torch_training import Adam, TorchANNPotential, TorchTrainingConfig

REFERENCES = {"Cu": -0.5, "Au": -0.2}


def cuau_structures():
    return make_cuau_structures(14, seed=5)


def descriptor():
    return ChebyshevDescriptor(["Cu", "Au"], 4, 4.5, 2, 3.5, min_cutoff=0.5)


def potential():
    return TorchANNPotential({"Cu": [(6, "tanh"), (6, "tanh")], "Au": [(6, "tanh")]}, descriptor())


def config(**overrides):
    settings = dict(iterations=4, method=Adam(mu=0.01, batchsize=4), testpercent=25, split_seed=3, seed=7,
                    device="cpu", atomic_energies=REFERENCES, checkpoint_dir=None, save_best=False,
                    show_progress=False)
    return TorchTrainingConfig(**(settings | overrides))


# Committees: smaller members, no checkpoints unless a test asks for them.
MEMBER_ARCH = {"Cu": [(5, "tanh")], "Au": [(5, "tanh")]}


def member_config(**changes):
    settings = dict(iterations=3, method=Adam(mu=0.01, batchsize=4), testpercent=25, split_seed=2, seed=5,
                    force_weight=0.1, atomic_energies=REFERENCES, checkpoint_dir=None, save_best=False,
                    checkpoint_interval=0, show_progress=False)
    return TorchTrainingConfig(**(settings | changes))


CONTRACT = {name for name in dir(StructureSource) if not name.startswith("_")} | set(StructureSource.__annotations__)


class OnlyTheContract:
    """A dataset seen through the StructureSource contract alone: any other attribute is an error."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        if name not in CONTRACT:
            raise AttributeError(f"{name!r} is not part of StructureSource")
        return getattr(self._inner, name)

    def __len__(self):
        return len(self._inner)


def count_predict(monkeypatch, model) -> list:
    """The ``eval_forces`` of every ``model.predict`` call from now on (the list fills as calls come)."""
    calls = []
    original = model.predict

    def counting(*args, **kwargs):
        calls.append(kwargs.get("eval_forces"))
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "predict", counting)
    return calls


def cli_database(tmp_path, n_structures: int):
    """(database, split) of ``n_structures`` Cu-Au example structures, made by the command line."""
    from aenet_core.cli import main

    data, db, split = tmp_path / "example.extxyz", tmp_path / "db.h5", tmp_path / "split.json"
    main(["example-data", "--output", str(data), "--n-structures", str(n_structures), "--seed", "1"])
    main(["build-database", str(data), "--output", str(db), "--species", "Cu", "Au", "--rad-order", "2",
          "--rad-cutoff", "4.0", "--ang-order", "1", "--ang-cutoff", "3.0"])
    main(["split", str(db), "--output", str(split), "--split-seed", "1", "--testpercent", "20"])
    return db, split


def finite_difference_jacobian(function, positions, step=1e-6):
    """d function(positions) / d positions (a tensor) by central differences: (*output, N, 3)."""
    columns = []
    for a in range(len(positions)):
        for c in range(3):
            up, down = positions.clone(), positions.clone()
            up[a, c] += step
            down[a, c] -= step
            columns.append((function(up) - function(down)) / (2 * step))
    return torch.stack(columns, dim=-1).reshape(*columns[0].shape, len(positions), 3)


def dense_jacobian(local, n_atoms, desc):
    """dG_{i,f}/dr_{a,x} (N, F, N, 3) assembled from aenet-python's local-derivative dict (per-edge and
    per-triplet blocks, several species); features are ordered radial, angular, then their typespin-weighted
    copies."""
    r1, a1 = desc.rad_order + 1, desc.ang_order + 1
    jac = torch.zeros(n_atoms, desc.n_features, n_atoms, 3, dtype=torch.float64)
    radial, angular = local["radial"], local["angular"]
    for e, (i, j) in enumerate(zip(radial["center_idx"].tolist(), radial["neighbor_idx"].tolist())):
        grad, spin = radial["dG_drij"][e], radial["neighbor_typespin"][e]
        for block, weight in ((slice(0, r1), 1.0), (slice(r1 + a1, 2 * r1 + a1), spin)):
            jac[i, block, j] += weight * grad
            jac[i, block, i] -= weight * grad
    triplets = zip(angular["center_idx"].tolist(), angular["neighbor_j_idx"].tolist(),
                   angular["neighbor_k_idx"].tolist())
    for t, (i, j, k) in enumerate(triplets):
        spin = angular["triplet_typespin"][t]
        for block, weight in ((slice(r1, r1 + a1), 1.0), (slice(2 * r1 + a1, 2 * (r1 + a1)), spin)):
            for atom, grads in ((i, "grads_i"), (j, "grads_j"), (k, "grads_k")):
                jac[i, block, atom] += weight * angular[grads][t]
    return jac


class AtomicStructureStandIn:
    """The attributes aenet-python's AtomicStructure offers (aenet is not imported): per-frame coords, avec,
    energy and forces of ``frames`` (Structures of the same atoms), types, pbc, and the featurizer's typenames."""

    def __init__(self, frames, periodic=True):
        self.coords = [frame.positions for frame in frames]
        self.avec = [frame.cell for frame in frames] if periodic else []
        self.energy = [frame.energy for frame in frames]
        self.forces = [np.empty(0) if frame.forces is None else frame.forces for frame in frames]
        self.types = np.array(frames[0].species)
        self.pbc = periodic
        self.typenames = sorted(set(frames[0].species))
        self.names_known = True
