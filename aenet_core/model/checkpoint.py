"""The model file (``model.pt``, ``best_model.pt``, ``checkpoint_epoch_NNNN.pt``): schema, save, load, upgrade.

A model file is a ``torch.save`` of one dict of tensors and plain data (str,
int, float, bool, None, lists, tuples, dicts), so it is read with
``torch.load(weights_only=True)``: nothing in it can run code.  Keys (schema
2.0): ``format`` ("aenet_core.model"), ``schema_version``, ``timestamp``,
``torch_version``, ``architecture``, ``descriptor_config``,
``model_state_dict``, ``training_history``, ``best_val_loss``,
``training_config``, ``atomic_energies``, ``run_state`` (a checkpoint's
optimizer, scheduler, generators, force subsets, sampler scores, schedule
length, weight average with the raw weights, and early stopping; None when
there is nothing to resume) and ``extra_metadata``.  A file that
``CheckpointManager`` (a loop the caller writes) saved has no ``run_state`` and
holds its optimizer's state under ``optimizer_state_dict`` instead.

Older files load too and are upgraded in memory: 1.0 (one feature mean/std row
for all species) and 1.1 (the NumPy generator state stored as a NumPy array,
read through a loader that admits that array type and torch's version string
and nothing else);
``aenet-core convert-model`` rewrites one in the current schema.
"""
from __future__ import annotations

import pickle
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from aenet_core.files import FileFormatError, atomic_write, check_format

FORMAT = "aenet_core.model"
SCHEMA_VERSION = "2.0"
_LEGACY_VERSIONS = ("1.0", "1.1")
READABLE_VERSIONS = (*_LEGACY_VERSIONS, SCHEMA_VERSION)


class ModelFileError(FileFormatError):
    """A model file or checkpoint that cannot be loaded; the message names the file and why."""


class RefusedModelFileError(ModelFileError):
    """A file holding Python objects that loading would run: refused, and kept for inspection."""


HEADER_KEYS = ("format", "schema_version", "timestamp", "torch_version")


def write_model_file(path, payload: dict) -> None:
    """Write ``payload`` (tensors and plain data, no ``HEADER_KEYS``) with the format header, atomically."""
    values = (FORMAT, SCHEMA_VERSION, datetime.now(timezone.utc).isoformat(), str(torch.__version__))
    header = dict(zip(HEADER_KEYS, values))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, binary=True) as handle:
        torch.save({**header, **payload}, handle)


def read_model_file(path) -> dict:
    """The payload of a model file, upgraded to the current schema; refuses anything that is not plain data."""
    try:
        payload, legacy = _load(path)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found is None:
            raise ModelFileError(f"{path}: not a readable aenet_core model file (a damaged or foreign pickle: "
                                 f"{str(err).strip().splitlines()[-1][:200]})") from None
        raise RefusedModelFileError(
            f"{path}: refused, it holds Python objects that loading would run ({found.group(1)}). aenet_core "
            f"model files and checkpoints hold only tensors and plain data, so this file was not written by "
            f"aenet_core or was altered; nothing in it was run") from None
    except Exception as err:
        raise ModelFileError(f"{path}: not a readable aenet_core model file ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict):
        raise ModelFileError(f"{path}: not an aenet_core model file (it holds a {type(payload).__name__})")
    version = payload.get("schema_version")
    check_format(path, payload.get("format", FORMAT), FORMAT, version, READABLE_VERSIONS, "model file",
                 "model schema", error=ModelFileError)
    if legacy and version not in _LEGACY_VERSIONS:
        raise RefusedModelFileError(
            f"{path}: refused, a schema {version} file holds NumPy arrays, which only schema 1.x files may; it "
            f"was not written by aenet_core or was altered")
    if version == "1.0" and _written_by_aenet_python(payload):
        _from_aenet_python(payload)
    elif version == "1.0":
        _upgrade_from_1_0(payload)
    if version in _LEGACY_VERSIONS:
        _upgrade_from_1_1(payload)
    return payload


def _load(path) -> tuple:
    """(payload, whether it needed the schema 1.x types): plain ``weights_only`` first, and only when that
    refuses the file once more admitting the few plain-data types 1.x files hold."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True), False
    except pickle.UnpicklingError as plain_refusal:
        try:
            with torch.serialization.safe_globals(_legacy_globals()):
                return torch.load(path, map_location="cpu", weights_only=True), True
        except pickle.UnpicklingError:
            raise plain_refusal from None


def plain_numpy_state(state) -> dict:
    """``np.random.get_state()`` as plain data (the key array as a tensor)."""
    name, keys, position, has_gauss, cached_gaussian = state
    return {"bit_generator": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position), "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}


def numpy_state(plain: dict) -> tuple:
    """The inverse of ``plain_numpy_state``, for ``np.random.set_state``."""
    return (plain["bit_generator"], plain["keys"].numpy().astype(np.uint32), plain["position"], plain["has_gauss"],
            plain["cached_gaussian"])


def _legacy_globals() -> list:
    """The plain-data types schema 1.x files hold beyond what ``weights_only`` admits: torch's version string
    (a str subclass) and a uint32 NumPy array (the generator state) under both module names NumPy has used.
    Object arrays and every other global stay refused."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct
    return [torch.torch_version.TorchVersion, (_reconstruct, "numpy.core.multiarray._reconstruct"),
            (_reconstruct, "numpy._core.multiarray._reconstruct"), np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _written_by_aenet_python(payload) -> bool:
    """aenet-python's model files share schema 1.0 with ours; theirs name layers ``net.functions.i.Linear_...``
    and keep the normalisation beside the weights."""
    return "normalization" in payload and any(k.startswith("net.functions.") for k in payload["model_state_dict"])


def _from_aenet_python(payload) -> None:
    """An aenet-python model file as our schema 1.1: its global feature mean and std for every species (zero
    and one without feature normalisation), its energy scaling (zero shift and unit scale without), the
    atomic energies in species order and each network's linear layers where ours keep them (an activation
    after each hidden layer).  Its training configuration is kept in ``extra_metadata``, not resumed."""
    state, norm = payload["model_state_dict"], payload["normalization"]
    species = payload["descriptor_config"]["species"]
    dtype = next(iter(state.values())).dtype
    n_features = len(norm["feature_mean"])
    mean, std = torch.zeros(n_features, dtype=dtype), torch.ones(n_features, dtype=dtype)
    if norm["normalize_features"]:
        mean, std = torch.tensor(norm["feature_mean"], dtype=dtype), torch.tensor(norm["feature_std"], dtype=dtype)
    energies = payload.get("atomic_energies") or {}
    ours = {"feature_mean": mean.expand(len(species), -1).clone(), "feature_std": std.expand(len(species), -1).clone(),
            "E_shift": torch.tensor(norm["E_shift"] if norm["normalize_energy"] else 0.0, dtype=dtype),
            "E_scaling": torch.tensor(norm["E_scaling"] if norm["normalize_energy"] else 1.0, dtype=dtype),
            "atomic_energies": torch.tensor([float(energies.get(s, 0.0)) for s in species], dtype=dtype)}
    for key, value in state.items():
        found = re.fullmatch(r"net\.functions\.(\d+)\.Linear_Sp\d+_F(\d+)\.(weight|bias)", key)
        if found is None:
            raise ModelFileError(f"an aenet-python model file with an unknown weight {key!r}")
        network, layer, kind = found.groups()
        ours[f"networks.functions.{network}.{2 * (int(layer) - 1)}.{kind}"] = value
    extra = dict(payload.get("extra_metadata") or {}, aenet_python_training_config=payload["training_config"])
    payload.update(model_state_dict=ours, training_config=None, extra_metadata=extra, run_state=None)
    for key in ("normalization", "optimizer_state_dict", "device_hint"):
        payload.pop(key, None)


def _upgrade_from_1_0(payload) -> None:
    """Schema 1.0 stored one (F,) feature mean and std for all species; give every species that row."""
    state = payload["model_state_dict"]
    n_species = len(payload["descriptor_config"]["species"])
    for key in ("feature_mean", "feature_std"):
        state[key] = state[key].expand(n_species, -1).clone()


def _upgrade_from_1_1(payload) -> None:
    """Schema 1.1 stored the NumPy generator state as a tuple holding an array."""
    run_state = payload.get("run_state")
    if run_state is not None and isinstance(run_state["rng"]["numpy"], tuple):
        run_state["rng"]["numpy"] = plain_numpy_state(run_state["rng"]["numpy"])
    payload.update(format=FORMAT, schema_version=SCHEMA_VERSION)
